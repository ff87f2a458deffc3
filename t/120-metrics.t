#!/usr/bin/perl

# taurus_guard_metrics: exact counts after known traffic through several
# workers, kept across a reload; taurus_guard_health: ok, then failing
# when the audit file is gone, and ok again once it is back; neither
# writes an audit record or reaches the upstream.  promtool, where it is
# installed, checks the exposition and the example rules.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;

$t->run(<<"CONF");
worker_processes 3;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0] $INSTANCES[1];
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

        location = /health {
            taurus_guard_health;
        }
    }
}
CONF

my ($r, $m) = $t->metrics;
is($r->{status}, 200, 'metrics: 200');
like(header($r, 'Content-Type') || '', qr{\Atext/plain; version=0\.0\.4},
    'metrics: the text exposition format');
is($m->{'taurus_guard_requests_total{decision="allow"}'}, 0,
    'no request yet: allow 0');

my %base = %$m;

# known traffic, at once, so that the three workers share it

my @ok = $t->concurrent_posts(upgrade_path(),
    batch_json([ $INSTANCES[0] ]), 6);
is(scalar(grep { $_->[0] eq '200' } @ok), 6, 'six allowed batches');

my @no = $t->concurrent_posts(upgrade_path(),
    batch_json([ $OTHER_INSTANCE ]), 4);
is(scalar(grep { $_->[0] eq '403' } @no), 4, 'four denied batches');

is($t->post(upgrade_path(), '{"delay":"false"}')->{status}, 400,
    'one invalid batch');
is($t->post('/v3/nope', '')->{status}, 404, 'one refused route');
is($t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]),
    method => 'PUT')->{status}, 405, 'one refused method');

sleep 1;    # the log phase of the last request has run

($r, $m) = $t->metrics;

my %want = (
    'taurus_guard_requests_total{decision="allow"}' => 6,
    'taurus_guard_requests_total{decision="deny"}' => 4,
    'taurus_guard_requests_total{decision="invalid"}' => 3,
    'taurus_guard_requests_total{decision="error"}' => 0,
    'taurus_guard_requests_total{decision="would_deny"}' => 0,
    'taurus_guard_refusals_total{status="403"}' => 4,
    'taurus_guard_refusals_total{status="400"}' => 1,
    'taurus_guard_refusals_total{status="404"}' => 1,
    'taurus_guard_refusals_total{status="405"}' => 1,
    'taurus_guard_upstream_responses_total{code="2xx"}' => 6,
    'taurus_guard_upstream_responses_total{code="5xx"}' => 0,
    'taurus_guard_audit_failures_total' => 0,
);

for my $k (sort keys %want) {
    is($m->{$k}, $want{$k}, "$k = $want{$k}");
}

# a group commit may cover several records: between 1 and 6 flushes,
# 6 records made durable, and every flush in the histogram

my $flushes = $m->{'taurus_guard_audit_flush_seconds_count'};
ok($flushes >= 1 && $flushes <= 6, "1 to 6 flushes ($flushes)");
is($m->{'taurus_guard_audit_flushed_records_total'}, 6,
    'six records made durable');
is($m->{'taurus_guard_audit_flush_seconds_bucket{le="+Inf"}'}, $flushes,
    '+Inf bucket counts every flush');
ok($m->{'taurus_guard_audit_last_flush_timestamp_seconds'} > time - 60,
    'last flush is recent');

# the scrape itself is not a guarded request and is not audited

my @audit = $t->audit_records;
is(scalar(grep { !$_->{project_id} && ($_->{uri} || '') =~ /metrics|health/ }
    @audit), 0, 'no audit record for a scrape');

# health

$r = $t->http("GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n");
is($r->{status}, 200, 'health: 200');
is($r->{body}, '{"status":"ok"}', 'health: ok');

my $nrec = scalar $t->audit_records;
my $nup = scalar $t->upstream_records;

# the audit file goes away: health fails and says which check

rename $t->testdir . '/audit.log', $t->testdir . '/audit.log.gone'
    or die "rename: $!\n";
unlink $t->testdir . '/audit.log.gone';

$r = $t->http("GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n");
is($r->{status}, 503, 'health without its audit file: 503');
my $h = eval { JSON::PP->new->decode($r->{body}) } || {};
is($h->{status}, 'fail', 'health: fail');
my ($check) = grep { /^audit / } keys %{ $h->{checks} || {} };
ok($check && $h->{checks}{$check} eq 'fail', 'health names the audit file')
    or diag($r->{body});

# a batch now fails, and is counted as an error and an audit failure

$t->expect_alert(qr/audit log .* failed/);
is($t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]))->{status}, 503,
    'a batch with the audit file gone: 503');

sleep 1;
($r, $m) = $t->metrics;
ok($m->{'taurus_guard_audit_failures_total'} >= 1, 'audit failure counted');
is($m->{'taurus_guard_audit_failing'}, 1, 'audit failing: 1');
is($m->{'taurus_guard_requests_total{decision="error"}'}, 1,
    'the refused batch is an error');
is($m->{'taurus_guard_refusals_total{status="503"}'}, 1, '503 counted');

# the file is back after a reopen: health is ok again

$t->reopen;
$r = $t->http("GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n");
is($r->{status}, 200, 'health after a reopen: 200');

is(scalar $t->upstream_records, $nup, 'health never reached the upstream');

# a reload keeps the counts

my $allow = $m->{'taurus_guard_requests_total{decision="allow"}'};
$t->reload;
($r, $m) = $t->metrics;
is($m->{'taurus_guard_requests_total{decision="allow"}'}, $allow,
    'reload: counts kept');

is($t->post(upgrade_path(), batch_json([ $INSTANCES[1] ]))->{status}, 200,
    'a batch after the reload');
sleep 1;
($r, $m) = $t->metrics;
is($m->{'taurus_guard_requests_total{decision="allow"}'}, $allow + 1,
    'reload: counting goes on');
is($m->{'taurus_guard_audit_failing'}, 0, 'audit failing: 0 again');

# promtool: the exposition, and the example rules

SKIP: {
    my $promtool = `command -v promtool 2>/dev/null`;
    chomp $promtool;
    skip 'promtool not installed', 2 unless $promtool;

    ($r) = $t->metrics;
    my $f = $t->testdir . '/scrape.txt';
    open my $fh, '>', $f or die "$f: $!\n";
    print $fh $r->{body};
    close $fh;

    my $out = `$promtool check metrics < $f 2>&1`;
    is($?, 0, 'promtool check metrics') or diag($out);

    my $rules = $t->repo . '/examples/prometheus/taurus-guard.rules.yml';
    $out = `$promtool check rules $rules 2>&1`;
    is($?, 0, 'promtool check rules') or diag($out);
}

$t->done_testing;
