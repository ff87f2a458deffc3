#!/usr/bin/perl

# No record on disk, no request upstream: with the audit log on /dev/full
# every write fails, so an allowed batch is refused with 503 and nothing
# is forwarded.  A body over client_max_body_size, which nginx refuses
# before the gateway runs, gets a 503 too: no 413 names a record that
# was never written.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

plan(skip_all => 'no /dev/full') unless -c '/dev/full';

# nginx's own log module reports a failed log write at [alert]; the
# module does the same for the audit log, and this test provokes it
$t->expect_alert(qr/taurus_guard: write\(\) to audit log "\/dev\/full" failed/);

$t->upstream;
$t->write_credentials;

$t->run(<<"CONF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log /dev/full;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            client_max_body_size 300;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
CONF

for my $i (1 .. 3) {
    my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
    my $j = $t->is_refusal($r, 503, 'TG.0503', "allowed batch $i");
    like($j->{error_msg} || '', qr/audit/i, "allowed batch $i: names audit");
}

# a denied or invalid batch cannot be recorded either: never forwarded,
# never a 2xx

my $r = $t->post(upgrade_path(), batch_json([ $OTHER_INSTANCE ]));
ok($r->{status} == 503 || $r->{status} == 403, 'denied batch: refused')
    or diag($r->{raw});

$r = $t->post(upgrade_path(), '{}');
ok($r->{status} == 503 || $r->{status} == 400, 'invalid batch: refused')
    or diag($r->{raw});

# nginx's own 413, on Content-Length and on a chunked body

my $big = batch_json([ map { $INSTANCES[0] . $_ } 1 .. 10 ]);
ok(length $big > 300, 'the big body is over client_max_body_size');

$r = $t->post(upgrade_path(), $big);
my $j = $t->is_refusal($r, 503, 'TG.0503', 'oversized body');
is($j->{error_msg}, 'audit log unavailable', 'oversized body: names audit');

$r = $t->post(upgrade_path(), $big, chunked => 64);
$j = $t->is_refusal($r, 503, 'TG.0503', 'oversized chunked body');
like($j->{error_msg} || '', qr/audit/i, 'oversized chunked body: names audit');

is(scalar $t->upstream_records, 0, 'nothing forwarded');

like($t->error_log, qr/taurus_guard:.*audit/, 'write failure logged');

$t->done_testing;
