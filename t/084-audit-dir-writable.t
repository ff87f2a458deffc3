#!/usr/bin/perl

# An audit log in a directory someone other than root may write to.
# nginx's master (root) opens the audit log by name at every start and
# "nginx -s reopen" (logrotate's postrotate, daily) and chown()s it to
# the worker user, following a symbolic link: whoever can put a link in
# the file's place is handed the file it names (Debian's CVE-2016-1247,
# for /var/log/nginx).  The package's directory is root's (127 checks
# it), but nothing stopped an operator who wrote another path: nginx -t
# passed an audit log in a world-writable directory, in one the worker
# user owns, in one the worker user's group may write to, and directly
# in /tmp.
#
# nginx -t fails, naming the audit log, the directory, who may write to
# it, the fix and the directive's file:line; on the way of a symbolic
# link too.  It passes for a root directory 0751 (the package's layout),
# and below a sticky directory (/tmp) when the name looked up there is
# root's; a reload refused for this keeps the running nginx.  A POSIX
# ACL is read as the kernel reads it: the mode shows only its mask.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Config;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

plan(skip_all => 'not root: the workers run as this user, as the master')
    unless $> == 0;

my $t = Test::TaurusGuard->new;
my $d = $t->testdir;

plan(skip_all => 'no unprivileged worker user')
    unless defined $t->{worker_uid} && $t->{worker_uid} != 0;

my $user = $ENV{TG_USER} || 'nobody';
my ($wuid, $wgid) = ($t->{worker_uid}, $t->{worker_gid});

$t->upstream;
$t->write_credentials;

sub conf {
    my ($audit) = @_;
    return <<"EOF";
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_audit_log $audit;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF
}

sub dir {
    my ($name, $mode, $uid, $gid) = @_;
    mkdir "$d/$name" unless -d "$d/$name";
    chown $uid // 0, $gid // 0, "$d/$name";
    chmod $mode, "$d/$name";
}

my $tconf = $t->conf_path('test.conf');

sub refused {
    my ($name, $audit, $dir, $who) = @_;

    my ($rc, $out) = $t->nginx_t(conf($audit));
    isnt($rc, 0, "$name: nginx -t fails");
    my $re = qr/audit log "\Q$audit\E": "\Q$dir\E" \Q$who\E the nginx/;
    like($out, qr/\[emerg\] .*$re workers \("\Q$user\E", uid $wuid\)/,
        "$name: names the file, the directory, who may write to it")
        or diag($out);
    like($out, qr/symbolic link .* make every directory on the path root's/,
        "$name: says why and what to do") or diag($out);
    my $line = $t->conf_line(qr/taurus_guard_audit_log/, 'test.conf');
    like($out, qr/, in \Q$tconf\E:$line$/m, "$name: in test.conf:$line")
        or diag($out);
}

sub passes {
    my ($name, $audit) = @_;
    my ($rc, $out) = $t->nginx_t(conf($audit));
    is($rc, 0, "$name: nginx -t passes") or diag($out);
}

# the package's layout: root's, 0751, group adm (not the workers')

dir('pkg', 0751, 0, 0);
passes('a root directory, 0751', "$d/pkg/audit.log");

dir('ww', 0777);
refused('a world-writable directory', "$d/ww/audit.log", "$d/ww",
    'is writable by everybody, including');

dir('theirs', 0755, $wuid, 0);
refused('a directory of the worker user', "$d/theirs/audit.log",
    "$d/theirs", 'belongs to');

dir('theirs', 0555, $wuid, 0);
refused('a directory of the worker user, read-only (they may chmod it)',
    "$d/theirs/audit.log", "$d/theirs", 'belongs to');

dir('grp', 0775, 0, $wgid);
refused('a directory their group may write to', "$d/grp/audit.log",
    "$d/grp", 'is writable by');

dir('grp', 0755, 0, $wgid);
passes('a directory of their group, not group-writable',
    "$d/grp/audit.log");

# a parent as well: the directory holding the file's directory can be
# renamed away and another put in its place

dir('ww', 0777);
dir('ww/sub', 0755);
refused('a parent directory world-writable', "$d/ww/sub/audit.log",
    "$d/ww", 'is writable by everybody, including');

# sticky (/tmp): a root name in it cannot be replaced by others, but the
# file itself is handed to the workers, who then may

dir('sticky', 01777);
dir('sticky/root', 0755);
passes('below a sticky directory, in a root directory',
    "$d/sticky/root/audit.log");

refused('directly in a sticky world-writable directory',
    "$d/sticky/audit.log", "$d/sticky",
    'is writable by everybody, including');

# a name of the worker user's in a sticky directory: they may rename it

dir('sticky/nobody', 0755, $wuid, 0);
refused('below a sticky directory, in one of the worker user',
    "$d/sticky/nobody/audit.log", "$d/sticky",
    'is writable by everybody, including');

# a symbolic link from the package's directory into a writable one: the
# kernel walks the link's target too

symlink "$d/ww/audit.log", "$d/pkg/link.log" or die "symlink: $!\n";
refused('a link into a world-writable directory', "$d/pkg/link.log",
    "$d/ww", 'is writable by everybody, including');

# a POSIX ACL (setfacl -m u:www-data:rwx) shows in the mode only as its
# mask, in the group bits, whatever user or group it names: the
# kernel's rule reads the ACL, and so must nginx -t

sub acl {
    my ($path, $group, $other, @named) = @_;

    # version 2; (tag, perm, id): owner, named, owning group, mask (as
    # setfacl makes it, unless given: [ group, mask ]), others
    my $mask;
    ($group, $mask) = @$group if ref $group;
    unless (defined $mask) {
        $mask = $group;
        $mask |= $_->[1] for @named;
    }
    my @e = ([ 0x01, 7, 0xffffffff ], @named, [ 0x04, $group, 0xffffffff ],
        [ 0x10, $mask, 0xffffffff ], [ 0x20, $other, 0xffffffff ]);
    my $acl = pack('V', 2) . join('', map { pack('vvV', @$_) }
        sort { $a->[0] <=> $b->[0] || $a->[2] <=> $b->[2] } @e);
    my ($p, $n) = ($path, 'system.posix_acl_access');

    # setxattr(2), x86_64's 188: no setfacl needed
    return 0 unless $Config{archname} =~ /^x86_64-linux/;
    return syscall(188, $p, $n, $acl, length $acl, 0) == 0;
}

# what the kernel lets the worker user do, asked as that user

sub as_worker {
    my ($check) = @_;
    my $pid = fork() // die "fork: $!\n";

    if ($pid == 0) {
        $) = "$wgid $wgid";
        $( = $wgid;
        $> = $< = $wuid;
        POSIX::_exit($check->() ? 0 : 1);
    }

    waitpid($pid, 0);
    return $? == 0;
}

SKIP: {
    dir('acl', 0755);
    skip("no POSIX ACLs here (x86_64's setxattr): $!", 13)
        unless acl("$d/acl", 5, 5, [ 0x02, 7, $wuid ]);

    refused('an ACL entry of the worker user, rwx', "$d/acl/audit.log",
        "$d/acl", 'is writable by');

    dir('aclg', 0755);
    acl("$d/aclg", 5, 5, [ 0x08, 7, $wgid ]);
    refused('an ACL entry of their group, rwx', "$d/aclg/audit.log",
        "$d/aclg", 'is writable by');

    # the sound use of an ACL: the workers may only pass through a root
    # 0700 directory (the mode shows 0710, for the mask); and one that
    # shuts them out of a 0755 one, which the mode does not show

    dir('aclx', 0700);
    acl("$d/aclx", 0, 0, [ 0x02, 1, $wuid ]);
    dir('aclx/in', 0751);
    passes('an ACL letting the worker user through a 0700 directory',
        "$d/aclx/in/audit.log");

    dir('acln', 0755);
    acl("$d/acln", 5, 5, [ 0x02, 0, $wuid ]);
    my ($rc, $out) = $t->nginx_t(conf("$d/acln/audit.log"));
    isnt($rc, 0, 'an ACL shutting the worker user out: nginx -t fails');
    like($out, qr/cannot enter "\Q$d\/acln\E", so they could not reopen/,
        'an ACL shutting the worker user out: names it') or diag($out);

    # an empty mask (a "chmod 0701" after setfacl): the kernel then reads
    # the mode alone (acl_permission_check()), so the ACL's rwx for the
    # worker user gives nothing and takes nothing: the others' bit lets
    # the workers through, and they may not write

    dir('aclm', 0701);
    acl("$d/aclm", [ 0, 0 ], 1, [ 0x02, 7, $wuid ]);
    dir('aclm/in', 0751);
    ok(as_worker(sub { -x "$d/aclm/in" && !-w "$d/aclm" }),
        'an ACL with an empty mask: the kernel lets the workers through');
    passes('an ACL with an empty mask, the others\' x',
        "$d/aclm/in/audit.log");
}

# a reload refused for this keeps the running nginx

$t->run(conf("$d/pkg/audit.log"));
my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 200, 'a root directory: the gateway forwards');

my $master = $t->_nginx_pid;
$t->write_conf(conf("$d/ww/audit.log"));
kill 'HUP', $master;
$t->expect_emerg(qr/audit log "\Q$d\E\/ww\/audit\.log": .* writable/);

my $end = now() + 5;
sleep 0.1 until $t->error_log =~ /writable by everybody/ || now() > $end;
like($t->error_log, qr/writable by everybody/, 'reload: refused, logged');
ok(kill(0, $master), 'reload refused: the master still runs');
$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 200, 'reload refused: the old configuration serves');
is(scalar(() = grep { $_->{decision} eq 'allow' }
    $t->audit_records("pkg/audit.log")), 2,
    'its records go on in the old file');

$t->done_testing;
