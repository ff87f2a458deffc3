#!/usr/bin/perl

# taurus_guard_mode report: a batch the allow-list or a policy would
# refuse is forwarded, signed and audited as would_deny with its reason
# (and denied), and its answer says so; what fails routing or validation
# is refused exactly as in enforce.  One location reports while another,
# in the same nginx, enforces.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;

my ($i0, $i1) = @INSTANCES;

# a project with a quota, and its instances
my $Q = 'e' x 32;
my @QI = map { sprintf '%032xin07', $_ + 1 } 0 .. 4;

$t->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $i0;
        %%PROJECT2%% $i0;
        $Q @QI;
    }

    taurus_guard_policy %%PROJECT%% delay=required;
    taurus_guard_policy %%PROJECT2%% cooldown=1h;
    taurus_guard_policy $Q quota=2/1h;

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_mode report;
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
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF

# an instance the allow-list does not name

my $r = $t->post(upgrade_path(), batch_json([ $i0, $i1 ], '"true"'));
is($r->{status}, 200, 'report: a denied instance is forwarded');
is(header($r, 'X-Taurus-Guard-Decision'), 'would_deny',
    'report: the answer says would_deny');

my $id = header($r, 'X-Taurus-Guard-Id') || 'none';
my @a = $t->wait_audit($id, 2);
is(join(',', map { $_->{decision} } @a), 'would_deny,done',
    'report: would_deny, then done');
like($a[0]{reason} || '', qr/not allowed for project/,
    'report: the reason is the allow-list\'s');
is(join(',', @{ $a[0]{denied} || [] }), $i1, 'report: denied lists it');
ok($a[0]{body_sha256}, 'report: the body hash is recorded');
is($a[1]{status}, 200, 'report: done 200');

my @up = $t->upstream_records;
is($up[-1]{signature}{ok}, 1, 'report: the forward is signed');
is($up[-1]{body}, batch_json([ $i0, $i1 ], '"true"'),
    'report: the canonical body');

# a policy breach

$r = $t->post(upgrade_path(), batch_json([ $i0 ], '"false"'));
is($r->{status}, 200, 'report: a policy breach is forwarded');
$id = header($r, 'X-Taurus-Guard-Id') || 'none';
@a = $t->wait_audit($id, 2);
is($a[0]{decision}, 'would_deny', 'report: would_deny');
like($a[0]{reason} || '', qr/delay=required/, 'report: the policy\'s reason');

# an allowed batch is plain allow

$r = $t->post(upgrade_path(), batch_json([ $i0 ], '"true"'));
is($r->{status}, 200, 'report: an allowed batch');
ok(!defined header($r, 'X-Taurus-Guard-Decision'),
    'report: no would_deny header when allowed');
@a = $t->wait_audit(header($r, 'X-Taurus-Guard-Id') || 'none', 2);
is($a[0]{decision}, 'allow', 'report: allow');

# what fails validation or routing is refused in report mode too

my $n = scalar $t->upstream_records;

$r = $t->post(upgrade_path(), '{"databases_instance_infos":[],"delay":1}');
is($r->{status}, 400, 'report: an invalid body: 400');
is($t->post('/v3/x' . $UPGRADE, '{}')->{status}, 404,
    'report: a bad route: 404');
is($t->post(upgrade_path(), batch_json([ $i0 ]),
    content_type => 'text/plain')->{status}, 415, 'report: a bad type: 415');
is(scalar $t->upstream_records, $n, 'report: none of those forwarded');

# the enforcing location beside it

$r = $t->post(upgrade_path(), batch_json([ $i0, $i1 ], '"true"'), port => 1);
is($r->{status}, 403, 'enforce: the same batch is refused');
is($r->{json}{error_code}, 'TG.0403', 'enforce: TG.0403');

$r = $t->post(upgrade_path(), batch_json([ $i0 ], '"false"'), port => 1);
is($r->{status}, 403, 'enforce: the policy breach is refused');

is(scalar $t->upstream_records, $n, 'enforce: nothing forwarded');

# a project the allow-list does not name at all is refused in report
# mode too: nothing is forwarded (or fetched) for a made-up project

my $n0 = scalar $t->upstream_records;
$r = $t->post(upgrade_path('c' x 32), batch_json([ $i0 ], '"true"'));
is($r->{status}, 403, 'report: a project the allow-list does not name: 403');
is(scalar $t->upstream_records, $n0, '... nothing forwarded');

# an instance id longer than any allow-list entry, in a project with a
# cooldown: a would_deny like the others, not a full policy zone

my $long = 'a' x 70;
$r = $t->post(upgrade_path($PROJECT2), batch_json([ $i0, $long ]));
is($r->{status}, 200, 'report: a 70-byte instance id is forwarded');
is(header($r, 'X-Taurus-Guard-Decision'), 'would_deny', '... as would_deny');
unlike($t->error_log, qr/is full/, '... and the policy zone is not full');

# the metrics count what each mode decided

sleep 1;
my $m = $t->http("GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
like($m->{body} || '', qr/^taurus_guard_requests_total\{decision="would_deny"\} 3$/m,
    'metrics: three would_deny');
like($m->{body} || '', qr/^taurus_guard_requests_total\{decision="allow"\} 1$/m,
    'metrics: one allow');
like($m->{body} || '', qr/^taurus_guard_upstream_responses_total\{code="2xx"\} 4$/m,
    'metrics: four forwarded answers');

# quota in report mode: what is forwarded is counted, a batch larger
# than the whole quota too, and the enforcing location then refuses;
# once the project's ring holds N=2 batches, further reported batches
# are forwarded but not counted

sub q_done {
    my ($ids, %o) = @_;
    my $r = $t->post(upgrade_path($Q), batch_json($ids), %o);
    my $id = header($r, 'X-Taurus-Guard-Id');
    my $refused = (($r->{json}{error_code} || '') =~ /\ATG\./);
    $t->wait_audit($id, $refused ? 1 : 2) if defined $id;
    return $r;
}

$r = q_done([ @QI[0 .. 2] ]);
is($r->{status}, 200, 'report quota: a batch of 3, quota=2/1h: forwarded');
is(header($r, 'X-Taurus-Guard-Decision'), 'would_deny', '... would_deny');
@a = $t->audit_by_id(header($r, 'X-Taurus-Guard-Id'));
like($a[0]{reason} || '', qr/a batch of 3 instances can never fit/,
    '... the reason enforce would give');

$r = q_done([ $QI[3] ], port => 1);
is($r->{status}, 429, 'enforce beside it: 429, the reported batch counted');
like($r->{json}{error_msg} || '', qr/3 of 2 instances used/,
    '... 3 of 2 used');

$r = q_done([ $QI[3] ]);
is($r->{status}, 200, 'report quota: one more batch, forwarded');
@a = $t->audit_by_id(header($r, 'X-Taurus-Guard-Id'));
like($a[0]{reason} || '', qr/3 of 2 instances used, the batch has 1/,
    '... would_deny: 3 of 2 used');

$r = q_done([ $QI[4] ]);
@a = $t->audit_by_id(header($r, 'X-Taurus-Guard-Id'));
like($a[0]{reason} || '', qr/4 of 2 instances used, the batch has 1/,
    'report quota: the second batch was counted (4 of 2)');

$r = q_done([ $QI[4] ]);
@a = $t->audit_by_id(header($r, 'X-Taurus-Guard-Id'));
like($a[0]{reason} || '', qr/4 of 2 instances used, the batch has 1/,
    'report quota: the ring full (2 batches), the third was not (4 of 2)');

# nginx -t

my ($rc, $out) = $t->nginx_t(<<"EOF");
http {
    taurus_guard_audit_log %%TESTDIR%%/audit.log;
    taurus_guard_credentials %%TESTDIR%%/credentials;

    server {
        listen 127.0.0.1:%%PORT_0%%;
        location /v3/ {
            taurus_guard on;
            taurus_guard_mode audit;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF
isnt($rc, 0, 'taurus_guard_mode audit: nginx -t fails');
like($out, qr/invalid value "audit".*test\.conf:\d+/s, '... at file:line');

# report mode says where it is set, at every nginx -t

($rc, $out) = $t->nginx_t(<<"EOF");
http {
    taurus_guard_audit_log %%TESTDIR%%/audit.log;
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_mode report;

    server {
        listen 127.0.0.1:%%PORT_0%%;
        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF
is($rc, 0, 'taurus_guard_mode report at http: nginx -t passes') or diag($out);
my $line = $t->conf_line(qr/taurus_guard_mode report;/, 'test.conf');
like($out, qr/\[warn\]\ taurus_guard_mode\ report:\ batches\ the\ allow-list
    \ or\ a\ policy\ refuses\ are\ forwarded\ here\ and\ below.*
    \ in\ \S+test\.conf:$line\b/x, 'report mode: a [warn] at its file:line')
    or diag($out);

$t->done_testing;
