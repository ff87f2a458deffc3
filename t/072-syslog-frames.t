#!/usr/bin/perl

# taurus_guard_audit_syslog against collectors that push it: a queue of
# 8 MB drained after the collector comes back leaves the worker
# answering; a collector that writes without end costs the worker no
# CPU; trusted_certificate= or ssl_name= without ssl fails nginx -t.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Sys::Hostname ();
use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

my $json = JSON::PP->new->utf8->canonical;
my @kids;

END {
    local $?;
    for my $pid (@kids) {
        kill 'TERM', $pid;
        waitpid $pid, 0;
    }
}

sub http_conf {
    my (%o) = @_;
    my $syslog = $o{syslog};
    my $fsync = $o{fsync} || '';
    return <<"EOF";
worker_processes 1;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log$fsync;
    taurus_guard_audit_syslog $syslog;
    taurus_guard_max_batch 100;

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

        location = /ping {
            return 200 "pong\\n";
        }

        location = /metrics {
            taurus_guard_metrics;
        }
    }
}
EOF
}

# a collector in a child process: $serve->($client, $dir) per connection

sub collector {
    my ($port, $serve, $dir) = @_;

    my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$port",
        Proto => 'tcp', Listen => 8, ReuseAddr => 1)
        or die "collector on $port: $!\n";

    my $pid = fork;
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        $SIG{TERM} = sub { POSIX::_exit(0) };
        my $n = 0;
        while (my $c = $l->accept) {
            $n++;
            append("$dir/accepted", "$n\n");
            $serve->($c, $dir);
            close $c;
        }
        POSIX::_exit(0);
    }

    close $l;
    push @kids, $pid;
    return $pid;
}

sub append {
    my ($file, $data) = @_;
    open my $fh, '>>', $file or die "$file: $!\n";
    binmode $fh;
    print $fh $data;
    close $fh;
}

sub slurp {
    my ($file) = @_;
    open my $fh, '<', $file or return '';
    binmode $fh;
    local $/;
    my $c = <$fh>;
    close $fh;
    return defined $c ? $c : '';
}

# the octet-counted frames in $data: (messages, bytes left over)

sub frames {
    my ($data) = @_;
    my ($pos, @m) = (0);
    while (substr($data, $pos, 12) =~ /\A(\d+) /) {
        my $start = $pos + length($1) + 1;
        last if length($data) < $start + $1;
        push @m, substr($data, $start, $1);
        $pos = $start + $1;
    }
    return (\@m, length($data) - $pos);
}

# a port nobody listens on (the kernel's pick, let go): a collector down

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
        Proto => 'tcp', Listen => 1) or die "listen: $!\n";
    return $s->sockport;
}

sub cpu_ticks {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return undef;
    my $s = <$fh>;
    close $fh;
    $s =~ s/\A.*\)\s+//s;
    my @f = split ' ', $s;
    return $f[11] + $f[12];     # utime, stime: fields 14 and 15
}

sub wait_for {
    my ($cond, $timeout) = @_;
    my $end = now() + ($timeout || 5);
    while (now() < $end) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return $cond->();
}

# ---- nginx -t: trusted_certificate= or ssl_name= without ssl ----------

{
    my $t = Test::TaurusGuard->new;
    $t->write_credentials;

    $t->write_file('ca.pem', "not read\n");

    for my $p ('trusted_certificate=%%TESTDIR%%/ca.pem', 'ssl_name=logs') {
        my ($rc, $out) = $t->nginx_t(http_conf(syslog =>
            "server=127.0.0.1:%%PORT_SYSLOG%% $p"));
        (my $name = $p) =~ s/=.*/=/;
        my $line = $t->conf_line(qr/taurus_guard_audit_syslog/, 'test.conf');
        my $file = $t->conf_path('test.conf');

        isnt($rc, 0, "$name without ssl: nginx -t fails");
        like($out, qr/\[emerg\].*"\Q$name\E" without "ssl".* in \Q$file\E:$line\b/,
            "$name without ssl: [emerg] naming it, with file:line")
            or diag($out);
    }

    $t->finish;
}

# ---- a collector that writes without end -------------------------------

{
    my $t = Test::TaurusGuard->new;
    my $dir = $t->testdir;
    my $port = $t->port('SYSLOG');
    my $conn = 0;

    # it reads what comes, into a file a connection, and writes all the
    # time, never blocking on either, until told to be quiet

    collector($port, sub {
        my ($c, $d) = @_;
        $conn++;
        $c->blocking(0);
        my $sel = IO::Select->new($c);
        my $chunk = 'x' x 65536;
        while (1) {
            my ($r, $w) = IO::Select->select($sel,
                -e "$d/quiet" ? undef : $sel, undef, 1);
            for (@{ $r || [] }) {
                my $n = sysread($c, my $buf, 65536);
                return if defined $n && $n == 0;
                return if !defined $n && !$!{EAGAIN};
                append("$d/talk.$conn", $buf) if $n;
            }
            for (@{ $w || [] }) {
                my $n = syswrite($c, $chunk);
                return if !defined $n && !$!{EAGAIN};
            }
        }
    }, $dir);

    $t->upstream;
    $t->write_credentials;
    $t->run(http_conf(syslog => "server=127.0.0.1:$port"));

    is($t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]))->{status},
        200, 'talking collector: a batch goes through');

    ok(wait_for(sub { -s "$dir/accepted" }), 'talking collector: connected');

    my ($w) = $t->worker_pids;
    my $before = cpu_ticks($w);
    sleep 2;
    my $used = (cpu_ticks($w) - $before) / POSIX::sysconf(POSIX::_SC_CLK_TCK());
    cmp_ok($used, '<', 0.2, 'talking collector: the worker used less than '
        . '0.2 s of CPU in 2 s') or diag("used $used s");

    ok($t->error_log =~ /\[warn\].*taurus_guard: the collector sent data,/,
        'talking collector: a warning says so');

    # quiet now: the records of the next batches reach it, whole, on the
    # worker's next connection

    my @old = split /\n/, $t->read_file('audit.log');
    $t->write_file('quiet', '');

    my @r = map { $t->post(upgrade_path(), batch_json([ $INSTANCES[$_] ])) }
        0 .. 2;
    is(join(',', map { $_->{status} } @r), '200,200,200',
        'talking collector: batches answered');
    $t->wait_audit(header($r[-1], 'X-Taurus-Guard-Id') || 'none', 2);

    my @audit = split /\n/, $t->read_file('audit.log');
    my @new = @audit[@old .. $#audit];
    my @got;
    wait_for(sub {
        @got = map { /\A<\d+>1 \S+ \S+ \S+ \d+ audit - (.*)\z/s ? $1 : () }
            map { @{ (frames(slurp($_)))[0] } }
            sort { ($a =~ /(\d+)\z/)[0] <=> ($b =~ /(\d+)\z/)[0] }
            glob("$dir/talk.*");
        my %seen = map { $_ => 1 } @got;
        !grep { !$seen{$_} } @new
    }, 10);
    my %seen = map { $_ => 1 } @got;
    is(scalar(grep { !$seen{$_} } @new), 0, 'talking collector, quiet: the '
        . scalar(@new) . ' records since reached it');

    $t->finish;
}

# ---- a queue of 8 MB drained: the worker answers all along ------------

# The queue is filled by wrk with denied batches (records of about 700
# bytes) while the collector is down: some 12000 frames.  The module
# before this one moved the rest of the queue after each frame sent,
# about 50 GB of memmove() for this queue, and answered nothing
# meanwhile.

SKIP: {
    my $wrk = (grep { -x } map { "$_/wrk" } qw(/usr/bin /usr/local/bin))[0];
    skip 'wrk is not installed', 5 unless $wrk;

    my $t = Test::TaurusGuard->new;
    my $dir = $t->testdir;
    my $port = free_port();

    $t->upstream;
    $t->write_credentials;
    $t->run(http_conf(syslog => "server=127.0.0.1:$port queue=8m",
        fsync => ' fsync=off'));

    my $body = batch_json([ $OTHER_INSTANCE ]);
    (my $lua = $body) =~ s/([\\'])/\\$1/g;
    $t->write_file('post.lua', "wrk.method = 'POST'\n"
        . "wrk.body = '$lua'\n"
        . "wrk.headers['Content-Type'] = 'application/json'\n");

    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        open STDOUT, '>', "$dir/logs/wrk.out";
        open STDERR, '>&', \*STDOUT;
        exec $wrk, '-t1', '-c8', '-d30s', '-s', "$dir/post.lua",
            'http://127.0.0.1:' . $t->port(0) . upgrade_path()
            or POSIX::_exit(127);
    }

    my $m;
    my $filling = now();
    wait_for(sub {
        (undef, $m) = $t->metrics;
        ($m->{taurus_guard_syslog_dropped_total} || 0) > 0
    }, 30);
    kill 'TERM', $pid;
    waitpid $pid, 0;
    sleep 0.2;

    (undef, $m) = $t->metrics;
    note(sprintf 'filled in %.1f s', now() - $filling);
    my $queued = $m->{taurus_guard_syslog_queued_bytes} || 0;
    my $dropped = $m->{taurus_guard_syslog_dropped_total} || 0;
    cmp_ok($queued, '>', 7 * 1024 * 1024, 'drain: the 8 MB queue filled')
        or diag("$queued bytes queued");

    # the collector back: it reads as fast as it can

    collector($port, sub {
        my ($c, $d) = @_;
        while (1) {
            my $n = sysread($c, my $buf, 1 << 20);
            last unless $n;
            append("$d/drain.in", $buf);
        }
    }, $dir);

    ok(wait_for(sub { -s "$dir/accepted" }, 5), 'drain: the collector is back');

    my ($worst, $pings) = (0, 0);
    my $end = now() + 10;
    while (now() < $end) {
        my $r = $t->http("GET /ping HTTP/1.0\r\nHost: localhost\r\n\r\n",
            timeout => 2);
        $worst = $r->{elapsed} if $r->{elapsed} > $worst;
        $pings++;
        last if $r->{timed_out};
        (undef, $m) = $t->metrics;
        last if ($m->{taurus_guard_syslog_queued_bytes} // 1) == 0;
    }

    cmp_ok($worst, '<', 0.5, "drain: $pings pings each answered within "
        . '0.5 s') or diag("the slowest took $worst s");

    wait_for(sub {
        (undef, $m) = $t->metrics;
        ($m->{taurus_guard_syslog_queued_bytes} // 1) == 0
    }, 30);
    is($m->{taurus_guard_syslog_queued_bytes}, 0, 'drain: the queue is empty');

    # what was queued arrived, the first records of the file: those past
    # queue= were not sent, and counted

    my @audit = split /\n/, $t->read_file('audit.log');
    my $want = @audit - $dropped;
    wait_for(sub { @{ (frames(slurp("$dir/drain.in")))[0] } >= $want }, 10);
    my ($msgs, $left) = frames(slurp("$dir/drain.in"));
    my @recs = map { /\A<\d+>1 \S+ \S+ \S+ \d+ audit - (.*)\z/s ? $1 : '' }
        @$msgs;
    ok(@recs == $want && $left == 0
        && join("\n", @recs) eq join("\n", @audit[0 .. $want - 1]),
        "drain: the collector got the first $want audit lines, in order, "
        . 'in whole frames') or diag(scalar(@recs) . ' frames, '
        . scalar(@audit) . " records, $dropped dropped, $left bytes over");

    $t->finish;
}

done_testing();
