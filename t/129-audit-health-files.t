#!/usr/bin/perl

# The audit's failing state is one per file.  It was one for all of
# them: with two audit files, a flush (or a write) that worked on one
# cleared the failure of the other, whose batches were all still refused
# while /health answered 200 and taurus_guard_audit_failing was 0.  Two
# servers, each with its own audit file: a flush of a.log fails, one of
# b.log works; a.log's check fails until one of its own flushes works.
# With the thread pool and in the event loop; the fdatasync() shim
# (t/lib/tg-syncshim.c) fails while "fail" exists.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;

use Test::TaurusGuard qw(:all);

plan(skip_all => 'a sanitizer build cannot take an LD_PRELOAD shim')
    if defined $ENV{TG_MODULE} && $ENV{TG_MODULE} eq '';

sub checks {
    my ($t) = @_;
    my $r = $t->http("GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n");
    my $h = eval { JSON::PP->new->decode($r->{body}) } || {};
    my %c = (a => 'ok', b => 'ok');     # a 200 lists no checks

    for my $k (keys %{ $h->{checks} || {} }) {
        $c{$1} = $h->{checks}{$k} if $k =~ m{^audit .*/(\w+)\.log$};
    }

    return ($r->{status}, \%c);
}

sub failing {
    my ($t) = @_;
    my ($r, $m) = $t->metrics;
    return $m->{taurus_guard_audit_failing};
}

for my $how ('', 'thread_pool=off') {
    my $name = $how ? 'event loop' : 'thread pool';

    my $t = Test::TaurusGuard->new;
    my $dir = $t->testdir;
    my $shim = $t->sync_shim() or plan(skip_all => 'the shim does not build');

    $t->upstream;
    $t->write_credentials;
    $t->expect_alert(qr/taurus_guard: fdatasync\(\) to audit log .* failed/);

    {
        local $ENV{LD_PRELOAD} = $shim;
        $t->run(<<"EOF2");
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
            taurus_guard_audit_log %%TESTDIR%%/a.log $how;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /health  { taurus_guard_health; }
        location = /metrics { taurus_guard_metrics; }
    }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_audit_log %%TESTDIR%%/b.log $how;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF2
    }

    my ($s, $c) = checks($t);
    is($s, 200, "$name: health 200 at first");

    $t->write_file('fail', '');

    my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
    is($r->{status}, 503, "$name: a.log's flush fails: 503");
    $t->wait_audit(header($r, 'X-Taurus-Guard-Id'), 2, 'a.log');

    ($s, $c) = checks($t);
    is($c->{a}, 'fail', "$name: a.log's check fails");
    is($c->{b}, 'ok', "$name: b.log's does not");

    unlink "$dir/fail";

    $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[1] ]),
                  port => 1);
    is($r->{status}, 200, "$name: b.log's flush works: 200");

    ($s, $c) = checks($t);
    is($s, 503, "$name: health still 503");
    is($c->{a}, 'fail', "$name: a.log's check still fails");
    is($c->{b}, 'ok', "$name: b.log's is ok");
    is(failing($t), 1, "$name: taurus_guard_audit_failing still 1");

    # b.log fails and then works: a.log's failure is still its own

    $t->write_file('fail', '');
    $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[2] ]),
                  port => 1);
    is($r->{status}, 503, "$name: b.log's flush fails: 503");
    unlink "$dir/fail";
    $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[2] ]),
                  port => 1);
    is($r->{status}, 200, "$name: b.log's flush works again: 200");
    ($s, $c) = checks($t);
    is($c->{a}, 'fail', "$name: a.log's check still fails");
    is($c->{b}, 'ok', "$name: b.log's is ok again");

    $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[1] ]));
    is($r->{status}, 200, "$name: a.log's flush works: 200");

    ($s, $c) = checks($t);
    is($s, 200, "$name: health 200 again");
    is(failing($t), 0, "$name: taurus_guard_audit_failing 0 again");

    $t->finish;
}

done_testing;
