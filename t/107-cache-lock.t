#!/usr/bin/perl

# Fail closed when the proxy does not build its request at once: a batch
# waiting for a proxy_cache_lock is built after the secret headers were
# taken back, so the gateway refuses that build (500) and nothing goes
# out unsigned.  The upstream here is a slow one of the test's own, so
# the second batch's lock wait ends first.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;

# a slow upstream: reads each request, records its headers, answers
# after 2 s with a cacheable 200

my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1:0', Listen => 8,
    ReuseAddr => 1) or die "listen: $!\n";
my $slow = $srv->sockport;

my $kid = fork;
die "fork: $!\n" unless defined $kid;

if ($kid == 0) {
    while (my $c = $srv->accept) {
        next if fork;
        my ($head, $buf) = ('', '');
        while ($head !~ /\r\n\r\n/) {
            sysread($c, $buf, 4096) or last;
            $head .= $buf;
        }
        my ($len) = $head =~ /^content-length:\s*(\d+)/mi;
        my ($h) = split /\r\n\r\n/, $head, 2;
        my $body = length($head) - length($h) - 4;
        while (defined $len && $body < $len) {
            my $n = sysread($c, $buf, 4096) or last;
            $body += $n;
        }
        if (open my $fh, '>>', "$dir/slow.log") {
            my $auth = $h =~ /^authorization:/mi ? 'signed' : 'unsigned';
            print $fh "$auth\n";
            close $fh;
        }
        sleep 2;
        print $c "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            . "Cache-Control: max-age=60\r\nContent-Length: 2\r\n"
            . "Connection: close\r\n\r\n{}";
        close $c;
        POSIX::_exit(0);
    }
    POSIX::_exit(0);
}

close $srv;

$t->write_credentials;

$t->run(<<"CONF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    proxy_cache_path %%TESTDIR%%/cache keys_zone=batches:1m;

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:$slow;
            proxy_cache batches;
            proxy_cache_methods POST;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 500ms;
        }
    }
}
CONF

my @res = $t->concurrent_posts(upgrade_path(),
    batch_json([ $INSTANCES[0] ]), 2);

is(join(',', sort map { $_->[0] } @res), '200,500',
    'one forwarded, the one built late refused');

my @log = split /\n/, ($t->read_file('slow.log') || '');
is_deeply(\@log, [ 'signed' ], 'the upstream got one request, signed');

like($t->error_log, qr/did not build its upstream request at once/,
    'the late build is announced');
like($t->error_log, qr/upstream request built after the secret headers/,
    'and refused');

my %by = map { $_->[0] => $_->[2] } @res;
my @a = $t->wait_audit($by{500} || 'none', 2);
is(join(',', map { $_->{decision} } @a), 'allow,done',
    'refused: allow, done');
ok(defined $a[1]{forwarded} && !$a[1]{forwarded},
    'refused: done says not forwarded');

kill 'TERM', $kid;
waitpid $kid, 0;

my $v = $t->_cmd($t->repo . '/build/taurus-guard-verify',
    $t->testdir . '/audit.log');
like($v, qr/chain intact/, 'the audit log verifies');

$t->done_testing;
