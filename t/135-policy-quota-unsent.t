#!/usr/bin/perl

# taurus_guard_policy quota= counts instances forwarded: a batch that no
# upstream try sent a byte of (the upstream refused the connection) is
# given back, as its done record says "forwarded":false, so callers
# retrying against an upstream that is down do not spend the project's
# quota for the period; a batch one try of several did send stays
# counted.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;

my $P = 'd' x 32;
my $Q = 'f' x 32;
my @I = map { sprintf '%032xin07', $_ + 1 } 0 .. 9;

# a port nothing listens on (not one of the harness's, which run() waits
# for)

my $dead = do {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1:0', Listen => 1)
        or die "no free port: $!\n";
    $s->sockport;
};

$t->run(<<"EOF");
worker_processes 2;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        $P @I;
        $Q @I;
    }

    taurus_guard_policy $P quota=2/1h;
    taurus_guard_policy $Q quota=1/1h;

    upstream refused_then_up {
        server 127.0.0.1:$dead max_fails=0;
        server 127.0.0.1:%%PORT_UP%% backup;
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /metrics {
            taurus_guard_metrics;
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
            proxy_pass http://refused_then_up;
        }
    }
}
EOF

# the quota is settled in the log phase, before the done record: wait
# for it

sub post_done {
    my ($project, $ids, %o) = @_;
    my $r = $t->post(upgrade_path($project), batch_json($ids), %o);
    my $id = header($r, 'X-Taurus-Guard-Id');
    my $refused = (($r->{json}{error_code} || '') =~ /\ATG\./);
    my @a = defined $id ? $t->wait_audit($id, $refused ? 1 : 2) : ();
    my ($done) = grep { ($_->{decision} || '') eq 'done' } @a;
    return ($r, $done);
}

# the upstream is down: three batches of one instance against a quota
# of two, none of them sent

for my $n (1 .. 3) {
    my ($r, $done) = post_done($P, [ $I[$n] ], port => 1);
    is($r->{status}, 502, "upstream down, batch $n: nginx's 502");
    ok($done && !$done->{forwarded}, "... done, not forwarded")
        or diag(explain($done));
}

my (undef, $m) = $t->metrics;
is($m->{"taurus_guard_quota_used{project=\"$P\"}"} || 0, 0,
    'metrics: none of the quota used');

# the upstream is back: the whole quota is there

is((post_done($P, [ $I[4] ]))[0]{status}, 200, 'upstream back: 1 of 2');
is((post_done($P, [ $I[5] ]))[0]{status}, 200, 'upstream back: 2 of 2');

my ($r) = post_done($P, [ $I[6] ]);
is($r->{status}, 429, 'the quota still holds: 429');
like($r->{json}{error_msg} || '', qr/2 of 2 instances used/,
    '... two used');

# one try refused, the next sent: forwarded, and counted

my $done;
($r, $done) = post_done($Q, [ $I[0] ], port => 2);
is($r->{status}, 200, 'refused, then sent to the backup: 200');
ok($done && $done->{forwarded}, '... forwarded');
is(scalar @{ ($done || {})->{upstream} || [] }, 2, '... in two tries');

($r) = post_done($Q, [ $I[1] ]);
is($r->{status}, 429, '... and counted: the quota of one is spent');

$t->done_testing;
