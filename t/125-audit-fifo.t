#!/usr/bin/perl

# A FIFO put at the audit log's path while nginx runs.  Each worker
# follows the log's name to a new file under the zone's lock, and opened
# it for writing in blocking mode: with no reader, open() never
# returned, holding the lock, so every worker stalled (guarded batches,
# and everything else they served) until something read the FIFO.  Now
# only a regular file is followed: records go on to the file the name
# led to before, the health check fails, and nothing stalls.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use POSIX ();
use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;
my $log = "$dir/logs/audit.log";
my $verify = $t->repo . '/build/taurus-guard-verify';
my $reader;

END {
    local $?;

    # the old code is still in open(): a reader lets it go
    if ($reader) {
        kill 'KILL', $reader;
        waitpid $reader, 0;
    }
    unlink $log if -p $log;
}

# the stand-in upstream reads the log by name to see the record: it reads
# the file records go on to
$t->upstream(audit_log => "$log.1");
$t->write_credentials;

$t->run(<<"EOF2");
worker_processes 2;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log $log timeout=3s;

    taurus_guard_allow {
        %%PROJECT%% @INSTANCES;
    }

    server {
        listen 127.0.0.1:%%PORT_0%% reuseport;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /ping   { return 200 "pong\\n"; }
        location = /health { taurus_guard_health; }
    }
}
EOF2

sub batch {
    my ($n, %o) = @_;
    my $r = $t->post(upgrade_path(),
        batch_json([ [ $INSTANCES[$n % 3], "2.0.48.$n" ] ]), %o);
    $r->{id} = header($r, 'X-Taurus-Guard-Id') || 'none';
    return $r;
}

my $r = batch(1);
is($r->{status}, 200, 'before: 200');
$t->wait_audit($r->{id}, 2, $log);

rename $log, "$log.1" or die "rename: $!\n";
POSIX::mkfifo($log, 0666) or die "mkfifo: $!\n";
chmod 0666, $log;

# batches from both workers, each in its own process

my @kids;
for my $n (2 .. 5) {
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        my $x = batch($n, timeout => 6);
        open my $fh, '>', "$dir/batch.$n" or POSIX::_exit(1);
        print $fh ($x->{status} || 'none'), " $x->{id}\n";
        close $fh;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}

sleep 0.5;

my @ping = map { $t->http("GET /ping HTTP/1.0\r\nHost: x\r\n\r\n",
    timeout => 2) } 1 .. 8;
is(scalar(grep { ($_->{status} || 0) == 200 } @ping), 8,
    'a FIFO at the path: every worker answers');

my $h = $t->http("GET /health HTTP/1.0\r\nHost: x\r\n\r\n", timeout => 2);
is($h->{status}, 503, 'a FIFO at the path: health fails');
like($h->{body} || '', qr/"audit \Q$log\E":"fail"/,
    'a FIFO at the path: the audit check fails');

waitpid $_, 0 for @kids;

my @got = map { $t->read_file("batch.$_") || "none none\n" } 2 .. 5;
is(scalar(grep { /^200 / } @got), 4,
    'a FIFO at the path: every batch answered 200')
    or diag(@got);

# the old code: let open() return, so that nginx can stop

$reader = fork;
die "fork: $!\n" unless defined $reader;
if ($reader == 0) {
    open my $fh, '<', $log;
    sleep 30;
    POSIX::_exit(0);
}
sleep 0.5;

my %allow = map { $_->{id} => 1 } grep { $_->{decision} eq 'allow' }
    $t->audit_records("$log.1");
is(scalar(grep { my ($s, $id) = split ' '; $s eq '200' && !$allow{$id} }
    @got), 0, 'each 200 has its allow record in the file before');

my %up = map { (headers_named($_->{headers}, 'X-Taurus-Guard-Id'))[0]
    => $_ } $t->upstream_records;
my @sent = grep { $up{$_} } map { (split ' ')[1] } @got;
is(scalar(grep { !$up{$_}{audit_seen} } @sent), 0,
    'each forwarded batch was in the file when the upstream saw it');

kill 'KILL', $reader;
waitpid $reader, 0;
$reader = undef;
unlink $log;

# the FIFO gone: the file before still takes records, the chain intact

$r = batch(6);
is($r->{status}, 200, 'the FIFO gone: 200');
$t->wait_audit($r->{id}, 2, "$log.1");

SKIP: {
    skip 'no verifier (run make verify)', 1 unless -x $verify;
    my $out = $t->_cmd($verify, "$log.1");
    is($? >> 8, 0, 'the chain is intact') or diag($out);
}

$t->done_testing;
