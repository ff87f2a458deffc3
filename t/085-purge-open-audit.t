#!/usr/bin/perl

# Purging the package (debian/postrm) and make uninstall remove an empty
# audit.log, as the one postinst and make install made is no record.
# But removing the package does not stop nginx: with the gateway still
# in its configuration, the reload the package triggers fails, and the
# running workers go on serving.  After logrotate, audit.log is empty
# until the next batch (a gateway that upgrades databases may see a few
# a day), so a purge then removed the file the running nginx writes to:
# the gateway found its audit file gone, and refused every batch (503,
# an [alert] a minute) until nginx was restarted.
#
# The shipped postrm, with its paths moved into this test's directory
# (as 142 does with the logrotate rule), and make uninstall into a
# DESTDIR: an empty audit.log a running nginx holds open is kept, with a
# message, and the next batch's records are in it, the chain intact
# across the rotation; once nginx is stopped, an empty audit.log is
# removed as before.  The file is found open by what it is, not by the
# name the kernel gives it: the audit directory may be reached through
# a symbolic link.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

my $repo = Test::TaurusGuard->repo;
my $verify = "$repo/build/taurus-guard-verify";
plan(skip_all => "no $verify (run make verify)") unless -x $verify;

my $t = Test::TaurusGuard->new;
my $d = $t->testdir;
my $root = "$d/root";
my $ad = "$root/var/log/taurus-guard";
my $log = "$ad/audit.log";

my @user = ();
if ($> == 0) {
    my $g = getgrgid($t->{worker_gid});
    @user = ('NGX_USER=' . ($ENV{TG_USER} || 'nobody'), "NGX_GROUP=$g");
}

my $out = `make -s -C $repo install DESTDIR=$root @user 2>&1`;
is($? >> 8, 0, 'make install DESTDIR=...') or diag($out);

# the shipped postrm, acting on this test's audit directory

my $postrm = $t->read_file("$repo/debian/postrm");
is(($postrm =~ s{/var/log/taurus-guard\b}{$ad}g) > 0, 1,
    'postrm: names /var/log/taurus-guard');
$t->write_file('postrm', $postrm, 0755);

sub postrm_purge {
    my $o = $t->_cmd('/bin/sh', "$d/postrm", 'purge');
    return ($? >> 8, $o);
}

$t->upstream(audit_log => $log);
$t->write_credentials;

$t->run(<<"EOF");
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
EOF

my $n = 0;

sub batch {
    my ($what) = @_;
    my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[$n++ % 3] ]));
    is($r->{status}, 200, "$what: a batch is forwarded");
    my @a = $t->wait_audit(header($r, 'X-Taurus-Guard-Id'), 2, $log);
    is(join(',', map { $_->{decision} } @a), 'allow,done',
        "$what: its records are in $log");
}

# what logrotate does: the file moved away, an empty one in its place,
# nginx told to reopen

my $rot = 0;

sub rotate {
    $rot++;
    ok(rename($log, "$log-$rot"), "rotation $rot: audit.log moved away");
    $t->write_file($log, '', 0640);
    chown $t->{worker_uid}, -1, $log if $> == 0;
    $t->reopen;
    ok(-f $log && -z $log, "rotation $rot: an empty audit.log");
}

batch('installed');
rotate();

my ($rc, $o) = postrm_purge();
is($rc, 0, 'postrm purge, nginx running: exit 0') or diag($o);
ok(-f $log, 'postrm purge: the empty audit.log nginx writes to is kept');
like($o, qr/keeping \Q$log\E: a running nginx writes its audit records/,
    'postrm purge: says why') or diag($o);
batch('after postrm purge');

rotate();

$out = `make -s -C $repo uninstall DESTDIR=$root 2>&1`;
is($? >> 8, 0, 'make uninstall, nginx running: exit 0') or diag($out);
ok(-f $log, 'make uninstall: the empty audit.log nginx writes to is kept');
like($out, qr/keeping \Q$log\E: a running nginx writes its audit records/,
    'make uninstall: says why') or diag($out);
batch('after make uninstall');

# the audit directory reached through a symbolic link (moved to a larger
# disk, say): the kernel names the open file by where the link leads,
# never by the name postrm and make uninstall look for; the same file
# is the same file

symlink $root, "$d/rootlink" or die "symlink: $!\n";
my $linked = "$d/rootlink/var/log/taurus-guard";
(my $postrm2 = $t->read_file("$repo/debian/postrm"))
    =~ s{/var/log/taurus-guard\b}{$linked}g;
$t->write_file('postrm-linked', $postrm2, 0755);

rotate();
$o = $t->_cmd('/bin/sh', "$d/postrm-linked", 'purge');
is($? >> 8, 0, 'postrm purge, through a link: exit 0') or diag($o);
ok(-f $log, 'postrm purge, through a link: the audit.log nginx writes to'
    . ' is kept');
like($o, qr/keeping \Q$linked\E\/audit\.log: a running nginx/,
    'postrm purge, through a link: says why') or diag($o);
batch('after postrm purge through a link');

rotate();
$out = `make -s -C $repo uninstall DESTDIR=$d/rootlink 2>&1`;
is($? >> 8, 0, 'make uninstall, through a link: exit 0') or diag($out);
ok(-f $log, 'make uninstall, through a link: the audit.log nginx writes to'
    . ' is kept');
batch('after make uninstall through a link');

my @files = ((map { "$log-$_" } 1 .. $rot), $log);
$o = $t->_cmd($verify, @files);
is($? >> 8, 0, 'the rotated series verifies: no record lost') or diag($o);
like($o, qr/^ok: 10 records in 5 file\(s\), chain intact \(5 allowed, 5 /m,
    'every batch: its allow and its done') or diag($o);

# nginx stopped: an empty audit.log is no record, and goes

rotate();
$t->stop;

($rc, $o) = postrm_purge();
is($rc, 0, 'postrm purge, nginx stopped: exit 0') or diag($o);
ok(!-e $log, 'postrm purge, nginx stopped: the empty audit.log goes');
like($o, qr/keeping \Q$ad\E: it holds audit records/,
    'the directory is kept: it holds the rotated files') or diag($o);
ok(-s "$log-$_", "the rotated file $_ is kept") for 1 .. $rot - 1;

$t->done_testing;
