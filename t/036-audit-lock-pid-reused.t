#!/usr/bin/perl

# The audit flush lock of a worker killed in its flush is taken over,
# even when the kernel has given the dead worker's pid to another
# process by the time a flush looks.  The lock named its holder by pid
# only, and kill(pid, 0) found the new process alive: every later flush
# waited for a holder that would never unlock.  With the thread pool,
# every durable batch was refused when its timeout= ran out, until a
# restart; in the event loop (thread_pool=off) the worker hung for good.
# The lock now names its holder by pid and start time.
#
# An LD_PRELOAD shim built here holds an fdatasync() of the audit file
# while the file "hold" exists, and writes the pid that called it to
# "holder".  The test, as root, then kills that worker and starts a
# process with its pid (through /proc/sys/kernel/ns_last_pid, as CRIU
# restores processes), and sends the next batch.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use POSIX ();
use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

my $LAST_PID = '/proc/sys/kernel/ns_last_pid';

plan(skip_all => 'a sanitizer build cannot take an LD_PRELOAD shim')
    if defined $ENV{TG_MODULE} && $ENV{TG_MODULE} eq '';
plan(skip_all => "a pid is chosen through $LAST_PID by root only")
    unless $> == 0 && -w $LAST_PID;
system('cc --version >/dev/null 2>&1') == 0
    or plan(skip_all => 'no C compiler for the shim');

sub shim {
    my ($t) = @_;
    my $dir = $t->testdir;

    $t->write_file('holdsync.c', <<"EOF2");
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int
fdatasync(int fd)
{
    int           i, lf;
    char          path[64], name[4096];
    ssize_t       len;
    static int  (*real)(int);

    if (real == NULL) {
        real = (int (*)(int)) dlsym(RTLD_NEXT, "fdatasync");
    }

    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    len = readlink(path, name, sizeof(name) - 1);

    if (len < 10 || memcmp(name + len - 10, "/audit.log", 10) != 0
        || access("$dir/hold", F_OK) != 0)
    {
        return real(fd);
    }

    lf = open("$dir/holder", O_WRONLY|O_CREAT|O_TRUNC, 0666);
    if (lf != -1) {
        snprintf(path, sizeof(path), "%d", (int) getpid());
        (void) write(lf, path, strlen(path));
        close(lf);
    }

    for (i = 0; i < 6000 && access("$dir/hold", F_OK) == 0; i++) {
        usleep(10000);
    }

    return real(fd);
}
EOF2

    system("cc -shared -fPIC -o $dir/holdsync.so $dir/holdsync.c -ldl") == 0
        or plan(skip_all => 'the shim does not build');
    chmod 0755, "$dir/holdsync.so";

    # the workers (nobody, when the tests run as root) write to it
    $t->write_file('holder', '');
    chmod 0666, "$dir/holder";
}

sub wait_for {
    my ($what, $secs) = @_;
    my $end = now() + $secs;
    my $got;
    sleep 0.05 until ($got = $what->()) || now() > $end;
    return $got;
}

sub case {
    my ($name, $audit) = @_;

    my $t = Test::TaurusGuard->new;
    my $dir = $t->testdir;
    my $body = batch_json([ $INSTANCES[0] ]);

    shim($t);
    $t->upstream;
    $t->write_credentials;
    $t->expect_alert(qr/exited on signal 9/);

    {
        local $ENV{LD_PRELOAD} = "$dir/holdsync.so";
        $t->run(<<"EOF2");
worker_processes 1;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log timeout=3s $audit;

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
    }
}
EOF2
    }

    # batch 1: its worker holds the flush lock, and is killed there

    $t->write_file('hold', '');

    my $kid = fork;
    die "fork: $!\n" unless defined $kid;
    if ($kid == 0) {
        eval { $t->post(upgrade_path(), $body, timeout => 5) };
        POSIX::_exit(0);
    }

    my $holder = wait_for(sub { $t->read_file('holder') }, 10);
    ok($holder, "$name: batch 1's worker is in its flush");
    $holder ||= 0;

    my @workers = $t->worker_pids;
    is_deeply(\@workers, [ $holder ], "$name: the only worker holds it");

    kill 'KILL', $holder if $holder;
    unlink "$dir/hold";
    waitpid $kid, 0;

    # the master reaps it and starts another worker

    my $new = wait_for(sub {
        my @w = $t->worker_pids;
        return (@w == 1 && $w[0] != $holder) ? $w[0] : undef;
    }, 10);
    ok($new, "$name: a new worker in its place");

    my $reused = $holder ? take_pid($holder) : undef;

    SKIP: {
        skip "$name: pid $holder was taken by another process first", 4
            unless $reused;

        ok(kill(0, $reused), "$name: a live process has pid $holder now");

        my $r = $t->post(upgrade_path(), $body, timeout => 8);
        is($r->{status}, 200, "$name: the next batch: 200")
            or diag($r->{raw} || 'no answer');

        $r = $t->post(upgrade_path(), $body, timeout => 8);
        is($r->{status}, 200, "$name: and the one after")
            or diag($r->{raw} || 'no answer');

        unlike($t->error_log, qr/audit flush for record \S+ timed out/,
            "$name: no flush timed out");
    }

    if ($reused) {
        kill 'KILL', $reused;
        waitpid $reused, 0;
    }

    $t->finish;
}

case('thread pool', '');
case('event loop', 'thread_pool=off');

done_testing;
