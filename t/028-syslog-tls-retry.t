#!/usr/bin/perl

# A TLS write retried after the queue grew.  The worker writes each
# record as it comes; the collector's connection takes nothing (an
# LD_PRELOAD shim of write(), t/lib/tg-sendshim.c), and the write of a
# record P waits.  A record R comes meanwhile.  Given P and R on the
# retry, OpenSSL would finish P's TLS record, start R's and wait again,
# reporting nothing written: P reached the collector, and a connection
# closed then (a graceful shutdown) sends P again on the next one.  The
# retry gives OpenSSL what the failed write had, so no record reaches
# the collector on both connections.
#
# The collector is t/019's (Test::TaurusGuard::TLSCollector), here
# passing all it gets.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);
use Test::TaurusGuard::TLSCollector
    qw(tls_collector tls_collector_conf tls_collector_finish);

plan(skip_all => 'a sanitizer build cannot take an LD_PRELOAD shim')
    if defined $ENV{TG_MODULE} && $ENV{TG_MODULE} eq '';
system('cc --version >/dev/null 2>&1') == 0
    or plan(skip_all => 'no C compiler for the shim');

my $json = JSON::PP->new->utf8->canonical;

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;
my ($port, $slow) = tls_collector($t);

system('cc', '-shared', '-fPIC', "-DTG_SHIM_DIR=\"$dir\"",
    "-DTG_SHIM_PORT=$port", '-o', "$dir/sendshim.so",
    $t->repo . '/t/lib/tg-sendshim.c', '-ldl') == 0 or die "shim\n";
$t->write_file('release', '');

$t->write_credentials;
{
    local $ENV{LD_PRELOAD} = "$dir/sendshim.so";
    $t->run(tls_collector_conf($port, $slow));
}

# denied batches, a record of about 8 KB each (two fit one TLS record)

my $v = 'v' x 100;
my $items = [ map { { instance_id => sprintf('%032xin07', $_),
    current_version => $v } } 1 .. 30 ];
my $m;
sub deny {
    $t->post(upgrade_path(), $json->encode({
        databases_instance_infos => $items, delay => 'false' }));
    (undef, $m) = $t->metrics;
    note("queued bytes: " . ($m->{taurus_guard_syslog_queued_bytes} || 0));
}

deny();
sleep 0.5;
deny();

# P: the connection takes nothing, the write waits

$t->write_file('hold', '0');
deny();

# R: the queue grows while the write waits

deny();

# room for P's TLS record and 100 bytes, then a record more: the worker
# writes again

my $p = $m->{taurus_guard_syslog_queued_bytes} / 2;
$t->write_file('hold', $p + 22 + 100);
deny();

tls_collector_finish($t);

$t->done_testing;
