#!/usr/bin/perl

# taurus_guard_token iam= with several workers: the token cache is in
# shared memory and one fetch per project runs at a time across all
# workers.  With a slow IAM (500 ms), 16 concurrent first requests spread
# over 4 workers all get the one token of one IAM call.  When that IAM
# fails, the waiting requests are refused (503), not left hanging.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Handle;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-iam.pl" }

my $PROJECT3 = '0000000000000000000000000000abc3';

my $conf = <<"EOF";
worker_processes 4;

http {
    taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
        %%PROJECT2%% $INSTANCES[0];
        $PROJECT3 $INSTANCES[0];
    }

    log_format pids '\$pid \$status \$taurus_guard_id';

    server {
        listen 127.0.0.1:%%PORT_0%% reuseport;
        server_name localhost;

        access_log %%TESTDIR%%/logs/pids.log pids;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_iam {
            internal;
            proxy_read_timeout 2s;
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




TaurusGuard::IAM::start_iam($t, ttl => 86400, delay => 500);
TaurusGuard::IAM::upstream_tokens($t);
$t->run($conf);

my @r = $t->concurrent_posts(upgrade_path($PROJECT), $body, 16);

is(scalar(grep { $_->[0] eq '200' } @r), 16, '16 concurrent first requests: '
    . 'all 200') or diag(explain(\@r));

my @calls = TaurusGuard::IAM::iam_calls($t);
is(scalar @calls, 1, '16 concurrent first requests: one IAM call')
    or diag(explain([ map { "$_->{time} $_->{project}" } @calls ]));

my @up = $t->upstream_records;
is(scalar @up, 16, 'all 16 forwarded');
my %tokens = map { join('|', TaurusGuard::IAM::sent_tokens($_)) => 1 } @up;
is(join(',', keys %tokens), ($calls[0] || {})->{token} || 'none',
    'all 16 carried the one token issued');
is(scalar(grep { $_->{token_ok} } @up), 16, 'the upstream accepted all 16');

# the access log is written after the response: give it a moment

sleep 0.2;
my @w = $t->workers_of(map { $_->[2] } @r);
cmp_ok(scalar @w, '>', 1, 'the requests were spread over several workers '
    . '(' . scalar(@w) . ')');

# later requests, in any worker, use the shared token

@r = $t->concurrent_posts(upgrade_path($PROJECT), $body, 8);
is(scalar(grep { $_->[0] eq '200' } @r), 8, '8 more: all 200');
is(scalar(TaurusGuard::IAM::iam_calls($t)), 1, '8 more: no IAM call');

# a failing IAM: the requests waiting for the fetch are refused, none
# forwarded, none left hanging

TaurusGuard::IAM::stop_iam($t);
TaurusGuard::IAM::start_iam($t, ttl => 86400, delay => 500,
    status => 500);

my $n = scalar $t->upstream_records;
@r = $t->concurrent_posts(upgrade_path($PROJECT2), $body, 8);
is(scalar(grep { $_->[0] eq '503' && $_->[1] eq 'TG.0503' } @r), 8,
    'IAM failing: 8 concurrent first requests all refused with TG.0503')
    or diag(explain(\@r));
is(scalar $t->upstream_records, $n, 'IAM failing: nothing forwarded');
@calls = grep { ($_->{project} || '') eq $PROJECT2 }
    TaurusGuard::IAM::iam_calls($t);
cmp_ok(scalar @calls, '>=', 1, 'IAM failing: IAM was asked');
cmp_ok(scalar @calls, '<=', 8, 'IAM failing: at most one call per request');

# and the first project is still served from the cache

@r = $t->concurrent_posts(upgrade_path($PROJECT), $body, 4);
is(scalar(grep { $_->[0] eq '200' } @r), 4,
    'IAM failing: the cached project is still served');

# an IAM that does not answer in time (proxy_read_timeout 2s in the IAM
# location): the fetch fails, the requests waiting for it are refused

TaurusGuard::IAM::start_iam($t, ttl => 86400, delay => 4000);

$n = scalar $t->upstream_records;
@r = $t->concurrent_posts(upgrade_path($PROJECT3), $body, 8);
is(scalar(grep { $_->[0] eq '503' && $_->[1] eq 'TG.0503' } @r), 8,
    'IAM too slow: 8 concurrent first requests all refused with TG.0503')
    or diag(explain(\@r));
is(scalar $t->upstream_records, $n, 'IAM too slow: nothing forwarded');

$t->done_testing;
