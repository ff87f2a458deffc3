#!/usr/bin/perl

# Audit ids come from random bytes a worker draws 64 ids at a time: two
# workers (forked from one master) never hand out the same id, and a
# worker that has used its 64 draws new ones rather than repeating them.
# 140 batches on 2 workers: one of them serves at least 70.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my ($ROUNDS, $AT_ONCE) = (4, 35);
my $N = $ROUNDS * $AT_ONCE;

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;

$t->run(<<"CONF");
worker_processes 2;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log fsync=off;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    log_format pids '\$pid \$status \$taurus_guard_id';

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        access_log %%TESTDIR%%/logs/pids.log pids;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
CONF

my @res;
push @res, $t->concurrent_posts(upgrade_path(),
    batch_json([ $INSTANCES[0] ]), $AT_ONCE) for 1 .. $ROUNDS;

is(scalar(grep { $_->[0] eq '200' } @res), $N, "all $N answered 200");

my @ids = grep { /\A[0-9a-f]{32}\z/ } map { $_->[2] } @res;
is(scalar @ids, $N, 'each has an id of 32 hex digits');

my %seen;
$seen{$_}++ for @ids;
is(scalar(keys %seen), $N, 'no two answers share an id');

my %per;
for my $l (split /\n/, $t->read_file('logs/pids.log') || '') {
    my ($pid, $status, $id) = split / /, $l;
    $per{$pid}++ if defined $id && $seen{$id};
}
diag('ids per worker: ' . join(', ', map { $per{$_} } sort keys %per));

my @allow = grep { $_->{decision} eq 'allow' } $t->audit_records;
my %rec;
$rec{ $_->{id} }++ for @allow;
is(scalar(keys %rec), $N, "$N allow records, each with its own id");
is(scalar(grep { !$seen{$_} } keys %rec), 0, 'the ids the answers gave');

my $v = $t->_cmd($t->repo . '/build/taurus-guard-verify',
    $t->testdir . '/audit.log');
like($v, qr/chain intact/, 'the audit log verifies');

$t->done_testing;
