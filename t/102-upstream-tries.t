#!/usr/bin/perl

# The done record says whether the upstream received the batch and
# lists every try: proxy_next_upstream ... non_idempotent retries a POST
# on the next server (both tries recorded, both signed); an upstream
# that refuses the connection never got it; one that answers 502 after
# reading it did.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream(status => 502);
$t->upstream(name => 'B');
$t->write_credentials;

# a port nothing listens on (not one of the harness's, which it waits for)
my $dead = do {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1:0', Listen => 1)
        or die "no free port: $!\n";
    my $p = $s->sockport;
    close $s;
    $p;
};

$t->run(<<"CONF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    upstream two {
        server 127.0.0.1:%%PORT_UP%%;
        server 127.0.0.1:%%PORT_B%% backup;
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://two;
            proxy_next_upstream error timeout http_502 non_idempotent;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:$dead;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
CONF

sub done_of {
    my ($r) = @_;
    my $id = header($r, 'X-Taurus-Guard-Id') || 'none';
    my @a = $t->wait_audit($id, 2);
    is(join(',', map { $_->{decision} } @a), 'allow,done',
        "$id: one allow, one done");
    return $a[1] || {};
}

# a retry on the next server

my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 200, 'next upstream: the second server answers');

my @up = $t->upstream_records;
my @b = $t->upstream_records('B');
is(scalar @up, 1, 'next upstream: the first server got it once');
is(scalar @b, 1, 'next upstream: the second server got it once');
ok($up[0]{signature}{ok} && $b[0]{signature}{ok},
    'next upstream: both tries signed');
is($up[0]{body_sha256}, $b[0]{body_sha256}, 'next upstream: one body');

my $d = done_of($r);
is($d->{status}, 200, 'next upstream: done 200');
ok($d->{forwarded}, 'next upstream: forwarded');
is(scalar @{ $d->{upstream} || [] }, 2, 'next upstream: two tries');
is_deeply([ map { [ $_->{addr}, $_->{status} ] } @{ $d->{upstream} } ],
    [ [ '127.0.0.1:' . $t->port('UP'), 502 ],
      [ '127.0.0.1:' . $t->port('B'), 200 ] ],
    'next upstream: each try, address and status');
ok(!grep({ !$_->{bytes_sent} } @{ $d->{upstream} }),
    'next upstream: each try was sent bytes');

# the connection is refused: the upstream never got the batch

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]), port => 1);
is($r->{status}, 502, 'refused connection: 502');
$d = done_of($r);
is($d->{status}, 502, 'refused connection: done 502');
ok(defined $d->{forwarded} && !$d->{forwarded},
    'refused connection: forwarded false');
is($d->{upstream}[0]{addr}, "127.0.0.1:$dead",
    'refused connection: the try is listed');
is($d->{upstream}[0]{bytes_sent}, 0, 'refused connection: nothing sent');

# the upstream reads the batch and answers 502

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]), port => 2);
is($r->{status}, 502, 'upstream 502: passed through');
$d = done_of($r);
is($d->{status}, 502, 'upstream 502: done 502');
ok($d->{forwarded}, 'upstream 502: forwarded true');
is($d->{upstream}[0]{status}, 502, 'upstream 502: the try says 502');
is(scalar $t->upstream_records, 2, 'upstream 502: it got the batch');

my $v = $t->_cmd($t->repo . '/build/taurus-guard-verify',
    $t->testdir . '/audit.log');
like($v, qr/chain intact/, 'the audit log verifies');

$t->done_testing;
