#!/usr/bin/perl

# A graceful shutdown (QUIT, and so a reload or a binary upgrade) while
# the syslog collector is behind: nginx closes the collector's connection
# with its idle ones, in the middle of a frame, and a record written
# afterwards (the done record of a batch still in flight) connects again.
# The new connection starts with a whole frame, from the first one the
# collector did not get all of: an earlier module went on from the byte
# it had stopped at, so the collector read the caller's strings as
# message headers.  And the worker does not leave that connection open
# when it exits ("open socket left" [alert]).
#
# The collector here has a small receive buffer and never reads its
# first connection; it writes what later ones send to conn.N.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_RCVBUF);
use JSON::PP;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

my $json = JSON::PP->new->utf8->canonical;
my @kids;
# each stand-in is a process group, with the children it forks for its
# connections (one of them sleeps on the connection it never reads)
END { local $?; for (@kids) { kill 'TERM', -$_; waitpid $_, 0; } }

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;
my $port = $t->port('SYSLOG');
my $slow = $t->port('SLOW');

# collector: small receive buffer; connection 1 is never read; later ones
# are read to files conn.N

my $l = IO::Socket::INET->new(Proto => 'tcp') or die "$!";
setsockopt($l, SOL_SOCKET, SO_RCVBUF, 4096) or die "rcvbuf $!";
setsockopt($l, SOL_SOCKET, Socket::SO_REUSEADDR, 1);
bind($l, Socket::pack_sockaddr_in($port, Socket::inet_aton('127.0.0.1'))) or die "bind $!";
listen($l, 8) or die "listen $!";
my $pid = fork;
if ($pid == 0) {
    setpgrp(0, 0);
    open STDOUT, '>', '/dev/null'; open STDERR, '>', '/dev/null';
    $SIG{TERM} = sub { POSIX::_exit(0) };
    my $n = 0;
    while (my $c = $l->accept) {
        $n++;
        my $k = fork;
        if ($k == 0) {
            open STDOUT, '>', '/dev/null'; open STDERR, '>', '/dev/null';
            my $r = sysread($c, my $first, 100);
            POSIX::_exit(0) unless $r;
            if (!-e "$dir/held") {
                open my $h, '>', "$dir/held"; close $h;
                sleep 1000; POSIX::_exit(0);
            }
            open my $fh, '>', "$dir/conn.$n" or die;
            binmode $fh; $fh->autoflush(1); print $fh $first;
            while (1) { my $r = sysread($c, my $b, 65536); last unless $r; print $fh $b; }
            POSIX::_exit(0);
        }
        close $c;
    }
    POSIX::_exit(0);
}
push @kids, $pid;
close $l;

# a slow upstream: answers 200 after 3 s
my $ul = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$slow", Proto => 'tcp',
    Listen => 8, ReuseAddr => 1) or die "$!";
my $upid = fork;
if ($upid == 0) {
    setpgrp(0, 0);
    open STDOUT, '>', '/dev/null'; open STDERR, '>', '/dev/null';
    $SIG{TERM} = sub { POSIX::_exit(0) };
    while (my $c = $ul->accept) {
        if (fork == 0) {
            my $buf = '';
            while ($buf !~ /\r\n\r\n/) { sysread($c, $buf, 65536, length $buf) or last; }
            sleep 3;
            print $c "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
            close $c;
            POSIX::_exit(0);
        }
        close $c;
    }
    POSIX::_exit(0);
}
push @kids, $upid;
close $ul;

$t->write_credentials;
$t->run(<<"EOF");
worker_processes 1;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log fsync=off;
    taurus_guard_audit_syslog server=127.0.0.1:$port queue=8m;
    taurus_guard_max_batch 100;

    taurus_guard_allow {
        %%PROJECT%% @INSTANCES;
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:$slow;
            proxy_read_timeout 30s;
        }

        location = /metrics {
            taurus_guard_metrics;
        }
    }
}
EOF

# denied batches of about 5 KB records until the socket is full: the gauge
# stays above 0
my $v = 'v' x 100;
my $items = [ map { { instance_id => sprintf('%032xin07', $_),
    current_version => $v } } 1 .. 25 ];
my $m;
for my $i (1 .. 3000) {
    my $r = $t->post(upgrade_path(), $json->encode({
        databases_instance_infos => $items, delay => 'false' }));
    (undef, $m) = $t->metrics if $i % 20 == 0;
    last if $i % 20 == 0 && ($m->{taurus_guard_syslog_queued_bytes} || 0) > 200000;
}
(undef, $m) = $t->metrics;
note("queued bytes: " . ($m->{taurus_guard_syslog_queued_bytes} || 0));

# an allowed batch, which the slow upstream holds for 3 s
my $bg = fork;
if ($bg == 0) {
    my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]), timeout => 20);
    POSIX::_exit(0);
}
sleep 1;

# graceful shutdown: close_idle_connections closes the syslog connection
my $master = $t->_nginx_pid;
kill 'QUIT', $master;
waitpid $bg, 0;
sleep 2;

my ($cf) = glob("$dir/conn.*");
my $c2 = defined $cf ? do { local $/; open my $fh, '<', $cf; binmode $fh; <$fh> } : undef;
ok(defined $c2, 'the worker reconnected during shutdown');
$c2 //= '';
note("conn.2: " . length($c2) . " bytes, starts: " . substr($c2, 0, 120));
like($c2, qr/\A\d+ <\d+>1 /, 'the new connection starts with a whole frame')
    or diag(substr($c2, 0, 200));

# every frame on it whole: LEN, then LEN bytes of "<PRI>1 ..."

my ($off, $bad, $frames) = (0, 0, 0);
while ($off < length $c2) {
    my ($len) = substr($c2, $off, 12) =~ /\A(\d+) / or do { $bad++; last };
    my $msg = substr($c2, $off + length($len) + 1, $len);
    $bad++ unless $msg =~ /\A<\d+>1 \S+ \S+ taurus-guard \d+ audit - \{"id":"/;
    $off += length($len) + 1 + $len;
    $frames++;
}
is($bad, 0, "all $frames frames on the new connection whole");

my $until = now() + 10;
sleep 0.1 while kill(0, $master) && now() < $until;
ok(!kill(0, $master), 'nginx exited');
unlike($t->error_log, qr/open socket #\d+ left/,
    'the worker closed the connection it made while shutting down');

$t->{running} = 0;
$t->done_testing;
