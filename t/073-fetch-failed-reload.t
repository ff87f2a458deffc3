#!/usr/bin/perl

# A reload that fails late leaves nginx's filter chain (the master's
# globals) as the failed configuration built it, and a worker the master
# starts again afterwards runs the old configuration with that chain.
# The fetch body filter, which tells a whole answer from one cut short,
# must be in it whatever the failed configuration held: an earlier module
# installed it only when the configuration fetched secrets, so after a
# failed reload to file credentials and a killed worker, every new IAM
# fetch was "cut short" and every batch for a new project got 503.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-iam.pl" }

my $iam = <<"EOF";
http {
    taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini;
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

# file credentials, no fetch, and a mistake nginx finds only after the
# http block's postconfiguration (an unknown variable)

my $broken = <<"EOF";
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
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
            add_header X-Typo \$no_such_variable;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF

my $t = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t);
TaurusGuard::IAM::iam_supported($t, $iam) or do {
    $t->done_testing;
    exit;
};

TaurusGuard::IAM::start_iam($t);
TaurusGuard::IAM::upstream_tokens($t);
$t->write_credentials;

$t->run($iam);
$t->expect_alert(qr/worker process \d+ exited on signal 9/);
$t->expect_emerg(qr/unknown "no_such_variable" variable/);

my $r = $t->post(upgrade_path($PROJECT), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 200, 'a token fetched for the first project: 200');

$t->write_conf($broken);
$t->reload;

my $until = now() + 5;
sleep 0.1 until $t->error_log =~ /unknown "no_such_variable" variable/
    || now() > $until;
like($t->error_log, qr/unknown "no_such_variable" variable/,
    'the reload failed');

my @old = $t->worker_pids;
kill 'KILL', @old;

$until = now() + 5;
sleep 0.1 while (!$t->worker_pids || ($t->worker_pids)[0] == $old[0])
    && now() < $until;
isnt(($t->worker_pids)[0] || 0, $old[0], 'the master started a new worker');

$r = $t->post(upgrade_path($PROJECT2), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 200, 'the new worker (the running configuration) fetches'
    . ' a token for another project: 200')
    or diag(substr($r->{body} || '', 0, 300));
unlike($t->error_log, qr/not fetched: the answer was cut short/,
    'no fetch taken for cut short');

is(scalar(grep { $_->{token_ok} } $t->upstream_records), 2,
    'both batches arrived with an IAM token the upstream accepts');

$t->done_testing;
