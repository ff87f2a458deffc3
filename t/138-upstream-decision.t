#!/usr/bin/perl

# X-Taurus-Guard-Decision is the gateway's: an upstream that sends a
# header of that name (in any case, once or twice) never has it reach
# the caller, whether the gateway adds its own (report mode,
# would_deny) or not (a plain allow, in either mode), and whatever the
# location's proxy_pass_header says.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

my ($i0, $i1) = @INSTANCES;

$t->upstream(headers => [ 'X-Taurus-Guard-Decision: allow',
    'x-taurus-guard-decision: would_deny' ]);
$t->write_credentials;

$t->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $i0;
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_mode report;
            proxy_pass_header X-Taurus-Guard-Decision;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        server_name localhost;

        location /v3/ {
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF

# the upstream does send them: an unguarded location passes them on

my $r = $t->post(upgrade_path(), batch_json([ $i0 ]), port => 2);
is(join(',', headers_named($r, 'X-Taurus-Guard-Decision')),
    'allow,would_deny', 'unguarded: the upstream\'s two headers');

# enforce, allowed: the gateway sends no decision header, nor does the
# upstream's reach the caller

$r = $t->post(upgrade_path(), batch_json([ $i0 ]));
is($r->{status}, 200, 'enforce: allowed');
is(join(',', headers_named($r, 'X-Taurus-Guard-Decision')), '',
    'enforce: no X-Taurus-Guard-Decision from the upstream');

# report, allowed: none either

$r = $t->post(upgrade_path(), batch_json([ $i0 ]), port => 1);
is($r->{status}, 200, 'report: allowed');
is(join(',', headers_named($r, 'X-Taurus-Guard-Decision')), '',
    'report, allowed: no X-Taurus-Guard-Decision from the upstream');

# report, would_deny: the gateway's one

$r = $t->post(upgrade_path(), batch_json([ $i0, $i1 ]), port => 1);
is($r->{status}, 200, 'report: would_deny forwarded');
is(join(',', headers_named($r, 'X-Taurus-Guard-Decision')), 'would_deny',
    'report, would_deny: the gateway\'s header only');

my $id = header($r, 'X-Taurus-Guard-Id') || 'none';
my @a = $t->wait_audit($id, 2);
is(join(',', map { $_->{decision} } @a), 'would_deny,done',
    'report, would_deny: its records');

is(scalar $t->upstream_records, 4, 'four batches forwarded');

$t->done_testing;
