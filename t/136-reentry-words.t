#!/usr/bin/perl

# A refused request that post_action sends on is not forwarded, and the
# [warn] line that says so tells who refused it: the gateway, which
# checked the batch (a route, a body, the allow-list), or nginx before
# the gateway checked anything (an access check).  A reviewer reading
# "refused before it was checked" of a batch the allow-list denied
# would look for a hole in the check that is not there.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->upstream(name => 'B');
$t->write_credentials;

$t->run(<<"CONF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    # the gateway decides, then post_action to an unguarded proxy
    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            post_action \@notify;
        }

        location \@notify {
            proxy_pass http://127.0.0.1:%%PORT_B%%;
        }
    }

    # nginx refuses first (deny), then the same post_action
    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            deny all;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            post_action \@notify;
        }

        location \@notify {
            proxy_pass http://127.0.0.1:%%PORT_B%%;
        }
    }
}
CONF

my @cases = (
    'allow-list denies' => [ upgrade_path(), batch_json([ $OTHER_INSTANCE ]),
        403, 0 ],
    'route refused'     => [ upgrade_path() . '?x=1',
        batch_json([ $INSTANCES[0] ]), 404, 0 ],
    'body refused'      => [ upgrade_path(), '{"delay":"false"}', 400, 0 ],
    'access refused'    => [ upgrade_path(), batch_json([ $INSTANCES[0] ]),
        403, 1 ],
);

while (my ($name, $c) = splice @cases, 0, 2) {
    my ($path, $body, $status, $port) = @$c;

    my $r = $t->post($path, $body, port => $port);
    is($r->{status}, $status, "$name: $status");

    my $id = header($r, 'X-Taurus-Guard-Id') || 'none';
    my $line = not_forwarded_line($id);

    ok(defined $line, "$name: post_action not forwarded, said at [warn]");

    if ($port == 0) {
        like($line || '', qr/: the gateway refused it/,
            "$name: said to be the gateway's refusal");
        unlike($line || '', qr/before it was checked/,
            "$name: not said to be refused before it was checked");

    } else {
        like($line || '', qr/: it was refused before it was checked/,
            "$name: said to be refused before it was checked");
    }
}

is(scalar $t->upstream_records, 0, 'nothing reached the upstream');
is(scalar $t->upstream_records('B'), 0, 'nothing reached post_action\'s');

$t->done_testing;


# post_action runs after the answer: its line may come a little later

sub not_forwarded_line {
    my ($id) = @_;

    for (1 .. 50) {
        my ($line) = grep { /request $id not forwarded from "\@notify"/ }
            split /\n/, $t->error_log;
        return $line if defined $line;
        select(undef, undef, undef, 0.1);
    }

    return undef;
}
