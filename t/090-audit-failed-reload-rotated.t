#!/usr/bin/perl

# A reload that fails late (a listen already in use: after the shared
# zones are set up) leaves the old configuration running.  The master
# kept the file the chain is in across the rotation before it, for the
# workers it starts later: the failed reload must not take it away, or
# the next reload's worker, writing the new file's first record, links
# to the zone's last record instead of the old file's real last one (a
# worker killed right after its writev(), t/089's shim), and the
# verifier reports a break that is none.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

my $verify = Test::TaurusGuard->repo . '/build/taurus-guard-verify';
plan(skip_all => "no $verify (run make verify)") unless -x $verify;

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;

my $so = $t->kill_shim
    or plan(skip_all => 'no shim (no compiler, or a sanitizer build)');

my $conf = <<"CONF";
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
%%BUSY%%}
CONF

(my $good = $conf) =~ s/%%BUSY%%//;
(my $busy = $conf) =~ s/%%BUSY%%/    server {
        listen 127.0.0.1:%%PORT_UP%%;
    }
/;

$t->upstream;
$t->write_credentials;
$t->write_file('audit.log', '');
$t->expect_alert(qr/worker process \d+ exited on signal 9/);
$t->expect_alert(qr/shared memory zone "taurus_guard_audit:\S+" was locked/);
$t->expect_emerg(qr/bind\(\) to 127\.0\.0\.1:\d+ failed|still could not bind/);

{
    local $ENV{LD_PRELOAD} = $so;
    $t->run($good);
}

my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 200, 'a batch before');

$t->write_file('kill', '');
$r = eval { $t->post(upgrade_path(), batch_json([ $INSTANCES[1] ]),
    timeout => 5) } || {};
unlink "$dir/kill";
like($t->read_file('audit.log'), qr/$INSTANCES[1]/,
    'the record is written, its worker killed');

rename "$dir/audit.log", "$dir/audit.log.1" or die "rename: $!\n";
$t->reopen;

# the master's descriptors of the rotated file

my $rotated = sub {
    my $m = $t->_nginx_pid;
    return scalar grep { (readlink($_) // '') eq "$dir/audit.log.1" }
        glob "/proc/$m/fd/*";
};

is($rotated->(), 1, 'the master keeps the rotated file');

# a reload that fails after the shared zones: the old configuration goes on

$t->write_conf($busy);
$t->reload;

my $until = Test::TaurusGuard::now() + 10;
sleep 0.1 until $t->error_log =~ /still could not bind/
    || Test::TaurusGuard::now() > $until;
like($t->error_log, qr/still could not bind/, 'the reload failed');

is($rotated->(), 1, 'the master still keeps the rotated file');

# reloads that work hand it on and free the old one: no descriptor piles up

$t->write_conf($good);
$t->reload for 1 .. 4;
is($rotated->(), 1, 'after four reloads the master keeps it once');

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[2] ]));
is($r->{status}, 200, 'a batch after the reloads');

my $out = $t->_cmd($verify, "$dir/audit.log.1", "$dir/audit.log");
is($? >> 8, 0, 'one chain across the rotation and the failed reload')
    or diag($out);

$t->done_testing;
