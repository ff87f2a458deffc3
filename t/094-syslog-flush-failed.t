#!/usr/bin/perl

# What the syslog collector holds of a batch whose audit flush failed.
# A record leaves for the collector once it is written to the file,
# before its flush ends (taurus_guard_audit_syslog): the collector gets
# the batch's allow record, the batch is then refused (503) because the
# flush failed, and its error record follows, to the file and to the
# collector alike.  The collector holds what the file holds, in the
# file's order: an allow there, as in the file, says the batch was
# decided, and the record with the same id after it says whether it
# went.  With the thread pool and in the event loop; the fdatasync()
# shim (t/lib/tg-syncshim.c) fails while "fail" exists.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

plan(skip_all => 'a sanitizer build cannot take an LD_PRELOAD shim')
    if defined $ENV{TG_MODULE} && $ENV{TG_MODULE} eq '';

my $json = JSON::PP->new->utf8;
my @kids;

END {
    local $?;
    for my $pid (@kids) {
        kill 'TERM', $pid;
        waitpid $pid, 0;
    }
}

# a collector that appends what it reads to $file

sub collector {
    my ($port, $file) = @_;

    my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$port",
        Proto => 'tcp', Listen => 8, ReuseAddr => 1)
        or die "collector on $port: $!\n";

    my $pid = fork;
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        $SIG{TERM} = sub { POSIX::_exit(0) };
        while (my $c = $l->accept) {
            while (sysread($c, my $buf, 65536)) {
                open my $fh, '>>', $file or POSIX::_exit(1);
                binmode $fh;
                print $fh $buf;
                close $fh;
            }
            close $c;
        }
        POSIX::_exit(0);
    }

    close $l;
    push @kids, $pid;
}

# the records in the collector's octet-counted RFC 5424 frames

sub collected {
    my ($file) = @_;
    open my $fh, '<', $file or return ();
    binmode $fh;
    local $/;
    my $data = <$fh> // '';
    close $fh;

    my ($pos, @r) = (0);
    while (substr($data, $pos, 12) =~ /\A(\d+) /) {
        my ($len, $start) = ($1, $pos + length($1) + 1);
        last if length($data) < $start + $len;
        my $m = substr($data, $start, $len);
        push @r, $m =~ / audit - (\{.*\})\z/s ? $1 : "?$m";
        $pos = $start + $len;
    }
    return @r;
}

for my $how ('timeout=1s', 'thread_pool=off') {
    my $name = $how =~ /off/ ? 'event loop' : 'thread pool';

    my $t = Test::TaurusGuard->new;
    my $dir = $t->testdir;
    my $shim = $t->sync_shim() or plan(skip_all => 'the shim does not build');
    my $port = $t->port('SYSLOG');

    collector($port, "$dir/collected");

    $t->upstream;
    $t->write_credentials;
    $t->expect_alert(qr/taurus_guard: fdatasync\(\) to audit log .* failed/);

    {
        local $ENV{LD_PRELOAD} = $shim;
        $t->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log $how;
    taurus_guard_audit_syslog server=127.0.0.1:%%PORT_SYSLOG%%;

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

    my $ok = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
    is($ok->{status}, 200, "$name: a batch flushed: 200");

    $t->write_file('fail', '');
    my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[1] ]));
    is($r->{status}, 503, "$name: a batch whose flush fails: 503");
    unlink "$dir/fail";

    my $id = header($r, 'X-Taurus-Guard-Id') // '';
    my @file = $t->wait_audit($id, 2);
    is(join(',', map { $_->{decision} } @file), 'allow,error',
        "$name: the file: allow, then error");

    my @lines = split /\n/, $t->read_file('audit.log') // '';
    my @got;
    for (1 .. 50) {
        @got = collected("$dir/collected");
        last if @got >= @lines;
        sleep 0.1;
    }

    my @mine = grep { ($_->{id} // '') eq $id }
        map { eval { $json->decode($_) } || {} } @got;
    is(join(',', map { $_->{decision} // '?' } @mine), 'allow,error',
        "$name: the collector: the allow record, then the error record");
    is($mine[1]{reason} // '', 'audit log unavailable',
        "$name: the error record says why the batch did not go");
    is(join("\n", @got), join("\n", @lines),
        "$name: the collector holds the file's records, in its order");

    if ($name eq 'thread pool') {

        # a flush held past timeout=: the batch is refused while its
        # flush still runs, and the collector has its allow and error

        $t->write_file('hold', '');
        $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[2] ]));
        is($r->{status}, 503, "$name: a batch whose flush times out: 503");
        $id = header($r, 'X-Taurus-Guard-Id') // '';
        @file = $t->wait_audit($id, 2);
        unlink "$dir/hold";

        for (1 .. 50) {
            @mine = grep { ($_->{id} // '') eq $id }
                map { eval { $json->decode($_) } || {} }
                collected("$dir/collected");
            last if @mine >= 2;
            sleep 0.1;
        }
        is(join(',', map { ($_->{decision} // '?') . ':'
                . ($_->{reason} // '') } @mine),
            join(',', map { ($_->{decision} // '?') . ':'
                . ($_->{reason} // '') } @file),
            "$name: timed out: the collector has what the file has");
        is(join(',', map { $_->{decision} // '?' } @mine), 'allow,error',
            "$name: timed out: the allow record, then the error record");
    }

    $t->finish;
}

done_testing;
