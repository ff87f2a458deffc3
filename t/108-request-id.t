#!/usr/bin/perl

# X-Request-Id, which the official SDKs show as an error's request id: a
# refusal of the gateway's (its own, one of nginx's, a second forward
# refused) carries the audit id there; a forwarded answer carries the
# cloud's own, untouched, and the done record stores it as request_id;
# when the cloud sent none (it could not be reached) the audit id.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->upstream(name => 'E', status => 500);
$t->upstream(name => 'G', status => 502);
$t->write_credentials;

$t->run(<<"CONF");
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
            client_max_body_size 2k;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    # the cloud's own error
    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_E%%;
        }
    }

    # no cloud at all: nginx's 502
    server {
        listen 127.0.0.1:%%PORT_2%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:1;
        }
    }

    # a second forward refused (TG.0502)
    server {
        listen 127.0.0.1:%%PORT_3%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_G%%;
            proxy_intercept_errors on;
            error_page 502 = \@retry;
        }

        location \@retry {
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
CONF

my $path = upgrade_path();
my $good = batch_json([ $INSTANCES[0] ]);

sub refused {
    my ($name, $r, $status, $code) = @_;

    is($r->{status}, $status, "$name: status");

    my $id = header($r, 'X-Taurus-Guard-Id') || '';
    my @rid = headers_named($r, 'X-Request-Id');

    like($id, qr/\A[0-9a-f]{32}\z/, "$name: audit id");
    is(scalar @rid, 1, "$name: one X-Request-Id");
    is($rid[0], $id, "$name: X-Request-Id is the audit id");

    if (defined $code) {
        is($r->{json}{error_code}, $code, "$name: error code");
        is($r->{json}{audit_id}, $rid[0], "$name: the body's audit id too");
    }

    return $id;
}

# the gateway's own refusals

my $id = refused('deny',
    $t->post($path, batch_json([ $OTHER_INSTANCE ])), 403, 'TG.0403');
my @a = $t->wait_audit($id, 1);
is($a[0]{decision}, 'deny', 'deny: the record of that id');
ok(!exists $a[0]{request_id}, 'deny: no request_id in the record');

refused('invalid', $t->post($path, '{"instances":'), 400, 'TG.0400');
refused('route', $t->post('/v3/nothing', $good), 404, 'TG.0404');
refused('content type', $t->post($path, $good, content_type => 'text/plain'),
    415, 'TG.0415');

# one of nginx's (client_max_body_size), before the gateway decided

$id = refused('nginx 413',
    $t->post($path, $good . (' ' x 4096), no_length => 0), 413);
@a = $t->wait_audit($id, 1);
is($a[0]{status}, 413, 'nginx 413: recorded under that id');

# forwarded: the cloud's id, untouched, and in the done record

for my $c ([ 'forwarded 200', 0, 200 ], [ 'forwarded 500', 1, 500 ]) {
    my ($name, $port, $status) = @$c;

    my $r = $t->post($path, $good, port => $port);
    is($r->{status}, $status, "$name: status");

    my @rid = headers_named($r, 'X-Request-Id');
    is(scalar @rid, 1, "$name: one X-Request-Id");
    like($rid[0] || '', qr/\Atg-upstream-\d+\z/,
        "$name: X-Request-Id is the upstream's");

    $id = header($r, 'X-Taurus-Guard-Id') || 'none';
    @a = $t->wait_audit($id, 2);
    my ($done) = grep { $_->{decision} eq 'done' } @a;
    ok($done, "$name: a done record");
    is($done && $done->{request_id}, $rid[0],
        "$name: the done record's request_id");
    isnt($done && $done->{request_id}, $id, "$name: not the audit id");
}

# forwarded, but no cloud answered: the audit id, nothing recorded

my $r = $t->post($path, $good, port => 2);
$id = refused('no upstream', $r, 502);
@a = $t->wait_audit($id, 2);
my ($done) = grep { $_->{decision} eq 'done' } @a;
ok($done && !exists $done->{request_id}, 'no upstream: no request_id');

# a second forward refused after the cloud's 502

$r = $t->post($path, $good, port => 3);
$id = refused('second forward', $r, 502, 'TG.0502');
@a = $t->wait_audit($id, 2);
($done) = grep { $_->{decision} eq 'done' } @a;
like($done && $done->{request_id} || '', qr/\Atg-upstream-\d+\z/,
    'second forward: the done record keeps the cloud\'s id of the try');

$t->done_testing;
