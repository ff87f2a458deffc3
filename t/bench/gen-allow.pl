#!/usr/bin/perl
# gen-allow.pl FILE PROJECTS INSTANCES: writes a taurus_guard_allow include
# with PROJECTS lines of "project instance...;", INSTANCES per project
# (1000 x 1000 = one million pairs for `make bench`), and prints one
# listed pair, "project instance", taken from the middle of the file.
#
# IDs have TaurusDB's shape (project: 32 hex digits; instance: 32 hex
# digits and "in07") and are pseudo-random, as real ones are: sequential
# IDs sharing long prefixes would flatter or punish a hash function in a
# way real allow-lists never do.  The seed is fixed so runs compare.

use strict;
use warnings;

my ($file, $projects, $instances) = @ARGV;
die "usage: $0 FILE PROJECTS INSTANCES\n" unless defined $instances;

srand(20261129);

sub hex32 {
    return sprintf '%08x%08x%08x%08x', map { int rand 4294967296 } 1 .. 4;
}

open my $fh, '>', $file or die "$file: $!\n";

my $pick;
for my $p (1 .. $projects) {
    my $project = hex32();
    my @list = map { hex32() . 'in07' } 1 .. $instances;

    print {$fh} $project, ' ', join(' ', @list), ";\n";
    $pick = "$project $list[$instances / 2]" if $p == int($projects / 2) + 1;
}

close $fh or die "$file: $!\n";
print "$pick\n";
