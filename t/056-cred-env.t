#!/usr/bin/perl

# taurus_guard_credentials env: the AK/SK (and security token) of the
# SDKs' environment variables HUAWEICLOUD_SDK_AK, HUAWEICLOUD_SDK_SK and
# HUAWEICLOUD_SDK_SECURITY_TOKEN, read from nginx's environment (the
# harness starts nginx with this process's %ENV).  Batches arrive signed
# so that they verify upstream; a reload keeps them; nginx -t fails with
# a clear message when they are unset or bad, never printing a value;
# nginx -T prints no secret.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-metadata.pl" }

my $AK  = 'TGENVAKQWERTYUIOP123';
my $SK  = 'tgEnvSk0secretNEVERlogged7Hq2ZpXv9LmNbWd';
my $STS = 'tgEnvSecurityTokenNEVERlogged-0123456789abcdefXYZ_';

my $conf = <<"EOF";
worker_processes 2;

http {
    taurus_guard_credentials env;
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
    }
}
EOF

my $body = batch_json([ $INSTANCES[0] ]);

delete @ENV{qw(HUAWEICLOUD_SDK_AK HUAWEICLOUD_SDK_SK
    HUAWEICLOUD_SDK_SECURITY_TOKEN)};

my $t = Test::TaurusGuard->new;

# ---- nginx -t without them, or with bad values ------------------------

my ($rc, $out) = $t->nginx_t($conf);
isnt($rc, 0, 'unset: nginx -t fails');
my $msg = 'taurus_guard_credentials env: HUAWEICLOUD_SDK_AK and '
    . 'HUAWEICLOUD_SDK_SK must be set';
like($out, qr/\Q$msg\E/, 'unset: the message names the variables');
like($out, qr/test\.conf:\d+/, 'unset: with the file and line');

$ENV{HUAWEICLOUD_SDK_AK} = $AK;
($rc, $out) = $t->nginx_t($conf);
isnt($rc, 0, 'only the AK set: nginx -t fails');
like($out, qr/HUAWEICLOUD_SDK_SK must be set/, 'only the AK: the message');

$ENV{HUAWEICLOUD_SDK_SK} = "$SK with a space";
($rc, $out) = $t->nginx_t($conf);
isnt($rc, 0, 'an SK with a space: nginx -t fails');
like($out, qr/taurus_guard_credentials: environment: value with a space/,
    'an SK with a space: says why');
ok(index($out, substr($SK, 0, 12)) < 0, 'an SK with a space: the value '
    . 'is not printed');

$ENV{HUAWEICLOUD_SDK_SK} = '';
($rc, $out) = $t->nginx_t($conf);
isnt($rc, 0, 'an empty SK: nginx -t fails');
like($out, qr/taurus_guard_credentials: environment: /,
    'an empty SK: says why') or diag($out);

# a value the profile parser would read otherwise: a trailing blank cut,
# a line feed starting a comment or a security token of its own

for my $case (
    [ 'an SK with a trailing space', 'SK', "$SK " ],
    [ 'an SK with a line feed and a comment', 'SK', "$SK\n# note" ],
    [ 'an AK carrying a security token', 'AK',
        "$AK\nsecurity_token=$STS" ],
    [ 'a security token with a carriage return', 'SECURITY_TOKEN',
        "$STS\r" ])
{
    my ($what, $var, $value) = @$case;

    local $ENV{HUAWEICLOUD_SDK_AK} = $AK;
    local $ENV{HUAWEICLOUD_SDK_SK} = $SK;
    local $ENV{"HUAWEICLOUD_SDK_$var"} = $value;

    ($rc, $out) = $t->nginx_t($conf);
    isnt($rc, 0, "$what: nginx -t fails");
    like($out, qr/non-printable byte \(HUAWEICLOUD_SDK_$var\)/,
        "$what: says which") or diag($out);
    ok(index($out, substr($SK, 0, 12)) < 0 && index($out, $STS) < 0,
        "$what: no value printed");
}

# ---- set: verified upstream ----------------------------------------

$ENV{HUAWEICLOUD_SDK_SK} = $SK;
$ENV{HUAWEICLOUD_SDK_SECURITY_TOKEN} = $STS;

($rc, $out) = $t->nginx_t($conf);
is($rc, 0, 'set: nginx -t passes') or diag($out);
ok(index($out, $SK) < 0 && index($out, $STS) < 0,
    'set: nginx -t prints no secret');

# a binary upgrade starts the new master with only the variables "env"
# names: without them it would not start, and nginx -t says so (the
# module does not add them itself, which would put the SK in every
# worker's environment)

my $line = $t->conf_line(qr/taurus_guard_credentials env/, 'test.conf');
my $add = 'add env HUAWEICLOUD_SDK_AK; env HUAWEICLOUD_SDK_SK; '
    . 'env HUAWEICLOUD_SDK_SECURITY_TOKEN; to the main context';
my $upgrade = 'taurus_guard_credentials env: a binary upgrade (USR2) ';
like($out, qr/\[warn\] .*\Q$upgrade\E.* \Q$add\E .* in \S+test\.conf:$line\b/,
    'no env directives: nginx -t warns, naming the three, and where')
    or diag($out);

# "env" after the http block counts too: all of them are known by then

my $envs = "env HUAWEICLOUD_SDK_AK;\nenv HUAWEICLOUD_SDK_SK;\n";

($rc, $out) = $t->nginx_t($conf . $envs);
is($rc, 0, 'AK and SK named by env: nginx -t passes') or diag($out);
like($out, qr/add env HUAWEICLOUD_SDK_SECURITY_TOKEN; to the main/,
    'AK and SK named by env: the warning names the security token only')
    or diag($out);

($rc, $out) = $t->nginx_t($conf . $envs
    . "env HUAWEICLOUD_SDK_SECURITY_TOKEN;\n");
is($rc, 0, 'all named by env: nginx -t passes') or diag($out);
unlike($out, qr/\[warn\]/, 'all named by env: no warning') or diag($out);

# "env NAME=value;" names the variable too (nginx sets it for the new
# master and the workers): not reported missing

($rc, $out) = $t->nginx_t($conf . "env HUAWEICLOUD_SDK_AK;\n"
    . "env HUAWEICLOUD_SDK_SK=set-in-conf;\n");
is($rc, 0, 'the SK named with a value: nginx -t passes') or diag($out);
like($out, qr/add env HUAWEICLOUD_SDK_SECURITY_TOKEN; to the main/,
    'the SK named with a value: the warning names the security token only')
    or diag($out);

($rc, $out) = $t->nginx_t($conf . "env HUAWEICLOUD_SDK_AK=set-in-conf;\n"
    . "env HUAWEICLOUD_SDK_SK=;\nenv HUAWEICLOUD_SDK_SECURITY_TOKEN=x;\n");
is($rc, 0, 'all named with values: nginx -t passes') or diag($out);
unlike($out, qr/\[warn\]/, 'all named with values: no warning')
    or diag($out);

TaurusGuard::Metadata::add_key($t, $AK, $SK, $STS);
TaurusGuard::Metadata::upstream_keys($t);
$t->run($conf);

for my $i (1 .. 3) {
    my $r = $t->post(upgrade_path(), $body);
    is($r->{status}, 200, "request $i: 200") or diag($r->{raw});
}

my @up = $t->upstream_records;
is(scalar @up, 3, 'three forwarded');
is(scalar(grep { $_->{signature}{ok} } @up), 3,
    'all verify upstream with the SK and security token of the '
    . 'environment') or diag(explain([ map { $_->{signature}{error} } @up ]));
my $u = $up[0] || { headers => [] };
is(TaurusGuard::Metadata::access_of($u), $AK, 'Access= is the AK');
is(join('|', headers_named($u->{headers}, 'X-Security-Token')), $STS,
    'X-Security-Token from HUAWEICLOUD_SDK_SECURITY_TOKEN');
like(join('|', headers_named($u->{headers}, 'Authorization')),
    qr/SignedHeaders=[^,]*\bx-security-token\b/, 'and signed');

# nginx -T: the configuration says "env", no value

my $dump = $t->_cmd($t->{nginx}, '-T', '-p', $t->testdir . '/', '-e',
    'logs/nginx-t.log', '-c', 'conf/nginx.conf');
like($dump, qr/taurus_guard_credentials env;/, 'nginx -T prints the '
    . 'configuration');
for my $s ([ SK => $SK ], [ 'security token' => $STS ]) {
    ok(index($dump, $s->[1]) < 0 && index($dump, substr($s->[1], 0, 12)) < 0,
        "nginx -T: no $s->[0]");
}

# a reload: the master's environment is unchanged, so are the credentials

$t->reload;
my $r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, 'after a reload: 200') or diag($r->{raw});
@up = $t->upstream_records;
is(($up[-1] || {})->{signature}{ok}, 1, 'after a reload: verifies');

$t->stop;

# no secret in error.log (the proxy's header dumps aside), the responses
# or the audit log

my $log = $t->error_log_without_proxy_dumps;
my $responses = join "\n", @{ $t->{responses} };
my $audit = $t->read_file('audit.log') || '';
ok(length $audit, 'audit log written');

for my $s ([ SK => $SK ], [ 'security token' => $STS ]) {
    my ($name, $v) = @$s;
    for my $p ($v, substr($v, 0, 12), substr($v, -12)) {
        ok(index($log, $p) < 0, "error.log: no $name ('" . substr($p, 0, 4)
            . "...')");
        ok(index($responses, $p) < 0, "responses: no $name");
        ok(index($audit, $p) < 0, "audit log: no $name");
    }
}
ok(index($t->error_log, $SK) < 0, 'error.log, header dumps included: no SK');

$t->done_testing;

