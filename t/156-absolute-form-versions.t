#!/usr/bin/perl

# The absolute-form check is for HTTP/1 request lines only (HTTP/2 has
# no such form, and nginx 1.29.1 and later keep :authority where the
# check looks).  Neither side of that line lets a target other than the
# route through:
#
#   - HTTP/1.0 and HTTP/1.99 request lines in absolute form are refused
#     (404 TG.0404), as t/004's HTTP/1.1 one is;
#   - "HTTP/2.0" in a request line on an HTTP/1 connection is nginx's
#     505, before any phase: no record, nothing forwarded;
#   - over HTTP/2 (h2c, frames written here, core Perl only) the route
#     is forwarded, with the route as the target; a :path in absolute
#     form and an :authority with a path in it are nginx's 400.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use IO::Socket::INET;
use Test::More;

use Test::TaurusGuard qw(:all);

my $nginx = $ENV{TG_NGINX} || '/usr/sbin/nginx';
plan(skip_all => "$nginx has no HTTP/2")
    unless `$nginx -V 2>&1` =~ /--with-http_v2_module/;

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
        listen 127.0.0.1:%%PORT_1%% http2;
        server_name localhost;

        location / {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
CONF

my $body = batch_json([ $INSTANCES[0] ]);

sub line {
    my ($line) = @_;
    return $t->http("$line\r\nHost: localhost\r\nConnection: close\r\n"
        . "Content-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n$body");
}

# HTTP/1

for my $v ('1.0', '1.99') {
    my $r = line("POST http://localhost" . upgrade_path() . " HTTP/$v");
    my $j = $t->is_refusal($r, 404, 'TG.0404', "HTTP/$v absolute-form");
    is($j->{error_msg}, 'absolute-form request target',
        "HTTP/$v absolute-form: said to be");
}

my $r = line("POST http://localhost" . upgrade_path() . " HTTP/2.0");
is($r->{status}, 505, 'HTTP/2.0 on an HTTP/1 connection: nginx\'s 505');

is(scalar $t->upstream_records, 0, 'HTTP/1: nothing forwarded');

# HTTP/2: an HPACK literal without indexing is 0x00, the name and the
# value, each after its length (all shorter than 127 bytes here)

sub h2 {
    my (@h) = @_;

    my $hb = join '', map { "\x00" . chr(length $_->[0]) . $_->[0]
                            . chr(length $_->[1]) . $_->[1] } @h;

    my $frame = sub {
        my ($type, $flags, $payload) = @_;
        my $len = length $payload;
        return pack('CnCCN', $len >> 16, $len & 0xffff, $type, $flags,
            $type == 4 ? 0 : 1) . $payload;
    };

    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $t->port(1),
        Proto => 'tcp', Timeout => 5) or die "connect: $!\n";
    binmode $s;

    syswrite($s, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" . $frame->(4, 0, '')
        . $frame->(1, 0x4, $hb) . $frame->(0, 0x1, $body));

    # the status of stream 1: nginx sends it as an indexed field (0x88
    # is 200, 0x8c 400) or as the :status name with a 3-digit literal

    my ($buf, $status) = ('', 0);
    my $sel = IO::Select->new($s);
    my $end = now() + 10;

    while (!$status && now() < $end && $sel->can_read(1)) {
        last unless sysread($s, $buf, 65536, length $buf);

        while (length $buf >= 9) {
            my ($hi, $lo, $type, $flags, $id) = unpack('CnCCN', $buf);
            my $len = ($hi << 16) | $lo;
            last if length $buf < 9 + $len;
            my $p = substr($buf, 9, $len);
            substr($buf, 0, 9 + $len) = '';

            next unless $type == 1 && $id == 1;

            my %indexed = (0x88 => 200, 0x8c => 400, 0x8d => 404);
            my $b = ord $p;
            $status = $indexed{$b} || ($b == 0x48 ? substr($p, 2, 3) : -1);
        }
    }

    close $s;
    return $status;
}

my @pseudo = ([ ':method', 'POST' ], [ ':scheme', 'http' ]);
my @ct = ([ 'content-type', 'application/json' ]);

is(h2(@pseudo, [ ':authority', 'localhost' ], [ ':path', upgrade_path() ],
    @ct), 200, 'HTTP/2: the route forwarded');

my @up = $t->upstream_records;
is(scalar @up, 1, 'HTTP/2: once');
is($up[0] && $up[0]{target}, upgrade_path(), 'HTTP/2: to the route');

is(h2(@pseudo, [ ':authority', 'localhost' ],
    [ ':path', 'http://localhost' . upgrade_path() ], @ct), 400,
    'HTTP/2: an absolute :path is nginx\'s 400');

is(h2(@pseudo, [ ':authority', 'localhost' . upgrade_path() ],
    [ ':path', upgrade_path() ], @ct), 400,
    'HTTP/2: an :authority with a path is nginx\'s 400');

is(scalar $t->upstream_records, 1, 'HTTP/2: nothing else forwarded');

$t->done_testing;
