#!/usr/bin/perl

# taurus_guard_credentials metadata=: the temporary AK/SK and security
# token of the ECS metadata service (t/lib/tg-metadata.pl, which issues a
# new short-lived credential at each call).  The batches go out signed
# with the temporary AK, X-Security-Token sent and signed, and the
# upstream (tg-upstream.pl --keys) verifies them with the SK issued for
# that AK and checks the token.  One fetch serves many requests and all
# workers; with the service down and nothing valid, 503 and nothing
# forwarded; credentials are renewed ahead of expiry and never used
# after it; no secret in error.log, the responses or the audit log.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-metadata.pl" }

sub conf {
    my ($refresh) = @_;
    my $r = defined $refresh ? " refresh=$refresh" : '';
    return <<"EOF";
worker_processes 4;

http {
    taurus_guard_credentials metadata=/_tg_meta$r;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    log_format pids '\$pid \$status \$taurus_guard_id';

    server {
        listen 127.0.0.1:%%PORT_0%% reuseport;
        server_name localhost;

        access_log %%TESTDIR%%/logs/pids.log pids;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_meta {
            internal;
            proxy_read_timeout 3s;
            proxy_pass http://127.0.0.1:%%PORT_META%%/openstack/latest/securitykey;
        }
    }
}
EOF
}

my $body = batch_json([ $INSTANCES[0] ]);

sub calls { return TaurusGuard::Metadata::meta_calls(@_) }
sub access_of { return TaurusGuard::Metadata::access_of(@_) }


# An allowed request: 200, forwarded once more, signed with a temporary
# AK the service issued, verified upstream with its SK and security
# token.  Returns the AK used.

sub served {
    my ($t, $name, %o) = @_;

    my $n = scalar $t->upstream_records;
    my $r = $t->post(upgrade_path(), $body, %o);
    is($r->{status}, 200, "$name: 200") or diag($r->{raw});

    my @up = $t->upstream_records;
    is(scalar @up, $n + 1, "$name: forwarded");
    my $u = $up[-1] || {};
    is($u->{signature}{ok}, 1, "$name: the signature verifies with the "
        . "temporary SK and security token")
        or diag($u->{signature}{error} || 'no record');

    my $ak = access_of($u) || 'none';
    my %issued = map { $_->[0] => $_ } TaurusGuard::Metadata::meta_keys($t);
    ok($issued{$ak}, "$name: signed with an AK the service issued ($ak)");
    is(join('|', headers_named($u->{headers}, 'X-Security-Token')),
        ($issued{$ak} || [])->[2] || 'none',
        "$name: X-Security-Token is the one issued with it");
    like(join('|', headers_named($u->{headers}, 'Authorization')),
        qr/SignedHeaders=[^,]*\bx-security-token\b/,
        "$name: X-Security-Token signed");

    return $ak;
}



# No secret the service issued in error.log (but for nginx's own dump of
# the upstream request headers, which README warns about), in the
# responses or in the audit log; nor a 12-character piece of one.

sub no_secrets {
    my ($t, $name) = @_;

    my @secrets = map { ([ SK => $_->[1] ], [ 'security token' => $_->[2] ]) }
        TaurusGuard::Metadata::meta_keys($t);
    ok(@secrets >= 2, "$name: credentials were issued");

    my @log = split /\n/, $t->error_log_without_proxy_dumps;
    my $responses = join "\n", @{ $t->{responses} };
    my $audit = $t->read_file('audit.log') || '';

    my @found;
    for my $s (@secrets) {
        my ($what, $v) = @$s;
        for my $piece ($v, substr($v, 0, 12), substr($v, -12)) {
            push @found, grep { index($_, $piece) >= 0 } @log;
            push @found, "response: $what" if index($responses, $piece) >= 0;
            push @found, "audit: $what" if index($audit, $piece) >= 0;
        }
    }
    is(scalar @found, 0, "$name: no secret or piece of one in error.log, "
        . "responses or audit log")
        or diag(join "\n", map { substr $_, 0, 200 } @found[0 .. 5]);

    # the module's own lines: not even in nginx's header dumps
    my @own = grep { /taurus_guard/ } split /\n/, $t->error_log;
    ok(@own > 0, "$name: the module logged");
    my @bad = grep {
        my $l = $_;
        grep { index($l, $_->[1]) >= 0 } @secrets
    } @own;
    is(scalar @bad, 0, "$name: no secret in any line naming taurus_guard");
}



# ---- one fetch, shared by requests and workers --------------------------

my $t = Test::TaurusGuard->new;

TaurusGuard::Metadata::start_meta($t, ttl => 86400, delay => 700);
TaurusGuard::Metadata::upstream_keys($t);
$t->run(conf());

my @r = $t->concurrent_posts(upgrade_path(), $body, 12);
is(scalar(grep { $_->[0] eq '200' } @r), 12,
    '12 concurrent first requests: all 200') or diag(explain(\@r));

my @calls = calls($t);
is(scalar @calls, 1, '12 concurrent first requests: one metadata call')
    or diag(explain([ map { $_->{time} } @calls ]));

my $c = $calls[0] || {};
is($c->{method}, 'GET', 'metadata call: GET');
is($c->{target}, '/openstack/latest/securitykey', 'metadata call: the '
    . 'securitykey path');
is($c->{ok}, 1, 'metadata call: credentials issued');

my @up = $t->upstream_records;
is(scalar @up, 12, 'all 12 forwarded');
is(scalar(grep { $_->{signature}{ok} } @up), 12, 'all 12 verify upstream')
    or diag(explain([ map { $_->{signature}{error} } @up ]));
my %aks = map { (access_of($_) || 'none') => 1 } @up;
is(join(',', keys %aks), $c->{access} || 'none',
    'all 12 signed with the one temporary AK issued');

sleep 0.2;
my @w = $t->workers_of(map { $_->[2] } @r);
cmp_ok(scalar @w, '>', 1, 'the requests were spread over several workers ('
    . scalar(@w) . ')');

# later requests use the cached credentials; the caller's headers never
# reach the metadata service

for my $i (1 .. 5) {
    my $ak = served($t, "cached request $i", headers => [
        [ 'X-Caller-Probe', 'caller-header-value' ],
        [ 'Authorization', 'Basic Y2FsbGVyOnNlY3JldA==' ],
        [ 'X-Security-Token', 'caller-token' ] ]);
    is($ak, $c->{access} || 'none', "cached request $i: the same AK");
}
@r = $t->concurrent_posts(upgrade_path(), $body, 8);
is(scalar(grep { $_->[0] eq '200' } @r), 8, '8 more concurrent: all 200');
is(scalar(calls($t)), 1, '25 requests, 4 workers: one metadata call');

ok(!grep({ /probe|authorization|cookie|security-token/i }
    @{ $c->{headers} || [] }), 'the metadata call carries none of the '
    . 'caller\'s headers') or diag(explain($c->{headers}));

# audit: allow records for every request

my @a = grep { ($_->{decision} || '') eq 'allow' } $t->audit_records;
is(scalar @a, 25, 'one allow record per request');

# nginx -T: no secret (none is in the configuration)

my $dump = $t->_cmd($t->{nginx}, '-T', '-p', $t->testdir . '/', '-e',
    'logs/nginx-t.log', '-c', 'conf/nginx.conf');
like($dump, qr/metadata=\/_tg_meta/, 'nginx -T prints the configuration');
my ($key) = TaurusGuard::Metadata::meta_keys($t);
ok(index($dump, ($key || [])->[1] || 'none') < 0, 'nginx -T: no SK');

$t->stop;
no_secrets($t, 'shared fetch');
$t->finish;


# ---- down, renewal ahead of expiry, expiry, back ------------------------
#
# Credentials live 12 s, refresh=8s: fresh for 4 s, then the first
# request starts a background renewal and is served with the current
# ones; unusable within margin = min(30 s, refresh/4) = 2 s of their end.

my $t2 = Test::TaurusGuard->new;

TaurusGuard::Metadata::upstream_keys($t2);

# the harness waits for every port of the test to listen: the service
# runs while nginx starts, then goes down before any request

TaurusGuard::Metadata::start_meta($t2, ttl => 12);
$t2->run(conf('8s'));
TaurusGuard::Metadata::stop_meta($t2);

# the service down and nothing in hand: refused, nothing forwarded

my $r = $t2->post(upgrade_path(), $body);
my $j = $t2->is_refusal($r, 503, 'TG.0503', 'metadata down, nothing valid');
is($j->{error_msg}, 'no usable credentials', 'metadata down: error_msg');
is(scalar $t2->upstream_records, 0, 'metadata down: nothing forwarded');
@a = $t2->wait_audit($j->{audit_id} || 'none', 1);
is(join(',', map { $_->{decision} || '?' } @a), 'error',
    'metadata down: one error record, no allow');
is(($a[0] || {})->{reason}, 'no usable credentials',
    'metadata down: audit reason');
like($t2->error_log, qr/taurus_guard: metadata credentials not fetched/,
    'metadata down: error.log says the fetch failed');

# a service answering 500: the same

TaurusGuard::Metadata::start_meta($t2, ttl => 12, status => 500);
$r = $t2->post(upgrade_path(), $body);
$j = $t2->is_refusal($r, 503, 'TG.0503', 'metadata failing');
is($j->{error_msg}, 'no usable credentials', 'metadata failing: error_msg');
is(scalar $t2->upstream_records, 0, 'metadata failing: nothing forwarded');
is(scalar(calls($t2)), 1, 'metadata failing: it was asked');

# the service back: fetched and served

TaurusGuard::Metadata::start_meta($t2, ttl => 12);

my $ak1 = served($t2, 'metadata back');
@calls = grep { $_->{ok} } calls($t2);
is(scalar @calls, 1, 'metadata back: one fetch');
my $first = $calls[0] || { expires => time + 12 };
is($ak1, $first->{access} || '', 'metadata back: the AK issued');
my $issued_at = $first->{expires} - 12;

sleep($issued_at + 2 - time) if $issued_at + 2 > time;
is(served($t2, 'fresh'), $ak1, 'fresh: the same AK');
is(scalar(grep { $_->{ok} } calls($t2)), 1, 'fresh: no fetch');

# in the refresh window: served with the current AK, one background fetch

sleep($issued_at + 5 - time) if $issued_at + 5 > time;
is(served($t2, 'refresh window'), $ak1, 'refresh window: the current AK');

my $end = now() + 3;
sleep 0.1 while grep({ $_->{ok} } calls($t2)) < 2 && now() < $end;
@calls = grep { $_->{ok} } calls($t2);
is(scalar @calls, 2, 'refresh window: one background fetch');
my $second = $calls[1] || { expires => time + 12, access => 'none' };

sleep 0.3;
my $ak2 = served($t2, 'after the renewal');
is($ak2, $second->{access}, 'after the renewal: the new AK');
isnt($ak2, $ak1, 'after the renewal: not the old one');
served($t2, 'after the renewal, again');
is(scalar(grep { $_->{ok} } calls($t2)), 2, 'after the renewal: no fetch');

# the service down while the credentials are valid: served with them,
# in their refresh window too

TaurusGuard::Metadata::stop_meta($t2);

is(served($t2, 'down, valid'), $ak2, 'down, valid: the cached AK');

my $window = $second->{expires} - 12 + 5;
sleep($window - time) if $window > time;
for my $i (1 .. 2) {
    is(served($t2, "down, refresh window $i"), $ak2,
        "down, refresh window $i: the cached AK");
    sleep 1;
}

# past the margin (2 s before the end): refused, nothing forwarded

my $late = $second->{expires} - 1.5;
sleep($late - time) if $late > time;

my $n = scalar $t2->upstream_records;
$r = $t2->post(upgrade_path(), $body);
$j = $t2->is_refusal($r, 503, 'TG.0503', 'expired, metadata down');
is($j->{error_msg}, 'no usable credentials', 'expired: error_msg');
is(scalar $t2->upstream_records, $n, 'expired: nothing forwarded');
@a = $t2->wait_audit($j->{audit_id} || 'none', 1);
is(join(',', map { $_->{decision} || '?' } @a), 'error',
    'expired: one error record');

# back again: a new credential

TaurusGuard::Metadata::start_meta($t2, ttl => 12);
my $ak3 = served($t2, 'metadata back again');
@calls = grep { $_->{ok} } calls($t2);
is($ak3, ($calls[-1] || {})->{access}, 'back again: the new AK');
ok($ak3 ne $ak1 && $ak3 ne $ak2, 'back again: not an old one');

# no request went out with credentials past their expiry

my %expires = map { ($_->{access} || '') => $_->{expires} } calls($t2);
my @stale = grep {
    my $e = $expires{ access_of($_) || '' };
    !defined $e || _epoch($_->{time}) >= $e
} $t2->upstream_records;
is(scalar @stale, 0, 'no request forwarded with expired credentials')
    or diag(explain([ map { $_->{time} } @stale ]));
is(scalar(grep { !$_->{signature}{ok} } $t2->upstream_records), 0,
    'every forwarded request verified upstream');

$t2->stop;
no_secrets($t2, 'renewal');
$t2->finish;

$t->done_testing;


# the upstream's record time (RFC 3339 UTC, milliseconds) as epoch

sub _epoch {
    my ($s) = @_;
    my ($y, $mo, $d, $h, $mi, $sec) =
        $s =~ /\A(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d(?:\.\d+)?)Z\z/
        or return 0;
    require Time::Local;
    return Time::Local::timegm(0, $mi, $h, $d, $mo - 1, $y) + $sec;
}
