#!/usr/bin/perl

# A failed flush keeps the health check failing.  A batch whose flush
# fails is refused, and its allow record closed by an error record; that
# record's write worked, and a successful write cleared the "audit
# failing" state: right after the failure, and while every batch was
# refused, /health answered 200 and taurus_guard_audit_failing was 0.
# Now only a flush that works, or a rotation to another file, says the
# file works again.  And a failed flush in the thread pool counted twice
# in taurus_guard_audit_failures_total (once as the error it logs, once
# as a flush), one in the event loop once: once in both now.  With the
# thread pool and in the event loop; the fdatasync() shim
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

sub health {
    my ($t) = @_;
    my $r = $t->http("GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n");
    my $h = eval { JSON::PP->new->decode($r->{body}) } || {};
    my ($check) = grep { /^audit / } keys %{ $h->{checks} || {} };
    return ($r->{status}, $check ? $h->{checks}{$check} : 'ok');
}

sub failing {
    my ($t) = @_;
    my ($r, $m) = $t->metrics;
    return $m->{taurus_guard_audit_failing};
}

sub failures {
    my ($t) = @_;
    my ($r, $m) = $t->metrics;
    return $m->{taurus_guard_audit_failures_total};
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
    taurus_guard_audit_log %%TESTDIR%%/audit.log $how;

    taurus_guard_allow {
        %%PROJECT%% @INSTANCES;
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /health  { taurus_guard_health; }
        location = /metrics { taurus_guard_metrics; }
    }
}
EOF2
    }

    is((health($t))[0], 200, "$name: health 200 at first");

    my $f0 = failures($t);
    $t->write_file('fail', '');

    my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
    is($r->{status}, 503, "$name: a batch whose flush fails: 503");
    $t->wait_audit(header($r, 'X-Taurus-Guard-Id'), 2);
    is(failures($t) - $f0, 1, "$name: one failure counted, once");

    my ($s, $c) = health($t);
    is($s, 503, "$name: then health 503");
    is($c, 'fail', "$name: its audit check fails");
    is(failing($t), 1, "$name: taurus_guard_audit_failing 1");

    unlink "$dir/fail";

    $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[1] ]));
    is($r->{status}, 200, "$name: the disk back, a batch: 200");
    is((health($t))[0], 200, "$name: health 200 again");
    is(failing($t), 0, "$name: taurus_guard_audit_failing 0 again");

    # a rotation to another file also says it works again

    $t->write_file('fail', '');
    $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[2] ]));
    is($r->{status}, 503, "$name: failing again: 503");
    is((health($t))[0], 503, "$name: health 503");
    unlink "$dir/fail";

    rename "$dir/audit.log", "$dir/audit.log.1" or die "rename: $!\n";
    $t->reopen;
    is((health($t))[0], 200, "$name: after a rotation, health 200");

    $t->finish;
}

done_testing;
