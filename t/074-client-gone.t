#!/usr/bin/perl

# A client that closes its connection while its batch waits for the
# audit flush gets nothing forwarded: the allow is closed by an error
# record saying so, the request ends as 499, and nothing alerts.
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

$t->write_file('holdsync.c', <<"EOF_C");
#define _GNU_SOURCE
#include <dlfcn.h>
#include <unistd.h>

int
fdatasync(int fd)
{
    int          i;
    static int  (*real)(int);

    if (real == NULL) {
        real = (int (*)(int)) dlsym(RTLD_NEXT, "fdatasync");
    }

    /* while the flag file exists, at most 20 s */
    for (i = 0; i < 2000 && access("$dir/hold", F_OK) == 0; i++) {
        usleep(10000);
    }

    return real(fd);
}
EOF_C

system("cc -shared -fPIC -o $dir/holdsync.so $dir/holdsync.c -ldl") == 0
    or plan(skip_all => 'the shim does not build');
chmod 0755, "$dir/holdsync.so";

$t->upstream;
$t->write_credentials;

{
    local $ENV{LD_PRELOAD} = "$dir/holdsync.so";

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
my $end = time + 5;
sleep 0.05 while !(@a = grep { $_->{decision} eq 'allow' }
    $t->audit_records) && time < $end;
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

my $v = $t->_cmd($t->repo . '/build/taurus-guard-verify',
    $t->testdir . '/audit.log');
like($v, qr/chain intact/, 'the audit log verifies');

$t->done_testing;
