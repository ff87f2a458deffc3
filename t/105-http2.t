#!/usr/bin/perl

# Over HTTP/2 (h2c with prior knowledge, spoken by curl): the batch
# arrives signed and with its token, and the secret headers are in no
# $http_* variable of the access log.  Skipped without a curl that
# speaks HTTP/2.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

my $curl_v = `curl -V 2>/dev/null` || '';
plan(skip_all => 'no curl with HTTP/2')
    unless $curl_v =~ /^Features:.*\bHTTP2\b/m;

my $t = Test::TaurusGuard->new;

my $sts = 'STS-TOKEN-H2-' . ('h' x 40);

$t->upstream(token => $TEST_TOKEN);
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

    log_format secrets '\$status \$server_protocol A=\$http_authorization'
                       ' T=\$http_x_auth_token D=\$http_x_sdk_date'
                       ' S=\$http_x_security_token id=\$taurus_guard_id';

    server {
        listen 127.0.0.1:%%PORT_0%% http2;
        server_name localhost;

        access_log %%TESTDIR%%/logs/secrets.log secrets;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
CONF

my $dir = $t->testdir;
$t->write_file('body.json', batch_json([ $INSTANCES[0] ]));

my $url = 'http://127.0.0.1:' . $t->port(0) . upgrade_path();
my $out = `curl -s --http2-prior-knowledge -D $dir/h2.headers \\
    -o $dir/h2.body -w '%{http_code} %{http_version}' \\
    -H 'Content-Type: application/json' \\
    --data-binary \@$dir/body.json $url 2>&1`;

is($out, '200 2', 'HTTP/2: 200');
my ($id) = ($t->read_file('h2.headers') || '')
    =~ /^x-taurus-guard-id:\s*([0-9a-f]{32})/mi;
$id ||= 'none';

my @up = $t->upstream_records;
is(scalar @up, 1, 'HTTP/2: forwarded once');
ok($up[0]{signature}{ok}, 'HTTP/2: signature verified')
    or diag(explain $up[0]{signature});
ok($up[0]{token_ok}, 'HTTP/2: token injected');

my @a = $t->wait_audit($id, 2);
is(join(',', map { $_->{decision} } @a), 'allow,done',
    'HTTP/2: allow, done');
ok($a[1]{forwarded}, 'HTTP/2: done says forwarded');

my $log = '';
my $end = now() + 5;
while (now() < $end) {
    $log = $t->read_file('logs/secrets.log') || '';
    last if $log =~ /id=\Q$id\E/;
    sleep 0.1;
}

like($log, qr{^200 HTTP/2\.0 A=- T=- D=- S=- id=\Q$id\E$}m,
    'HTTP/2: no secret header in the access log');
ok($log !~ /\Q$TEST_TOKEN\E|\Q$sts\E|SDK-HMAC/,
    'HTTP/2: no secret value in the access log');

my $v = $t->_cmd($t->repo . '/build/taurus-guard-verify',
    $t->testdir . '/audit.log');
like($v, qr/chain intact/, 'the audit log verifies');

$t->done_testing;
