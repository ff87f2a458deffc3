#!/usr/bin/perl

# A failed flush is the only one told.  Linux reports a write the disk
# lost once per open file, to the first fdatasync() that looks; the
# pages are then clean, and a later fdatasync() of the same open file
# returns 0.  nginx's workers share the master's open audit file (each
# has its own only after a reopen), so once one worker's flush failed,
# a flush of records written before that failure ended, by the same or
# another worker, said nothing of them: they were forwarded though they
# may never reach the disk.  Now every record written before a failed
# flush ended fails with it.
#
# An LD_PRELOAD shim built here numbers the fdatasync() calls on the
# audit file, holds call K while hold.K exists and fails it with EIO
# when fail.K exists: call 1 fails, later calls work, as the kernel's.
#
#   - with the thread pool (group commit, four workers): batch 1's flush
#     is held, nine more batches are written meanwhile, then it fails:
#     none of the ten is forwarded, each is closed by an "error" record;
#   - in the event loop (thread_pool=off, two workers): one worker's
#     flush is held and fails; the other worker's batch, written while
#     it was held, is not forwarded either;
#   - with the thread pool, one worker: batch 1's flush is held, batch 2
#     is written meanwhile but its worker held after its writev(), before
#     it counts the bytes written, until the flush has failed: batch 2 is
#     not forwarded either;
#   - then a batch goes through, with the chain intact.

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

sub shim {
    my ($t) = @_;
    my $dir = $t->testdir;

    $t->write_file('failsync.c', <<"EOF2");
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static int
is_audit(int fd)
{
    char     path[64], name[4096];
    ssize_t  len;

    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    len = readlink(path, name, sizeof(name) - 1);

    return len >= 10 && memcmp(name + len - 10, "/audit.log", 10) == 0;
}

/* a write to the audit file waits after it while holdw exists */

ssize_t
writev(int fd, const struct iovec *iov, int n)
{
    int             i;
    ssize_t         rc;
    static ssize_t (*real)(int, const struct iovec *, int);

    if (real == NULL) {
        real = (ssize_t (*)(int, const struct iovec *, int))
                   dlsym(RTLD_NEXT, "writev");
    }

    rc = real(fd, iov, n);

    if (is_audit(fd)) {
        for (i = 0; i < 6000 && access("$dir/holdw", F_OK) == 0; i++) {
            usleep(10000);
        }
    }

    return rc;
}

int
fdatasync(int fd)
{
    int           n, lf;
    char          path[64], name[4096], f[4200];
    ssize_t       len;
    struct stat   st;
    static int  (*real)(int);

    if (real == NULL) {
        real = (int (*)(int)) dlsym(RTLD_NEXT, "fdatasync");
    }

    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    len = readlink(path, name, sizeof(name) - 1);

    if (len < 10 || memcmp(name + len - 10, "/audit.log", 10) != 0) {
        return real(fd);
    }

    lf = open("$dir/fdatasync.log", O_WRONLY|O_APPEND|O_CREAT, 0666);
    if (lf == -1) {
        return real(fd);
    }

    (void) write(lf, "\\n", 1);
    n = (fstat(lf, &st) == 0) ? (int) st.st_size : 0;
    close(lf);

    snprintf(f, sizeof(f), "$dir/hold.%d", n);

    while (access(f, F_OK) == 0) {
        usleep(10000);
    }

    snprintf(f, sizeof(f), "$dir/fail.%d", n);

    if (access(f, F_OK) == 0) {
        errno = EIO;
        return -1;
    }

    return real(fd);
}
EOF2

    system("cc -shared -fPIC -o $dir/failsync.so $dir/failsync.c -ldl") == 0
        or plan(skip_all => 'the shim does not build');
    chmod 0755, "$dir/failsync.so";

    $t->write_file('fdatasync.log', '');
    chmod 0666, "$dir/fdatasync.log";
}

sub conf {
    my ($workers, $audit, $listen) = @_;
    return <<"EOF2";
worker_processes $workers;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log timeout=60s $audit;

    taurus_guard_allow {
        %%PROJECT%% @INSTANCES;
    }

    log_format pids '\$pid \$status \$taurus_guard_id';

    server {
        listen 127.0.0.1:%%PORT_0%% $listen;
        server_name localhost;

        location /v3/ {
            access_log %%TESTDIR%%/logs/pids.log pids;
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF2
}

sub start {
    my ($t, @conf) = @_;
    shim($t);
    $t->upstream;
    $t->write_credentials;
    $t->expect_alert(qr/taurus_guard: fdatasync\(\) to audit log .* failed/);
    local $ENV{LD_PRELOAD} = $t->testdir . '/failsync.so';
    $t->run(conf(@conf));
}

sub calls {
    my ($t) = @_;
    return (-s $t->testdir . '/fdatasync.log') || 0;
}

sub allows {
    my ($t) = @_;
    return scalar grep { $_->{decision} eq 'allow' } $t->audit_records;
}

sub wait_for {
    my ($what, $want, $secs) = @_;
    my $end = now() + $secs;
    my $got;
    while (($got = $what->()) < $want && now() < $end) {
        sleep 0.05;
    }
    return $got;
}

# posts in the background: a child runs them and writes their results

sub posts_async {
    my ($t, $n, $from) = @_;
    pipe my $r, my $w or die "pipe: $!\n";
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        close $r;
        my @out = $t->concurrent_posts(upgrade_path(),
            batch_json([ $INSTANCES[$from % 3] ]), $n);
        print $w join(' ', @$_) . "\n" for @out;
        close $w;
        POSIX::_exit(0);
    }
    close $w;
    return [ $pid, $r ];
}

sub collect {
    my ($k) = @_;
    my $fh = $k->[1];
    my @l = <$fh>;
    close $fh;
    waitpid $k->[0], 0;
    chomp @l;
    return map { [ split / / ] } @l;
}

# every refused batch: 503, never forwarded, its allow closed by an error

sub refused {
    my ($t, $name, @r) = @_;
    my %up = map { (headers_named($_->{headers}, 'X-Taurus-Guard-Id'))[0]
        => 1 } $t->upstream_records;
    my %error = map { $_->{id} => 1 } grep { $_->{decision} eq 'error' }
        $t->audit_records;

    is(scalar(grep { $_->[0] eq '503' } @r), scalar @r,
        "$name: every batch refused with 503")
        or diag(join ' ', map { $_->[0] } @r);
    is(scalar(grep { $up{ $_->[2] } } @r), 0, "$name: none forwarded");
    is(scalar(grep { !$error{ $_->[2] } } @r), 0,
        "$name: each closed by an error record");
}

sub after {
    my ($t, $name) = @_;
    my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
    is($r->{status}, 200, "$name: a batch written after the failure: 200");

    my $verify = $t->repo . '/build/taurus-guard-verify';
    SKIP: {
        skip 'no verifier (run make verify)', 1 unless -x $verify;
        my $out = $t->_cmd($verify, $t->testdir . '/audit.log');
        is($? >> 8, 0, "$name: the chain is intact") or diag($out);
    }
}

# the thread pool's group commit across four workers

{
    my $t = Test::TaurusGuard->new;
    my $dir = $t->testdir;
    my $N = 10;

    start($t, 4, '', 'reuseport');

    $t->write_file('hold.1', '');
    $t->write_file('fail.1', '');

    my $first = posts_async($t, 1, 0);
    is(wait_for(sub { calls($t) }, 1, 10), 1,
        'threads: batch 1 is in its flush');

    my $rest = posts_async($t, $N - 1, 1);
    is(wait_for(sub { allows($t) }, $N, 20), $N,
        "threads: all $N allow records written meanwhile");

    unlink "$dir/hold.1";

    my @r = (collect($first), collect($rest));
    my @pids = $t->workers_of(map { $_->[2] } @r);
    cmp_ok(scalar @pids, '>=', 2,
        'threads: served by ' . scalar(@pids) . ' workers');
    refused($t, 'threads', @r);
    after($t, 'threads');

    $t->finish;
}

# in the event loop, two workers

{
    my $t = Test::TaurusGuard->new;
    my $dir = $t->testdir;

    start($t, 2, 'thread_pool=off', '');

    $t->write_file('hold.1', '');
    $t->write_file('fail.1', '');
    $t->write_file('hold.2', '');

    # the worker in fdatasync() accepts nothing: the other one takes it

    my $first = posts_async($t, 1, 0);
    is(wait_for(sub { calls($t) }, 1, 10), 1,
        'event loop: batch 1 is in its flush');

    my $second = posts_async($t, 1, 1);
    is(wait_for(sub { allows($t) }, 2, 10), 2,
        'event loop: batch 2 written meanwhile');

    unlink "$dir/hold.1";
    my @r = collect($first);
    sleep 0.5;
    unlink "$dir/hold.2";
    push @r, collect($second);

    my @pids = $t->workers_of(map { $_->[2] } @r);
    is(scalar @pids, 2, 'event loop: by two workers');
    refused($t, 'event loop', @r);
    after($t, 'event loop');

    $t->finish;
}

# a record written before the failed flush ended, though its worker
# counted it only after (held between its writev() and the count)

{
    my $t = Test::TaurusGuard->new;
    my $dir = $t->testdir;

    start($t, 1, '', '');

    $t->write_file('hold.1', '');
    $t->write_file('fail.1', '');

    my $first = posts_async($t, 1, 0);
    is(wait_for(sub { calls($t) }, 1, 10), 1,
        'counted late: batch 1 is in its flush');

    $t->write_file('holdw', '');
    my $second = posts_async($t, 1, 1);
    is(wait_for(sub { allows($t) }, 2, 10), 2,
        'counted late: batch 2 written meanwhile, not yet counted');

    unlink "$dir/hold.1";
    sleep 0.5;
    unlink "$dir/holdw";

    my @r = (collect($first), collect($second));
    refused($t, 'counted late', @r);
    after($t, 'counted late');

    $t->finish;
}

done_testing;
