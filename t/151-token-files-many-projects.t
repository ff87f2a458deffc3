#!/usr/bin/perl

# taurus_guard_token file= with $taurus_guard_project in the path: each
# worker keeps the files of 256 projects.  A project never gave its
# place up: once a worker had served 256 projects, every batch of
# another one it took was refused with 503 ("more than 256 token
# files") until a reload, however many projects the allow-list names.
#
#   - 257 projects, one batch each, in one worker: all forwarded, each
#     with its own project's token;
#   - the 257th took the place of the project used least recently
#     (logged), whose file is read again when it comes back: its next
#     batch is forwarded with its token, a new one if the file changed;
#   - a project used again keeps its place.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Digest::MD5 qw(md5_hex);

use Test::TaurusGuard qw(:all);

my @projects = map { sprintf '%032x', 0x70f1e00 + $_ } 1 .. 257;
my $allow = join "\n", map { "        $_ $INSTANCES[0];" } @projects;

# a token of its own per project, nothing like a project ID (the leak
# check looks for every token in the logs, which name the projects)
sub token { return 'TKN-' . md5_hex("@_") }

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;
$t->write_secret_file("tokens/$_.token", token($_) . "\n") for @projects;

$t->run(<<"EOF2");
worker_processes 1;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_token file=%%TESTDIR%%/tokens/\$taurus_guard_project.token;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
$allow
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
EOF2

my $body = batch_json([ $INSTANCES[0] ]);

# the token the upstream got with a batch of the project, or the status

sub batch {
    my ($project) = @_;
    my $r = $t->post(upgrade_path($project), $body);
    return "status $r->{status}" unless ($r->{status} || 0) == 200;
    my @up = $t->upstream_records;
    return join('|', headers_named($up[-1]{headers}, 'X-Auth-Token'));
}

# 257 projects, the first of them used again halfway

my (%bad, $n);
for my $i (0 .. 256) {
    for my $p ($projects[$i], $i == 128 ? ($projects[0]) : ()) {
        my $got = batch($p);
        $n++;
        $bad{$p} = $got unless $got eq token($p);
    }
}
is($n, 258, '258 batches sent');
is_deeply(\%bad, {}, '257 projects in one worker: every batch forwarded '
    . 'with its own project\'s token')
    or diag(explain(\%bad));

my $forgotten = 'more than 256 token files: "' . $t->testdir
    . "/tokens/$projects[1].token\", the least recently used, is forgotten";
like($t->error_log, qr/\[notice\].*\Q$forgotten\E/,
    'the least recently used project (the second) gave its place up, '
    . 'logged');
unlike($t->error_log, qr/forgotten.*\Q$projects[0]\E/,
    'the project used again kept its place');

# the project forgotten: its file is read again, as it is now

$t->write_secret_file("tokens/$projects[1].token",
    token('new', $projects[1]) . "\n");
is(batch($projects[1]), token('new', $projects[1]),
    'the project forgotten: forwarded with its file read again');
is(batch($projects[0]), token($projects[0]),
    'the project used again: forwarded with its token');

unlike($t->error_log, qr/more than 256 token files(?!:)/,
    'no batch refused for want of a place');

$t->stop;
$t->done_testing;
