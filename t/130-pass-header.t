#!/usr/bin/perl

# Forwarded headers are an allow-list: the gateway's own, X-Language with
# one of the API's values, and what taurus_guard_pass_header names, in
# any case.  Naming a credential or framing header fails nginx -t, and a
# body its sender declared encoded is refused with 415.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream(token => $TEST_TOKEN);
$t->write_credentials;
$t->write_token;

sub conf {
    my ($pass) = @_;
    return <<"EOF";
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_token file=%%TESTDIR%%/token;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            $pass
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF
}

# nginx -t: what may never be passed through

for my $name (qw(Authorization x-auth-token X-Security-Token X-Project-Id
    X-Sdk-Date X-SDK-Anything Content-Type Content-Length Transfer-Encoding
    Host Connection Content-Encoding X-Taurus-Guard-Id X-Domain-Id
    X-HTTP-Method-Override x_auth_token X-Forwarded-Host Forwarded
    FORWARDED))
{
    my ($rc, $out) = $t->nginx_t(conf("taurus_guard_pass_header $name;"));
    my $line = $t->conf_line(qr/taurus_guard_pass_header/, 'test.conf');
    isnt($rc, 0, "pass_header $name: nginx -t fails");
    like($out,
        qr/header "\Q$name\E" carries or shapes credentials.*test\.conf:$line/s,
        "pass_header $name: why, at file:line");
}

my ($rc, $out) = $t->nginx_t(conf('taurus_guard_pass_header "X Bad";'));
isnt($rc, 0, 'pass_header with a space: nginx -t fails');
like($out, qr/invalid header name "X Bad"/, 'pass_header: invalid name');

($rc, $out) = $t->nginx_t(conf("taurus_guard_pass_header X-Request-Id;\n"
    . "            taurus_guard_pass_header traceparent;"));
is($rc, 0, 'two pass_header lines: nginx -t passes') or diag($out);

$t->run(conf("taurus_guard_pass_header X-Request-Id;\n"
    . "            taurus_guard_pass_header traceparent;"));

my @client = (
    [ 'x-request-id', 'req-123' ],
    [ 'TRACEPARENT', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' ],
    [ 'X-Language', 'en-us' ],
    [ 'X-HTTP-Method-Override', 'DELETE' ],
    [ 'X-Domain-Id', 'ffffffffffffffffffffffffffffffff' ],
    [ 'X-Invented', 'nope' ],
    [ 'User-Agent', 'curl/8' ],
    [ 'Accept-Encoding', 'gzip' ],
    [ 'Cookie', 'session=1' ],
    [ 'Forwarded', 'for=10.0.0.1' ],
    [ 'X-Forwarded-For', '10.0.0.1' ],
);

my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]),
    headers => \@client);
is($r->{status}, 200, 'forwarded');

my @up = $t->upstream_records;
my $h = ($up[-1] || {})->{headers} || [];

is($up[-1]{signature}{ok}, 1, 'signature verifies');
is(join('|', headers_named($h, 'X-Request-Id')), 'req-123',
    'a passed header reaches the upstream');
is(scalar(headers_named($h, 'traceparent')), 1,
    'a passed header, in another case');
is(join('|', headers_named($h, 'X-Language')), 'en-us',
    'X-Language with an API value');

for my $name (qw(X-HTTP-Method-Override X-Domain-Id X-Invented User-Agent
    Accept-Encoding Cookie Forwarded X-Forwarded-For))
{
    is(scalar(headers_named($h, $name)), 0, "$name stays behind");
}

# exactly the names the upstream may see

my %seen = map { lc($_->[0]) => 1 } @$h;
my %may = map { $_ => 1 } qw(host connection content-length content-type
    x-project-id x-taurus-guard-id x-auth-token x-sdk-date authorization
    x-language x-request-id traceparent);
is(join(',', sort grep { !$may{$_} } keys %seen), '',
    'no other header reaches the upstream');

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]),
    headers => [ [ 'X-Language', 'fr-fr' ] ]);
is($r->{status}, 200, 'another X-Language: forwarded');
@up = $t->upstream_records;
is(scalar(headers_named($up[-1]{headers} || [], 'X-Language')), 0,
    'an X-Language the API does not know stays behind');

# Content-Encoding

my $n = scalar $t->upstream_records;

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]),
    headers => [ [ 'Content-Encoding', 'gzip' ] ]);
is($r->{status}, 415, 'Content-Encoding: gzip: 415');
like($r->{json}{error_msg} || '', qr/Content-Encoding/, '415 says why');

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]),
    headers => [ [ 'Content-Encoding', 'identity' ],
                 [ 'content-encoding', 'br' ] ]);
is($r->{status}, 415, 'identity then br: 415');

is(scalar $t->upstream_records, $n, 'nothing forwarded for a 415');

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]),
    headers => [ [ 'Content-Encoding', ' Identity ' ] ]);
is($r->{status}, 200, 'Content-Encoding: identity: forwarded');

my @a = grep { ($_->{reason} || '') =~ /Content-Encoding/ }
    $t->audit_records;
is(scalar @a, 2, 'each 415 audited');

$t->done_testing;
