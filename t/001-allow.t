#!/usr/bin/perl

# An allowed batch: audited before it leaves, re-serialized canonically,
# signed so that an independent verifier accepts it, answered with the
# upstream's response and the audit id.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(sha256_hex);
use JSON::PP;
use MIME::Base64 ();
use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;

$t->run(<<"EOF");
http {
    log_format tg '\$taurus_guard_id \$taurus_guard_decision '
                  '"\$taurus_guard_reason"';

    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0] $INSTANCES[1];
        %%PROJECT%% $INSTANCES[2];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            access_log %%TESTDIR%%/logs/tg.log tg;
        }
    }
}
EOF

my $path = upgrade_path();

# sent with another key order and whitespace: what goes upstream is the
# canonical form

my $sent = <<"EOF";
{ "delay" : "false",
  "databases_instance_infos" : [
    { "current_version" : "2.0.48.231200", "instance_id" : "$INSTANCES[0]" },
    { "instance_id" : "$INSTANCES[2]", "current_version" : "2.0.51.240300" }
  ] }
EOF

my $canonical = batch_json([ $INSTANCES[0], [ $INSTANCES[2],
    '2.0.51.240300' ] ], '"false"');

my $r = $t->post($path, $sent);

is($r->{status}, 200, 'allowed: 200');
is($r->{body}, '{"resp":"success"}', 'allowed: upstream body passed through');
like(header($r, 'Content-Type') || '', qr{\Aapplication/json},
    'allowed: upstream content type');
like(header($r, 'X-Request-Id') || '', qr/\Atg-upstream-/,
    'allowed: upstream headers passed through');

my $id = header($r, 'X-Taurus-Guard-Id');
like($id || '', qr/\A[0-9a-f]{32}\z/, 'allowed: X-Taurus-Guard-Id');

my @up = $t->upstream_records;
is(scalar @up, 1, 'allowed: one request upstream');
my $u = $up[0] || {};

is($u->{method}, 'POST', 'upstream: method');
is($u->{target}, $path, 'upstream: target');
is($u->{body}, $canonical, 'upstream: body is the canonical form');
is($u->{body_sha256}, sha256_hex($canonical), 'upstream: body sha256');
is($u->{signature}{ok}, 1, 'upstream: signature verifies')
    or diag(explain($u->{signature}));
is($u->{audit_seen}, 1, 'upstream: audit record on disk before forwarding');

my @auth = headers_named($u->{headers}, 'Authorization');
is(scalar @auth, 1, 'upstream: one Authorization');
like($auth[0] || '', qr/\ASDK-HMAC-SHA256\ Access=\Q$TEST_AK\E,
    \ SignedHeaders=content-type;x-project-id;x-sdk-date,
    \ Signature=[0-9a-f]{64}\z/x,
    'upstream: Authorization shape and signed headers');
is(join(',', headers_named($u->{headers}, 'X-Project-Id')), $PROJECT,
    'upstream: X-Project-Id is the path project');
like(join(',', headers_named($u->{headers}, 'X-Sdk-Date')),
    qr/\A\d{8}T\d{6}Z\z/, 'upstream: one X-Sdk-Date');
is(join(',', headers_named($u->{headers}, 'Content-Type')),
    'application/json', 'upstream: Content-Type');
is(join(',', headers_named($u->{headers}, 'X-Taurus-Guard-Id')), $id,
    'upstream: X-Taurus-Guard-Id is the response id');
is(join(',', headers_named($u->{headers}, 'Content-Length')),
    length $canonical, 'upstream: Content-Length of the canonical body');
is(scalar(headers_named($u->{headers}, 'X-Auth-Token')), 0,
    'upstream: no X-Auth-Token without a token source');
is(scalar(headers_named($u->{headers}, 'X-Security-Token')), 0,
    'upstream: no X-Security-Token without one in the credentials');

# audit: allow, then done

my @a = $t->wait_audit($id, 2);
is(scalar @a, 2, 'audit: two records for the id');

my ($allow) = grep { ($_->{decision} || '') eq 'allow' } @a;
my ($done) = grep { ($_->{decision} || '') eq 'done' } @a;

ok($allow, 'audit: allow record');
$allow ||= {};
is($a[0]{decision}, 'allow', 'audit: allow record comes first');
like($allow->{time} || '', qr/\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\z/,
    'audit: time is RFC 3339 UTC with ms');
is($allow->{client}, '127.0.0.1', 'audit: client');
is($allow->{project_id}, $PROJECT, 'audit: project_id');
is_deeply($allow->{instances}, [
    { instance_id => $INSTANCES[0], current_version => '2.0.48.231200' },
    { instance_id => $INSTANCES[2], current_version => '2.0.51.240300' },
], 'audit: instances');
is($allow->{delay}, 'false', 'audit: delay');
is($allow->{body_sha256}, sha256_hex($canonical),
    'audit: body_sha256 of the forwarded body');
ok(!defined $allow->{reason}, 'audit: no reason for allow');
ok(defined $allow->{policy} && length $allow->{policy},
    'audit: policy digest');

ok($done, 'audit: done record');
$done ||= {};
is($done->{status}, 200, 'audit: done carries the upstream status');
ok(defined $done->{duration_ms} && $done->{duration_ms} =~ /\A\d+(\.\d+)?\z/,
    'audit: done duration_ms');
ok(defined $done->{bytes} && $done->{bytes} =~ /\A\d+\z/, 'audit: done bytes');

# JSON boolean delay stays boolean

$r = $t->post($path, '{"databases_instance_infos":[{"instance_id":"'
    . $INSTANCES[1] . '","current_version":"2.0.48.231200"}],'
    . '"delay":true}');

is($r->{status}, 200, 'boolean delay: 200');
@up = $t->upstream_records;
is($up[1]{body}, batch_json([ $INSTANCES[1] ], 'true'),
    'boolean delay: forwarded as a JSON boolean');
is($up[1]{signature}{ok}, 1, 'boolean delay: signature verifies');

# delay "true" as a string and charset=utf-8

$r = $t->post($path, batch_json([ @INSTANCES ], '"true"'),
    content_type => 'application/json; charset=utf-8');

is($r->{status}, 200, 'charset=utf-8 and 3 instances: 200');
@up = $t->upstream_records;
is($up[2]{body}, batch_json([ @INSTANCES ], '"true"'),
    'three instances: canonical body');
is($up[2]{signature}{ok}, 1, 'three instances: signature verifies');
is($up[2]{audit_seen}, 1, 'three instances: audited before forwarding');

# escapes and non-ASCII: what goes upstream is re-serialized from what
# was checked, so an escaped ID arrives plain

my $esc = '{"databases_instance_infos":[{"instance_id":"\\u0036'
    . substr($INSTANCES[0], 1) . '","current_version":"2.0\\/48\\u00e9 '
    . "\xc3\xa9" . '"}],"delay":"false"}';

$r = $t->post($path, $esc);
is($r->{status}, 200, 'escapes: 200');
my $eid = header($r, 'X-Taurus-Guard-Id') || 'none';
@up = $t->upstream_records;
my $ub = $up[3] || {};
my $dec = eval { JSON::PP->new->utf8->decode($ub->{body_b64}
    ? MIME::Base64::decode_base64($ub->{body_b64}) : '') } || {};
is(($dec->{databases_instance_infos}[0] || {})->{instance_id}, $INSTANCES[0],
    'escapes: instance ID forwarded as checked');
is(($dec->{databases_instance_infos}[0] || {})->{current_version},
    "2.0/48\x{e9} \x{e9}", 'escapes: version forwarded as checked');
unlike($ub->{body} || '', qr/\\u0036/, 'escapes: the ID is not escaped');
is($ub->{signature}{ok}, 1, 'escapes: signature verifies');
my ($ea) = $t->wait_audit($eid, 1);
is(($ea || {})->{body_sha256}, $ub->{body_sha256},
    'escapes: audited digest is the forwarded body\'s');
is(($ea || {})->{instances}[0]{instance_id}, $INSTANCES[0],
    'escapes: audited instance ID');

# variables

my $tg;
for (1 .. 20) {
    $tg = $t->read_file('logs/tg.log') || '';
    last if $tg =~ /\Q$id\E/;
    sleep 0.1;
}
like($tg, qr/^\Q$id\E allow /m, 'variables: $taurus_guard_id and decision');

$t->done_testing;

