#!/usr/bin/perl

# Group commit across workers: one flush of the audit file in flight at a
# time, whichever worker runs it, and a worker whose records a flush has
# covered does not flush again.  Before, each worker flushed its own
# records, so N batches spread over W workers cost at least W fdatasync()
# calls, running side by side.
#
# An LD_PRELOAD shim built here counts the fdatasync() calls on the audit
# file (one line each in fdatasync.log) and holds call K while the file
# hold.K exists:
#
#   - batch 1 is written, its worker's flush (call 1) is held;
#   - 29 more batches on 4 workers (reuseport) are written meanwhile; no
#     other worker flushes, none is forwarded;
#   - call 1 ends: batch 1 alone is forwarded (its flush began before the
#     others were written), and call 2, by one worker, covers the 29;
#   - call 2 ends: all are forwarded, each with its record in the file
#     before the upstream saw it, and no third call is made;
#   - the metrics say 2 flushes for 30 records.
#
# Then flush_delay=: parsed, refused when invalid, and a batch goes
# through with it.

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

my $N = 30;

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;

$t->write_file('countsync.c', <<"EOF2");
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
fdatasync(int fd)
{
    int           n, lf;
    char          path[64], name[4096], hold[4200];
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

    /* the call's number: the log's size after its one-byte line */

    lf = open("$dir/fdatasync.log", O_WRONLY|O_APPEND|O_CREAT, 0666);
    if (lf == -1) {
        return real(fd);
    }

    (void) write(lf, "\\n", 1);
    n = (fstat(lf, &st) == 0) ? (int) st.st_size : 0;
    close(lf);

    /* who makes call n, in a directory the workers may write to */

    snprintf(hold, sizeof(hold), "$dir/pids/%d", n);
    lf = open(hold, O_WRONLY|O_CREAT|O_TRUNC, 0666);
    if (lf != -1) {
        snprintf(path, sizeof(path), "%d", (int) getpid());
        (void) write(lf, path, strlen(path));
        close(lf);
    }

    snprintf(hold, sizeof(hold), "$dir/hold.%d", n);

    while (access(hold, F_OK) == 0) {
        usleep(10000);
    }

    return real(fd);
}
EOF2

system("cc -shared -fPIC -o $dir/countsync.so $dir/countsync.c -ldl") == 0
    or plan(skip_all => 'the shim does not build');
chmod 0755, "$dir/countsync.so";

# the workers (nobody, when the tests run as root) append to it

$t->write_file('fdatasync.log', '');
chmod 0666, "$dir/fdatasync.log";
mkdir "$dir/pids";
chmod 0777, "$dir/pids";

$t->upstream;
$t->write_credentials;

my $conf = <<"CONF";
worker_processes 4;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log timeout=60s;

    taurus_guard_allow {
        %%PROJECT%% @INSTANCES;
    }

    log_format pids '\$pid \$status \$taurus_guard_id';

    server {
        listen 127.0.0.1:%%PORT_0%% reuseport;
        server_name localhost;

        location /v3/ {
            access_log %%TESTDIR%%/logs/pids.log pids;
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /metrics {
            taurus_guard_metrics;
        }
    }
}
CONF

{
    local $ENV{LD_PRELOAD} = "$dir/countsync.so";
    $t->run($conf);
}

sub calls {
    return (-s "$dir/fdatasync.log") || 0;
}

sub allows {
    return scalar grep { $_->{decision} eq 'allow' } $t->audit_records;
}

sub ups { scalar(my @u = $t->upstream_records) }

sub wait_for {
    my ($what, $want, $secs) = @_;
    my $end = now() + $secs;
    my $got;
    while (($got = $what->()) < $want && now() < $end) {
        sleep 0.05;
    }
    return $got;
}

sub metric {
    my ($name) = @_;
    my $r = $t->http("GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
    my ($v) = ($r->{body} || '') =~ /^\Q$name\E (\S+)$/m;
    return defined $v ? $v : -1;
}

# posts in the background: a child runs them and writes their results

sub posts_async {
    my ($n, $from) = @_;
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

my $flushes0 = metric('taurus_guard_audit_flush_seconds_count');
my $records0 = metric('taurus_guard_audit_flushed_records_total');

$t->write_file("hold.$_", '') for 1, 2;

my $first = posts_async(1, 0);
is(wait_for(\&calls, 1, 10), 1, 'batch 1: its flush is in fdatasync()');

my $rest = posts_async($N - 1, 1);
is(wait_for(\&allows, $N, 20), $N, "all $N allow records written");
sleep 1;
is(calls(), 1, 'no other worker flushes while one flush is in flight');
is(ups(), 0, 'nothing forwarded: all wait for a flush');

unlink "$dir/hold.1";
my @r1 = collect($first);
is(($r1[0] || [])->[0], 200, 'batch 1 answered 200 once its flush ended');
is(wait_for(\&calls, 2, 10), 2,
    'the next flush covers every record written meanwhile');
sleep 1;
is(calls(), 2, 'by one worker: the others wait for it');
is(ups(), 1, 'only batch 1 forwarded: the others wait for their flush');

unlink "$dir/hold.2";
my @rn = collect($rest);
is(scalar(grep { $_->[0] eq '200' } @rn), $N - 1, 'the others answered 200')
    or diag(join ' ', map { $_->[0] } @rn);

my @up = $t->upstream_records;
is(scalar @up, $N, 'all forwarded');
is(scalar(grep { ($_->{audit_seen} || 0) != 1 } @up), 0,
    'every one audited before the upstream saw it');
is(calls(), 2, "$N batches, 2 fdatasync() calls");

my @ids = map { $_->[2] } @r1, @rn;
my @pids = $t->workers_of(@ids);
cmp_ok(scalar @pids, '>=', 2, 'served by ' . scalar(@pids) . ' workers');

is(metric('taurus_guard_audit_flush_seconds_count') - $flushes0, 2,
    'metrics: 2 flushes');
is(metric('taurus_guard_audit_flushed_records_total') - $records0, $N,
    "metrics: $N records flushed");

# a worker killed during its flush leaves the lock to the others

$t->expect_alert(qr/worker process \d+ exited on signal 9/);

$t->write_file('hold.3', '');
my $dead = posts_async(1, 0);
is(wait_for(\&calls, 3, 10), 3, 'a flush held');
my $holder = $t->read_file('pids/3') || 0;
ok($holder > 0 && kill('KILL', $holder), 'its worker killed');
collect($dead);
unlink "$dir/hold.3";

my $t0 = time;
my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 200, 'the next batch: 200, its flush took the lock over')
    or diag('after ' . (time - $t0) . ' s');
is(calls(), 4, 'with a flush of its own');
@up = $t->upstream_records;
is(($up[-1] || {})->{audit_seen}, 1,
    'audited before the upstream saw it');

$t->finish;

# flush_delay=

my $t2 = Test::TaurusGuard->new;
$t2->upstream;
$t2->write_credentials;

my $conf2 = <<"CONF";
worker_processes 2;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log AUDIT;

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

for my $bad ('flush_delay=x', 'flush_delay=2s', 'flush_delay=-1us',
    'flush_delay=500ms timeout=500ms')
{
    (my $c = $conf2) =~ s/AUDIT/$bad/;
    my ($rc, $out) = $t2->nginx_t($c);
    isnt($rc, 0, "\"$bad\" refused");
    like($out, qr/flush_delay/, "\"$bad\": the message names flush_delay");
}

for my $good ('flush_delay=0', 'flush_delay=300us', 'flush_delay=2ms',
    'fsync=on thread_pool=default timeout=5s flush_delay=1ms')
{
    (my $c = $conf2) =~ s/AUDIT/$good/;
    my ($rc, $out) = $t2->nginx_t($c);
    is($rc, 0, "\"$good\" accepted") or diag($out);
}

(my $c2 = $conf2) =~ s/AUDIT/flush_delay=5ms/;
$t2->run($c2);

my @out = $t2->concurrent_posts(upgrade_path(),
    batch_json([ $INSTANCES[0] ]), 10);
is(scalar(grep { $_->[0] eq '200' } @out), 10,
    'flush_delay=5ms: 10 batches at once, all 200');
@up = $t2->upstream_records;
is(scalar(grep { ($_->{audit_seen} || 0) != 1 } @up), 0,
    'flush_delay=5ms: every one audited before the upstream saw it');

$t2->done_testing;
