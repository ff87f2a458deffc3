#!/usr/bin/perl

# Rotation under load: four clients send allowed batches to two workers
# while the audit log is rotated three times (rename, then reopen).
# Nothing is lost or split: every forwarded request has exactly one allow
# and one done record across the files, every line is whole JSON, and the
# rotated series verifies as one chain, oldest first.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

my $verify = $t->repo . '/build/taurus-guard-verify';
plan(skip_all => "no $verify (run make verify)") unless -x $verify;

my $ROTATIONS = $ENV{TG_ROTATIONS} || 3;     # more: a harder test
my $CLIENTS = 4;
my $N = $ROTATIONS > 3 ? 15 * $ROTATIONS : 50;

my $json = JSON::PP->new->utf8;
my $dir = $t->testdir;
my $log = "$dir/audit.log";

$t->upstream;
$t->write_credentials;

$t->run(<<"EOF");
worker_processes 2;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% @INSTANCES;
    }

    server {
        # reuseport: connections are spread over both workers
        listen 127.0.0.1:%%PORT_0%% reuseport;
        server_name localhost;
        keepalive_requests 1000;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF

my $port = $t->port(0);
my $path = upgrade_path();

# a client: $N batches, on one keep-alive connection or one connection
# each; "status id" per response into a file of its own

sub client {
    my ($n, $keepalive) = @_;

    open my $out, '>', "$dir/client.$n" or POSIX::_exit(1);
    my $s;

    for my $i (1 .. $N) {
        my $body = batch_json([ [ $INSTANCES[$i % 3], "2.0.$n.$i" ] ]);
        my $req = "POST $path HTTP/1.1\r\nHost: localhost\r\n"
            . "Content-Type: application/json\r\n"
            . "Content-Length: " . length($body) . "\r\n"
            . ($keepalive ? '' : "Connection: close\r\n") . "\r\n$body";

        $s = undef unless $keepalive;
        $s ||= IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
            Proto => 'tcp', Timeout => 5);

        if (!$s) {
            print $out "none -\n";
            next;
        }

        my ($status, $id) = exchange($s, $req);
        print $out ($status || 'none') . ' ' . ($id || '-') . "\n";

        # a request that hangs fails the test; don't wait for more
        last unless $status;
    }

    close $out;
    POSIX::_exit(0);
}

# one request on a socket; the response read up to its Content-Length

sub exchange {
    my ($s, $req) = @_;

    local $SIG{PIPE} = 'IGNORE';
    syswrite($s, $req) == length $req or return;

    my $buf = '';
    my $end = now() + 3;
    my $sel = IO::Select->new($s);

    while (now() < $end) {
        if ($buf =~ /\A(.*?\r\n)\r\n/s) {
            my $head = $1;
            my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
            last if defined $len && length($buf) >= length($head) + 2 + $len;
        }
        last unless $sel->can_read($end - now());
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
    }

    my ($status) = $buf =~ /\AHTTP\/1\.1 (\d{3})/;
    my ($id) = $buf =~ /^X-Taurus-Guard-Id:\s*([0-9a-f]+)/mi;
    return ($status, $id);
}

sub count_lines {
    my ($path) = @_;
    my $c = $t->read_file($path);
    return defined $c ? ($c =~ tr/\n//) : 0;
}

my @kids;
for my $n (1 .. $CLIENTS) {
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    client($n, $n % 2) if $pid == 0;
    push @kids, $pid;
}

# rotations while they run, each once the current file holds records

my $master = $t->_nginx_pid;
my $rotated = 0;

for my $k (1 .. $ROTATIONS) {
    my $end = now() + 5;
    sleep 0.02 while count_lines($log) < 20 && now() < $end;

    rename $log, "$log.$k" or last;

    if ($k == 2) {
        $t->_cmd($t->{nginx}, '-p', "$dir/", '-c', 'conf/nginx.conf',
            '-s', 'reopen');
    } else {
        kill 'USR1', $master;
    }

    $rotated++;
    sleep 0.1;
}

is($rotated, $ROTATIONS, "$ROTATIONS rotations during the load");

for my $pid (@kids) {
    waitpid $pid, 0;
}

my @responses;
for my $n (1 .. $CLIENTS) {
    open my $fh, '<', "$dir/client.$n" or next;
    push @responses, map { [ split ' ' ] } <$fh>;
    close $fh;
}

is(scalar @responses, $CLIENTS * $N, 'every client request answered')
    or diag('a request hung');
my @ok = grep { $_->[0] eq '200' } @responses;
is(scalar @ok, $CLIENTS * $N, 'all 200')
    or diag(join ' ', map { $_->[0] } grep { $_->[0] ne '200' } @responses);

my @files = ((map { "$log.$_" } 1 .. $ROTATIONS), $log);

# the done records follow the responses: wait for them (bounded)

sub records {
    my (@recs, @bad, @torn);
    for my $f (@files) {
        my $c = $t->read_file($f);
        $c = '' unless defined $c;
        push @torn, $f if length $c && substr($c, -1) ne "\n";
        for my $l (split /\n/, $c) {
            my $v = eval { $json->decode($l) };
            if ($v && ref $v eq 'HASH') {
                push @recs, { %$v, _file => $f };
            } else {
                push @bad, "$f: $l";
            }
        }
    }
    return (\@recs, \@bad, \@torn);
}

my ($recs, $bad, $torn);
for (1 .. 100) {
    ($recs, $bad, $torn) = records();
    my $done = grep { $_->{decision} eq 'done' } @$recs;
    last if $done >= @ok;
    sleep 0.05;
}

is(scalar @$bad, 0, 'every line is one JSON record')
    or diag(join "\n", @$bad[0 .. ($#$bad > 5 ? 5 : $#$bad)]);
is(scalar @$torn, 0, 'every file ends with a newline')
    or diag("@$torn");

for my $f (@files) {
    ok(count_lines($f) > 0, "$f holds records");
}

my @up = $t->upstream_records;
my (%allow, %done);
for my $r (@$recs) {
    push @{ $allow{ $r->{id} } }, $r if $r->{decision} eq 'allow';
    push @{ $done{ $r->{id} } }, $r if $r->{decision} eq 'done';
}

is(scalar @up, scalar @ok, 'upstream requests == 200 responses');
is(scalar(map { @$_ } values %allow), scalar @up,
    'allow records == upstream requests');
is(scalar(map { @$_ } values %done), scalar @up,
    'done records == upstream requests');
is(scalar(grep { $_->{decision} ne 'allow' && $_->{decision} ne 'done' }
    @$recs), 0, 'no other decision');

my ($missing, $dup) = (0, 0);
for my $u (@up) {
    my ($uid) = headers_named($u->{headers}, 'X-Taurus-Guard-Id');
    $uid = 'none' unless defined $uid;
    my $a = $allow{$uid} || [];
    my $d = $done{$uid} || [];
    if (@$a != 1 || @$d != 1) {
        diag("id $uid: " . @$a . ' allow, ' . @$d . ' done');
        @$a || @$d ? $dup++ : $missing++;
        next;
    }
    $missing++ unless $d->[0]{status} == 200;
    $missing++ unless $a->[0]{body_sha256} eq $u->{body_sha256};
}
is($missing + $dup, 0, 'every forwarded request: exactly one allow (its '
    . 'body digest) and one done (200) record with its id');

my %resp_ids = map { $_->[1] => 1 } @ok;
is(scalar(grep { !$resp_ids{$_} } keys %allow), 0,
    'every allow id was answered to a client');

# no record in two files, and a record's file follows its order

my $order_ok = 1;
for my $id (keys %allow) {
    my ($a, $d) = ($allow{$id}[0], ($done{$id} || [ {} ])->[0]);
    next unless $d->{_file};
    my ($fa) = grep { $files[$_] eq $a->{_file} } 0 .. $#files;
    my ($fd) = grep { $files[$_] eq $d->{_file} } 0 .. $#files;
    $order_ok = 0, diag("id $id: done before allow") if $fd < $fa;
}
ok($order_ok, 'no done record in an older file than its allow record');

my $out = $t->_cmd($verify, @files);
is($? >> 8, 0, 'verify of the rotated series: exit 0') or diag($out);
my $n = 2 * @ok;
my $nf = @files;
like($out, qr/ok: $n records in $nf file\(s\), chain intact/,
    'verify: every record, one chain') or diag($out);

my $rev = $t->_cmd($verify, reverse @files);
is($? >> 8, 1, 'verify, newest first: the chain breaks');

# both workers wrote records (the debug log names the writer's pid)

my $rec_re = qr/taurus_guard: audit record [0-9a-f]{32} allow\b/;
my %pids = map { $_ => 1 }
    $t->error_log =~ /^\S+ \S+ \[debug\] (\d+)#\d+: \*\d+ $rec_re/mg;
SKIP: {
    skip 'no debug log', 1 unless %pids;
    is(scalar keys %pids, 2, 'both workers wrote records');
}

$t->done_testing;
