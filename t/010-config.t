#!/usr/bin/perl

# Every configuration mistake fails `nginx -t` with the file and line.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

my ($i0, $i1, $i2) = @INSTANCES;

$t->write_credentials;
$t->write_credentials(name => 'cred-0640', mode => 0640);
$t->write_credentials(name => 'cred-0604', mode => 0604);
$t->write_credentials(name => 'cred-0644', mode => 0644);
$t->write_credentials(name => 'cred-no-ak', ak => undef);
$t->write_credentials(name => 'cred-no-sk', sk => undef);
$t->write_token;

$t->write_file('allow.d/dup.conf', "# the main block's $i0 again\n"
    . "$PROJECT $i2;\n$PROJECT $i0;\n");
$t->write_file('allow.d/ok.conf', "$PROJECT $i1;\n");

# A template with knobs: each case changes one thing of a valid config.

sub conf {
    my (%o) = @_;

    my $cred = exists $o{cred} ? $o{cred}
        : 'taurus_guard_credentials %%TESTDIR%%/credentials;';
    my $token = $o{token} || '';
    my $audit = exists $o{audit} ? $o{audit}
        : 'taurus_guard_audit_log %%TESTDIR%%/audit.log;';
    my $allow = exists $o{allow} ? $o{allow} : "%%PROJECT%% $i0 $i1;";

    return <<"EOF";
http {
    $cred
    $token
    $audit

    taurus_guard_allow {
        $allow
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

my $conf = $t->conf_path('test.conf');
my ($rc, $out);

# the base is valid: the refusals below are each one mistake

($rc, $out) = $t->nginx_t(conf());
is($rc, 0, 'valid config: nginx -t passes') or diag($out);

($rc, $out) = $t->nginx_t(conf(cred => '',
    token => 'taurus_guard_token file=%%TESTDIR%%/token;'));
is($rc, 0, 'token only: nginx -t passes') or diag($out);

($rc, $out) = $t->nginx_t(conf(allow => "%%PROJECT%% $i0;\n"
    . "        %%PROJECT%% $i2;\n"
    . "        include %%TESTDIR%%/allow.d/ok.conf;\n"
    . "        %%PROJECT2%% $i0;"));
is($rc, 0, 'lines add up, include, same instance for two projects: passes')
    or diag($out);

# an instance ID of a project ID's length that is no project of the list

($rc, $out) = $t->nginx_t(conf(allow => "%%PROJECT%% $i0 " . ('0' x 32)
    . ";\n        %%PROJECT2%% " . ('a' x 32) . ';'));
is($rc, 0, 'instances of 32 letters or digits: passes') or diag($out);

my $stray = "taurus_guard_allow: instance \"$PROJECT2\" of project"
    . " \"$PROJECT\" is a project ID of the allow-list: a missing \";\"?";

# [ name, conf, message, line pattern (in test.conf, or [file, line]) ]

my @cases = (
    [ 'project ID of 31', conf(allow => substr($PROJECT, 0, 31) . " $i0;"),
        qr/project/i, qr/^\s+\Q${\ substr($PROJECT, 0, 31)}\E /, ],
    [ 'project ID of 33', conf(allow => "${PROJECT}0 $i0;"),
        qr/project/i, qr/^\s+\Q${PROJECT}0\E /, ],
    [ 'project ID with a dash', conf(allow => substr($PROJECT, 0, 31)
        . "- $i0;"), qr/project/i, qr/^\s+\Q${\ substr($PROJECT, 0, 31)}\E-/, ],
    [ 'instance ID of 31', conf(allow => "%%PROJECT%% $i0 "
        . substr($i1, 0, 31) . ';'), qr/instance/i, qr/\Q$i0\E/, ],
    [ 'instance ID of 65', conf(allow => "%%PROJECT%% " . ('a' x 65) . ';'),
        qr/instance/i, qr/a{65}/, ],
    [ 'instance ID with _', conf(allow => "%%PROJECT%% " . ('a' x 35) . '_;'),
        qr/instance/i, qr/a{35}_/, ],
    [ 'instance twice on a line', conf(allow => "%%PROJECT%% $i0 $i1 $i0;"),
        qr/duplicate|twice|already/i, qr/\Q$i1 $i0\E/, ],
    [ 'instance twice across lines', conf(allow => "%%PROJECT%% $i0;\n"
        . "        %%PROJECT%% $i1;\n        %%PROJECT%% $i0 $i2;"),
        qr/duplicate|twice|already/i, qr/\Q$i0 $i2\E/, ],
    [ 'instance twice through include', conf(allow => "%%PROJECT%% $i0;\n"
        . "        include %%TESTDIR%%/allow.d/dup.conf;"),
        qr/duplicate|twice|already/i,
        [ $t->testdir . '/allow.d/dup.conf', 3 ], ],
    [ 'project line without instances', conf(allow => "%%PROJECT%% $i0;\n"
        . "        %%PROJECT2%%;"), qr/instance|project/i,
        qr/^\s+\Q$PROJECT2\E;/, ],
    [ 'a project ID as an instance (a missing ";")', conf(allow =>
        "%%PROJECT%% $i0\n        %%PROJECT2%% $i1;\n"
        . "        %%PROJECT2%% $i2;"),
        qr/\Q$stray\E/,
        qr/^\s+\Q$PROJECT2 $i1;\E/, ],
    [ 'a project ID as its own instance', conf(allow =>
        "%%PROJECT%% $i0 %%PROJECT%%;"),
        qr/instance "\Q$PROJECT\E" of project "\Q$PROJECT\E"/,
        qr/^\s+\Q$PROJECT $i0 $PROJECT;\E/, ],
    [ 'credentials file missing', conf(cred =>
        'taurus_guard_credentials %%TESTDIR%%/no-such-file;'),
        qr/no-such-file/, qr/taurus_guard_credentials/, ],
    [ 'credentials file 0640', conf(cred =>
        'taurus_guard_credentials %%TESTDIR%%/cred-0640;'),
        qr/cred-0640.*(?:permission|mode|group|other|readable)
            |(?:permission|mode|group|other|readable).*cred-0640/xi,
        qr/taurus_guard_credentials/, ],
    [ 'credentials file 0640, mode shown', conf(cred =>
        'taurus_guard_credentials %%TESTDIR%%/cred-0640;'),
        qr/mode 0?640\b/,
        qr/taurus_guard_credentials/, ],
    [ 'credentials file 0604', conf(cred =>
        'taurus_guard_credentials %%TESTDIR%%/cred-0604;'),
        qr/permission|mode|group|other|readable/i,
        qr/taurus_guard_credentials/, ],
    [ 'credentials file 0644', conf(cred =>
        'taurus_guard_credentials %%TESTDIR%%/cred-0644;'),
        qr/permission|mode|group|other|readable/i,
        qr/taurus_guard_credentials/, ],
    [ 'credentials without ak', conf(cred =>
        'taurus_guard_credentials %%TESTDIR%%/cred-no-ak;'),
        qr/\bak\b/i, qr/taurus_guard_credentials/, ],
    [ 'credentials without sk', conf(cred =>
        'taurus_guard_credentials %%TESTDIR%%/cred-no-sk;'),
        qr/\bsk\b/i, qr/taurus_guard_credentials/, ],
    [ 'neither credentials nor token', conf(cred => ''),
        qr/credentials|token/i, qr/taurus_guard on;/, ],
    [ 'no audit log', conf(audit => ''), qr/audit/i,
        qr/taurus_guard on;/, ],
);

for my $c (@cases) {
    my ($name, $text, $msg, $where) = @$c;

    ($rc, $out) = $t->nginx_t($text);
    note($out);
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, qr/\[emerg\]/, "$name: [emerg]");
    like($out, $msg, "$name: message") or diag($out);

    my ($file, $line) = ref $where eq 'ARRAY' ? @$where
        : ($conf, $t->conf_line($where, 'test.conf'));

    ok(defined $line, "$name: marker found in the config") or next;
    like($out, qr/ in \Q$file\E:$line\b/, "$name: in $file:$line")
        or diag($out);

    unlike($out, qr/\Q$TEST_SK\E/, "$name: no SK in the output");
}

# files the workers re-read: readable by the worker user and by no one
# else, and nginx -t says so (README, Operations)

$t->write_token(undef, name => 'token-0644', mode => 0644);

($rc, $out) = $t->nginx_t(conf(cred => '',
    token => 'taurus_guard_token file=%%TESTDIR%%/token-0644;'));
note($out);
like($out, qr/token-0644.*(?:group|other|mode|permission|readable)/i,
    'token file 0644: nginx -t says so');

SKIP: {
    skip 'not root: workers run as this user', 2
        unless $> == 0 && defined $t->{worker_uid} && $t->{worker_uid} != 0;

    # owned by root, 0600: the master reads it, the workers cannot

    $t->write_file('token-root', "$TEST_TOKEN\n", 0600);
    ($rc, $out) = $t->nginx_t(conf(cred => '',
        token => 'taurus_guard_token file=%%TESTDIR%%/token-root;'));
    note($out);
    like($out, qr/token-root.*(?:user|owner|readable|permission)/i,
        'token file unreadable by the workers: nginx -t says so');

    $t->write_file('cred-root', "[basic]\nak = $TEST_AK\nsk = $TEST_SK\n",
        0600);
    ($rc, $out) = $t->nginx_t(conf(cred =>
        'taurus_guard_credentials %%TESTDIR%%/cred-root;'));
    note($out);
    unlike($out, qr/\Q$TEST_SK\E/, 'root-owned credentials: no SK shown');
}

# nginx -T never prints a secret

($rc, $out) = $t->nginx_t(conf(token =>
    'taurus_guard_token file=%%TESTDIR%%/token;'));
is($rc, 0, 'credentials and token: nginx -t passes') or diag($out);

$out = $t->_cmd($t->{nginx}, '-T', '-p', $t->testdir . '/', '-e',
    'logs/nginx-t.log', '-c', 'conf/test.conf');
like($out, qr/taurus_guard_credentials/, 'nginx -T dumps the config');
unlike($out, qr/\Q$TEST_SK\E/, 'nginx -T: no SK');
unlike($out, qr/\Q$TEST_TOKEN\E/, 'nginx -T: no token');

$t->done_testing;
