#!/usr/bin/perl

# A fetch slot held by a worker that does not end its fetch (stopped,
# SIGSTOP: alive, so its mark is not taken over as a dead worker's is),
# with the wall clock stepped back an hour meanwhile.  The mark says
# since when a fetch runs; one older than 30 s is nobody's and the next
# request fetches itself.  An earlier module dated the mark with the
# wall clock, so after the step the mark stayed fresh for an hour and
# every request for that project waited 30 s and was refused.  The wall
# clock is shifted by the LD_PRELOAD shim t/lib/tg-clockshift.c, built
# here.
#
#   - request A starts the fetch in one worker (IAM answers after 3 s);
#     that worker is stopped during the fetch;
#   - the clock steps back an hour;
#   - 31 s after the mark (monotonic: the shim moves nginx's monotonic
#     clock on 31 s at once, rather than the test waiting for it),
#     request B, in the other worker, fetches a token itself and is
#     forwarded, without waiting out the step.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-iam.pl" }

plan(skip_all => 'a sanitizer build cannot take an LD_PRELOAD shim')
    if defined $ENV{TG_MODULE} && $ENV{TG_MODULE} eq '';
system('cc --version >/dev/null 2>&1') == 0
    or plan(skip_all => 'no C compiler for the shim');

my $conf = <<"EOF";
worker_processes 2;

http {
    taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

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

        location = /_tg_iam {
            internal;
            proxy_read_timeout 10s;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }

        location = /pid {
            return 200 "\$pid";
        }
    }
}
EOF

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;

system('cc', '-shared', '-fPIC', '-o', "$dir/clockshift.so",
    "$FindBin::Bin/lib/tg-clockshift.c", '-ldl') == 0
    or plan(skip_all => 'the shim does not build');
chmod 0755, "$dir/clockshift.so";

TaurusGuard::IAM::write_password_file($t);
TaurusGuard::IAM::iam_supported($t, $conf) or do {
    $t->done_testing;
    exit;
};

$t->write_file('clock.offset', "0\n");
TaurusGuard::IAM::start_iam($t, ttl => 86400, delay => 3000);
TaurusGuard::IAM::upstream_tokens($t);

{
    local $ENV{LD_PRELOAD} = "$dir/clockshift.so";
    local $ENV{TG_CLOCK_OFFSET} = "$dir/clock.offset";
    $t->run($conf);
}

my $body = batch_json([ $INSTANCES[0] ]);

sub fetches {
    my @l = $t->error_log =~ /fetching from "\/_tg_iam"/g;
    return scalar @l;
}

my $conn = $t->worker_connections(2);
my ($w1, $w2) = sort keys %$conn;

SKIP: {
    skip 'no connection to each of the two workers', 7 unless defined $w2;

    # A: its worker marks the slot and asks IAM, which takes 3 s

    syswrite($conn->{$w1}, "POST " . upgrade_path() . " HTTP/1.1\r\n"
        . "Host: localhost\r\nConnection: close\r\n"
        . "Content-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n$body");

    my $until = now() + 2.5;
    sleep 0.1 until fetches() || now() > $until;
    is(fetches(), 1, "A: IAM is asked, by worker $w1");
    sleep 0.3;

    kill 'STOP', $w1;

    $t->write_file('clock.offset', "-3600\n");
    sleep 0.3;

    # the mark is over 30 s old on the monotonic clock, though the wall
    # clock says it was made an hour from now

    $t->write_file('clock.offset', "-3600 31\n");
    sleep 0.3;

    my $start = time;
    my $r = $t->post(upgrade_path(), $body, socket => $conn->{$w2},
        timeout => 15);
    my $took = time - $start;

    ok(kill(0, $w1), "A's worker is alive, stopped in its fetch");
    is($r->{status}, 200, "B, in worker $w2: 200, the mark is stale")
        or diag(substr($r->{raw} || '', 0, 300));
    cmp_ok($took, '<', 10, sprintf('B did not wait out the step (%.1f s)',
        $took));

    my @up = $t->upstream_records;
    is(scalar @up, 1, 'B was forwarded');
    is(scalar(grep { $_->{token_ok} } @up), 1, 'with a token the upstream '
        . 'accepts');
    is(fetches(), 2, 'B fetched it itself');

    close $conn->{$w1};
    kill 'CONT', $w1;
}

$t->done_testing;
