#!/usr/bin/perl

# taurus_guard_audit_syslog over TLS to a real rsyslog (imtcp with its
# OpenSSL stream driver), with a CA and a collector certificate made at
# test time: the collector gets exactly the lines of the audit file; a
# collector whose certificate does not match the name gets nothing, and
# the batches still go through with their records in the file.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

my $rsyslogd = (grep { -x } map { "$_/rsyslogd" }
    qw(/usr/sbin /sbin /usr/bin))[0];
plan(skip_all => 'rsyslogd is not installed') unless $rsyslogd;

my ($ossl) = glob('/usr/lib/*/rsyslog/lmnsd_ossl.so');
plan(skip_all => 'rsyslog-openssl is not installed') unless $ossl;

system('openssl version >/dev/null 2>&1') == 0
    or plan(skip_all => 'openssl is not installed');

my $t = Test::TaurusGuard->new;

my $dir = $t->testdir;
my $port = $t->port('SYSLOG');
my $rs;

mkdir "$dir/rsyslog";

# a CA and a certificate for collector.test, made now

sub run_openssl {
    my $cmd = join ' ', 'openssl', @_, '>/dev/null 2>&1';
    system($cmd) == 0 or die "$cmd failed\n";
}

run_openssl(qw(req -x509 -newkey rsa:2048 -nodes -days 2),
    "-keyout $dir/ca.key -out $dir/ca.pem -subj '/CN=tg syslog CA'");
run_openssl(qw(req -newkey rsa:2048 -nodes),
    "-keyout $dir/server.key -out $dir/server.csr -subj /CN=collector.test");
$t->write_file('ext.cnf', "subjectAltName=DNS:collector.test\n");
run_openssl(qw(x509 -req -days 2), "-in $dir/server.csr -CA $dir/ca.pem",
    "-CAkey $dir/ca.key -CAcreateserial -out $dir/server.pem",
    "-extfile $dir/ext.cnf");

$t->write_file('rsyslog.conf', <<"EOF");
global(workDirectory="$dir/rsyslog"
       DefaultNetstreamDriver="ossl"
       DefaultNetstreamDriverCAFile="$dir/ca.pem"
       DefaultNetstreamDriverCertFile="$dir/server.pem"
       DefaultNetstreamDriverKeyFile="$dir/server.key")
module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1"
       StreamDriver.AuthMode="anon")
input(type="imtcp" port="$port" address="127.0.0.1")
template(name="raw" type="string" string="%msg%\\n")
if \$app-name == "taurus-guard" then {
    action(type="omfile" file="$dir/collected.log" template="raw")
}
EOF

sub rsyslog_start {
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

END {
    local $?;
    if ($rs) {
        kill 'TERM', $rs;
        waitpid $rs, 0;
    }
}

ok(rsyslog_start(), 'rsyslog listens with TLS')
    or diag($t->read_file('logs/rsyslog.out'));

$t->upstream;
$t->write_credentials;

$t->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;
    taurus_guard_audit_syslog server=127.0.0.1:%%PORT_SYSLOG%% ssl
        trusted_certificate=%%TESTDIR%%/ca.pem ssl_name=collector.test;

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

for my $i (0 .. 2) {
    my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[$i] ]));
    is($r->{status}, 200, "batch $i: 200");
}

my $audit = '';
my $collected = '';
my $end = now() + 10;

# three allow and three done records, once the log phase wrote them

while (now() < $end) {
    $audit = $t->read_file('audit.log') || '';
    $collected = $t->read_file('collected.log') || '';
    last if ($audit =~ tr/\n//) >= 6 && $collected eq $audit;
    sleep 0.2;
}

is(($audit =~ tr/\n//), 6, 'six records in the audit file');
is($collected, $audit, 'the collector got every record, over TLS');
like($t->error_log, qr/connected to syslog collector .* over TLS/,
    'the connection is TLS');

$t->finish;


# the same collector under a name its certificate does not hold

my $t2 = Test::TaurusGuard->new;

$t2->upstream;
$t2->write_credentials;
$t2->write_file('ca.pem', $t->read_file('ca.pem'));

$t2->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;
    taurus_guard_audit_syslog server=127.0.0.1:$port ssl
        trusted_certificate=%%TESTDIR%%/ca.pem ssl_name=wrong.test;

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

my $before = $t->read_file('collected.log') || '';
my $r = $t2->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 200, 'wrong name: the batch still goes through');

sleep 1.5;

is($t->read_file('collected.log') || '', $before,
    'wrong name: the collector got nothing');
like($t2->read_file('audit.log') || '', qr/"decision":"allow"/,
    'wrong name: the record is in the file');
like($t2->error_log, qr/certificate does not match "wrong\.test"/,
    'wrong name: the mismatch is logged');

# a TLS collector without a CA to check it against is refused
my ($rc, $out) = $t2->nginx_t(<<"EOF");
http {
    taurus_guard_audit_syslog server=127.0.0.1:$port ssl;
}
EOF
isnt($rc, 0, 'ssl without trusted_certificate: nginx -t fails');
like($out, qr/needs "trusted_certificate=FILE"/,
    'ssl without trusted_certificate: says why');

$t2->done_testing;
