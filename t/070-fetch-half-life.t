#!/usr/bin/perl

# A fetched secret that lives no longer than its source's refresh= is
# renewed halfway through its life, not on every request.  The ECS
# metadata service's credentials and IAM's tokens here live 100 s, less
# than the default refresh of either (15 minutes, 1 hour): an earlier
# module found each new one already within refresh of its end and
# started the next renewal at once, one fetch after another for as long
# as requests came.
#
#   - 20 batches in 2 s: one fetch of each, all forwarded, signed with
#     the temporary AK/SK and carrying the IAM token, verified upstream;
#   - the gateway's wall clock moved on 55 s (the LD_PRELOAD shim
#     t/lib/tg-clockshift.c): past half the life, still valid (45 s
#     left, more than the 30 s margin), so each secret is renewed once
#     in the background while the batches go on with the current ones.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

BEGIN {
    require "$FindBin::Bin/lib/tg-metadata.pl";
    require "$FindBin::Bin/lib/tg-iam.pl";
}

plan(skip_all => 'a sanitizer build cannot take an LD_PRELOAD shim')
    if defined $ENV{TG_MODULE} && $ENV{TG_MODULE} eq '';
system('cc --version >/dev/null 2>&1') == 0
    or plan(skip_all => 'no C compiler for the shim');

my $conf = <<"EOF";
worker_processes 2;

http {
    taurus_guard_credentials metadata=/_tg_meta;
    taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini;
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

        location = /_tg_meta {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_META%%/openstack/latest/securitykey;
        }

        location = /_tg_iam {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }
    }
}
EOF

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;

system('cc', '-shared', '-fPIC', '-o', "$dir/clockshift.so",
    "$FindBin::Bin/lib/tg-clockshift.c", '-ldl') == 0
    or plan(skip_all => 'the shim does not build');
chmod 0755, "$dir/clockshift.so";

TaurusGuard::IAM::write_password_file($t);
TaurusGuard::IAM::iam_supported($t, $conf) or do {
    $t->done_testing;
    exit;
};

TaurusGuard::Metadata::start_meta($t, ttl => 100);
TaurusGuard::IAM::start_iam($t, ttl => 100);
TaurusGuard::Metadata::upstream_keys($t, tokens => "$dir/tokens");

$t->write_file('clock.offset', "0\n");

{
    local $ENV{LD_PRELOAD} = "$dir/clockshift.so";
    local $ENV{TG_CLOCK_OFFSET} = "$dir/clock.offset";
    $t->run($conf);
}

my $body = batch_json([ $INSTANCES[0] ]);

sub fetches {
    my @meta = grep { $_->{ok} } TaurusGuard::Metadata::meta_calls($t);
    my @iam = grep { $_->{ok} } TaurusGuard::IAM::iam_calls($t);
    return (scalar @meta, scalar @iam);
}

sub batches {
    my ($n, $gap) = @_;
    my @s;
    for (1 .. $n) {
        push @s, $t->post(upgrade_path(), $body)->{status} || 'none';
        sleep $gap;
    }
    return join ' ', @s;
}

# forwarded batches signed with the temporary AK/SK and carrying an IAM
# token, both verified upstream

sub verified {
    return scalar grep { $_->{signature}{ok} && $_->{token_ok} }
        $t->upstream_records;
}

is(batches(20, 0.1), join(' ', ('200') x 20), '20 batches in 2 s: 200');
sleep 0.5;

my ($meta, $iam) = fetches();
is($meta, 1, 'metadata credentials living 100 s, refresh 15m: one fetch');
is($iam, 1, 'an IAM token living 100 s, refresh 1h: one fetch');

my @up = $t->upstream_records;
is(scalar @up, 20, 'all 20 forwarded');
is(verified(), 20, 'each signed with the temporary AK/SK and carrying'
    . ' the IAM token, both verified upstream');

# past half the life: each is renewed once, in the background

$t->write_file('clock.offset', "55\n");
sleep 0.2;

is(batches(10, 0.1), join(' ', ('200') x 10),
    '55 s later (45 s left): 200, with the current secrets');
sleep 1;
is(batches(10, 0.1), join(' ', ('200') x 10), 'and with the new ones');
sleep 0.5;

($meta, $iam) = fetches();
is($meta, 2, 'metadata credentials renewed once, halfway');
is($iam, 2, 'the IAM token renewed once, halfway');

is(verified(), 40, 'all 40 verified upstream');

$t->done_testing;
