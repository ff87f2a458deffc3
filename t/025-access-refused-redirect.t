#!/usr/bin/perl

# A guarded request that nginx's access checks refused before the
# gateway ran (limit_req, deny, auth_request) and that error_page or
# post_action sends on is never forwarded by a proxy in an unguarded
# location: it would carry the unchecked batch and the caller's own
# credential headers.  It is refused with one record that says it was
# not forwarded; a guarded named location still checks it.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->upstream(name => 'B');
$t->upstream(name => 'C');
$t->write_credentials;

$t->run(<<"CONF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    limit_req_zone \$server_port zone=one:1m rate=1r/m;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    # a rate limit's 503 sent to the usual unguarded retry
    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            limit_req zone=one nodelay;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            error_page 502 503 504 = \@retry;
        }

        location \@retry {
            proxy_pass http://127.0.0.1:%%PORT_B%%;
        }
    }

    # deny, and an auth_request that refuses, sent to a URI
    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            deny all;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            error_page 403 /retry/;
        }

        location /ok/v3/ {
            taurus_guard on;
            auth_request /allow;
            auth_request_set \$caller alice;
            taurus_guard_audit_user \$caller;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /allow {
            internal;
            return 204;
        }

        location /who/v3/ {
            taurus_guard on;
            set \$who "u-\$http_x_caller";
            taurus_guard_audit_user \$who;
            deny all;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location /auth/v3/ {
            taurus_guard on;
            auth_request /deny;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            error_page 401 = \@retry;
        }

        location = /deny {
            internal;
            return 401;
        }

        location /retry/ {
            proxy_pass http://127.0.0.1:%%PORT_B%%;
        }

        location \@retry {
            proxy_pass http://127.0.0.1:%%PORT_B%%;
        }
    }

    # post_action after a refusal, and a guarded retry
    server {
        listen 127.0.0.1:%%PORT_2%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            deny all;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            post_action \@notify;
        }

        location \@notify {
            proxy_pass http://127.0.0.1:%%PORT_B%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_3%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            limit_req zone=one nodelay;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            error_page 503 = \@guarded;
        }

        location \@guarded {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    # "rewrite ... last" out of a guarded location, before any check
    server {
        listen 127.0.0.1:%%PORT_4%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            rewrite ^/v3/health\$ /health last;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location /health {
            proxy_pass http://127.0.0.1:%%PORT_C%%;
        }
    }
}
CONF

my @creds = (headers => [ [ 'Authorization' => 'caller-supplied' ],
    [ 'X-Auth-Token' => 'caller-token' ] ]);
my $denied = batch_json([ $OTHER_INSTANCE ]);

sub refused_records {
    return grep { ($_->{reason} || '') =~ /before the gateway decided/ }
        $t->audit_records;
}

sub count_records {
    my @r = refused_records();
    return scalar @r;
}

# the record's decision follows the status the request is refused with:
# deny for a 403, error for a 5xx, invalid for the rest

sub decision_for {
    my ($status) = @_;
    return $status == 403 ? 'deny' : $status >= 500 ? 'error' : 'invalid';
}

sub refused {
    my ($name, $r, $status, $before) = @_;

    is($r->{status}, $status, "$name: $status");
    my $j = $r->{json} || {};
    is($j->{error_code}, "TG.0$status", "$name: TG.0$status");
    like($j->{error_msg} || '', qr/not forwarded/,
        "$name: says it was not forwarded");

    for (1 .. 50) {
        last if count_records() > $before;
        select(undef, undef, undef, 0.1);
    }
    is(count_records(), $before + 1, "$name: one record");
    my $rec = (refused_records())[-1] || {};
    is($rec->{decision}, decision_for($status),
        "$name: decision " . decision_for($status));
    is($rec->{status}, $status, "$name: the record has the status");
}

# the first batch spends the rate limit: the allow-list denies it

my $r = $t->post(upgrade_path(), $denied, @creds);
is($r->{status}, 403, 'limit_req: the first batch is checked, denied');

my $before = count_records();
$r = $t->post(upgrade_path(), $denied, @creds);
refused('limit_req, error_page = @retry', $r, 400, $before);

$before = count_records();
$r = $t->post(upgrade_path(), $denied, @creds, port => 1);
refused('deny, error_page to a URI', $r, 403, $before);

$before = count_records();
$r = $t->post('/auth' . upgrade_path(), $denied, @creds, port => 1);
refused('auth_request, error_page = @retry', $r, 400, $before);

# the user auth_request gives, after the rewrite phase, is recorded

$r = $t->post('/ok' . upgrade_path(), $denied, port => 1);
is($r->{status}, 404, 'auth_request_set: checked (the route)');
my ($rec) = $t->wait_audit(header($r, 'X-Taurus-Guard-Id') || '-');
is(($rec || {})->{user}, 'alice', 'auth_request_set: the user recorded');

# the user of a request refused before the check, asked for after "set"

$r = $t->post('/who' . upgrade_path(), $denied, port => 1,
    headers => [ [ 'X-Caller' => 'carol' ] ]);
is($r->{status}, 403, 'deny, set: refused');
($rec) = $t->wait_audit(header($r, 'X-Taurus-Guard-Id') || '-');
is(($rec || {})->{user}, 'u-carol', 'deny, set: the user recorded');
unlike($t->error_log, qr/using uninitialized/,
    'the user is not asked for before "set" ran');

$r = $t->post(upgrade_path(), $denied, @creds, port => 2);
is($r->{status}, 403, 'post_action: the refusal answered');

# a guarded named location checks what it is sent: denied, then allowed

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]), port => 3);
is($r->{status}, 200, 'guarded retry: the first batch forwarded');

$r = $t->post(upgrade_path(), $denied, port => 3);
is($r->{status}, 403, 'guarded retry: a denied batch refused');
is_deeply($r->{json}{denied}, [ $OTHER_INSTANCE ], 'guarded retry: denied');

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]), port => 3);
is($r->{status}, 200, 'guarded retry: an allowed batch forwarded');

# a request rewritten out of a guarded location is the other one's

$before = count_records();
$r = $t->http("GET /v3/health HTTP/1.0\r\nHost: localhost\r\n\r\n",
    port => 4);
isnt($r->{status}, 400, 'rewrite out: not refused');
is(scalar $t->upstream_records('C'), 1, 'rewrite out: proxied');
is(count_records(), $before, 'rewrite out: no record');

sleep 1;

is(scalar $t->upstream_records('B'), 0,
    'nothing reached an unguarded proxy');

my @up = $t->upstream_records;
is(scalar @up, 2, 'the endpoint got the two allowed batches');
ok($_->{signature}{ok}, "forward $_->{seq}: signed") for @up;

$t->done_testing;
