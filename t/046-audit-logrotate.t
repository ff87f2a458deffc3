#!/usr/bin/perl

# examples/logrotate.d/taurus-guard: logrotate accepts it as it is, and,
# pointed at this test's audit log and nginx, a real rotation leaves a
# rotated file and a new one that verify as one chain.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

my $logrotate = (grep { -x } map { "$_/logrotate" }
    qw(/usr/sbin /sbin /usr/bin))[0];
plan(skip_all => 'logrotate is not installed') unless $logrotate;
plan(skip_all => 'needs root (logrotate create root adm)') unless $> == 0;

my $t = Test::TaurusGuard->new;

my $verify = $t->repo . '/build/taurus-guard-verify';
plan(skip_all => "no $verify (run make verify)") unless -x $verify;

my $dir = $t->testdir;
my $example = $t->read_file($t->repo . '/examples/logrotate.d/taurus-guard');
ok(defined $example, 'the example exists');
$example = '' unless defined $example;

unlike($example, qr/^\s*copytruncate\b/m, 'example: no copytruncate');
like($example, qr/kill -USR1/, 'example: postrotate signals nginx to reopen');

# as it is, in debug mode (nothing is done)

$t->write_file('example.conf', $example);
my $out = $t->_cmd($logrotate, '-d', '-s', "$dir/state.d",
    "$dir/example.conf");
is($? >> 8, 0, 'logrotate -d accepts the example') or diag($out);
unlike($out, qr/error:/i, 'logrotate -d: no error') or diag($out);

# pointed at this test's gateway

$t->upstream;
$t->write_credentials;

$t->run(<<"EOF");
worker_processes 2;

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

my $conf = $example;
my $n = 0;
$n += $conf =~ s{/var/log/taurus-guard/audit\.log}{$dir/audit.log}g;
$n += $conf =~ s{/run/nginx\.pid}{$dir/logs/nginx.pid}g;
is($n, 3, 'example: the log path and the pid file replaced');
$t->write_file('logrotate.conf', $conf);

sub batch {
    my ($i) = @_;
    my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[$i % 3] ]));
    my $id = header($r, 'X-Taurus-Guard-Id') || 'none';
    $t->wait_audit($id, 2);
    return $r->{status};
}

is(join(',', map { batch($_) } 1 .. 3), '200,200,200', 'before: 200s');
my $last = ($t->read_file('audit.log') =~ /([^\n]*\n)\z/)[0];

$out = $t->_cmd($logrotate, '-f', '-v', '-s', "$dir/state",
    "$dir/logrotate.conf");
is($? >> 8, 0, 'logrotate -f: exit 0') or diag($out);

opendir my $dh, $dir or die "$dir: $!\n";
my @rotated = grep { /\Aaudit\.log-\d{8}/ } readdir $dh;
closedir $dh;
is(scalar @rotated, 1, 'one rotated file (dateext)') or diag($out);
my $rotated = "$dir/" . ($rotated[0] || 'none');

ok(-e "$dir/audit.log", 'a new audit.log (create)');
my @st = stat "$dir/audit.log";
is(sprintf('%o', ($st[2] || 0) & 07777), '640', 'new file: mode 0640');

# the master reopens and hands the file to the workers' user; then each
# worker reopens

for (1 .. 50) {
    my @m = $t->error_log =~ /\d+#\d+: reopening logs/g;
    last if @m >= 3;
    sleep 0.05;
}

is(join(',', map { batch($_) } 4 .. 7), '200,200,200,200', 'after: 200s');

my @new = split /^/m, $t->read_file('audit.log') || '';
is(scalar @new, 8, 'after: the new records in the new file');
like($new[0] || '', qr/"prev":"\Q${\ chain_digest($last)}\E"/,
    'the new file links to the last record of the rotated one');

$out = $t->_cmd($verify, $rotated, "$dir/audit.log");
is($? >> 8, 0, 'rotated + new: exit 0') or diag($out);
like($out, qr/ok: 14 records in 2 file\(s\), chain intact/,
    'rotated + new: one chain');

$t->done_testing;
