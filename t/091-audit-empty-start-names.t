#!/usr/bin/perl

# A start on an empty audit file goes on from the newest rotated file
# beside it, named as the log followed by "." or "-" and the rotation's
# number or date (logrotate's "audit.log.1", "audit.log-20261207").
# Another audit log in the same directory whose name starts the same way
# ("audit.log-b"), and its own rotated files ("audit.log-b.1"), are no
# rotation of this one: written after the rotation, one of them was the
# newest, the chain went on from its last record, and taurus-guard-verify
# reported a break in a genuine series.

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
my $log = "$dir/audit.log";

$t->upstream;
$t->write_credentials;

$t->run(<<"CONF");
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
            taurus_guard_audit_log %%TESTDIR%%/audit.log;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_audit_log %%TESTDIR%%/audit.log-b;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
CONF

my $post = sub {
    my ($port, $i, $what) = @_;
    my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[$i] ]),
        port => $port);
    is($r->{status}, 200, $what);
};

$post->(0, 0, 'a batch to the first log');
$post->(0, 1, 'another to the first log');
$post->(1, 2, 'a batch to the second log');

# the second log rotated too, then the first; both files created empty

for my $name ('audit.log-b', 'audit.log') {
    rename "$dir/$name", "$dir/$name.1" or die "rename: $!\n";
    $t->write_file($name, '');
}

$t->reopen;
sleep 0.1;

# the second log written last: its files are the newest

$post->(1, 1, 'a batch to the second log after the rotation');
$post->(1, 0, 'another');

$t->stop;
$t->upstream;
$t->run;

my $linked = 'is empty, its chain goes on from the last record of '
    . '"audit.log.1"';
ok($t->error_log =~ /\[notice\].*audit log "\Q$log\E" \Q$linked\E/,
    'the first log goes on from its own rotated file');

$post->(0, 2, 'a batch to the first log after the restart');
$post->(1, 1, 'and to the second');

my $out = $t->_cmd($verify, "$log.1", $log);
is($? >> 8, 0, 'the first log: one chain across the rotation')
    or diag($out);

$out = $t->_cmd($verify, "$log-b.1", "$log-b");
is($? >> 8, 0, 'the second log: one chain across the rotation')
    or diag($out);

# the newest rotated file holds no whole record (only a torn one): the
# link is lost, not the start: a new chain, and an [alert] that says so

my $unread = 'is empty and no record can be read from the file before '
    . 'it, "audit.log.2": a new chain starts';
$t->expect_alert(qr/audit log "\Q$log\E" \Q$unread\E/);

rename $log, "$log.2" or die "rename: $!\n";
$t->write_file('audit.log.2', '{"id":"torn');
$t->write_file('audit.log', '');

$t->stop;
$t->upstream;
$t->run;

$post->(0, 0, 'no record before it: the gateway starts and answers');
like($t->error_log, qr/\[alert\].*audit log "\Q$log\E" \Q$unread\E/,
    'no record before it: the new chain logged');

my @first = $t->audit_records('audit.log');
is($first[0]{prev}, '0' x 64, 'no record before it: a new chain');

$t->done_testing;
