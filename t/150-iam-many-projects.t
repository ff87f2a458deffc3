#!/usr/bin/perl

# taurus_guard_token iam= keeps the tokens of 256 projects in shared
# memory, which outlives reloads.  A project never gave its place up:
# once 256 projects had had a token since nginx started, every batch of
# another one was refused with 503 ("no usable IAM token") until a
# restart, though an allow-list that changes over time names no more
# than a few projects at once.
#
#   - two workers share the zone; 258 projects, one batch each: all
#     forwarded, each with a token of its own project (the upstream
#     refuses another project's);
#   - the 257th took the place of the project used least recently
#     (logged), whose token was wiped: its next batch fetches a new one
#     and is forwarded;
#   - a project used recently keeps its token (no second fetch);
#   - after a reload, a further new project is served too.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-iam.pl" }

my @projects = map { sprintf '%032x', 0x7e57000 + $_ } 1 .. 259;
my $allow = join "\n", map { "        $_ $INSTANCES[0];" } @projects;

my $conf = <<"EOF";
worker_processes 2;

http {
    log_format pids '\$pid \$status \$taurus_guard_id';

    taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
$allow
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            access_log %%TESTDIR%%/logs/pids.log pids;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_iam {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }
    }
}
EOF

my $body = batch_json([ $INSTANCES[0] ]);

my $t = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t);
TaurusGuard::IAM::iam_supported($t, $conf) or do {
    $t->done_testing;
    exit;
};
TaurusGuard::IAM::start_iam($t);
TaurusGuard::IAM::upstream_tokens($t);
$t->run($conf);

# how many tokens IAM issued for each project

sub issued {
    my %n;
    $n{ $_->[1] }++ for TaurusGuard::IAM::iam_tokens($t);
    return \%n;
}

my @ids;

sub batch {
    my ($project) = @_;
    my $r = $t->post(upgrade_path($project), $body);
    push @ids, header($r, 'X-Taurus-Guard-Id') || 'none';
    return $r->{status};
}

# 258 projects, the first of them used again halfway

my %status;
for my $i (0 .. 257) {
    $status{ batch($projects[$i]) }++;
    $status{ batch($projects[0]) }++ if $i == 128;
}
is_deeply(\%status, { 200 => 259 }, '258 projects: every batch forwarded')
    or diag(explain(\%status));

my $n = issued();
is(scalar(grep { $n->{$_} } @projects[0 .. 257]), 258,
    'a token issued for each project');
is($n->{ $projects[0] }, 1, 'the project used again: one token so far');

my $dropped = 'more than 256 projects with fetched secrets: project "'
    . $projects[1] . q{"'s, the least recently used, is dropped};
like($t->error_log, qr/\[notice\].*\Q$dropped\E/,
    'the least recently used project (the second) gave its place up, '
    . 'logged');
unlike($t->error_log, qr/dropped.*\Q$projects[0]\E/,
    'the project used again kept its place');

# the project dropped fetches again; the one used again does not

is(batch($projects[1]), 200, 'the dropped project: forwarded');
is(issued()->{ $projects[1] }, 2, 'with a new token');
is(batch($projects[0]), 200, 'the project used again: forwarded');
is(issued()->{ $projects[0] }, 1, 'with the token it had');

# a reload keeps the zone, full: a new project is served

$t->reload;
is(batch($projects[258]), 200, 'after a reload, a 259th project: '
    . 'forwarded');
is(issued()->{ $projects[258] }, 1, 'with a token of its own');

cmp_ok(scalar(my @w = $t->workers_of(@ids)), '>=', 2,
    'several workers served the batches (a reload brings new ones)');
unlike($t->error_log, qr/no usable IAM token|with IAM tokens/,
    'no batch refused for want of a place');

$t->stop;
$t->done_testing;
