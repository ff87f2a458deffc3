#!/usr/bin/perl

# A secret file is re-read by the workers, by name, as nginx's "user":
# every directory on its path must let that user through, not only the
# root master that reads it at load.  Otherwise a token file gives 503 on
# every batch, and a credentials file keeps the master's copy forever, a
# rotation never picked up.  nginx -t fails, naming the file, the
# directory and the directive's file:line, for the credentials file, the
# token file and the IAM password file; it passes when the directory is
# searchable (by others, or by a group of the worker user).  A reload
# refused for this, or for a file's owner, keeps the running nginx: the
# master does not exit.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

plan(skip_all => 'not root: the workers run as this user, as the master')
    unless $> == 0;

my $t = Test::TaurusGuard->new;
my $d = $t->testdir;

plan(skip_all => 'no unprivileged worker user')
    unless defined $t->{worker_uid} && $t->{worker_uid} != 0;

my $user = $ENV{TG_USER} || 'nobody';

$t->upstream(token => $TEST_TOKEN);
$t->write_credentials(name => 'outer/cred.d/credentials');
$t->write_token(undef, name => 'token.d/token');
$t->write_secret_file('iam.d/iam.ini', "[iam]\ndomain = d\nuser = u\n"
    . "password = tgIamPassNEVERlogged-4Kq9Zp\n");

chmod 0755, "$d/$_" for qw(outer outer/cred.d token.d iam.d);

my $conf = <<"EOF";
http {
    taurus_guard_credentials %%TESTDIR%%/outer/cred.d/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_token file=%%TESTDIR%%/token.d/token;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location /iam/ {
            taurus_guard on;
            taurus_guard_token iam=/_tg_iam
                               password_file=%%TESTDIR%%/iam.d/iam.ini;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_iam {
            internal;
            proxy_pass http://127.0.0.1:9/v3/auth/tokens;
        }
    }
}
EOF

my ($rc, $out) = $t->nginx_t($conf);
is($rc, 0, 'every directory searchable: nginx -t passes') or diag($out);

my $tconf = $t->conf_path('test.conf');

# each file in a directory only root may enter (0700)

for my $c (
    [ 'credentials file', 'outer', 'outer/cred.d/credentials',
        qr/taurus_guard_credentials/ ],
    [ 'credentials file, its parent', 'outer/cred.d',
        'outer/cred.d/credentials', qr/taurus_guard_credentials/ ],
    [ 'token file', 'token.d', 'token.d/token', qr/token file=/ ],
    [ 'IAM password file', 'iam.d', 'iam.d/iam.ini', qr/password_file=/ ],
)
{
    my ($name, $dir, $file, $marker) = @$c;

    chmod 0700, "$d/$dir";
    ($rc, $out) = $t->nginx_t;
    chmod 0755, "$d/$dir";

    isnt($rc, 0, "$name in a 0700 directory: nginx -t fails");
    my $who = qr/nginx workers run as "\Q$user\E" \(uid \d+\)/;
    my $where = qr/cannot enter "\Q$d\/$dir\E"/;
    like($out, qr/\[emerg\] .*"\Q$d\/$file\E": $who and $where/,
        "$name: names the file, the worker user and the directory")
        or diag($out);

    my $line = $t->conf_line($marker, 'test.conf');
    like($out, qr/ in \Q$tconf\E:$line\b/, "$name: in test.conf:$line")
        or diag($out);
}

# a name whose link leads into a directory only root may enter: the
# kernel walks the link's target too

mkdir "$d/private";
chmod 0700, "$d/private";
rename "$d/token.d/token", "$d/private/token" or die "rename: $!\n";
symlink "$d/private/token", "$d/token.d/token" or die "symlink: $!\n";

($rc, $out) = $t->nginx_t;
isnt($rc, 0, 'a link into a 0700 directory: nginx -t fails');
like($out, qr/"\Q$d\/token.d\/token\E": .* cannot enter "\Q$d\/private\E"/,
    'a link into a 0700 directory: names where it leads') or diag($out);

chmod 0711, "$d/private";
($rc, $out) = $t->nginx_t;
is($rc, 0, 'a link into a 0711 directory: nginx -t passes') or diag($out);

unlink "$d/token.d/token";

# a chain of links whose middle hop is in a directory only root may
# enter: neither the name as written nor where the chain ends goes
# through it, the kernel does; absolute and relative targets alike

mkdir "$_" for "$d/hop", "$d/closed";
chmod 0755, "$d/hop";
chmod 0700, "$d/closed";
chmod 0755, "$d/private";
symlink "$d/private/token", "$d/closed/last" or die "symlink: $!\n";

for my $c ([ 'absolute', "$d/closed/last" ], [ 'relative', '../closed/last' ])
{
    my ($how, $target) = @$c;

    unlink "$d/hop/first", "$d/token.d/token";
    symlink $target, "$d/hop/first" or die "symlink: $!\n";
    symlink "$d/hop/first", "$d/token.d/token" or die "symlink: $!\n";

    ($rc, $out) = $t->nginx_t;
    isnt($rc, 0, "links through a 0700 directory ($how): nginx -t fails");
    like($out, qr/"\Q$d\/token.d\/token\E": .* cannot enter "\Q$d\/closed\E"/,
        "links through a 0700 directory ($how): names the one in the"
        . ' middle') or diag($out);

    chmod 0711, "$d/closed";
    ($rc, $out) = $t->nginx_t;
    chmod 0700, "$d/closed";
    is($rc, 0, "links through a 0711 directory ($how): nginx -t passes")
        or diag($out);
}

# ".." out of a link's directory is walked from where the link is

unlink "$d/hop/first", "$d/token.d/token";
symlink '../hop/../closed/last', "$d/hop/first" or die "symlink: $!\n";
symlink "$d/hop/first", "$d/token.d/token" or die "symlink: $!\n";

($rc, $out) = $t->nginx_t;
like($out, qr/cannot enter "\Q$d\/closed\E"/,
    'a link with "..": the directory it walks through') or diag($out);

unlink "$d/hop/first", "$d/token.d/token", "$d/closed/last";
rmdir "$d/hop";
rmdir "$d/closed";
rename "$d/private/token", "$d/token.d/token" or die "rename: $!\n";

# searchable but not readable: enough to open a file by its name

chmod 0711, "$d/token.d";
($rc, $out) = $t->nginx_t;
is($rc, 0, 'a 0711 directory: nginx -t passes') or diag($out);

# searchable by the worker user's group only

chown 0, $t->{worker_gid}, "$d/token.d";
chmod 0710, "$d/token.d";
($rc, $out) = $t->nginx_t;
is($rc, 0, 'a 0710 directory of the worker\'s group: nginx -t passes')
    or diag($out);

chown 0, 0, "$d/token.d";
($rc, $out) = $t->nginx_t;
isnt($rc, 0, 'a 0710 directory of another group: nginx -t fails');
like($out, qr/cannot enter "\Q$d\/token.d\E"/,
    'a 0710 directory of another group: says which') or diag($out);

chmod 0755, "$d/token.d";

# workers that run as root: nothing to check

chmod 0700, "$d/token.d";
($rc, $out) = $t->nginx_t("user root;\n$conf", 'root.conf');
chmod 0755, "$d/token.d";
is($rc, 0, 'workers running as root: a 0700 directory passes')
    or diag($out);

# a reload refused for a directory, or a file's owner, keeps nginx running
# on its configuration

$t->run($conf);

my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 200, 'running: 200') or diag($r->{raw});

my $master = $t->_nginx_pid;
my @workers = $t->worker_pids;
my %seen;

$t->expect_emerg(qr/cannot enter "\Q$d\/token.d\E"/);
$t->expect_emerg(qr/"\Q$d\/token.d\/token\E" is owned by uid 0/);

for my $c ([ 'a 0700 directory', sub { chmod 0700, "$d/token.d" },
        sub { chmod 0755, "$d/token.d" }, qr/cannot enter/ ],
    [ 'a file of root\'s', sub { chown 0, 0, "$d/token.d/token" },
        sub { chown $t->{worker_uid}, $t->{worker_gid}, "$d/token.d/token" },
        qr/is owned by uid 0/ ])
{
    my ($name, $break, $mend, $said) = @$c;

    my $before = () = $t->error_log =~ /$said/g;
    $seen{$_} = 1 for $t->worker_pids;

    $break->();
    $t->reload;
    $mend->();

    my $after = () = $t->error_log =~ /$said/g;
    is($after, $before + 1, "reload with $name: refused, and said");
    ok(Test::TaurusGuard::_alive($master), "reload with $name: the master "
        . 'runs on');
    is(join(',', $t->worker_pids), join(',', @workers),
        "reload with $name: the same workers serve");

    $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
    is($r->{status}, 200, "reload with $name: 200") or diag($r->{raw});
}

# nothing left behind if the master did exit (the old code did)

if (!Test::TaurusGuard::_alive($master)) {
    kill 'QUIT', grep { Test::TaurusGuard::_alive($_) } keys %seen;
    $t->done_testing;
    exit;
}

# and a reload that may go on does

$t->reload;
isnt(join(',', $t->worker_pids), join(',', @workers),
    'a good reload: new workers');

$t->done_testing;
