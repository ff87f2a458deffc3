#!/usr/bin/perl

# taurus_guard_token iam= password_file=: a new version of the password
# file that does not parse is not used, and the [alert] that says so
# names the file and the line at fault, as it does for the credentials
# file (docs/directives.md: "same ownership and mode rules as the
# credentials file").  The token fetched with the previous password is
# still sent.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-iam.pl" }

my $conf = <<"EOF";
http {
    taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini;
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

my $t = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t);
TaurusGuard::IAM::iam_supported($t, $conf) or do {
    $t->done_testing;
    exit;
};

TaurusGuard::IAM::start_iam($t);
TaurusGuard::IAM::upstream_tokens($t);

$t->expect_alert(qr/"[^"]*iam\.ini" line 5: /);
$t->run($conf);

my $body = batch_json([ $INSTANCES[0] ]);

my $r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, 'a good password file: 200') or diag($r->{raw});

# line 5 has no "=": a malformed line, the password kept from before

$t->write_secret_file('iam.ini', "# IAM password for taurus-guard\n"
    . "[iam]\n"
    . "domain = $TaurusGuard::IAM::DOMAIN\n"
    . "user = $TaurusGuard::IAM::USER\n"
    . "password without an equals sign\n");

# a worker looks at the file at most once a second

sleep 1.2;

$r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, 'a bad version: the token in hand still sent, 200')
    or diag($r->{raw});
is(scalar(TaurusGuard::IAM::iam_calls($t)), 1, 'a bad version: no new '
    . 'IAM call');

$t->stop;

my $path = $t->testdir . '/iam.ini';
my @alerts = grep { /\[alert\]/ && /\Q$path\E/ } split /\n/,
    $t->error_log;

is(scalar @alerts, 1, 'one [alert] for the bad version')
    or diag(join "\n", @alerts);
like($alerts[0] || '', qr/"\Q$path\E" line 5: malformed line,/,
    'the alert names the file and the line at fault');
like($alerts[0] || '', qr/the previous password is kept/,
    'the alert says the previous password is kept');

$t->done_testing;
