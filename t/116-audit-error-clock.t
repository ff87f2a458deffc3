#!/usr/bin/perl

# The once-a-minute error lines of the audit file, of the syslog
# collector and of a full policy zone are paced by the monotonic clock.
# An earlier module paced them with the wall clock: stepped back an hour,
# it kept them silent for an hour.  The wall clock is shifted by the
# LD_PRELOAD shim t/lib/tg-clockshift.c, built here.
#
#   - a batch to a location whose audit log is /dev/full: its [alert];
#     a batch to one with a working file: its record queued for a
#     collector nobody listens on, the syslog failure's [warn]; batches
#     of fresh instances with a cooldown until the policy zone is full:
#     its [alert];
#   - the clock steps back an hour;
#   - 61 s later (monotonic: the shim moves nginx's monotonic clock on
#     a minute at once, rather than the test waiting for it) the next
#     batch to /dev/full logs its [alert] again, the collector's retries
#     their [warn], and the next batch the full zone refuses its [alert].

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

plan(skip_all => 'a sanitizer build cannot take an LD_PRELOAD shim')
    if defined $ENV{TG_MODULE} && $ENV{TG_MODULE} eq '';
plan(skip_all => 'no /dev/full') unless -c '/dev/full';
system('cc --version >/dev/null 2>&1') == 0
    or plan(skip_all => 'no C compiler for the shim');

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;

system('cc', '-shared', '-fPIC', '-o', "$dir/clockshift.so",
    "$FindBin::Bin/lib/tg-clockshift.c", '-ldl') == 0
    or plan(skip_all => 'the shim does not build');
chmod 0755, "$dir/clockshift.so";

my $ALERT = qr/taurus_guard: write\(\) to audit log "\/dev\/full" failed/;
my $WARN = qr/\[warn\].*syslog collector .* failed, retrying/;
my $FULL = qr/\[alert\].*zone "taurus_guard_policy" is full/;

$t->expect_alert($ALERT);
$t->expect_alert($FULL);

# a project with a cooldown, and instances enough to fill a 32k zone

my $PF = 'cccccccccccccccccccccccccccccccc';
my @F = map { sprintf '%032xin07', $_ + 2000 } 0 .. 699;

$t->upstream;
$t->write_credentials;
$t->write_file('clock.offset', "0\n");

# a port nothing listens on: the collector is down

my $down = IO::Socket::INET->new(LocalAddr => '127.0.0.1:0', Listen => 1,
    ReuseAddr => 1) or die "no free port: $!\n";
my $DOWN = $down->sockport;
close $down;

{
    local $ENV{LD_PRELOAD} = "$dir/clockshift.so";
    local $ENV{TG_CLOCK_OFFSET} = "$dir/clock.offset";

    $t->run(<<"CONF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_syslog server=127.0.0.1:$DOWN;
    taurus_guard_policy_zone 32k;
    taurus_guard_policy $PF cooldown=1h;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
        $PF @F;
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_audit_log /dev/full;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_audit_log %%TESTDIR%%/audit.log;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
CONF
}

sub count {
    my ($re) = @_;
    return scalar grep { $_ =~ $re } split /\n/, $t->error_log;
}

sub full { $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ])) }

sub good {
    $t->http("POST " . upgrade_path() . " HTTP/1.0\r\nHost: localhost\r\n"
        . "Content-Type: application/json\r\n"
        . "Content-Length: " . length(batch_json([ $INSTANCES[0] ]))
        . "\r\n\r\n" . batch_json([ $INSTANCES[0] ]), port => 1);
}

# the next hundred of @F, on the working file's port
my $next = 0;
sub fresh {
    my $b = $next++;
    die "no fresh instances left\n" if $b * 100 + 99 > $#F;
    return $t->post(upgrade_path($PF),
        batch_json([ @F[$b * 100 .. $b * 100 + 99] ]), port => 1)->{status};
}

is(full()->{status}, 503, '/dev/full: refused');
is(good()->{status}, 200, 'the working file: forwarded');

my @st = map { fresh() } 1 .. 4;
is($st[0], 200, 'the first batch with a cooldown fitted');
ok((grep { $_ == 503 } @st), 'then the zone is full: ' . join(',', @st));

sleep 1.5;
is(count($ALERT), 1, 'the audit [alert]');
is(count($WARN), 1, 'the syslog [warn], once for its retries');
is(count($FULL), 1, 'the full zone\'s [alert]');

$t->write_file('clock.offset', "-3600\n");
sleep 0.5;
is(full()->{status}, 503, 'clock stepped back: refused');
is(count($ALERT), 1, 'within the minute: no second [alert]');
is(fresh(), 503, 'clock stepped back: the full zone refuses');
is(count($FULL), 1, 'within the minute: no second full zone [alert]');

# a minute of the monotonic clock, still an hour behind on the wall

$t->write_file('clock.offset', "-3600 61\n");
sleep 0.5;

is(full()->{status}, 503, 'a minute later: refused');
is(count($ALERT), 2, 'a minute later: the [alert] again');

# the collector's next retry is due at once; its [warn] follows it
my $until = now() + 5;
sleep 0.1 while count($WARN) < 2 && now() < $until;
cmp_ok(count($WARN), '>=', 2, 'a minute later: the syslog [warn] again');
is(fresh(), 503, 'a minute later: the full zone refuses');
is(count($FULL), 2, 'a minute later: the full zone [alert] again');

$t->done_testing;
