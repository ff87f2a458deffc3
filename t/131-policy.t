#!/usr/bin/perl

# taurus_guard_policy: each knob accepted and refused at its boundary,
# nginx -t errors at file and line, a quota spent exactly under
# concurrent batches in four workers, cooldown and in-flight refusals
# naming the audit id, state kept across a reload, and a full zone that
# fails closed.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use POSIX ();
use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;

my ($i0, $i1, $i2) = @INSTANCES;

# instances of the third project: for quota and cooldown
my $P3 = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
my @Q = map { sprintf '%032xin07', $_ + 1 } 0 .. 11;

# and of a fourth, many, to fill a small zone
my $P4 = 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb';
my @F = map { sprintf '%032xin07', $_ + 1000 } 0 .. 399;

# a slow upstream: answers 200 three seconds after the request is whole

my $slow_port = $t->port('SLOW');
my $slow = fork;
die "fork: $!\n" unless defined $slow;

if ($slow == 0) {
    my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$slow_port",
        Listen => 16, ReuseAddr => 1) or POSIX::_exit(1);
    while (my $c = $l->accept) {
        my $req = '';
        while ($req !~ /\r\n\r\n/) {
            my $n = sysread($c, $req, 4096, length $req) or last;
        }
        my ($len) = $req =~ /Content-Length:\s*(\d+)/i;
        my ($head, $body) = split /\r\n\r\n/, $req, 2;
        $body = '' unless defined $body;
        while (length $body < ($len || 0)) {
            sysread($c, $body, 4096, length $body) or last;
        }
        sleep 3;
        print $c "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
            . "Connection: close\r\n\r\n{}";
        close $c;
    }
    POSIX::_exit(0);
}

END { kill 'TERM', $slow if $slow; }

sub conf {
    my ($policy, %o) = @_;
    my $zone = $o{zone} || '';
    return <<"EOF";
worker_processes 4;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;
    $zone

    taurus_guard_allow {
        %%PROJECT%% $i0 $i1 $i2;
        %%PROJECT2%% $i0 $i1 $i2;
        $P3 @Q;
        $P4 @F;
    }

$policy

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /metrics {
            taurus_guard_metrics;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_2%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        return 500 '{"error_code":"X.500"}';
    }

    server {
        listen 127.0.0.1:%%PORT_3%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:$slow_port;
            proxy_read_timeout 10s;
        }
    }
}
EOF
}

# nginx -t: each mistake at its file and line

my @bad = (
    [ 'taurus_guard_policy %%PROJECT%% color=red;',
      qr/invalid parameter "color=red"/ ],
    [ 'taurus_guard_policy %%PROJECT%% max_batch=0;',
      qr/invalid "max_batch=0"/ ],
    [ 'taurus_guard_policy %%PROJECT%% max_batch=1001;',
      qr/invalid "max_batch=1001"/ ],
    [ 'taurus_guard_policy %%PROJECT%% quota=10;', qr/invalid "quota=10"/ ],
    [ 'taurus_guard_policy %%PROJECT%% quota=0/1h;',
      qr/invalid "quota=0\/1h"/ ],
    [ 'taurus_guard_policy %%PROJECT%% quota=5/soon;',
      qr/invalid period "soon"/ ],
    [ 'taurus_guard_policy %%PROJECT%% cooldown=0s;',
      qr/invalid period "0s"/ ],
    [ 'taurus_guard_policy %%PROJECT%% delay=maybe;',
      qr/invalid parameter "delay=maybe"/ ],
    [ 'taurus_guard_policy cccccccccccccccccccccccccccccccc max_batch=1;',
      qr/policy for project "c{32}", which the allow-list does not name/ ],
    [ 'taurus_guard_policy not-a-project max_batch=1;',
      qr/invalid project "not-a-project"/ ],
    [ "taurus_guard_policy default max_batch=1;\n"
      . "taurus_guard_policy default max_batch=2;",
      qr/policy for "default" is duplicate/ ],
);

for my $b (@bad) {
    my ($rc, $out) = $t->nginx_t(conf($b->[0]));
    isnt($rc, 0, "nginx -t fails: $b->[0]");
    my $line = $t->conf_line(
        $b->[0] =~ /duplicate|max_batch=2/ ? qr/max_batch=2/
        : qr/taurus_guard_policy/, 'test.conf');
    like($out, qr/$b->[1].*test\.conf:$line/s, "... why, at line $line")
        or diag($out);
}

my $policies = <<"EOF";
    taurus_guard_policy %%PROJECT%% delay=required max_batch=2;
    taurus_guard_policy default max_batch=1;
    taurus_guard_policy $P3 quota=5/1h cooldown=1h;
    taurus_guard_policy $P4 cooldown=1h;
EOF

my ($rc, $out) = $t->nginx_t(conf($policies));
is($rc, 0, 'the policies pass nginx -t') or diag($out);

$t->run(conf($policies, zone => 'taurus_guard_policy_zone 32k;'));

# delay=required

my $r = $t->post(upgrade_path(), batch_json([ $i0 ], '"false"'));
is($r->{status}, 403, 'delay=required, "false": 403');
is($r->{json}{error_code}, 'TG.0403', '... TG.0403');
like($r->{json}{error_msg} || '', qr/delay=required/, '... names the policy');

my ($rec) = grep { $_->{id} eq ($r->{json}{audit_id} || '') }
    $t->audit_records;
is($rec->{decision}, 'deny', '... audited as deny');
like($rec->{reason} || '', qr/delay=required/, '... with the reason');
is(scalar @{ $rec->{instances} || [] }, 1, '... and the batch');

is($t->post(upgrade_path(), batch_json([ $i0 ], '"true"'))->{status}, 200,
    'delay=required, "true": 200');
is($t->post(upgrade_path(), batch_json([ $i0 ], 'true'))->{status}, 200,
    'delay=required, true: 200');

# max_batch, the project's own below the global one

is($t->post(upgrade_path(), batch_json([ $i0, $i1 ], 'true'))->{status},
    200, 'max_batch=2, two instances: 200');
$r = $t->post(upgrade_path(), batch_json([ $i0, $i1, $i2 ], 'true'));
is($r->{status}, 403, 'max_batch=2, three instances: 403');
like($r->{json}{error_msg} || '', qr/max_batch=2/, '... names the policy');

# default: for a project without its own line

is($t->post(upgrade_path($PROJECT2), batch_json([ $i0 ]))->{status}, 200,
    'default max_batch=1, one instance: 200');
is($t->post(upgrade_path($PROJECT2), batch_json([ $i0, $i1 ]))->{status},
    403, 'default max_batch=1, two instances: 403');

# quota=5/1h with cooldown=1h: a cooldown refusal spends nothing

is($t->post(upgrade_path($P3), batch_json([ @Q[0, 1] ]))->{status}, 200,
    'quota: 2 of 5');

$r = $t->post(upgrade_path($P3), batch_json([ $Q[0] ]));
is($r->{status}, 409, 'cooldown: the same instance again: 409');
is($r->{json}{error_code}, 'TG.0409', '... TG.0409');
my @first = grep { ($_->{decision} || '') eq 'allow'
    && ($_->{project_id} || '') eq $P3 } $t->audit_records;
like($r->{json}{error_msg} || '', qr/\Q$Q[0]\E.*audit id \Q$first[0]{id}\E/,
    '... names the instance and the audit id of its upgrade');

is($t->post(upgrade_path($P3), batch_json([ @Q[2, 3, 4] ]))->{status}, 200,
    'quota: 5 of 5 (the 409 spent none)');

$r = $t->post(upgrade_path($P3), batch_json([ $Q[5] ]));
is($r->{status}, 429, 'quota spent: 429');
is($r->{json}{error_code}, 'TG.0429', '... TG.0429');
my $ra = header($r, 'Retry-After');
ok(defined $ra && $ra > 3000 && $ra <= 3600, "... Retry-After $ra")
    or diag(explain($r));

# the metrics show the quota in use, by project

my $m = $t->http("GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
like($m->{body} || '', qr/^taurus_guard_quota_used\{project="$P3"\} 5$/m,
    'metrics: quota used 5');
like($m->{body} || '',
    qr/^taurus_guard_quota_limit\{project="$P3",period="3600"\} 5$/m,
    'metrics: quota limit 5 an hour');

# a reload keeps both

$t->reload;

is($t->post(upgrade_path($P3), batch_json([ $Q[6] ]))->{status}, 429,
    'after a reload: the quota is still spent');
is($t->post(upgrade_path($P3), batch_json([ $Q[0] ]))->{status}, 409,
    'after a reload: the cooldown still holds');

# cooldown starts only with a 2xx: an upstream 500 leaves it free

# (the batch is in flight until its log phase, which gives it back and
# then writes its done record: just after the answer leaves, so a retry
# that raced it would find it still in flight)

$r = $t->post(upgrade_path($P4), batch_json([ $F[0] ]), port => 1);
is($r->{status}, 500, 'an upgrade that failed upstream (500)');
$t->wait_audit(header($r, 'X-Taurus-Guard-Id') || 'none', 2);
is($t->post(upgrade_path($P4), batch_json([ $F[0] ]), port => 1)->{status},
    500, '... can be sent again at once');

# in flight: a second batch naming an instance still in flight

my $pid = fork;
die "fork: $!\n" unless defined $pid;

if ($pid == 0) {
    $t->post(upgrade_path($P4), batch_json([ $F[1] ]), port => 3,
        timeout => 10);
    POSIX::_exit(0);
}

sleep 1;
$r = $t->post(upgrade_path($P4), batch_json([ $F[2], $F[1] ]));
is($r->{status}, 409, 'an instance in flight: 409');
like($r->{json}{error_msg} || '',
    qr/\Q$F[1]\E has a batch in flight, audit id [0-9a-f]{32}/,
    '... names it and the audit id in flight');
waitpid $pid, 0;

is($t->post(upgrade_path($P4), batch_json([ $F[1] ]))->{status}, 409,
    'after its 200, the cooldown holds it');

# a quota under concurrency: 4 workers, 12 one-instance batches at once
# against a fresh quota of 7, cooldown off

$t->stop;
$t->upstream;

my $conc = "    taurus_guard_policy $P3 quota=7/1h;\n";
my $before = grep { ($_->{target} || '') =~ /\Q$P3\E/ } $t->upstream_records;
unlink $t->testdir . '/logs/nginx.pid';
$t->run(conf($conc));

my @kids;
for my $i (0 .. 11) {
    pipe my $rd, my $wr or die "pipe: $!\n";
    my $k = fork;
    die "fork: $!\n" unless defined $k;
    if ($k == 0) {
        close $rd;
        my $x = eval { $t->post(upgrade_path($P3), batch_json([ $Q[$i] ])) }
            || {};
        print $wr(($x->{status} || 'none') . "\n");
        close $wr;
        POSIX::_exit(0);
    }
    close $wr;
    push @kids, [ $k, $rd ];
}

my %count;
for my $k (@kids) {
    my $fh = $k->[1];
    my $s = <$fh>;
    chomp $s if defined $s;
    $count{ defined $s ? $s : 'none' }++;
    waitpid $k->[0], 0;
}

is($count{200} || 0, 7, 'concurrent: exactly 7 forwarded')
    or diag(explain(\%count));
is($count{429} || 0, 5, 'concurrent: 5 refused with 429');
is(scalar(grep { ($_->{target} || '') =~ /\Q$P3\E/ }
    $t->upstream_records) - $before, 7, 'the upstream got 7 of them');

# a full zone: batches of 100 fresh instances with a cooldown in 32k

$t->stop;
$t->upstream;
unlink $t->testdir . '/logs/nginx.pid';
$t->run(conf("    taurus_guard_policy $P4 cooldown=1h;\n",
    zone => 'taurus_guard_policy_zone 32k;'));

$t->expect_alert(qr/zone "taurus_guard_policy" is full/);

my @st;
for my $b (0 .. 3) {
    push @st, $t->post(upgrade_path($P4),
        batch_json([ @F[$b * 100 .. $b * 100 + 99] ]))->{status};
}

ok((grep { $_ == 503 } @st), 'a full zone: 503 ' . join(',', @st));
is($st[0], 200, 'the first batch fitted');
like($t->error_log, qr/\[alert\].*zone "taurus_guard_policy" is full/,
    'a full zone: one [alert]');

$t->done_testing;
