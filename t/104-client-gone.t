#!/usr/bin/perl

# A client that closes its connection while its batch waits for the
# audit flush gets nothing forwarded: the allow is closed by an error
# record saying so, the request ends as 499, and nothing alerts.  Over
# HTTP/2 too (with a curl that speaks it).  A flush that fails after the
# allow was written closes it with an error record as well.
# fdatasync() is held by an LD_PRELOAD shim built here while a flag
# file exists, only to make the window certain.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

plan(skip_all => 'a sanitizer build cannot take an LD_PRELOAD shim')
    if defined $ENV{TG_MODULE} && $ENV{TG_MODULE} eq '';
system('cc --version >/dev/null 2>&1') == 0
    or plan(skip_all => 'no C compiler for the shim');

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;

my $shim = $t->sync_shim()
    or plan(skip_all => 'no fdatasync shim (no compiler, or a sanitizer build)');

$t->upstream;
$t->write_credentials;

{
    local $ENV{LD_PRELOAD} = $shim;

    $t->run(<<"CONF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
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
    }

    server {
        listen 127.0.0.1:%%PORT_1%% http2;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
CONF
}

my $body = batch_json([ $INSTANCES[0] ]);

$t->write_file('hold', '');

my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $t->port(0))
    or die "connect: $!\n";
print $s 'POST ' . upgrade_path() . " HTTP/1.1\r\nHost: localhost\r\n"
    . "Content-Type: application/json\r\nContent-Length: " . length($body)
    . "\r\n\r\n$body";

# the allow record is written, its flush held: the client goes

my @a;
my $end = now() + 5;
sleep 0.05 while !(@a = grep { $_->{decision} eq 'allow' }
    $t->audit_records) && now() < $end;
is(scalar @a, 1, 'the allow record is written');
my $id = $a[0]{id} || 'none';

close $s;
sleep 0.3;
unlink "$dir/hold";

@a = $t->wait_audit($id, 2);
is(join(',', map { $_->{decision} } @a), 'allow,error',
    'allow, then error');
is($a[1]{reason}, 'client closed the connection before the forward',
    'the error says why');
is($a[1]{status}, 499, 'the error says 499');
is(scalar $t->upstream_records, 0, 'nothing was forwarded');

# the next batch goes through as usual

my $r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, 'the next batch: 200');
is(scalar $t->upstream_records, 1, 'the next batch is forwarded');

# the same over HTTP/2: the stream's connection is marked when it goes

SKIP: {
    my $curl_v = `curl -V 2>/dev/null` || '';
    skip 'no curl with HTTP/2', 4
        unless $curl_v =~ /^Features:.*\bHTTP2\b/m;

    $t->write_file('body.json', $body);
    $t->write_file('hold', '');

    my $n = () = $t->audit_records;
    my $url = 'http://127.0.0.1:' . $t->port(1) . upgrade_path();
    system("curl -s -o /dev/null --http2-prior-knowledge --max-time 1 "
        . "-H 'Content-Type: application/json' "
        . "--data-binary \@$dir/body.json $url");

    sleep 0.3;
    unlink "$dir/hold";

    my @new;
    $end = now() + 5;
    while (now() < $end) {
        @new = ($t->audit_records)[$n .. 999];
        @new = grep { defined } @new;
        last if @new >= 2;
        sleep 0.05;
    }

    is(join(',', map { $_->{decision} } @new), 'allow,error',
        'HTTP/2: allow, then error');
    is($new[1]{reason}, 'client closed the connection before the forward',
        'HTTP/2: the error says why');
    is($new[1]{id}, $new[0]{id}, 'HTTP/2: the same id');
    is(scalar $t->upstream_records, 1, 'HTTP/2: nothing was forwarded');
}

# a flush that fails after the allow was written: 503, closed by error

$t->expect_alert(qr/fdatasync\(\) to audit log/);
$t->write_file('fail', '');

$r = $t->post(upgrade_path(), $body);
unlink "$dir/fail";

$t->is_refusal($r, 503, 'TG.0503', 'failed flush');
$id = header($r, 'X-Taurus-Guard-Id') || 'none';
@a = $t->wait_audit($id, 2);
is(join(',', map { $_->{decision} } @a), 'allow,error',
    'failed flush: allow, then error');
is($a[1]{reason}, 'audit log unavailable', 'failed flush: the reason');
is(scalar $t->upstream_records, 1, 'failed flush: nothing forwarded');

my $v = $t->_cmd($t->repo . '/build/taurus-guard-verify',
    $t->testdir . '/audit.log');
like($v, qr/chain intact/, 'the audit log verifies');

$t->done_testing;
