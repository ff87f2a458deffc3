#!/usr/bin/perl

# A worker that exits with audit records still queued for the syslog
# collector (down all along) counts them: after a reload, the queue's
# gauge (taurus_guard_syslog_queued_bytes) is back to 0, the records are
# in taurus_guard_syslog_dropped_total, and a [warn] says how many were
# not sent and that they are in the audit file.  An earlier module left
# the gauge at what the old worker held, for good, and counted nothing.

use strict;
use warnings;

use FindBin;
use IO::Socket::INET;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;

# a port nobody listens on (the kernel's pick, let go): the collector is
# down

my $dead = do {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
        Proto => 'tcp', Listen => 1) or die "listen: $!\n";
    $s->sockport;
};

$t->run(<<"EOF");
worker_processes 1;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;
    taurus_guard_audit_syslog server=127.0.0.1:$dead;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /metrics {
            taurus_guard_metrics;
        }
    }
}
EOF

for my $i (1 .. 3) {
    is($t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]))->{status},
        200, "batch $i: 200, the collector down");
}

sleep 0.3;

my (undef, $m) = $t->metrics;
cmp_ok($m->{taurus_guard_syslog_queued_bytes} || 0, '>', 0,
    'six records queued for the collector');
is($m->{taurus_guard_syslog_dropped_total} || 0, 0, 'none dropped yet');

my @old = $t->worker_pids;
$t->reload;

my $until = now() + 10;
sleep 0.1 while kill(0, @old) && now() < $until;
ok(!kill(0, @old), 'the old worker exited');

(undef, $m) = $t->metrics;
is($m->{taurus_guard_syslog_queued_bytes}, 0,
    'after the reload: nothing queued');
is($m->{taurus_guard_syslog_dropped_total}, 6,
    'the six records it held counted as not sent');

my $warn = 'worker exiting, 6 audit records queued for syslog collector'
    . " \"127.0.0.1:$dead\" not sent (they are in the audit file)";
like($t->error_log, qr/\[warn\].*\Q$warn\E/, 'a [warn] says so')
    or diag(join "\n", grep { /taurus_guard/ } split /\n/, $t->error_log);

is(scalar(() = $t->read_file('audit.log') =~ /\n/g), 6,
    'the six records are in the audit file');

$t->done_testing;
