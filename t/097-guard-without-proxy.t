#!/usr/bin/perl

# "taurus_guard on" in a location without proxy_pass passes `nginx -t`
# with a warning at the directive's file and line: its allowed batches
# would be audited and signed, then answered by nginx's static file
# handler.  None for a location with proxy_pass, one that inherits the
# guard from its server, or one with a nested location that proxies.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->write_credentials;

sub conf {
    my ($server, $location) = @_;

    return <<"EOF";
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;
        $server

        $location
    }
}
EOF
}

my $warning = '"taurus_guard on" in a location without "proxy_pass": its '
    . 'allowed batches would be audited and signed, then answered by '
    . 'nginx\'s static file handler';

my @cases = (
    [ 'no proxy_pass', '',
        "location /v3/ {\n            taurus_guard on;\n        }", 1 ],
    [ 'proxy_pass', '',
        "location /v3/ {\n            taurus_guard on;\n"
        . "            proxy_pass http://127.0.0.1:%%PORT_UP%%;\n        }", 0 ],
    [ 'inherited from the server', 'taurus_guard on;',
        "location /static/ {\n            root html;\n        }\n"
        . "        location /v3/ {\n"
        . "            proxy_pass http://127.0.0.1:%%PORT_UP%%;\n        }", 0 ],
    [ 'a nested location proxies', '',
        "location /v3/ {\n            taurus_guard on;\n"
        . "            location ~ /upgrade\$ {\n"
        . "                proxy_pass http://127.0.0.1:%%PORT_UP%%;\n"
        . "            }\n        }", 0 ],
);

for my $c (@cases) {
    my ($name, $server, $location, $warned) = @$c;

    my ($rc, $out) = $t->nginx_t(conf($server, $location));
    is($rc, 0, "$name: nginx -t passes") or diag($out);

    if ($warned) {
        my $line = $t->conf_line(qr/taurus_guard on/, 'test.conf');
        like($out, qr/\[warn\] \Q$warning\E, in \S+\/test\.conf:$line$/m,
            "$name: warned, with the file and line");
    } else {
        unlike($out, qr/without "proxy_pass"/, "$name: no warning")
            or diag($out);
    }
}

$t->done_testing;
