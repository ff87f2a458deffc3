#!/usr/bin/perl

# Bodies the validator refuses: 400 (with the problem named), 415, 413.
# Each is audited as invalid and nothing is forwarded.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

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
        %%PROJECT%% $INSTANCES[0] $INSTANCES[1] $INSTANCES[2];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_max_batch 2;
            taurus_guard_max_body_size 2k;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    # nginx's own limit below the module's: nginx refuses before any
    # phase handler, and the module still keeps a record of it

    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        client_max_body_size 1k;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF

my $item0 = '{"instance_id":"' . $INSTANCES[0]
    . '","current_version":"2.0.48.231200"}';
my $item1 = '{"instance_id":"' . $INSTANCES[1]
    . '","current_version":"2.0.48.231200"}';
my $ok = batch_json([ $INSTANCES[0] ]);

# [ name, body, expected error_msg, options for post() ]

my @bad = (
    [ 'duplicate key', '{"databases_instance_infos":[' . $item0
        . '],"delay":"false","delay":"true"}', qr/duplicate key "delay"/ ],
    [ 'duplicate key in an item', '{"databases_instance_infos":[{'
        . '"instance_id":"' . $INSTANCES[0] . '","instance_id":"'
        . $INSTANCES[1] . '","current_version":"2.0.48.231200"}],'
        . '"delay":"false"}', qr/duplicate key "instance_id"/ ],
    [ 'trailing data', $ok . '{}', qr/trailing|after|end/i ],
    [ 'two objects', $ok . $ok, qr/trailing|after|end/i ],
    [ 'delay of wrong type', '{"databases_instance_infos":[' . $item0
        . '],"delay":1}', qr/delay/ ],
    [ 'delay of wrong value', '{"databases_instance_infos":[' . $item0
        . '],"delay":"maybe"}', qr/delay/ ],
    [ 'instance_id of wrong type', '{"databases_instance_infos":[{'
        . '"instance_id":42,"current_version":"2.0.48.231200"}],'
        . '"delay":"false"}', qr/instance_id/ ],
    [ 'empty batch', '{"databases_instance_infos":[],"delay":"false"}',
        qr/databases_instance_infos|empty|at least/i ],
    [ 'too many items', batch_json([ @INSTANCES ]),
        qr/too many|at most|max|2/i ],
    [ 'unknown key', '{"databases_instance_infos":[' . $item0
        . '],"delay":"false","force":true}', qr/force|unknown|unexpected/i ],
    [ 'missing delay', '{"databases_instance_infos":[' . $item0 . ']}',
        qr/delay/ ],
    [ 'missing current_version', '{"databases_instance_infos":[{'
        . '"instance_id":"' . $INSTANCES[0] . '"}],"delay":"false"}',
        qr/current_version/ ],
    [ 'empty instance_id', '{"databases_instance_infos":[{'
        . '"instance_id":"","current_version":"2.0.48.231200"}],'
        . '"delay":"false"}', qr/instance_id|empty/i ],
    [ 'instance twice in a batch', '{"databases_instance_infos":['
        . "$item0,$item0" . '],"delay":"false"}',
        qr/\Q$INSTANCES[0]\E|twice|duplicate|same as/i ],
    [ 'control character', '{"databases_instance_infos":[{'
        . '"instance_id":"' . $INSTANCES[0] . '","current_version":'
        . '"2.0\u000a48"}],"delay":"false"}', qr/control|current_version/i ],
    [ 'NUL escape', '{"databases_instance_infos":[{'
        . '"instance_id":"' . $INSTANCES[0] . '\u0000x","current_version":'
        . '"2.0.48"}],"delay":"false"}', qr/control|instance_id|NUL|\\u0000/i ],
    [ 'BOM', "\xef\xbb\xbf" . $ok, qr/BOM|JSON|byte order/i ],
    [ 'invalid UTF-8', '{"databases_instance_infos":[{'
        . '"instance_id":"' . $INSTANCES[0] . '","current_version":'
        . "\"2.0.48\xff\"}],\"delay\":\"false\"}", qr/UTF-8|utf8|encoding/i ],
    [ 'array around the object', '[' . $ok . ']', qr/object|nesting/i ],
    [ 'not an object', '"databases_instance_infos"', qr/object/i ],
    [ 'empty array', '[]', qr/object/i ],
    [ 'not JSON', 'delay=false', qr/JSON|syntax|parse|invalid|unexpected/i ],
    [ 'empty body', '', qr/empty|JSON|body/i ],
    [ 'keys differ in case', '{"Databases_Instance_Infos":[' . $item0
        . '],"delay":"false"}', qr/Databases_Instance_Infos|unknown|missing/i ],
);

for my $c (@bad) {
    my ($name, $body, $msg, %o) = @$c;

    my $r = $t->post(upgrade_path(), $body, %o);
    my $j = $t->is_refusal($r, 400, 'TG.0400', $name);
    like($j->{error_msg} || '', $msg, "$name: error_msg");

    audited($t, $j, $name, 400);
}

# content type

for my $ct ('text/plain', 'application/x-www-form-urlencoded',
    'application/json; charset=latin1', 'application/jsonx', undef)
{
    my $name = 'content type ' . (defined $ct ? $ct : 'absent');
    my $r = $t->post(upgrade_path(), $ok, content_type => $ct);
    my $j = $t->is_refusal($r, 415, 'TG.0415', $name);
    audited($t, $j, $name, 415);
}

# size: 2k limit, with Content-Length and chunked

my $big = batch_json([ [ $INSTANCES[0], '2.0.48.' . ('1' x 2100) ] ]);

my $r = $t->post(upgrade_path(), $big);
my $j = $t->is_refusal($r, 413, 'TG.0413', 'over max body size');
audited($t, $j, 'over max body size', 413);

$r = $t->post(upgrade_path(), $big, chunked => 500);
$j = $t->is_refusal($r, 413, 'TG.0413', 'over max body size, chunked');
audited($t, $j, 'over max body size, chunked', 413);

for my $chunked (0, 1) {
    my $name = 'over client_max_body_size' . ($chunked ? ', chunked' : '');
    $r = $t->post(upgrade_path(), $big, port => 1,
        $chunked ? (chunked => 500) : ());
    is($r->{status}, 413, "$name: 413");
    my $id = header($r, 'X-Taurus-Guard-Id');
    like($id || '', qr/\A[0-9a-f]{32}\z/, "$name: X-Taurus-Guard-Id");
    my @a = $t->wait_audit($id || 'none', 1);
    is(scalar @a, 1, "$name: one audit record");
    is(($a[0] || {})->{status}, 413, "$name: audit status");
    isnt(($a[0] || {})->{decision} || 'allow', 'allow', "$name: not allow");
}

is(scalar $t->upstream_records, 0, 'nothing forwarded');

# a valid batch of the maximum size still passes

$r = $t->post(upgrade_path(), batch_json([ @INSTANCES[0, 1] ]));
is($r->{status}, 200, 'two items (the maximum): 200');
is(scalar $t->upstream_records, 1, 'forwarded');

$t->done_testing;


sub audited {
    my ($t, $j, $name, $status) = @_;
    my @a = $t->wait_audit($j->{audit_id} || 'none', 1);
    is(scalar @a, 1, "$name: one audit record");
    my $a = $a[0] || {};
    is($a->{decision}, 'invalid', "$name: decision invalid");
    is($a->{status}, $status, "$name: audit status");
    ok(defined $a->{reason} && length $a->{reason}, "$name: audit reason");
    is($a->{project_id}, $PROJECT, "$name: audit project_id");
}
