#!/usr/bin/perl

# taurus_guard_token iam=: the module fetches a project-scoped token from
# IAM (t/lib/tg-iam.pl) through an internal location, caches it per
# project, refreshes it ahead of expiry, keeps serving with it while IAM
# is down, refuses (503) once it expired, and fetches again when IAM is
# back.  The upstream (tg-upstream.pl --tokens) accepts only the tokens
# the IAM issued, for their own project, before they expire.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-iam.pl" }

sub conf {
    my ($refresh) = @_;
    my $r = defined $refresh ? " refresh=$refresh" : '';
    return <<"EOF";
http {
    taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini$r;
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
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }
    }
}
EOF
}

my $body = batch_json([ $INSTANCES[0] ]);

my $t = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t);
TaurusGuard::IAM::iam_supported($t, conf()) or do {
    $t->done_testing;
    exit;
};

sub sent { my @s = TaurusGuard::IAM::sent_tokens(@_); return join '|', @s }
sub calls { return TaurusGuard::IAM::iam_calls(@_) }
sub issued { return TaurusGuard::IAM::iam_tokens(@_) }


# An allowed request: 200, forwarded once more with one token the IAM
# issued for this project, an allow and a done record.  Returns the
# token the upstream got.

sub served {
    my ($t, $project, $name) = @_;

    my $n = scalar $t->upstream_records;
    my $r = $t->post(upgrade_path($project), $body);
    is($r->{status}, 200, "$name: 200") or diag($r->{raw});

    my @up = $t->upstream_records;
    is(scalar @up, $n + 1, "$name: forwarded");
    my $u = $up[-1] || {};
    is($u->{token_ok}, 1, "$name: the upstream accepts the token")
        or diag("token_error: " . ($u->{token_error} || ''));
    is(scalar(TaurusGuard::IAM::sent_tokens($u)), 1,
        "$name: one X-Auth-Token");
    is(join('|', headers_named($u->{headers}, 'X-Project-Id')), $project,
        "$name: X-Project-Id");

    my $id = header($r, 'X-Taurus-Guard-Id') || 'none';
    my @a = $t->wait_audit($id, 2);
    is(join(',', map { $_->{decision} || '?' } @a), 'allow,done',
        "$name: allow and done records");

    return sent($u);
}


# ---- fetched once, cached per project ----------------------------------

TaurusGuard::IAM::start_iam($t, ttl => 86400);
TaurusGuard::IAM::upstream_tokens($t);
$t->run(conf());

my $tok1 = served($t, $PROJECT, 'first request');

my @calls = calls($t);
is(scalar @calls, 1, 'first request: one IAM call');
my $c = $calls[0] || {};
is($c->{ok}, 1, 'first request: IAM issued a token')
    or diag(explain($c));
is($c->{project}, $PROJECT, 'first request: scoped to the request\'s '
    . 'project');
is($c->{user}, $TaurusGuard::IAM::USER, 'IAM call: the user of the file');
is($c->{domain}, $TaurusGuard::IAM::DOMAIN, 'IAM call: its domain');
like($c->{content_type}, qr{\Aapplication/json\b}i,
    'IAM call: application/json');
is($tok1, $c->{token}, 'the token IAM issued is the one injected');

for my $i (1 .. 5) {
    my $tok = served($t, $PROJECT, "cached request $i");
    is($tok, $tok1, "cached request $i: the same token");
}
is(scalar(calls($t)), 1, 'six requests of one project: one IAM call');

# a second project: its own token

my $tok2 = served($t, $PROJECT2, 'second project');
@calls = calls($t);
is(scalar @calls, 2, 'second project: a second IAM call');
is(($calls[1] || {})->{project}, $PROJECT2, 'second call: scoped to the '
    . 'second project');
is($tok2, ($calls[1] || {})->{token}, 'second project: its own token');
isnt($tok2, $tok1, 'second project: not the first project\'s token');

served($t, $PROJECT, 'first project again');
served($t, $PROJECT2, 'second project again');
is(scalar(calls($t)), 2, 'both cached: still two IAM calls');

# every request carried a token issued for its own project

my %project_of = map { $_->[0] => $_->[1] } issued($t);
my @wrong = grep {
    my $p = join '|', headers_named($_->{headers}, 'X-Project-Id');
    my @s = TaurusGuard::IAM::sent_tokens($_);
    @s != 1 || ($project_of{ $s[0] } || '') ne $p
} $t->upstream_records;
is(scalar @wrong, 0, 'no request carried another project\'s token');

$t->finish;


# ---- refresh ahead, IAM down, expiry, IAM back --------------------------
#
# Tokens live 12 s, refresh=10s: a token is fresh for its first 2 s,
# then the first request starts a background fetch and still uses it.

my $t2 = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t2);
TaurusGuard::IAM::start_iam($t2, ttl => 12);
TaurusGuard::IAM::upstream_tokens($t2);

$t2->run(conf('10s'));

my $r1 = served($t2, $PROJECT, 'short token');
@calls = calls($t2);
is(scalar @calls, 1, 'short token: one IAM call');
my ($first) = issued($t2);
$first ||= [ '', '', time + 12 ];
is($r1, $first->[0], 'short token: the one issued');
my $issued_at = $first->[2] - 12;

# in the refresh window: served with the current token, one fetch

sleep($issued_at + 3 - time) if $issued_at + 3 > time;

my $r2 = served($t2, $PROJECT, 'in the refresh window');
is($r2, $r1, 'in the refresh window: the current token is still used');

my $end = now() + 3;
sleep 0.1 while calls($t2) < 2 && now() < $end;
@calls = calls($t2);
is(scalar @calls, 2, 'in the refresh window: one background fetch');
is(($calls[1] || {})->{ok}, 1, 'the background fetch got a token');
is(($calls[1] || {})->{project}, $PROJECT, 'for the same project');

# the new token is in hand: the next requests use it, no more fetches

sleep 0.3;
my $second = (issued($t2))[1] || [ '', '', time + 12 ];
my $r3 = served($t2, $PROJECT, 'after the refresh');
is($r3, $second->[0], 'after the refresh: the new token');
isnt($r3, $r1, 'after the refresh: not the old one');
served($t2, $PROJECT, 'after the refresh, again');
is(scalar(calls($t2)), 2, 'a fresh token: no other fetch');

# IAM down while the token is valid: served

TaurusGuard::IAM::stop_iam($t2);

my $r4 = served($t2, $PROJECT, 'IAM down, token valid');
is($r4, $second->[0], 'IAM down, token valid: the cached token');

# in its refresh window the fetch fails: still served with it

my $refresh_at = $second->[2] - 12 + 3;
sleep($refresh_at - time) if $refresh_at > time;

for my $i (1 .. 3) {
    my $tok = served($t2, $PROJECT, "IAM down, refresh window $i");
    is($tok, $second->[0], "IAM down, refresh window $i: the cached token");
    sleep 1;
}

# expired, IAM still down: refused, nothing forwarded

sleep($second->[2] + 0.3 - time) if $second->[2] + 0.3 > time;

my $n = scalar $t2->upstream_records;
my $r = $t2->post(upgrade_path(), $body);
my $j = $t2->is_refusal($r, 503, 'TG.0503', 'token expired, IAM down');
is($j->{error_msg}, 'no usable IAM token', 'expired: error_msg says why');
is(scalar $t2->upstream_records, $n, 'expired: nothing forwarded');

my @a = $t2->wait_audit($j->{audit_id} || 'none', 1);
is(scalar(grep { ($_->{decision} || '') eq 'error' } @a), 1,
    'expired: one error record');
is(($a[0] || {})->{reason}, 'no usable IAM token', 'expired: audit reason');
is(($a[0] || {})->{project_id}, $PROJECT, 'expired: audit project_id');
ok(!grep({ ($_->{decision} || '') eq 'allow' } @a),
    'expired: no allow record');

# a second refusal: still nothing forwarded

$r = $t2->post(upgrade_path(), $body);
is($r->{status}, 503, 'expired, again: 503');
is(scalar $t2->upstream_records, $n, 'expired, again: nothing forwarded');

# IAM back: the next request fetches and is served

my $before = scalar calls($t2);
TaurusGuard::IAM::start_iam($t2, ttl => 12);

my $r5 = served($t2, $PROJECT, 'IAM back');
is(scalar(calls($t2)), $before + 1, 'IAM back: one fetch');
my $third = (issued($t2))[-1] || [ '' ];
is($r5, $third->[0], 'IAM back: the new token');

# no token ever went upstream after its expiry (the upstream's check)

my @late = grep { !$_->{token_ok} } $t2->upstream_records;
is(scalar @late, 0, 'every forwarded request had a valid token')
    or diag(explain([ map { $_->{token_error} } @late ]));

$t2->finish;


# ---- an expires_at IAM never writes --------------------------------------
#
# Read as the nearest time, an offset before a final Z or the 31st of
# February would keep the token longer than it lives; the answer is
# refused instead, as one without expires_at is.  Far in the future, so
# that reading it loosely would make the token look good for years.

for my $c ([ '2099-01-01T00:00:00+08:00Z', 'an offset before the Z' ],
    [ '2099-02-31T00:00:00.000000Z', 'the 31st of February' ],
    [ '2099-01-01T00:00:00.Z', 'a point without digits' ])
{
    my ($exp, $name) = @$c;
    my $t3 = Test::TaurusGuard->new;

    TaurusGuard::IAM::write_password_file($t3);
    TaurusGuard::IAM::start_iam($t3, ttl => 86400, expires_at => $exp);
    TaurusGuard::IAM::upstream_tokens($t3);
    $t3->run(conf());

    my $r = $t3->post(upgrade_path(), $body);
    my $j = $t3->is_refusal($r, 503, 'TG.0503', "expires_at, $name");
    is(scalar $t3->upstream_records, 0, "expires_at, $name: nothing"
        . ' forwarded');
    is(scalar(calls($t3)), 1, "expires_at, $name: IAM was asked");
    like($t3->error_log, qr/token\.expires_at is not a UTC/,
        "expires_at, $name: the log says why");

    $t3->finish;
}


# ---- X-Subject-Token twice -----------------------------------------------
#
# A header IAM sends once, sent twice: taking the first or the last is a
# guess about which one IAM meant (nginx keeps both, in order).  The
# second is no token IAM issued: taken, it would be sent upstream.  The
# answer is refused, as one that reads more than one way is.

{
    my $t4 = Test::TaurusGuard->new;

    TaurusGuard::IAM::write_password_file($t4);
    TaurusGuard::IAM::start_iam($t4, ttl => 86400,
        subject_token_also => 'MIIforged');
    TaurusGuard::IAM::upstream_tokens($t4);
    $t4->run(conf());

    my $r = $t4->post(upgrade_path(), $body);
    $t4->is_refusal($r, 503, 'TG.0503', 'X-Subject-Token twice');
    is(scalar $t4->upstream_records, 0,
        'X-Subject-Token twice: nothing forwarded');
    is(scalar(calls($t4)), 1, 'X-Subject-Token twice: IAM was asked');
    like($t4->error_log, qr/X-Subject-Token is in the answer twice/,
        'X-Subject-Token twice: the log says why');
    unlike($t4->error_log_without_proxy_dumps, qr/MIIforged/,
        'X-Subject-Token twice: the module logs neither token');

    $t4->finish;
}

$t->done_testing;
