#!/usr/bin/perl

# taurus_guard_audit_syslog against collectors that push it: a record
# longer than max_message= (a denied batch of long, quoted strings, or
# one with a forged syslog header where rsyslog would cut it) reaches a
# real rsyslog as one short stand-in, never as a second message of the
# caller's making; a queue of 8 MB drained after the collector comes
# back leaves the worker answering; a collector that writes without end
# costs the worker no CPU; trusted_certificate= or ssl_name= without ssl
# fails nginx -t.

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

# ---- a record longer than max_message=, at a real rsyslog --------------

SKIP: {
    my $rsyslogd = (grep { -x } map { "$_/rsyslogd" }
        qw(/usr/sbin /sbin /usr/bin))[0];
    skip 'rsyslogd is not installed', 9 unless $rsyslogd;

    my $t = Test::TaurusGuard->new;
    my $dir = $t->testdir;
    my $port = $t->port('SYSLOG');

    # rsyslog as installed: its default maxMessageSize; every message it
    # takes, whatever its app-name, goes to all.log

    mkdir "$dir/rsyslog";
    $t->write_file('rsyslog.conf', <<"EOF");
global(workDirectory="$dir/rsyslog")
module(load="imtcp")
input(type="imtcp" port="$port" address="127.0.0.1")
template(name="app" type="list") {
    property(name="app-name") constant(value="|")
    property(name="msg") constant(value="\\n")
}
action(type="omfile" file="$dir/all.log" template="app")
EOF

    my $rs = fork;
    die "fork: $!\n" unless defined $rs;
    if ($rs == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$dir/logs/rsyslog.out";
        open STDERR, '>&', \*STDOUT;
        exec $rsyslogd, '-n', '-f', "$dir/rsyslog.conf", '-i',
            "$dir/rsyslog.pid" or POSIX::_exit(127);
    }
    push @kids, $rs;
    ok($t->_wait_port($port, 10), 'rsyslog listens')
        or diag($t->read_file('logs/rsyslog.out'));

    $t->upstream;
    $t->write_credentials;
    $t->run(http_conf(syslog => "server=127.0.0.1:$port"));

    my $deny = sub {
        my ($items) = @_;
        my $r = $t->post(upgrade_path(), $json->encode({
            databases_instance_infos => $items, delay => 'false' }));
        $t->wait_audit(header($r, 'X-Taurus-Guard-Id') || 'none', 1);
        return $r->{status};
    };

    # 40 items of 250 quotes and backslashes: a record of some 40 KB

    my $qb = join '', map { $_ % 3 ? '"' : '\\' } 1 .. 250;
    is($deny->([ map { { instance_id => sprintf('%032xin07', $_),
        current_version => $qb } } 1 .. 40 ]), 403, 'long record: denied');

    # a forged syslog message where rsyslog cuts the frame (past its
    # maxMessageSize, 8096 bytes), placed as the reviewer's forge.py does

    my ($w) = $t->worker_pids;
    my $host = lc Sys::Hostname::hostname();
    my $hdr = "<134>1 2026-12-06T22:39:06.825Z $host taurus-guard $w audit - ";
    my $cut = 8097 - length $hdr;
    my $prefix = '{"id":"' . ('0' x 32) . '","time":"' . ('x' x 24)
        . '","client":"127.0.0.1","project_id":"' . $PROJECT
        . '","instances":[';
    my @iid = map { sprintf '%032xin07', $_ + 0xabc0 } 0 .. 59;
    my $item = sub { '{"instance_id":"' . $iid[$_[0]]
        . '","current_version":"' . $_[1] . '"}' };
    my $forged = '<38>1 2026-12-06T22:00:00.000Z db-master sshd 4242 - - '
        . 'Accepted password for root from 203.0.113.9 port 22 ssh2 ';
    my ($f, $g, $j);

    FIT: for my $gg (150 .. 256) {
        for my $ff (1 .. 256) {
            my $pos = length($prefix) + length($item->(0, 'v' x $ff)) + 1;
            my ($jj, $start) = (1);
            while (1) {
                $start = $pos + length('{"instance_id":"' . $iid[$jj]
                    . '","current_version":"');
                last if $start >= $cut;
                $pos += length($item->($jj, 'v' x $gg)) + 1;
                $jj++;
            }
            if ($start == $cut) {
                ($f, $g, $j) = ($ff, $gg, $jj);
                last FIT;
            }
        }
    }

    ok(defined $j, 'forged message placed at the cut');
    ($f, $g, $j) = (1, 1, 1) unless defined $j;

    my @forge = ({ instance_id => $iid[0], current_version => 'v' x $f },
        (map { { instance_id => $iid[$_], current_version => 'v' x $g } }
            1 .. $j - 1),
        { instance_id => $iid[$j], current_version => $forged },
        map { { instance_id => $iid[$_], current_version => 'v' x $g } }
            $j + 1 .. 39);
    is($deny->(\@forge), 403, 'forged header: denied');

    # then short records, which go whole

    is($deny->([ { instance_id => $OTHER_INSTANCE, current_version => 'x' } ]),
        403, 'short record: denied');
    my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
    is($r->{status}, 200, 'short record: allowed');
    $t->wait_audit(header($r, 'X-Taurus-Guard-Id') || 'none', 2);

    my @audit = split /\n/, $t->read_file('audit.log');
    my @got;
    wait_for(sub {
        @got = split /\n/, slurp("$dir/all.log");
        @got >= @audit
    }, 5);
    sleep 0.5;
    @got = split /\n/, slurp("$dir/all.log");

    is(scalar(grep { !/\Ataurus-guard\|/ } @got), 0,
        'no message of another app-name (no forged sshd line)')
        or diag(join "\n", map { substr $_, 0, 200 }
            grep { !/\Ataurus-guard\|/ } @got);

    # each long record as its stand-in, the others whole

    my @want;
    for my $i (0 .. $#audit) {
        my $rec = $json->decode($audit[$i]);
        if (length($audit[$i]) < 7000) {
            push @want, $audit[$i];
            next;
        }
        push @want, {
            id => $rec->{id}, time => $rec->{time}, decision => 'deny',
            project_id => $PROJECT, status => 403,
            truncated => JSON::PP::true, bytes => length($audit[$i]),
            link => $i < $#audit ? $json->decode($audit[$i + 1])->{prev}
                : '' };
    }

    my $ok = @got == @want;
    for my $i (0 .. $#want) {
        my $m = defined $got[$i] ? $got[$i] =~ s/\Ataurus-guard\|//r : '';
        if (ref $want[$i]) {
            my $d = eval { $json->decode($m) };
            my $same = $d && $json->encode($d) eq $json->encode($want[$i])
                && length($m) < 512;
            diag('message ' . $i . ': ' . substr($m, 0, 300)) unless $same;
            $ok &&= $same;
        } else {
            diag("message $i differs") if $m ne $want[$i];
            $ok &&= $m eq $want[$i];
        }
    }
    ok($ok, 'one message a record: the long ones as their stand-ins (id, '
        . 'time, decision, project_id, status, "truncated":true, bytes, '
        . 'link), the others whole')
        or diag(scalar(@got) . ' messages, ' . scalar(@audit) . ' records');

    my (undef, $m) = $t->metrics;
    is($m->{taurus_guard_syslog_truncated_total}, 2,
        'taurus_guard_syslog_truncated_total: 2');

    $t->finish;
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

    for my $c ([ 'max_message=512', qr/invalid "max_message=" size/ ],
        [ 'max_message=2m', qr/invalid "max_message=" size/ ],
        [ 'queue=8k max_message=8k', qr/"queue=" must be larger/ ])
    {
        my ($rc, $out) = $t->nginx_t(http_conf(syslog =>
            "server=127.0.0.1:%%PORT_SYSLOG%% $c->[0]"));
        my $line = $t->conf_line(qr/taurus_guard_audit_syslog/, 'test.conf');
        my $file = $t->conf_path('test.conf');

        isnt($rc, 0, "$c->[0]: nginx -t fails");
        like($out, qr/\[emerg\].*$c->[1].* in \Q$file\E:$line\b/,
            "$c->[0]: [emerg] with file:line") or diag($out);
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
