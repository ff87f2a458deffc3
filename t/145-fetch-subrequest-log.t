#!/usr/bin/perl

# A fetch of the gateway's own is a subrequest, and "log_subrequest on"
# has nginx log it with the location's access_log, its variables read
# from the subrequest: $request_body is the IAM password request,
# $http_x_auth_token the user token an agency token is asked with,
# $http_x_metadata_token the metadata session token, and as a
# subrequest's variables are its parent's, the batch's own line printed
# them again.  None of them may reach the log: once a fetch is over
# (its status leaves no error page to send it on) it gives them up
# before nginx logs it.  Here every
# fetch is logged, with a format that prints all three: a password
# token, an agency token, a fetch refused in a public location, and
# metadata credentials asked with a session token.  Each fetch has its
# log line; the harness's leak check at the end finds no secret in the
# log.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

BEGIN {
    require "$FindBin::Bin/lib/tg-iam.pl";
    require "$FindBin::Bin/lib/tg-metadata.pl";
}

my $AGENCY = $TaurusGuard::IAM::AGENCY;
my $AGENCY_DOMAIN = $TaurusGuard::IAM::AGENCY_DOMAIN;

my $FORMAT = <<'EOF';
    log_format fetches 'uri=$uri status=$status body=$request_body'
                       ' auth=$http_x_auth_token'
                       ' session=$http_x_metadata_token';
EOF

my $body = batch_json([ $INSTANCES[0] ]);


# ---- IAM: a password token, an agency token, a refused fetch -----------

my $t = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t);
TaurusGuard::IAM::start_iam($t, agency => 1);
TaurusGuard::IAM::upstream_tokens($t);

$t->run(<<"EOF");
http {
$FORMAT
    access_log %%TESTDIR%%/logs/fetches.log fetches;
    log_subrequest on;

    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
        %%PROJECT2%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        taurus_guard_token iam=/_tg_iam
                           password_file=%%TESTDIR%%/iam.ini;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_iam {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        taurus_guard_token iam=/_tg_iam
                           password_file=%%TESTDIR%%/iam.ini
                           agency=$AGENCY agency_domain=$AGENCY_DOMAIN;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_iam {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }
    }

    # the fetch URI is a public location here: refused, nothing sent
    # (a URI of its own: the others' tokens are not its)

    server {
        listen 127.0.0.1:%%PORT_2%%;
        server_name localhost;

        taurus_guard_token iam=/_tg_iam_public
                           password_file=%%TESTDIR%%/iam.ini;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_iam_public {
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }
    }
}
EOF

my $r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, 'password token: 200') or diag($r->{raw});

$r = $t->post(upgrade_path(), $body, port => 1);
is($r->{status}, 200, 'agency token: 200') or diag($r->{raw});

# another project's batch: its agency token alone is fetched, with the
# user token in hand, in a request of its own (a subrequest's variables
# are its parent's: within one request a line logged before may hide
# what the next would print)

$r = $t->post(upgrade_path($PROJECT2), $body, port => 1);
is($r->{status}, 200, 'agency token, another project: 200')
    or diag($r->{raw});

my $calls = scalar TaurusGuard::IAM::iam_calls($t);
is($calls, 4, 'IAM asked four times: the password token, the user '
    . 'token, two agency tokens');

$r = $t->post(upgrade_path(), $body, port => 2);
is($r->{status}, 503, 'fetch in a public location: 503') or diag($r->{raw});
is(scalar TaurusGuard::IAM::iam_calls($t), $calls,
    'fetch in a public location: IAM asked nothing');

$t->stop;

my @lines = grep { /uri=\/_tg_iam(?:_public)? / }
    split /\n/, $t->read_file('logs/fetches.log') || '';
is(scalar @lines, 5, 'each fetch has its log line') or diag(join "\n",
    @lines);
is(scalar(grep { / body=- auth=- session=-\z/ } @lines), 5,
    'none of them with a body or a secret header')
    or diag(join "\n", @lines);

$t->finish;


# ---- metadata credentials asked with a session token -------------------

my $t2 = Test::TaurusGuard->new;

TaurusGuard::Metadata::start_meta($t2, session => 1);
TaurusGuard::Metadata::upstream_keys($t2);

$t2->run(<<"EOF");
http {
$FORMAT
    access_log %%TESTDIR%%/logs/fetches.log fetches;

    taurus_guard_credentials metadata=/_tg_meta session=/_tg_meta_token;
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

        # only this fetch is logged: the session token's, logged first
        # in the same request, would leave "-" for the next to print

        location = /_tg_meta {
            internal;
            log_subrequest on;
            proxy_pass http://127.0.0.1:%%PORT_META%%/openstack/latest/securitykey;
        }

        location = /_tg_meta_token {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_META%%/meta-data/latest/api/token;
        }
    }
}
EOF

$r = $t2->post(upgrade_path(), $body);
is($r->{status}, 200, 'metadata: 200') or diag($r->{raw});
is(scalar TaurusGuard::Metadata::meta_sessions($t2), 1,
    'metadata: asked with a session token');

$t2->stop;

@lines = grep { /uri=\/_tg_meta/ }
    split /\n/, $t2->read_file('logs/fetches.log') || '';
is(join("\n", @lines), 'uri=/_tg_meta status=200 body=- auth=- session=-',
    'metadata: the credentials\' fetch logged without its session token');

$t->done_testing;
