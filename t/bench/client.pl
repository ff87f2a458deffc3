#!/usr/bin/perl
# client.pl PORT PATH BODY_FILE COUNT: COUNT POSTs of the body on one
# keepalive connection, one after the other; dies unless every answer is
# a 200.  The callgrind cases of t/bench/run.sh use it: wrk runs for a
# time, this runs for a count, so instructions divide exactly.

use strict;
use warnings;

use IO::Socket::INET;

my ($port, $path, $file, $count) = @ARGV;
die "usage: $0 PORT PATH BODY_FILE COUNT\n" unless defined $count;

open my $fh, '<:raw', $file or die "$file: $!\n";
my $body = do { local $/; <$fh> };
close $fh;

my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Proto => 'tcp')
    or die "connect 127.0.0.1:$port: $!\n";
binmode $s;

my $req = "POST $path HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    . "Content-Type: application/json\r\n"
    . 'Content-Length: ' . length($body) . "\r\n\r\n" . $body;

for my $i (1 .. $count) {
    print {$s} $req or die "write: $!\n";

    my $head = '';
    while ($head !~ /\r\n\r\n/) {
        my $n = sysread($s, $head, 4096, length $head);
        die "request $i: connection closed\n" unless $n;
    }

    my ($h, $rest) = split /\r\n\r\n/, $head, 2;
    $h =~ m{^HTTP/1\.[01] (\d+)} or die "request $i: bad status line\n";
    my $status = $1;
    my ($len) = $h =~ /^Content-Length:\s*(\d+)/mi;
    die "request $i: no Content-Length\n" unless defined $len;

    while (length $rest < $len) {
        my $n = sysread($s, $rest, $len - length $rest, length $rest);
        die "request $i: connection closed in the body\n" unless $n;
    }

    die "request $i: status $status: $rest\n" unless $status == 200;
}

close $s;
