#!/usr/bin/perl

# An audit log among nginx's own logs on Debian (a "*.log" file in
# /var/log/nginx), which /etc/logrotate.d/nginx compresses and deletes
# after 14 days, passes `nginx -t` with a warning naming the file and
# line; another name there, or another directory, gets none.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

plan(skip_all => 'no Debian logrotate rule for nginx (/etc/logrotate.d/nginx)')
    unless -e '/etc/logrotate.d/nginx' && -d '/var/log/nginx';
plan(skip_all => 'not root: /var/log/nginx is not writable')
    unless $> == 0;

my $t = Test::TaurusGuard->new;

$t->write_credentials;

my @made;

sub conf {
    my ($path) = @_;

    return <<"EOF";
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log $path;

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
    }
}
EOF
}

my $name = "taurus-guard-test-$$";
my $text = 'is one of /var/log/nginx/*.log, which /etc/logrotate.d/nginx '
    . 'rotates, compresses and deletes after 14 days: give the audit log '
    . 'a directory of its own, as /var/log/taurus-guard';

for my $case ([ "/var/log/nginx/$name.log", 1 ],
    [ "/var/log/nginx/$name.audit", 0 ],
    [ $t->testdir . '/audit.log', 0 ])
{
    my ($path, $warned) = @$case;
    push @made, $path;

    my ($rc, $out) = $t->nginx_t(conf($path));
    is($rc, 0, "$path: nginx -t passes") or diag($out);

    my $line = $t->conf_line(qr/taurus_guard_audit_log/, 'test.conf');

    if ($warned) {
        my $where = qr/ in \S+\/test\.conf:$line$/m;
        like($out, qr/\[warn\] audit log "\Q$path\E" \Q$text\E$where/,
            "$path: warned, with the file and line");
    } else {
        unlike($out, qr/\[warn\].*logrotate/, "$path: no warning")
            or diag($out);
    }
}

END { unlink grep { m{^/var/log/nginx/} } @made }

$t->done_testing;
