#!/usr/bin/perl

# A cooldown= shorter than 15 minutes and a worker killed with a batch in
# flight: the gateway cannot tell a lost batch from a slow one, so the
# instance is held as in flight (409, "has a batch in flight",
# Retry-After: 1) for 15 minutes from the batch's start, past its
# cooldown; then the batch is taken for lost, its cooldown from its
# start is over, and the instance is free.  What taurus_guard_policy
# and the README's "Operations" tell operators.  The monotonic clock is
# moved on by the LD_PRELOAD shim t/lib/tg-clockshift.c.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

plan(skip_all => 'a sanitizer build cannot take the clock shim')
    if defined $ENV{TG_MODULE} && $ENV{TG_MODULE} eq '';

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;

system('cc', '-shared', '-fPIC', '-o', "$dir/clockshift.so",
    "$FindBin::Bin/lib/tg-clockshift.c", '-ldl') == 0
    or plan(skip_all => 'the clock shim does not build');

$t->upstream;
$t->write_credentials;
$t->write_file('clock.offset', "0\n");

my $P = 'c' x 32;
my $X = sprintf '%032xin07', 1;

# an upstream that takes the batch and never answers; it writes "start"
# to never.log once it has the whole request

my $nport = $t->port('NEVER');
my $kid = fork;
die "fork: $!\n" unless defined $kid;

if ($kid == 0) {
    setpgrp(0, 0);
    open STDOUT, '>', '/dev/null';
    open STDERR, '>', '/dev/null';
    $SIG{CHLD} = 'IGNORE';
    my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$nport",
        Listen => 16, ReuseAddr => 1) or POSIX::_exit(1);
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
        open my $log, '>>', "$dir/never.log" or POSIX::_exit(1);
        print $log "start $body\n";
        close $log;
        sleep 120;
        POSIX::_exit(0);
    }
}

END { kill 'TERM', -$kid if $kid; }

{
    local $ENV{TG_CLOCK_OFFSET} = "$dir/clock.offset";
    local $ENV{LD_PRELOAD} = "$dir/clockshift.so";

    $t->run(<<"EOF");
worker_processes 1;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        $P $X;
    }

    taurus_guard_policy $P cooldown=1m;

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_GNEVER%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_read_timeout 300s;
            proxy_pass http://127.0.0.1:$nport;
        }
    }
}
EOF
}

sub got {
    return scalar grep { /^start .*\Q$X\E/ }
        split /\n/, ($t->read_file('never.log') // '');
}

my ($worker) = $t->worker_pids;
ok($worker, "the worker $worker");

my $pid = fork;
die "fork: $!\n" unless defined $pid;

if ($pid == 0) {
    eval { $t->post(upgrade_path($P), batch_json([ $X ]),
        port => 'GNEVER', timeout => 30) };
    POSIX::_exit(0);
}

my $until = time + 5;
sleep 0.1 until got() || time > $until;
is(got(), 1, 'the upstream got the batch');

kill 'KILL', $worker;
$until = time + 5;
sleep 0.1 until (($t->worker_pids)[0] || $worker) != $worker
    || time > $until;
kill 'TERM', $pid;
waitpid $pid, 0;

sub held {
    my ($when) = @_;
    my $r = $t->post(upgrade_path($P), batch_json([ $X ]));
    is($r->{status}, 409, "$when: 409");
    like($r->{json}{error_msg} || '', qr/\Q$X\E has a batch in flight/,
        "$when: in flight") or diag($r->{json}{error_msg});
    is(header($r, 'Retry-After'), '1', "$when: Retry-After: 1");
}

held('just after the kill');

# 5 minutes on: the cooldown of 1m is long over, the batch still counts
# as in flight

$t->write_file('clock.offset', "0 300\n");
sleep 0.3;
held('5 minutes later, past cooldown=1m');

# 14 minutes on: still

$t->write_file('clock.offset', "0 840\n");
sleep 0.3;
held('14 minutes later');

# 16 minutes on: taken for lost, its cooldown from its start is over

$t->write_file('clock.offset', "0 961\n");
sleep 0.3;

my $r = $t->post(upgrade_path($P), batch_json([ $X ]));
is($r->{status}, 200, '16 minutes later: the instance is free: 200')
    or diag($r->{json}{error_msg});

$t->expect_alert(qr/worker process \d+ exited on signal 9/);

$t->done_testing;
