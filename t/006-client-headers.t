#!/usr/bin/perl

# Headers that carry or shape cloud credentials never come from the
# caller: whatever their case, however many times sent, the upstream sees
# only the gateway's.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream(token => $TEST_TOKEN);
$t->write_credentials;
$t->write_token;

$t->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
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

my $evil = 'EVILcaller';

my @client = (
    [ 'aUTHORIZATION', "SDK-HMAC-SHA256 Access=${evil}AK, "
        . "SignedHeaders=x-sdk-date, Signature=" . ('0' x 64) ],
    [ 'X-Auth-Token', "${evil}Token1" ],
    [ 'x-auth-token', "${evil}Token2" ],
    [ 'X-Sdk-Date', '20000101T000000Z' ],
    [ 'x-SDK-date', "${evil}date" ],
    [ 'X-Security-Token', "${evil}Sts" ],
    [ 'x-security-token', "${evil}Sts2" ],
    [ 'X-Sdk-Content-Sha256', 'UNSIGNED-PAYLOAD' ],
    [ 'x-sdk-content-sha256', "${evil}sha" ],
    [ 'X-Project-Id', 'ffffffffffffffffffffffffffffffff' ],
    [ 'x-project-id', "${evil}project" ],
    [ 'X-PROJECT-ID', "${evil}project2" ],
    [ 'X-Harmless', 'kept' ],
);

my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]),
    headers => \@client);

is($r->{status}, 200, 'forwarded despite the caller\'s headers');

my @up = $t->upstream_records;
is(scalar @up, 1, 'one request upstream');
my $u = $up[0] || { headers => [] };
my $h = $u->{headers};

is($u->{signature}{ok}, 1, 'the gateway\'s signature verifies')
    or diag(explain($u->{signature}));

my @auth = headers_named($h, 'Authorization');
is(scalar @auth, 1, 'one Authorization');
like($auth[0] || '', qr/\ASDK-HMAC-SHA256 Access=\Q$TEST_AK\E, /,
    'Authorization is the gateway\'s');

is(join('|', headers_named($h, 'X-Auth-Token')), $TEST_TOKEN,
    'one X-Auth-Token, the configured one');

my @date = headers_named($h, 'X-Sdk-Date');
is(scalar @date, 1, 'one X-Sdk-Date');
isnt($date[0] || '', '20000101T000000Z', 'X-Sdk-Date is the gateway\'s');

is(join('|', headers_named($h, 'X-Project-Id')), $PROJECT,
    'one X-Project-Id, the path\'s');
is(scalar(headers_named($h, 'X-Security-Token')), 0,
    'no X-Security-Token');
is(scalar(headers_named($h, 'X-Sdk-Content-Sha256')), 0,
    'no X-Sdk-Content-Sha256');

unlike(join("\n", map { "$_->[0]: $_->[1]" } @$h), qr/\Q$evil\E/,
    'no caller value of those headers upstream');

is(scalar(headers_named($h, 'X-Harmless')), 0,
    'other caller headers stay behind (an allow-list, see t/130)');

# nginx itself refuses a repeated Authorization (400) before any phase
# handler: nothing can be forwarded

my $up_before = scalar $t->upstream_records;
$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]), headers => [
    [ 'Authorization', "Basic ${evil}Zm9vOmJhcg==" ],
    [ 'AUTHORIZATION', "Bearer ${evil}3" ],
]);
is($r->{status}, 400, 'repeated Authorization: refused by nginx');
is(scalar $t->upstream_records, $up_before,
    'repeated Authorization: nothing forwarded');

# the same names as the only ones sent, one each, different case

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]), headers => [
    [ 'authORIZATION', "SDK-HMAC-SHA256 Access=$TEST_AK, SignedHeaders="
        . "content-type;x-project-id;x-sdk-date, Signature=" . ('1' x 64) ],
    [ 'X-AUTH-TOKEN', "${evil}only" ],
]);

is($r->{status}, 200, 'single spoofed headers: forwarded');
@up = $t->upstream_records;
$h = ($up[1] || { headers => [] })->{headers};
is($up[1]{signature}{ok}, 1, 'single spoofed headers: signature verifies');
is(scalar(headers_named($h, 'Authorization')), 1,
    'single spoofed headers: one Authorization');
unlike(join("\n", map { "$_->[0]: $_->[1]" } @$h), qr/\Q$evil\E|1{64}/,
    'single spoofed headers: none reaches upstream');

$t->done_testing;
