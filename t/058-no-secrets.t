#!/usr/bin/perl

# A leak sweep over one gateway that uses every credential source at
# once: server 0 signs with a credentials file holding a security token
# and injects the token of a token file; server 1 signs with the
# metadata service's temporary credentials (t/lib/tg-metadata.pl, asked
# with a session token) and injects agency tokens it fetches with an IAM
# user token (t/lib/tg-iam.pl); server 4 injects IAM tokens fetched with
# the password; on server 2 the metadata fetch fails (its location
# answers 404), on server 3 the IAM one (IAM refuses the password).
# Allowed, denied, invalid and failing requests go through all of them,
# with the caller's own credential headers, a token revoked upstream
# (401), and bad new versions of the credentials and token files.  Then
# error.log (every level), the access log, every response and the audit
# log are searched for every test secret (SKs, security tokens, IAM
# passwords, user, agency and session tokens) and for 12-character
# prefixes and suffixes of them.
#
# The one exception (README, "Debugging a rejected signature"): nginx's
# own proxy module prints the upstream request headers at debug level
# ("http proxy header:"), and the upstream response headers of the IAM
# fetch, so the injected X-Auth-Token, X-Security-Token and
# X-Metadata-Token, and IAM's X-Subject-Token, show up there.  Only those
# header lines inside those dumps are cut; the rest of each dump is
# searched too.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

BEGIN {
    require "$FindBin::Bin/lib/tg-metadata.pl";
    require "$FindBin::Bin/lib/tg-iam.pl";
}

my $STS = 'tgSweepSecurityTokenNEVERlogged-0123456789abcdefXYZ';
my $BAD_SK = 'tgBrokenSkNEVERlogged81Qw';
my $BAD_TOKEN = 'MIIBrokenTokenNEVERlogged.Zq7';
my $WRONG_PASSWORD = 'tgWrongIamPassw0rd-NEVERlogged-3Rv';

my $conf = <<"EOF";
worker_processes 2;

http {
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0] $INSTANCES[1];
        %%PROJECT2%% $INSTANCES[0];
    }

    # file credentials with a security token, a token file

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_credentials %%TESTDIR%%/credentials;
            taurus_guard_token file=%%TESTDIR%%/token;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    # metadata credentials with a session token, agency tokens

    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_credentials metadata=/_tg_meta
                                     session=/_tg_meta_token;
            taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini
                               agency=$TaurusGuard::IAM::AGENCY
                               agency_domain=$TaurusGuard::IAM::AGENCY_DOMAIN;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_meta {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_META%%/openstack/latest/securitykey;
        }

        location = /_tg_meta_token {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_META%%/meta-data/latest/api/token;
        }

        location = /_tg_iam {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }
    }

    # the metadata fetch fails (its location answers 404)

    server {
        listen 127.0.0.1:%%PORT_2%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_credentials metadata=/_tg_meta_bad;
            taurus_guard_token file=%%TESTDIR%%/token;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_meta_bad {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_META%%/openstack/latest/nothing;
        }
    }

    # the IAM fetch fails (IAM refuses the password)

    server {
        listen 127.0.0.1:%%PORT_3%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_credentials %%TESTDIR%%/credentials;
            taurus_guard_token iam=/_tg_iam_bad password_file=%%TESTDIR%%/iam-bad.ini;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_iam_bad {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }
    }

    # IAM tokens only (the endpoint may refuse one with 401)

    server {
        listen 127.0.0.1:%%PORT_4%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_token iam=/_tg_iam4 password_file=%%TESTDIR%%/iam.ini;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_iam4 {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }
    }
}
EOF

my $t = Test::TaurusGuard->new;

$t->write_credentials(security_token => $STS);
$t->write_token;
TaurusGuard::IAM::write_password_file($t);
TaurusGuard::IAM::write_password_file($t, name => 'iam-bad.ini',
    password => $WRONG_PASSWORD);

TaurusGuard::Metadata::add_key($t, $TEST_AK, $TEST_SK, $STS);
TaurusGuard::Metadata::start_meta($t, ttl => 3600, session => 1);
TaurusGuard::IAM::start_iam($t, ttl => 3600, agency => 1);
TaurusGuard::Metadata::upstream_keys($t, token => $TEST_TOKEN,
    tokens => $t->testdir . '/tokens');

TaurusGuard::IAM::iam_supported($t, $conf) or do {
    $t->done_testing;
    exit;
};

$t->run($conf);

my $cred_path = $t->testdir . '/credentials';
my $token_path = $t->testdir . '/token';
$t->expect_alert(qr/taurus_guard: "\Q$cred_path\E" line \d+: value with a/);

my $path = upgrade_path();
my $ok1 = batch_json([ $INSTANCES[0] ]);
my $ok2 = batch_json([ @INSTANCES[0, 1] ], 'true');
my @caller = (headers => [
    [ 'Authorization', 'SDK-HMAC-SHA256 Access=CALLER, SignedHeaders=x, '
        . 'Signature=00' ],
    [ 'X-Auth-Token', 'caller-token' ],
    [ 'X-Security-Token', 'caller-security-token' ] ]);


# every kind of request on one server; returns the statuses

sub drive {
    my ($port) = @_;
    my %p = (port => $port);
    return map { $_->{status} || 'none' } (
        $t->post($path, $ok1, %p),
        $t->post($path, $ok2, chunked => 30, %p),
        $t->post($path, $ok1, @caller, %p),
        $t->post(upgrade_path($PROJECT2), $ok1, %p),
        $t->post($path, batch_json([ $OTHER_INSTANCE ]), %p),
        $t->post(upgrade_path($PROJECT2), $ok2, %p),
        $t->post($path, '{"databases_instance_infos":[],"delay":"false"}',
            %p),
        $t->post($path, '{"delay":"false"', %p),
        $t->post($path, $ok1, content_type => 'text/plain', %p),
        $t->post($path, '', method => 'GET', %p),
        $t->post("$path/", $ok1, %p),
        $t->post("$path?x=1", $ok1, %p),
    );
}

my @expect = qw(200 200 200 200 403 403 400 400 415 405 404 404);

is(join(' ', drive(0)), "@expect", 'file credentials and token file: '
    . 'allowed, denied, invalid, refused');
is(join(' ', drive(1)), "@expect", 'metadata credentials and agency '
    . 'tokens: allowed, denied, invalid, refused');
my $failing = join ' ', qw(503 503 503 503), @expect[4 .. 11];
is(join(' ', drive(2)), $failing, 'metadata fetch failing: the allowed '
    . 'ones 503, the rest as usual');
is(join(' ', drive(3)), $failing, 'IAM fetch failing: the allowed ones '
    . '503, the rest as usual');
is(join(' ', drive(4)), "@expect", 'IAM tokens only: allowed, denied, '
    . 'invalid, refused');

# a token revoked upstream: the endpoint's 401 is passed through, the
# next request fetches a new one

my @issued = TaurusGuard::IAM::iam_tokens($t);
TaurusGuard::IAM::revoke_token($t, $_->[0]) for @issued;
is($t->post($path, $ok1, port => 4)->{status}, 401, 'revoked IAM token: 401');
is($t->post($path, $ok1, port => 4)->{status}, 200, 'then a new token: 200');

# bad new versions of the files: the last good secrets are kept

$t->write_secret_file('credentials', "[basic]\nak = $TEST_AK\n"
    . "sk = $BAD_SK with a space\nsecurity_token = $STS\n");
$t->write_token("$BAD_TOKEN and more");
sleep 1.2;
is($t->post($path, $ok1)->{status}, 200, 'broken files: still 200');
sleep 1.2;
is($t->post($path, $ok1)->{status}, 200, 'broken files, again: 200');

# the secrets were in use

my @up = $t->upstream_records;
is(scalar @up, 16, 'forwarded: the 4 allowed of servers 0, 1 and 4, the '
    . 'revoked one, the one after it and two with the broken files');
my @signed = grep { headers_named($_->{headers}, 'Authorization') } @up;
cmp_ok(scalar @signed, '>=', 10, 'signed: ' . scalar(@signed));
is(scalar(grep { $_->{signature}{ok} } @signed), scalar @signed,
    'every signed request verified upstream')
    or diag(explain([ map { $_->{signature}{error} } @signed ]));
my @unsigned = grep { !headers_named($_->{headers}, 'Authorization') } @up;
is(join(',', map { $_->{token_error} || 'ok' } @unsigned),
    'ok,ok,ok,ok,revoked,ok', 'every token-only request had a valid IAM '
    . 'token, but the revoked one');
ok(grep({ join('', headers_named($_->{headers}, 'X-Security-Token')) eq $STS }
    @up), 'the file\'s security token was sent');
ok(grep({ join('', headers_named($_->{headers}, 'X-Auth-Token'))
    eq $TEST_TOKEN } @up), 'the token file\'s token was sent');
cmp_ok(scalar(grep { $_->{ok} } TaurusGuard::Metadata::meta_calls($t)),
    '>=', 1, 'the metadata service issued credentials');
cmp_ok(scalar(TaurusGuard::IAM::iam_tokens($t)), '>=', 2,
    'IAM issued tokens');
ok(grep({ ($_->{error} || '') eq 'password' } TaurusGuard::IAM::iam_calls($t)),
    'IAM was asked with the wrong password');
ok(grep({ ($_->{auth_method} || '') eq 'assume_role' && $_->{ok} }
    TaurusGuard::IAM::iam_calls($t)), 'IAM issued agency tokens');
cmp_ok(scalar(TaurusGuard::IAM::iam_user_tokens($t)), '>=', 1,
    'IAM issued a user token');
cmp_ok(scalar(TaurusGuard::Metadata::meta_sessions($t)), '>=', 1,
    'the metadata service issued a session token');

$t->stop;

# ---- the sweep ------------------------------------------------------

my @secrets = (
    [ 'file SK' => $TEST_SK ],
    [ 'file security token' => $STS ],
    [ 'token file token' => $TEST_TOKEN ],
    [ 'IAM password' => $TaurusGuard::IAM::PASSWORD ],
    [ 'wrong IAM password' => $WRONG_PASSWORD ],
    [ 'broken SK' => $BAD_SK ],
    [ 'broken token' => $BAD_TOKEN ],
    (map { ([ 'metadata SK' => $_->[1] ],
        [ 'metadata security token' => $_->[2] ]) }
        grep { $_->[0] ne $TEST_AK } TaurusGuard::Metadata::meta_keys($t)),
    (map { [ 'IAM token' => $_->[0] ] } TaurusGuard::IAM::iam_tokens($t)),
    (map { [ 'IAM user token' => $_->[0] ] }
        TaurusGuard::IAM::iam_user_tokens($t)),
    (map { [ 'metadata session token' => $_->[0] ] }
        TaurusGuard::Metadata::meta_sessions($t)),
);

cmp_ok(scalar @secrets, '>=', 14, 'secrets to look for: ' . scalar @secrets);

my $log = $t->error_log;
like($log, qr/\[debug\]/, 'error.log is at debug level');
ok(length $log > 10000, 'error.log has plenty to search');

# cut the injected/issued token headers out of nginx's proxy header
# dumps, nothing else

my ($cut, $in_block, $tolerated) = ('', 0, 0);
my $token_header = qr/\A"?(?:X-Auth-Token|X-Security-Token|X-Subject-Token
    |X-Metadata-Token):/ix;
for my $l (split /\n/, $log) {

    # nginx cuts a log line at 2048 bytes: a long dump has no closing
    # quote, the next log line ends it

    $in_block = 0 if $in_block && $l =~ m{\A\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[};

    if ($in_block) {
        $in_block = 0 if $l eq '"';
        if ($l =~ $token_header) {
            $tolerated++;
            next;
        }
    } elsif ($l =~ /\[debug\] .* http proxy header: "(.*)"\r?\z/) {
        if ($1 =~ $token_header) {
            $tolerated++;
            next;
        }
    } elsif ($l =~ /\[debug\] .* http proxy header:\z/) {
        $in_block = 1;
    }
    $cut .= "$l\n";
}
ok($tolerated > 0, "token header lines of proxy dumps cut ($tolerated)");

my %where = (
    'error.log'  => $cut,
    'access.log' => $t->read_file('logs/access.log') || '',
    'responses'  => join("\n", @{ $t->{responses} }),
    'audit log'  => $t->read_file('audit.log') || '',
);

ok(length $where{'access.log'}, 'access.log written');
ok(length $where{'audit log'}, 'audit log written');
is(scalar @{ $t->{responses} }, 64, 'every response kept');

for my $w (sort keys %where) {
    my @found;
    for my $s (@secrets) {
        my ($name, $v) = @$s;
        for my $p ([ '' => $v ], [ 'prefix of ' => substr($v, 0, 12) ],
            [ 'suffix of ' => substr($v, -12) ])
        {
            my @hits = grep { index($_, $p->[1]) >= 0 } split /\n/,
                $where{$w};
            push @found, "$p->[0]$name: " . substr($hits[0], 0, 200)
                if @hits;
        }
    }
    is(scalar @found, 0, "$w: no secret, no prefix or suffix of one")
        or diag(join "\n", @found[0 .. ($#found > 9 ? 9 : $#found)]);
}

# the bad files were noticed (their values were there to be leaked)

like($log, qr/taurus_guard: "\Q$cred_path\E" line \d+: value with a space/,
    'the broken credentials file was reported');
like($log, qr/taurus_guard: "\Q$token_path\E" holds no valid token/,
    'the broken token file was reported');

$t->done_testing;
