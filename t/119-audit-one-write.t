#!/usr/bin/perl

# The audit records of one turn of a worker's event loop go to the file
# in one write, under one lock: batches that complete together (their
# last bytes arrive while the worker is stopped, so one epoll_wait()
# hands it all of them) are written together, with a deny among them
# (written at once, and the queue with it), with records too large for
# one arena (written in several pieces), and with more records than one
# writev() takes.  Each batch is on disk
# before its request leaves, every record is there once, the chain
# verifies, and the metrics count fewer writes than records.  With the
# durable default (the flush in a thread pool), with the flush in the
# event loop (thread_pool=off: once a turn, not once a batch), and with
# fsync=off.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

my $verify = Test::TaurusGuard->repo . '/build/taurus-guard-verify';
plan(skip_all => "no $verify (run make verify)") unless -x $verify;

# ten batches whose allow records (some 80 bytes an instance) are more
# than the arena a worker starts with (64 kB) holds
my @MANY = map { sprintf '%032xin07', 0x5eed0000 + $_ } 1 .. 100;

# id => whether the upstream found its record in the file on arrival

sub seen_upstream {
    my ($t) = @_;
    my %seen;
    for my $u ($t->upstream_records) {
        for my $h (@{ $u->{headers} || [] }) {
            $seen{ $h->[1] } = $u->{audit_seen}
                if lc $h->[0] eq 'x-taurus-guard-id';
        }
    }
    return %seen;
}

# Sends every body but its last byte, stops the worker, sends the last
# bytes, lets the worker go on: it finds all the batches complete in one
# turn.  Returns the responses, in the order of @bodies.

sub burst {
    my ($t, $worker, @bodies) = @_;

    my $port = $t->port(0);
    my @socks;

    for my $b (@bodies) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
            Proto => 'tcp', Timeout => 5) or die "connect: $!\n";
        my $req = "POST " . upgrade_path() . " HTTP/1.1\r\n"
            . "Host: localhost\r\nConnection: close\r\n"
            . "Content-Type: application/json\r\n"
            . "Content-Length: " . length($b) . "\r\n\r\n$b";
        syswrite($s, substr($req, 0, -1)) == length($req) - 1
            or die "write: $!\n";
        push @socks, [ $s, substr($req, -1) ];
    }

    sleep 0.3;
    kill 'STOP', $worker;
    sleep 0.1;
    syswrite($_->[0], $_->[1]) for @socks;
    sleep 0.2;
    kill 'CONT', $worker;

    my @resp;
    for my $k (@socks) {
        my ($s) = @$k;
        my $raw = '';
        my $sel = IO::Select->new($s);
        my $end = now() + 10;
        while (now() < $end) {
            last unless $sel->can_read($end - now());
            my $n = sysread($s, $raw, 65536, length $raw);
            last unless $n;
        }
        close $s;
        push @resp, Test::TaurusGuard::parse_response($raw);
    }

    return @resp;
}

for my $mode ('', 'thread_pool=off', 'fsync=off') {
    my $name = $mode || 'durable';

    my $t = Test::TaurusGuard->new;
    $t->upstream;
    $t->write_credentials;

    $t->run(<<"EOF");
worker_processes 1;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log $mode;
    taurus_guard_max_batch 100;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0] $INSTANCES[1] $INSTANCES[2];
        %%PROJECT%% @MANY;
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /metrics {
            taurus_guard_metrics;
        }
    }
}
EOF

    my ($worker) = $t->worker_pids;
    ok($worker, "$name: the worker");

    # eight small batches and two denied ones, complete in one turn

    my @small = map { batch_json([ [ $INSTANCES[$_ % 3], "2.0.48.$_" ] ]) }
        1 .. 8;
    my @denied = map { batch_json([ $OTHER_INSTANCE ]) } 1 .. 2;

    my $m0 = ($t->metrics)[1];
    my @r = burst($t, $worker, @small[0 .. 3], $denied[0], @small[4 .. 7],
        $denied[1]);

    my @allowed = grep { ($_->{status} || 0) == 200 } @r;
    my @refused = grep { ($_->{status} || 0) == 403 } @r;
    is(scalar @allowed, 8, "$name: eight batches allowed");
    is(scalar @refused, 2, "$name: two denied");

    my @ids = map { header($_, 'X-Taurus-Guard-Id') || '' } @allowed;
    my @deny_ids = map { header($_, 'X-Taurus-Guard-Id') || '' } @refused;

    # each forwarded batch found its record in the file
    my %seen = seen_upstream($t);
    is(scalar(grep { $seen{$_} } @ids), 8,
        "$name: every batch on disk before it was forwarded");

    my $whole = 1;
    for my $id (@ids) {
        my @a = $t->wait_audit($id, 2);
        $whole &&= @a == 2 && $a[0]{decision} eq 'allow'
            && $a[1]{decision} eq 'done';
    }
    for my $id (@deny_ids) {
        my @a = $t->audit_by_id($id);
        $whole &&= @a == 1 && $a[0]{decision} eq 'deny';
    }
    ok($whole, "$name: an allow and a done record a batch, a deny record"
        . " a denied one");

    my $m1 = ($t->metrics)[1];
    my $records = $m1->{taurus_guard_audit_records_total}
        - $m0->{taurus_guard_audit_records_total};
    my $writes = $m1->{taurus_guard_audit_writes_total}
        - $m0->{taurus_guard_audit_writes_total};

    is($records, 18, "$name: 18 records counted");

    # the allow records in at most three writes (before each deny, and at
    # the end of the turn), each done record in at most one of its own
    cmp_ok($writes, '<=', 11, "$name: the turn's records shared writes")
        or diag("$records records in $writes writes");

    # ten batches of 100 instances: more than an arena holds

    my @big = map {
        my $v = $_;
        batch_json([ map { [ $_, "2.0.48.$v" ] } @MANY ])
    } 1 .. 10;

    $m0 = $m1;
    @r = burst($t, $worker, @big);

    is(scalar(grep { ($_->{status} || 0) == 200 } @r), 10,
        "$name: ten large batches allowed");

    @ids = map { header($_, 'X-Taurus-Guard-Id') || '' } @r;
    %seen = seen_upstream($t);
    is(scalar(grep { $seen{$_} } @ids), 10,
        "$name: every large batch on disk before it was forwarded");

    $whole = 1;
    for my $id (@ids) {
        my @a = $t->wait_audit($id, 2);
        $whole &&= @a == 2 && scalar @{ $a[0]{instances} || [] } == 100;
    }
    ok($whole, "$name: each large batch recorded whole, once");

    $m1 = ($t->metrics)[1];
    $records = $m1->{taurus_guard_audit_records_total}
        - $m0->{taurus_guard_audit_records_total};
    $writes = $m1->{taurus_guard_audit_writes_total}
        - $m0->{taurus_guard_audit_writes_total};

    is($records, 20, "$name: 20 records counted");
    cmp_ok($writes, '<', $records, "$name: fewer writes than records")
        or diag("$records records in $writes writes");

    # seventy batches in one turn: more records than one writev() takes

    my @many = map { batch_json([ [ $INSTANCES[$_ % 3], "2.0.49.$_" ] ]) }
        1 .. 70;

    $m0 = $m1;
    @r = burst($t, $worker, @many);

    is(scalar(grep { ($_->{status} || 0) == 200 } @r), 70,
        "$name: seventy batches allowed");

    @ids = map { header($_, 'X-Taurus-Guard-Id') || '' } @r;
    %seen = seen_upstream($t);
    is(scalar(grep { $seen{$_} } @ids), 70,
        "$name: every one on disk before it was forwarded");

    $whole = 1;
    for my $id (@ids) {
        my @a = $t->wait_audit($id, 2);
        $whole &&= @a == 2 && $a[0]{decision} eq 'allow'
            && $a[1]{decision} eq 'done';
    }
    ok($whole, "$name: each of the seventy recorded once, and closed");

    $m1 = ($t->metrics)[1];
    $records = $m1->{taurus_guard_audit_records_total}
        - $m0->{taurus_guard_audit_records_total};
    $writes = $m1->{taurus_guard_audit_writes_total}
        - $m0->{taurus_guard_audit_writes_total};

    is($records, 140, "$name: 140 records counted");

    # the seventy allow records were flushed together, not one by one
    my $flushes = $m1->{taurus_guard_audit_flush_seconds_count}
        - $m0->{taurus_guard_audit_flush_seconds_count};
    if ($mode eq 'fsync=off') {
        is($flushes, 0, "$name: no flush");
    } else {
        cmp_ok($flushes, '<=', 3, "$name: seventy batches in a few flushes")
            or diag("$flushes flushes");
    }
    cmp_ok($writes, '<', $records, "$name: fewer writes than records")
        or diag("$records records in $writes writes");

    # the seventy allow records of the turn, 64 to a writev() (the debug
    # log says how many records each append took, in how many writes)

  SKIP: {
        my @appends = $t->error_log =~
            /taurus_guard: (\d+) audit records, \d+ bytes, in (\d+) writes/g;
        skip "$name: no debug log", 1 unless @appends;

        my ($most, $in) = (0, 0);
        while (my ($n, $w) = splice @appends, 0, 2) {
            ($most, $in) = ($n, $w) if $n > $most;
        }

        ok($most > 64 && $in == int(($most + 63) / 64),
            "$name: $most records of one turn in $in writev() calls");
    }

    # one chain through all of it, no line torn or repeated

    my $out = $t->_cmd($verify, $t->testdir . '/audit.log');
    is($? >> 8, 0, "$name: the chain verifies") or diag($out);

    my @all = $t->audit_records;
    is(scalar(grep { $_->{_bad_line} } @all), 0, "$name: no torn line");
    is(scalar @all, 178, "$name: 178 records in the file");

    $t->stop;
    $t->finish;
}

done_testing();
