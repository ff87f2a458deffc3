#!/usr/bin/perl

# A FIFO (or anything else that is not a regular file) put where a
# secret file or an allow-list file should be never stalls nginx:
#
#   nginx -t: a credentials file, a token file and an allow-list include
#       that are FIFOs fail at once, with [emerg], the file and the
#       line, rather than waiting forever in open() for a writer;
#   at run time: a credentials file replaced by a FIFO (renamed over it,
#       owned by the worker user, mode 0600) is not used: batches go on
#       at once, signed with the key read before, and one [alert] names
#       the file; the worker never blocks in open().

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use POSIX qw(mkfifo);
use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;
my $d = $t->testdir;

$t->write_credentials;
$t->write_token;

sub fifo {
    my ($name) = @_;
    my $path = "$d/$name";
    unlink $path;
    mkfifo($path, 0600) or die "mkfifo $path: $!\n";
    chown $t->{worker_uid}, $t->{worker_gid}, $path
        if $> == 0 && defined $t->{worker_uid};
    return $path;
}

fifo('cred-fifo');
fifo('token-fifo');
fifo('allow-fifo.conf');

sub conf {
    my (%o) = @_;

    my $cred = $o{cred} || 'taurus_guard_credentials %%TESTDIR%%/credentials;';
    my $include = $o{include} || '';

    return <<"EOF";
worker_processes 1;

http {
    $cred
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
        $include
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

# nginx -t: each one is refused at once, where it is named

my @cases = (
    [ 'credentials file',
        conf(cred => 'taurus_guard_credentials %%TESTDIR%%/cred-fifo;'),
        'cred-fifo', qr/taurus_guard_credentials/ ],
    [ 'token file',
        conf(cred => 'taurus_guard_token file=%%TESTDIR%%/token-fifo;'),
        'token-fifo', qr/taurus_guard_token/ ],
    [ 'allow-list include',
        conf(include => 'include %%TESTDIR%%/allow-fifo.conf;'),
        'allow-fifo.conf', qr/include .*allow-fifo/ ],
);

for my $c (@cases) {
    my ($name, $text, $file, $where) = @$c;

    my ($rc, $out);
    my $done = eval {
        local $SIG{ALRM} = sub { die "alarm\n" };
        alarm 10;
        ($rc, $out) = $t->nginx_t($text);
        alarm 0;
        1;
    };
    alarm 0;

    if (!$done) {
        # the old code: nginx -t waits in open() for a writer forever
        system('pkill', '-f', "nginx -t -p $d/");
    }

    ok($done, "$name, a FIFO: nginx -t ends") or next;
    note($out);
    isnt($rc, 0, "$name, a FIFO: nginx -t fails");
    like($out, qr/\[emerg\].*\Q$file\E.*not a regular file/,
        "$name, a FIFO: [emerg] names the file");

    my $line = $t->conf_line($where, 'test.conf');
    my $conf = $t->conf_path('test.conf');
    ok(defined $line, "$name: marker found") or next;
    like($out, qr/ in \Q$conf\E:$line\b/, "$name, a FIFO: file and line");
}

# at run time: the credentials file becomes a FIFO

$t->upstream;
$t->run(conf());

my $path = "$d/credentials";
$t->expect_alert(qr/taurus_guard: "\Q$path\E" is not a regular file/);

my $body = batch_json([ $INSTANCES[0] ]);

my $r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, 'a regular credentials file: 200');

my $tmp = fifo('credentials.new');
rename $tmp, $path or die "rename: $!\n";

# past the module's once-a-second look at the file

sleep 1.5;

$r = $t->post(upgrade_path(), $body, timeout => 5);
is($r->{status}, 200, 'a FIFO in its place: the batch is not held,'
    . ' and goes on with the key read before');

sleep 1.2;

$r = $t->post(upgrade_path(), $body, timeout => 5);
is($r->{status}, 200, 'and again, a second later');

my @up = $t->upstream_records;
is(scalar(grep { $_->{signature}{ok} } @up), 3,
    'all three arrived upstream, each signature verified');

like($t->error_log, qr/\[alert\].*"\Q$path\E" is not a regular file/,
    'an [alert] names the file');

$t->done_testing;
