#!/usr/bin/perl

# Rotating the credentials file under load, without a reload.  A child
# process sends batches one after another the whole time; the test moves
# new versions of the file into place the way an operator should (a
# private file written next to it, then renamed over it):
#
#   key A -> key B: no request fails, and from about a second after the
#       switch every request is signed with B (Access=) and verifies
#       upstream (tg-upstream.pl --keys accepts A, B and C);
#   a broken file (no sk): requests go on signed with B, one [alert]
#       names the file and the problem, never a value;
#   key C in a file readable by others: not used either (still B);
#   key C, private: picked up.
#
# A second nginx: a good new key in a file readable by others is refused
# with an [alert] saying so.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Fcntl qw(O_WRONLY O_CREAT O_EXCL);
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-metadata.pl" }

my %KEY = (
    A => [ 'TGROTATEAKAAAAAAAAA1', 'tgRotSkA0secretNEVERlogged3Hq2ZpXv9LmNb' ],
    B => [ 'TGROTATEAKBBBBBBBBB2', 'tgRotSkB0secretNEVERlogged8Jw5QrTy1KsDf' ],
    C => [ 'TGROTATEAKCCCCCCCCC3', 'tgRotSkC0secretNEVERlogged2Mn6UiOp4ZxCv' ],
);
my %NAME_OF = map { $KEY{$_}[0] => $_ } keys %KEY;

my $conf = <<"EOF";
worker_processes 2;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%% reuseport;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF

my $body = batch_json([ $INSTANCES[0] ]);


sub profile {
    my ($k, %o) = @_;
    my $text = "# rotated by the test\n[basic]\nak = $KEY{$k}[0]\n";
    $text .= "sk = $KEY{$k}[1]\n" unless $o{no_sk};
    return $text;
}


# Moves a new version of the credentials file into place: written to a
# file next to it, made private (or not) and owned by the worker user
# BEFORE the rename, so no worker ever sees a half-made file.  Returns
# the time of the rename.

sub install {
    my ($t, $text, $mode) = @_;

    my $path = $t->testdir . '/credentials';
    my $tmp = "$path.new.$$";

    unlink $tmp;
    sysopen my $fh, $tmp, O_WRONLY | O_CREAT | O_EXCL, 0600
        or die "$tmp: $!\n";
    print $fh $text;
    close $fh or die "$tmp: $!\n";

    chmod(defined $mode ? $mode : 0600, $tmp);
    chown $t->{worker_uid}, $t->{worker_gid}, $tmp
        if $> == 0 && defined $t->{worker_uid};

    rename $tmp, $path or die "$path: $!\n";

    return time;
}


# The load: a child sending batches one after another until told to
# stop (or 40 s, or 2000 requests), one "epoch status" line each.

sub start_load {
    my ($t) = @_;

    my $d = $t->testdir;
    unlink "$d/load.stop";

    my $pid = fork;
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        open my $out, '>>', "$d/load.txt" or POSIX::_exit(1);
        $out->autoflush(1);
        my $end = now() + 40;
        for (1 .. 2000) {
            last if -e "$d/load.stop" || now() > $end;
            my $r = eval { $t->post(upgrade_path(), $body) } || {};
            printf $out "%.3f %s\n", time, $r->{status} || 'none';
            sleep 0.01;
        }
        close $out;
        POSIX::_exit(0);
    }

    return $pid;
}


sub stop_load {
    my ($t, $pid) = @_;
    open my $fh, '>', $t->testdir . '/load.stop';
    close $fh;
    waitpid $pid, 0;
    return map { [ split / / ] } split /\n/, $t->read_file('load.txt') || '';
}


# the key (A, B, C) of each forwarded request received after $from
# (and before $to): [ epoch, key name or '?', signature ok ]

sub signed {
    my ($t, $from, $to) = @_;
    return grep { $_->[0] >= $from && (!defined $to || $_->[0] < $to) }
        map { [ _epoch($_->{time}),
            $NAME_OF{ TaurusGuard::Metadata::access_of($_) || '' } || '?',
            $_->{signature}{ok} ] } $t->upstream_records;
}


sub keys_of {
    my %n;
    $n{ $_->[1] }++ for @_;
    return join ',', map { "$_=$n{$_}" } sort keys %n;
}


my $t = Test::TaurusGuard->new;

TaurusGuard::Metadata::add_key($t, @{ $KEY{$_} }) for qw(A B C);
TaurusGuard::Metadata::upstream_keys($t);
install($t, profile('A'));
$t->run($conf);

my $path = $t->testdir . '/credentials';
$t->expect_alert(qr/taurus_guard: "\Q$path\E" no "sk" in \[basic\]/);

my $r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, 'key A: 200');

my $start = time;
my $load = start_load($t);

# A -> B

sleep 1.5;
my $t_b = install($t, profile('B'));
sleep 3;

# a broken file: no sk

my $t_broken = install($t, profile('C', no_sk => 1));
sleep 2.5;

# key C, but readable by others

my $t_open = install($t, profile('C'), 0644);
sleep 2.5;

# key C, private

my $t_c = install($t, profile('C'));
sleep 3;

my @load = stop_load($t, $load);
my $end = time;

# How many depends on the machine's load (about 300 on a quiet one, 93
# under ASan with a load average of 10): enough to span every phase,
# each of which is checked on its own below.
cmp_ok(scalar @load, '>', 30, 'the load sent ' . scalar(@load)
    . ' batches');
my @failed = grep { $_->[1] ne '200' } @load;
is(scalar @failed, 0, 'no request failed during the rotations')
    or diag(explain([ @failed[0 .. ($#failed > 9 ? 9 : $#failed)] ]));

my @all = signed($t, $start);
is(scalar(grep { !$_->[2] } @all), 0, 'every forwarded request verified '
    . 'upstream');
is(scalar(grep { $_->[1] eq '?' } @all), 0, 'every forwarded request was '
    . 'signed with A, B or C');

is(keys_of(signed($t, $start, $t_b)), 'A=' . scalar(signed($t, $start, $t_b)),
    'before the switch: all signed with A');

my @switch = signed($t, $t_b, $t_broken);
my ($first_b) = grep { $_->[1] eq 'B' } @switch;
my @late_a = grep { $_->[1] eq 'A' && $_->[0] >= $t_b + 2 } @switch;
ok($first_b, 'after the switch: signed with B');
cmp_ok(($first_b || [ 99 ])->[0] - $t_b, '<', 2, 'B in use within 2 s ('
    . sprintf('%.2f s', ($first_b || [ 99 ])->[0] - $t_b) . ')');
is(scalar @late_a, 0, 'from 2 s after the switch: no request signed with '
    . 'A') or diag(keys_of(@switch));
my @b_late = signed($t, $t_b + 2, $t_broken);
# how many depends on the machine's load: a few are enough to show it
cmp_ok(scalar @b_late, '>=', 3, 'and more signed with B ('
    . scalar(@b_late) . ')');

is(keys_of(signed($t, $t_broken, $t_open)),
    'B=' . scalar(signed($t, $t_broken, $t_open)),
    'a broken file: still signed with B');
is(keys_of(signed($t, $t_open, $t_c)), 'B=' . scalar(signed($t, $t_open, $t_c)),
    'key C readable by others: not used, still B');

my @after_c = signed($t, $t_c + 2, $end);
cmp_ok(scalar @after_c, '>=', 3, 'after key C: requests forwarded ('
    . scalar(@after_c) . ')');
is(keys_of(@after_c), 'C=' . scalar(@after_c),
    'key C, private: picked up (all signed with C 2 s later)');

$t->stop;

# error.log: one alert for the broken file, naming it and the problem

# each worker watches the file itself and says so once a minute: one
# alert per worker for the two bad versions, none for the second one

my $log = $t->error_log;
my @alerts = grep { /\[alert\]/ } split /\n/, $log;
my %pids = map { /\[alert\] (\d+)#/ ? ($1 => 1) : () } @alerts;
ok(@alerts >= 1 && @alerts <= 2, 'one [alert] a minute per worker for the '
    . 'two bad versions (' . scalar(@alerts) . ', 2 workers)')
    or diag(join "\n", @alerts);
is(scalar(keys %pids), scalar @alerts, 'no worker logged twice')
    or diag(join "\n", @alerts);
like($alerts[0] || '', qr/"\Q$path\E"/, 'the alert names the file');
like($alerts[0] || '', qr/no "sk" in \[basic\]/, 'the alert names the '
    . 'problem');
like($alerts[0] || '', qr/previous credentials are kept/,
    'the alert says the previous credentials are kept');

my @reloaded = grep { /credentials file "\Q$path\E" reloaded/ }
    split /\n/, $log;
cmp_ok(scalar @reloaded, '>=', 2, 'the rotations are logged (notice): '
    . scalar(@reloaded) . ' lines');

# no SK anywhere: error.log (all of it: no SK is ever sent), responses,
# audit log

my $responses = join "\n", @{ $t->{responses} };
my $audit = $t->read_file('audit.log') || '';
for my $k (qw(A B C)) {
    my $sk = $KEY{$k}[1];
    for my $p ($sk, substr($sk, 0, 12), substr($sk, -12)) {
        my @hits = grep { index($_, $p) >= 0 } split /\n/, $log;
        ok(!@hits, "error.log: no SK $k ('" . substr($p, 0, 4) . "...')")
            or diag(substr $hits[0], 0, 300);
    }
    ok(index($responses, $sk) < 0, "responses: no SK $k");
    ok(index($audit, $sk) < 0, "audit log: no SK $k");
}

$t->finish;


# ---- a good key in a file readable by others ---------------------------

my $t2 = Test::TaurusGuard->new;

TaurusGuard::Metadata::add_key($t2, @{ $KEY{$_} }) for qw(A B);
TaurusGuard::Metadata::upstream_keys($t2);
install($t2, profile('A'));
$t2->run($conf);

my $path2 = $t2->testdir . '/credentials';
$t2->expect_alert(
    qr/taurus_guard: "\Q$path2\E" is not a regular file private to its/);

$r = $t2->post(upgrade_path(), $body);
is($r->{status}, 200, 'second nginx, key A: 200');

my $t_open2 = install($t2, profile('B'), 0640);
my $until = now() + 2.5;
my @st;
while (now() < $until) {
    push @st, $t2->post(upgrade_path(), $body)->{status};
    sleep 0.1;
}
is(scalar(grep { $_ ne '200' } @st), 0, 'key B in a 0640 file: requests '
    . 'go on (' . scalar(@st) . ')');
my @s2 = signed($t2, $t_open2);
is(keys_of(@s2), 'A=' . scalar(@s2), 'key B in a 0640 file: not used, '
    . 'still A');

$t2->stop;
my @al2 = grep { /\[alert\]/ } split /\n/, $t2->error_log;
my %pids2 = map { /\[alert\] (\d+)#/ ? ($1 => 1) : () } @al2;
ok(@al2 >= 1 && @al2 <= 2 && keys(%pids2) == @al2,
    'one [alert] per worker (' . scalar(@al2) . ')') or diag(join "\n", @al2);
my $why = "\"$path2\" is not a regular file private to its owner, so not "
    . 'used, the previous credentials are kept';
like($al2[0] || '', qr/\Q$why\E/, 'it names the file and says why')
    or diag($al2[0]);
ok(index($t2->error_log, $KEY{B}[1]) < 0, 'error.log: no SK B');

$t2->finish;

$t->done_testing;


# the upstream's record time (RFC 3339 UTC, milliseconds) as epoch

sub _epoch {
    my ($s) = @_;
    my ($y, $mo, $d, $h, $mi, $sec) =
        $s =~ /\A(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d(?:\.\d+)?)Z\z/
        or return 0;
    require Time::Local;
    return Time::Local::timegm(0, $mi, $h, $d, $mo - 1, $y) + $sec;
}
