#!/usr/bin/perl

# make install into a DESTDIR: Debian's layout for a module package, a
# new inode for the module on every install (a running nginx keeps the
# file it mapped), and make uninstall takes it all back.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use Test::More;

use Test::TaurusGuard;

my $repo = Test::TaurusGuard->repo;

for my $f ('build/ngx_http_taurus_guard_module.so',
    'build/taurus-guard-verify')
{
    plan(skip_all => "no $f (run make)") unless -f "$repo/$f";
}

my $d = tempdir('tg-install-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

sub make {
    my $out = `make -s -C $repo @_ DESTDIR=$d 2>&1`;
    return ($? >> 8, $out);
}

my ($rc, $out) = make('install');
is($rc, 0, 'make install DESTDIR=...') or diag($out);

my $so = "$d/usr/lib/nginx/modules/ngx_http_taurus_guard_module.so";
my $avail = '/usr/share/nginx/modules-available/mod-http-taurus-guard.conf';
my $enabled = "$d/etc/nginx/modules-enabled/50-mod-http-taurus-guard.conf";

ok(-f $so, 'the module in /usr/lib/nginx/modules');
is(sprintf('%o', (stat $so)[2] & 07777), '644', 'module: 0644');

open my $fh, '<', "$d$avail" or die "$d$avail: $!\n";
is(join('', <$fh>), "load_module modules/ngx_http_taurus_guard_module.so;\n",
    'the snippet in modules-available');
close $fh;

is(readlink($enabled), $avail,
    'the 50- link in modules-enabled, to the installed path');
ok(-x "$d/usr/bin/taurus-guard-verify", 'the verifier');
ok(-f "$d/usr/share/man/man1/taurus-guard-verify.1", 'its manual page');
ok(-f "$d/etc/logrotate.d/taurus-guard", 'the logrotate file');

my @a = stat "$d/var/log/taurus-guard";
is(sprintf('%o', ($a[2] || 0) & 07777), '751', 'the audit directory, 0751');
if ($> == 0 && defined getpwnam('www-data')) {
    is($a[4], 0, 'owned by root');
    my @f = stat "$d/var/log/taurus-guard/audit.log";
    is(sprintf('%o', ($f[2] || 0) & 07777), '640', 'the audit file, 0640');
    is(scalar getpwuid($f[4] // -1), 'www-data', 'owned by www-data');
}

# again, with the old module held open as a running nginx holds it:
# install(1) writes a new file in its place, never into the old one

open my $old, '<', $so or die "$so: $!\n";
($rc, $out) = make('install');
is($rc, 0, 'make install again') or diag($out);
isnt((stat $so)[1], (stat $old)[1], 'the module is a new file');
is((stat $old)[3], 0, 'the old one is unlinked, its content untouched');
close $old;

# uninstall keeps an audit directory that holds records

open $fh, '>', "$d/var/log/taurus-guard/audit.log" or die;
print $fh "{}\n";
close $fh;

($rc, $out) = make('uninstall');
is($rc, 0, 'make uninstall') or diag($out);

my @left;
for my $p (sort `find $d ! -type d`) {
    chomp $p;
    push @left, $p;
}
is(join(' ', @left), "$d/var/log/taurus-guard/audit.log",
    'nothing left but the audit records');

unlink "$d/var/log/taurus-guard/audit.log";
($rc, $out) = make('uninstall');
ok(!-e "$d/var/log/taurus-guard", 'an empty audit directory goes');

done_testing;
