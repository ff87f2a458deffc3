#!/usr/bin/perl

# taurus_guard_policy cooldown= (and quota=) against the ways around it:
# a batch that reached the upstream and got no answer (the caller left,
# the upstream timed out) starts the cooldown, only a definite non-2xx
# answer or nothing sent leaves the instance free, over several upstream
# tries too; crc32-colliding instances and projects are told apart; a
# report-mode batch for an instance in flight neither takes nor clears
# the enforcing batch's mark; and a small zone with many instances
# cooling still takes fresh ones, refusing (503) only when it is full of
# instances that cool.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Compress::Zlib ();
use IO::Socket::INET;
use POSIX ();
use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;

my ($i0) = @INSTANCES;

# instances of one project with a cooldown; X and Y collide in crc32
# (with the project: the zone's key), Z hashes above them, so that the
# tree rotates and X's node lands left of Y's

my $P = 'c' x 32;
my @C = map { sprintf '%032xin07', $_ + 1 } 0 .. 19;
my $X = '56e667526c6931c5c777d0637842f9acin07';
my $Y = '7ea3d7335a9b185f3513f29d1c0e7630in07';
my $Z = '0000000000000000000000000000138fin07';

# projects with a quota, QA and QB colliding, QC above them

my $QA = '0000000000000000000045ce47e9d019';
my $QB = '0000000000000000000066f52342a124';
my $QC = '00000000000000000000000000000001';

# many instances, to fill a small zone

my $PF = 'e' x 32;
my @F = map { sprintf '%032xin07', $_ + 1000 } 0 .. 999;

# a port nothing listens on (not one of the harness's, which run() waits
# for)

my $dead = do {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1:0', Listen => 1)
        or die "no free port: $!\n";
    $s->sockport;
};

# a slow upstream: each connection reads its request whole, writes the
# body to slow.log, answers 200 three seconds later

my $slow_port = $t->port('SLOW');
my $slow = fork;
die "fork: $!\n" unless defined $slow;

if ($slow == 0) {
    $SIG{CHLD} = 'IGNORE';
    $SIG{PIPE} = 'IGNORE';
    my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$slow_port",
        Listen => 16, ReuseAddr => 1) or POSIX::_exit(1);
    open my $log, '>>', $t->testdir . '/slow.log' or POSIX::_exit(1);
    $log->autoflush(1);
    while (1) {
        my $c = $l->accept or next;
        if (fork) {
            close $c;
            next;
        }
        my $req = '';
        while ($req !~ /\r\n\r\n/) {
            sysread($c, $req, 4096, length $req) or last;
        }
        my ($len) = $req =~ /Content-Length:\s*(\d+)/i;
        my (undef, $body) = split /\r\n\r\n/, $req, 2;
        $body = '' unless defined $body;
        while (length $body < ($len || 0)) {
            sysread($c, $body, 4096, length $body) or last;
        }
        print $log "$body\n";
        sleep 3;
        print $c "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
            . "Connection: close\r\n\r\n{}";
        close $c;
        POSIX::_exit(0);
    }
}

END { kill 'TERM', $slow if $slow; }

sub slow_got {
    my ($id) = @_;
    return scalar grep { /\Q$id\E/ } split /\n/, $t->read_file('slow.log');
}

sub api_got {
    my ($id) = @_;
    return scalar grep { ($_->{body} || '') =~ /\Q$id\E/ }
        $t->upstream_records;
}

# a gateway on its own port for each way a forward can end

sub gw {
    my ($name, $pass, $extra) = @_;
    $extra = '' unless defined $extra;
    return <<"EOF";
    server {
        listen 127.0.0.1:%%PORT_$name%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass $pass;
$extra        }
    }

EOF
}

sub conf {
    my ($zone) = @_;
    $zone = '' unless defined $zone;

    return "worker_processes 2;\n\nhttp {\n" . <<"EOF"
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;
    $zone

    taurus_guard_allow {
        $P @C $X $Y $Z;
        $QA $i0;
        $QB $i0;
        $QC $i0;
        $PF @F;
    }

    taurus_guard_policy $P cooldown=6h;
    taurus_guard_policy $QA quota=1/1h;
    taurus_guard_policy $QB quota=1/1h;
    taurus_guard_policy $QC quota=1/1h;
    taurus_guard_policy $PF cooldown=6h;

    upstream refused_then_400 {
        server 127.0.0.1:$dead max_fails=0;
        server 127.0.0.1:%%PORT_A400%% backup;
    }

    upstream timeout_then_400 {
        server 127.0.0.1:$slow_port max_fails=0;
        server 127.0.0.1:%%PORT_A400%% backup;
    }

    upstream 500_then_refused {
        server 127.0.0.1:%%PORT_A500%% max_fails=0;
        server 127.0.0.1:$dead backup;
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

EOF
    . gw('SLOWGW', "http://127.0.0.1:$slow_port",
        "            proxy_read_timeout 10s;\n")
    . gw('TIMEOUT', "http://127.0.0.1:$slow_port",
        "            proxy_read_timeout 1s;\n")
    . gw('R400', 'http://127.0.0.1:%%PORT_A400%%')
    . gw('R500', 'http://127.0.0.1:%%PORT_A500%%')
    . gw('DOWN', "http://127.0.0.1:$dead")
    . gw('M1', 'http://refused_then_400')
    . gw('M2', 'http://timeout_then_400',
        "            proxy_read_timeout 1s;\n"
        . "            proxy_next_upstream error timeout non_idempotent;\n")
    . gw('M3', 'http://500_then_refused',
        "            proxy_next_upstream error http_500 non_idempotent;\n")
    . gw('REPORT', 'http://127.0.0.1:%%PORT_A400%%',
        "            taurus_guard_mode report;\n")
    . <<"EOF";
    server {
        listen 127.0.0.1:%%PORT_A400%%;
        return 400 '{"error_code":"X.400"}';
    }

    server {
        listen 127.0.0.1:%%PORT_A500%%;
        return 500 '{"error_code":"X.500"}';
    }
}
EOF
}

# a forwarded batch's done record is written after its policy state is
# settled: wait for it (a refusal has its one record)

sub post_done {
    my ($project, $ids, %o) = @_;
    my $r = $t->post(upgrade_path($project), batch_json($ids), %o);
    my $id = header($r, 'X-Taurus-Guard-Id');
    my $refused = (($r->{json}{error_code} || '') =~ /\ATG\./);
    $t->wait_audit($id, $refused ? 1 : 2) if defined $id;
    return $r;
}

$t->run(conf());

# (2) crc32 collisions, in a fresh zone: X, Y (same key), Z (above)

is(Compress::Zlib::crc32($P . $X), Compress::Zlib::crc32($P . $Y),
    'X and Y collide in crc32');
is(Compress::Zlib::crc32($QA), Compress::Zlib::crc32($QB),
    'QA and QB collide in crc32');

is(post_done($P, [ $X ])->{status}, 200, 'collision: X upgraded');
is(post_done($P, [ $Y ])->{status}, 200, 'collision: Y upgraded');
is(post_done($P, [ $Z ])->{status}, 200, 'collision: Z upgraded');

my $r = post_done($P, [ $X ]);
is($r->{status}, 409, 'collision: X again within its cooldown: 409');
like($r->{json}{error_msg} || '', qr/\Q$X\E was upgraded \d+ s ago/,
    '... upgraded');
is(post_done($P, [ $Y ])->{status}, 409, 'collision: Y again: 409');
is(api_got($X), 1, 'collision: the upstream got X once');

is(post_done($QA, [ $i0 ])->{status}, 200, 'quota collision: QA 1 of 1');
is(post_done($QB, [ $i0 ])->{status}, 200, 'quota collision: QB 1 of 1');
is(post_done($QC, [ $i0 ])->{status}, 200, 'quota collision: QC 1 of 1');
is(post_done($QA, [ $i0 ])->{status}, 429,
    'quota collision: QA again: 429');
is(post_done($QB, [ $i0 ])->{status}, 429,
    'quota collision: QB again: 429');

# (1) how a forward ended
#
# the caller leaves once the slow upstream has the batch: 499, and the
# endpoint may well upgrade the instance

$r = $t->post(upgrade_path($P), batch_json([ $C[0] ]), port => 'SLOWGW',
    timeout => 1);
ok(!defined $r->{status}, 'client gone after the forward: no answer');

my $done;
for (1 .. 50) {
    ($done) = grep { ($_->{decision} || '') eq 'done'
        && ($_->{status} || 0) == 499 } $t->audit_records;
    last if $done;
    select undef, undef, undef, 0.1;
}
ok($done && $done->{forwarded}, '... done, 499, forwarded')
    or diag(explain($done));

$r = post_done($P, [ $C[0] ]);
is($r->{status}, 409, '... the instance again: 409');
like($r->{json}{error_msg} || '', qr/\Q$C[0]\E was sent \d+ s ago/,
    '... sent, not known to be upgraded');
is(slow_got($C[0]) + api_got($C[0]), 1, '... the upstream got it once');

# the upstream answered outside 2xx: a definite answer, free at once

is(post_done($P, [ $C[1] ], port => 'R400')->{status}, 400,
    'upstream 400');
is(post_done($P, [ $C[1] ], port => 'R400')->{status}, 400,
    '... the instance is free at once');

is(post_done($P, [ $C[2] ], port => 'R500')->{status}, 500,
    'upstream 500');
is(post_done($P, [ $C[2] ], port => 'R500')->{status}, 500,
    '... the instance is free at once');

# nothing sent: the upstream refused the connection

is(post_done($P, [ $C[3] ], port => 'DOWN')->{status}, 502,
    'upstream down: 502');
is(post_done($P, [ $C[3] ], port => 'DOWN')->{status}, 502,
    '... the instance is free at once');

# the upstream read the batch and did not answer in time

$r = post_done($P, [ $C[4] ], port => 'TIMEOUT');
is($r->{status}, 504, 'upstream timed out after reading the batch: 504');
$r = post_done($P, [ $C[4] ]);
is($r->{status}, 409, '... the instance again: 409');
like($r->{json}{error_msg} || '', qr/\Q$C[4]\E was sent/, '... sent');
is(api_got($C[4]), 0, '... not sent again');

# several tries: nothing sent to the first, 400 from the second

is(post_done($P, [ $C[5] ], port => 'M1')->{status}, 400,
    'refused, then 400');
is(post_done($P, [ $C[5] ], port => 'M1')->{status}, 400,
    '... the instance is free');

# the first try timed out after sending, the second answered 400: what
# the first did is unknown

is(post_done($P, [ $C[6] ], port => 'M2')->{status}, 400,
    'timed out, then 400');
is(post_done($P, [ $C[6] ])->{status}, 409, '... the instance again: 409');

# the first answered 500, the second got nothing: the one the upstream
# received it refused

is(post_done($P, [ $C[7] ], port => 'M3')->{status}, 502,
    '500, then refused: 502');
is(post_done($P, [ $C[7] ])->{status}, 200, '... the instance is free');

# (3) report mode beside enforce: an enforcing batch has W in flight
# (3 s), a reported batch names W too (would_deny) and is answered at
# once (400); the mark stays the enforcing batch's, whose 200 starts the
# cooldown

sub report_while_in_flight {
    my ($w, $during) = @_;

    pipe my $rd, my $wr or die "pipe: $!\n";
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        close $rd;
        my $r = $t->post(upgrade_path($P), batch_json([ $w ]),
            port => 'SLOWGW', timeout => 10);
        print $wr (header($r, 'X-Taurus-Guard-Id') || 'none'), "\n";
        close $wr;
        POSIX::_exit(0);
    }

    close $wr;
    sleep 1;

    my $r = post_done($P, [ $w ], port => 'REPORT');
    is($r->{status}, 400, "report: $w in flight is forwarded");
    is(header($r, 'X-Taurus-Guard-Decision'), 'would_deny',
        '... as would_deny');

    $during->() if $during;

    my $id = <$rd>;
    chomp $id if defined $id;
    waitpid $pid, 0;
    my @a = $t->wait_audit($id || 'none', 2);
    is(($a[1] || {})->{status}, 200, 'enforce: the batch in flight: 200');

    $r = post_done($P, [ $w ]);
    is($r->{status}, 409, 'enforce: after both ended, it cools: 409');
    like($r->{json}{error_msg} || '', qr/\Q$w\E was upgraded/,
        '... upgraded');
    is(api_got($w), 0, '... the stand-in API never got it');
}

report_while_in_flight($C[8]);

# the same, and an enforcing batch for it while it is in flight

report_while_in_flight($C[9], sub {
    my $r = post_done($P, [ $C[9] ]);
    is($r->{status}, 409, 'enforce: still in flight after the report: 409');
    like($r->{json}{error_msg} || '', qr/\Q$C[9]\E has a batch in flight/,
        '... in flight');
});

# (4) a small zone: 70 instances cooling, then a stream of fresh ones the
# upstream refuses (they hold nothing once their batch ends)

$t->stop;
$t->upstream;
unlink $t->testdir . '/logs/nginx.pid';
$t->run(conf('taurus_guard_policy_zone 64k;'));

is(post_done($PF, [ @F[0 .. 69] ])->{status}, 200, '70 instances cooling');

my %st;
for (my $i = 70; $i < 470; $i += 10) {
    $st{ post_done($PF, [ @F[$i .. $i + 9] ], port => 'R500')->{status} }++;
}

is(join(',', map { "$_:$st{$_}" } sort keys %st), '500:40',
    '400 fresh instances after them: all forwarded, none 503');

$r = post_done($PF, [ $F[0] ]);
is($r->{status}, 409, 'the first one still cools');
is(post_done($PF, [ $F[69] ])->{status}, 409, 'the 70th too');

# a zone full of instances that cool refuses with 503

my ($last, $ok, $i) = (0, 0, 470);
for (; $i < 900; $i += 10) {
    $last = post_done($PF, [ @F[$i .. $i + 9] ])->{status};
    last if $last != 200;
    $ok += 10;
}

is($last, 503, "cooling instances ($ok more): then 503 for 10 more");

# what that batch made room for goes to one instance at a time

for (; $i < 990; $i++) {
    $last = post_done($PF, [ $F[$i] ])->{status};
    last if $last != 200;
    $ok++;
}

is($last, 503, "full of cooling instances ($ok more): 503");
is(post_done($PF, [ $F[999] ], port => 'R500')->{status}, 503,
    '... for any fresh instance');
is(post_done($PF, [ $F[1] ])->{status}, 409, '... while the others cool');
like($t->error_log, qr/\[alert\].*zone "taurus_guard_policy" is full/,
    '... with an [alert]');

$t->expect_alert(qr/zone "taurus_guard_policy" is full/);

$t->done_testing;
