#!/usr/bin/perl

# The audit directory is root's, not the worker user's.  nginx's master
# (root) opens the audit log by name at every start and "nginx -s
# reopen", and chown()s it to the worker user, following a symbolic
# link.  make install and the package gave the directory to the worker
# user: that user (a compromised worker) could replace the log by a link
# to any file, which the next rotation handed to it (Debian's
# CVE-2016-1247, for /var/log/nginx).
#
# make install into a DESTDIR, with nobody as the worker user: the
# directory is root's and 0751, the empty first file the worker user's
# and 0640; the worker user cannot put a link in the file's place; a
# gateway logging there works, and after a reopen a root file the link
# would have named is still root's.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use POSIX ();
use Test::More;

use Test::TaurusGuard qw(:all);

plan(skip_all => 'needs root (chown)') unless $> == 0;

my $repo = Test::TaurusGuard->repo;

my ($uid, $gid) = (getpwnam('nobody'))[2, 3];
plan(skip_all => 'no user nobody') unless defined $uid;
my $group = getgrgid($gid);

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;
my $d = "$dir/root";

my $out = `make -s -C $repo install DESTDIR=$d NGX_USER=nobody NGX_GROUP=$group 2>&1`;
is($? >> 8, 0, 'make install DESTDIR=...') or diag($out);

my $ad = "$d/var/log/taurus-guard";
my $log = "$ad/audit.log";

my @a = stat $ad;
is($a[4], 0, 'the audit directory is root\'s');
is(sprintf('%o', ($a[2] || 0) & 07777), '751', 'the audit directory: 0751');

my @f = stat $log;
is($f[4], $uid, 'the audit file is the worker user\'s');
is(sprintf('%o', ($f[2] || 0) & 07777), '640', 'the audit file: 0640');

# the worker user tries to put a link to a root file in the log's place

my $victim = "$dir/victim";
$t->write_file('victim', "root's\n");
chmod 0644, $victim;

sub as_worker {
    my ($code) = @_;
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        POSIX::setgid($gid);
        POSIX::setuid($uid);
        POSIX::_exit($code->() ? 0 : 1);
    }
    waitpid $pid, 0;
    return $? == 0;
}

$t->upstream(audit_log => $log);
$t->write_credentials;

$t->run(<<"EOF2");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log $log;

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
EOF2

my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 200, 'a batch, audited in the installed directory');

ok(!as_worker(sub { rename($log, "$log.x") && symlink($victim, $log) }),
    'the worker user cannot put a link in the file\'s place');

$t->reopen;
sleep 1;

is((stat $victim)[4], 0, 'after a reopen, the root file is still root\'s');
is($t->read_file('victim'), "root's\n", 'and holds no record');

# the link gone (the old code), the file back: batches are audited

if (-l $log) {
    unlink $log;
    rename "$log.x", $log;
    $t->reopen;
    sleep 1;
}

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[1] ]));
is($r->{status}, 200, 'a batch after the reopen');
$t->wait_audit(header($r, 'X-Taurus-Guard-Id'), 2, $log);

$t->done_testing;
