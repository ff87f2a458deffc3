#!/usr/bin/perl

# Several workers, batches at once: each is forwarded once and signed,
# its mirror gets no secret, its allow is closed by one done, and the
# access log holds no secret header.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

my $N = 24;

my $t = Test::TaurusGuard->new;

$t->upstream(token => $TEST_TOKEN);
$t->upstream(name => 'MIRROR', token => $TEST_TOKEN);
$t->write_credentials;
$t->write_token;

$t->run(<<"CONF");
worker_processes 4;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_token file=%%TESTDIR%%/token;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    log_format secrets '\$status A=\$http_authorization'
                       ' T=\$http_x_auth_token D=\$http_x_sdk_date';
    log_format pids '\$pid \$status \$taurus_guard_id';

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        access_log %%TESTDIR%%/logs/secrets.log secrets;
        access_log %%TESTDIR%%/logs/pids.log pids;

        location /v3/ {
            taurus_guard on;
            mirror /m;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location /m {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_MIRROR%%\$request_uri;
        }
    }
}
CONF

my @res = $t->concurrent_posts(upgrade_path(),
    batch_json([ $INSTANCES[0] ]), $N);

is(scalar(grep { $_->[0] eq '200' } @res), $N, "all $N answered 200");
my @ids = grep { /\A[0-9a-f]{32}\z/ } map { $_->[2] } @res;
is(scalar @ids, $N, 'each has an id');

my @up = $t->upstream_records;
is(scalar @up, $N, 'the upstream got each batch once');
is(scalar(grep { $_->{signature}{ok} && $_->{token_ok} } @up), $N,
    'each signed and with its token');

my @m;
my $end = now() + 10;
sleep 0.1 while (@m = $t->upstream_records('MIRROR')) < $N && now() < $end;
is(scalar @m, $N, 'the mirror got each batch');
is(scalar(grep {
        grep { $_->[0] =~ /\A(?:authorization|x-auth-token|x-sdk-date)\z/i }
            @{ $_->{headers} || [] }
    } @m), 0, 'the mirror got no secret header');

my %done;
$end = now() + 10;
while (now() < $end) {
    %done = map { $_->{id} => $_ } grep { $_->{decision} eq 'done' }
        $t->audit_records;
    last if keys %done >= $N;
    sleep 0.1;
}

my @recs = $t->audit_records;
is(scalar(grep { $_->{decision} eq 'allow' } @recs), $N, 'one allow each');
is(scalar(grep { $done{$_} && $done{$_}{forwarded} } @ids), $N,
    'one done each, forwarded');

my @workers = $t->workers_of(@ids);
diag('served by ' . scalar(@workers) . ' worker(s)');

my $log = $t->read_file('logs/secrets.log') || '';
is(scalar(() = $log =~ /^200 A=- T=- D=-$/mg), $N,
    'no secret header in the access log');

my $v = $t->_cmd($t->repo . '/build/taurus-guard-verify',
    $t->testdir . '/audit.log');
like($v, qr/chain intact/, 'the audit log verifies');

$t->done_testing;
