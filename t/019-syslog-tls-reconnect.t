#!/usr/bin/perl

# A graceful shutdown (QUIT, and so a reload) while a TLS syslog
# collector is behind, as t/074 has it over TCP: nginx closes the
# collector's connection with its idle ones, and a record written
# afterwards connects again, sends from the first frame not counted as
# sent, and the worker exits.  The old connection's data still arrives
# once the collector reads on.
#
#   - every record of the file reaches the collector, or is counted as
#     not sent: the worker closed its new connection with the
#     collector's TLS 1.3 session tickets unread, the kernel reset it
#     and threw away the records it had yet to send;
#   - no record arrives on both connections: the worker gave OpenSSL the
#     whole queue in one SSL_write(), which encrypts and writes record
#     after record while the socket takes them and counts none as sent
#     until all are, so the frames of those records went again on the
#     next connection.
#
# The collector (Test::TaurusGuard::TLSCollector): a TCP relay in front
# of two TLS ends, one per connection.  The relay stops reading the first
# connection once it has passed 4 KB of it, then 64 KB more once the file
# "nudge" exists, then nothing until the file "release" exists.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);
use Test::TaurusGuard::TLSCollector
    qw(tls_collector tls_collector_conf tls_collector_finish);

my $json = JSON::PP->new->utf8->canonical;

my $t = Test::TaurusGuard->new;
my ($port, $slow) = tls_collector($t);

$t->write_credentials;
$t->run(tls_collector_conf($port, $slow));

# denied batches of about 5 KB records until the socket is full and the
# queue grows

my $v = 'v' x 100;
my $items = [ map { { instance_id => sprintf('%032xin07', $_),
    current_version => $v } } 1 .. 25 ];
my $m;
for my $i (1 .. 3000) {
    my $r = $t->post(upgrade_path(), $json->encode({
        databases_instance_infos => $items, delay => 'false' }));
    (undef, $m) = $t->metrics if $i % 20 == 0;
    last if $i % 20 == 0
        && ($m->{taurus_guard_syslog_queued_bytes} || 0) > 400000;
}
(undef, $m) = $t->metrics;
note("queued bytes: " . ($m->{taurus_guard_syslog_queued_bytes} || 0));

# the collector reads 64 KB more: the worker writes on into the room made

$t->write_file('nudge', '');
sleep 1;

tls_collector_finish($t);

$t->done_testing;
