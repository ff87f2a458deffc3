#!/usr/bin/perl

# Several batches on one keep-alive client connection, with the default
# durable audit (group flush in a thread pool): each waits for its flush
# and no other event resumes it early.  An earlier module let a write
# event on the kept-alive connection resume the second request before
# its flush, which then hung for good.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use IO::Socket::INET;
use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;

$t->run(<<"CONF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0] $INSTANCES[1];
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
CONF

my $port = $t->port(0);
my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Proto => 'tcp',
    Timeout => 5) or die "connect: $!\n";
binmode $s;

my $path = upgrade_path();
my @ids;

for my $i (1 .. 4) {
    my $body = batch_json([ $INSTANCES[$i % 2] ]);

    syswrite($s, "POST $path HTTP/1.1\r\nHost: localhost\r\n"
        . "Content-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n$body");

    my $resp = read_response($s, 5);
    my ($status) = $resp =~ m{\AHTTP/1\.1 (\d{3})};
    my ($id) = $resp =~ /^X-Taurus-Guard-Id: ([0-9a-f]{32})\r$/mi;

    is($status, 200, "request $i on one connection: 200");
    ok($id, "request $i: audit id");
    push @ids, $id || "none-$i";
}

close $s;

my @up = $t->upstream_records;
is(scalar @up, 4, 'four batches forwarded');
is(scalar(grep { $_->{signature}{ok} } @up), 4, 'all four verify upstream');
is(scalar(grep { $_->{audit_seen} } @up), 4,
    'each allow record was on disk before the upstream saw the batch');

for my $id (@ids) {
    my @a = $t->wait_audit($id, 2);
    is(join(',', map { $_->{decision} } @a), 'allow,done',
        "$id: allow then done");
}

$t->done_testing;


# one response with a Content-Length body, or what came within $timeout

sub read_response {
    my ($s, $timeout) = @_;

    my $buf = '';
    my $sel = IO::Select->new($s);
    my $end = now() + $timeout;

    while (now() < $end && $sel->can_read($end - now())) {
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;

        if ($buf =~ /\r\n\r\n/) {
            my ($head, $rest) = split /\r\n\r\n/, $buf, 2;
            my ($len) = $head =~ /^Content-Length: (\d+)\r?$/mi;
            return $buf if defined $len && length($rest) >= $len;
        }
    }

    return $buf;
}
