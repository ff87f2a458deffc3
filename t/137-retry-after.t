#!/usr/bin/perl

# Retry-After belongs to the refusal that is sent.  A policy's 409
# (cooldown) or 429 (quota) carries it; when something else turns the
# answer into a 503, the 503 must not keep it:
#
#   - the refusal's record cannot be written (a location whose audit log
#     is /dev/full, beside one whose log works and spends the quota and
#     starts the cooldown in the same policy zone): 503, no Retry-After;
#   - report mode, an instance cooling down (a would_deny 409) in a
#     batch whose fresh instances find the policy zone full: 503, no
#     Retry-After.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

plan(skip_all => 'no /dev/full') unless -c '/dev/full';

my ($i0, $i1, $i2) = @INSTANCES;

# many instances of another project, to fill a small zone
my $P3 = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
my @F = map { sprintf '%032xin07', $_ + 1000 } 0 .. 499;

my $t = Test::TaurusGuard->new;

$t->expect_alert(qr/taurus_guard: write\(\) to audit log "\/dev\/full" failed/);
$t->expect_alert(qr/zone "taurus_guard_policy" is full/);

$t->upstream;
$t->write_credentials;

$t->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;
    taurus_guard_policy_zone 32k;

    taurus_guard_allow {
        %%PROJECT%% $i0 $i1 $i2;
        $P3 @F;
    }

    taurus_guard_policy %%PROJECT%% quota=2/1h cooldown=1h;
    taurus_guard_policy $P3 cooldown=1h;

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_audit_log /dev/full;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_mode report;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF

# the refusals themselves carry Retry-After

my $r = $t->post(upgrade_path(), batch_json([ $i0 ]));
is($r->{status}, 200, 'a first batch spends one of the quota');

$r = $t->post(upgrade_path(), batch_json([ $i0 ]));
$t->is_refusal($r, 409, 'TG.0409', 'the same instance again');
my $ra = header($r, 'Retry-After');
ok(defined $ra && $ra > 3000, '409: Retry-After ' . ($ra || 'none'));

$r = $t->post(upgrade_path(), batch_json([ $i1, $i2 ]));
$t->is_refusal($r, 429, 'TG.0429', 'two more instances');
$ra = header($r, 'Retry-After');
ok(defined $ra && $ra > 3000, '429: Retry-After ' . ($ra || 'none'));

# the same refusals where their record cannot be written: 503

$r = $t->post(upgrade_path(), batch_json([ $i0 ]), port => 1);
$t->is_refusal($r, 503, 'TG.0503', 'a 409 not recorded');
is(header($r, 'Retry-After'), undef, 'a 409 not recorded: no Retry-After');

$r = $t->post(upgrade_path(), batch_json([ $i1, $i2 ]), port => 1);
$t->is_refusal($r, 503, 'TG.0503', 'a 429 not recorded');
is(header($r, 'Retry-After'), undef, 'a 429 not recorded: no Retry-After');

# report mode: fill the zone with instances cooling down, then a batch
# of one of them (a would_deny 409) and fresh ones the zone has no room
# for: 503

my @st;
for (my $i = 0; $i < 480; $i += 20) {
    push @st, $t->post(upgrade_path($P3), batch_json([ @F[$i .. $i + 19] ]),
        port => 2)->{status};
    last if $st[-1] != 200;
}

is($st[0], 200, 'report: the first instances fit');
is($st[-1], 503, 'report: then the zone is full (' . join(',', @st) . ')');

my @fresh = @F[480 .. 499];

$r = $t->post(upgrade_path($P3), batch_json([ $F[0], @fresh ]), port => 2);
$t->is_refusal($r, 503, 'TG.0503', 'report: a cooling instance, no room');
like($r->{json}{error_msg} || '', qr/policy state is full/,
    '... the zone is full');
is(header($r, 'Retry-After'), undef, '... no Retry-After');

# the same batch enforced: the cooldown's own 409, with Retry-After

$r = $t->post(upgrade_path($P3), batch_json([ $F[0], @fresh ]));
$t->is_refusal($r, 409, 'TG.0409', 'enforce: the cooling instance');
$ra = header($r, 'Retry-After');
ok(defined $ra && $ra > 3000, '... Retry-After ' . ($ra || 'none'));

is(scalar(grep { ($_->{target} || '') =~ /\Q$PROJECT\E/ }
    $t->upstream_records), 1, 'one batch of the project forwarded');

$t->done_testing;
