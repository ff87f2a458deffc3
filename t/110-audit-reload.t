#!/usr/bin/perl

# Reloads under steady load, some of them while flushes are held: every
# request is answered (200, or 503 with an error record), every allow
# record is closed by exactly one done or error record, no worker leaves
# a request behind ("open socket ... left", "aborting"), and the chain
# verifies.  Before each waiting request had a timer, an old worker
# exited as soon as its last timer was gone, dropping every batch parked
# for its flush.
#
# fdatasync() is slowed, and held while a flag file exists, by an
# LD_PRELOAD shim built here.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

plan(skip_all => 'a sanitizer build cannot take an LD_PRELOAD shim')
    if defined $ENV{TG_MODULE} && $ENV{TG_MODULE} eq '';
system('cc --version >/dev/null 2>&1') == 0
    or plan(skip_all => 'no C compiler for the shim');

my $CLIENTS = 4;
my $SECONDS = 20;

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;
my $verify = $t->repo . '/build/taurus-guard-verify';
plan(skip_all => "no $verify (run make verify)") unless -x $verify;

my $shim = $t->sync_shim(delay_ms => 50)
    or plan(skip_all => 'no fdatasync shim (no compiler, or a sanitizer build)');

$t->upstream;
$t->write_credentials;

{
    local $ENV{LD_PRELOAD} = $shim;

    $t->run(<<"CONF");
worker_processes 2;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

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

# clients: post in a loop until the end, one line per request

my $end = now() + $SECONDS;
my @kids;

for my $c (1 .. $CLIENTS) {
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        open my $out, '>', "$dir/client-$c.txt" or POSIX::_exit(1);
        my $n = 0;
        while (now() < $end) {
            my $body = batch_json([ [ $INSTANCES[$n++ % 3], "2.0.48.$c$n" ] ]);
            my $r = eval { $t->post(upgrade_path(), $body, timeout => 20) }
                || {};
            my $j = $r->{json} || {};
            print $out join(' ', $r->{status} || 'none',
                $j->{error_code} || '-',
                header($r, 'X-Taurus-Guard-Id') || '-') . "\n";
        }
        close $out;
        POSIX::_exit(0);
    }

    push @kids, $pid;
}

my $master = $t->_nginx_pid;
my $reloads = 0;

while (now() < $end - 1) {
    sleep 0.5;

    # every other reload finds flushes held
    my $held = $reloads % 2;
    $t->write_file('hold', '') if $held;
    sleep 0.3;

    kill 'HUP', $master;
    $reloads++;

    sleep 0.5;
    unlink "$dir/hold";
    sleep 0.5;
}

unlink "$dir/hold";
waitpid $_, 0 for @kids;

my @res;
for my $c (1 .. $CLIENTS) {
    my $txt = $t->read_file("client-$c.txt") || '';
    push @res, map { [ split / / ] } split /\n/, $txt;
}

note(scalar(@res) . " requests, $reloads reloads");
ok(@res > 20, 'requests were sent');

my @bad = grep { !($_->[0] eq '200'
    || ($_->[0] eq '503' && $_->[1] eq 'TG.0503')) } @res;
is(scalar @bad, 0, 'every request answered: 200, or 503 TG.0503')
    or diag(join "\n", map { "@$_" } @bad[0 .. ($#bad > 9 ? 9 : $#bad)]);

# the completion records of the last answers are written in the log
# phase: give them a moment

sleep 1;

my %by;
for my $a ($t->audit_records) {
    push @{ $by{ $a->{id} || '-' } }, $a->{decision} || '-';
}

my @allow = grep { grep { $_ eq 'allow' } @{ $by{$_} } } keys %by;
my @open = grep {
    my @d = @{ $by{$_} };
    scalar(grep { $_ eq 'done' || $_ eq 'error' } @d) != 1
} @allow;

ok(@allow >= @res, 'an allow record for every request');
is(scalar @open, 0, 'every allow closed by exactly one done or error')
    or diag(join "\n", map { "$_: @{ $by{$_} }" } @open[0 .. ($#open > 9
        ? 9 : $#open)]);

for my $r (grep { $_->[0] eq '503' } @res) {
    my @d = @{ $by{ $r->[2] } || [] };
    is("@d", 'allow error', "503 $r->[2]: allow then error") or last;
}

unlike($t->error_log, qr/open socket|aborting/,
    'no request left behind by an exiting worker');

my $out = $t->_cmd($verify, "$dir/audit.log");
is($? >> 8, 0, 'the chain verifies') or diag($out);

$t->done_testing;
