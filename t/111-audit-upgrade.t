#!/usr/bin/perl

# A binary upgrade (USR2) runs two masters, each with its own shared
# memory, writing one audit file: the records of both make one chain,
# across the upgrade and after the old master quits.  Before the file
# lock and the zone's memory of the file's size, each master's workers
# linked to their own last record and the verifier reported tampering
# that never happened.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;
my $verify = $t->repo . '/build/taurus-guard-verify';
plan(skip_all => "no $verify (run make verify)") unless -x $verify;

$t->upstream;
$t->write_credentials;

# without the accept mutex, epoll's exclusive wake-ups may give every
# connection to the old master's workers

$t->run(<<"CONF");
worker_processes 2;

events {
    accept_mutex on;
    accept_mutex_delay 50ms;
}

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    log_format pids '\$pid \$status \$taurus_guard_id';

    taurus_guard_allow {
        %%PROJECT%% @INSTANCES;
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        access_log %%TESTDIR%%/logs/pids.log pids;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
CONF

sub workers {
    my ($master) = @_;
    my @w;
    for my $p (glob '/proc/[0-9]*') {
        open my $fh, '<', "$p/stat" or next;
        my $s = <$fh>;
        close $fh;
        next unless defined $s && $s =~ /\)\s+\S+\s+(\d+)/;
        push @w, $p =~ m{(\d+)\z} if $1 == $master;
    }
    return @w;
}

sub burst {
    my ($n) = @_;
    return $t->concurrent_posts(upgrade_path(),
        batch_json([ $INSTANCES[0] ]), $n);
}

my @r = burst(4);
is(scalar(grep { $_->[0] eq '200' } @r), 4, 'before the upgrade: 200');

my $old = $t->_nginx_pid;
my @old_workers = workers($old);

kill 'USR2', $old;

# the new master writes its pid file once it runs; until then it may be
# absent or empty

my ($end, $new) = (now() + 10, undef);
while (now() < $end) {
    $new = $t->_nginx_pid;
    last if -s "$dir/logs/nginx.pid.oldbin" && defined $new && $new != $old;
    sleep 0.1;
}

ok(defined $new && $new != $old, 'a new master runs')
    or die "no new master after USR2\n";

$end = now() + 10;
sleep 0.1 while now() < $end && workers($new) < 2;
my @new_workers = workers($new);

# traffic through both masters' workers, until each served some

my (%served, @ids);
for my $round (1 .. 20) {
    @r = burst(8);
    push @ids, map { $_->[2] } @r;
    is(scalar(grep { $_->[0] ne '200' } @r), 0, "round $round: all 200")
        or last;
    %served = map { $_ => 1 } $t->workers_of(@ids);
    last if (grep { $served{$_} } @old_workers)
        && (grep { $served{$_} } @new_workers);
}

ok((grep { $served{$_} } @old_workers), 'the old master served batches');
ok((grep { $served{$_} } @new_workers), 'the new master served batches')
    or diag("old: @old_workers, new: @new_workers, served: "
        . join(' ', sort keys %served));

my $out = $t->_cmd($verify, "$dir/audit.log");
is($? >> 8, 0, 'both masters write one chain') or diag($out);

# the old master leaves

kill 'QUIT', $old;
$end = now() + 10;
sleep 0.1 while now() < $end && Test::TaurusGuard::_alive($old);
ok(!Test::TaurusGuard::_alive($old), 'the old master quit');

@r = burst(4);
is(scalar(grep { $_->[0] eq '200' } @r), 4, 'after the upgrade: 200');

$out = $t->_cmd($verify, "$dir/audit.log");
is($? >> 8, 0, 'the chain verifies after the old master left') or diag($out);

$t->done_testing;
