#!/usr/bin/perl

# A worker started after a rotation (by a reload, or in place of one that
# died) writes the first record of the new file: that record links to
# the last record of the file before it, whoever wrote it.  During a
# binary upgrade the old master's workers wrote the old file's last
# record; the new master's worker started after the rotation had no
# descriptor of the old file to read it back from, linked to the last
# record its own master's workers wrote, and the verifier reported a
# break that was none.  So did one master's, when its worker was killed
# between the writev() of the old file's last record and the update of
# the chain head.  Now the master keeps the file the chain is in across
# a reopen and hands it to a reload's workers.
#
# Each case: USR2, traffic through both masters, the new master's
# workers stopped (WINCH) so that the old master's workers write the old
# file's last record, the file rotated, then a worker of the new master
# comes back, the old master's go, and the new one writes the new file's
# first record (one check of each case fails on the code before):
#
#   - rename and create (logrotate's "create"), then a reload (HUP);
#   - rename, "nginx -s reopen" (USR1), then a reload;
#   - rename, reopen, then the new master's worker killed and started
#     again in its place;
#
# and without an upgrade: a worker killed right after its writev() (the
# shim of t/113), then rename, reopen and reload.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

my $verify = Test::TaurusGuard->repo . '/build/taurus-guard-verify';
plan(skip_all => "no $verify (run make verify)") unless -x $verify;

# an old master the harness does not know of: quit whatever happens

my @old;
END { kill 'QUIT', grep { Test::TaurusGuard::_alive($_) } @old }

for my $case ('create, reload', 'reopen, reload', 'reopen, killed') {
    my $t = Test::TaurusGuard->new;
    my $dir = $t->testdir;

    $t->upstream;
    $t->write_credentials;
    $t->write_file('audit.log', '');

    $t->run(<<"CONF");
worker_processes 1;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    log_format pids '\$pid \$status \$taurus_guard_id';

    taurus_guard_allow {
        %%PROJECT%% @INSTANCES;
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        access_log %%TESTDIR%%/logs/pids.log pids;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
CONF

    # the worker processes of $master (the new master is a child of the
    # old one: not counted)

    my $workers = sub {
        my ($master, $not) = @_;
        my @w;
        for my $p (glob '/proc/[0-9]*') {
            open my $fh, '<', "$p/stat" or next;
            my $s = <$fh>;
            close $fh;
            next unless defined $s && $s =~ /\)\s+(\S)\s+(\d+)/;
            my ($state, $parent) = ($1, $2);
            my ($pid) = $p =~ m{(\d+)\z};
            push @w, $pid if $parent == $master && $state ne 'Z'
                && (!defined $not || $pid != $not);
        }
        return @w;
    };

    my $wait = sub {
        my ($master, $n, $not) = @_;
        my $end = now() + 10;
        sleep 0.05 while now() < $end && $workers->($master, $not) != $n;
        return scalar $workers->($master, $not);
    };

    my $post = sub {
        my ($what) = @_;
        my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
        is($r->{status}, 200, "$case: $what");
        return header($r, 'X-Taurus-Guard-Id') || '-';
    };

    $post->('before the upgrade');

    my $old = $t->_nginx_pid;
    push @old, $old;
    kill 'USR2', $old;

    my ($end, $new) = (now() + 10, undef);
    while (now() < $end) {
        $new = $t->_nginx_pid;
        last if -s "$dir/logs/nginx.pid.oldbin" && defined $new
            && $new != $old;
        sleep 0.1;
    }

    ok(defined $new && $new != $old, "$case: a new master runs") or last;
    is($wait->($new, 1), 1, "$case: its worker runs");

    $post->("through both, $_") for 1 .. 3;

    # the new master's worker leaves: the old master's writes last

    kill 'WINCH', $new;
    is($wait->($new, 0), 0, "$case: the new master's worker left");
    my $last = $post->('the old master writes last');

    # its done record, written once the answer went out, is the last of
    # the old file: it must be there before the rename
    $t->wait_audit($last, 2);

    if ($case =~ /killed$/) {
        # a worker of the new master back before the rotation, which it
        # sees: the master starts another one in its place after it
        kill 'HUP', $new;
        is($wait->($new, 1), 1, "$case: the new master's worker is back");
    }

    rename "$dir/audit.log", "$dir/audit.log.1" or die "rename: $!\n";

    if ($case =~ /^create/) {
        $t->write_file('audit.log', '');
    } else {
        kill 'USR1', $new;
        my $e = now() + 10;
        sleep 0.05 while !-e "$dir/audit.log" && now() < $e;
        sleep 0.5;
    }

    # a worker of the new master starts after the rotation

    if ($case =~ /reload$/) {
        kill 'HUP', $new;

    } else {
        my ($w) = $workers->($new);
        kill 'KILL', $w;
        $t->expect_alert(qr/worker process $w exited on signal 9/);
        my $e = now() + 10;
        sleep 0.05 while now() < $e && grep { $_ == $w } $workers->($new);
    }

    is($wait->($new, 1), 1, "$case: the new master has a worker");

    kill 'WINCH', $old;
    is($wait->($old, 0, $new), 0, "$case: the old master's worker left");

    my $first = $post->('the new master writes first');

    my $out = $t->_cmd($verify, "$dir/audit.log.1", "$dir/audit.log");
    is($? >> 8, 0, "$case: one chain across the rotation") or diag($out);

    like($t->read_file('audit.log.1'), qr/"id":"$last"[^\n]*\n\z/,
        "$case: the old master wrote the old file's last record");
    like($t->read_file('audit.log'), qr/\A\{"id":"$first"/,
        "$case: the new master wrote the new file's first record");

    kill 'QUIT', $old;
    $end = now() + 10;
    sleep 0.05 while Test::TaurusGuard::_alive($old) && now() < $end;

    $t->finish;
}

# One master, no upgrade: its worker killed between the writev() of a
# record and the update of the chain head (t/lib/tg-killshim.c), then the file
# rotated and nginx reloaded before the next record.

{
    my $t = Test::TaurusGuard->new;
    my $dir = $t->testdir;

    my $so = $t->kill_shim;

    SKIP: {
        skip('no shim (no compiler, or a sanitizer build)', 3)
            unless defined $so;

        $t->upstream;
        $t->write_credentials;
        $t->write_file('audit.log', '');
        $t->expect_alert(qr/worker process \d+ exited on signal 9/);
        $t->expect_alert(qr/shared memory zone "taurus_guard_audit:\S+" was locked/);

        {
            local $ENV{LD_PRELOAD} = $so;

            $t->run(<<"CONF");
worker_processes 1;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% @INSTANCES;
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

        my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
        is($r->{status}, 200, 'killed: a batch before');

        $t->write_file('kill', '');
        $r = eval { $t->post(upgrade_path(), batch_json([ $INSTANCES[1] ]),
            timeout => 5) } || {};
        unlink "$dir/kill";
        like($t->read_file('audit.log'), qr/$INSTANCES[1]/,
            'killed: the record is written, its worker killed');

        rename "$dir/audit.log", "$dir/audit.log.1" or die "rename: $!\n";
        $t->reopen;
        $t->reload;
        sleep 1;

        $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[2] ]));
        is($r->{status}, 200, 'killed: a batch after the reload');

        my $out = $t->_cmd($verify, "$dir/audit.log.1", "$dir/audit.log");
        is($? >> 8, 0, 'killed: one chain across the rotation')
            or diag($out);
    }

    $t->done_testing;
}
