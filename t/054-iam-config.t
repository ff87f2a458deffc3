#!/usr/bin/perl

# taurus_guard_token iam=: every configuration mistake fails `nginx -t`
# with the file and line (of the directive, or of the password file's
# line at fault), and never prints the password.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-iam.pl" }

my $PASSWORD = $TaurusGuard::IAM::PASSWORD;

sub conf {
    my ($token) = @_;
    $token = 'iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini'
        unless defined $token;

    return <<"EOF";
http {
    taurus_guard_token $token;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
        %%PROJECT2%% $INSTANCES[0];
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
    }
}
EOF
}

my $t = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t);
TaurusGuard::IAM::iam_supported($t, conf()) or do {
    $t->done_testing;
    exit;
};

my $d = $t->testdir;

TaurusGuard::IAM::write_password_file($t, name => 'iam-0644', mode => 0644);
TaurusGuard::IAM::write_password_file($t, name => 'iam-0640', mode => 0640);
# neutral names: a message must not pass for quoting its file's name

TaurusGuard::IAM::write_password_file($t, name => 'iam-k1', user => undef);
TaurusGuard::IAM::write_password_file($t, name => 'iam-k2',
    password => undef);
TaurusGuard::IAM::write_password_file($t, name => 'iam-k3', domain => undef);
$t->write_secret_file('iam-k4', "[basic]\ndomain = d\n"
    . "user = u\npassword = $PASSWORD\n");
$t->write_secret_file('iam-k5', "# IAM\n[iam]\ndomain = d\nuser = u\n"
    . "password = $PASSWORD\npassword = $PASSWORD\n");
$t->write_secret_file('iam-k6', "[iam]\ndomain = d\n"
    . "user = u\npassword =\n");

my ($rc, $out);

($rc, $out) = $t->nginx_t(conf());
is($rc, 0, 'valid IAM configuration: nginx -t passes') or diag($out);
unlike($out, qr/serves every project/,
    'IAM tokens are per project: no warning for two projects');
unlike($out, qr/\Q$PASSWORD\E/, 'valid: no password in the output');

($rc, $out) = $t->nginx_t(conf('iam=/_tg_iam '
    . 'password_file=%%TESTDIR%%/iam.ini refresh=8s'));
is($rc, 0, 'refresh=8s: nginx -t passes') or diag($out);

($rc, $out) = $t->nginx_t(conf('iam=/_tg_iam '
    . 'password_file=%%TESTDIR%%/iam.ini refresh=1h'));
is($rc, 0, 'refresh=1h: nginx -t passes') or diag($out);

my $conf = $t->conf_path('test.conf');
my $line_re = qr/^\s*taurus_guard_token\b/;

# [ name, token parameters, message, where in the password file
# ([file, line]) if anywhere, words the message must not have ]

my @cases = (
    [ 'iam= without password_file', 'iam=/_tg_iam',
        qr/password_file/ ],
    [ 'password_file without iam=', "password_file=$d/iam.ini",
        qr/\biam\b|file=/ ],
    [ 'password file missing', "iam=/_tg_iam password_file=$d/no-such-iam",
        qr/no-such-iam/ ],
    [ 'password file 0644', "iam=/_tg_iam password_file=$d/iam-0644",
        qr/iam-0644.*(?:group|other|mode|permission|readable)/i ],
    [ 'password file 0640, mode shown',
        "iam=/_tg_iam password_file=$d/iam-0640", qr/mode 0?640\b/ ],
    [ 'password file without user',
        "iam=/_tg_iam password_file=$d/iam-k1", qr/iam-k1.*\buser\b/,
        undef, qr/\b(?:domain|password)\b/ ],
    [ 'password file without password',
        "iam=/_tg_iam password_file=$d/iam-k2", qr/iam-k2.*\bpassword\b/,
        undef, qr/\b(?:domain|user)\b/ ],
    [ 'password file without domain',
        "iam=/_tg_iam password_file=$d/iam-k3", qr/iam-k3.*\bdomain\b/,
        undef, qr/\b(?:user|password)\b/ ],
    [ 'password file without [iam]',
        "iam=/_tg_iam password_file=$d/iam-k4", qr/iam-k4.*\[iam\]/,
        undef, qr/\[basic\]/ ],
    [ 'password file with an empty password',
        "iam=/_tg_iam password_file=$d/iam-k6", qr/iam-k6/,
        [ "$d/iam-k6", 4 ] ],
    [ 'password repeated in the file',
        "iam=/_tg_iam password_file=$d/iam-k5", qr/iam-k5/,
        [ "$d/iam-k5", 6 ] ],
    [ 'refresh not a time', "iam=/_tg_iam password_file=$d/iam.ini "
        . 'refresh=soon', qr/refresh/ ],
    [ 'an unknown parameter', "iam=/_tg_iam password_file=$d/iam.ini "
        . 'colour=blue', qr/colour/ ],
    [ 'iam= empty', "iam= password_file=$d/iam.ini", qr/\biam\b/ ],
);

for my $c (@cases) {
    my ($name, $token, $msg, $where, $not) = @$c;

    ($rc, $out) = $t->nginx_t(conf($token));
    note($out);
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, qr/\[emerg\]/, "$name: [emerg]");
    like($out, $msg, "$name: message") or diag($out);

    my $line = $t->conf_line($line_re, 'test.conf');
    ok(defined $line, "$name: directive found in the config") or next;
    like($out, qr/ in \Q$conf\E:$line\b/, "$name: in $conf:$line")
        or diag($out);

    if ($where) {
        my ($file, $l) = @$where;
        like($out, qr/\Q$file\E(?:", line |:)$l\b/,
            "$name: names $file, line $l") or diag($out);
    }

    # the message without file names
    (my $words = $out) =~ s{\Q$d\E/\S*}{}g;
    unlike($words, $not, "$name: the message names only what is wrong")
        if $not;

    unlike($out, qr{\Q$d\E/[^"\s]*"\d},
        "$name: nothing glued to a quoted file name") or diag($out);

    unlike($out, qr/\Q$PASSWORD\E/, "$name: no password in the output");
}

SKIP: {
    skip 'not root: workers run as this user', 3
        unless $> == 0 && defined $t->{worker_uid} && $t->{worker_uid} != 0;

    # owned by root, 0600: the master reads it, the workers could not

    $t->write_file('iam-root', "[iam]\ndomain = d\nuser = u\n"
        . "password = $PASSWORD\n", 0600);
    ($rc, $out) = $t->nginx_t(conf("iam=/_tg_iam password_file=$d/iam-root"));
    note($out);
    isnt($rc, 0, 'password file unreadable by the workers: nginx -t fails');
    like($out, qr/iam-root.*(?:user|owner|readable|permission)/i,
        'password file unreadable by the workers: says so');
    unlike($out, qr/\Q$PASSWORD\E/, 'root-owned password file: no password');
}

# nginx -T prints the configuration, never the password

($rc, $out) = $t->nginx_t(conf());
$out = $t->_cmd($t->{nginx}, '-T', '-p', "$d/", '-e', 'logs/nginx-t.log',
    '-c', 'conf/test.conf');
like($out, qr/password_file=/, 'nginx -T dumps the configuration');
unlike($out, qr/\Q$PASSWORD\E/, 'nginx -T: no password');

$t->done_testing;
