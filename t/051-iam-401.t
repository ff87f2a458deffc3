#!/usr/bin/perl

# taurus_guard_token iam=: when the upstream answers 401 to a forwarded
# request (the token was revoked: a password change, a key rotation),
# that 401 is passed through, the project's cached token is dropped,
# and the next request fetches a new one and is served.  Another
# project's token is not touched.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-iam.pl" }

my $conf = <<"EOF";
http {
    taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini;
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

my $body = batch_json([ $INSTANCES[0] ]);

my $t = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t);
TaurusGuard::IAM::iam_supported($t, $conf) or do {
    $t->done_testing;
    exit;
};

TaurusGuard::IAM::start_iam($t, ttl => 86400);
TaurusGuard::IAM::upstream_tokens($t);
$t->run($conf);

sub calls { return scalar TaurusGuard::IAM::iam_calls($t) }

sub last_sent {
    my @up = $t->upstream_records;
    return join '|', TaurusGuard::IAM::sent_tokens($up[-1] || {});
}

my $r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, 'first request: 200');
my $old = last_sent();
is(calls(), 1, 'first request: one IAM call');

$r = $t->post(upgrade_path($PROJECT2), $body);
is($r->{status}, 200, 'second project: 200');
my $other = last_sent();
is(calls(), 2, 'second project: its own IAM call');

$r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, 'cached: 200');
is(last_sent(), $old, 'cached: the same token');
is(calls(), 2, 'cached: no IAM call');

# revoked: the upstream refuses it, the gateway passes the 401 through

TaurusGuard::IAM::revoke_token($t, $old);

my $n = scalar $t->upstream_records;
$r = $t->post(upgrade_path(), $body);
is($r->{status}, 401, 'revoked token: the upstream\'s 401 passes through');
is(($r->{json} || {})->{error_code}, 'APIG.0307',
    'revoked token: the upstream\'s own body');
is(scalar $t->upstream_records, $n + 1, 'revoked token: forwarded once');
is(last_sent(), $old, 'revoked token: it was the cached one');
is(calls(), 2, 'revoked token: no IAM call for that request');

my $id = header($r, 'X-Taurus-Guard-Id') || 'none';
my @a = $t->wait_audit($id, 2);
is(join(',', map { $_->{decision} || '?' } @a), 'allow,done',
    'revoked token: allow and done records');
is(($a[1] || {})->{status}, 401, 'revoked token: done records the 401');

# the next request fetches a new token and is served

$r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, 'after the 401: 200') or diag($r->{raw});
is(calls(), 3, 'after the 401: one new IAM call');
my @calls = TaurusGuard::IAM::iam_calls($t);
is(($calls[-1] || {})->{project}, $PROJECT, 'for the project refused');
my $new = last_sent();
isnt($new, $old, 'after the 401: not the revoked token');
is($new, ($calls[-1] || {})->{token}, 'after the 401: the new token');
my @up = $t->upstream_records;
is(($up[-1] || {})->{token_ok}, 1, 'after the 401: the upstream accepts it');

$r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, 'then cached again: 200');
is(last_sent(), $new, 'then cached again: the new token');
is(calls(), 3, 'then cached again: no IAM call');

# the other project kept its token

$r = $t->post(upgrade_path($PROJECT2), $body);
is($r->{status}, 200, 'other project: 200');
is(last_sent(), $other, 'other project: still its first token');
is(calls(), 3, 'other project: no IAM call');

# the same again: each 401 costs one fetch, at the next request

my $before = calls();
TaurusGuard::IAM::revoke_token($t, $new);
$r = $t->post(upgrade_path(), $body);
is($r->{status}, 401, 'revoked again: 401');
$r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, 'then a new token: 200');
is(calls(), $before + 1, 'then a new token: one IAM call');

$t->done_testing;
