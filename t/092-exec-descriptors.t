#!/usr/bin/perl

# The descriptors the module keeps are closed on exec.  Only the master
# execs (a binary upgrade, USR2, runs the new nginx binary in a child of
# it), and what it holds when it does is passed on: the new binary must
# get nothing of the module's, only nginx's listening sockets.  A worker
# does not exec, but another module in it may (perl's system(), a
# piped program): the audit log's duplicates a worker keeps for its
# flushes (the flush's own, the file a rotation left) were made with
# dup(), which clears FD_CLOEXEC, and such a child would have held the
# audit file open for writing.  Batches go through first, with a syslog
# collector, a credentials file and a rotation of the audit log, so that
# what the module opens is open.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

my $O_CLOEXEC = 02000000;

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;

$t->upstream;
$t->write_credentials;

# a collector that takes the connection and reads nothing: the worker
# keeps a socket to it

my $sport = $t->port('SYSLOG');
my $collector = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
    LocalPort => $sport, Listen => 16, ReuseAddr => 1)
    or die "collector: $!\n";

$t->run(<<"CONF");
worker_processes 1;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;
    taurus_guard_audit_syslog server=127.0.0.1:$sport;

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

# the descriptors of a process: number => [ target, flags ]

sub fds {
    my ($pid) = @_;
    my %fd;
    opendir my $dh, "/proc/$pid/fd" or return %fd;
    for my $n (grep { /^\d+\z/ } readdir $dh) {
        my $to = readlink "/proc/$pid/fd/$n";
        next unless defined $to;
        my $flags = 0;
        if (open my $fh, '<', "/proc/$pid/fdinfo/$n") {
            local $/;
            my $info = <$fh> // '';
            close $fh;
            $flags = oct($1) if $info =~ /^flags:\s*([0-7]+)/m;
        }
        $fd{$n} = [ $to, $flags ];
    }
    closedir $dh;
    return %fd;
}

# what an exec in that process would pass on: its descriptors without
# FD_CLOEXEC, but the standard ones, those listed in @keep and those
# nginx got from whoever started the tests (this process holds them too)

my %mine = fds($$);

sub inherited {
    my ($pid, @keep) = @_;
    my %fd = fds($pid);
    my %keep = map { $_ => 1 } 0, 1, 2, @keep;
    return map { "$_ -> $fd{$_}[0]" }
        sort { $a <=> $b }
        grep { !$keep{$_} && !($fd{$_}[1] & $O_CLOEXEC)
               && !($mine{$_} && $mine{$_}[0] eq $fd{$_}[0]) } keys %fd;
}

# the listening sockets nginx passes on by design (its NGINX variable)

sub listening {
    my ($pid) = @_;
    my %fd = fds($pid);
    my %ino;
    if (open my $fh, '<', '/proc/net/tcp') {
        while (<$fh>) {
            my @f = split;
            $ino{ $f[9] } = 1 if defined $f[3] && $f[3] eq '0A';
        }
        close $fh;
    }
    return grep { $fd{$_}[0] =~ /^socket:\[(\d+)\]/ && $ino{$1} } keys %fd;
}

my @r;
push @r, $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]))
    for 1 .. 3;
is(scalar(grep { $_->{status} == 200 } @r), 3, 'batches go through');

# a rotation: the worker keeps the file the chain is in until its next
# record

rename "$dir/audit.log", "$dir/audit.log.1";
$t->reopen;

is($t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]))->{status}, 200,
    'a batch after the rotation');

my ($worker) = $t->worker_pids;
my %wfd = fds($worker);
my @audit = grep { $wfd{$_}[0] =~ m{/audit\.log} } keys %wfd;

cmp_ok(scalar @audit, '>=', 2, 'the worker holds the audit log more than'
    . ' once (its own, and its duplicates for the flush)')
    or diag(join ' ', map { "$_ -> $wfd{$_}[0]" } sort keys %wfd);
is(join(' ', map { "$_ -> $wfd{$_}[0]" }
        grep { !($wfd{$_}[1] & $O_CLOEXEC) } sort { $a <=> $b } @audit),
    '', 'every descriptor of the audit log in a worker is closed on exec');

# a binary upgrade: what the master holds is what the new binary gets

my $old = $t->_nginx_pid;
my @ls = listening($old);
ok(@ls, 'the master listens');
is(join(', ', inherited($old, @ls)), '',
    'the master holds nothing an exec would pass on but its listeners');

kill 'USR2', $old;

my ($end, $new) = (now() + 10, undef);
while (now() < $end) {
    $new = $t->_nginx_pid;
    last if -s "$dir/logs/nginx.pid.oldbin" && defined $new && $new != $old;
    sleep 0.1;
}

ok(defined $new && $new != $old, 'a new master runs')
    or die "no new master after USR2\n";

# wait until it is up, then look at what it holds that is not its own

$end = now() + 10;
sleep 0.1 while now() < $end
    && ($t->read_file('logs/error.log') // '') !~ /start worker process/;

my %nfd = fds($new);
my @naudit = grep { $nfd{$_}[0] =~ m{/audit\.log} } keys %nfd;
is(scalar @naudit, 1, 'the new master holds the audit log once (its own)')
    or diag(join ' ', map { "$_ -> $nfd{$_}[0]" } sort keys %nfd);
is(join(', ', inherited($new, listening($new))), '',
    'nothing in the new master an exec would pass on but its listeners');

is($t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]))->{status}, 200,
    'a batch during the upgrade');

kill 'QUIT', $old;
$end = now() + 10;
sleep 0.1 while now() < $end && Test::TaurusGuard::_alive($old);
ok(!Test::TaurusGuard::_alive($old), 'the old master quit');

is($t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]))->{status}, 200,
    'a batch after the upgrade');

close $collector;

$t->done_testing;
