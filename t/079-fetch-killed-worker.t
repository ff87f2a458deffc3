#!/usr/bin/perl

# A worker killed during a fetch (SIGKILL: it never unmarks the slot) no
# longer holds the secret's key for 30 s.  The slot's "fetching" mark
# said only since when; the requests waiting for the dead worker's fetch
# went on waiting and were refused (503), and so was every request that
# came for the key until the mark was 30 s old.  The mark now names the
# worker by pid and start time, and a mark whose worker is gone is taken
# over at once; a live worker's mark is waited for as before.
#
# IAM answers after 3 s, so each fetch is in flight long enough to kill
# its worker:
#
#   - two workers: batch A's worker fetches, batch B in the other worker
#     waits for that fetch (and does not fetch itself while the worker
#     lives); A's worker is killed, and B fetches at once and is
#     forwarded;
#   - one worker: it is killed during A's fetch, and the first batch
#     its successor serves fetches at once;
#   - the same, with the dead worker's pid given to another process
#     before the next batch (through ns_last_pid; root only): that
#     process is not the fetcher.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-iam.pl" }

my $LAST_PID = '/proc/sys/kernel/ns_last_pid';
my $DELAY = 3;    # s, IAM's every answer

my $body = batch_json([ $INSTANCES[0] ]);

sub conf {
    my ($workers) = @_;
    return <<"EOF";
worker_processes $workers;

http {
    taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini;
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

        location = /_tg_iam {
            internal;
            proxy_read_timeout 20s;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }

        location = /pid {
            return 200 "\$pid";
        }
    }
}
EOF
}

sub start {
    my ($workers) = @_;

    my $t = Test::TaurusGuard->new;

    TaurusGuard::IAM::write_password_file($t);
    TaurusGuard::IAM::iam_supported($t, conf($workers)) or do {
        $t->done_testing;
        exit;
    };

    TaurusGuard::IAM::start_iam($t, ttl => 86400, delay => $DELAY * 1000);
    TaurusGuard::IAM::upstream_tokens($t);
    $t->run(conf($workers));
    $t->expect_alert(qr/worker process \d+ exited on signal 9/);

    return $t;
}

sub wait_for {
    my ($what, $secs) = @_;
    my $end = now() + $secs;
    my $got;
    sleep 0.05 until ($got = $what->()) || now() > $end;
    return $got;
}

sub fetches {
    my ($t) = @_;
    my @l = $t->error_log =~ /fetching from "\/_tg_iam"/g;
    return scalar @l;
}

# IAM calls, in the order they came, with when each came (epoch)

sub iam_times {
    my ($t) = @_;
    return sort { $a <=> $b } map { $_->{epoch} }
        TaurusGuard::IAM::iam_calls($t);
}

sub send_batch {
    my ($s) = @_;
    local $SIG{PIPE} = 'IGNORE';
    syswrite($s, "POST " . upgrade_path() . " HTTP/1.1\r\n"
        . "Host: localhost\r\nConnection: close\r\n"
        . "Content-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n$body");
}

sub forwarded {
    my ($t) = @_;
    return scalar grep { $_->{token_ok} } $t->upstream_records;
}

# two workers: a batch waiting for the killed worker's fetch

{
    my $t = start(2);

    my $conn = $t->worker_connections(2);
    my ($w1, $w2) = sort keys %$conn;

    SKIP: {
        skip 'no connection to each of the two workers', 8
            unless defined $w2;

        send_batch($conn->{$w1});

        ok(wait_for(sub { fetches($t) == 1 }, 5),
            "waiting: A's worker ($w1) asks IAM");

        sleep 0.3;
        send_batch($conn->{$w2});
        sleep 1;

        ok(!IO::Select->new($conn->{$w2})->can_read(0),
            "waiting: B, in worker $w2, waits for A's fetch");
        is(fetches($t), 1, 'waiting: and fetches nothing itself');

        my $killed = time;
        kill 'KILL', $w1;

        my $r = $t->answer($conn->{$w2}, timeout => 15);
        my $took = time - $killed;

        is($r->{status}, 200, 'waiting: B is forwarded once A\'s worker is'
            . ' killed')
            or diag(substr($r->{raw} || 'no answer', 0, 300));
        cmp_ok($took, '<', $DELAY + 3, sprintf('waiting: B answered %.1f s'
            . ' after the kill (IAM takes %d s)', $took, $DELAY));

        my @at = iam_times($t);
        is(scalar @at, 2, 'waiting: IAM was asked twice');
        cmp_ok(($at[1] || 1e10) - $killed, '<', 1, 'waiting: B asked it'
            . ' at once');
        is(forwarded($t), 1, 'waiting: B arrived with a token the upstream'
            . ' accepts');
    }

    $t->finish;
}


# one worker: the batch after the kill, in the worker started for it

sub after_kill {
    my ($name, $reuse) = @_;

    my $t = start(1);

    my ($w) = $t->worker_pids;

    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        eval { $t->post(upgrade_path(), $body, timeout => 5) };
        POSIX::_exit(0);
    }

    ok(wait_for(sub { fetches($t) == 1 }, 5), "$name: A's worker asks IAM");
    sleep 0.3;

    kill 'KILL', $w;
    waitpid $pid, 0;

    my $new = wait_for(sub {
        my @w = $t->worker_pids;
        return (@w == 1 && $w[0] != $w) ? $w[0] : undef;
    }, 10);
    ok($new, "$name: a new worker in its place");

    my $other;

    if ($reuse) {
        $other = take_pid($w);
    }

    SKIP: {
        skip "$name: pid $w was taken by another process first", 5
            if $reuse && !$other;

        ok(kill(0, $other), "$name: a live process has pid $w now")
            if $reuse;

        my $sent = time;
        my $r = $t->post(upgrade_path(), $body, timeout => 12);
        my $took = time - $sent;

        is($r->{status}, 200, "$name: the next batch is forwarded")
            or diag(substr($r->{raw} || 'no answer', 0, 300));
        cmp_ok($took, '<', $DELAY + 3, sprintf("$name: answered in %.1f s"
            . ' (IAM takes %d s)', $took, $DELAY));

        my @at = iam_times($t);
        cmp_ok(($at[1] || 1e10) - $sent, '<', 1,
            "$name: it asked IAM at once");
        is(forwarded($t), 1, "$name: with a token the upstream accepts");
    }

    if ($other) {
        kill 'KILL', $other;
        waitpid $other, 0;
    }

    $t->finish;
}

after_kill('killed', 0);

SKIP: {
    skip "a pid is chosen through $LAST_PID by root only", 7
        unless $> == 0 && -w $LAST_PID;

    after_kill('pid reused', 1);
}

done_testing;
