#!/usr/bin/perl

# Secrets stay secret: across allowed, denied, invalid and refused
# requests, neither the SK, nor the security token, nor the IAM token
# appears in error.log (at debug level), in a response or in the audit
# log.  The one exception the README names: nginx's own proxy module dumps
# the upstream request headers at debug level ("http proxy header:"),
# which includes the injected X-Auth-Token and X-Security-Token; that
# block is cut out before the check, and only that block.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

my $sts = 'TGsecurityTokenNEVERlogged0123456789abcdefXYZ';

$t->upstream(token => $TEST_TOKEN);
$t->write_credentials(security_token => $sts);
$t->write_token;

$t->run(<<"CONF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_token file=%%TESTDIR%%/token;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0] $INSTANCES[1];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
CONF

my $path = upgrade_path();

my @r = (
    $t->post($path, batch_json([ $INSTANCES[0] ])),
    $t->post($path, batch_json([ @INSTANCES[0, 1] ], 'true'), chunked => 40),
    $t->post($path, batch_json([ $OTHER_INSTANCE ])),
    $t->post($path, '{"databases_instance_infos":[],"delay":"false"}'),
    $t->post($path, batch_json([ $INSTANCES[0] ]), content_type => 'text/x'),
    $t->post($path, '', method => 'GET'),
    $t->post("$path/", batch_json([ $INSTANCES[0] ])),
);

is($r[0]{status}, 200, 'allowed: 200');
is($r[1]{status}, 200, 'allowed, chunked: 200');
is($r[2]{status}, 403, 'denied: 403');
is($r[3]{status}, 400, 'invalid: 400');
is($r[4]{status}, 415, 'content type: 415');
is($r[5]{status}, 405, 'method: 405');
is($r[6]{status}, 404, 'route: 404');

# the secrets were in use: the upstream got them

my @up = $t->upstream_records;
is(scalar @up, 2, 'two forwarded');
my $u = $up[0] || { headers => [] };
is($u->{signature}{ok}, 1, 'signature with security token verifies')
    or diag(explain($u->{signature}));
is(join('|', headers_named($u->{headers}, 'X-Security-Token')), $sts,
    'X-Security-Token sent');
like(join('|', headers_named($u->{headers}, 'Authorization')),
    qr/SignedHeaders=content-type;x-project-id;x-sdk-date;x-security-token,/,
    'X-Security-Token signed');
is(join('|', headers_named($u->{headers}, 'X-Auth-Token')), $TEST_TOKEN,
    'X-Auth-Token sent');

$t->stop;

my $log = $t->error_log;
ok(length $log > 1000, 'error.log has debug output');
like($log, qr/\[debug\]/, 'error.log is at debug level');

# cut nginx's proxy header dumps, and nothing else: the one-line form
# (http proxy header: "Name: value") and the block form (the whole
# request header between quotes)

my ($cut, $dumped, $in_block) = ('', 0, 0);
for my $l (split /\n/, $log) {
    if ($in_block) {
        $dumped++;
        $in_block = 0 if $l eq '"';
        next;
    }
    if ($l =~ /\[debug\] .* http proxy header: ".*"\r?\z/) {
        $dumped++;
        next;
    }
    if ($l =~ /\[debug\] .* http proxy header:\z/) {
        $dumped++;
        $in_block = 1;
        next;
    }
    $cut .= "$l\n";
}
ok($dumped > 0, "proxy header dumps cut ($dumped lines)");
is($in_block, 0, 'every dump block closed');

my $responses = join "\n", @{ $t->{responses} };
my $audit = $t->read_file('audit.log') || '';

ok(length $audit, 'audit log written');

for my $s ([ SK => $TEST_SK ], [ 'security token' => $sts ],
    [ token => $TEST_TOKEN ])
{
    my ($name, $v) = @$s;
    absent($cut, $v, "error.log: no $name");
    absent($responses, $v, "responses: no $name");
    absent($audit, $v, "audit log: no $name");

    # a part of a secret is a leak too (a prefix logged "for debugging")
    absent($cut, substr($v, 0, 12), "error.log: no prefix of the $name");
    absent($cut, substr($v, -12), "error.log: no suffix of the $name");
}

absent($log, $TEST_SK, 'error.log, proxy dumps included: no SK');
absent($log, substr($TEST_SK, 0, 12), 'error.log, proxy dumps included: '
    . 'no prefix of the SK');

# the signature input is not logged either: the string to sign and the
# canonical request

my $cr = $u->{signature}{canonical_request} || 'none';
my $sts_line = $u->{signature}{string_to_sign} || 'none';
my ($digest) = $sts_line =~ /([0-9a-f]{64})\z/;

absent($cut, $digest, 'error.log: no canonical request digest')
    if defined $digest;

# the canonical request, whatever its newlines were turned into
my $cr_re = join '(?:\n|\\n|\\x0a|.)', map { quotemeta }
    split /\n/, $cr, -1;
ok($cut !~ /$cr_re/, 'error.log: no canonical request')
    or diag(join "\n", grep { /canonical/ } split /\n/, $cut);
ok($cut !~ /content-type;x-project-id;x-sdk-date;x-security-token
    (?:\n|\\n|\\x0a|.)[0-9a-f]{64}/x,
    'error.log: no canonical request tail');
ok($cut !~ /SDK-HMAC-SHA256(?:\n|\\n|\\x0a|.)\d{8}T\d{6}Z/,
    'error.log: no string to sign');

# Long-term credentials, no token: nothing in the canonical request is
# secret then.  The module logs it at debug level, "|" for newlines as
# the endpoint's APIG.0301 answer shows it, so an operator can compare
# the two (issue "A signature the real endpoint accepts": at debug level
# the canonical request is logged without the signature, the secret or
# the body, only its hash).  The house rule "no signature input in a log"
# is read as "nothing that is or reveals a secret": the canonical request
# holds none, while the string to sign and the signature stay out.

my $t2 = Test::TaurusGuard->new;

$t2->upstream;
$t2->write_credentials;

$t2->run(<<"CONF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
CONF

my $r2 = $t2->post($path, batch_json([ $INSTANCES[0] ]));
is($r2->{status}, 200, 'long-term credentials: 200');
my ($u2) = $t2->upstream_records;
$t2->finish;

my $log2 = $t2->error_log;
my $cr2 = ($u2 || {})->{signature}{canonical_request} || 'none';
(my $cr2_piped = $cr2) =~ s/\n/|/g;
my ($logged) = $log2 =~ /taurus_guard: canonical request "([^"]*)"/;
is($logged, $cr2_piped, 'long-term credentials: the canonical request '
    . 'logged at debug level is the one the upstream computed');
ok(!grep({ /taurus_guard:/ && /Signature=/ } split /\n/, $log2),
    'long-term credentials: the module logs no signature');
ok($log2 !~ /SDK-HMAC-SHA256(?:\n|\\n|\|)\d{8}T\d{6}Z/,
    'long-term credentials: no string to sign');
absent($log2, $TEST_SK, 'long-term credentials: no SK in error.log');

$t->done_testing;


# like unlike(), but on failure shows the offending lines, not the text

sub absent {
    my ($text, $s, $name) = @_;
    my @hits = grep { index($_, $s) >= 0 } split /\n/, $text;
    ok(!@hits, $name) or diag(join "\n", map { substr $_, 0, 300 }
        @hits[0 .. ($#hits > 5 ? 5 : $#hits)]);
}
