#!/usr/bin/perl

# Only POST on exactly /v3/{project}/instances/database-version/upgrade,
# as sent on the wire.  Everything else on a guarded location: 404, or
# 405 with Allow: POST; audited without a project_id; nothing forwarded.
# The reason says what is wrong: a target as the caller sent it is never
# said to be "rewritten inside nginx", which only a rewrite is.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;

$t->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
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

        # the route, rewritten to itself inside nginx
        location /rw/v3/ {
            taurus_guard on;
            rewrite ^/rw(/.*)\$ \$1 break;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF

my $body = batch_json([ $INSTANCES[0] ]);
my $p = $PROJECT;

# methods

for my $m (qw(GET HEAD PUT DELETE PATCH OPTIONS)) {
    my $r = $t->post(upgrade_path(), $m eq 'GET' || $m eq 'HEAD' ? ''
        : $body, method => $m);
    is($r->{status}, 405, "$m: 405");
    is(header($r, 'Allow'), 'POST', "$m: Allow: POST");
    my $id = header($r, 'X-Taurus-Guard-Id');
    like($id || '', qr/\A[0-9a-f]{32}\z/, "$m: X-Taurus-Guard-Id");
    if ($m ne 'HEAD') {
        my $j = $t->is_refusal($r, 405, 'TG.0405', $m);
    }
    route_audited($t, $id, $m, 405);
}

# paths: every one would reach the location, most would even normalize
# to the real route

my @paths = (
    'wrong path'            => "/v3/$p/instances/database-version/upgrad",
    'other API'             => "/v3/$p/instances",
    'trailing slash'        => "/v3/$p/instances/database-version/upgrade/",
    'doubled slash'         => "/v3/$p//instances/database-version/upgrade",
    'doubled slash, start'  => "/v3//$p/instances/database-version/upgrade",
    'dot-dot segment'       => "/v3/$p/instances/x/../database-version/upgrade",
    'dot segment'           => "/v3/./$p/instances/database-version/upgrade",
    'dot-dot to the route'  => "/v3/x/../$p/instances/database-version/upgrade",
    'percent-encoded dash'  => "/v3/$p/instances/database%2Dversion/upgrade",
    'percent-encoded slash' => "/v3/$p/instances%2Fdatabase-version/upgrade",
    'percent-encoded char'  => "/v3/$p/instances/database-version/upgr%61de",
    'percent in project'    => '/v3/' . substr($p, 0, 31) . '%'
        . sprintf('%02X', ord substr($p, 31)) . $UPGRADE,
    ';param'                => "/v3/$p/instances/database-version/upgrade;x=1",
    ';param in middle'      => "/v3/$p;x=1/instances/database-version/upgrade",
    'query string'          => "/v3/$p/instances/database-version/upgrade?x=1",
    'empty query'           => "/v3/$p/instances/database-version/upgrade?",
    'fragment-like'         => "/v3/$p/instances/database-version/upgrade%23",
    'project of 31'         => '/v3/' . substr($p, 0, 31) . $UPGRADE,
    'project of 33'         => "/v3/${p}0$UPGRADE",
    'project with a dash'   => '/v3/' . substr($p, 0, 31) . '-' . $UPGRADE,
    'project with _'        => '/v3/' . substr($p, 0, 31) . '_' . $UPGRADE,
    'empty project'         => "/v3/$UPGRADE",
    'upper-case route'      => "/v3/$p/Instances/database-version/upgrade",
);

while (my ($name, $target) = splice @paths, 0, 2) {
    my $r = $t->http("POST $target HTTP/1.1\r\nHost: localhost\r\n"
        . "Connection: close\r\nContent-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n$body");

    # nginx itself refuses some targets (400) before any module runs: a
    # refusal either way, but ours must be 404

    if (($r->{status} || 0) == 400 && !header($r, 'X-Taurus-Guard-Id')) {
        pass("$name: refused by nginx itself");
        next;
    }

    my $j = $t->is_refusal($r, 404, 'TG.0404', $name);
    route_audited($t, $j->{audit_id}, "$name ($target)", 404);
    my ($a) = $t->wait_audit($j->{audit_id} || 'none', 1);
    unlike(($a || {})->{reason} || '', qr/rewritten/,
        "$name: not said to be rewritten inside nginx");
}

# a rewrite inside nginx is said to be one: the proxy would send r->uri

my $r = $t->post('/rw' . upgrade_path(), $body);
my $j = $t->is_refusal($r, 404, 'TG.0404', 'rewritten');
is($j->{error_msg}, 'no such route: rewritten inside nginx',
    'rewritten: said to be');
route_audited($t, $j->{audit_id}, 'rewritten', 404);

# absolute-form: the target on the wire is not the route (and carries a
# host of its own), so it is refused like any other target

$r = $t->http("POST http://localhost" . upgrade_path() . " HTTP/1.1\r\n"
    . "Host: localhost\r\nConnection: close\r\n"
    . "Content-Type: application/json\r\n"
    . "Content-Length: " . length($body) . "\r\n\r\n$body");
$j = $t->is_refusal($r, 404, 'TG.0404', 'absolute-form');
route_audited($t, $j->{audit_id}, 'absolute-form', 404);

is(scalar $t->upstream_records, 0, 'nothing forwarded');

$t->done_testing;


sub route_audited {
    my ($t, $id, $name, $status) = @_;
    my @a = $t->wait_audit($id || 'none', 1);
    is(scalar @a, 1, "$name: one audit record");
    my $a = $a[0] || {};
    my $ok = ok(!exists $a->{project_id}, "$name: no project_id in the record");
    $ok &= isnt($a->{decision} || 'allow', 'allow', "$name: not allowed");
    $ok &= is($a->{status}, $status, "$name: audit status");
    $ok &= ok(defined $a->{method}, "$name: audit method");
    $ok &= ok(defined $a->{uri}, "$name: audit uri");
    $ok &= ok(defined $a->{reason} && length $a->{reason},
        "$name: audit reason");
    diag('record: ' . JSON::PP->new->canonical->encode($a)) unless $ok;
}
