#!/usr/bin/perl

# The Debian package, on this machine's nginx: `make deb` builds it (twice:
# the second with a higher version, a rebuild), lintian has nothing to
# say, `dpkg -i` installs it where Debian's libnginx-mod-* packages go and
# enables it, the system nginx (/usr/sbin/nginx, in a prefix of this
# test, loading the module through the modules-enabled link) serves a
# guarded request, the upgrade is installed under that running nginx
# without hurting it (a reload keeps the old code, a binary upgrade and a
# restart load the new one), and `dpkg -r` then `dpkg -P` leave nothing behind.
#
# Building both packages takes about 40 s each on an idle 2-core machine.
# Root only; skipped when the package is already installed (the test
# must leave the machine as it found it) or nginx is not the system one.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

my $PKG = 'libnginx-mod-http-taurus-guard';
my $SO = '/usr/lib/nginx/modules/ngx_http_taurus_guard_module.so';
my $AVAIL = '/usr/share/nginx/modules-available/mod-http-taurus-guard.conf';
my $ENABLED = '/etc/nginx/modules-enabled/50-mod-http-taurus-guard.conf';
my $NGINX = '/usr/sbin/nginx';

plan(skip_all => 'needs root (dpkg -i)') unless $> == 0;
plan(skip_all => 'TG_NGINX is not the system nginx')
    if $ENV{TG_NGINX} && $ENV{TG_NGINX} ne $NGINX;
plan(skip_all => "no $NGINX") unless -x $NGINX;
for my $tool (qw(dpkg-buildpackage dh_nginx lintian)) {
    plan(skip_all => "no $tool (apt-get install dpkg-dev nginx-dev lintian)")
        unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}

sub sh {
    my $out = `@_ 2>&1`;
    return ($? >> 8, $out);
}

plan(skip_all => "$PKG is installed here: not touching it")
    if `dpkg-query -W -f='\${Status}' $PKG 2>/dev/null` =~ /installed/;

# the harness adds no load_module: the configuration includes the
# package's modules-enabled link, as /etc/nginx/nginx.conf does

$ENV{TG_MODULE} = '';
my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;
my $repo = $t->repo;

my $modules_dir_before = -d '/usr/lib/nginx/modules';
my ($sys_t_before) = sh("$NGINX -t -q");

# the package, and a rebuild with a higher version

# TG_DEBS=DIR keeps the packages in DIR/v1 and DIR/v2 and takes them from
# there when they are already built (for a second run)

my $debs = $ENV{TG_DEBS} || tempdir('tg-deb-XXXXXXXX', TMPDIR => 1,
    CLEANUP => 1);
my %deb;

for my $v (qw(1 2)) {
    ($deb{$v}) = glob("$debs/v$v/${PKG}_0.0.${v}~tgtest_*.deb");
    next if $ENV{TG_DEBS} && $deb{$v};
    my $start = time;
    my ($rc, $out) = sh("make -s -C $repo deb DEB_OUT=$debs/v$v"
        . " DEB_VERSION=0.0.$v~tgtest");
    is($rc, 0, "make deb DEB_VERSION=0.0.$v~tgtest") or diag($out);
    ($deb{$v}) = glob("$debs/v$v/${PKG}_0.0.${v}~tgtest_*.deb");
    ok($deb{$v} && -f $deb{$v}, "v$v: the .deb")
        or BAIL_OUT("no package built");
    note(sprintf "make deb v%d: %.0f s", $v, time - $start);
}

my ($rc, $out) = sh("lintian --fail-on error,warning $deb{1}");
is($rc, 0, 'lintian: no error or warning') or diag($out);

($rc, $out) = sh("dpkg-deb -f $deb{1} Depends");
like($out, qr/\bnginx-abi-[\d.]+-\d+\b/, 'depends on the nginx ABI');
like($out, qr/\blibcjson1\b/, 'depends on libcjson1');

my @files = grep { m{^\./} } map { (split ' ', $_, 6)[5] // '' }
    split /\n/, `dpkg-deb -c $deb{1}`;
s{^\.}{} for @files;
s{ -> .*}{} for @files;

# anything below left half-installed is removed, whatever happens

END {
    local $?;
    my $status = `dpkg-query -W -f='\${Status}' $PKG 2>/dev/null`;
    if ($status =~ /installed|half|unpacked|config/) {
        system("dpkg -P $PKG >/dev/null 2>&1");
    }
}

# install

($rc, $out) = sh("dpkg -i $deb{1}");
is($rc, 0, 'dpkg -i v1') or diag($out);

ok(-f $SO, "the module in $SO");
is($t->read_file($AVAIL),
    "load_module modules/ngx_http_taurus_guard_module.so;\n",
    'the load_module snippet in modules-available');
is(readlink($ENABLED), $AVAIL, 'enabled: 50- link in modules-enabled');
ok(-x '/usr/bin/taurus-guard-verify', 'the verifier in /usr/bin');
ok(-f '/etc/logrotate.d/taurus-guard', 'the logrotate file');

my @ad = stat '/var/log/taurus-guard';
is(sprintf('%o', ($ad[2] || 0) & 07777), '751', 'audit directory: 0751');
is($ad[4] // -1, 0, 'audit directory: root\'s');
if (defined getpwnam('www-data')) {
    my @af = stat '/var/log/taurus-guard/audit.log';
    is(sprintf('%o', ($af[2] || 0) & 07777), '640', 'audit file: 0640');
    is(scalar getpwuid($af[4] // -1), 'www-data', 'audit file: www-data');
}

($rc, $out) = sh("$NGINX -t -q");
is($rc, $sys_t_before, 'nginx -t of /etc/nginx as before, module loaded')
    or diag($out);

# the system nginx, in this test's prefix: modules/ is Debian's module
# directory, and the module comes through the modules-enabled link

symlink '/usr/lib/nginx/modules', "$dir/modules" or die "symlink: $!\n";

$t->upstream;
$t->write_credentials;

$t->run(<<"EOF");
include $ENABLED;
worker_processes 2;

events {
}

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
EOF

sub guarded {
    my ($i) = @_;
    my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[$i % 3] ]));
    return $r->{status};
}

sub workers {
    return $t->worker_pids;
}

# how a worker maps the module: "" (the installed file) or "(deleted)"
# (an older file, replaced since it was loaded)

sub mapping {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/maps" or return 'gone';
    my @m = grep { m{\Q$SO\E} } <$fh>;
    close $fh;
    return 'none' unless @m;
    return (grep { /\(deleted\)$/ } @m) ? '(deleted)' : '';
}

is(join(',', map { guarded($_) } 1 .. 4), '200,200,200,200',
    'v1: guarded requests through the system nginx');

my @workers = workers();
is(scalar @workers, 2, 'two workers');
is(join(',', map { mapping($_) } @workers), ',', 'they map the module');

# upgrade while nginx runs: dpkg writes a new file and renames it over
# the old one, so the running workers keep the inode they mapped

my $ino = (stat $SO)[1];
($rc, $out) = sh("dpkg -i $deb{2}");
is($rc, 0, 'dpkg -i v2 (upgrade) under the running nginx') or diag($out);
like(`dpkg-query -W -f='\${Version}' $PKG`, qr/^0\.0\.2~tgtest$/,
    'v2 installed');
isnt((stat $SO)[1], $ino, 'a new inode for the module');
is(readlink($ENABLED), $AVAIL, 'still enabled after the upgrade');

is(join(',', map { guarded($_) } 5 .. 8), '200,200,200,200',
    'after the upgrade: served by the same workers');
is(join(',', workers()), join(',', @workers), 'no worker died');
is(join(',', map { mapping($_) } @workers), '(deleted),(deleted)',
    'the workers still run the old module');

# a reload does not take the new code: the master dlopen()s the same
# path, which the dynamic linker finds among its loaded objects

$t->reload;
my @after_reload = workers();
isnt(join(',', @after_reload), join(',', @workers), 'reload: new workers');
is(join(',', map { mapping($_) } @after_reload), '(deleted),(deleted)',
    'reload: the new workers still run the old module');
is(join(',', map { guarded($_) } 9 .. 10), '200,200', 'after the reload');

# a binary upgrade does, without closing a listening socket: the new
# master is a new process, which loads the file installed now

my $old_master = $t->_nginx_pid;
kill 'USR2', $old_master;

my $end = now() + 10;
sleep 0.1 while (($t->_nginx_pid || $old_master) == $old_master
    || !-e "$dir/logs/nginx.pid.oldbin") && now() < $end;
my $new_master = $t->_nginx_pid || $old_master;
isnt($new_master, $old_master, 'binary upgrade: a new master');

$end = now() + 10;
sleep 0.1 while (() = workers()) < 2 && now() < $end;
is(join(',', map { mapping($_) } workers()), ',',
    'binary upgrade: its workers run the new module');

kill 'QUIT', $old_master;
$end = now() + 10;
sleep 0.1 while Test::TaurusGuard::_alive($old_master) && now() < $end;
ok(!Test::TaurusGuard::_alive($old_master), 'binary upgrade: the old '
    . 'master quits');
is(join(',', map { guarded($_) } 11 .. 12), '200,200',
    'after the binary upgrade');

# and so does a restart

$t->stop;
$t->upstream;
$t->run;
is(join(',', map { mapping($_) } workers()), ',',
    'restart: the workers run the new module');
is(join(',', map { guarded($_) } 13 .. 14), '200,200', 'after the restart');
$t->stop;

# remove, then purge

($rc, $out) = sh("dpkg -r $PKG");
is($rc, 0, 'dpkg -r') or diag($out);
ok(!-e $SO, 'removed: no module');
ok(!-e $ENABLED, 'removed: not enabled');

($rc, $out) = sh("$NGINX -t -q");
is($rc, $sys_t_before, 'removed: nginx -t of /etc/nginx as before')
    or diag($out);

($rc, $out) = sh("dpkg -P $PKG");
is($rc, 0, 'dpkg -P') or diag($out);

my @left = grep { -e $_ && !-d $_ } @files;
is(join(' ', @left), '', 'purged: none of the files left');
ok(!-e '/etc/logrotate.d/taurus-guard', 'purged: no logrotate file');
ok(!-e $ENABLED && !-e "$ENABLED.removed" && !-l "$ENABLED.removed",
    'purged: no link, not even a .removed one');
ok(!-e '/var/log/taurus-guard', 'purged: the empty audit directory');
is(-d '/usr/lib/nginx/modules' ? 1 : 0, $modules_dir_before ? 1 : 0,
    '/usr/lib/nginx/modules as it was');

($rc, $out) = sh("$NGINX -t -q");
is($rc, $sys_t_before, 'purged: nginx -t of /etc/nginx as before')
    or diag($out);

# and this nginx starts without the module

$t->run(<<'EOF');
http {
    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location / {
            return 204;
        }
    }
}
EOF
is($t->http("GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")->{status}, 204,
    'purged: nginx starts and serves without the module');

$t->done_testing;
