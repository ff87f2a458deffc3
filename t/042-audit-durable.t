#!/usr/bin/perl

# The allow record is in the audit file before the upstream sees the
# request (the upstream looks for the id in the file when the request
# arrives: audit_seen), whatever the flush: fdatasync in the default
# thread pool, in a named pool, in the event loop (thread_pool=off), or
# no flush (fsync=off).  Many batches at once all go through the group
# commit.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

my $PARALLEL = 40;

my %setups = (
    'default (fsync=on, thread pool default)' => {
        audit => '',
    },
    'thread_pool=off' => {
        audit => ' thread_pool=off',
    },
    'fsync=off' => {
        audit => ' fsync=off',
    },
    'fsync=on thread_pool=tgflush (declared, threads=2)' => {
        audit => ' fsync=on thread_pool=tgflush',
        main  => "thread_pool tgflush threads=2;\n",
    },
);

sub conf {
    my ($s) = @_;
    return ($s->{main} || '') . <<"EOF";
worker_processes 2;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log$s->{audit};

    taurus_guard_allow {
        %%PROJECT%% @INSTANCES;
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
}

# $n batches sent at once on $n connections, then all answers read

sub parallel {
    my ($t, $n) = @_;

    my $port = $t->port(0);
    my (%socks, %buf);
    local $SIG{PIPE} = 'IGNORE';

    for my $i (1 .. $n) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
            Proto => 'tcp', Timeout => 5) or next;
        $socks{$i} = $s;
        $buf{$i} = '';
    }

    for my $i (sort { $a <=> $b } keys %socks) {
        my $body = batch_json([ [ $INSTANCES[$i % 3], "2.0.48.$i" ] ]);
        my $req = "POST " . upgrade_path() . " HTTP/1.1\r\n"
            . "Host: localhost\r\nConnection: close\r\n"
            . "Content-Type: application/json\r\n"
            . "Content-Length: " . length($body) . "\r\n\r\n$body";
        syswrite($socks{$i}, $req);
    }

    my $sel = IO::Select->new(values %socks);
    my %fd = map { fileno($socks{$_}) => $_ } keys %socks;
    my $end = now() + 15;

    while ($sel->count && now() < $end) {
        for my $s ($sel->can_read($end - now())) {
            my $i = $fd{ fileno $s };
            my $r = sysread($s, $buf{$i}, 65536, length $buf{$i});
            if (!$r) {
                $sel->remove($s);
                close $s;
            }
        }
    }

    return map { Test::TaurusGuard::parse_response($buf{$_}) }
        sort { $a <=> $b } keys %buf;
}

for my $name (sort keys %setups) {
    my $t = Test::TaurusGuard->new;
    $t->upstream;
    $t->write_credentials;
    $t->run(conf($setups{$name}));

    # one batch

    my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
    is($r->{status}, 200, "$name: 200");
    my $id = header($r, 'X-Taurus-Guard-Id') || 'none';
    my @up = $t->upstream_records;
    is(scalar @up, 1, "$name: forwarded");
    is(($up[0] || {})->{audit_seen}, 1,
        "$name: allow record in the file before the upstream saw it");
    my @a = $t->wait_audit($id, 2);
    is(join(',', map { $_->{decision} } @a), 'allow,done',
        "$name: allow then done");

    # many at once

    my @rs = parallel($t, $PARALLEL);
    is(scalar(grep { ($_->{status} || 0) == 200 } @rs), $PARALLEL,
        "$name: $PARALLEL batches at once, all 200")
        or diag(join ' ', map { $_->{status} || 'none' } @rs);

    @up = $t->upstream_records;
    is(scalar @up, $PARALLEL + 1, "$name: all forwarded");
    is(scalar(grep { ($_->{audit_seen} || 0) != 1 } @up), 0,
        "$name: every one audited before the upstream saw it");
    is(scalar(grep { !$_->{signature}{ok} } @up), 0,
        "$name: every one signed");

    my %ids = map { (header($_, 'X-Taurus-Guard-Id') || '') => 1 } @rs;
    my %up_ids = map { (headers_named($_->{headers},
        'X-Taurus-Guard-Id'))[0] => 1 } @up;
    is(scalar(grep { !$up_ids{$_} } keys %ids), 0,
        "$name: every answered id was forwarded with that id");

    my @recs;
    for (1 .. 60) {
        @recs = $t->audit_records;
        last if grep({ $_->{decision} eq 'done' } @recs) >= $PARALLEL + 1;
        sleep 0.05;
    }
    is(scalar(grep { $_->{decision} eq 'allow' } @recs), $PARALLEL + 1,
        "$name: one allow record each");
    is(scalar(grep { $_->{decision} eq 'done' } @recs), $PARALLEL + 1,
        "$name: one done record each");
    is(scalar(grep { $_->{_bad_line} } @recs), 0, "$name: every line whole");

    my $v = $t->_cmd($t->repo . '/build/taurus-guard-verify',
        $t->testdir . '/audit.log');
    like($v, qr/chain intact/, "$name: chain intact");

    like($t->error_log, qr/taurus_guard: audit record \Q$id\E allow/,
        "$name: the write is logged at debug");

    $t->finish;
}

# a pool that is not declared

my $t = Test::TaurusGuard->new;
$t->write_credentials;
my ($rc, $out) = $t->nginx_t(conf({ audit => ' thread_pool=nosuchpool' }));
isnt($rc, 0, 'undeclared thread pool: nginx -t fails');
like($out, qr/unknown thread pool "nosuchpool"/,
    'undeclared thread pool: named');

($rc, $out) = $t->nginx_t(conf({ audit => ' fsync=maybe' }));
isnt($rc, 0, 'fsync=maybe: nginx -t fails');
like($out, qr/invalid parameter "fsync=maybe"/, 'fsync=maybe: named');

$t->done_testing;
