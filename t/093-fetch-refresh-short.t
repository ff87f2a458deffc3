#!/usr/bin/perl

# refresh= of a fetched secret below 3 s fails `nginx -t`, with the file
# and line and the reason.  A secret is renewed beside the requests once
# less than refresh of its life is left, and is used only while more
# than its margin (at least 1 s) is; nginx's clock counts whole
# seconds, so with refresh=1s or 2s the two never met: no renewal ever
# ran in the background, every secret ran out, and the requests then
# waited for a fetch of their own, refused with 503 whenever it failed,
# though the directive promised a renewal while the current secret
# still served.  3 s is accepted (t/061 shows its renewals run).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-iam.pl" }

sub conf {
    my ($secret) = @_;

    return <<"EOF";
http {
    $secret;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_iam {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }

        location = /_tg_meta {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_META%%/openstack/latest/securitykey;
        }
    }
}
EOF
}

my $t = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t);

my %directive = (
    taurus_guard_token =>
        'taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini',
    taurus_guard_credentials =>
        'taurus_guard_credentials metadata=/_tg_meta',
);

my $conf = $t->conf_path('test.conf');

for my $name (sort keys %directive) {
    my $line_re = qr/^\s*\Q$name\E\b/;

    for my $refresh (qw(1s 2s)) {
        my ($rc, $out) = $t->nginx_t(conf("$directive{$name}"
            . " refresh=$refresh"));
        isnt($rc, 0, "$name refresh=$refresh: nginx -t fails");
        my $why = qr/"refresh=$refresh" is less than 3s: no renewal/;
        like($out, qr/\[emerg\] \Q$name\E: $why could start/,
            "$name refresh=$refresh: the reason") or diag($out);

        my $line = $t->conf_line($line_re, 'test.conf');
        like($out, qr/ in \Q$conf\E:$line\b/,
            "$name refresh=$refresh: in $conf:$line") or diag($out);
    }

    for my $refresh (qw(3s 3 1m)) {
        my ($rc, $out) = $t->nginx_t(conf("$directive{$name}"
            . " refresh=$refresh"));
        is($rc, 0, "$name refresh=$refresh: nginx -t passes") or diag($out);
    }
}

# a session token is renewed a quarter of its session_ttl before its end,
# whatever refresh= says: a short session_ttl is not refused (the
# service takes 1 s and more), see taurus_guard_credentials

my ($rc, $out) = $t->nginx_t(conf('taurus_guard_credentials'
    . ' metadata=/_tg_meta session=/_tg_meta session_ttl=6s refresh=3s'));
is($rc, 0, 'session_ttl=6s refresh=3s: nginx -t passes') or diag($out);

$t->done_testing;
