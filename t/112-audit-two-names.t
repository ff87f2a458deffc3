#!/usr/bin/perl

# One audit file named through a symlinked directory in one server and
# by its real path in another makes one chain: whether the file was
# there when nginx read its configuration (one state for both names) or
# not (two states, whose records still link to the file's real last
# line), and across a rotation, where the first record of the new file
# links to the old file's last, which the other state may have written.
# Before, each spelling had its own chain in the one file; then, after
# a rotation, the first record linked to the last its own state wrote.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $verify = Test::TaurusGuard->repo . '/build/taurus-guard-verify';
plan(skip_all => "no $verify (run make verify)") unless -x $verify;

for my $exists (0, 1) {
    my $name = $exists ? 'file there at start' : 'file created at start';

    my $t = Test::TaurusGuard->new;
    my $dir = $t->testdir;

    mkdir "$dir/real";
    chmod 0755, "$dir/real";
    symlink "$dir/real", "$dir/link" or die "symlink: $!\n";

    if ($exists) {
        # a chain that starts at the file's beginning, as nginx wrote it
        $t->write_file('real/audit.log', '');
    }

    $t->upstream(audit_log => "$dir/real/audit.log");
    $t->write_credentials;

    $t->run(<<"CONF");
worker_processes 2;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;

    taurus_guard_allow {
        %%PROJECT%% @INSTANCES;
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_audit_log %%TESTDIR%%/real/audit.log;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_audit_log %%TESTDIR%%/link/audit.log;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
CONF

    my $n = 0;

    for my $i (1 .. 12) {
        my $r = $t->post(upgrade_path(),
            batch_json([ [ $INSTANCES[$i % 3], "2.0.48.$i" ] ]),
            port => $i % 2);
        $n++ if ($r->{status} || 0) == 200;
    }

    is($n, 12, "$name: every batch through either name: 200");

    # the last done record is written after the answer

    my @a;
    for (1 .. 40) {
        @a = $t->audit_records('real/audit.log');
        last if @a >= 24;
        select undef, undef, undef, 0.05;
    }

    is(scalar @a, 24, "$name: every record in the one file");

    my $out = $t->_cmd($verify, "$dir/real/audit.log");
    is($? >> 8, 0, "$name: one chain") or diag($out);

    # a rotation after a record through the other name: the first record
    # of the new file links to it, whichever name writes first there

    is($t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]),
        port => 1)->{status}, 200, "$name: a batch through the link");

    for (1 .. 40) {
        @a = $t->audit_records('real/audit.log');
        last if @a >= 26;
        select undef, undef, undef, 0.05;
    }

    rename "$dir/real/audit.log", "$dir/real/audit.log.1" or die "$!\n";

    # twice, as logrotate signals once a log without sharedscripts
    $t->reopen for 1 .. 2;

    $n = 0;

    for my $i (0 .. 3) {
        my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[$i % 3] ]),
            port => $i % 2);
        $n++ if ($r->{status} || 0) == 200;
    }

    is($n, 4, "$name: after the rotation, batches through both names");

    for (1 .. 40) {
        @a = $t->audit_records('real/audit.log');
        last if @a >= 8;
        select undef, undef, undef, 0.05;
    }

    is(scalar @a, 8, "$name: their records in the new file");

    $out = $t->_cmd($verify, "$dir/real/audit.log.1", "$dir/real/audit.log");
    is($? >> 8, 0, "$name: one chain across the rotation") or diag($out);

    $t->finish;
}

done_testing;
