#!/usr/bin/perl

# A body nginx keeps in a temp file is a body: 100 instances with
# client_body_buffer_size 1k, sent with Content-Length in pieces and
# chunked in pieces, both allowed and forwarded identically.  The
# allow-list comes through an include.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(sha256_hex);
use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

my @ids = map { sprintf('%032xin07', 0xa5a50000 + $_) } 1 .. 101;

$t->write_file('allow.d/a.conf', "$PROJECT @ids[0 .. 49];\n");
$t->write_file('allow.d/b.conf', join '', map { "$PROJECT $_;\n" }
    @ids[50 .. 100]);

$t->upstream;
$t->write_credentials;

$t->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        include %%TESTDIR%%/allow.d/*.conf;
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        client_body_buffer_size 1k;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF

my @batch = map { [ $_, '2.0.48.231200' ] } @ids[0 .. 99];
my $canonical = batch_json(\@batch);

# the same batch, pretty-printed so that it differs from what goes out

(my $sent = $canonical) =~ s/,/,\n  /g;
ok(length $sent > 8192, 'body is well over client_body_buffer_size');

my $r = $t->post(upgrade_path(), $sent, split => 1);
is($r->{status}, 200, 'Content-Length, in a temp file: 200')
    or diag($r->{raw});

$r = $t->post(upgrade_path(), $sent, chunked => 700, split => 1,
    delay => 0.02);
is($r->{status}, 200, 'chunked, in a temp file: 200') or diag($r->{raw});

like($t->error_log, qr/a client request body is buffered to a temporary file/,
    'nginx did use a temp file');

my @up = $t->upstream_records;
is(scalar @up, 2, 'both forwarded');

for my $i (0, 1) {
    my $u = $up[$i] || {};
    is($u->{body}, $canonical, "request $i: canonical body upstream");
    is($u->{signature}{ok}, 1, "request $i: signature verifies");
    is($u->{audit_seen}, 1, "request $i: audited first");
    is(scalar(headers_named($u->{headers}, 'Transfer-Encoding')), 0,
        "request $i: sent with Content-Length");
}

is($up[0]{body_sha256}, $up[1]{body_sha256}, 'forwarded identically');

my @allow = grep { ($_->{decision} || '') eq 'allow' } $t->audit_records;
is(scalar @allow, 2, 'two allow records');
is(scalar @{ $allow[0]{instances} || [] }, 100, '100 instances audited');
is($allow[0]{body_sha256}, sha256_hex($canonical), 'audited body digest');

# the default maximum is 100 items

$r = $t->post(upgrade_path(), batch_json([ @ids[0 .. 100] ]));
my $j = $t->is_refusal($r, 400, 'TG.0400', '101 items');
is(scalar $t->upstream_records, 2, '101 items: not forwarded');

$t->done_testing;
