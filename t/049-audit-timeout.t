#!/usr/bin/perl

# A flush that does not end in time (timeout=) refuses its batch with
# 503: an error record closes the allow record, nothing is forwarded, and
# the late flush touches nothing when it finally ends.  A graceful
# shutdown ("nginx -s quit") waits for a batch parked for its flush: it
# is answered, forwarded once the flush ends or refused by the timeout.
# Before the timer, an exiting worker left such a request behind ("open
# socket ... left"), unanswered and without a completion record.
#
# fdatasync() is held while a flag file exists, by the LD_PRELOAD shim
# of t/lib/tg-syncshim.c, built here.

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

my $conf = <<"CONF";
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log timeout=1s;

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

sub start {
    local $ENV{LD_PRELOAD} = $shim;
    $t->run($conf);
}

sub hold { $t->write_file('hold', '') }
sub release { unlink "$dir/hold" }

# a post in a child process: returns a reader for "status code id"

sub post_async {
    my ($body) = @_;
    pipe my $r, my $w or die "pipe: $!\n";
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        close $r;
        my $resp = eval { $t->post(upgrade_path(), $body) } || {};
        my $j = $resp->{json} || {};
        print $w join(' ', $resp->{status} || 'none',
            $j->{error_code} || '-',
            header($resp, 'X-Taurus-Guard-Id') || '-',
            $j->{error_msg} || '-') . "\n";
        close $w;
        POSIX::_exit(0);
    }
    close $w;
    return [ $pid, $r ];
}

sub collect {
    my ($k) = @_;
    my $fh = $k->[1];
    my $l = <$fh>;
    close $fh;
    waitpid $k->[0], 0;
    chomp $l if defined $l;
    return split / /, defined $l ? $l : 'none - - -', 4;
}

sub ups { scalar(my @u = $t->upstream_records) }

start();

my $body = batch_json([ $INSTANCES[0] ]);

my $r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, 'a flush that ends: 200');
is(ups(), 1, 'forwarded');

# a hung flush, two batches waiting for it

hold();
my $t0 = time;
my @k = map { post_async(batch_json([ $INSTANCES[$_] ])) } 1, 2;
my @res = map { [ collect($_) ] } @k;
my $took = time - $t0;

for my $i (0, 1) {
    my ($status, $code, $id, $msg) = @{ $res[$i] };
    is($status, 503, "hung flush $i: 503");
    is($code, 'TG.0503', "hung flush $i: TG.0503");
    like($msg, qr/audit flush timed out/, "hung flush $i: the reason");
    my @a = $t->wait_audit($id, 2);
    is(join(',', map { $_->{decision} } @a), 'allow,error',
        "hung flush $i: allow then error");
    is(($a[1] || {})->{reason}, 'audit flush timed out',
        "hung flush $i: the error record says why");
}

ok($took < 8, 'refused by the timer, not after the flush');
is(ups(), 1, 'nothing forwarded while the flush hangs');

# the flush ends late: it must not touch the finished requests

release();
sleep 0.5;

$r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, 'after the late flush: 200');
is(ups(), 2, 'forwarded again');
unlike($t->error_log, qr/\[alert\]/, 'no alert when the late flush ends');
like($t->error_log, qr/audit flush for record \w+ timed out after 1000 ms/,
    'the timeout is logged');

# quit while a flush is held: the batch is forwarded once it ends

my $master = $t->_nginx_pid;

hold();
my $k = post_async($body);
sleep 0.3;
kill 'QUIT', $master;
sleep 0.3;
release();

my ($status, $code, $id) = collect($k);
is($status, 200, 'quit, flush released: 200');
my @a = $t->wait_audit($id, 2);
is(join(',', map { $_->{decision} } @a), 'allow,done',
    'quit, flush released: allow then done');
is(ups(), 3, 'quit, flush released: forwarded');

my $end = now() + 10;
sleep 0.1 while kill(0, $master) && now() < $end;
ok(!kill(0, $master), 'nginx quit');
$t->{running} = 0;

# quit while a flush hangs past the timeout: 503 and an error record

start();
$master = $t->_nginx_pid;

hold();
$k = post_async($body);
sleep 0.3;
kill 'QUIT', $master;

($status, $code, $id) = collect($k);
release();
is($status, 503, 'quit, flush hung: 503');
@a = $t->wait_audit($id, 2);
is(join(',', map { $_->{decision} } @a), 'allow,error',
    'quit, flush hung: allow then error');
is(ups(), 3, 'quit, flush hung: nothing forwarded');

$end = now() + 10;
sleep 0.1 while kill(0, $master) && now() < $end;
$t->{running} = 0;

unlike($t->error_log, qr/open socket|aborting/,
    'no request left behind by an exiting worker');

my $out = $t->_cmd($verify, "$dir/audit.log");
is($? >> 8, 0, 'the chain verifies') or diag($out);

# thread_pool=off: accepted, the flush runs in the event loop

my ($rc, $tout) = $t->nginx_t(
    $conf =~ s/timeout=1s/timeout=1s thread_pool=off/r);
is($rc, 0, 'timeout= with thread_pool=off: nginx -t passes') or diag($tout);

($rc, $tout) = $t->nginx_t($conf =~ s/timeout=1s/timeout=0/r);
isnt($rc, 0, 'timeout=0: nginx -t fails');
like($tout, qr/invalid timeout "timeout=0" in \S+:\d+/, 'timeout=0: says so');

# a flush waited for past 15 minutes in flight would send a batch taken
# for lost, its instances freed meanwhile: 10 minutes at most

($rc, $tout) = $t->nginx_t($conf =~ s/timeout=1s/timeout=10m/r);
is($rc, 0, 'timeout=10m: nginx -t passes') or diag($tout);

($rc, $tout) = $t->nginx_t($conf =~ s/timeout=1s/timeout=601s/r);
isnt($rc, 0, 'timeout=601s: nginx -t fails');
my $why = 'at most 10m, since a batch in flight for 15 minutes is taken'
    . ' for lost';
like($tout, qr/"timeout=601s": \Q$why\E in \S+:\d+/,
    'timeout=601s: says why');

$t->done_testing;
