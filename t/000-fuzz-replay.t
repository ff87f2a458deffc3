#!/usr/bin/perl

# The checked-in fuzz corpora, replayed through each target built with
# gcc (t/fuzz/replay.c).  Every target checks properties and aborts on a
# violation, so a pass here is more than "no crash".

use strict;
use warnings;

use Test::More;
use File::Basename qw(dirname);
use Cwd qw(abs_path);

my $top = abs_path(dirname(__FILE__) . '/..');
my @targets = sort glob("$top/t/fuzz/fuzz_*.c");

plan(skip_all => 'no fuzz targets') unless @targets;

for my $src (@targets) {
    my ($unit) = $src =~ m{fuzz_(\w+)\.c$};
    my $bin = "$top/build/fuzz/fuzz_$unit";
    my $corpus = "$top/t/fuzz/corpus/$unit";

    ok(-x $bin, "fuzz_$unit built") or next;
    ok(-d $corpus && glob("$corpus/*"), "fuzz_$unit has a corpus") or next;

    my $out = `'$bin' '$corpus' 2>&1`;
    is($?, 0, "fuzz_$unit replays its corpus")
        or diag($out);
}

done_testing();
