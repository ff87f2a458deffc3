#!/usr/bin/perl

# The audit log is written once and never read back by nginx: as it
# grows, what lies more than 4 MB behind its end is dropped from the page
# cache (POSIX_FADV_DONTNEED), so that gigabytes of audit records do not
# push everything else out of memory.  Only pages already on disk are
# dropped: the chain still verifies and every record is in the file.
# Two workers append to the file, each crossing a megabyte boundary
# drops for both.  With the durable default every page behind the kept
# end is gone; with fsync=off the same call starts writing the pages
# back and a later one drops them.  fincore (util-linux) tells which pages are in memory.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $verify = Test::TaurusGuard->repo . '/build/taurus-guard-verify';
plan(skip_all => "no $verify (run make verify)") unless -x $verify;

my $fincore = (grep { -x $_ }
    map { "$_/fincore" } split /:/, $ENV{PATH})[0];
plan(skip_all => 'no fincore (apt-get install util-linux-extra)')
    unless $fincore;

my $MB = 1024 * 1024;

# 100 instances a batch: some 9 kB of audit a batch
my @MANY = map { sprintf '%032xin07', 0xcac40000 + $_ } 1 .. 100;

# the bytes of $path in the page cache
sub resident {
    my ($path) = @_;
    my $out = `$fincore --bytes --noheadings --output RES '$path' 2>&1`;
    return $out =~ /^\s*(\d+)\s*$/ ? $1 : die "fincore: $out\n";
}

for my $mode ('', 'fsync=off') {
    my $name = $mode || 'durable';

    my $t = Test::TaurusGuard->new;

    # the upstream stand-in reads the audit log for each request it gets
    # (to tell whether its record came first): not here, where what is
    # in memory is the point
    $t->upstream(audit_log => $t->testdir . '/not-the-audit.log');
    $t->write_credentials;

    my $fs = `stat -f -c %T '${\ $t->testdir}' 2>/dev/null`;
    chomp $fs;

    if ($fs eq 'tmpfs' || $fs eq 'ramfs') {
        $t->finish;
      SKIP: { skip "$name: the test directory is on $fs", 5 }
        next;
    }

    $t->run(<<"EOF");
worker_processes 2;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log $mode;
    taurus_guard_max_batch 100;

    taurus_guard_allow {
        %%PROJECT%% @MANY;
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

    my $log = $t->testdir . '/audit.log';
    my ($sent, $ok) = (0, 0);

    while (-s $log < 9 * $MB && $sent < 3000) {
        my $body = batch_json([ map { [ $_, "2.0.48.$sent" ] } @MANY ]);
        my $r = $t->post(upgrade_path(), $body);
        $sent++;
        $ok++ if ($r->{status} || 0) == 200;
    }

    is($ok, $sent, "$name: $sent batches of 100 instances allowed");

    my $size = -s $log;
    cmp_ok($size, '>=', 9 * $MB, "$name: the audit log grew past 9 MB");

    # what lies behind the last megabyte boundary less the 4 MB kept
    my $edge = int($size / $MB) * $MB - 4 * $MB;
    my $res = resident($log);

    if ($mode eq 'fsync=off') {
        # written back since an earlier crossing, dropped at a later one
        cmp_ok($res, '<', $size - 2 * $MB,
            "$name: pages well behind the end left the page cache")
            or diag("$res of $size bytes resident");
    } else {
        cmp_ok($res, '<=', $size - $edge + 64 * 1024,
            "$name: nothing more than 4 MB behind the end is cached")
            or diag("$res of $size bytes resident, edge $edge");
    }

    my $out = $t->_cmd($verify, $log);
    is($? >> 8, 0, "$name: the chain verifies") or diag($out);

    my @all = $t->audit_records;
    is(scalar @all, 2 * $sent, "$name: an allow and a done record for each"
        . " batch, none lost");

    $t->stop;
    $t->finish;
}

done_testing();
