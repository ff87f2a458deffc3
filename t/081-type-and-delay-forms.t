#!/usr/bin/perl

# The forms of two fields callers spell in many ways.  Content-Type:
# application/json, optionally with charset=utf-8, in any case, with or
# without spaces around ";", the charset quoted or not; anything else
# is 415.  delay: "true", "false", true or false, each forwarded and
# recorded as sent; any other spelling is 400.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(sha256_hex);
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
    }
}
EOF

my $path = upgrade_path();
my $batch = batch_json([ $INSTANCES[0] ]);
my $nup = 0;

# Content-Type: accepted

for my $ct ('application/json',
    'application/json; charset=utf-8',
    'application/json;charset=utf-8',
    'application/json ; charset=utf-8',
    'application/json;  charset=utf-8  ',
    'Application/JSON; Charset=UTF-8',
    'APPLICATION/JSON;CHARSET=UTF-8',
    'application/json; charset="utf-8"',
    'application/json; charset="UTF-8"')
{
    my $r = $t->post($path, $batch, content_type => $ct);
    is($r->{status}, 200, "Content-Type '$ct': 200");

    my @up = $t->upstream_records;
    is(scalar @up, ++$nup, "Content-Type '$ct': forwarded");
    my $u = $up[-1] || {};
    is($u->{signature}{ok}, 1, "Content-Type '$ct': signature verifies");
    is(join(',', headers_named($u->{headers}, 'Content-Type')),
        'application/json', "Content-Type '$ct': the gateway's own upstream");
}

# Content-Type: refused

for my $ct ('application/json; charset=utf8',
    'application/json; charset=utf-16',
    'application/json; charset=iso-8859-1',
    'application/json;',
    'application/json; charset=utf-8; x=y',
    'application/json; charset=utf-8,text/plain',
    'application/json; charset = utf-8',
    'application/json; charset="utf-8',
    'application/jsonx',
    'application/problem+json',
    'text/json',
    '')
{
    my $r = $t->post($path, $batch, content_type => $ct);
    $t->is_refusal($r, 415, 'TG.0415', "Content-Type '$ct'");
}

is(scalar $t->upstream_records, $nup, 'no refused Content-Type forwarded');

# delay: the four forms, forwarded and recorded as sent

my $json = JSON::PP->new;

for my $d ('"true"', '"false"', 'true', 'false') {
    my $body = batch_json([ $INSTANCES[0] ], $d);
    my $r = $t->post($path, $body);
    is($r->{status}, 200, "delay $d: 200");

    my @up = $t->upstream_records;
    is(scalar @up, ++$nup, "delay $d: forwarded");
    is(($up[-1] || {})->{body}, $body, "delay $d: forwarded as sent");

    my $id = header($r, 'X-Taurus-Guard-Id') || 'none';
    my ($allow) = grep { ($_->{decision} || '') eq 'allow' }
        $t->wait_audit($id, 2);
    $allow ||= {};

    # the record's own bytes: a string stays a string, a boolean a boolean
    my ($line) = grep { index($_, "\"id\":\"$id\"") >= 0
        && index($_, '"decision":"allow"') >= 0 }
        split /\n/, $t->read_file('audit.log');
    like($line || '', qr/"delay":\Q$d\E[,}]/, "delay $d: recorded as sent");
    is($allow->{body_sha256}, sha256_hex($body), "delay $d: body_sha256");
}

# delay: other spellings

for my $d ('"True"', '"FALSE"', '"1"', '1', '0', 'null', '""', '[]',
    '{}', '"true "')
{
    my $r = $t->post($path, batch_json([ $INSTANCES[0] ], $d));
    my $j = $t->is_refusal($r, 400, 'TG.0400', "delay $d");
    like($j->{error_msg} || '', qr/delay/, "delay $d: error_msg names it");
}

is(scalar $t->upstream_records, $nup, 'no refused delay forwarded');

$t->done_testing;
