#!/usr/bin/perl

# Never forwarded without its credentials: when the gateway cannot put
# the configured token or signature on a request, it refuses it (503,
# TG.0503, an "error" audit record) and the upstream gets nothing.  The
# failures are real ones: a token file that turns bad under a running
# nginx, an AK too long for the Authorization header, and an OpenSSL
# configuration (OPENSSL_CONF) that takes SHA-256 or the random
# generator away.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

my $token_conf = <<"EOF";
http {
    taurus_guard_token file=%%TESTDIR%%/token;
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

my $cred_conf = <<"EOF";
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
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF

my $body = batch_json([ $INSTANCES[0] ]);


# A refusal for a request that could not be given its credentials:
# 503 TG.0503, one "error" record with $reason, nothing upstream.

sub refused {
    my ($t, $r, $reason, $name) = @_;

    my $j = $t->is_refusal($r, 503, 'TG.0503', $name);
    is($j->{error_msg}, $reason, "$name: error_msg says why");
    is(scalar $t->upstream_records, 0, "$name: nothing forwarded");

    my @a = $t->wait_audit($j->{audit_id} || 'none', 1);
    is(scalar(grep { ($_->{decision} || '') eq 'error' } @a), 1,
        "$name: one error record");
    is(($a[0] || {})->{reason}, $reason, "$name: audit reason");
    is(($a[0] || {})->{project_id}, $PROJECT, "$name: audit project_id");
    ok(!grep({ ($_->{decision} || '') eq 'allow' } @a),
        "$name: no allow record");
}


# ---- a token file that turns bad after a good token was loaded -----

my $t = Test::TaurusGuard->new;

$t->upstream(token => $TEST_TOKEN);
$t->write_token;
$t->run($token_conf);

my $r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, 'good token: 200');
my @up = $t->upstream_records;
is(($up[0] || {})->{token_ok}, 1, 'good token: upstream saw it');

# each bad state in turn; the worker looks at most once a second

my @bad = (
    [ 'emptied', '' ],
    [ 'a newline inside', "MIITgTest\nTokenSecondLine\n" ],
    [ 'a non-printable byte', "MIITgTest\x01Token\n" ],
    [ 'deleted', undef ],
);

my $n = 1;

for my $b (@bad) {
    my ($what, $content) = @$b;

    if (defined $content) {
        $t->write_secret_file('token', $content);
    } else {
        unlink $t->testdir . '/token';
    }

    sleep 1.2;

    $r = $t->post(upgrade_path(), $body);
    $n++;
    is($r->{status}, 200, "token file $what after a good one: 200");
    @up = $t->upstream_records;
    is(scalar @up, $n, "token file $what: forwarded");
    is(join('|', headers_named(($up[-1] || {})->{headers}, 'X-Auth-Token')),
        $TEST_TOKEN, "token file $what: the last good token is sent");
}

my $log = $t->error_log;
like($log, qr/\[error\][^\n]*taurus_guard[^\n]*\/token"[^\n]*
    previous[ ]token[ ]is[ ]kept/x,
    'bad token file: one error line, previous token kept');
unlike($log, qr/\[alert\].*token file/, 'bad token file: no alert while '
    . 'a good token is kept');
is(scalar(grep { /\[error\].*taurus_guard.*\/token"/ } split /\n/, $log),
    1, 'four bad states within a minute: one error line');

# a good file again is picked up (the upstream only knows $TEST_TOKEN, so
# it refuses the new one: what matters is what the gateway sent)

$t->write_secret_file('token', "MIITgRefreshedToken-0001\n");
sleep 1.2;
$r = $t->post(upgrade_path(), $body);
@up = $t->upstream_records;
is(join('|', headers_named(($up[-1] || {})->{headers}, 'X-Auth-Token')),
    'MIITgRefreshedToken-0001', 'token file good again: the new token');

$t->finish;


# ---- a token file made bad after nginx -t, before any request --------

my $t2 = Test::TaurusGuard->new;

$t2->upstream(token => $TEST_TOKEN);
$t2->write_token;
$t2->expect_alert(qr/taurus_guard.*\/token"/);
$t2->run($token_conf);

# nginx -t and the start read the good file; the workers have not.
# The worker looks at the file at most once a second: one state a second.

$t2->write_secret_file('token', '');

$r = $t2->post(upgrade_path(), $body);
refused($t2, $r, 'no usable IAM token', 'emptied before the first request');

my ($alert) = grep { /\[alert\].*taurus_guard.*\/token"/ }
    split /\n/, $t2->error_log;
ok(defined $alert && $alert !~ /previous token/,
    'no token at all: an alert, no token kept');

sleep 1.2;
$t2->write_secret_file('token', "MIITgTest\nTokenSecondLine\n");
$r = $t2->post(upgrade_path(), $body);
refused($t2, $r, 'no usable IAM token', 'a newline inside the token');

sleep 1.2;
$t2->write_secret_file('token', "MIITgTest\x7fToken\n");
$r = $t2->post(upgrade_path(), $body);
refused($t2, $r, 'no usable IAM token', 'a non-printable byte');

sleep 1.2;
$t2->write_secret_file('token', "MIITg Test\n");
$r = $t2->post(upgrade_path(), $body);
refused($t2, $r, 'no usable IAM token', 'a space inside the token');

sleep 1.2;
unlink $t2->testdir . '/token';
$r = $t2->post(upgrade_path(), $body);
refused($t2, $r, 'no usable IAM token', 'the token file deleted');

sleep 1.2;
$t2->write_secret_file('token', "MIITgTest\n", 0640);
$r = $t2->post(upgrade_path(), $body);
refused($t2, $r, 'no usable IAM token', 'a token file readable by group');

# a good token arrives: used at the next look (at most a second later)

sleep 1.2;
$t2->write_token;
$r = $t2->post(upgrade_path(), $body);
is($r->{status}, 200, 'good token after bad ones: 200');
@up = $t2->upstream_records;
is(scalar @up, 1, 'good token after bad ones: forwarded');
is(($up[0] || {})->{token_ok}, 1, 'good token after bad ones: the token');

$t2->finish;


# ---- a long AK: the Authorization value is sized for it ---------------
#
# An earlier module built the Authorization value in a fixed 512-byte
# buffer and refused every request with an AK of 400 bytes.  Now it is
# sized from the AK: the request is signed and verifies.

my $long_ak = 'TGAK' x 100;

my $t3 = Test::TaurusGuard->new;

$t3->upstream(ak => $long_ak);
$t3->write_credentials(ak => $long_ak);
$t3->run($cred_conf);

$r = $t3->post(upgrade_path(), $body);
is($r->{status}, 200, '400-byte AK: 200');
@up = $t3->upstream_records;
is(scalar @up, 1, '400-byte AK: forwarded once');
is(($up[0] || {})->{signature}{ok}, 1, '400-byte AK: signature verifies');
unlike($t3->error_log, qr/\Q$TEST_SK\E/, '400-byte AK: no SK in the log');

$t3->finish;


# ---- OpenSSL without SHA-256: the gateway does not start ---------------
#
# default_properties = fips=yes with no FIPS provider: every implicit
# fetch (EVP_sha256() in EVP_Digest and HMAC) fails.  The random
# generator is pointed at the default provider, so only the digests go.

my $openssl = `sh -c 'command -v openssl' 2>/dev/null`;
chomp $openssl;

SKIP: {
    skip 'no openssl command', 15 unless length $openssl;

    my $t4 = Test::TaurusGuard->new;

    my $nosha = $t4->write_file('sign-no-sha256.cnf', <<'EOF');
openssl_conf = openssl_init

[openssl_init]
providers = provider_sect
alg_section = alg_sect
random = random_sect

[provider_sect]
default = default_sect

[default_sect]
activate = 1

[alg_sect]
default_properties = fips=yes

[random_sect]
random = CTR-DRBG
cipher = AES-256-CTR
properties = fips=no
seed_properties = fips=no
EOF

    {
        local $ENV{OPENSSL_CONF} = $nosha;
        my $dg = `echo x | $openssl dgst -sha256 2>&1`;
        isnt($? >> 8, 0, 'no-SHA-256 conf: openssl dgst -sha256 fails');
        my $rnd = `$openssl rand -hex 8 2>&1`;
        like($rnd, qr/\A[0-9a-f]{16}\n\z/,
            'no-SHA-256 conf: the random generator still works');
    }

    $t4->write_credentials;

    my ($rc, $out);
    {
        local $ENV{OPENSSL_CONF} = $nosha;
        ($rc, $out) = $t4->nginx_t($cred_conf);
    }
    isnt($rc, 0, 'no SHA-256: nginx -t fails');
    like($out, qr/\[emerg\] taurus_guard_allow: could not compute the digest/,
        'no SHA-256: the allow-list digest cannot be made')
        or diag($out);

    ($rc, $out) = $t4->nginx_t($cred_conf);
    is($rc, 0, 'the same configuration passes nginx -t with OpenSSL '
        . 'as usual') or diag($out);
    unlike($out, qr/\Q$TEST_SK\E/, 'no SK in nginx -t output');

    $t4->finish;


    # ---- OpenSSL without a random generator: nothing forwarded ---------
    #
    # The DRBG is looked up with a property no provider has: RAND_bytes()
    # fails, SHA-256 still works, so nginx starts.  The audit id comes
    # from RAND_bytes(): the module cannot even open a record.

    my $t5 = Test::TaurusGuard->new;

    my $norand = $t5->write_file('sign-no-rand.cnf', <<'EOF');
openssl_conf = openssl_init

[openssl_init]
providers = provider_sect
random = random_sect

[provider_sect]
default = default_sect

[default_sect]
activate = 1

[random_sect]
random = CTR-DRBG
properties = provider=taurus-guard-test-none
EOF

    $t5->upstream;
    $t5->write_credentials;
    $t5->expect_alert(qr/taurus_guard: RAND_bytes\(\) failed/);

    {
        local $ENV{OPENSSL_CONF} = $norand;
        my $rnd = `$openssl rand -hex 8 2>&1`;
        isnt($? >> 8, 0, 'no-RAND conf: openssl rand fails');
        `echo x | $openssl dgst -sha256 2>&1`;
        is($? >> 8, 0, 'no-RAND conf: SHA-256 still works');

        $t5->run($cred_conf);
    }

    $r = $t5->post(upgrade_path(), $body);
    isnt($r->{status} || 0, 200, 'no RAND: not a success');
    is(scalar $t5->upstream_records, 0, 'no RAND: nothing forwarded');
    ok(!grep({ ($_->{decision} || '') eq 'allow' } $t5->audit_records),
        'no RAND: no allow record');
    like($t5->error_log, qr/\[alert\].*taurus_guard: RAND_bytes\(\) failed/,
        'no RAND: an alert says why');

    # the header filter passes the 500 through when it cannot give it an
    # id either (it once closed the connection instead)
    ok(defined $r->{status} && $r->{status} =~ /\A5\d\d\z/,
        'no RAND: the client gets a 5xx answer');

    $t5->finish;
}

$t->done_testing;
