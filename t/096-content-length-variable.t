#!/usr/bin/perl

# $content_length in a guarded location is the length of the body
# forwarded, the canonical one: a "proxy_set_header Content-Length
# $content_length" frames what the upstream gets, not what the caller
# sent (white space, escapes), even where the variable was read before
# the check ("set" in the rewrite phase).  The upstream is kept alive,
# as a request framed too long would hang there.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;

$t->run(<<"CONF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    upstream api {
        server 127.0.0.1:%%PORT_UP%%;
        keepalive 4;
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Content-Length \$content_length;
            proxy_read_timeout 3s;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            set \$caller_length \$content_length;
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Content-Length \$content_length;
            proxy_set_header X-Caller-Length \$caller_length;
            proxy_read_timeout 3s;
        }
    }
}
CONF

my $canonical = batch_json([ $INSTANCES[0] ]);

# as SDKs send it: pretty, and longer than the canonical form

my $pretty = "{\n  \"databases_instance_infos\": [\n    {\n"
    . "      \"instance_id\": \"$INSTANCES[0]\",\n"
    . "      \"current_version\": \"2.0.48.231200\"\n    }\n  ],\n"
    . "  \"delay\": \"false\"\n}\n";

for my $case ([ 0, 'plain' ], [ 1, 'read before the check' ]) {
    my ($port, $name) = @$case;

    my $before = scalar $t->upstream_records;
    my $r = $t->post(upgrade_path(), $pretty, port => $port, timeout => 10);

    is($r->{status}, 200, "$name: 200, not the upstream timing out");

    my @up = $t->upstream_records;
    is(scalar @up, $before + 1, "$name: forwarded once");

    my $u = $up[-1] || {};
    is($u->{body}, $canonical, "$name: the canonical body");

    my @cl = map { $_->[1] } grep { lc $_->[0] eq 'content-length' }
        @{ $u->{headers} || [] };
    is("@cl", length($canonical), "$name: its length, once");
    ok($u->{signature}{ok}, "$name: signature verified");

    if ($port == 1) {
        my ($caller) = map { $_->[1] } grep { lc $_->[0] eq 'x-caller-length' }
            @{ $u->{headers} || [] };
        is($caller, length($pretty), "$name: read as sent before");
    }

    my $id = header($r, 'X-Taurus-Guard-Id') || 'none';
    my @a = $t->wait_audit($id, 2);
    is(join(',', map { $_->{decision} } @a), 'allow,done',
        "$name: allow, done");
    is($a[1]{status}, 200, "$name: done with 200");
}

$t->done_testing;
