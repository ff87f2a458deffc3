#!/usr/bin/perl

# A token source and no credentials: X-Auth-Token is injected, nothing is
# signed, and a caller's Authorization still never reaches the upstream.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream(token => $TEST_TOKEN);
$t->write_token;

$t->run(<<"CONF");
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
CONF

my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]),
    headers => [ [ 'Authorization', 'Basic Zm9vOmJhcg==' ],
        [ 'X-Sdk-Date', '20000101T000000Z' ] ]);

is($r->{status}, 200, 'token only: 200');
is($r->{body}, '{"resp":"success"}', 'token only: upstream accepted');

my @up = $t->upstream_records;
is(scalar @up, 1, 'token only: forwarded');
my $u = $up[0] || { headers => [] };

is($u->{token_ok}, 1, 'token only: upstream saw the token');
is(join('|', headers_named($u->{headers}, 'X-Auth-Token')), $TEST_TOKEN,
    'token only: one X-Auth-Token');
is(scalar(headers_named($u->{headers}, 'Authorization')), 0,
    'token only: no Authorization');
is(join('|', headers_named($u->{headers}, 'X-Project-Id')), $PROJECT,
    'token only: X-Project-Id');
my @date = headers_named($u->{headers}, 'X-Sdk-Date');
ok(@date <= 1 && !grep({ $_ eq '20000101T000000Z' } @date),
    'token only: the caller\'s X-Sdk-Date is dropped');
is($u->{body}, batch_json([ $INSTANCES[0] ]), 'token only: canonical body');
is($u->{audit_seen}, 1, 'token only: audited first');

# the token file emptied: never forward without a token (either 503, or
# the last good token kept)

$t->write_secret_file('token', '');
sleep 3;

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));

if ($r->{status} == 503) {
    my $j = $t->is_refusal($r, 503, 'TG.0503', 'empty token file');
    is(scalar $t->upstream_records, 1, 'empty token file: nothing forwarded');
    my @a = $t->wait_audit($j->{audit_id} || 'none', 1);
    is(($a[0] || {})->{decision}, 'error', 'empty token file: error record');

} else {
    is($r->{status}, 200, 'empty token file: last good token kept');
    @up = $t->upstream_records;
    is(join('|', headers_named($up[-1]{headers}, 'X-Auth-Token')),
        $TEST_TOKEN, 'empty token file: the last good token, not an empty one');
}

$t->done_testing;
