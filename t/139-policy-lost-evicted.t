#!/usr/bin/perl

# taurus_guard_policy cooldown=: a batch taken for lost (in flight more
# than 15 minutes) whose end comes after all must not give back another
# batch's mark.  Each instance's node counted its lost batches in a byte
# that started at 0, and a batch's end gave back its count in flight
# only if that count was as the batch took it.  When a full zone dropped
# the node once the lost batch's cooldown was over, the node made again
# for the next batch started at 0 too: the lost batch's end gave back
# the new batch's mark, and the instance was sent again while that
# batch was in flight.
#
# A batch is in flight that long only where nginx lets it (here
# proxy_read_timeout 1h); the monotonic clock is moved on 16 minutes by
# the LD_PRELOAD shim t/lib/tg-clockshift.c:
#
#   - X has instance I in flight at an endpoint that answers 400 after
#     12 s; the clock moves on 16 minutes;
#   - 200 instances of another project, in a 32k zone that holds fewer
#     nodes, take the room of I's node: X is taken for lost, its
#     cooldown (1m from its start) is over, and the node goes;
#   - Y takes I, in a node made again, at an endpoint that never
#     answers;
#   - X's 400 comes; then Z for I is refused (409): Y has I in flight.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use POSIX ();
use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

plan(skip_all => 'a sanitizer build cannot take an LD_PRELOAD shim')
    if defined $ENV{TG_MODULE} && $ENV{TG_MODULE} eq '';
system('cc --version >/dev/null 2>&1') == 0
    or plan(skip_all => 'no C compiler for the shim');

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;

system('cc', '-shared', '-fPIC', '-o', "$dir/clockshift.so",
    "$FindBin::Bin/lib/tg-clockshift.c", '-ldl') == 0
    or plan(skip_all => 'the shim does not build');
chmod 0755, "$dir/clockshift.so";

my $P = 'd' x 32;
my $P2 = 'e' x 32;
my $I = $INSTANCES[0];
my @F = map { sprintf '%032xin07', $_ + 1 } 0 .. 199;

$t->write_credentials;
$t->upstream;
$t->upstream(name => 'SLOW', status => 400, delay => 12000);
$t->upstream(name => 'NEVER', delay => 600000);
$t->write_file('clock.offset', "0\n");

sub gw {
    my ($name, $up) = @_;
    return <<"EOF";
    server {
        listen 127.0.0.1:%%PORT_$name%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_read_timeout 1h;
            proxy_pass http://127.0.0.1:%%PORT_$up%%;
        }
    }

EOF
}

my $conf = "worker_processes 1;\n\nhttp {\n" . <<"EOF"
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;
    taurus_guard_policy_zone 32k;

    taurus_guard_allow {
        $P $I;
        $P2 @F;
    }

    taurus_guard_policy $P cooldown=1m;
    taurus_guard_policy $P2 cooldown=1s;

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

EOF
    . gw('GSLOW', 'SLOW') . gw('GNEVER', 'NEVER') . "}\n";

{
    local $ENV{TG_CLOCK_OFFSET} = "$dir/clock.offset";
    local $ENV{LD_PRELOAD} = "$dir/clockshift.so";
    $t->run($conf);
}

sub wait_for {
    my ($what, $secs) = @_;
    my $end = now() + $secs;
    my $got;
    sleep 0.05 until ($got = $what->()) || now() > $end;
    return $got;
}

sub bg {
    my ($port) = @_;
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        eval { $t->post(upgrade_path($P), batch_json([ $I ]), port => $port,
            timeout => 30) };
        POSIX::_exit(0);
    }
    return $pid;
}

sub sent_i {
    my ($name) = @_;
    return scalar grep { ($_->{body} || '') =~ /\Q$I\E/ }
        $t->upstream_records($name);
}

# X: I in flight, answered 400 in 12 s

my $x = bg('GSLOW');
ok(wait_for(sub { sent_i('SLOW') }, 5), 'X: the endpoint has it');

$t->write_file('clock.offset', "0 961\n");
sleep 0.3;

# another project's instances fill the zone: I's node goes

is($t->post(upgrade_path($P2), batch_json([ @F[0 .. 99] ]))->{status}, 200,
    'fillers: 100 instances');
sleep 1.2;
is($t->post(upgrade_path($P2), batch_json([ @F[100 .. 199] ]))->{status},
    200, 'fillers: 100 more, in the room of those that cooled');

# Y: I again, in flight for good

my $y = bg('GNEVER');
ok(wait_for(sub { sent_i('NEVER') }, 5), 'Y: the endpoint has it');

my $r = $t->post(upgrade_path($P), batch_json([ $I ]));
is($r->{status}, 409, 'I while Y has it in flight: 409');
my ($yid) = ($r->{json}{error_msg} || '') =~ /in flight, audit id (\w+)/;
ok($yid, 'Y\'s audit id named');

# X ends after all

waitpid $x, 0;
ok(wait_for(sub {
    grep { ($_->{decision} || '') eq 'done' && ($_->{status} || 0) == 400 }
        $t->audit_records
}, 10), 'X ended, 400');

# Y still has I in flight

$r = $t->post(upgrade_path($P), batch_json([ $I ]));
is($r->{status}, 409, 'Z for I after X\'s end: 409')
    or diag(substr($r->{raw} || '', 0, 300));
like($r->{json}{error_msg} || '', qr/in flight, audit id \Q$yid\E/,
    '... Y\'s batch in flight');
is(sent_i(undef), 0, '... I not sent again');

kill 'TERM', $y;
waitpid $y, 0;

$t->done_testing;
