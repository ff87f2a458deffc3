#!/usr/bin/perl

# The upstream's answer is passed through, whatever it is, and the done
# record carries its status; an upstream that cannot be reached still
# gets a second record for the id.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream(status => 500);
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
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            proxy_connect_timeout 2s;
        }
    }
}
CONF

my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 500, 'upstream 500 passed through');
is($r->{body}, '{"resp":"status 500"}', 'upstream body passed through');
my $id = header($r, 'X-Taurus-Guard-Id');
like($id || '', qr/\A[0-9a-f]{32}\z/,
    'X-Taurus-Guard-Id on a passed-through error');

my @a = $t->wait_audit($id || 'none', 2);
is(join(',', map { $_->{decision} || '?' } @a), 'allow,done',
    'allow then done');
is($a[1]{status}, 500, 'done carries 500');

# nothing listens any more

$t->stop_upstream;

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 502, 'upstream down: 502');
$id = header($r, 'X-Taurus-Guard-Id');
like($id || '', qr/\A[0-9a-f]{32}\z/, 'upstream down: X-Taurus-Guard-Id');

@a = $t->wait_audit($id || 'none', 2);
is(scalar @a, 2, 'upstream down: two records');
is($a[0]{decision}, 'allow', 'upstream down: allow first');
is($a[1]{status}, 502, 'upstream down: second record status 502');

$t->done_testing;
