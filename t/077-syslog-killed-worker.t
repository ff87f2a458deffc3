#!/usr/bin/perl

# Audit records a worker had queued for the syslog collector (down all
# along) when it was killed: taurus_guard_syslog_queued_bytes no longer
# counts them once the worker is gone, and they are counted in
# taurus_guard_syslog_dropped_total, with a [warn], when the master
# starts a worker in its place.  The gauge was one number all workers
# added to and took from, and a worker that never ran its exit handler
# (SIGKILL, a crash) left its queue in it for good.
#
#   - a worker killed and started again: the gauge is 0 at once, the
#     records are counted as not sent, and a [warn] says how many;
#   - an old worker kept alive after a reload by a request it proxies,
#     then killed (the master starts none in its place): the gauge
#     forgets its queue at once.

use strict;
use warnings;

use FindBin;
use IO::Socket::INET;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;
$t->expect_alert(qr/exited on signal 9/);

# ports nobody answers on: the collector is down; a listener that never
# accepts holds a proxied request

my $dead = do {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
        Proto => 'tcp', Listen => 1) or die "listen: $!\n";
    $s->sockport;
};

my $hang = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
    Proto => 'tcp', Listen => 16) or die "listen: $!\n";
my $hang_port = $hang->sockport;
$hang->blocking(0);

$t->run(<<"EOF");
worker_processes 1;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;
    taurus_guard_audit_syslog server=127.0.0.1:$dead;

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

        location = /hang {
            proxy_pass http://127.0.0.1:$hang_port;
            proxy_read_timeout 60s;
        }

        location = /metrics {
            taurus_guard_metrics;
        }
    }
}
EOF

sub batches {
    my ($n, $name) = @_;
    for my $i (1 .. $n) {
        is($t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]))->{status},
            200, "$name: batch $i: 200, the collector down");
    }
    sleep 0.3;
}

sub gauges {
    my (undef, $m) = $t->metrics;
    return ($m->{taurus_guard_syslog_queued_bytes},
            $m->{taurus_guard_syslog_dropped_total});
}

sub wait_workers {
    my (@old) = @_;
    my %old = map { $_ => 1 } @old;
    my $end = now() + 10;
    my @w;
    while (now() < $end) {
        @w = grep { !$old{$_} } $t->worker_pids;
        last if @w;
        sleep 0.05;
    }
    return @w;
}


# killed, and started again in its slot

batches(3, 'killed');

my ($queued, $dropped) = gauges();
cmp_ok($queued || 0, '>', 0, 'killed: six records queued');
is($dropped, 0, 'killed: none dropped yet');

my @first = $t->worker_pids;
is(scalar @first, 1, 'killed: one worker');
kill 'KILL', @first;

my @second = wait_workers(@first);
is(scalar @second, 1, 'killed: a new worker in its place');

($queued, $dropped) = gauges();
is($queued, 0, 'killed: nothing queued any more');
is($dropped, 6, 'killed: the six records it held counted as not sent');

my $warn = "had 6 audit records queued for the syslog collector, not sent"
    . ' (they are in the audit file)';
like($t->error_log, qr/\[warn\].*\(pid $first[0]\) \Q$warn\E/,
    'killed: a [warn] says so');

batches(1, 'after');
($queued) = gauges();
cmp_ok($queued || 0, '>', 0, 'after: the new worker\'s two records queued');
my $two = $queued || 0;


# an old worker kept by a request it proxies, killed after a reload

my $slow = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $t->port(0),
    Proto => 'tcp') or die "connect: $!\n";
print $slow "GET /hang HTTP/1.1\r\nHost: localhost\r\n\r\n";

my $end = now() + 5;
my $held;
sleep 0.05 until ($held = $hang->accept) || now() > $end;
ok($held, 'reload: a request held by the old worker');

$t->reload;
my @third = wait_workers(@second);
is(scalar @third, 1, 'reload: a new worker');
ok(kill(0, @second), 'reload: the old worker still runs');

($queued, $dropped) = gauges();
is($queued, $two, 'reload: the old worker\'s queue still counted');

kill 'KILL', @second;
$end = now() + 10;
sleep 0.05 while kill(0, @second) && now() < $end;
ok(!kill(0, @second), 'reload: the old worker is gone');
is(scalar(() = $t->worker_pids), 1, 'reload: none started in its place');

($queued, $dropped) = gauges();
is($queued, 0, 'reload: its queue no longer counted');

close $slow;
close $held if $held;

$t->done_testing;
