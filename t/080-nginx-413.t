#!/usr/bin/perl

# A body over nginx's client_max_body_size on a guarded location is one
# of the gateway's refusals all the same: 413 in the API's error shape
# (TG.0413, the audit id in the body and the headers), never nginx's
# HTML page.  With nothing more than the documented configuration (both
# limits 1m by default) nginx's check on Content-Length comes first, so
# every oversized batch meets it; a chunked body meets it while the
# gateway reads.  An error_page the operator set for 413 is still theirs.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;
$t->write_token;
$t->write_file('allow.d/more.conf', "$PROJECT $INSTANCES[1];\n");
$t->write_file('html/too-large.json', '{"operator":"page"}');

$t->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_token file=%%TESTDIR%%/token;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%%  $INSTANCES[0];
        include %%TESTDIR%%/allow.d/*.conf;
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
            client_max_body_size 8k;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location /page/ {
            taurus_guard on;
            client_max_body_size 8k;
            error_page 413 /too-large.json;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /too-large.json {
            root %%TESTDIR%%/html;
        }
    }
}
EOF

my $path = upgrade_path();
my $batch = batch_json([ $INSTANCES[0] ]);

sub nginx_413 {
    my ($r, $name) = @_;

    my $j = $t->is_refusal($r, 413, 'TG.0413', $name);
    is(join(',', sort keys %$j), 'audit_id,error_code,error_msg',
        "$name: the API's error shape");
    like($j->{error_msg} || '', qr/client_max_body_size/,
        "$name: error_msg says which limit");
    unlike($r->{body}, qr/<html>/i, "$name: not nginx's HTML page");
    is(header($r, 'X-Request-Id'), header($r, 'X-Taurus-Guard-Id'),
        "$name: X-Request-Id is the audit id");
    is(header($r, 'Content-Length'), length $r->{body},
        "$name: Content-Length of the JSON");

    my $id = header($r, 'X-Taurus-Guard-Id') || 'none';
    my @a = $t->wait_audit($id, 1);
    is(scalar @a, 1, "$name: one audit record");
    is(($a[0] || {})->{status}, 413, "$name: recorded as 413");
    is(($a[0] || {})->{decision}, 'invalid', "$name: recorded invalid");
}

# the documented configuration as it is: over nginx's default 1m

my $big = (' ' x (1024 * 1024 + 100)) . $batch;

nginx_413($t->post($path, $big), 'default limit, Content-Length');
nginx_413($t->post($path, $big, chunked => 65536), 'default limit, chunked');

# a location's own client_max_body_size

my $mid = (' ' x 9000) . $batch;

nginx_413($t->post($path, $mid, port => 1), '8k limit, Content-Length');
nginx_413($t->post($path, $mid, port => 1, chunked => 1000, split => 1),
    '8k limit, chunked in pieces');

# the operator's own error page for 413 is left alone

my $r = $t->post("/page/$PROJECT$UPGRADE", $mid, port => 1);
is($r->{status}, 413, 'error_page 413: 413');
is($r->{body}, '{"operator":"page"}', 'error_page 413: the operator\'s page');

# a body within the limits still goes through

$r = $t->post($path, (' ' x 4000) . $batch, port => 1);
is($r->{status}, 200, 'within the limit: 200');

is(scalar $t->upstream_records, 1, 'only the batch within the limits went');

$t->done_testing;
