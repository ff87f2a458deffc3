#!/usr/bin/perl

# Secret files are re-read however the wall clock moves.  An earlier
# module paced its looks at the files with the wall clock, so a clock
# stepped back an hour froze the credentials and the token for that
# hour.  A shim built here (t/lib/tg-clockshift.c, LD_PRELOAD) shifts
# the clock nginx reads (time, gettimeofday, clock_gettime's
# CLOCK_REALTIME) by the number of seconds in a file the test rewrites;
# the monotonic clock is left alone.
#
#   - step back an hour, rotate the credentials and the token files: the
#     upstream sees the new AK and the new token within a couple of
#     seconds;
#   - step forward two hours (an hour ahead), rotate again: the same
#     (the upstream refuses those signatures, more than 15 minutes off,
#     but it was sent the new ones);
#   - the same bytes written again as a new file are not a change: no
#     "reloaded" line.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-metadata.pl" }

plan(skip_all => 'a sanitizer build cannot take an LD_PRELOAD shim')
    if defined $ENV{TG_MODULE} && $ENV{TG_MODULE} eq '';
system('cc --version >/dev/null 2>&1') == 0
    or plan(skip_all => 'no C compiler for the shim');

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;

system('cc', '-shared', '-fPIC', '-o', "$dir/clockshift.so",
    "$FindBin::Bin/lib/tg-clockshift.c", '-ldl') == 0
    or plan(skip_all => 'the shim does not build');
chmod 0755, "$dir/clockshift.so";

sub step {
    my ($seconds) = @_;
    $t->write_file('clock.offset', "$seconds\n");
    # nginx reads the clock after each event: let it see the step
    sleep 0.5;
}

my %KEY = (
    A => [ 'TGCLOCKAKAAAAAAAAAA1', 'tgClkSkA0secretNEVERlogged3Hq2ZpXv9LmNb' ],
    B => [ 'TGCLOCKAKBBBBBBBBBB2', 'tgClkSkB0secretNEVERlogged8Jw5QrTy1KsDf' ],
    C => [ 'TGCLOCKAKCCCCCCCCCC3', 'tgClkSkC0secretNEVERlogged2Mn6UiOp4ZxCv' ],
);
my %TOKEN = map { $_ => "CLOCK-TOKEN-$_-" . (lc($_) x 48) } qw(A B C);

sub rotate {
    my ($k) = @_;
    $t->write_credentials(ak => $KEY{$k}[0], sk => $KEY{$k}[1]);
    $t->write_token($TOKEN{$k});
    return time;
}

TaurusGuard::Metadata::add_key($t, @{ $KEY{$_} }) for qw(A B C);
TaurusGuard::Metadata::upstream_keys($t);
step(0);
rotate('A');

{
    local $ENV{LD_PRELOAD} = "$dir/clockshift.so";
    local $ENV{TG_CLOCK_OFFSET} = "$dir/clock.offset";

    $t->run(<<"CONF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_token file=%%TESTDIR%%/token;
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
    }
}
CONF
}

my $body = batch_json([ $INSTANCES[0] ]);

# what the upstream saw last: "AK TOKEN"

sub last_seen {
    my @up = sort { $a->{time} cmp $b->{time} } $t->upstream_records;
    return '' unless @up;
    return join ' ', TaurusGuard::Metadata::access_of($up[-1]) || '?',
        join('|', headers_named($up[-1]{headers}, 'X-Auth-Token'));
}

# posts until the upstream sees key $k and its token, for at most 4 s;
# the seconds it took, or undef.  The upstream refuses the signature of
# a shifted X-Sdk-Date (401, more than 15 minutes off), as it should:
# what counts here is what it was sent.

sub picked_up {
    my ($k, $since) = @_;
    my $want = "$KEY{$k}[0] $TOKEN{$k}";
    while (time - $since < 4) {
        my $r = $t->post(upgrade_path(), $body);
        return undef unless ($r->{status} || 0) =~ /\A(?:200|401)\z/;
        return time - $since if last_seen() eq $want;
        sleep 0.1;
    }
    return undef;
}

my $r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, 'key A: 200');
is(last_seen(), "$KEY{A}[0] $TOKEN{A}", 'key A and token A upstream');

# the worker has just looked at both files: now the clock goes back

step(-3600);
my $took = picked_up('B', rotate('B'));
ok(defined $took, 'clock stepped back an hour: key B and token B used')
    or diag('upstream saw: ' . last_seen());
cmp_ok($took // 99, '<', 2.5, sprintf('within 2.5 s (%.2f s)', $took // 99));

step(3600);
$took = picked_up('C', rotate('C'));
ok(defined $took, 'clock stepped forward two hours: key C and token C used')
    or diag('upstream saw: ' . last_seen());
cmp_ok($took // 99, '<', 2.5, sprintf('within 2.5 s (%.2f s)', $took // 99));

# the same bytes again, in a new file: looked at, not reloaded

step(0);

my $path = "$dir/credentials";
my $reloaded = () = $t->error_log =~ /credentials file "\Q$path\E" reloaded/g;
cmp_ok($reloaded, '>=', 2, "the rotations were reloaded ($reloaded lines)");

rotate('C');
sleep 1.5;
for (1 .. 3) {
    is($t->post(upgrade_path(), $body)->{status}, 200, "same content: 200");
    sleep 0.3;
}
my $again = () = $t->error_log =~ /credentials file "\Q$path\E" reloaded/g;
is($again, $reloaded, 'the same content in a new file is not a change');
is(last_seen(), "$KEY{C}[0] $TOKEN{C}", 'still key C and token C');

$t->done_testing;
