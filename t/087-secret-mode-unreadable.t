#!/usr/bin/perl

# A secret file the worker user owns but may not read (mode 0000, 0200,
# 0300).  nginx -t checked the owner and refused group or other bits,
# but the master, root, reads any mode, so such a file passed; the
# workers then could not read it: a token file is read by each worker
# before its first batch, so every batch got 503 ("cannot be opened",
# Permission denied) and /health failed, on a configuration nginx -t had
# called good; a credentials file or an IAM password file was never
# picked up again when it changed.
#
# nginx -t fails, naming the file, its mode, the worker user, the fix
# and the directive's file:line, for the three kinds of secret file; a
# file the owner may read (0400, 0600) passes and the gateway forwards.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

plan(skip_all => 'not root: the master could not read the file either')
    unless $> == 0;

my $t = Test::TaurusGuard->new;
my $d = $t->testdir;

plan(skip_all => 'no unprivileged worker user')
    unless defined $t->{worker_uid} && $t->{worker_uid} != 0;

my $user = $ENV{TG_USER} || 'nobody';

$t->upstream(token => $TEST_TOKEN);
$t->write_credentials;
$t->write_token;
$t->write_secret_file('iam.ini', "[iam]\ndomain = d\nuser = u\n"
    . "password = tgIamPassNEVERlogged-7Rw2Xq\n");

my $conf = <<"EOF";
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_token file=%%TESTDIR%%/token;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location /iam/ {
            taurus_guard on;
            taurus_guard_token iam=/_tg_iam
                               password_file=%%TESTDIR%%/iam.ini;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_iam {
            internal;
            proxy_pass http://127.0.0.1:9/v3/auth/tokens;
        }
    }
}
EOF

my ($rc, $out) = $t->nginx_t($conf);
is($rc, 0, 'every file 0600: nginx -t passes') or diag($out);

my $tconf = $t->conf_path('test.conf');

for my $c (
    [ 'credentials file', 'credentials', qr/taurus_guard_credentials/ ],
    [ 'token file', 'token', qr/token file=/ ],
    [ 'IAM password file', 'iam.ini', qr/password_file=/ ],
)
{
    my ($name, $file, $marker) = @$c;
    my $line = $t->conf_line($marker, 'test.conf');

    for my $mode (0000, 0200, 0300) {
        my $m = sprintf '0%o', $mode;
        $m = '0000' if $mode == 0;

        chmod $mode, "$d/$file";
        ($rc, $out) = $t->nginx_t;
        chmod 0600, "$d/$file";

        isnt($rc, 0, "$name, mode $m: nginx -t fails");
        my $who = qr/nginx workers run as its owner "\Q$user\E" \(uid \d+\)/;
        my $fix = qr/could not read it: make it 0600, in \Q$tconf\E:$line/;
        like($out, qr/\[emerg\] .*"\Q$d\/$file\E" has mode $m: $who and $fix$/m,
            "$name, mode $m: names the file, the mode, the fix, the line")
            or diag($out);
    }

    chmod 0400, "$d/$file";
    ($rc, $out) = $t->nginx_t;
    chmod 0600, "$d/$file";
    is($rc, 0, "$name, mode 0400: nginx -t passes") or diag($out);
}

# and the gateway, with the files as they should be

$t->run($conf);
my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 200, 'every file 0600: a batch is forwarded');

$t->done_testing;
