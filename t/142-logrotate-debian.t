#!/usr/bin/perl

# The audit log's logrotate rule lives beside Debian's rule for nginx's
# own logs (/etc/logrotate.d/nginx: /var/log/nginx/*.log).  Both rules,
# moved into this test's directory, go through logrotate -d together
# without an error, with an audit log and nginx logs in place; the old
# rule for /var/log/nginx/taurus-audit.log did not (duplicate entry).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Path qw(make_path);
use File::Temp qw(tempdir);
use Test::More;

use Test::TaurusGuard;

my $logrotate = (grep { -x } map { "$_/logrotate" }
    qw(/usr/sbin /sbin /usr/bin))[0];
plan(skip_all => 'logrotate is not installed') unless $logrotate;
plan(skip_all => 'no /etc/logrotate.d/nginx (Debian\'s nginx-common)')
    unless -f '/etc/logrotate.d/nginx';

my $repo = Test::TaurusGuard->repo;
my $d = tempdir('tg-lr-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

sub slurp {
    open my $fh, '<', $_[0] or die "$_[0]: $!\n";
    local $/;
    return <$fh>;
}

sub spew {
    my ($f, $c) = @_;
    open my $fh, '>', $f or die "$f: $!\n";
    print $fh $c;
    close $fh;
}

make_path("$d/nginx", "$d/taurus-guard");
spew("$d/nginx/$_", "x\n") for qw(access.log error.log taurus-audit.log);
spew("$d/taurus-guard/audit.log", "{}\n");

my $debian = slurp('/etc/logrotate.d/nginx');
is(($debian =~ s{/var/log/nginx/}{$d/nginx/}g), 1,
    "Debian's rule: /var/log/nginx/*.log");

my $ours = slurp("$repo/examples/logrotate.d/taurus-guard");
(my $rules = $ours) =~ s/^\s*#.*\n//mg;
unlike($rules, qr{/var/log/nginx/}, 'ours: nothing under /var/log/nginx');
is(($ours =~ s{/var/log/taurus-guard/}{$d/taurus-guard/}g), 1,
    'ours: /var/log/taurus-guard/audit.log');

spew("$d/debian.conf", $debian);
spew("$d/ours.conf", $ours);

my $out = `$logrotate -d -s $d/state $d/debian.conf $d/ours.conf 2>&1`;
is($? >> 8, 0, 'logrotate -d: both rules together') or diag($out);
unlike($out, qr/error:/i, 'no error') or diag($out);
like($out, qr{considering log \Q$d\E/taurus-guard/audit\.log},
    'the audit log is considered by our rule');

# the rule this replaced, for the record: logrotate refuses the pair

(my $old = $ours) =~ s{\Q$d\E/taurus-guard/audit\.log}
    {$d/nginx/taurus-audit.log};
spew("$d/old.conf", $old);
$out = `$logrotate -d -s $d/state $d/debian.conf $d/old.conf 2>&1`;
like($out, qr/duplicate log entry/i,
    'the old path under /var/log/nginx: a duplicate entry');

done_testing;
