#!/usr/bin/perl

# What the operator sees when the workers (nginx's user, nobody here)
# cannot reach the audit file: "nginx -t" fails with the file and line
# of the directive when a directory on the path is closed to them, and a
# reopen they cannot do at run time ("nginx -s reopen" after the
# directory was closed) gives an [alert] naming the file, where before
# the workers went on writing the rotated file with no word of the
# module's own.  Needs root (workers as another user).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

plan(skip_all => 'needs root: workers run as another user') if $> != 0;

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;

plan(skip_all => 'no worker user') unless defined $t->{worker_uid};

$t->upstream(audit_log => "$dir/aud/audit.log");
$t->write_credentials;

sub conf {
    my ($path) = @_;
    return <<"CONF";
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;

    taurus_guard_allow {
        %%PROJECT%% @INSTANCES;
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_audit_log $path;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
CONF
}

# nginx -t

mkdir "$dir/locked";
chmod 0700, "$dir/locked";
mkdir "$dir/locked/sub";
chmod 0755, "$dir/locked/sub";

my ($rc, $out) = $t->nginx_t(conf('%%TESTDIR%%/locked/sub/audit.log'));
my $line = $t->conf_line(qr/taurus_guard_audit_log/, 'test.conf');

isnt($rc, 0, 'a directory the workers cannot enter: nginx -t fails');
like($out, qr{\[emerg\].*audit\ log\ "\Q$dir\E/locked/sub/audit\.log".*
    cannot\ enter\ "\Q$dir\E/locked"}x, 'says which directory')
    or diag($out);
like($out, qr{in \Q$dir\E/conf/test\.conf:$line\b}, 'names file and line')
    or diag($out);

mkdir "$dir/searchonly";
chmod 0711, "$dir/searchonly";

($rc, $out) = $t->nginx_t(conf('%%TESTDIR%%/searchonly/audit.log'));
is($rc, 0, 'a directory they may only search: nginx -t passes')
    or diag($out);

# a reopen the workers cannot do

mkdir "$dir/aud";
chmod 0755, "$dir/aud";

$t->expect_alert(
    qr{audit log "\Q$dir\E/aud/audit\.log" could not be reopened});
$t->expect_emerg(qr{open\(\) "\Q$dir\E/aud/audit\.log" failed \(13:});

$t->run(conf('%%TESTDIR%%/aud/audit.log'));

my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 200, 'before: 200');

chmod 0700, "$dir/aud";
rename "$dir/aud/audit.log", "$dir/aud/audit.log.1";
kill 'USR1', $t->_nginx_pid;

my $file = qr{audit log "\Q$dir\E/aud/audit\.log"};
my $alert = qr{\[alert\].*taurus_guard:\ $file\ could\ not\ be\ reopened
    .*\(13:\ Permission\ denied\)}x;

my $end = now() + 5;
sleep 0.1 while now() < $end && $t->error_log !~ $alert;
like($t->error_log, $alert, 'a failed reopen: an [alert] naming the file');

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 200, 'records go on to the rotated file');

chmod 0755, "$dir/aud";

$t->done_testing;
