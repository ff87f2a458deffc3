#!/usr/bin/perl

# A signature the endpoint accepts whatever Host nginx's proxy sends:
# the gateway signs content-type;x-project-id;x-sdk-date and not Host,
# which the proxy decides after the gateway ran.  One nginx, one server
# per way of writing proxy_pass, one verifying upstream that checks the
# signature with its own code; the canonical request it computed is the
# one the gateway logs at debug level.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA ();
use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

my $up = $t->upstream;
$t->write_credentials;

# one server per setup: [name, port name, the Host the upstream must see,
# the location's proxy directives]

my @setups = (
    [ 'address with port', '0', "127.0.0.1:$up",
        "proxy_pass http://127.0.0.1:%%PORT_UP%%;" ],
    [ 'upstream{} block', '1', 'tg',
        "proxy_pass http://tg;" ],
    [ 'Host override', '2', 'api.example.test',
        "proxy_pass http://127.0.0.1:%%PORT_UP%%;\n"
        . "            proxy_set_header Host api.example.test;" ],
    [ 'Host $host', '3', 'gw.example.test',
        "proxy_pass http://127.0.0.1:%%PORT_UP%%;\n"
        . "            proxy_set_header Host \$host;" ],
    [ 'proxy_pass with a URI', '4', "127.0.0.1:$up",
        "proxy_pass http://127.0.0.1:%%PORT_UP%%/v3/;" ],
    [ 'proxy_pass with variables', '5', "127.0.0.1:$up",
        "set \$tg_up 127.0.0.1:%%PORT_UP%%;\n"
        . "            proxy_pass http://\$tg_up;" ],
    [ 'HTTP/1.1 upstream{} with keepalive', '6', 'tg_keepalive',
        "proxy_pass http://tg_keepalive;\n"
        . "            proxy_http_version 1.1;\n"
        . "            proxy_set_header Connection \"\";" ],
);

my $servers = join '', map { <<"EOF" } @setups;
    server {
        listen 127.0.0.1:%%PORT_$_->[1]%%;
        server_name gw.example.test;

        location /v3/ {
            taurus_guard on;
            $_->[3]
        }
    }

EOF

$t->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0] $INSTANCES[1];
    }

    upstream tg {
        server 127.0.0.1:%%PORT_UP%%;
    }

    upstream tg_keepalive {
        server 127.0.0.1:%%PORT_UP%%;
        keepalive 2;
    }

$servers}
EOF

my $path = upgrade_path();
my $body = batch_json([ $INSTANCES[0], $INSTANCES[1] ]);
my $n = 0;

for my $s (@setups) {
    my ($name, $port, $host) = @$s;

    my $before = length $t->error_log;

    my $r = $t->post($path, $body, port => $port, host => 'gw.example.test');

    is($r->{status}, 200, "$name: 200");
    is($r->{body}, '{"resp":"success"}', "$name: the upstream accepted it");

    my @up = $t->upstream_records;
    is(scalar @up, ++$n, "$name: one request upstream");
    my $u = $up[-1] || { headers => [], signature => {} };

    is($u->{signature}{ok}, 1, "$name: signature verifies upstream")
        or diag(explain($u->{signature}));
    is($u->{target}, $path, "$name: the path forwarded as signed");
    is(join('|', headers_named($u->{headers}, 'Host')), $host,
        "$name: Host is $host");

    my $auth = join '|', headers_named($u->{headers}, 'Authorization');
    like($auth, qr/\ASDK-HMAC-SHA256[ ]Access=\Q$TEST_AK\E,[ ]SignedHeaders=
        content-type;x-project-id;x-sdk-date,[ ]Signature=[0-9a-f]{64}\z/x,
        "$name: SignedHeaders without host");

    my $cr = $u->{signature}{canonical_request};
    ok(defined $cr && $cr !~ /^host:/m, "$name: no host in the canonical "
        . 'request the upstream computed');

    # the gateway's own, from error.log at debug level

    my $log = substr $t->error_log, $before;
    my @logged = $log =~ /taurus_guard: canonical request "([^"]*)"/g;
    is(scalar @logged, 1, "$name: the gateway logged its canonical request");

    my $mine = defined $logged[0] ? $logged[0] =~ tr/|/\n/r : '';
    is($mine, $cr, "$name: the same canonical request on both sides");
}

# the canonical request, spelled out once for the last one

my @up = $t->upstream_records;
my $u = $up[-1] || { headers => [] };
my ($date) = headers_named($u->{headers}, 'X-Sdk-Date');
$date = '' unless defined $date;

is($u->{signature}{canonical_request}, join("\n",
    'POST',
    "$path/",
    '',
    'content-type:application/json',
    "x-project-id:$PROJECT",
    "x-sdk-date:$date",
    '',
    'content-type;x-project-id;x-sdk-date',
    Digest::SHA::sha256_hex($body)),
    'canonical request as the README documents it');

# the keepalive setup reuses its connection: a second request on it

my $r = $t->post($path, $body, port => '6', host => 'gw.example.test');
is($r->{status}, 200, 'keepalive, second request: 200');
@up = $t->upstream_records;
is($up[-1]{signature}{ok}, 1, 'keepalive, second request: verifies');
is($up[-1]{seq}, 2, 'keepalive, second request: on the same connection');

$t->done_testing;
