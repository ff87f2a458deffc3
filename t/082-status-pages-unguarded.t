#!/usr/bin/perl

# taurus_guard_metrics and taurus_guard_health are the gateway's status
# pages, never guarded requests, wherever "taurus_guard on" is set: in
# a server that guards every location they answer 200 with no audit id
# and write no audit record.  The batches of that server are guarded as
# before, and "taurus_guard on" in a status location itself fails
# nginx -t with its file and line, as does another content handler
# there, in an "if" block too.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;

my $conf = <<"EOF";
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    taurus_guard on;

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /metrics {
            taurus_guard_metrics;
        }

        location = /health {
            taurus_guard_health;
        }

        location /status/ {
            location = /status/health {
                taurus_guard_health;
            }
        }

        location = /health2 {
            taurus_guard_health;

            if (\$arg_probe) {
                set \$probe 1;
            }
        }

        location /st/ {
            taurus_guard_health;

            location /st/up/ {
                proxy_pass http://127.0.0.1:%%PORT_UP%%/;
            }
        }
    }
}
EOF

# "taurus_guard on" in the status location itself: nginx -t fails

for my $d ('taurus_guard_metrics', 'taurus_guard_health') {
    (my $bad = $conf) =~ s/(location = \/health \{\n)\s*taurus_guard_health;/$1            taurus_guard on;\n            $d;/;
    my ($rc, $out) = $t->nginx_t($bad);
    isnt($rc, 0, "$d with taurus_guard on: nginx -t fails");
    like($out, qr/\[emerg\].*$d.*test\.conf:\d+/,
        "$d with taurus_guard on: names it, with file and line")
        or diag($out);
}

# a status page with a proxy_pass after it: the proxy would answer, in
# a location kept unguarded for the page, and forward batches unchecked
# and unsigned; the other order fails at the directive already

for my $d ('taurus_guard_metrics', 'taurus_guard_health') {
    (my $bad = $conf) =~ s/(location = \/health \{\n)\s*taurus_guard_health;/$1            $d;\n            proxy_pass http:\/\/127.0.0.1:%%PORT_UP%%;/;
    my ($rc, $out) = $t->nginx_t($bad);
    isnt($rc, 0, "$d, then proxy_pass: nginx -t fails");
    like($out, qr/\[emerg\].*$d.*test\.conf:\d+.*proxy_pass/,
        "$d, then proxy_pass: names the page's line and the proxy")
        or diag($out);
}

# an "if" with a proxy_pass of its own in a status location: the
# guard's rewrite handler runs before the "if" is taken, in the page's
# unguarded configuration, so a limit_req refusing the request there
# (503) and "error_page 503 = @fallback" to an unguarded location would
# forward the batch unchecked; nginx -t fails, naming the page's line

my $if_proxy = <<'EOF';
            limit_req zone=one nodelay;
            error_page 503 = @fallback;

            if ($arg_up) {
                proxy_pass http://127.0.0.1:%%PORT_UP%%;
            }
EOF

my $fallback = <<'EOF';
        location @fallback {
            taurus_guard off;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

EOF

for my $d ('taurus_guard_metrics', 'taurus_guard_health') {
    (my $bad = $conf) =~ s/(location = \/health \{\n)\s*taurus_guard_health;\n/$1            $d;\n$if_proxy/;
    $bad =~ s/(    taurus_guard on;\n)/$1    limit_req_zone \$server_name zone=one:1m rate=1r\/m;\n/;
    $bad =~ s/(        location = \/metrics \{)/$fallback$1/;
    my ($rc, $out) = $t->nginx_t($bad);
    isnt($rc, 0, "$d, an if with a proxy_pass: nginx -t fails");
    like($out, qr/\[emerg\] an "if" block .*$d.*test\.conf:\d+/,
        "$d, an if with a proxy_pass: names the page's line")
        or diag($out);
}

$t->run($conf);

for my $uri ('/metrics', '/health', '/status/health', '/st/',
    '/health2?probe=1')
{
    my $r = $t->http("GET $uri HTTP/1.0\r\nHost: localhost\r\n\r\n");
    is($r->{status}, 200, "$uri: 200");
    ok(!defined header($r, 'X-Taurus-Guard-Id'), "$uri: no audit id");
    is($r->{body}, '{"status":"ok"}', "$uri: the health body")
        if $uri =~ /health/;
    like($r->{body}, qr/^taurus_guard_requests_total\{decision="allow"\}/m,
        "$uri: the exposition") if $uri eq '/metrics';
}

# a location without a status page is guarded as the server is: beside
# one, and nested in one

my $r = $t->http("GET /status/other HTTP/1.0\r\nHost: localhost\r\n\r\n");
$t->is_refusal($r, 404, 'TG.0404', '/status/other');

$r = $t->post('/st/up/x', batch_json([ $INSTANCES[0] ]));
$t->is_refusal($r, 404, 'TG.0404', 'proxy nested in a status location');
is(scalar $t->upstream_records, 0, 'nothing forwarded from it');

# the server's batches are still guarded

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 200, 'batch: 200');
my $id = header($r, 'X-Taurus-Guard-Id') || 'none';
is(scalar $t->wait_audit($id, 2), 2, 'batch: allow and done');

$r = $t->post(upgrade_path(), batch_json([ $OTHER_INSTANCE ]));
$t->is_refusal($r, 403, 'TG.0403', 'batch not allowed');

# no record for any status page: allow, done, the 404s and the 403 only

sleep 0.3;

my @a = $t->audit_records;
is(scalar @a, 5, 'five records: the batches and the two 404s')
    or diag(explain \@a);
is(scalar(grep { ($_->{uri} || '') =~ /metrics|health/ } @a), 0,
    'no record of a status page');

$t->done_testing;
