#!/usr/bin/perl

# A 429 nginx gives (limit_req_status 429) before the gateway ran is not
# a denial of the allow-list or the policy: its record's decision
# follows the rule for a refusal nginx made, "deny" for a 403, "error"
# for a 5xx, "invalid" for the rest, whether nginx answers it at once or
# "error_page 429 @retry" sends it on (where the gateway refuses it,
# not forwarded).  The policy's own 429 (quota=) is still "deny".

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->upstream(name => 'B');
$t->write_credentials;

$t->run(<<"CONF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    limit_req_zone \$server_port zone=one:1m rate=1r/m;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0] $INSTANCES[1] $INSTANCES[2];
    }

    taurus_guard_policy %%PROJECT%% quota=2/1h;

    # nginx's 429, sent on to an unguarded retry
    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            limit_req zone=one nodelay;
            limit_req_status 429;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            error_page 429 \@retry;
        }

        location \@retry {
            proxy_pass http://127.0.0.1:%%PORT_B%%;
        }
    }

    # nginx's 429, answered at once
    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            limit_req zone=one nodelay;
            limit_req_status 429;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    # the policy's 429
    server {
        listen 127.0.0.1:%%PORT_2%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
CONF

sub record_of {
    my ($r) = @_;
    my ($rec) = $t->wait_audit(header($r, 'X-Taurus-Guard-Id') || '-');
    return $rec || {};
}

# each server's first batch spends its rate limit (and one of the quota)

my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 200, 'error_page 429: the first batch forwarded');

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[1] ]));
is($r->{status}, 429, 'error_page 429 @retry: 429');
is(($r->{json} || {})->{error_code}, 'TG.0429',
    'error_page 429 @retry: refused by the gateway, TG.0429');
is(scalar $t->upstream_records('B'), 0,
    'error_page 429 @retry: nothing forwarded by the retry');
my $rec = record_of($r);
is($rec->{status}, 429, 'error_page 429 @retry: the record has the status');
is($rec->{decision}, 'invalid', 'error_page 429 @retry: decision invalid');

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[1] ]), port => 1);
is($r->{status}, 200, 'answered at once: the first batch forwarded');

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[2] ]), port => 1);
is($r->{status}, 429, 'answered at once: 429');
$rec = record_of($r);
is($rec->{decision}, 'invalid', 'answered at once: decision invalid');

# the quota of 2 is spent: the policy refuses

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[2] ]), port => 2);
is($r->{status}, 429, 'quota spent: 429');
$rec = record_of($r);
is($rec->{decision}, 'deny', 'quota spent: decision deny');

$t->done_testing;
