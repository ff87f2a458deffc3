#!/usr/bin/perl

# A batch is signed before its audit record is flushed, and a slow flush
# (up to timeout=, which may be longer than a fetched token's margin and
# than the 15 minutes the API takes an X-Sdk-Date for) made what was
# forwarded stale: the IAM token taken before the flush had expired by
# the forward, and the endpoint refused the batch (401), though a
# renewal had put a new token in shared memory meanwhile; X-Sdk-Date
# was the time of signing, not of sending.  A batch whose flush took a
# fetched secret it holds to within its margin of its end (the margin
# a fetched secret must have left to be used at all: 3 s here, with
# refresh=12s), or lasted a minute, is signed again before it leaves,
# with the secrets in effect then.
#
# tg-syncshim.c holds the flush of the audit file while "hold" exists;
# tg-clockshift.c moves the gateway's wall clock on.
#
#   - an IAM token living 12 s: a batch takes it 7.5 s after it was
#     fetched (its renewal starts beside), its flush is held until the
#     token has expired: forwarded with the renewed token, 200;
#   - the same with IAM down from the first fetch on: the renewal fails,
#     and the batch is refused (503, its allow record closed by an error
#     record) rather than sent with a token that expired;
#   - both again with the flush held until the token has 2.5 s left:
#     within its margin, though not expired, so it could expire in
#     flight; it used to be sent as long as 1 s was left;
#   - credentials file: a flush held while the gateway's clock moves on
#     90 s: X-Sdk-Date is the time (by that clock) the batch left, and
#     its signature verifies; one held 2 s keeps its signature.
#
# In the event loop (thread_pool=off) the flush holds the whole worker,
# and the batch went on in the same turn by nginx's clock as it was
# before the flush: its token taken to its end and its signature aged
# went unnoticed, and the batch left with both (the endpoint answered
# 401).  nginx's clock is read again after the turn's write and flush:
#
#   - the token case in the event loop: the renewal cannot be read
#     while the worker is held, so the batch is refused (503, an error
#     record), not sent with the token that expired;
#   - the date case in the event loop, as with the thread pool.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use POSIX ();
use Test::More;
use Time::HiRes qw(sleep);
use Time::Local qw(timegm);

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-iam.pl" }

plan(skip_all => 'a sanitizer build cannot take an LD_PRELOAD shim')
    if defined $ENV{TG_MODULE} && $ENV{TG_MODULE} eq '';

my $body = batch_json([ $INSTANCES[0] ]);

sub conf {
    my ($secret, $more, $audit) = @_;
    $more = '' unless defined $more;
    $audit = '' unless defined $audit;
    return <<"EOF";
http {
    $secret
    taurus_guard_audit_log %%TESTDIR%%/audit.log timeout=30s$audit;

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

$more    }
}
EOF
}

sub allows {
    my ($t) = @_;
    return scalar grep { $_->{decision} eq 'allow' } $t->audit_records;
}

# a batch posted in the background, its record written, its flush held

sub held_post {
    my ($t, $n) = @_;

    $t->write_file('hold', '');

    pipe my $r, my $w or die "pipe: $!\n";
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        close $r;
        my $res = $t->post(upgrade_path(), $body, timeout => 40);
        print $w ($res->{status} || 0), "\n";
        close $w;
        POSIX::_exit(0);
    }

    close $w;

    my $end = now() + 10;
    sleep 0.05 while allows($t) < $n && now() < $end;

    return [ $pid, $r ];
}

sub collect {
    my ($k) = @_;
    my $fh = $k->[1];
    my $status = <$fh>;
    close $fh;
    waitpid $k->[0], 0;
    chomp $status if defined $status;
    return $status;
}


# an IAM token that expires while its batch's flush is held; IAM up, or
# down once the first token was fetched

sub token_case {
    my ($name, $down, $audit, $left) = @_;

    my $t = Test::TaurusGuard->new;
    my $so = $t->sync_shim or plan(skip_all => 'the shim does not build');

    TaurusGuard::IAM::write_password_file($t);
    TaurusGuard::IAM::start_iam($t, ttl => 12);
    TaurusGuard::IAM::upstream_tokens($t);

    {
        local $ENV{LD_PRELOAD} = $so;
        $t->run(conf('taurus_guard_token iam=/_tg_iam'
            . ' password_file=%%TESTDIR%%/iam.ini refresh=12s;', <<'EOF',
        location = /_tg_iam {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }
EOF
            $audit));
    }

    my $start = now();
    is($t->post(upgrade_path(), $body)->{status}, 200,
        "$name: a first batch fetches a token");

    my ($first) = TaurusGuard::IAM::iam_tokens($t);
    $first ||= [ '', '', 0 ];

    TaurusGuard::IAM::stop_iam($t) if $down;

    # 7.5 s on, about 4 s left: usable (margin 3 s), renewed beside

    sleep($start + 7.5 - now());

    my $k = held_post($t, 2);
    is(allows($t), 2, "$name: the second batch waits for its flush");

    my $end = now() + 10;

    if (defined $left) {
        # the gateway reads expires_at to the second
        my $expires = int $first->[2];
        sleep 0.05 while Time::HiRes::time() < $expires - $left
            && now() < $end;
        my $rest = $expires - Time::HiRes::time();
        ok($rest > 1.5 && $rest <= $left,
            sprintf('%s: the first token has %.1f s left, within its'
                . ' margin', $name, $rest));

    } else {
        sleep 0.1 while time < $first->[2] + 1.5 && now() < $end;
        ok(time > $first->[2],
            "$name: the first token has expired meanwhile");
    }

    unlink $t->testdir . '/hold';

    my $status = collect($k);
    my @up = $t->upstream_records;
    my @issued = TaurusGuard::IAM::iam_tokens($t);

    # in the event loop the held flush holds the renewal too: the
    # batch goes on in the same turn, before its answer is read

    if ($down || $audit) {
        is($status, 503, "$name: the held batch: 503");
        is(scalar @up, 1, "$name: not forwarded");
        is(scalar @issued, 1, "$name: no other token") if $down;

        my @a = $t->audit_records;
        my ($id) = map { $_->{id} } grep { $_->{decision} eq 'allow' }
            @a[-2, -1];
        my @closed = grep { $_->{id} eq ($id || '-')
            && $_->{decision} ne 'allow' } @a;
        is(join(',', map { "$_->{decision}: " . ($_->{reason} || '') }
            @closed), 'error: no usable IAM token after the audit flush',
            "$name: its allow record closed by an error record");

        $t->finish;
        return;
    }

    is($status, 200, "$name: the held batch: 200");
    is(scalar @issued, 2, "$name: renewed once");

    my $up = $up[-1] || {};
    is($up->{token_ok}, 1, "$name: the upstream accepts the token")
        or diag('token_error: ' . ($up->{token_error} || ''));

    # never a token in the test's output

    my @sent = TaurusGuard::IAM::sent_tokens($up);
    ok(@sent == 1 && $sent[0] eq ($issued[1] || [''])->[0],
        "$name: the renewed one");

    $t->finish;
}

token_case('token', 0);
token_case('IAM down', 1);
token_case('token, event loop', 0, ' thread_pool=off');
token_case('token within its margin', 0, '', 2.5);
token_case('IAM down, token within its margin', 1, '', 2.5);


# X-Sdk-Date after a held flush, the gateway's clock moved on 90 s (as
# if the flush had lasted that long), and after one held 2 s; with the
# thread pool, and in the event loop (thread_pool=off), where the flush
# holds the whole worker and the request goes on in the same turn

sub date_case {
    my ($name, $audit) = @_;

    my $t = Test::TaurusGuard->new;
    my $dir = $t->testdir;
    my $so = $t->sync_shim or plan(skip_all => 'the shim does not build');

    system('cc', '-shared', '-fPIC', '-o', "$dir/clockshift.so",
        "$FindBin::Bin/lib/tg-clockshift.c", '-ldl') == 0
        or plan(skip_all => 'the clock shim does not build');
    chmod 0755, "$dir/clockshift.so";
    $t->write_file('clock.offset', "0\n");

    $t->upstream;
    $t->write_credentials;

    {
        local $ENV{LD_PRELOAD} = "$so $dir/clockshift.so";
        local $ENV{TG_CLOCK_OFFSET} = "$dir/clock.offset";
        $t->run(conf('taurus_guard_credentials %%TESTDIR%%/credentials;',
            '', $audit));
    }

    # how far X-Sdk-Date is ahead of the upstream's clock

    my $ahead = sub {
        my ($what) = @_;
        my $up = ($t->upstream_records)[-1] || {};
        is($up->{signature}{ok}, 1, "$what: its signature verifies")
            or diag($up->{signature}{error} || 'no record');

        my ($date) = headers_named($up->{headers} || [], 'X-Sdk-Date');
        my $sent = ($date || '')
            =~ /\A(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z\z/
            ? timegm($6, $5, $4, $3, $2 - 1, $1) : 0;
        my $got = ($up->{time} || '')
            =~ /\A(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)/
            ? timegm($6, $5, $4, $3, $2 - 1, $1) : 0;

        return $sent - $got;
    };

    my $k = held_post($t, 1);
    is(allows($t), 1, "$name: the batch waits for its flush");
    $t->write_file('clock.offset', "90\n");
    sleep 0.5;
    unlink "$dir/hold";

    is(collect($k), 200, "$name: the held batch: 200");
    my $d = $ahead->($name);
    ok($d >= 89 && $d <= 91,
        "$name: X-Sdk-Date is the gateway's time of sending ($d s ahead)");

    $k = held_post($t, 2);
    sleep 2;
    unlink "$dir/hold";

    is(collect($k), 200, "$name, held 2 s: 200");
    $d = $ahead->("$name, held 2 s");
    ok($d >= 87 && $d <= 89,
        "$name, held 2 s: signed before the flush ($d s)");

    $t->finish;
}

date_case('date', '');
date_case('date, event loop', ' thread_pool=off');

done_testing;
