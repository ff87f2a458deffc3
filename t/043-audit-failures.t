#!/usr/bin/perl

# Fail closed, lose nothing.  The audit log on a small tmpfs of its own:
# filled up, made unwritable, removed.  Each time a batch is either
# answered 200 with its allow record whole in the file, or refused 503
# with nothing forwarded; no partial line is left; and once the file
# works again, so does the gateway, with the chain intact.  (The log on
# /dev/full is t/009-audit-fail.t.)

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

plan(skip_all => 'needs root (mount)') unless $> == 0;

my $t = Test::TaurusGuard->new;

my $verify = $t->repo . '/build/taurus-guard-verify';
plan(skip_all => "no $verify (run make verify)") unless -x $verify;

my $json = JSON::PP->new->utf8;
my $dir = $t->testdir;
my $fs = "$dir/fs";
my $log = "$fs/audit.log";
my $filler = "$fs/filler";
my ($mounted, $immutable);

mkdir $fs or die "$fs: $!\n";
$t->_cmd('mount', '-t', 'tmpfs', '-o', 'size=64k,mode=0755', 'tmpfs', $fs);
plan(skip_all => 'cannot mount a tmpfs') if $?;
$mounted = 1;

END {
    local $?;

    # nginx holds the file open: stop it before the umount
    $t->stop if $t;
    $t->_cmd('chattr', '-i', $immutable) if $immutable;
    if ($mounted) {
        $t->_cmd('umount', $fs);
        $t->_cmd('umount', '-l', $fs) if $?;
    }
}

# one alert a minute per worker: whichever failure comes first
$t->expect_alert(qr/taurus_guard: .* to audit log "\Q$log\E" failed/);

$t->upstream(audit_log => $log);
$t->write_credentials;

sub conf {
    my ($path) = @_;
    return <<"EOF";
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log $path;

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
}

$t->run(conf($log));

my $n = 0;

sub allowed {
    $n++;
    my $r = $t->post(upgrade_path(),
        batch_json([ [ $INSTANCES[$n % 3], "2.0.48.$n" ] ]));
    $r->{id} = header($r, 'X-Taurus-Guard-Id') || 'none';
    return $r;
}

sub lines {
    my $c = $t->read_file($log);
    return defined $c ? ($c =~ /([^\n]*\n|[^\n]+\z)/g) : ();
}

sub whole_file {
    my ($name) = @_;
    my $c = $t->read_file($log);
    $c = '' unless defined $c;
    ok(!length $c || substr($c, -1) eq "\n", "$name: the file ends with a "
        . "newline");
    my @bad = grep { !eval { $json->decode($_) } } lines();
    is(scalar @bad, 0, "$name: every line is a whole record")
        or diag(join '', @bad);
}

sub upstream_ids {
    return map { (headers_named($_->{headers}, 'X-Taurus-Guard-Id'))[0] }
        $t->upstream_records;
}

sub verify {
    my (@files) = @_;
    my $out = $t->_cmd($verify, @files ? @files : $log);
    return ($? >> 8, $out);
}

my $r = allowed();
is($r->{status}, 200, 'before: 200');
$t->wait_audit($r->{id}, 2, $log);

# a full filesystem: a filler takes most of it, then batches until the
# audit log cannot grow

$t->_cmd('dd', 'if=/dev/zero', "of=$filler", 'bs=4k', 'count=11');
ok(-s $filler >= 40000, 'filler written');

my @full;
for (1 .. 150) {
    my $x = allowed();
    push @full, $x;
    $t->wait_audit($x->{id}, 2, $log) if $x->{status} == 200;
    last if grep({ $_->{status} == 503 } @full) >= 5;
}

my @ok = grep { $_->{status} == 200 } @full;
my @refused = grep { $_->{status} == 503 } @full;

ok(@ok > 0, 'full: some batches went through first (' . @ok . ')');
ok(@refused >= 5, 'full: then batches are refused (' . @refused . ')');
is(scalar(grep { $_->{status} != 200 && $_->{status} != 503 } @full), 0,
    'full: every answer is 200 or 503')
    or diag(join ' ', map { $_->{status} || 'none' } @full);
is(scalar(grep { (($_->{json} || {})->{error_code} || '') ne 'TG.0503' }
    @refused), 0, 'full: every 503 is TG.0503');
is(scalar(grep { !defined $_->{json} || ($_->{json}{audit_id} || '')
    ne $_->{id} } @refused), 0, 'full: every 503 carries its id');

my %up = map { $_ => 1 } upstream_ids();
is(scalar keys %up, 1 + @ok, 'full: forwarded == answered 200');
is(scalar(grep { $up{ $_->{id} } } @refused), 0,
    'full: no refused batch was forwarded');

my %allow = map { $_->{id} => $_ } grep { $_->{decision} eq 'allow' }
    $t->audit_records($log);
is(scalar(grep { !$allow{ $_->{id} } } @ok), 0,
    'full: every 200 has its allow record in the file');
is(scalar(grep { $allow{ $_->{id} } } @refused), 0,
    'full: no refused batch has an allow record');

whole_file('full');
my ($rc, $out) = verify();
is($rc, 0, 'full: the chain of what was written verifies') or diag($out);

# space again: the gateway works again

unlink $filler;
$r = allowed();
is($r->{status}, 200, 'space freed: 200');
my @a = $t->wait_audit($r->{id}, 2, $log);
is(join(',', map { $_->{decision} } @a), 'allow,done',
    'space freed: allow and done records');
whole_file('space freed');
($rc, $out) = verify();
is($rc, 0, 'space freed: chain intact') or diag($out);

# unwritable while nginx runs.  "mount -o remount,ro" is refused by the
# kernel while nginx holds a file open for writing (EBUSY), so the file
# is made immutable instead: on ext4 and the like, write() on an open
# descriptor then fails with EPERM (tmpfs ignores the flag for writes, so
# this runs in a directory where a probe shows it works).

SKIP: {
    my $probe = "$dir/probe";
    open my $pf, '>>', $probe or die "$probe: $!\n";
    $t->_cmd('chattr', '+i', $probe);
    my $set = !$?;
    my $w = syswrite($pf, 'x');
    close $pf;
    $t->_cmd('chattr', '-i', $probe);
    unlink $probe;

    skip 'chattr +i does not stop writes to an open file here', 10
        if !$set || $w;

    $immutable = "$dir/ro/audit.log";
    mkdir "$dir/ro";

    my $u = Test::TaurusGuard->new;
    my $alert =
        qr/taurus_guard: write\(\) to audit log "\Q$immutable\E" failed/;
    $u->expect_alert($alert);
    $u->upstream(audit_log => $immutable);
    $u->write_credentials;
    $u->run(conf($immutable));

    my $r = $u->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
    is($r->{status}, 200, 'immutable: before, 200');
    $u->wait_audit(header($r, 'X-Taurus-Guard-Id') || 'none', 2, $immutable);
    my $size = -s $immutable;

    $u->_cmd('chattr', '+i', $immutable);

    $r = $u->post(upgrade_path(), batch_json([ $INSTANCES[1] ]));
    $u->is_refusal($r, 503, 'TG.0503', 'immutable: allowed batch');
    is(scalar $u->upstream_records, 1, 'immutable: nothing forwarded');
    is(-s $immutable, $size, 'immutable: the file did not change');
    my $eperm = 'requests are refused until it works (1: Operation not '
        . 'permitted)';
    like($u->error_log, qr/\[alert\].*$alert, \Q$eperm\E/,
        'immutable: alert names the file and the error');

    $u->_cmd('chattr', '-i', $immutable);

    $r = $u->post(upgrade_path(), batch_json([ $INSTANCES[2] ]));
    is($r->{status}, 200, 'writable again: 200');
    is(scalar $u->upstream_records, 2, 'writable again: forwarded');
    my $out = $u->_cmd($verify, $immutable);
    like($out, qr/chain intact/, 'writable again: chain intact');
    $immutable = undef;
    $u->finish;
}

# removed while nginx runs: refused (the records would go to a file
# nobody can read) until nginx -s reopen creates it again; the new file
# goes on with the chain of the old one

my @old = lines();
my $saved = $t->write_file('audit.log.removed', join '', @old);
unlink $log or die "$log: $!\n";

my $before = scalar $t->upstream_records;
$r = allowed();
$t->is_refusal($r, 503, 'TG.0503', 'removed: allowed batch');
is(scalar $t->upstream_records, $before, 'removed: nothing forwarded');
ok(!-e $log, 'removed: not created by the write');

kill 'USR1', $t->_nginx_pid;
for (1 .. 50) {
    last if -e $log;
    sleep 0.05;
}
ok(-e $log, 'reopen: the file is created again');

# the workers reopen after the master
for (1 .. 50) {
    last if $t->error_log =~ /\d+#\d+: reopening logs(?s:.*)\d+#\d+: reopening/;
    sleep 0.05;
}

$r = allowed();
is($r->{status}, 200, 'reopened: 200');
@a = $t->wait_audit($r->{id}, 2, $log);
is(join(',', map { $_->{decision} } @a), 'allow,done',
    'reopened: allow and done records');
is($a[0]{prev}, chain_digest($old[-1]),
    'reopened: the new file links to the last record of the removed one');
($rc, $out) = verify($saved, $log);
is($rc, 0, 'removed + new file: one chain') or diag($out);

$t->done_testing;
