#!/usr/bin/perl

# What the chain cannot show by itself: records cut from either end of
# a series.  A real log, rotated twice by rename and reopen, gives three
# files.  taurus-guard-verify says where the chain ends ("end:", the link
# the next record will hold); a chain whose first record follows records
# not given (the oldest file gone, its first records cut, or no record at
# all) is "unanchored" and exits 3, where it used to say "ok" and exit
# 0; -a gives the link the first record must follow, and -t a link some
# record must have (an earlier check's "end:", or a line's sha256sum):
# a series cut at a record boundary, emptied, or rewritten from a forged
# first record, which all verify as chains, fail against it.  Files out
# of order, one missing or given twice break; concatenated files are one
# chain.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(sha256_hex);
use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

my $verify = $t->repo . '/build/taurus-guard-verify';
plan(skip_all => "no $verify (run make verify)") unless -x $verify;

my $dir = $t->testdir;
my $log = "$dir/audit.log";
my $zero = '0' x 64;

$t->upstream;
$t->write_credentials;

$t->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0] $INSTANCES[1];
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
EOF

sub batch {
    my ($body, $n) = @_;
    my $r = $t->post(upgrade_path(), $body);
    my $id = header($r, 'X-Taurus-Guard-Id') || 'none';
    $t->wait_audit($id, $n);
    return $r->{status};
}

sub lines_of {
    my ($path) = @_;
    return (($t->read_file($path) // '') =~ /([^\n]*\n)/g);
}

# three files: allow, done, deny in each; each rotation waits for the
# master and the worker to reopen the log, as logrotate's would

sub reopened {
    my @m = $t->error_log =~ /\d+#\d+: reopening logs/g;
    return scalar @m;
}

for my $f ("$log.2", "$log.1", $log) {
    is(batch(batch_json([ $INSTANCES[0] ]), 2), 200, "$f: allowed");
    is(batch(batch_json([ $OTHER_INSTANCE ]), 1), 403, "$f: denied");
    next if $f eq $log;
    my $before = reopened();
    rename $log, $f or die "rename: $!\n";
    $t->reopen;
    my $end = now() + 30;
    sleep 0.05 while (reopened() < $before + 2 || !-e $log) && now() < $end;
}

my @f = ("$log.2", "$log.1", $log);
my @l = map { [ lines_of($_) ] } @f;
is(join(',', map { scalar @$_ } @l), '3,3,3', 'three records in each file');

sub verify {
    my (@args) = @_;
    my $out = $t->_cmd($verify, @args);
    return ($? >> 8, $out);
}

sub copy {
    my ($name, @lines) = @_;
    return $t->write_file($name, join '', @lines);
}

# the whole series: anchored at 64 zeros, and where it ends

my ($rc, $out) = verify(@f);
is($rc, 0, 'the series: exit 0') or diag($out);
like($out, qr/^start: \Q$f[0]\E:1: chain starts at its beginning$/m,
    'the series: starts at its beginning');
my $end = chain_digest($l[2][2]);
like($out, qr/^end: \Q$log\E:3: link $end$/m,
    'the series: "end:" gives the last record\'s link') or diag($out);
like($out, qr/^ok: 9 records in 3 file\(s\), chain intact/m,
    'the series: ok');

my $end1 = chain_digest($l[1][2]);
($rc, $out) = verify(@f[0, 1]);
like($out, qr/^end: \Q$f[1]\E:3: link $end1$/m,
    'the two older files: their end');

# the oldest file gone: the chain follows records not given

($rc, $out) = verify(@f[1, 2]);
is($rc, 3, 'the oldest file gone: exit 3') or diag($out);
like($out, qr/^start: \Q$f[1]\E:1: chain starts after earlier, unchecked records$/m,
    'the oldest file gone: said at the start');
like($out, qr/^unanchored: 6 records in 2 file\(s\), chain intact .*, but nothing shows what came before \Q$f[1]\E:1 /m,
    'the oldest file gone: unanchored, and where') or diag($out);
unlike($out, qr/^ok:/m, 'the oldest file gone: no ok');

# -a: the link the first record follows, an earlier check's "end:"

my $end2 = chain_digest($l[0][2]);
($rc, $out) = verify('-a', $end2, @f[1, 2]);
is($rc, 0, '-a the end of the oldest: exit 0') or diag($out);
like($out, qr/^start: \Q$f[1]\E:1: chain starts after the record whose link -a gives$/m,
    '-a: said at the start');
like($out, qr/^ok: 6 records in 2 file\(s\)/m, '-a: ok');

($rc, $out) = verify('-a', $end1, @f[1, 2]);
is($rc, 1, '-a another link: exit 1') or diag($out);
like($out, qr/^break: \Q$f[1]\E:1: "prev" does not match the link given with -a: records before it removed, added or changed$/m,
    '-a another link: named');

($rc, $out) = verify('-a', '0', @f);
is($rc, 0, '-a 0, the whole series: exit 0') or diag($out);

# the first records of the oldest file cut: unanchored, and a break
# against -a 0

my $cut = copy('head-cut.log', @{ $l[0] }[1, 2]);
($rc, $out) = verify($cut, @f[1, 2]);
is($rc, 3, 'head cut: exit 3') or diag($out);
like($out, qr/^unanchored: 8 records in 3 file\(s\)/m, 'head cut: unanchored');
($rc, $out) = verify('-a', '0', $cut, @f[1, 2]);
is($rc, 1, 'head cut, -a 0: exit 1') or diag($out);
like($out, qr/^break: \Q$cut\E:1: "prev" does not match the link given with -a/m,
    'head cut, -a 0: named');

# a forged first record: its prev made 64 zeros breaks the link after
# it; relinked from there on, the chain holds, and only -t shows it

my @forged = @{ $l[0] }[1, 2];
$forged[0] =~ s/"prev":"[0-9a-f]{64}"/"prev":"$zero"/;
my $forged = copy('forged.log', @forged);
($rc, $out) = verify($forged);
is($rc, 1, 'a forged first record: exit 1') or diag($out);
like($out, qr/^break: \Q$forged\E:2: "prev" does not match/m,
    'a forged first record: a break at the next');

my $prev = $zero;
my @relinked;
for my $line (@forged, @{ $l[1] }, @{ $l[2] }) {
    push @relinked, $line =~ s/"prev":"[0-9a-f]{64}"/"prev":"$prev"/r;
    $prev = chain_digest($relinked[-1]);
}
my $rewritten = copy('rewritten.log', @relinked);
($rc, $out) = verify($rewritten);
is($rc, 0, 'rewritten from a forged first record: a chain all the same')
    or diag($out);
($rc, $out) = verify('-t', $end, $rewritten);
is($rc, 1, 'rewritten, -t the earlier end: exit 1') or diag($out);
like($out, qr/^break: no record given has the link given with -t: the chain was cut short before it, or rewritten up to it$/m,
    'rewritten, -t: named');

# -t: the record an earlier check ended at must still be there

($rc, $out) = verify('-t', $end, @f);
is($rc, 0, '-t the end: exit 0') or diag($out);
like($out, qr/^through: \Q$log\E:3: its link is the one given with -t$/m,
    '-t the end: found');

($rc, $out) = verify('-t', $end1, @f);
is($rc, 0, '-t an older end: exit 0') or diag($out);
like($out, qr/^through: \Q$f[1]\E:3: /m, '-t an older end: found there');

($rc, $out) = verify('-t', sha256_hex($l[2][1]), @f);
is($rc, 0, '-t a line\'s sha256sum: exit 0') or diag($out);
like($out, qr/^through: \Q$log\E:2: /m, '-t a line\'s sha256sum: found');

# the newest file cut at a record boundary, or emptied: still a chain,
# and a break against -t

my $short = copy('short.log', @{ $l[2] }[0, 1]);
($rc, $out) = verify(@f[0, 1], $short);
is($rc, 0, 'the last record cut: a chain all the same') or diag($out);
($rc, $out) = verify('-t', $end, @f[0, 1], $short);
is($rc, 1, 'the last record cut, -t: exit 1') or diag($out);
like($out, qr/^break: no record given has the link given with -t/m,
    'the last record cut, -t: named');
unlike($out, qr/^ok:/m, 'the last record cut, -t: no ok');

my $empty = copy('empty.log');
($rc, $out) = verify('-t', $end, @f[0, 1], $empty);
is($rc, 1, 'the newest emptied, -t: exit 1') or diag($out);

# an empty file alone: nothing to check, unless -a says where the
# chain was

($rc, $out) = verify($empty);
is($rc, 3, 'an empty file: exit 3') or diag($out);
like($out, qr/^unanchored: no record in 1 file\(s\): nothing shows that none was removed/m,
    'an empty file: said');
unlike($out, qr/^ok:/m, 'an empty file: no ok');

($rc, $out) = verify('-a', $end, $empty);
is($rc, 0, 'an empty file after -a: exit 0') or diag($out);
like($out, qr/^end: no record given, the link is still -a's: link $end$/m,
    'an empty file after -a: its end, the link last');
like($out, qr/^ok: 0 records in 1 file\(s\)/m, 'an empty file after -a: ok');

($rc, $out) = verify('-a', $end, '-t', $end, $empty);
is($rc, 0, 'an empty file, -a and -t the same: exit 0') or diag($out);

($rc, $out) = verify(@f, $empty);
is($rc, 0, 'an empty newest file after the series: exit 0') or diag($out);

# order, a file missing, a file twice, files concatenated

my $between = 'a file missing between them or given out of order, or'
    . ' records changed, removed or reordered';

($rc, $out) = verify(@f[1, 0, 2]);
is($rc, 1, 'out of order: exit 1') or diag($out);
like($out, qr/^break: \Q$f[0]\E:1: "prev" does not match the last record of \Q$f[1]\E \(line 3\): \Q$between\E$/m,
    'out of order: both files named') or diag($out);
($rc, $out) = verify(@f[0, 2]);
is($rc, 1, 'the middle file missing: exit 1') or diag($out);
like($out, qr/^break: \Q$log\E:1: "prev" does not match the last record of \Q$f[0]\E \(line 3\): \Q$between\E$/m,
    'the middle file missing: both files named') or diag($out);
($rc, $out) = verify(@f[0, 1], $empty, $log);
is($rc, 0, 'an empty file between two: exit 0') or diag($out);
($rc, $out) = verify($f[0], $empty, $log);
like($out, qr/^break: \Q$log\E:1: "prev" does not match the last record of \Q$f[0]\E \(line 3\)/m,
    'the middle file missing, an empty one given: the file before named')
    or diag($out);
($rc, $out) = verify(@f[0, 1, 1, 2]);
is($rc, 1, 'a file twice: exit 1') or diag($out);
like($out, qr/^break: \Q$f[1]\E:1: "prev" does not match the last record of \Q$f[1]\E \(line 3\)/m,
    'a file twice: named as its own file before') or diag($out);

# an allow record changed at the end of a file: named where it is

my @changed = @{ $l[1] };
$changed[0] =~ s/("instance_id":")(.)/$1 . ($2 eq 'a' ? 'b' : 'a')/e;
my $cut1 = copy('cut1.log', @{ $l[0] }, $changed[0]);
($rc, $out) = verify($cut1, copy('rest1.log', @{ $l[1] }[1, 2]));
is($rc, 1, 'changed items at the end of a file: exit 1') or diag($out);
like($out, qr/^break: \S+rest1\.log:1: the instances of the record before it \(\Q$cut1\E:4\) do not match its body_sha256/m,
    'changed items at the end of a file: the record named') or diag($out);

my $cat = copy('cat.log', map { @$_ } @l);
($rc, $out) = verify($cat);
is($rc, 0, 'the files concatenated: exit 0') or diag($out);
like($out, qr/^end: \Q$cat\E:9: link $end$/m,
    'the files concatenated: the same end');

# a file's name is printed with its control bytes escaped: a name cannot
# make a line of its own ("ok: ..." after a break)

{
    my $name = "odd\nok: 9 records in 3 file(s), chain intact\e[2K.log";
    my $odd = copy($name, @{ $l[0] }[0, 2]);
    ($rc, $out) = verify($odd);
    is($rc, 1, 'an odd name, a record removed: exit 1') or diag($out);
    unlike($out, qr/^ok:/m, 'an odd name: no line starts with "ok:"');
    unlike($out, qr/\e/, 'an odd name: no escape byte printed');
    like($out, qr/^break: \S*odd\\x0aok: 9 records in 3 file\(s\), chain intact\\x1b\[2K\.log:2: /m,
        'an odd name: shown with \\xNN') or diag($out);
    ($rc, $out) = verify("$odd.missing");
    is($rc, 2, 'an odd name missing: exit 2');
    unlike($out, qr/\n(?!\z)/, 'an odd name missing: one line') or diag($out);
}

# usage

($rc, $out) = verify('-a', 'not-a-link', @f);
is($rc, 2, '-a not a link: exit 2');
like($out, qr/-a: not a link/, '-a not a link: said');
($rc, $out) = verify('-t', substr($end, 1), @f);
is($rc, 2, '-t of 63 digits: exit 2');
($rc, $out) = verify('-x', @f);
is($rc, 2, 'an unknown option: exit 2');
like($out, qr/^usage: /m, 'an unknown option: usage');
for my $h ('-h', '--help') {
    my $help = $t->_cmd("$verify $h 2>/dev/null");
    is($? >> 8, 0, "$h: exit 0");
    like($help, qr/^usage: .*\n(?s:.*)^  -a LINK /m, "$h: the usage, on stdout");
}
($rc, $out) = verify('-a');
is($rc, 2, '-a without a link: exit 2');
($rc, $out) = verify('-a', $end2);
is($rc, 2, '-a without a file: exit 2');

# a link is given exactly as "end:" prints it (64 lowercase hex digits),
# or 0 for -a: anything else is a usage error, not a verdict.  -t 0 named
# no record, and with -a 0 was taken as found: an emptied series "ok"

($rc, $out) = verify('-t', '0', @f);
is($rc, 2, '-t 0: exit 2') or diag($out);
like($out, qr/-t: 0 is not a link \(it stands for no record\)/,
    '-t 0: said');
($rc, $out) = verify('-a', '0', '-t', '0', $empty);
is($rc, 2, '-a 0 -t 0, an empty file: exit 2') or diag($out);
unlike($out, qr/^ok:/m, '-a 0 -t 0, an empty file: no ok');

# the same 0 in its 64 digits, as "end:" prints the link -a 0 stands for

($rc, $out) = verify('-a', '0', '-t', $zero, $empty);
is($rc, 2, '-a 0 -t 64 zeros, an empty file: exit 2') or diag($out);
unlike($out, qr/^ok:/m, '-a 0 -t 64 zeros, an empty file: no ok');
like($out, qr/-t: 0 is not a link \(it stands for no record\)/,
    '-t 64 zeros: said');
($rc, $out) = verify('-a', $zero, '-t', $zero, $empty);
is($rc, 2, '-a and -t 64 zeros, an empty file: exit 2') or diag($out);
($rc, $out) = verify('-t', $zero, @f);
is($rc, 2, '-t 64 zeros: exit 2') or diag($out);
($rc, $out) = verify('-t', uc $end, @f);
is($rc, 2, '-t in capitals: exit 2') or diag($out);
like($out, qr/-t: not a link/, '-t in capitals: said');
($rc, $out) = verify('-a', uc $end2, @f[1, 2]);
is($rc, 2, '-a in capitals: exit 2') or diag($out);
like($out, qr/-a: not a link/, '-a in capitals: said');
($rc, $out) = verify('-a', '00', @f);
is($rc, 2, '-a 00: exit 2') or diag($out);
($rc, $out) = verify('-t', "$end\n", @f);
is($rc, 2, '-t with a newline after the link: exit 2') or diag($out);

# a second -t or -a: the first link was dropped unchecked, and a series
# that has no record with it said "ok"

($rc, $out) = verify('-t', $zero =~ s/0$/1/r, '-t', $end, @f);
is($rc, 2, '-t twice: exit 2') or diag($out);
like($out, qr/-t: given twice/, '-t twice: said');
unlike($out, qr/^ok:/m, '-t twice: no ok');
($rc, $out) = verify('-a', $end1, '-a', '0', @f);
is($rc, 2, '-a twice: exit 2') or diag($out);
like($out, qr/-a: given twice/, '-a twice: said');

# a report that cannot be written: the daily check keeps the link of
# "end:" after an exit 0, and a full disk left it none to keep

SKIP: {
    skip 'no /dev/full', 3 unless -c '/dev/full';

    $out = `'$verify' -a 0 '$f[0]' 2>&1 >/dev/full`;
    is($? >> 8, 2, 'the report to a full disk: exit 2') or diag($out);
    like($out, qr/: the report cannot be written: /,
        'the report to a full disk: said') or diag($out);
    $out = `'$verify' -a 0 '$f[0]' 2>&1 >&-`;
    is($? >> 8, 2, 'the standard output closed: exit 2') or diag($out);
}

copy('-dash.log', @{ $l[0] });
{
    my $cwd = $t->testdir;
    $out = `cd '$cwd' && '$verify' -- -dash.log 2>&1`;
    is($? >> 8, 0, '"--", then a file named "-dash.log": exit 0') or diag($out);
}

$t->done_testing;
