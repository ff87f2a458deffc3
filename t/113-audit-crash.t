#!/usr/bin/perl

# A worker killed between its write() of a record and the update of the
# chain head in shared memory, and workers killed at random under load:
# the next records link to the file's real last line, and the chain
# verifies (the dead worker's allow record stays unclosed, as expected).
# Before, the next record linked to the head the dead worker never
# updated, and the verifier reported tampering.
#
# An LD_PRELOAD shim (t/lib/tg-killshim.c) raises SIGKILL right after the
# write() or writev() of audit records while a flag file exists.

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

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;
my $verify = $t->repo . '/build/taurus-guard-verify';
plan(skip_all => "no $verify (run make verify)") unless -x $verify;

my $so = $t->kill_shim or plan(skip_all => 'the shim does not build');

$t->upstream;
$t->write_credentials;

# the master reports every worker killed here, and the zone's lock the
# first one held

$t->expect_alert(qr/worker process \d+ exited on signal 9/);
$t->expect_alert(qr/shared memory zone "taurus_guard_audit:\S+" was locked/);

{
    local $ENV{LD_PRELOAD} = $so;

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

sub verify {
    my $out = $t->_cmd($verify, "$dir/audit.log");
    return ($? >> 8, $out);
}

my $body = batch_json([ $INSTANCES[0] ]);

my $r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, 'before: 200');
$t->wait_audit(header($r, 'X-Taurus-Guard-Id') || '-', 2);

# killed right after its write()

$t->write_file('kill', '');
$r = $t->post(upgrade_path(), $body);
unlink "$dir/kill";

is($r->{status}, undef, 'the worker died with the request');

my @a = $t->audit_records;
is($a[-1]{decision}, 'allow', 'its allow record is in the file');

# the master starts a new worker; the next records link to that record

my $ok = 0;
for my $i (1 .. 6) {
    $r = $t->post(upgrade_path(), $body);
    $ok++ if ($r->{status} || 0) == 200;
}
is($ok, 6, 'after: 200');
sleep 0.3;

my ($rc, $out) = verify();
is($rc, 0, 'killed after write(): the chain verifies') or diag($out);

# killed at random under load

my $end = now() + 6;
my @kids;

for my $c (1 .. 3) {
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        while (now() < $end) {
            eval { $t->post(upgrade_path(),
                batch_json([ $INSTANCES[$c % 3] ])) };
        }
        POSIX::_exit(0);
    }
    push @kids, $pid;
}

my $master = $t->_nginx_pid;
my $kills = 0;

while (now() < $end - 0.5) {
    sleep 0.7;
    my @w;
    for my $p (glob '/proc/[0-9]*') {
        open my $fh, '<', "$p/stat" or next;
        my $s = <$fh>;
        close $fh;
        push @w, $p =~ m{(\d+)\z}
            if defined $s && $s =~ /\)\s+\S+\s+(\d+)/ && $1 == $master;
    }
    next unless @w;
    kill 'KILL', $w[ $kills++ % @w ];
}

waitpid $_, 0 for @kids;
sleep 0.5;

$r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, "after $kills kills under load: 200");
sleep 0.3;

($rc, $out) = verify();
is($rc, 0, 'killed under load: the chain verifies') or diag($out);

$t->done_testing;
