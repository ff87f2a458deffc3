#!/usr/bin/perl

# Temporary credentials of a realistic size: STS security tokens run to
# kilobytes (t/011-secrets.t checks a short one).  A 4 KB security_token
# is sent as X-Security-Token, signed, and verifies upstream; with a
# token file as well, both X-Auth-Token and the signature go out.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my @chars = ('A' .. 'Z', 'a' .. 'z', '0' .. '9', '-', '_', '.', '=');
srand(20261129);
my $sts = 'gQpjbi1ub3J0aC00' . join '', map { $chars[rand @chars] } 1 .. 4080;

my $t = Test::TaurusGuard->new;

$t->upstream(token => $TEST_TOKEN);
$t->write_credentials(security_token => $sts);
$t->write_token;

$t->run(<<"EOF");
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

        # the route is checked on the URI as sent: a rewrite cannot
        # make another path a guarded route

        location /rewritten/ {
            taurus_guard on;
            rewrite ^/rewritten(/.*)\\z \$1 break;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_token file=%%TESTDIR%%/token;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF

my $body = batch_json([ $INSTANCES[0] ]);

my $r = $t->post(upgrade_path(), $body);

is($r->{status}, 200, '4 KB security token: 200');

my @up = $t->upstream_records;
my $u = $up[0] || { headers => [], signature => {} };

is($u->{signature}{ok}, 1, '4 KB security token: signature verifies')
    or diag(explain($u->{signature}{error}));
my @sts = headers_named($u->{headers}, 'X-Security-Token');
is(scalar @sts, 1, '4 KB security token: one X-Security-Token');
ok(($sts[0] || '') eq $sts, '4 KB security token: sent whole');
like(join('|', headers_named($u->{headers}, 'Authorization')),
    qr/, SignedHeaders=content-type;x-project-id;x-sdk-date;x-security-token,/,
    '4 KB security token: signed');
ok(index($u->{signature}{canonical_request} || '',
    "\nx-security-token:$sts\n") >= 0,
    '4 KB security token: in the canonical request');
is(scalar(headers_named($u->{headers}, 'X-Auth-Token')), 0,
    'no token source there: no X-Auth-Token');

# not in the audit record, not in the response

my $id = header($r, 'X-Taurus-Guard-Id') || 'none';
my @a = $t->wait_audit($id, 2);
is(scalar @a, 2, 'audit: allow and done');
ok(index($t->read_file('audit.log') || '', substr($sts, 0, 64)) < 0,
    'audit: no security token');
ok(index($r->{raw}, substr($sts, 0, 64)) < 0, 'response: no security token');

# a rewritten URI is not the route on the wire: refused, not forwarded

my $n = scalar $t->upstream_records;
$r = $t->post('/rewritten' . upgrade_path(), $body);
is($r->{status}, 404, 'rewritten to a guarded route: 404');
is(scalar $t->upstream_records, $n, 'rewritten: nothing forwarded');

# credentials with a security token and a token file: both injected

$r = $t->post(upgrade_path(), $body, port => 1);
is($r->{status}, 200, 'both: 200');

@up = $t->upstream_records;
$u = $up[-1] || { headers => [], signature => {} };

is($u->{signature}{ok}, 1, 'both: signature verifies');
is($u->{token_ok}, 1, 'both: the X-Auth-Token is the token file\'s');
is(join('|', headers_named($u->{headers}, 'X-Security-Token')), $sts,
    'both: X-Security-Token');
like(join('|', headers_named($u->{headers}, 'Authorization')),
    qr/SignedHeaders=content-type;x-project-id;x-sdk-date;x-security-token,/,
    'both: signed with the security token');

$t->done_testing;
