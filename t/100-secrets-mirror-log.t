#!/usr/bin/perl

# The secret headers the gateway injects (Authorization, X-Sdk-Date,
# X-Auth-Token, X-Security-Token) reach the upstream's request and
# nothing else: not a mirror subrequest's host, not an access log
# through $http_*, not even when proxy_set_header evaluates one of them
# while the proxy builds its request.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

my $sts = 'STS-TOKEN-' . ('s' x 50);

$t->upstream(token => $TEST_TOKEN);
$t->upstream(name => 'MIRROR', token => $TEST_TOKEN);
$t->write_credentials(security_token => $sts);
$t->write_token;

$t->run(<<"CONF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_token file=%%TESTDIR%%/token;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    log_format secrets '\$status A=\$http_authorization'
                       ' T=\$http_x_auth_token D=\$http_x_sdk_date'
                       ' S=\$http_x_security_token id=\$taurus_guard_id';

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        access_log %%TESTDIR%%/logs/secrets.log secrets;

        location /v3/ {
            taurus_guard on;
            mirror /m;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location /m {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_MIRROR%%\$request_uri;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        access_log %%TESTDIR%%/logs/secrets.log secrets;

        # nginx's own debug line of the copy ("http script var") is the
        # configuration's doing, as are its proxy header dumps (README)
        error_log %%TESTDIR%%/logs/copy.log info;

        location /v3/ {
            taurus_guard on;
            proxy_set_header X-Copy \$http_x_auth_token;
            proxy_set_header X-Copy-Date \$http_x_sdk_date;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
CONF

my @secret_headers = qw(authorization x-auth-token x-sdk-date
    x-security-token);

sub names_of {
    my ($rec) = @_;
    return map { lc $_->[0] } @{ $rec->{headers} || [] };
}

# a mirror gets the batch without a secret

my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]),
    headers => [ [ 'Authorization', 'Basic Y2FsbGVyOnNlY3JldA==' ] ]);
is($r->{status}, 200, 'mirrored: 200 from the upstream');
my $id = header($r, 'X-Taurus-Guard-Id') || 'none';

my @up = $t->upstream_records;
is(scalar @up, 1, 'mirrored: the upstream got one request');
ok($up[0]{signature}{ok}, 'mirrored: the upstream verified the signature')
    or diag(explain $up[0]{signature});
ok($up[0]{token_ok}, 'mirrored: the upstream got the token');
is(scalar(grep { $_ eq 'x-security-token' } names_of($up[0])), 1,
    'mirrored: the upstream got the security token once');

my @m;
my $end = now() + 5;
sleep 0.1 while !(@m = $t->upstream_records('MIRROR')) && now() < $end;

is(scalar @m, 1, 'the mirror got the request');
my %names = map { $_ => 1 } names_of($m[0] || {});
for my $h (@secret_headers) {
    ok(!$names{$h}, "the mirror got no $h");
}
# ok(!~), not unlike(): a failure must not print the secrets
ok(join("\n", map { "$_->[1]" } @{ $m[0]{headers} || [] })
    !~ /\Q$TEST_TOKEN\E|\Q$sts\E|SDK-HMAC/, 'no secret value at the mirror');

# proxy_set_header evaluates $http_x_auth_token inside create_request

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]), port => 1);
is($r->{status}, 200, 'X-Copy: 200');
my $id2 = header($r, 'X-Taurus-Guard-Id') || 'none';

@up = $t->upstream_records;
is(scalar @up, 2, 'X-Copy: the upstream got the request');
my %h = map { lc $_->[0] => $_->[1] } @{ $up[1]{headers} || [] };
is($h{'x-copy'}, $TEST_TOKEN,
    'X-Copy: the variable had the token while the request was built');
ok($up[1]{signature}{ok}, 'X-Copy: signature verified');

$t->wait_audit($id, 2);
$t->wait_audit($id2, 2);

# the access log is written after the response: wait for both lines

my $log = '';
$end = now() + 5;
while (now() < $end) {
    $log = $t->read_file('logs/secrets.log') || '';
    last if $log =~ /id=\Q$id2\E/ && $log =~ /id=\Q$id\E/;
    sleep 0.1;
}

like($log, qr/^200 A=- T=- D=- S=- id=\Q$id\E$/m,
    'mirrored: no secret header in the access log');
like($log, qr/^200 A=- T=- D=- S=- id=\Q$id2\E$/m,
    'X-Copy: no secret header in the access log, though evaluated');
ok($log !~ /\Q$TEST_TOKEN\E|\Q$sts\E|SDK-HMAC|Basic/,
    'no secret value, signature or caller credential in the access log');

my $v = $t->_cmd($t->repo . '/build/taurus-guard-verify',
    $t->testdir . '/audit.log');
like($v, qr/chain intact/, 'the audit log verifies');

$t->done_testing;
