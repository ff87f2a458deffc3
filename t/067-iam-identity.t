#!/usr/bin/perl

# taurus_guard_token iam= password_file=: a token is used only while the
# password file it was asked with is the one in effect.  The fetched
# tokens outlive a reload (their zone is kept) and the file is re-read
# at run time, so after the operator rewrites the file with another IAM
# user (a leaked password, a user removed), the next batch must ask IAM
# again as the new user and carry the new token: with a reload, and
# without one once a worker has re-read the file.  An unchanged file,
# even written anew, keeps the token across a reload (no IAM call).  The
# same for an agency: its user token and its agency tokens are fetched
# again.  (t/lib/tg-iam.pl is restarted to accept only the new user.)

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

my $USER2 = 'tg-replacement-user';
my $PASSWORD2 = 'tgIamSecondPassw0rd-NEVERlogged-2Kd9';
my $USER3 = 'tg-third-user';
my $PASSWORD3 = 'tgIamThirdPassw0rd-NEVERlogged-7Hn4';

sub conf {
    my ($agency) = @_;
    my $a = $agency
        ? " agency=$AGENCY agency_domain=$AGENCY_DOMAIN" : '';
    return <<"EOF";
http {
    taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini$a;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

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

        location = /_tg_iam {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }
    }
}
EOF
}

my $body = batch_json([ $INSTANCES[0] ]);

sub calls { return TaurusGuard::IAM::iam_calls(@_) }


# A batch: 200, forwarded with one token.  Returns the token sent.

sub served {
    my ($t, $name) = @_;

    my $n = scalar $t->upstream_records;
    my $r = $t->post(upgrade_path(), $body);
    is($r->{status}, 200, "$name: 200") or diag($r->{raw});

    my @up = $t->upstream_records;
    is(scalar @up, $n + 1, "$name: forwarded");
    my $u = $up[-1] || {};
    is($u->{token_ok}, 1, "$name: the upstream accepts the token")
        or diag('token_error: ' . ($u->{token_error} || ''));

    return join '|', TaurusGuard::IAM::sent_tokens($u);
}


# The calls since the $from-th, as "method/scope[/user]:status".

sub call_list {
    my ($t, $from) = @_;
    my @c = calls($t);
    return join ' ', map {
        join('/', $_->{auth_method} || '?', $_->{scope} || '?',
            defined $_->{user} ? $_->{user} : ())
            . ':' . ($_->{status} || '?')
    } @c[$from .. $#c];
}


# ---- project tokens --------------------------------------------------

my $t = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t);
TaurusGuard::IAM::iam_supported($t, conf()) or do {
    $t->done_testing;
    exit;
};

TaurusGuard::IAM::start_iam($t);
TaurusGuard::IAM::upstream_tokens($t);
$t->run(conf());

my $tok1 = served($t, 'first batch');
is(call_list($t, 0), "password/project/$TaurusGuard::IAM::USER:201",
    'first batch: one IAM call, as the file\'s user');
is($tok1, (calls($t))[0]{token}, 'first batch: its token is sent');

# the same file, and the same bytes written anew: nothing to fetch

$t->reload;
is(served($t, 'unchanged file, reload'), $tok1,
    'unchanged file, reload: the same token');
is(scalar(calls($t)), 1, 'unchanged file, reload: no IAM call');

TaurusGuard::IAM::write_password_file($t);
sleep 1.2;
$t->reload;
is(served($t, 'same bytes anew, reload'), $tok1,
    'same bytes anew, reload: the same token');
is(scalar(calls($t)), 1, 'same bytes anew, reload: no IAM call');

# another user, then a reload

TaurusGuard::IAM::write_password_file($t, user => $USER2,
    password => $PASSWORD2);
TaurusGuard::IAM::start_iam($t, user => $USER2, password => $PASSWORD2);
$t->reload;

my $tok2 = served($t, 'another user, reload');
is(call_list($t, 1), "password/project/$USER2:201",
    'another user, reload: IAM asked again, as the new user');
is($tok2, (calls($t))[-1]{token}, 'another user, reload: the new token');
isnt($tok2, $tok1, 'another user, reload: not the old user\'s token');

# another user, no reload: the worker re-reads the file (at most once a
# second) before it takes a token

TaurusGuard::IAM::write_password_file($t, user => $USER3,
    password => $PASSWORD3);
TaurusGuard::IAM::start_iam($t, user => $USER3, password => $PASSWORD3);
sleep 1.2;

my $tok3 = served($t, 'another user, no reload');
is(call_list($t, 2), "password/project/$USER3:201",
    'another user, no reload: IAM asked again, as the new user');
is($tok3, (calls($t))[-1]{token}, 'another user, no reload: the new token');
isnt($tok3, $tok2, 'another user, no reload: not the old user\'s token');

is(served($t, 'then'), $tok3, 'then: the new token is kept');
is(scalar(calls($t)), 3, 'then: no other IAM call');

$t->finish;


# ---- an agency: its user token and its agency tokens -------------------

$t = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t);
TaurusGuard::IAM::start_iam($t, agency => 1);
TaurusGuard::IAM::upstream_tokens($t);
$t->run(conf(1));

$tok1 = served($t, 'agency, first batch');
is(call_list($t, 0), "password/domain/$TaurusGuard::IAM::USER:201"
    . ' assume_role/project:201',
    'agency, first batch: the user token, then the agency token');

TaurusGuard::IAM::write_password_file($t, user => $USER2,
    password => $PASSWORD2);
TaurusGuard::IAM::start_iam($t, agency => 1, user => $USER2,
    password => $PASSWORD2);
sleep 1.2;

$tok2 = served($t, 'agency, another user, no reload');
is(call_list($t, 2), "password/domain/$USER2:201 assume_role/project:201",
    'agency, another user, no reload: both asked again, as the new user');

my @c = calls($t);
my @user = TaurusGuard::IAM::iam_user_tokens($t);
is(($c[-1] || {})->{auth_token}, ($user[-1] || [])->[0],
    'agency, another user: asked with the new user\'s token');
is($tok2, ($c[-1] || {})->{token}, 'agency, another user: the new token');
isnt($tok2, $tok1, 'agency, another user: not the old one');

TaurusGuard::IAM::write_password_file($t, user => $USER3,
    password => $PASSWORD3);
TaurusGuard::IAM::start_iam($t, agency => 1, user => $USER3,
    password => $PASSWORD3);
$t->reload;

$tok3 = served($t, 'agency, another user, reload');
is(call_list($t, 4), "password/domain/$USER3:201 assume_role/project:201",
    'agency, another user, reload: both asked again, as the new user');
is($tok3, (calls($t))[-1]{token}, 'agency, reload: the new token');

$t->finish;

$t->done_testing;
