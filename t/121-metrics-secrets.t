#!/usr/bin/perl

# The secrets as the metrics and the health location see them.  Metadata
# credentials (t/lib/tg-metadata.pl): the expiry gauge within a second of
# what the service issued, the last refresh, exact fetch failures while
# the service fails, health 503 once the credentials have expired and
# the fetch failed, 200 again once a fetch works.  IAM tokens
# (t/lib/tg-iam.pl): exact failures by source, a failing check named by
# its project, a failing user token failing the agency's check.  Files: a credentials file gone at run time keeps its
# last good version (health stays ok, the failed re-read is counted); a
# token file gone before the worker ever read it is unusable (503).
# promtool checks a scrape holding every kind of series.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

BEGIN {
    require "$FindBin::Bin/lib/tg-metadata.pl";
    require "$FindBin::Bin/lib/tg-iam.pl";
}

my $body = batch_json([ $INSTANCES[0] ]);

sub health {
    my ($t) = @_;
    my $r = $t->http("GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n");
    my $j = eval { JSON::PP->new->decode($r->{body}) } || {};
    return ($r->{status}, $j, $r->{body});
}


# ---- metadata credentials, and the files beside them --------------------

my $t = Test::TaurusGuard->new;

TaurusGuard::Metadata::upstream_keys($t);
TaurusGuard::Metadata::start_meta($t, ttl => 12);
$t->write_credentials;
$t->write_token;
$t->write_secret_file("tokens/$PROJECT.token", "TOKEN-OF-THE-PROJECT\n");

my $d = $t->testdir;

$t->run(<<"CONF");
worker_processes 1;

http {
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_credentials metadata=/_tg_meta refresh=8s;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location /files/v3/ {
            taurus_guard on;
            taurus_guard_credentials %%TESTDIR%%/credentials;
            taurus_guard_token file=%%TESTDIR%%/token;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_meta {
            internal;
            proxy_read_timeout 3s;
            proxy_pass http://127.0.0.1:%%PORT_META%%/openstack/latest/securitykey;
        }

        location = /metrics {
            taurus_guard_metrics;
        }

        location = /health {
            taurus_guard_health;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name pp;

        location /v3/ {
            taurus_guard on;
            taurus_guard_token
                file=%%TESTDIR%%/tokens/\$taurus_guard_project.token;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
CONF

my $cf = "credentials_file $d/credentials";
my $tf = "token_file $d/token";

# the token file gone before the worker ever read it: nothing usable

$t->expect_alert(qr/token" cannot be opened, requests are refused/);
unlink "$d/token" or die "unlink: $!\n";
my ($st, $h, $raw) = health($t);
is($st, 503, 'token file gone, never read: health 503');
is(($h->{checks} || {})->{$tf}, 'fail', 'health names the token file')
    or diag($raw);
is(($h->{checks} || {})->{$cf}, 'ok', 'the credentials file ok');
is(($h->{checks} || {})->{metadata}, 'ok', 'metadata ok: nothing fetched yet');

$t->write_token;
sleep 1.1;
($st, undef, $raw) = health($t);
is($st, 200, 'token file back: health 200') or diag($raw);

# nothing fetched yet: the source is ok, the next request fetches

($st, $h, $raw) = health($t);
is($st, 200, 'nothing fetched yet: health 200') or diag($raw);

my ($r, $m) = $t->metrics;
is($m->{'taurus_guard_fetch_failures_total{source="metadata"}'}, 0,
    'no fetch yet: no failure');
ok(!exists $m->{'taurus_guard_credential_expiry_seconds{source="metadata"}'},
    'no fetch yet: no expiry');
is($m->{"taurus_guard_credential_usable{source=\"credentials_file\","
    . "path=\"$d/credentials\"}"}, 1, 'credentials file: usable');
is($m->{"taurus_guard_credential_usable{source=\"token_file\","
    . "path=\"$d/token\"}"}, 1, 'token file: usable');

# one fetch: the gauges say what the service issued

is($t->post(upgrade_path(), $body)->{status}, 200, 'a batch: 200');
my ($call) = grep { $_->{ok} } TaurusGuard::Metadata::meta_calls($t);
$call ||= { expires => 0 };

($r, $m) = $t->metrics;
my $now = time;
my $exp = $m->{'taurus_guard_credential_expiry_seconds{source="metadata"}'};
ok(defined $exp && abs($exp - ($call->{expires} - $now)) <= 1,
    'expiry within a second of what the service issued ('
    . ($exp // 'none') . ' vs ' . sprintf('%.1f', $call->{expires} - $now)
    . ')');
my $last = $m->{'taurus_guard_credential_last_refresh_timestamp_seconds'
    . '{source="metadata"}'};
ok(defined $last && abs($last - $now) <= 2, 'last refresh: now');
is($m->{'taurus_guard_credential_usable{source="metadata"}'}, 1,
    'metadata: usable');

($st, $h) = health($t);
is($st, 200, 'credentials in hand: health 200');

# the service fails; nothing is asked while the credentials are valid

TaurusGuard::Metadata::start_meta($t, ttl => 12, status => 500);

# past the end (12 s, a 2 s margin): one batch, one failed fetch

my $end = $call->{expires} - 2;
sleep($end - time + 0.5) if $end + 0.5 > time;

($st, $h) = health($t);
is($st, 200, 'expired, the last fetch did not fail: health 200')
    or diag(explain($h));

is($t->post(upgrade_path(), $body)->{status}, 503,
    'expired, the service failing: 503');

($r, $m) = $t->metrics;
is($m->{'taurus_guard_fetch_failures_total{source="metadata"}'}, 1,
    'one failed fetch counted');
is($m->{'taurus_guard_credential_usable{source="metadata"}'}, 0,
    'metadata: not usable');

($st, $h, $raw) = health($t);
is($st, 503, 'expired and the fetch failed: health 503');
is($h->{status}, 'fail', 'health: fail');
is(($h->{checks} || {})->{metadata}, 'fail', 'health names metadata')
    or diag($raw);
is(($h->{checks} || {})->{$cf}, 'ok', 'health: the credentials file ok');

is($t->post(upgrade_path(), $body)->{status}, 503, 'again: 503');
($r, $m) = $t->metrics;
is($m->{'taurus_guard_fetch_failures_total{source="metadata"}'}, 2,
    'two failed fetches counted');
is($m->{'taurus_guard_fetch_failures_total{source="iam"}'}, 0,
    'no IAM failure');

# the service back: the next batch fetches, health is ok again

TaurusGuard::Metadata::start_meta($t, ttl => 12);
($st) = health($t);
is($st, 503, 'service back, nothing fetched yet: still 503');
is($t->post(upgrade_path(), $body)->{status}, 200, 'service back: 200');
($st, $h, $raw) = health($t);
is($st, 200, 'service back, fetched: health 200') or diag($raw);
($r, $m) = $t->metrics;
is($m->{'taurus_guard_credential_usable{source="metadata"}'}, 1,
    'metadata: usable again');
is($m->{'taurus_guard_fetch_failures_total{source="metadata"}'}, 2,
    'failures: still two');

# a credentials file gone at run time keeps its last good version: ok

$t->expect_alert(qr/credentials" cannot be opened, the previous/);
rename "$d/credentials", "$d/credentials.gone" or die "rename: $!\n";
sleep 1.1;
($st, $h, $raw) = health($t);
is($st, 200, 'credentials file gone: health still 200') or diag($raw);
is(($h->{checks} || {})->{$cf}, undef, 'an ok health lists nothing');
($r, $m) = $t->metrics;
is($m->{"taurus_guard_credential_usable{source=\"credentials_file\","
    . "path=\"$d/credentials\"}"}, 1, 'credentials file gone: still usable');
ok($m->{'taurus_guard_fetch_failures_total{source="credentials_file"}'} >= 1,
    'the failed re-read counted');

rename "$d/credentials.gone", "$d/credentials" or die "rename: $!\n";

# a token file per project: checked once the worker has had a request
# for the project, and kept when it goes away

my $pf = "token_file $d/tokens/$PROJECT.token";
$r = $t->post(upgrade_path(), $body, host => 'pp');
ok(defined $r->{status}, 'a batch with a per-project token: answered');
($r, $m) = $t->metrics;
is($m->{"taurus_guard_credential_usable{source=\"token_file\","
    . "path=\"$d/tokens/$PROJECT.token\"}"}, 1,
    'per-project token file: usable');
unlink "$d/tokens/$PROJECT.token" or die "unlink: $!\n";
sleep 1.1;
($st, $h, $raw) = health($t);
is($st, 200, 'per-project token file gone: health still 200') or diag($raw);
($r, $m) = $t->metrics;
is($m->{"taurus_guard_credential_usable{source=\"token_file\","
    . "path=\"$d/tokens/$PROJECT.token\"}"}, 1,
    'per-project token file gone: its last good token kept');

# promtool on a scrape with every kind of series

SKIP: {
    my $promtool = `command -v promtool 2>/dev/null`;
    chomp $promtool;
    skip 'promtool not installed', 2 unless $promtool;

    ($r) = $t->metrics;
    my $f = "$d/scrape.txt";
    open my $fh, '>', $f or die "$f: $!\n";
    print $fh $r->{body};
    close $fh;

    my $out = `$promtool check metrics < $f 2>&1`;
    is($?, 0, 'promtool check metrics') or diag($out);

    my $rules = $t->repo . '/examples/prometheus/taurus-guard.rules.yml';
    $out = `$promtool check rules $rules 2>&1`;
    is($?, 0, 'promtool check rules') or diag($out);
}

$t->finish;


# ---- agency tokens: the user's token, then one per project --------------

my $t2 = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t2);
TaurusGuard::IAM::upstream_tokens($t2);
TaurusGuard::IAM::start_iam($t2, agency => 1, status => 500);

$t2->run(<<"CONF");
worker_processes 2;

http {
    taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini
        agency=$TaurusGuard::IAM::AGENCY
        agency_domain=$TaurusGuard::IAM::AGENCY_DOMAIN;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
        %%PROJECT2%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_iam {
            internal;
            proxy_read_timeout 3s;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
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

($st, $h, $raw) = health($t2);
is($st, 200, 'agency, nothing fetched yet: health 200') or diag($raw);

# IAM failing: the user's token cannot be had, the agency's is not asked

is($t2->post(upgrade_path(), $body)->{status}, 503, 'IAM failing: 503');

($r, $m) = $t2->metrics;
is($m->{'taurus_guard_fetch_failures_total{source="iam_user"}'}, 1,
    'IAM failing: one user token fetch failed');
is($m->{'taurus_guard_fetch_failures_total{source="iam"}'}, 0,
    'IAM failing: no agency token asked');

($st, $h, $raw) = health($t2);
is($st, 503, 'IAM failing: health 503');
is(($h->{checks} || {})->{iam}, 'fail', 'health: iam fails (its base)')
    or diag($raw);

# IAM back: both tokens fetched, their expiry as IAM issued them

TaurusGuard::IAM::start_iam($t2, agency => 1);
is($t2->post(upgrade_path(), $body)->{status}, 200, 'IAM back: 200');

my ($tok) = grep { $_->[1] eq $PROJECT } TaurusGuard::IAM::iam_tokens($t2);
my ($utok) = TaurusGuard::IAM::iam_user_tokens($t2);
$tok ||= [ '', '', 0 ];
$utok ||= [ '', 0 ];

($r, $m) = $t2->metrics;
$now = time;
$exp = $m->{'taurus_guard_credential_expiry_seconds'
    . "{source=\"iam\",project=\"$PROJECT\"}"};
ok(defined $exp && abs($exp - ($tok->[2] - $now)) <= 1,
    'agency token: expiry within a second of what IAM issued ('
    . ($exp // 'none') . ')');
$exp = $m->{'taurus_guard_credential_expiry_seconds{source="iam_user"}'};
ok(defined $exp && abs($exp - ($utok->[1] - $now)) <= 1,
    'user token: expiry within a second of what IAM issued ('
    . ($exp // 'none') . ')');
is($m->{"taurus_guard_credential_usable{source=\"iam\",project=\"$PROJECT\"}"},
    1, 'agency token: usable');
ok(!grep({ /project="$PROJECT2"/ } keys %$m), 'no series for a project '
    . 'nothing was fetched for');

($st, undef, $raw) = health($t2);
is($st, 200, 'IAM back: health 200') or diag($raw);

# IAM failing again: the user's token is in hand, the second project's
# agency token fails, the first project's is still valid

TaurusGuard::IAM::start_iam($t2, agency => 1, status => 500);
is($t2->post(upgrade_path($PROJECT2), $body)->{status}, 503,
    'second project, IAM failing: 503');
is($t2->post(upgrade_path(), $body)->{status}, 200,
    'first project: still served');

($r, $m) = $t2->metrics;
is($m->{'taurus_guard_fetch_failures_total{source="iam"}'}, 1,
    'one agency token fetch failed');
is($m->{'taurus_guard_fetch_failures_total{source="iam_user"}'}, 1,
    'user token failures: still one');
is($m->{"taurus_guard_credential_usable{source=\"iam\","
    . "project=\"$PROJECT2\"}"}, 0, 'second project: not usable');

($st, $h, $raw) = health($t2);
is($st, 503, 'second project failing: health 503');
is(($h->{checks} || {})->{"iam $PROJECT2"}, 'fail',
    'health names the failing project') or diag($raw);
is(($h->{checks} || {})->{"iam $PROJECT"}, 'ok',
    'and the first project ok');

SKIP: {
    my $promtool = `command -v promtool 2>/dev/null`;
    chomp $promtool;
    skip 'promtool not installed', 1 unless $promtool;

    ($r) = $t2->metrics;
    my $f = $t2->testdir . '/scrape.txt';
    open my $fh, '>', $f or die "$f: $!\n";
    print $fh $r->{body};
    close $fh;

    my $out = `$promtool check metrics < $f 2>&1`;
    is($?, 0, 'promtool check metrics, with tokens') or diag($out);
}

$t->done_testing;
