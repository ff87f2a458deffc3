#!/usr/bin/perl

# Every field of an audit record has a bound the gateway knows, so that
# a start can read the file's last record back (the chain goes on from
# it) within the length it allows for one: eight times the largest
# taurus_guard_max_body_size and 64k, at least 1 MB.  Two fields come
# from the request line and headers, whose size only
# large_client_header_buffers limits: the caller's identity
# (taurus_guard_audit_user, here a header) and the method of a refused
# route.  With "large_client_header_buffers 4 1m", one caller's request
# made a record of more than 1 MB (a header of control bytes, each
# escaped to six), and the next start of nginx failed: "audit log does
# not end with a record".
#
#   - user is cut at 1024 bytes before it is escaped, method at 64, as
#     request_id is cut at 128 and a refused route's uri at 512;
#   - the records stay valid JSON, the chain verifies, and nginx starts
#     again on that file and goes on from its last record.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $verify = Test::TaurusGuard->repo . '/build/taurus-guard-verify';
plan(skip_all => "no $verify (run make verify)") unless -x $verify;

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;

my $conf = <<"EOF";
http {
    large_client_header_buffers 4 1m;
    taurus_guard_max_body_size 16k;

    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        $PROJECT $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_audit_user \$http_x_caller;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF

$t->run($conf);

sub id_of { header($_[0], 'X-Taurus-Guard-Id') || 'none' }

my $body = batch_json([ $INSTANCES[0] ]);

# a refused route with a method of 1,000,000 letters

my $method = 'A' x 1_000_000;
my $r = $t->http("$method /v3/x HTTP/1.1\r\nHost: localhost\r\n"
    . "Connection: close\r\n\r\n");
ok($r->{status} >= 400 && $r->{status} < 500, 'a 1,000,000-byte method: '
    . 'refused (' . $r->{status} . ')');

my @all;
my $end = now() + 10;
until ((@all = $t->audit_records) && $all[-1]{method}) {
    last if now() > $end;
    sleep 0.05;
}
is(length($all[-1]{method} || ''), 64, 'method cut at 64 bytes');

# a refused route's target, 20,000 bytes

my $n = @all;
$r = $t->http('GET /v3/' . ('a' x 20_000) . " HTTP/1.1\r\nHost: localhost\r\n"
    . "Connection: close\r\n\r\n");
is($r->{status}, 404, 'a 20,004-byte target: refused');
$end = now() + 10;
sleep 0.05 until (@all = $t->audit_records) > $n || now() > $end;
is(length($all[-1]{uri} || ''), 512, 'uri cut at 512 bytes');

# a caller's identity of 200,000 control bytes (1.2 MB escaped), in the
# file's last record

my $caller = "\x01" x 200_000;
$r = $t->post(upgrade_path(), $body,
    headers => [ [ 'X-Caller', $caller ] ]);
is($r->{status}, 200, 'a 200,000-byte caller identity: 200');

my @a = $t->wait_audit(id_of($r), 2);
my ($allow) = grep { $_->{decision} eq 'allow' } @a;
ok($allow, 'its allow record');
is(length($allow && $allow->{user} || ''), 1024,
    'user cut at 1024 bytes');
is(($allow && $allow->{user} || '') =~ tr/\x01//, 1024,
    'the bytes kept are the caller\'s');
ok(length($t->read_file('audit.log')) < 64 * 1024,
    'the audit log holds no record longer than its bounds');

# nginx starts again on that file, and the chain goes on

$t->stop;
my $last = (split /\n/, $t->read_file('audit.log'))[-1];

$t->upstream;
eval { $t->run; 1 } or diag($@);
ok($t->{running}, 'nginx starts again on that audit log');

$r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, 'after the start: 200');
@a = $t->wait_audit(id_of($r), 2);
my ($next) = grep { $_->{decision} eq 'allow' } @a;
is($next && $next->{prev}, chain_digest($last . "\n"),
    'the first record after the start links to the last before it');

my $out = $t->_cmd($verify, $t->testdir . '/audit.log');
my $rc = $? >> 8;
is($rc, 0, 'taurus-guard-verify: the chain is whole')
    or diag($out);

$t->stop;
$t->done_testing;
