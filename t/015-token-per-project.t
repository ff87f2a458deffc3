#!/usr/bin/perl

# taurus_guard_token file= with $taurus_guard_project in the path: one
# token file per project, for refreshers that keep a token per project.
# Each project's requests carry that project's token; a project without
# its file is refused (503, an error record, nothing forwarded); a path
# with variables but without the project, or with any other variable
# (which would let a caller choose the file), fails nginx -t.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

my $third = 'cccccccccccccccccccccccccccccccc';

$t->upstream;
$t->write_credentials;
$t->write_secret_file("tokens/$PROJECT.token", "TOKEN-OF-PROJECT-A\n");
$t->write_secret_file("tokens/$PROJECT2.token", "TOKEN-OF-PROJECT-B\n");

$t->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_token file=%%TESTDIR%%/tokens/\$taurus_guard_project.token;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
        %%PROJECT2%% $INSTANCES[0];
        $third $INSTANCES[0];
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

unlike($t->error_log, qr/serves every project/,
    'no "one token for every project" warning');

my $body = batch_json([ $INSTANCES[0] ]);

for my $c ([ $PROJECT, 'TOKEN-OF-PROJECT-A' ],
    [ $PROJECT2, 'TOKEN-OF-PROJECT-B' ], [ $PROJECT, 'TOKEN-OF-PROJECT-A' ])
{
    my ($project, $token) = @$c;

    my $r = $t->post(upgrade_path($project), $body);
    is($r->{status}, 200, "$project: 200");

    my @up = $t->upstream_records;
    my $u = $up[-1] || { headers => [] };
    is(join('|', headers_named($u->{headers}, 'X-Auth-Token')), $token,
        "$project: its own token, and only it");
    is(join('|', headers_named($u->{headers}, 'X-Project-Id')), $project,
        "$project: X-Project-Id");
    is($u->{signature}{ok}, 1, "$project: signature verifies");
}

# a project whose refresher wrote no file yet

my $n = () = $t->upstream_records;
my $r = $t->post(upgrade_path($third), $body);
my $j = $t->is_refusal($r, 503, 'TG.0503', 'project without a token file');
is(scalar(() = $t->upstream_records), $n,
    'project without a token file: nothing forwarded');
my @a = $t->wait_audit(($j || {})->{audit_id} || 'none', 1);
is(($a[0] || {})->{decision}, 'error', 'project without a token file: '
    . 'error record');
$t->expect_alert(qr/tokens\/$third\.token" cannot be opened/);

# its file appears: picked up at the next look, without a reload

$t->write_secret_file("tokens/$third.token", "TOKEN-OF-PROJECT-C\n");

my $got;
my $end = now() + 5;

while (now() < $end) {
    sleep 0.3;
    $r = $t->post(upgrade_path($third), $body);
    next unless ($r->{status} || 0) == 200;
    my @up = $t->upstream_records;
    $got = join('|', headers_named($up[-1]{headers}, 'X-Auth-Token'));
    last;
}

is($got, 'TOKEN-OF-PROJECT-C', 'a new project file is used, no reload');

# a path with variables must hold the project

my ($rc, $out) = $t->nginx_t(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_token file=%%TESTDIR%%/tokens/\$host.token;
}
EOF
isnt($rc, 0, 'a path with variables but no project: nginx -t fails');
like($out, qr/must hold \$taurus_guard_project/,
    'a path with variables but no project: says why');

# no variable but the project, however nginx spells them: another one
# (a header, an argument, a capture) would let a caller pick the file

my $conf = $t->conf_path('test.conf');

for my $c (
    [ 'a header before the project', '$http_x/$taurus_guard_project.token',
        'http_x' ],
    [ 'in braces', '${http_x}/${taurus_guard_project}.token', 'http_x' ],
    [ 'an argument after the project', '$taurus_guard_project.$arg_t',
        'arg_t' ],
    [ 'a capture', '$taurus_guard_project$1.token', '1' ],
    [ 'a longer name', '$taurus_guard_projects.token',
        'taurus_guard_projects' ],
    )
{
    my ($name, $path, $var) = @$c;

    ($rc, $out) = $t->nginx_t(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_token file=%%TESTDIR%%/tokens/$path;
}
EOF
    note($out);
    isnt($rc, 0, "$name: nginx -t fails");
    my $msg = 'taurus_guard_token: a path with variables must hold'
        . ' $taurus_guard_project and no other variable, not'
        . " \"\$$var\":";
    like($out, qr/\[emerg\] \Q$msg\E/, "$name: names \$$var")
        or diag($out);
    my $line = $t->conf_line(qr/taurus_guard_token/, 'test.conf');
    like($out, qr/ in \Q$conf\E:$line\b/, "$name: in test.conf:$line");
}

for my $path ('${taurus_guard_project}.token',
    '$Taurus_Guard_Project/$taurus_guard_project.token')
{
    ($rc, $out) = $t->nginx_t(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_token file=%%TESTDIR%%/tokens/$path;
}
EOF
    is($rc, 0, "$path: the project only, nginx -t passes") or diag($out);
}

$t->done_testing;
