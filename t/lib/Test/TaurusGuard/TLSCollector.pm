package Test::TaurusGuard::TLSCollector;

# A TLS syslog collector for the audit's tests (t/019, t/028): a TCP relay
# in front of two TLS ends (python3's ssl: "openssl s_server" loses the
# records it has read ahead when the connection ends), one per
# connection, each writing what it decrypts to tls.0 and tls.1 in the
# test's directory.  The relay stops reading the first connection once it
# has passed 4 KB of it (the handshake and a little more), passes 64 KB
# more once the file "nudge" exists, and all once "release" exists.  A
# slow upstream answers 200 after 3 s.  tls_collector_finish() then stops
# nginx with a batch in flight and checks what reached the collector.

use strict;
use warnings;

use Exporter qw(import);
use IO::Select;
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_RCVBUF);
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

our @EXPORT_OK = qw(tls_collector tls_collector_conf tls_collector_finish);

my @kids;
END { local $?; for (@kids) { kill 'TERM', -$_; waitpid $_, 0; } }


# Starts the collector and the slow upstream (or skips the test without
# openssl or python3); returns the relay's port and the upstream's.

sub tls_collector {
    my ($t) = @_;

    my $dir = $t->testdir;
    my $port = $t->port('SYSLOG');
    my @back = ($t->port('TLS1'), $t->port('TLS2'));
    my $slow = $t->port('SLOW');

    system('openssl version >/dev/null 2>&1') == 0
        or plan(skip_all => 'openssl is not installed');
    system('python3 -c "import ssl" >/dev/null 2>&1') == 0
        or plan(skip_all => 'python3 with ssl is not installed');



    my $run_openssl = sub {
        my $cmd = join ' ', 'openssl', @_, '>/dev/null 2>&1';
        system($cmd) == 0 or die "$cmd failed\n";
    };

    $run_openssl->(qw(req -x509 -newkey rsa:2048 -nodes -days 2),
        "-keyout $dir/ca.key -out $dir/ca.pem -subj '/CN=tg syslog CA'");
    $run_openssl->(qw(req -newkey rsa:2048 -nodes),
        "-keyout $dir/server.key -out $dir/server.csr",
        '-subj /CN=collector.test');
    $t->write_file('ext.cnf', "subjectAltName=DNS:collector.test\n");
    $run_openssl->(qw(x509 -req -days 2),
        "-in $dir/server.csr -CA $dir/ca.pem",
        "-CAkey $dir/ca.key -CAcreateserial -out $dir/server.pem",
        "-extfile $dir/ext.cnf");

    # the two TLS ends, what they decrypt to tls.0 and tls.1 (python's ssl:
    # "openssl s_server" loses the records it has read ahead when the
    # connection ends)

    my $tls_end = <<'PY';
import socket, ssl, sys
port, cert, key, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(8)
open(out + ".ready", "w").close()
while True:
    c, _ = ls.accept()
    try:
        s = ctx.wrap_socket(c, server_side=True)
    except Exception:
        c.close()
        continue
    with open(out, "ab") as f:
        while True:
            try:
                b = s.recv(65536)
            except Exception:
                break
            if not b:
                break
            f.write(b)
            f.flush()
    s.close()
PY

    for my $i (0, 1) {
        my $pid = fork;
        if ($pid == 0) {
            setpgrp(0, 0);
            open STDOUT, '>', '/dev/null'; open STDERR, '>', '/dev/null';
            exec('python3', '-c', $tls_end, $back[$i], "$dir/server.pem",
                "$dir/server.key", "$dir/tls.$i") or POSIX::_exit(127);
        }
        push @kids, $pid;
        my $until = now() + 10;
        sleep 0.1 until -e "$dir/tls.$i.ready" || now() > $until;
        die "TLS end $i does not listen\n" unless -e "$dir/tls.$i.ready";
    }

    # the relay

    my $l = IO::Socket::INET->new(Proto => 'tcp') or die "$!";
    setsockopt($l, SOL_SOCKET, SO_RCVBUF, 4096) or die "rcvbuf $!";
    setsockopt($l, SOL_SOCKET, Socket::SO_REUSEADDR, 1);
    bind($l, Socket::pack_sockaddr_in($port, Socket::inet_aton('127.0.0.1')))
        or die "bind $!";
    listen($l, 8) or die "listen $!";
    my $pid = fork;
    if ($pid == 0) {
        setpgrp(0, 0);
        open STDOUT, '>', '/dev/null'; open STDERR, '>', '/dev/null';
        $SIG{TERM} = sub { POSIX::_exit(0) };
        while (my $c = $l->accept) {
            if (fork == 0) {
                # the first connection that says TLS is held, others pass
                my $r = sysread($c, my $first, 65536);
                POSIX::_exit(0) unless $r && $first =~ /\A\x16/;
                my $hold = !-e "$dir/held";
                if ($hold) { open my $h, '>', "$dir/held"; close $h; }
                my $to = $back[$hold ? 0 : 1];
                my $s = IO::Socket::INET->new("127.0.0.1:$to")
                    or POSIX::_exit(1);
                syswrite($s, $first) == $r or POSIX::_exit(1);
                my ($passed, $eof, $limit) = ($r, 0, 4096);
                while (1) {
                    if ($hold && $limit == 4096 && -e "$dir/nudge") {
                        $limit = $passed + 65536;
                    }
                    my $sel = IO::Select->new($s);
                    $sel->add($c) unless $eof || ($hold && $passed >= $limit
                        && !-e "$dir/release");
                    my @r = $sel->can_read(0.1);
                    for my $h (@r) {
                        my $r = sysread($h, my $b, 65536);
                        if (!$r && $h == $c) {
                            # nginx is done: s_server reads all, then closes
                            shutdown($s, 1);
                            $eof = 1;
                            next;
                        }
                        POSIX::_exit(0) unless $r;
                        my $o = $h == $c ? $s : $c;
                        $passed += $r if $h == $c;
                        my $off = 0;
                        while ($off < $r) {
                            my $w = syswrite($o, $b, $r - $off, $off);
                            POSIX::_exit(0) unless $w;
                            $off += $w;
                        }
                    }
                }
            }
            close $c;
        }
        POSIX::_exit(0);
    }
    push @kids, $pid;
    close $l;

    # a slow upstream: answers 200 after 3 s

    my $ul = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$slow",
        Proto => 'tcp',
        Listen => 8, ReuseAddr => 1) or die "$!";
    my $upid = fork;
    if ($upid == 0) {
        setpgrp(0, 0);
        open STDOUT, '>', '/dev/null'; open STDERR, '>', '/dev/null';
        $SIG{TERM} = sub { POSIX::_exit(0) };
        while (my $c = $ul->accept) {
            if (fork == 0) {
                my $buf = '';
                while ($buf !~ /\r\n\r\n/) {
                    sysread($c, $buf, 65536, length $buf) or last;
                }
                sleep 3;
                print $c "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                    . "Connection: close\r\n\r\nok\n";
                close $c;
                POSIX::_exit(0);
            }
            close $c;
        }
        POSIX::_exit(0);
    }
    push @kids, $upid;
    close $ul;
    return ($port, $slow);
}


# One worker, the audit file and the collector, guarded batches to the
# slow upstream, and the metrics.

sub tls_collector_conf {
    my ($port, $slow) = @_;

    return <<"EOF";
worker_processes 1;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log fsync=off;
    taurus_guard_audit_syslog server=127.0.0.1:$port queue=8m ssl
        trusted_certificate=%%TESTDIR%%/ca.pem ssl_name=collector.test;
    taurus_guard_max_batch 100;

    taurus_guard_allow {
        %%PROJECT%% @INSTANCES;
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:$slow;
            proxy_read_timeout 30s;
        }

        location = /metrics {
            taurus_guard_metrics;
        }
    }
}
EOF
}


# A graceful shutdown with an allowed batch in flight; then no record on
# both connections, and every record of the file collected or counted as
# not sent.

sub tls_collector_finish {
    my ($t) = @_;

    my $dir = $t->testdir;

    # an allowed batch, which the slow upstream holds for 3 s

    my $bg = fork;
    if ($bg == 0) {
        my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]),
            timeout => 20);
        POSIX::_exit(0);
    }
    sleep 1;

    # graceful shutdown: the worker closes the collector's connection, and
    # the batch's done record opens a second one

    my $master = $t->_nginx_pid;
    kill 'QUIT', $master;
    waitpid $bg, 0;

    my $until = now() + 10;
    sleep 0.1 while kill(0, $master) && now() < $until;
    ok(!kill(0, $master), 'nginx exited');

    # the first connection read on, to its end

    $t->write_file('release', '');
    my ($size, $was) = (-1, -2);
    $until = now() + 20;
    while (now() < $until && $size != $was) {
        sleep 0.5;
        $was = $size;
        $size = -s "$dir/tls.0";
    }

    # whole frames of each connection

    my $frames = sub {
        my ($data) = @_;
        my ($off, @msgs) = (0);
        while ($off < length $data) {
            my ($len) = substr($data, $off, 12) =~ /\A(\d+) / or last;
            last if $off + length($len) + 1 + $len > length $data;
            my $msg = substr($data, $off + length($len) + 1, $len);
            last unless $msg =~ /\A<\d+>1 \S+ \S+ taurus-guard \d+ audit - \{/;
            push @msgs, $msg;
            $off += length($len) + 1 + $len;
        }
        return @msgs;
    };

    my @one = $frames->($t->read_file('tls.0') // '');
    my @two = $frames->($t->read_file('tls.1') // '');
    note(scalar(@one) . " frames on the first connection, " . scalar(@two)
        . " on the second");
    ok(@one > 0, 'the first connection carried records');
    ok(@two > 0, 'the worker reconnected during shutdown');

    my %first = map { $_ => 1 } @one;
    my @twice = grep { $first{$_} } @two;
    is(scalar(@twice), 0,
        'no record reached the collector on both connections')
        or diag(scalar(@twice) . " records twice, the first: "
            . substr($twice[0], 0, 160));

    # every record of the file reached the collector, but those the exiting
    # worker counted as not sent

    my %got = map { s/\A<\d+>1 \S+ \S+ taurus-guard \d+ audit - //r => 1 }
        @one, @two;
    my @lines = split /\n/, $t->read_file('audit.log');
    my @missing = grep { !$got{$_} } @lines;
    my $unsent = 0;
    $unsent += $1
        for $t->error_log =~ /worker exiting, (\d+) audit records queued/g;
    note(scalar(@lines) . " records in the file, " . scalar(@missing)
        . " not collected, $unsent counted as not sent");
    cmp_ok(scalar(@missing), '<=', $unsent,
        'every record not collected is counted as not sent');

    $t->{running} = 0;
}


1;
