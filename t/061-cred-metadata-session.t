#!/usr/bin/perl

# taurus_guard_credentials metadata= session=: the metadata credentials
# asked with a session token, as the SDKs do (PUT
# /meta-data/latest/api/token with X-Metadata-Token-Ttl-Seconds, then
# GET /openstack/latest/securitykey with X-Metadata-Token).  The stand-in
# (t/lib/tg-metadata.pl --session) refuses a GET without a valid session
# token.  One session token serves every fetch until it nears its end;
# a refused one (401) is dropped and a new one fetched; a failing token
# endpoint is 503 with nothing forwarded; workers share one fetch of
# each.  (That no session token, SK or security token leaks is the
# harness's check at finish.)

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-metadata.pl" }

sub conf {
    my (%o) = @_;
    my $ttl = defined $o{ttl} ? " session_ttl=$o{ttl}" : '';
    my $r = defined $o{refresh} ? " refresh=$o{refresh}" : '';
    my $w = $o{workers} || 1;
    return <<"EOF";
worker_processes $w;

http {
    taurus_guard_credentials metadata=/_tg_meta session=/_tg_meta_token$ttl$r;
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

        location = /_tg_meta_token {
            internal;
            proxy_read_timeout 3s;
            proxy_pass http://127.0.0.1:%%PORT_META%%/meta-data/latest/api/token;
        }
    }
}
EOF
}

my $body = batch_json([ $INSTANCES[0] ]);

sub calls { return TaurusGuard::Metadata::meta_calls(@_) }
sub sessions { return TaurusGuard::Metadata::meta_sessions(@_) }
sub access_of { return TaurusGuard::Metadata::access_of(@_) }


# The calls since the $from-th, as "METHOD:status".

sub call_list {
    my ($t, $from) = @_;
    my @c = calls($t);
    return join ' ', map { ($_->{method} || '?') . ':' . ($_->{status} || '?') }
        @c[$from .. $#c];
}


# An allowed request: 200, forwarded, the signature verifies with a
# temporary key the service issued.  Returns the AK.

sub served {
    my ($t, $name) = @_;

    my $n = scalar $t->upstream_records;
    my $r = $t->post(upgrade_path(), $body);
    is($r->{status}, 200, "$name: 200") or diag($r->{raw});

    my @up = $t->upstream_records;
    is(scalar @up, $n + 1, "$name: forwarded");
    my $u = $up[-1] || {};
    is($u->{signature}{ok}, 1, "$name: the signature verifies")
        or diag($u->{signature}{error} || 'no record');

    return access_of($u) || 'none';
}


# ---- nginx -t ----------------------------------------------------------

{
    my $t = Test::TaurusGuard->new;

    my ($rc, $out) = $t->nginx_t(conf(ttl => '1h'), 'session.conf');
    is($rc, 0, 'nginx -t: session= and session_ttl= pass') or diag($out);

    ($rc, $out) = $t->nginx_t(conf(ttl => '7h'), 'session-ttl.conf');
    isnt($rc, 0, 'nginx -t: session_ttl above 6h fails');
    like($out, qr/invalid "session_ttl=7h": 2s to 6h expected in \S+:\d+/,
        'nginx -t: says the range, with file and line');

    ($rc, $out) = $t->nginx_t(conf(ttl => '1'), 'session-ttl1.conf');
    isnt($rc, 0, 'nginx -t: session_ttl below 2s fails');

    (my $c = conf(ttl => '1h')) =~ s{ session=/_tg_meta_token}{};
    ($rc, $out) = $t->nginx_t($c, 'session-ttl-alone.conf');
    isnt($rc, 0, 'nginx -t: session_ttl= without session= fails');
    like($out, qr/"session_ttl=" needs "session="/,
        'nginx -t: says session_ttl= needs session=');

    ($c = conf()) =~ s{session=/_tg_meta_token}{session=_tg_meta_token};
    ($rc, $out) = $t->nginx_t($c, 'session-uri.conf');
    isnt($rc, 0, 'nginx -t: session= without a leading / fails');
    like($out, qr/"session=" takes the URI of an internal location/,
        'nginx -t: says what session= takes');

    $t->finish;
}


# ---- a session token first, then the credentials -----------------------

my $t = Test::TaurusGuard->new;

TaurusGuard::Metadata::start_meta($t, session => 1, delay => 300);
TaurusGuard::Metadata::upstream_keys($t);
$t->run(conf(ttl => '1h', workers => 4));

my @r = $t->concurrent_posts(upgrade_path(), $body, 16);
is(scalar(grep { $_->[0] eq '200' } @r), 16,
    '16 concurrent first requests: all 200') or diag(explain(\@r));
my @w = $t->workers_of(map { $_->[2] } @r);
cmp_ok(scalar @w, '>', 1, 'served by more than one worker');

is(call_list($t, 0), 'PUT:200 GET:200',
    '16 concurrent requests in 4 workers: one session token, one fetch '
    . 'of the credentials');

my @calls = calls($t);
my ($put, $get) = map { $_ || {} } @calls[0, 1];
my ($s1) = sessions($t);
$s1 ||= [ '' ];
is($put->{target}, '/meta-data/latest/api/token', 'PUT: the token path');
is($put->{ttl}, '3600', 'PUT: X-Metadata-Token-Ttl-Seconds is '
    . 'session_ttl');
is($get->{session}, $s1->[0], 'GET: X-Metadata-Token is the session token');
is($get->{target}, '/openstack/latest/securitykey', 'GET: securitykey');

my %aks = map { (access_of($_) || 'none') => 1 } $t->upstream_records;
is(join(',', keys %aks), $get->{access} || 'none',
    'every request signed with the temporary AK fetched');
is(scalar(grep { !$_->{signature}{ok} } $t->upstream_records), 0,
    'every signature verifies upstream');

served($t, 'cached');
is(scalar(calls($t)), 2, 'cached: no other call');

$t->finish;


# ---- renewal: short credentials, a short session ------------------------
#
# The credentials live 4 s (refresh=3s: renewed beside a request in
# their last 3 s, unusable in their last second), the session token 6 s
# (unusable in its last second; a quarter of 6 s is 1 s in whole
# seconds, so it is not renewed ahead, but fetched again by the
# credentials fetch that finds it unusable: t/093).  Requests
# every 0.3 s for 14 s: none may fail, every GET must carry a session
# token the service still honours (it answers 401 otherwise), and more
# than one session token is used.  (With refresh=2s no renewal ran
# beside: ngx_time() counts whole seconds, so "within 2 s of the end"
# and "more than the 1 s margin left" never met, and a batch whose
# flush took its credentials into their last second found none to be
# signed again with: 503.)

my $t2 = Test::TaurusGuard->new;
TaurusGuard::Metadata::start_meta($t2, session => 1, ttl => 4);
TaurusGuard::Metadata::upstream_keys($t2);
$t2->run(conf(ttl => '6s', refresh => '3s'));

my ($ok, $n) = (0, 0);
my $until = now() + 14;
while (now() < $until) {
    my $r = $t2->post(upgrade_path(), $body);
    $n++;
    $ok++ if ($r->{status} || 0) == 200;
    sleep 0.3;
}
is($ok, $n, "$n requests over 14 s: all 200");

my @gets = grep { $_->{method} eq 'GET' } calls($t2);
my @puts = grep { $_->{method} eq 'PUT' } calls($t2);
cmp_ok(scalar @gets, '>=', 3, 'the credentials were fetched again ('
    . scalar(@gets) . ' times)');
is(scalar(grep { $_->{status} != 200 } @gets), 0,
    'every credentials fetch carried a session token still valid');
cmp_ok(scalar @puts, '>=', 2, 'the session token was renewed ('
    . scalar(@puts) . ' in all)');
cmp_ok(scalar @puts, '<', scalar @gets, 'fewer session tokens than '
    . 'credentials fetches: one session serves several');
is(scalar(grep { !$_->{signature}{ok} } $t2->upstream_records), 0,
    'every signature verifies upstream');

$t2->finish;


# ---- the token endpoint failing: 503, nothing forwarded -----------------

my $t3 = Test::TaurusGuard->new;
TaurusGuard::Metadata::start_meta($t3, session => 1, session_status => 500);
TaurusGuard::Metadata::upstream_keys($t3);
$t3->run(conf(refresh => '3s'));

my $r = $t3->post(upgrade_path(), $body);
my $j = $t3->is_refusal($r, 503, 'TG.0503', 'session endpoint failing');
is($j->{error_msg}, 'no usable credentials', 'session failing: why');
is(scalar $t3->upstream_records, 0, 'session failing: nothing forwarded');
is(call_list($t3, 0), 'PUT:500', 'session failing: one PUT, no GET');
my @a = $t3->wait_audit($j->{audit_id} || 'none', 1);
is(($a[0] || {})->{decision}, 'error', 'session failing: an error record');
my $nf = 'metadata session token not fetched: '
    . 'the metadata service did not answer 200';
ok(scalar(grep { index($_, $nf) >= 0 } split /\n/, $t3->error_log),
    'error.log: the session token was not fetched');

# the service comes back, slow, its credentials living 3 s: served

TaurusGuard::Metadata::start_meta($t3, session => 1, ttl => 3, delay => 300);
served($t3, 'session endpoint back');
is(call_list($t3, 1), 'PUT:200 GET:200', 'back: a session, then the '
    . 'credentials');

# the session token revoked (it would live 6 h): once the credentials
# expire, their fetch is refused (401), the session token dropped, a new
# one fetched, and the batches still served, those that waited for the
# refused fetch too

my $s = (sessions($t3))[-1] || [ '' ];
TaurusGuard::Metadata::revoke_session($t3, $s->[0]);
my $from = scalar calls($t3);
sleep 3.2;

my @res = $t3->concurrent_posts(upgrade_path(), $body, 8);
is(scalar(grep { $_->[0] eq '200' } @res), 8,
    'session revoked, credentials expired, 8 concurrent requests: all 200')
    or diag(join "\n", map { "@$_" } @res);
is(call_list($t3, $from), 'GET:401 PUT:200 GET:200',
    'session revoked: refused, a new session token, the credentials, '
    . 'once each');
my $refused = 'metadata credentials: the X-Metadata-Token it was asked '
    . 'with was refused (401)';
ok(scalar(grep { index($_, $refused) >= 0 } split /\n/, $t3->error_log),
    'error.log: the refused session token');

$t3->finish;

$t->done_testing;
