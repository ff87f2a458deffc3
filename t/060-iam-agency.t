#!/usr/bin/perl

# taurus_guard_token iam= agency= agency_domain=: agency tokens (IAM's
# assume_role).  The gateway first gets the delegated user's own token
# with the password, scoped to the user's domain, then asks IAM for the
# agency's token of each batch's project with that token in X-Auth-Token
# (t/lib/tg-iam.pl checks both calls key for key, and the user token).
# Only agency tokens reach the upstream (tg-upstream.pl --tokens accepts
# no user token).  The user token is fetched once and reused for every
# project; a revoked user token is dropped and fetched again; an agency
# token refused upstream (401) is fetched again with the same user token;
# workers share one fetch; agency tokens are renewed ahead of expiry,
# kept while IAM is down, and never used after expiry (503).  (That no
# token or password leaks is the harness's check at finish.)

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-iam.pl" }

my $AGENCY = $TaurusGuard::IAM::AGENCY;
my $AGENCY_DOMAIN = $TaurusGuard::IAM::AGENCY_DOMAIN;
my $PROJECT3 = 'abcdef0123456789abcdef0123456789';

sub conf {
    my (%o) = @_;
    my $r = defined $o{refresh} ? " refresh=$o{refresh}" : '';
    my $w = $o{workers} || 1;
    return <<"EOF";
worker_processes $w;

http {
    taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini
                       agency=$AGENCY agency_domain=$AGENCY_DOMAIN$r;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
        %%PROJECT2%% $INSTANCES[0];
        $PROJECT3 $INSTANCES[0];
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

        location = /_tg_iam {
            internal;
            proxy_read_timeout 3s;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }
    }
}
EOF
}

my $body = batch_json([ $INSTANCES[0] ]);

sub calls { return TaurusGuard::IAM::iam_calls(@_) }
sub issued { return TaurusGuard::IAM::iam_tokens(@_) }
sub user_tokens { return TaurusGuard::IAM::iam_user_tokens(@_) }
sub sent { return join '|', TaurusGuard::IAM::sent_tokens(@_) }


# An allowed request: 200, forwarded once with one agency token the
# upstream accepts for this project, allow and done records.  Returns
# the token sent.

sub served {
    my ($t, $project, $name) = @_;

    my $n = scalar $t->upstream_records;
    my $r = $t->post(upgrade_path($project), $body);
    is($r->{status}, 200, "$name: 200") or diag($r->{raw});

    my @up = $t->upstream_records;
    is(scalar @up, $n + 1, "$name: forwarded");
    my $u = $up[-1] || {};
    is($u->{token_ok}, 1, "$name: the upstream accepts the token")
        or diag('token_error: ' . ($u->{token_error} || ''));
    is(scalar(TaurusGuard::IAM::sent_tokens($u)), 1,
        "$name: one X-Auth-Token");

    my $id = header($r, 'X-Taurus-Guard-Id') || 'none';
    my @a = $t->wait_audit($id, 2);
    is(join(',', map { $_->{decision} || '?' } @a), 'allow,done',
        "$name: allow and done records");

    return sent($u);
}


# The calls since the $from-th, as "method/scope[/project]:status".

sub call_list {
    my ($t, $from) = @_;
    my @c = calls($t);
    return join ' ', map {
        join('/', $_->{auth_method} || '?', $_->{scope} || '?',
            $_->{scope} && $_->{scope} eq 'project'
                ? substr($_->{project} || '?', 0, 4) : ())
            . ':' . ($_->{status} || '?')
    } @c[$from .. $#c];
}


# ---- nginx -t ----------------------------------------------------------

{
    my $t = Test::TaurusGuard->new;
    TaurusGuard::IAM::write_password_file($t);

    my ($rc, $out) = $t->nginx_t(conf(), 'agency.conf');
    is($rc, 0, 'nginx -t: an agency configuration passes') or diag($out);

    (my $c = conf()) =~ s/ agency_domain=\S+;/;/;
    ($rc, $out) = $t->nginx_t($c, 'agency-alone.conf');
    isnt($rc, 0, 'nginx -t: agency= without agency_domain= fails');
    like($out, qr/"agency=" and "agency_domain=" go together in \S+:\d+/,
        'nginx -t: says they go together, with file and line');

    ($c = conf()) =~ s/ agency=\S+/ agency=/;
    ($rc, $out) = $t->nginx_t($c, 'agency-empty.conf');
    isnt($rc, 0, 'nginx -t: an empty agency= fails');
    like($out, qr/invalid "agency=": a name of 1 to 255 printable/,
        'nginx -t: names the empty agency');

    ($c = conf()) =~ s/ agency=\S+/ agency="taurus\x01ops"/;
    ($rc, $out) = $t->nginx_t($c, 'agency-control.conf');
    isnt($rc, 0, 'nginx -t: a control byte in agency= fails');

    for my $sep ('/', ':', '#') {
        ($c = conf()) =~ s/ agency_domain=\S+;/ agency_domain=a${sep}b;/;
        ($rc, $out) = $t->nginx_t($c, 'agency-sep.conf');
        isnt($rc, 0, "nginx -t: a '$sep' in agency_domain= fails");
        like($out, qr/but '\/', '#' and ':' expected/,
            "nginx -t: says '$sep' is not for names");
    }

    $t->finish;
}


# ---- the user token first, then one agency token per project ----------

my $t = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t);
TaurusGuard::IAM::start_iam($t, agency => 1);
TaurusGuard::IAM::upstream_tokens($t);
$t->run(conf());

my $tok1 = served($t, $PROJECT, 'first request');

my @calls = calls($t);
is(call_list($t, 0), 'password/domain:201 assume_role/project/0123:201',
    'first request: the user token, then the agency token');

my ($user1) = user_tokens($t);
$user1 ||= [ '' ];
my ($pw, $ar) = @calls;
$pw ||= {};
$ar ||= {};
is($pw->{user}, $TaurusGuard::IAM::USER, 'user token: the file\'s user');
is($pw->{domain}, $TaurusGuard::IAM::DOMAIN,
    'user token: scoped to the user\'s own domain');
is($ar->{auth_token}, $user1->[0],
    'agency token: asked with the user token in X-Auth-Token');
is($ar->{agency}, $AGENCY, 'agency token: the configured agency');
is($ar->{agency_domain}, $AGENCY_DOMAIN,
    'agency token: of the delegating domain');
is($ar->{project}, $PROJECT, 'agency token: for the request\'s project');
is($tok1, $ar->{token}, 'the agency token is the one injected');
isnt($tok1, $user1->[0], 'the user token is never injected');
unlike(join(' ', @{ $ar->{headers} || [] }), qr/\bX-Forwarded|\bCookie/i,
    'agency token call: none of the caller\'s headers');

for my $i (1 .. 3) {
    is(served($t, $PROJECT, "cached $i"), $tok1, "cached $i: the same "
        . 'agency token');
}
is(scalar(calls($t)), 2, 'cached: no other IAM call');

# a second project: only its agency token, with the same user token

my $tok2 = served($t, $PROJECT2, 'second project');
is(call_list($t, 2), 'assume_role/project/fedc:201',
    'second project: one assume_role call, no password call');
is(((calls($t))[2] || {})->{auth_token}, $user1->[0],
    'second project: the cached user token');
isnt($tok2, $tok1, 'second project: its own agency token');

# the agency token revoked upstream: 401, dropped, fetched again with
# the same user token

TaurusGuard::IAM::revoke_token($t, $tok1);

my $r = $t->post(upgrade_path(), $body);
is($r->{status}, 401, 'revoked agency token: the endpoint\'s 401 is '
    . 'passed on');

my $tok1b = served($t, $PROJECT, 'after the 401');
isnt($tok1b, $tok1, 'after the 401: a new agency token');
is(call_list($t, 3), 'assume_role/project/0123:201',
    'after the 401: one assume_role call');
is(((calls($t))[3] || {})->{auth_token}, $user1->[0],
    'after the 401: asked with the same user token');

# the user token revoked: the assume_role call is refused (401), the
# user token dropped, a new one fetched, and the batch still served

TaurusGuard::IAM::revoke_user_token($t, $user1->[0]);

my $tok3 = served($t, $PROJECT3, 'user token revoked');
is(call_list($t, 4), 'assume_role/project/abcd:401 password/domain:201 '
    . 'assume_role/project/abcd:201',
    'user token revoked: refused, a new user token, the agency token');
my $user2 = (user_tokens($t))[-1] || [ '' ];
isnt($user2->[0], $user1->[0], 'a new user token');
is(((calls($t))[6] || {})->{auth_token}, $user2->[0],
    'the agency token is asked with the new user token');
ok(scalar(grep { /\[warn\].*agency "\Q$AGENCY_DOMAIN\/$AGENCY\E" token/
    && /the X-Auth-Token it was asked with was refused \(401\)/ }
    split /\n/, $t->error_log),
    'error.log: the refused user token, named by what it is for');

# IAM refuses the user's password: the user token cannot be had, 503

my $t2 = Test::TaurusGuard->new;
TaurusGuard::IAM::write_password_file($t2, password => 'wrong-passw0rd');
TaurusGuard::IAM::start_iam($t2, agency => 1);
TaurusGuard::IAM::upstream_tokens($t2);
$t2->run(conf());

$r = $t2->post(upgrade_path(), $body);
my $j = $t2->is_refusal($r, 503, 'TG.0503', 'wrong password');
is($j->{error_msg}, 'no usable IAM token', 'wrong password: why');
is(scalar $t2->upstream_records, 0, 'wrong password: nothing forwarded');
is(call_list($t2, 0), 'password/domain:401',
    'wrong password: one password call, no assume_role');
ok(scalar(grep { /IAM user token \(to ask for agency tokens\) not fetched:/
    && /IAM did not answer 201/ } split /\n/, $t2->error_log),
    'error.log: the user token was not fetched');

# the agency refused (the delegating domain does not trust this one)

TaurusGuard::IAM::write_password_file($t2);
TaurusGuard::IAM::start_iam($t2, agency => 'another_agency');
sleep 1.1;

$r = $t2->post(upgrade_path(), $body);
$t2->is_refusal($r, 503, 'TG.0503', 'agency refused');
is(scalar $t2->upstream_records, 0, 'agency refused: nothing forwarded');
like(call_list($t2, 1), qr{\Apassword/domain:201 assume_role/project/0123:403\z},
    'agency refused: the user token, then 403 for the agency');
$t2->finish;

# ---- several workers share one fetch of each, even after a 401 ----------

$t->finish;

my $t3 = Test::TaurusGuard->new;
TaurusGuard::IAM::write_password_file($t3);
TaurusGuard::IAM::start_iam($t3, agency => 1, delay => 300);
TaurusGuard::IAM::upstream_tokens($t3);
$t3->run(conf(workers => 4));

my @res = $t3->concurrent_posts(upgrade_path(), $body, 24);
is(scalar(grep { $_->[0] eq '200' } @res), 24,
    '24 concurrent requests: all served');
my @w = $t3->workers_of(map { $_->[2] } @res);
cmp_ok(scalar @w, '>', 1, 'served by more than one worker');
is(call_list($t3, 0), 'password/domain:201 assume_role/project/0123:201',
    '24 concurrent requests in 4 workers: one user token, one agency '
    . 'token');
is(scalar(grep { !$_->{token_ok} } $t3->upstream_records), 0,
    'every one carried an accepted agency token');

# the user token revoked while several requests wait for one agency
# token: the one fetching gets 401, fetches a new user token and asks
# again; those waiting follow it and are served too

my ($u3) = user_tokens($t3);
TaurusGuard::IAM::revoke_user_token($t3, ($u3 || [ '' ])->[0]);

@res = $t3->concurrent_posts(upgrade_path($PROJECT3), $body, 12);
is(scalar(grep { $_->[0] eq '200' } @res), 12,
    'user token revoked, 12 concurrent requests for a new project: all '
    . 'served') or diag(join "\n", map { "@$_" } @res);
is(call_list($t3, 2), 'assume_role/project/abcd:401 password/domain:201 '
    . 'assume_role/project/abcd:201',
    'and IAM was asked once for each token');
$t3->finish;

# ---- renewal ahead, IAM down, expiry -----------------------------------
#
# Agency tokens live 12 s with refresh=10s: fresh for 2 s, then the
# next request renews in the background (with the user token, which
# lives a day) and is served with the current one.

my $t4 = Test::TaurusGuard->new;
TaurusGuard::IAM::write_password_file($t4);
TaurusGuard::IAM::start_iam($t4, agency => 1, ttl => 12, user_ttl => 86400);
TaurusGuard::IAM::upstream_tokens($t4);
$t4->run(conf(refresh => '10s'));

my $a1 = served($t4, $PROJECT, 'short agency token');
my $first = (issued($t4))[0] || [ '', '', time + 12 ];
my $issued_at = $first->[2] - 12;

sleep($issued_at + 3 - time) if $issued_at + 3 > time;

is(served($t4, $PROJECT, 'refresh window'), $a1,
    'refresh window: served with the current agency token');

my $end = now() + 3;
sleep 0.1 while calls($t4) < 3 && now() < $end;
is(call_list($t4, 0), 'password/domain:201 assume_role/project/0123:201 '
    . 'assume_role/project/0123:201',
    'refresh window: one background assume_role, no password call');

sleep 0.3;
my $second = (issued($t4))[1] || [ '', '', time + 12 ];
is(served($t4, $PROJECT, 'after the renewal'), $second->[0],
    'after the renewal: the new agency token');

TaurusGuard::IAM::stop_iam($t4);
is(served($t4, $PROJECT, 'IAM down, token valid'), $second->[0],
    'IAM down: the cached agency token');

sleep($second->[2] + 0.3 - time) if $second->[2] + 0.3 > time;

my $n = scalar $t4->upstream_records;
$r = $t4->post(upgrade_path(), $body);
$j = $t4->is_refusal($r, 503, 'TG.0503', 'agency token expired, IAM down');
is(scalar $t4->upstream_records, $n, 'expired: nothing forwarded');
my @a = $t4->wait_audit($j->{audit_id} || 'none', 1);
is(($a[0] || {})->{reason}, 'no usable IAM token', 'expired: audit reason');

is(scalar(grep { !$_->{token_ok} } $t4->upstream_records), 0,
    'no agency token was used after its expiry');

$t4->finish;

$t->done_testing;
