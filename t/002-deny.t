#!/usr/bin/perl

# Denied batches: 403 naming the denied IDs, all or nothing, audited,
# nothing forwarded.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;

$t->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%%  $INSTANCES[0] $INSTANCES[1];
        %%PROJECT2%% $INSTANCES[2];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF

my @cases = (
    [ 'unknown instance', $PROJECT, [ $OTHER_INSTANCE ], [ $OTHER_INSTANCE ] ],
    [ 'instance of another project', $PROJECT, [ $INSTANCES[2] ],
        [ $INSTANCES[2] ] ],
    [ 'project without an allow-list', 'abcdefabcdefabcdefabcdefabcdef01',
        [ $INSTANCES[0] ], [ $INSTANCES[0] ] ],
    [ 'mixed allowed and denied', $PROJECT,
        [ $INSTANCES[0], $OTHER_INSTANCE, $INSTANCES[1] ],
        [ $OTHER_INSTANCE ] ],
    [ 'two denied among allowed', $PROJECT2,
        [ $INSTANCES[0], $INSTANCES[2], $INSTANCES[1] ],
        [ $INSTANCES[0], $INSTANCES[1] ] ],
    [ 'case differs', $PROJECT, [ uc $INSTANCES[0] ], [ uc $INSTANCES[0] ] ],
);

for my $c (@cases) {
    my ($name, $project, $ids, $denied) = @$c;

    my $r = $t->post(upgrade_path($project), batch_json($ids));
    my $j = $t->is_refusal($r, 403, 'TG.0403', $name);

    for my $d (@$denied) {
        like($j->{error_msg} || '', qr/\Q$d\E/, "$name: names $d");
    }
    is_deeply([ sort @{ $j->{denied} || [] } ], [ sort @$denied ],
        "$name: denied list");

    my %allowed = map { $_ => 1 } @$ids;
    delete $allowed{$_} for @$denied;
    for my $a (keys %allowed) {
        unlike($j->{error_msg} || '', qr/\Q$a\E/,
            "$name: does not name allowed $a");
    }

    my $id = $j->{audit_id} || 'none';
    my @a = $t->wait_audit($id, 1);
    is(scalar @a, 1, "$name: one audit record");
    my $a = $a[0] || {};
    is($a->{decision}, 'deny', "$name: decision deny");
    is($a->{status}, 403, "$name: audit status");
    is($a->{project_id}, $project, "$name: audit project_id");
    ok(defined $a->{reason} && length $a->{reason}, "$name: audit reason");
    is_deeply([ sort @{ $a->{denied} || [] } ], [ sort @$denied ],
        "$name: audit denied");
    is_deeply([ map { $_->{instance_id} } @{ $a->{instances} || [] } ],
        $ids, "$name: audit instances");
    ok(!defined $a->{body_sha256}, "$name: no body_sha256");
}

is(scalar $t->upstream_records, 0, 'nothing forwarded');
is(scalar(grep { ($_->{decision} || '') eq 'done' } $t->audit_records), 0,
    'no done record');

# the same project still works: the refusals above changed nothing

my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[1] ]));
is($r->{status}, 200, 'allowed after denials');

$t->done_testing;
