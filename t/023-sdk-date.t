#!/usr/bin/perl

# The signing time is the gateway's clock: whatever X-Sdk-Date a caller
# sends (long past, far future, malformed), the request goes upstream
# with one X-Sdk-Date within a minute of now, signed; a caller's
# X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD never reaches the upstream and
# the payload hash signed is the body's.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(sha256_hex);
use Test::More;
use Time::Local qw(timegm);

use Test::TaurusGuard qw(:all);
use TaurusGuard::Signer qw(parse_sdk_date);

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

my $body = batch_json([ $INSTANCES[0] ]);
my $n = 0;

my @cases = (
    [ 'X-Sdk-Date in 2000', [ [ 'X-Sdk-Date', '20000101T000000Z' ] ] ],
    [ 'X-Sdk-Date in 2099', [ [ 'X-Sdk-Date', '20991231T235959Z' ] ] ],
    [ 'malformed X-Sdk-Date', [ [ 'x-sdk-date', 'yesterday' ] ] ],
    [ 'UNSIGNED-PAYLOAD', [
        [ 'X-Sdk-Content-Sha256', 'UNSIGNED-PAYLOAD' ] ] ],
    [ 'both', [ [ 'X-Sdk-Date', '20000101T000000Z' ],
        [ 'X-SDK-CONTENT-SHA256', 'UNSIGNED-PAYLOAD' ] ] ],
);

for my $c (@cases) {
    my ($name, $headers) = @$c;

    my $r = $t->post(upgrade_path(), $body, headers => $headers);
    my $now = time;

    is($r->{status}, 200, "$name: 200");

    my @up = $t->upstream_records;
    is(scalar @up, ++$n, "$name: forwarded");
    my $u = $up[-1] || { headers => [], signature => {} };

    is($u->{signature}{ok}, 1, "$name: signature verifies")
        or diag(explain($u->{signature}));

    my @date = headers_named($u->{headers}, 'X-Sdk-Date');
    is(scalar @date, 1, "$name: one X-Sdk-Date upstream");
    my $d = parse_sdk_date($date[0] || '');
    ok(defined $d && abs($now - $d) <= 60,
        "$name: X-Sdk-Date within a minute of now")
        or diag('X-Sdk-Date: ' . ($date[0] || 'none') . ", now $now");

    like($u->{signature}{string_to_sign} || '',
        qr/\ASDK-HMAC-SHA256\n\Q$date[0]\E\n[0-9a-f]{64}\z/,
        "$name: the gateway's date is the one signed") if @date;

    is(scalar(headers_named($u->{headers}, 'X-Sdk-Content-Sha256')), 0,
        "$name: no X-Sdk-Content-Sha256 upstream");
    my $cr = $u->{signature}{canonical_request} || '';
    like($cr, qr/\n\Q${\ sha256_hex($body)}\E\z/,
        "$name: the payload hash signed is the body's");
    unlike($cr, qr/UNSIGNED-PAYLOAD|x-sdk-content-sha256/,
        "$name: no UNSIGNED-PAYLOAD in the canonical request");

    # the audit record's time and X-Sdk-Date come from the same clock

    my $id = header($r, 'X-Taurus-Guard-Id') || 'none';
    my ($a) = $t->wait_audit($id, 1);
    my $at = ($a || {})->{time} || '';
    my $atime = $at =~ /\A(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)/
        ? timegm($6, $5, $4, $3, $2 - 1, $1) : undef;
    ok(defined $atime && defined $d && abs($atime - $d) <= 2,
        "$name: X-Sdk-Date agrees with the audit time")
        or diag("audit time $at, X-Sdk-Date " . ($date[0] || 'none'));
}

$t->done_testing;
