#!/usr/bin/perl

# A fetch to a service that is down fails once.  nginx finalizes such a
# subrequest twice: with the proxy's 502, then again once its error page
# is made, and the gateway handled both as answers: every fetch to a
# service that refused the connection logged two "not fetched" lines
# and counted two failures in taurus_guard_fetch_failures_total, for a
# request that waited for it and for a renewal in the background alike.
# Only a finalization in a location let through since the last one
# handled (error_page to a named location that asks a second service)
# is an answer of its own now.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-iam.pl" }

my $body = batch_json([ $INSTANCES[0] ]);

sub conf {
    my ($iam, $refresh) = @_;
    return <<"EOF";
http {
    taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini
                       refresh=$refresh;
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
            proxy_pass http://127.0.0.1:$iam/v3/auth/tokens;
        }

        location = /metrics {
            taurus_guard_metrics;
        }
    }
}
EOF
}

sub failures {
    my ($t) = @_;
    my (undef, $m) = $t->metrics;
    return $m->{'taurus_guard_fetch_failures_total{source="iam"}'};
}

sub not_fetched {
    my ($t) = @_;
    my $what = "IAM token for project \"$PROJECT\" not fetched: the"
        . " service's answer did not come through";
    return scalar grep { /\[error\].*\Q$what\E/ } split /\n/, $t->error_log;
}


# IAM down from the start: each batch waits for a fetch that fails

{
    my $t = Test::TaurusGuard->new;

    # a port nothing listens on (not one of $t's, which run() waits for)

    my $dead = do {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1:0',
            Listen => 1) or die "cannot find a free port: $!\n";
        $s->sockport;
    };

    TaurusGuard::IAM::write_password_file($t);
    $t->upstream;
    $t->run(conf($dead, '1h'));

    for my $n (1 .. 2) {
        my $r = $t->post(upgrade_path(), $body);
        $t->is_refusal($r, 503, 'TG.0503', "IAM down, batch $n");
        is(failures($t), $n, "IAM down, batch $n: $n failed fetches counted");
        is(not_fetched($t), $n, "IAM down, batch $n: $n [error] lines");
    }

    is(scalar $t->upstream_records, 0, 'IAM down: nothing forwarded');

    $t->finish;
}


# a token in hand, its renewal in the background fails: the batch goes
# on with the token it has, and the renewal fails once

{
    my $t = Test::TaurusGuard->new;

    TaurusGuard::IAM::write_password_file($t);
    TaurusGuard::IAM::start_iam($t, ttl => 100);
    TaurusGuard::IAM::upstream_tokens($t);

    # renewed once less than 98 s are left: three or four seconds after
    # the fetch.  nginx's clock counts whole seconds, and a token's life
    # is measured from the second its fetch ended: 99 to 101 s of IAM's
    # 100 as the fetch straddles a second or not.  refresh must stay
    # below the shortest of them (a token that lives no longer than
    # refresh is renewed halfway through its life instead), and the
    # wait longer than refresh's distance from the longest.

    $t->run(conf('%%PORT_IAM%%', '98s'));

    is($t->post(upgrade_path(), $body)->{status}, 200,
        'renewal: a first batch fetches a token');
    is(failures($t), 0, 'renewal: no failure yet');

    TaurusGuard::IAM::stop_iam($t);
    sleep 4;

    is($t->post(upgrade_path(), $body)->{status}, 200,
        'renewal: IAM down, the next batch goes on with the token');

    my $end = now() + 10;
    sleep 0.1 while !not_fetched($t) && now() < $end;
    sleep 0.5;

    is(failures($t), 1, 'renewal: one failed fetch counted')
        or diag(join "\n", grep { /not fetched/ } split /\n/, $t->error_log);
    is(not_fetched($t), 1, 'renewal: one [error] line');

    $t->finish;
}

done_testing;
