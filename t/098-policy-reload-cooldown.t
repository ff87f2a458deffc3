#!/usr/bin/perl

# A reload that changes cooldown= holds for the instances upgraded before
# it: the cooldown in force runs from the end of each instance's last
# batch.  Lengthened (2s to 1h) it still refuses an instance upgraded
# before the reload once the old 2 s are over (409, the new policy's
# Retry-After); shortened (1h to 2s) it frees one.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;

my ($i0, $i1) = @INSTANCES;

sub conf {
    my ($c1, $c2) = @_;
    return <<"EOF";
worker_processes 1;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $i0 $i1;
        %%PROJECT2%% $i0 $i1;
    }

    taurus_guard_policy %%PROJECT%% cooldown=$c1;
    taurus_guard_policy %%PROJECT2%% cooldown=$c2;

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

$t->run(conf('2s', '1h'));

my $start = time;
my $r1 = $t->post(upgrade_path($PROJECT), batch_json([ $i0 ]));
is($r1->{status}, 200, 'cooldown=2s: upgraded');
my $r2 = $t->post(upgrade_path($PROJECT2), batch_json([ $i0 ]));
is($r2->{status}, 200, 'cooldown=1h: upgraded');
my $id1 = header($r1, 'X-Taurus-Guard-Id') || '-';

is($t->post(upgrade_path($PROJECT2), batch_json([ $i0 ]))->{status}, 409,
    'cooldown=1h: again at once, 409');

$t->write_conf(conf('1h', '2s'));
$t->reload;

# past the old 2 s, far from the new hour

sleep 0.1 while time < $start + 2.8;

my $r = $t->post(upgrade_path($PROJECT), batch_json([ $i0 ]));
my $j = $t->is_refusal($r, 409, 'TG.0409', 'lengthened to 1h');
my $msg = "policy cooldown=1h for project $PROJECT: instance $i0 was "
    . 'upgraded \d+ s ago, audit id ' . $id1;
like($j->{error_msg} || '', qr/\A$msg\z/,
    'lengthened: the new policy, the last batch');
my $after = header($r, 'Retry-After') || 0;
ok($after > 3590 && $after <= 3600, "lengthened: Retry-After $after, "
    . 'from the new hour');

$r = $t->post(upgrade_path($PROJECT2), batch_json([ $i0 ]));
is($r->{status}, 200, 'shortened to 2s: free again') or diag($r->{raw});

# and the cooldown the shortened policy starts holds

is($t->post(upgrade_path($PROJECT2), batch_json([ $i0 ]))->{status}, 409,
    'shortened: the next batch cools for 2 s');

$t->done_testing;
