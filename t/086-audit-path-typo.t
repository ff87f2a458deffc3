#!/usr/bin/perl

# A typo in the audit log's directory.  nginx opens log files only once
# the whole configuration is read, and said then only
#   open() "/var/log/taurus-gaurd/audit.log" failed (2: No such file or
#   directory)
# naming no file and line, where the README promises that nginx -t names
# the file and line of every mistake the gateway can see.
#
# nginx -t fails naming the audit log, the directory missing (or not a
# directory), the error, what to do and the directive's file:line, for
# an absolute and a relative path; a reload with the typo is refused the
# same way and keeps the running nginx.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;
my $d = $t->testdir;

$t->upstream(audit_log => "$d/logs/audit.log");
$t->write_credentials;
$t->write_file('afile', "not a directory\n");

sub conf {
    my ($audit) = @_;
    return <<"EOF";
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_audit_log $audit;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF
}

my $tconf = $t->conf_path('test.conf');

for my $c (
    [ 'a directory missing', "$d/lgos/audit.log", "$d/lgos",
        qr/\(2: No such file or directory\)/ ],
    [ 'a parent directory missing', "$d/nope/taurus/audit.log",
        "$d/nope/taurus", qr/\(2: No such file or directory\)/ ],
    [ 'a file where a directory is expected', "$d/afile/audit.log",
        "$d/afile", qr/\(20: Not a directory\)/ ],
    [ 'a relative path, its directory missing', 'lgos/audit.log',
        "$d/lgos", qr/\(2: No such file or directory\)/ ],
)
{
    my ($name, $audit, $dir, $err) = @$c;
    my $full = $audit =~ m{^/} ? $audit : "$d/$audit";

    my ($rc, $out) = $t->nginx_t(conf($audit));
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, qr/\[emerg\] .*audit log "\Q$full\E": no directory "\Q$dir\E"/,
        "$name: names the file and the directory") or diag($out);
    like($out, qr/correct the path, or create the directory root's .*$err/,
        "$name: says what to do, and the error") or diag($out);
    my $line = $t->conf_line(qr/taurus_guard_audit_log/, 'test.conf');
    like($out, qr/ in \Q$tconf\E:$line$/m, "$name: in test.conf:$line")
        or diag($out);
}

my ($rc, $out) = $t->nginx_t(conf("$d/logs/audit.log"));
is($rc, 0, 'the directory there: nginx -t passes') or diag($out);

# a reload with the typo: refused, with the file and line, and the
# running nginx goes on

$t->run(conf("$d/logs/audit.log"));
my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 200, 'the gateway forwards');

my $master = $t->_nginx_pid;
$t->write_conf(conf("$d/lgos/audit.log"));
$t->expect_emerg(qr/no directory "\Q$d\E\/lgos"|open\(\) "\Q$d\E\/lgos/);
kill 'HUP', $master;

my $conf = $t->conf_path;
my $end = now() + 5;
sleep 0.1 until $t->error_log =~ /lgos/ || now() > $end;
my $re = qr/audit log "\Q$d\E\/lgos\/audit\.log": no directory/;
like($t->error_log, qr/$re .* in \Q$conf\E:\d+$/m,
    'reload: refused with the file and line');
ok(kill(0, $master), 'reload refused: the master still runs');
$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 200, 'reload refused: the old configuration serves');

$t->done_testing;
