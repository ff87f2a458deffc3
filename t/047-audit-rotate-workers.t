#!/usr/bin/perl

# Rotation with two workers, made deterministic: "nginx -s reopen" must
# move every worker to the new file between two records of the chain,
# even when one worker reopens later than the other.
#
# Two workers have batches in flight to a slow upstream.  Worker B is
# stopped (SIGSTOP); the log is renamed and the master told to reopen:
# the master and worker A reopen.  A's batches complete and A writes
# their done records to the new file.  Then B resumes: in the same turn
# of its event loop it sees the reopen message and its upstream answers,
# and nginx reopens only after that turn, so B's records are written
# under the shared lock after A's.  The rotated series must still verify
# oldest first (README, "Audit log": the first record of the new file
# links to the last of the old one).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

my $verify = $t->repo . '/build/taurus-guard-verify';
plan(skip_all => "no $verify (run make verify)") unless -x $verify;

my $DELAY = 1;      # the upstream's answer, seconds
my $BATCHES = 16;

my $dir = $t->testdir;
my $log = "$dir/audit.log";
my $json = JSON::PP->new->utf8;

# a slow upstream: reads a request, waits, answers 200 (the signature is
# checked elsewhere; here only the timing matters)

my $up_port = $t->port('UP');
my $up = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$up_port",
    Listen => 64, ReuseAddr => 1, Proto => 'tcp')
    or die "listen $up_port: $!\n";

my $up_pid = fork;
die "fork: $!\n" unless defined $up_pid;

if ($up_pid == 0) {
    $SIG{CHLD} = 'IGNORE';
    while (my $c = $up->accept) {
        next if fork;
        my $buf = '';
        while ($buf !~ /\r\n\r\n/) {
            sysread($c, $buf, 65536, length $buf) or POSIX::_exit(0);
        }
        my ($len) = $buf =~ /^Content-Length:\s*(\d+)/mi;
        $len ||= 0;
        while (length($buf) - index($buf, "\r\n\r\n") - 4 < $len) {
            sysread($c, $buf, 65536, length $buf) or POSIX::_exit(0);
        }
        sleep $DELAY;
        my $body = '{"resp":"success"}';
        syswrite($c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            . "Content-Length: " . length($body) . "\r\n"
            . "Connection: close\r\n\r\n$body");
        POSIX::_exit(0);
    }
    POSIX::_exit(0);
}
close $up;

my @stopped;

END {
    local $?;
    kill 'CONT', @stopped if @stopped;
    if ($up_pid) {
        kill 'TERM', $up_pid;
        waitpid $up_pid, 0;
    }
}

$t->write_credentials;

$t->run(<<"EOF");
worker_processes 2;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% @INSTANCES;
    }

    server {
        listen 127.0.0.1:%%PORT_0%% reuseport;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            proxy_read_timeout 10s;

            # the done record is written as soon as the answer is sent,
            # in the same turn of the event loop as the upstream's answer
            lingering_close off;
        }
    }
}
EOF

my $port = $t->port(0);

# the batches, sent at once; answers read at the end

my @socks;
for my $i (1 .. $BATCHES) {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
        Proto => 'tcp', Timeout => 5) or next;
    my $body = batch_json([ [ $INSTANCES[$i % 3], "2.0.48.$i" ] ]);
    syswrite($s, "POST " . upgrade_path() . " HTTP/1.1\r\n"
        . "Host: localhost\r\nConnection: close\r\n"
        . "Content-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n$body");
    push @socks, $s;
}

# which worker wrote which allow record (the debug log names it)

my $rec = 'taurus_guard: audit record [0-9a-f]{32}';
my $allow_re = qr/^\S+ \S+ \[debug\] (\d+)#\d+: \*\d+ $rec allow\b/m;

my %by;
for (1 .. 40) {
    %by = ();
    $by{$_}++ for $t->error_log =~ /$allow_re/g;
    my $n = 0;
    $n += $_ for values %by;
    last if $n >= $BATCHES;
    sleep 0.05;
}

my @workers = sort keys %by;
plan(skip_all => 'no debug log, or all batches went to one worker')
    unless @workers == 2;

my ($a, $b) = @workers;
diag("worker A $a: $by{$a} batches, worker B $b: $by{$b} batches");

kill 'STOP', $b;
push @stopped, $b;

rename $log, "$log.1" or die "rename: $!\n";
kill 'USR1', $t->_nginx_pid;

my $reopened = 0;
for (1 .. 40) {
    $reopened = () =
        $t->error_log =~ /^\S+ \S+ \[notice\] $a#\d+: reopening/mg;
    last if $reopened;
    sleep 0.05;
}
ok($reopened, 'worker A reopened');

# the answers are read as they come

my @status;
my $sel = IO::Select->new(@socks);
my %buf;

sub pump {
    my ($wait) = @_;
    for my $s ($sel->can_read($wait)) {
        my $k = fileno $s;
        $buf{$k} = '' unless defined $buf{$k};
        next if sysread($s, $buf{$k}, 65536, length $buf{$k});
        my ($st) = $buf{$k} =~ /\AHTTP\/1\.1 (\d{3})/;
        push @status, $st || 'none';
        $sel->remove($s);
        close $s;
    }
}

# A's batches complete while B is stopped

my $end = now() + $DELAY + 3;
my $a_done = 0;
while (now() < $end) {
    $a_done = () =
        $t->error_log =~ /^\S+ \S+ \[debug\] $a#\d+: \*\d+ $rec done\b/mg;
    last if $a_done >= $by{$a};
    pump(0.05);
}
is($a_done, $by{$a}, 'worker A completed its batches');

kill 'CONT', $b;
@stopped = ();

$end = now() + $DELAY + 5;
pump($end - now()) while $sel->count && now() < $end;

is(scalar(grep { $_ eq '200' } @status), $BATCHES, 'every batch: 200');

# every record, once, in one of the files, all whole

my @recs;
for (1 .. 60) {
    @recs = map { $t->audit_records($_) } "$log.1", $log;
    last if grep({ $_->{decision} eq 'done' } @recs) >= $BATCHES;
    sleep 0.05;
}
is(scalar(grep { $_->{decision} eq 'allow' } @recs), $BATCHES,
    'an allow record each');
is(scalar(grep { $_->{decision} eq 'done' } @recs), $BATCHES,
    'a done record each');
is(scalar(grep { $_->{_bad_line} } @recs), 0, 'every line whole');

my $out = $t->_cmd($verify, "$log.1", $log);
is($? >> 8, 0, 'the rotated series verifies, oldest first') or diag($out);
like($out, qr/ok: ${\ (2 * $BATCHES)} records in 2 file\(s\), chain intact/,
    'one chain across the two files');

$t->done_testing;
