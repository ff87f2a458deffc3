#!/usr/bin/perl

# A response the gateway never decided on is not a decision: "return
# 200", a redirect or a 204 in a guarded location write no audit record.
# nginx's own refusals there (413 from client_max_body_size) still do.

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

        taurus_guard on;

        location /v3/ {
            client_max_body_size 64;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /ok {
            return 200 ok;
        }

        location = /moved {
            return 301 /elsewhere;
        }

        location = /nothing {
            return 204;
        }
    }
}
CONF

for my $c ([ '/ok', 200 ], [ '/moved', 301 ], [ '/nothing', 204 ]) {
    my ($uri, $status) = @$c;
    my $r = $t->http("GET $uri HTTP/1.0\r\nHost: localhost\r\n\r\n");
    is($r->{status}, $status, "$uri: $status");
    like(header($r, 'X-Taurus-Guard-Id') || '', qr/\A[0-9a-f]{32}\z/,
        "$uri: the id header all the same");
}

# nginx refuses the body before the gateway sees it: recorded

my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 413, 'client_max_body_size: 413');
my $id = header($r, 'X-Taurus-Guard-Id') || 'none';

my @a = $t->wait_audit($id, 1);
is(scalar @a, 1, '413: one record');
is($a[0]{decision}, 'invalid', '413: invalid');
is($a[0]{status}, 413, '413: status');

# the log phase of the return requests ran before the 413 was sent
sleep 0.2;

my @all = $t->audit_records;
is(scalar @all, 1, 'no record for the responses the gateway never decided')
    or diag(explain \@all);

my $v = $t->_cmd($t->repo . '/build/taurus-guard-verify',
    $t->testdir . '/audit.log');
like($v, qr/chain intact/, 'the audit log verifies');

$t->done_testing;
