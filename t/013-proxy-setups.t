#!/usr/bin/perl

# The guard in ordinary nginx setups: `satisfy any` with an access rule
# that lets everyone in cannot skip it, an upstream{} block with
# keepalive and HTTP/1.1 carries signed requests that verify, and the
# decision variables reach log_format.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;
$t->write_file('htpasswd', "u:{PLAIN}p\n");

$t->run(<<"CONF");
http {
    log_format tg '\$taurus_guard_id|\$taurus_guard_decision|'
                  '\$taurus_guard_reason|\$status';

    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0] $INSTANCES[1];
    }

    upstream api {
        server 127.0.0.1:%%PORT_UP%%;
        keepalive 4;
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            satisfy any;
            allow 127.0.0.1;
            deny all;
            auth_basic "api";
            auth_basic_user_file %%TESTDIR%%/htpasswd;

            taurus_guard on;

            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";

            access_log %%TESTDIR%%/logs/tg.log tg;

            location /v3/health/ {
                taurus_guard off;
                proxy_pass http://api;
            }
        }

        location /other/ {
            proxy_pass http://api;
        }
    }
}
CONF

my @r;
push @r, $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ])) for 1 .. 3;
push @r, $t->post(upgrade_path(), batch_json([ $OTHER_INSTANCE ]));
push @r, $t->post(upgrade_path(), '{"delay":"false"}');
push @r, $t->post(upgrade_path(), batch_json([ $INSTANCES[1] ]), headers =>
    [ [ 'Authorization', 'Basic dTpw' ] ]);

is($r[$_]{status}, 200, "allowed $_ over a kept-alive upstream: 200")
    for 0 .. 2;
is($r[3]{status}, 403, 'satisfy any: denied batch still 403');
is(($r[3]{json} || {})->{error_code}, 'TG.0403', 'satisfy any: TG.0403');
is($r[4]{status}, 400, 'satisfy any: invalid batch still 400');
is($r[5]{status}, 200, 'caller with basic auth: allowed batch 200');

my @up = $t->upstream_records;
is(scalar @up, 4, 'four forwarded');
is(scalar(grep { $_->{signature}{ok} } @up), 4, 'all four verify');
is(scalar(grep { $_->{version} eq 'HTTP/1.1' } @up), 4, 'over HTTP/1.1');
is(scalar(grep { $_->{audit_seen} } @up), 4, 'all audited first');
ok(grep({ ($_->{seq} || 0) > 1 } @up), 'an upstream connection was reused');
ok(!grep({ grep { /dTpw/ } map { $_->[1] } @{ $_->{headers} } } @up),
    'the caller\'s Basic credentials do not reach upstream');

# where the guard is off (explicitly, or never on), nothing is injected:
# the cloud credentials serve the guarded route only

for my $target ('/v3/health/x', '/other/x') {
    my $before = scalar $t->upstream_records;
    my $r = $t->post($target, '{}');
    my @u = $t->upstream_records;
    is(scalar @u, $before + 1, "$target: proxied unguarded");
    my $h = ($u[-1] || {})->{headers} || [];
    is(scalar(grep { $_->[0] =~ /\A(?:authorization|x-auth-token|
        x-security-token|x-sdk-date|x-project-id)\z/xi } @$h), 0,
        "$target: no credentials injected");
    is(header($r, 'X-Taurus-Guard-Id'), undef, "$target: no guard id");
}

# variables, once the log phase has run

my $log = '';
for (1 .. 40) {
    $log = $t->read_file('logs/tg.log') || '';
    last if (() = $log =~ /^[0-9a-f]{32}\|/mg) >= 6;
    sleep 0.05;
}
my @lines = map { [ split /\|/, $_, -1 ] } split /\n/, $log;
is(scalar(grep { $_->[0] =~ /\A[0-9a-f]{32}\z/ } @lines), 6,
    'six guarded requests logged with their id');
ok(grep({ $_->[0] eq '' || $_->[0] eq '-' } @lines),
    'the unguarded one without an id');

my $id0 = header($r[0], 'X-Taurus-Guard-Id');
my $id3 = header($r[3], 'X-Taurus-Guard-Id');
my $id4 = header($r[4], 'X-Taurus-Guard-Id');
my %by = map { $_->[0] => $_ } @lines;

is(($by{$id0} || [])->[1], 'allow', '$taurus_guard_decision allow');
is(($by{$id3} || [])->[1], 'deny', '$taurus_guard_decision deny');
is(($by{$id4} || [])->[1], 'invalid', '$taurus_guard_decision invalid');
ok(length(($by{$id3} || [])->[2] || ''), '$taurus_guard_reason for deny');
ok(length(($by{$id4} || [])->[2] || ''), '$taurus_guard_reason for invalid');

$t->done_testing;
