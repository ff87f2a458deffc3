#!/usr/bin/perl

# A durable record written by another request's write joins the next
# flush with its descriptor, whatever ends first in the turn.
#
# The race, made certain here: a flush (X's) is in flight in the thread
# pool; in one turn of the event loop an allowed batch (A) queues its
# record, and a refusal (B), written at once, writes A's record with its
# own and takes a descriptor for the next flush; X's flush then ends
# before the turn's end delivers A.  The gateway closed that descriptor
# as nobody's (A was not yet among those waiting for a flush), then ran
# A's flush on no descriptor at all, and forwarded A as flushed, with
# every fdatasync() failing.
#
# One worker.  fdatasync() is held by an LD_PRELOAD shim while a flag
# file exists and fails while another exists.  This test holds the
# audit file's POSIX lock, so the worker blocks on a refusal (P) while
# A, B and the end of X's flush all arrive: when the lock goes, they
# are handled in one turn.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Fcntl qw(F_SETLKW F_WRLCK SEEK_SET);
use IO::Socket::INET;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

plan(skip_all => 'a sanitizer build cannot take an LD_PRELOAD shim')
    if defined $ENV{TG_MODULE} && $ENV{TG_MODULE} eq '';

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;

my $shim = $t->sync_shim()
    or plan(skip_all => 'no fdatasync shim (no compiler)');

$t->upstream;
$t->write_credentials;

{
    local $ENV{LD_PRELOAD} = $shim;
    $t->run(<<"CONF");
worker_processes 1;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log timeout=30s;

    taurus_guard_allow {
        %%PROJECT%% @INSTANCES;
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
CONF
}

$t->expect_alert(qr/fdatasync\(\) to audit log/);

my $port = $t->port(0);

sub request {
    my ($ids) = @_;
    my $body = batch_json($ids);

    return 'POST ' . upgrade_path() . " HTTP/1.1\r\n"
        . "Host: localhost\r\nConnection: close\r\n"
        . "Content-Type: application/json\r\n"
        . 'Content-Length: ' . length($body) . "\r\n\r\n$body";
}

sub connected {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
        Proto => 'tcp', Timeout => 5) or die "connect: $!\n";

    return $s;
}

sub status_of {
    my ($s) = @_;
    local $/;
    my $x = <$s> // '';
    return $x =~ m{\AHTTP/1\.1 (\d+)} ? $1 : 'none';
}

is($t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]))->{status}, 200,
    'a batch before: 200');

my @c = map { connected() } 1 .. 4;
my ($cx, $cp, $ca, $cb) = @c;
sleep 0.3;

# X: its flush holds the pool's thread

$t->write_file('hold', '');
print $cx request([ $INSTANCES[0] ]);
sleep 0.5;

# a process of ours holds the audit file's lock: the worker's next write
# waits for it

pipe my $rd, my $wr or die "pipe: $!\n";
my $holder = fork;
die "fork: $!\n" unless defined $holder;
if ($holder == 0) {
    close $wr;
    open my $fh, '>>', "$dir/audit.log" or POSIX::_exit(1);
    my $lock = pack('s s x4 q q l x4', F_WRLCK, SEEK_SET, 0, 0, 0);
    fcntl($fh, F_SETLKW, $lock) or POSIX::_exit(1);
    open my $ok, '>', "$dir/locked" or POSIX::_exit(1);
    close $ok;
    my $go = <$rd>;
    POSIX::_exit(0);
}
close $rd;

for (1 .. 100) {
    last if -e "$dir/locked";
    sleep 0.05;
}
ok(-e "$dir/locked", 'the audit file is locked');

print $cp request([ $OTHER_INSTANCE ]);     # P: blocks the worker
sleep 0.5;
print $ca request([ $INSTANCES[1] ]);       # A: allowed, durable
sleep 0.1;
print $cb request([ $OTHER_INSTANCE ]);     # B: refused, written at once
sleep 0.1;

unlink "$dir/hold";                          # X's flush ends
sleep 0.5;
$t->write_file('fail', '');                  # every later fdatasync() fails

close $wr;                                   # the lock goes
waitpid $holder, 0;

my $sa = status_of($ca);
my $sx = status_of($cx);
unlink "$dir/fail";

is($sx, 200, 'X: its flush ended well: 200');
is($sa, 503, 'A: its flush failed: 503, not forwarded');
is(status_of($cp), 403, 'P: refused');
is(status_of($cb), 403, 'B: refused');

my $a_id = $INSTANCES[1];
my @up = grep { ($_->{body} || '') =~ /\Q$a_id\E/ } $t->upstream_records;
is(scalar @up, 0, 'the upstream never saw A');

$t->done_testing;
