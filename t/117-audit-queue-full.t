#!/usr/bin/perl

# A flush that cannot start, because the thread pool's queue is full,
# fails the batches waiting for it with 503 and an error record, as a
# failed flush does, and from the event loop: woken inside its own audit
# call, the request that wrote its record was signed and recorded again,
# and could recurse until the worker crashed.
#
# Three audit files share a thread pool of one thread and a queue of one
# task; fdatasync() is held by an LD_PRELOAD shim while a flag file
# exists, so the first file's flush holds the thread, the second's waits
# in the queue, and the third's cannot be queued.

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

my $shim = $t->sync_shim()
    or plan(skip_all => 'no fdatasync shim (no compiler, or a sanitizer build)');

$t->upstream;
$t->write_credentials;

my $servers = '';
for my $n (0 .. 2) {
    $servers .= <<"SRV";
    server {
        listen 127.0.0.1:%%PORT_$n%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_audit_log %%TESTDIR%%/audit$n.log thread_pool=one
                                   timeout=5s;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
SRV
}

{
    local $ENV{LD_PRELOAD} = $shim;
    $t->run(<<"CONF");
thread_pool one threads=1 max_queue=1;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;

    taurus_guard_allow {
        %%PROJECT%% @INSTANCES;
    }

$servers
}
CONF
}

$t->expect_alert(qr/fdatasync\(\) to audit log .*audit2\.log/);
$t->expect_alert(qr/thread pool "one" queue overflow/);

my $body = batch_json([ $INSTANCES[0] ]);

is($t->post(upgrade_path(), $body, port => $_)->{status}, 200,
    "file $_: a flush that ends: 200") for 0 .. 2;

# hold the thread with file 0's flush, queue file 1's, overflow with 2's

$t->write_file('hold', '');

my @kids;
for my $n (0 .. 2) {
    pipe my $rd, my $wr or die "pipe: $!\n";
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        close $rd;
        my $x = eval { $t->post(upgrade_path(), $body, port => $n,
            timeout => 15) } || {};
        print $wr join(' ', $x->{status} || 'none',
            ($x->{json} || {})->{error_msg} || '-') . "\n";
        close $wr;
        POSIX::_exit(0);
    }
    close $wr;
    push @kids, [ $pid, $rd ];
    sleep 0.5;
}

# file 2's batch is answered while the others still wait

my $fh = $kids[2][1];
my $line = <$fh>;
waitpid $kids[2][0], 0;
chomp $line if defined $line;
my ($st, $msg) = split / /, $line || 'none -', 2;
is($st, 503, 'a flush that cannot be queued: 503');
like($msg, qr/audit/, '... the audit is the reason');

unlink "$dir/hold";

for my $n (0, 1) {
    my $f = $kids[$n][1];
    my $l = <$f>;
    waitpid $kids[$n][0], 0;
    like($l || '', qr/^200 /, "file $n: forwarded once its flush ended");
}

# file 2: the allow record closed by exactly one error record, once

my @recs = map { JSON::PP->new->decode($_) }
    grep { length } split /\n/, $t->read_file('audit2.log');
my @allow = grep { $_->{decision} eq 'allow' } @recs;
is(scalar @allow, 2, 'file 2: two allow records, one per batch');
my $last = $allow[-1]{id};
is(join(',', map { $_->{decision} } grep { $_->{id} eq $last } @recs),
    'allow,error', 'file 2: the refused batch: allow, then one error');

my $up = grep { ($_->{headers_hash} || 1) } $t->upstream_records;
is($up, 5, 'five batches forwarded, none twice, none of the refused');

for my $n (0 .. 2) {
    my $out = `$verify $dir/audit$n.log 2>&1`;
    is($?, 0, "file $n: the chain verifies") or diag($out);
}

$t->done_testing;
