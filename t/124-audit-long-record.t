#!/usr/bin/perl

# A record longer than a megabyte, which any caller can have written (a
# denied batch of a thousand long instance IDs names each of them three
# times), is read back as the chain's last link: by nginx -t, at a
# start, and the chain goes on from it.  The gateway read back at most
# 1 MB of a last line, and with such a line last neither nginx -t nor a
# restart worked, nor an append after another writer.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;
my $verify = $t->repo . '/build/taurus-guard-verify';
plan(skip_all => "no $verify (run make verify)") unless -x $verify;

$t->upstream;
$t->write_credentials;

$t->run(<<"CONF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;
    taurus_guard_max_batch 1000;

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

my @ids = map { [ sprintf('%04d', $_) . ('x' x 252), 'v' x 256 ] } 1 .. 1000;
my $r = $t->post(upgrade_path(), batch_json(\@ids));
is($r->{status}, 403, 'a thousand long IDs: denied');

my @lines = split /\n/, $t->read_file('audit.log');
cmp_ok(length $lines[-1], '>', 1024 * 1024,
    'its record is longer than 1 MB');

my ($rc, $out) = $t->nginx_t(undef, 'nginx.conf');
is($rc, 0, 'nginx -t reads it back') or diag($out);

# a start from it

my $pid = $t->_nginx_pid;
kill 'QUIT', $pid;
sleep 0.1 while kill 0, $pid;
$t->run;

is($t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]))->{status}, 200,
    'after a restart: a batch allowed');

$out = `$verify $dir/audit.log 2>&1`;
is($?, 0, 'the chain verifies across the long record') or diag($out);

$t->done_testing;
