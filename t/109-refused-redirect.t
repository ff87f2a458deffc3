#!/usr/bin/perl

# A guarded request nginx refused while its body was read (a broken
# chunk, a body over client_max_body_size) and that error_page or
# post_action sends on is never forwarded: not by a proxy in an
# unguarded location (it would carry the unchecked body and the
# caller's own credential headers), not by a guarded one, which waited
# for a body already lost and left the connection open for good.  A
# static error page still answers; the refusal has one record, which
# says it was not forwarded.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->upstream(name => 'B');
$t->write_credentials;
$t->write_file('html/err.json', "{\"static\":1}\n");

$t->run(<<"CONF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;
    client_max_body_size 1k;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    # the retry pattern, to an unguarded named location
    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            proxy_intercept_errors on;
            error_page 400 413 502 504 = \@retry;
        }

        location \@retry {
            proxy_pass http://127.0.0.1:%%PORT_B%%;
        }
    }

    # the guard at server level: a static error page, guarded too
    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;
        taurus_guard on;
        error_page 400 413 /err.json;

        location /v3/ {
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /err.json {
            root %%TESTDIR%%/html;
        }
    }

    # a guarded named location that proxies, and an unguarded URI
    server {
        listen 127.0.0.1:%%PORT_2%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            error_page 400 = \@err;
            error_page 413 /retry/;
        }

        location \@err {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location /retry/ {
            proxy_pass http://127.0.0.1:%%PORT_B%%;
        }
    }

    # post_action after a refusal
    server {
        listen 127.0.0.1:%%PORT_3%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            post_action \@notify;
        }

        location \@notify {
            proxy_pass http://127.0.0.1:%%PORT_B%%;
        }
    }
}
CONF

my $head = 'POST ' . upgrade_path() . " HTTP/1.1\r\nHost: localhost\r\n"
    . "Content-Type: application/json\r\n"
    . "Authorization: caller-supplied\r\nX-Auth-Token: caller-token\r\n"
    . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
my $part = batch_json([ $OTHER_INSTANCE ]);
my $chunk = sprintf("%x\r\n", length $part) . "$part\r\n";
my $big = sprintf("%x\r\n", 1500) . ('x' x 1500) . "\r\n0\r\n\r\n";

# the status: nginx's, but "error_page ... = @retry" keeps none: 400

my %cases = (
    'broken chunk, one packet' => [ [ "$head${chunk}zz\r\n" ], 400, 400 ],
    'broken chunk, later' => [ [ "$head$chunk", "zz\r\n" ], 400, 400 ],
    'body too large, later' => [ [ "$head$chunk", $big ], 400, 413 ],
);

sub count_records {
    my @r = grep { ($_->{reason} || '') =~ /before the gateway decided/ }
        $t->audit_records;
    return scalar @r;
}

for my $port (0, 2) {
    for my $name (sort keys %cases) {
        my ($pieces, $status0, $status) = @{ $cases{$name} };
        my $before = count_records();

        $status = $status0 if $port == 0;

        my $r = $t->http($pieces, port => $port, timeout => 10);

        ok(!$r->{timed_out}, "$port, $name: answered");
        is($r->{status}, $status, "$port, $name: $status");
        my $j = $r->{json} || {};
        is($j->{error_code}, "TG.0$status", "$port, $name: TG.0$status");
        like($j->{error_msg} || '', qr/not forwarded/,
            "$port, $name: says it was not forwarded");

        for (1 .. 50) {
            last if count_records() > $before;
            select(undef, undef, undef, 0.1);
        }
        is(count_records(), $before + 1, "$port, $name: one record");
    }
}

my @rec = grep { ($_->{reason} || '') =~ /before the gateway decided/ }
    $t->audit_records;
is_deeply([ sort map { $_->{decision} } @rec ], [ ('invalid') x 6 ],
    'each an invalid record');
like($_->{reason}, qr/decided( \(status 4\d\d\))?, not forwarded\z/,
    "record $_->{id}: not forwarded") for @rec;

# a static error page, in a guarded location, still answers at once

for my $name (sort keys %cases) {
    my ($pieces, undef, $status) = @{ $cases{$name} };
    my $r = $t->http($pieces, port => 1, timeout => 10);

    ok(!$r->{timed_out}, "static page, $name: answered, not left open");
    is($r->{status}, $status, "static page, $name: $status");
    is($r->{body}, "{\"static\":1}\n", "static page, $name: the page");
}

# post_action after a denied batch

my $r = $t->post(upgrade_path(), batch_json([ $OTHER_INSTANCE ]), port => 3);
is($r->{status}, 403, 'post_action: the batch is denied');
sleep 1;

is(scalar $t->upstream_records('B'), 0,
    'nothing reached an unguarded proxy');
is(scalar $t->upstream_records, 0, 'nothing reached the endpoint');

$t->done_testing;
