#!/usr/bin/perl

# taurus_guard_audit_syslog against a real rsyslog (imtcp, octet-counted
# RFC 5424): the collector gets exactly the lines of the audit file, with
# the header the README names; while it is down batches still go through
# (the file is the record of truth) and what was queued arrives once it
# is back.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

my $rsyslogd = (grep { -x } map { "$_/rsyslogd" }
    qw(/usr/sbin /sbin /usr/bin))[0];
plan(skip_all => 'rsyslogd is not installed') unless $rsyslogd;

my $t = Test::TaurusGuard->new;

my $dir = $t->testdir;
my $port = $t->port('SYSLOG');
my $json = JSON::PP->new->utf8;
my $rs;

mkdir "$dir/rsyslog";

$t->write_file('rsyslog.conf', <<"EOF");
global(workDirectory="$dir/rsyslog")
module(load="imtcp")
input(type="imtcp" port="$port" address="127.0.0.1")
template(name="raw" type="string" string="%msg%\\n")
template(name="hdr" type="list") {
    property(name="pri") constant(value="|")
    property(name="syslogfacility-text") constant(value="|")
    property(name="app-name") constant(value="|")
    property(name="procid") constant(value="|")
    property(name="msgid") constant(value="|")
    property(name="rawmsg") constant(value="\\n")
}
if \$app-name == "taurus-guard" then {
    action(type="omfile" file="$dir/collected.log" template="raw")
    action(type="omfile" file="$dir/headers.log" template="hdr")
}
EOF

sub rsyslog_start {
    unlink "$dir/rsyslog.pid";
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$dir/logs/rsyslog.out";
        open STDERR, '>&', \*STDOUT;
        exec $rsyslogd, '-n', '-f', "$dir/rsyslog.conf", '-i',
            "$dir/rsyslog.pid" or POSIX::_exit(127);
    }
    $rs = $pid;
    return $t->_wait_port($port, 10);
}

sub rsyslog_stop {
    return unless $rs;
    kill 'TERM', $rs;
    my $end = now() + 10;
    while (now() < $end) {
        last if waitpid($rs, POSIX::WNOHANG()) == $rs;
        sleep 0.05;
    }
    if (kill 0, $rs) {
        kill 'KILL', $rs;
        waitpid $rs, 0;
    }
    $rs = undef;
}

END {
    local $?;
    rsyslog_stop();
}

# rsyslog's own diagnostics, for a failure
sub rs_out { $t->read_file('logs/rsyslog.out') || '' }

ok(rsyslog_start(), 'rsyslog listens') or diag(rs_out());

$t->upstream;
$t->write_credentials;

$t->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;
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

sub lines_of {
    my ($name) = @_;
    my $c = $t->read_file($name);
    return defined $c ? split /\n/, $c : ();
}

# rsyslog's %msg% of an RFC 5424 message is its MSG part: the record,
# byte for byte (rsyslog 8.2302 adds no leading space)

sub collected {
    return lines_of('collected.log');
}

sub wait_collected {
    my ($n, $timeout) = @_;
    my @c;
    my $end = now() + ($timeout || 5);
    while (now() < $end) {
        @c = collected();
        last if @c >= $n;
        sleep 0.1;
    }
    return @c;
}

sub batches {
    my (@bodies) = @_;
    my @ids;
    for my $b (@bodies) {
        my $r = $t->post(upgrade_path(), $b);
        my $id = header($r, 'X-Taurus-Guard-Id') || 'none';
        $t->wait_audit($id, $r->{status} == 200 ? 2 : 1);
        push @ids, [ $r->{status}, $id ];
    }
    return @ids;
}

my @r = batches(batch_json([ $INSTANCES[0] ]), batch_json([ $OTHER_INSTANCE ]),
    '{"delay":"false"}', batch_json([ $INSTANCES[1], $INSTANCES[2] ]));
is(join(',', map { $_->[0] } @r), '200,403,400,200', 'batches answered');

my @audit = lines_of('audit.log');
is(scalar @audit, 6, 'six records in the file');

my @c = wait_collected(scalar @audit);
is_deeply(\@c, \@audit, 'the collector got exactly the audit lines, in order')
    or diag("collected:\n" . join("\n", @c) . "\n" . rs_out());

# the RFC 5424 header

my @h = lines_of('headers.log');
is(scalar @h, scalar @audit, 'a header line per record');

my $master = $t->_nginx_pid;
my $bad = 0;
for my $i (0 .. $#h) {
    my ($pri, $fac, $app, $procid, $msgid, $rawmsg) = split /\|/, $h[$i], 6;
    my $rec = eval { $json->decode($audit[$i]) } || {};
    my $ppid = '';
    if (open my $f, '<', "/proc/$procid/stat") {
        ($ppid) = <$f> =~ /\)\s+\S\s+(\d+)/;
        close $f;
    }
    my $ok = $pri eq '134' && $fac eq 'local0' && $app eq 'taurus-guard'
        && $msgid eq 'audit' && $ppid eq $master
        && $rawmsg =~ /\A<134>1 (\S+) \S+ taurus-guard (\d+) audit - \{/
        && $1 eq $rec->{time} && $2 eq $procid;
    diag("header $i: $h[$i]") unless $ok;
    $bad++ unless $ok;
}
is($bad, 0, 'every message: <134>1 (local0.info), the record\'s time, '
    . 'app-name taurus-guard, procid a worker\'s pid, msgid audit');

# the collector down: batches still go through, into the file

rsyslog_stop();
sleep 0.5;

@r = batches(batch_json([ $INSTANCES[0] ]), batch_json([ $OTHER_INSTANCE ]),
    batch_json([ $INSTANCES[2] ]));
is(join(',', map { $_->[0] } @r), '200,403,200',
    'collector down: batches answered as usual');

@audit = lines_of('audit.log');
is(scalar @audit, 11, 'collector down: the records are in the file');
is(scalar(collected()), 6, 'collector down: nothing more collected');

my $down = "syslog collector \"127.0.0.1:$port\" failed, retrying; records "
    . 'stay in the audit file';
like($t->error_log, qr/\[warn\].*taurus_guard: .*\Q$down\E/,
    'collector down: a warning');

# back: the queued records arrive (reconnect every second), then the new

ok(rsyslog_start(), 'rsyslog listens again') or diag(rs_out());

@c = wait_collected(scalar @audit, 5);
is_deeply(\@c, \@audit, 'collector back: the queued records arrived, in order')
    or diag("collected:\n" . join("\n", @c));

@r = batches(batch_json([ $INSTANCES[1] ]));
is($r[0][0], 200, 'collector back: 200');
@audit = lines_of('audit.log');
@c = wait_collected(scalar @audit, 5);
is_deeply(\@c, \@audit, 'collector back: every record collected once');

my $out = $t->_cmd($t->repo . '/build/taurus-guard-verify', "$dir/audit.log");
like($out, qr/13 records in 1 file\(s\), chain intact/, 'file chain intact');

# a worker that quits closes its collector connection (nginx reports a
# connection left open at exit as an [alert] "open socket ... left")

$t->stop;
my @left = grep { /open socket #\d+ left in connection|\[alert\].*aborting/ }
    split /\n/, $t->error_log;
is(scalar @left, 0, 'nginx quits without leaving the collector connection '
    . 'open') or diag(join "\n", @left);

$t->done_testing;
