#!/usr/bin/perl

# What a security team reads: the done record completes the allow record
# (same id, the upstream's status, time taken, body size); the caller's
# identity is recorded as "user"; "policy" is the digest of the sorted
# allow-list; requests nginx refused before the gateway decided
# (client_max_body_size, deny, auth_basic) still get exactly one record.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(sha256_hex);
use MIME::Base64 qw(encode_base64);
use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

# the allow-list, and its digest as the README defines it:
# LC_ALL=C sort of the "project instance" lines, then SHA-256

my @allow = ([ $PROJECT2, $INSTANCES[2] ], [ $PROJECT, $INSTANCES[1] ],
    [ $PROJECT, $INSTANCES[0] ]);
my $policy = sha256_hex(join '', sort map { "$_->[0] $_->[1]\n" } @allow);

# htpasswd: apr1 from openssl when there is one, else nginx's {PLAIN}

my $hash = `openssl passwd -apr1 secret 2>/dev/null`;
chomp $hash;
$hash = '{PLAIN}secret' unless $? == 0 && $hash =~ /\A\$apr1\$/;
$t->write_file('htpasswd', "alice:$hash\n");

$t->upstream;
$t->write_credentials;

my $conf = <<"EOF";
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        $allow[0][0] $allow[0][1];
        $allow[1][0] $allow[1][1];
    }

    taurus_guard_allow {
        $allow[2][0] $allow[2][1];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_audit_user \$http_x_caller;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            client_max_body_size 1k;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            deny all;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_3%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            auth_basic "taurus";
            auth_basic_user_file %%TESTDIR%%/htpasswd;
            taurus_guard_audit_user \$remote_user;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF

$t->run($conf);

my $path = upgrade_path();

sub id_of { header($_[0], 'X-Taurus-Guard-Id') || 'none' }

sub by_decision {
    my ($d, @a) = @_;
    my @r = grep { ($_->{decision} || '') eq $d } @a;
    return $r[0] || {};
}

# an allowed batch: allow and done

my $r = $t->post($path, batch_json([ $INSTANCES[0] ]),
    headers => [ [ 'X-Caller', 'alice@ops' ] ]);
is($r->{status}, 200, 'allowed: 200');
my $id = id_of($r);
my @a = $t->wait_audit($id, 2);
is(scalar @a, 2, 'allowed: two records with the id');
my $allow = by_decision('allow', @a);
my $done = by_decision('done', @a);

is($done->{id}, $id, 'done: same id');
is($done->{status}, 200, 'done: status is the upstream\'s');
like($done->{duration_ms}, qr/\A\d+\z/, 'done: duration_ms is an integer');
ok(defined $done->{duration_ms} && $done->{duration_ms} >= 0
    && $done->{duration_ms} < 10000, 'done: duration_ms plausible');
is($done->{bytes}, length $r->{body}, 'done: bytes is the body size ('
    . length($r->{body}) . ')');
is($done->{project_id}, $PROJECT, 'done: project_id');
ok(!defined $done->{reason}, 'done: no reason');

is($allow->{user}, 'alice@ops', 'allow: user from $http_x_caller');
is($allow->{policy}, $policy, 'allow: policy is the sorted allow-list '
    . 'digest');
is($done->{policy}, $policy, 'done: same policy');

# the caller's identity is untrusted: escaped, never a raw control byte

$r = $t->post($path, batch_json([ $INSTANCES[1] ]),
    headers => [ [ 'X-Caller', "bob \"b\\\" \x01\x7f\xff" ] ]);
is($r->{status}, 200, 'odd user: 200');
@a = $t->wait_audit(id_of($r), 2);
my $odd = by_decision('allow', @a);
ok(defined $odd->{user}, 'odd user: recorded');
my $raw = $t->read_file('audit.log');
my ($line) = grep { /"id":"\Q${\ id_of($r)}\E"/ && /"allow"/ }
    split /\n/, $raw;
unlike($line || '', qr/[\x00-\x1f\x7f]/, 'odd user: no raw control byte '
    . 'in the line');
like($line || '', qr/"user":"bob \\"b\\\\\\" \\u0001/,
    'odd user: quote, backslash and control byte escaped');

# no caller header: an empty user or none, never something else

$r = $t->post($path, batch_json([ $INSTANCES[0] ]));
@a = $t->wait_audit(id_of($r), 2);
my $u = by_decision('allow', @a)->{user};
ok(!defined $u || $u eq '', 'no X-Caller: no user');

# denied and invalid batches carry the policy too

$r = $t->post($path, batch_json([ $INSTANCES[2] ]));
is($r->{status}, 403, 'instance of another project: 403');
my $deny = by_decision('deny', $t->wait_audit(id_of($r), 1));
is($deny->{policy}, $policy, 'deny: policy');
is_deeply($deny->{denied}, [ $INSTANCES[2] ], 'deny: denied');
is($deny->{status}, 403, 'deny: status');
ok(length($deny->{reason} || ''), 'deny: reason');

$r = $t->post(upgrade_path($PROJECT2), batch_json([ $INSTANCES[2] ]));
is($r->{status}, 200, 'second project: 200');

# the upstream answering 500: the done record says so

{
    my $t5 = Test::TaurusGuard->new;
    $t5->upstream(status => 500);
    $t5->write_credentials;
    $t5->run($conf =~ s/%%TESTDIR%%\/htpasswd/$t->testdir . '\/htpasswd'/er);

    my $r5 = $t5->post($path, batch_json([ $INSTANCES[0] ]));
    is($r5->{status}, 500, 'upstream 500: passed through');
    my @a5 = $t5->wait_audit(id_of($r5), 2);
    my $d5 = by_decision('done', @a5);
    is(by_decision('allow', @a5)->{id}, id_of($r5), 'upstream 500: allow');
    is($d5->{status}, 500, 'upstream 500: done status 500');
    is($d5->{bytes}, length $r5->{body}, 'upstream 500: done bytes');
    $t5->finish;
}

# nginx's own refusal before the gateway: client_max_body_size

my $before = scalar $t->upstream_records;
my $big = batch_json([ map { [ $INSTANCES[0], 'v' x 40 ] } 1 .. 1 ])
    . (' ' x 2048);
$r = $t->post($path, $big, port => 1);
is($r->{status}, 413, 'client_max_body_size: nginx\'s 413');
like(id_of($r), qr/\A[0-9a-f]{32}\z/, '413: X-Taurus-Guard-Id');
@a = $t->wait_audit(id_of($r), 1);
is(scalar @a, 1, '413: exactly one record');
is($a[0]{decision}, 'invalid', '413: decision invalid');
is($a[0]{status}, 413, '413: status 413');
ok(length($a[0]{reason} || ''), '413: reason');
is(scalar $t->upstream_records, $before, '413: nothing forwarded');

# deny all (access phase)

$r = $t->post($path, batch_json([ $INSTANCES[0] ]), port => 2);
is($r->{status}, 403, 'deny all: 403');
like(id_of($r), qr/\A[0-9a-f]{32}\z/, 'deny all: X-Taurus-Guard-Id');
@a = $t->wait_audit(id_of($r), 1);
is(scalar @a, 1, 'deny all: exactly one record');
is($a[0]{decision}, 'deny', 'deny all: decision deny');
is($a[0]{status}, 403, 'deny all: status 403');
is(scalar $t->upstream_records, $before, 'deny all: nothing forwarded');

# auth_basic: $remote_user, read before the gateway strips Authorization

my $basic = 'Basic ' . encode_base64('alice:secret', '');
$r = $t->post($path, batch_json([ $INSTANCES[1] ]), port => 3,
    headers => [ [ 'Authorization', $basic ] ]);
is($r->{status}, 200, 'auth_basic: 200');
@a = $t->wait_audit(id_of($r), 2);
is(by_decision('allow', @a)->{user}, 'alice', 'auth_basic: user is '
    . '$remote_user');
my @up = $t->upstream_records;
my @auth = headers_named($up[-1]{headers}, 'Authorization');
is(scalar @auth, 1, 'auth_basic: one Authorization upstream');
unlike($auth[0] || '', qr/Basic/, 'auth_basic: the caller\'s is not sent');

$before = scalar @up;
$r = $t->post($path, batch_json([ $INSTANCES[1] ]), port => 3,
    headers => [ [ 'Authorization',
        'Basic ' . encode_base64('alice:wrong', '') ] ]);
is($r->{status}, 401, 'auth_basic, wrong password: 401');
@a = $t->wait_audit(id_of($r), 1);
is(scalar @a, 1, 'auth_basic 401: exactly one record');
is($a[0]{status}, 401, 'auth_basic 401: status 401');
isnt($a[0]{decision}, 'allow', 'auth_basic 401: not allowed');
is(scalar $t->upstream_records, $before, 'auth_basic 401: nothing '
    . 'forwarded');

# every id in the file: one decision record, and a done record exactly
# for the allowed ones

my %n;
for my $rec ($t->audit_records) {
    $n{ $rec->{id} }{ $rec->{decision} eq 'done' ? 'done' : 'decision' }++;
    $n{ $rec->{id} }{allow}++ if $rec->{decision} eq 'allow';
}
is(scalar(grep { ($_->{decision} || 0) != 1 } values %n), 0,
    'every id: exactly one decision record');
is(scalar(grep { ($_->{done} || 0) != ($_->{allow} || 0) } values %n), 0,
    'every id: a done record exactly when allowed');

$t->done_testing;
