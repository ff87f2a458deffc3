#!/usr/bin/perl

# taurus_guard_token iam=: the IAM password and the tokens IAM issues
# never show where they must not.  The password: in no line of error.log
# (debug level, nginx's own lines included), no response, no audit
# record, no access log line, nothing sent to the TaurusDB upstream, no
# `nginx -T` output.  The tokens: in no line of the module's own
# ("taurus_guard"), no response, no audit record.  (nginx's proxy code
# prints, at debug level, the request headers it sends upstream and the
# response headers it receives, so an injected X-Auth-Token and IAM's
# X-Subject-Token are in its own debug lines: the README warns about
# that.  The request body it sends, where the password is, it does not
# print.)  Also: a password with JSON's special characters reaches IAM
# intact, and the caller's own credential headers do not go to IAM.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-iam.pl" }

my $conf = <<"EOF";
http {
    taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
        %%PROJECT2%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_iam {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }
    }
}
EOF

my $body = batch_json([ $INSTANCES[0] ]);

my $PASSWORD = $TaurusGuard::IAM::PASSWORD;
my $WRONG = 'tgWrongIamPass-NEVERlogged-8Rk2';
my $SPECIAL = 'tg"IamSpecialPw\\NEVERlogged=w0rd$x/';

my $CALLER_AUTH = 'Basic dGctY2FsbGVyOmNhbGxlci1zZWNyZXQ=';
my $CALLER_TOKEN = 'MIIcallerOwnTokenNotForIam-1234';

my $t = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t);
TaurusGuard::IAM::iam_supported($t, $conf) or do {
    $t->done_testing;
    exit;
};


# The distinctive part of a secret: found even when escaped or cut.

sub core {
    my ($s) = @_;
    return $1 if $s =~ /\A(MIItg[0-9a-f]{32})/;
    my ($long) = sort { length $b <=> length $a } $s =~ /([A-Za-z0-9-]+)/g;
    return $long;
}


# No secret of @passwords or @tokens where it must not be.

sub no_secrets {
    my ($t, $name, $passwords, $tokens) = @_;

    my @p = map { core($_) } @$passwords;
    my @k = map { core($_) } @$tokens;

    my $hits = sub {
        my ($text, @s) = @_;
        $text = '' unless defined $text;
        return grep { index($text, $_) >= 0 } @s;
    };

    my @log = split /\n/, $t->error_log;

    is(scalar(grep { $hits->($_, @p) } @log), 0,
        "$name: no password in any line of error.log");
    is(scalar(grep { /taurus_guard/ && $hits->($_, @k) } @log), 0,
        "$name: no token in a taurus_guard line of error.log");

    # what nginx's own debug lines hold, for the record

    my @nginx = grep { !/taurus_guard/ && $hits->($_, @k) } @log;
    note("$name: nginx's own lines with a token: " . scalar(@nginx));

    my $audit = $t->read_file('audit.log');
    ok(length($audit || ''), "$name: there is an audit log");
    is(scalar($hits->($audit, @p, @k)), 0,
        "$name: no password or token in the audit log");

    my $resp = join "\n", @{ $t->{responses} };
    ok(length $resp, "$name: there are responses");
    is(scalar($hits->($resp, @p, @k)), 0,
        "$name: no password or token in any response");
    unlike($resp, qr/X-Subject-Token|"expires_at"/i,
        "$name: nothing of IAM's answer in any response");

    is(scalar($hits->($t->read_file('logs/access.log'), @p, @k)), 0,
        "$name: no password or token in the access log");

    is(scalar($hits->($t->read_file('upstream.jsonl'), @p)), 0,
        "$name: the upstream never got the password");
}


# What a batch that was not allowed ran into: the answer, how long it
# took, what the module and the IAM logged.

sub why {
    my ($t, $r) = @_;

    diag(sprintf("answered after %.3f s%s:\n%s", $r->{elapsed},
        $r->{timed_out} ? ' (gave up waiting)' : '', $r->{raw}));
    diag(join "\n", grep { /taurus_guard|\[(?:error|crit|alert)\]/
        && !/\[debug\]/ } split /\n/, $t->error_log);
    diag($t->read_file('logs/iam.log') // '');
}


# ---- a working IAM ------------------------------------------------------

TaurusGuard::IAM::start_iam($t, ttl => 86400);
TaurusGuard::IAM::upstream_tokens($t);
$t->run($conf);

my $r = $t->post(upgrade_path(), $body, headers => [
    [ 'Authorization', $CALLER_AUTH ], [ 'X-Auth-Token', $CALLER_TOKEN ] ]);
is($r->{status}, 200, 'allowed, with the caller\'s own credential headers')
    or why($t, $r);

my @calls = TaurusGuard::IAM::iam_calls($t);
is(scalar @calls, 1, 'one IAM call');
my %names = map { lc $_ => 1 } @{ ($calls[0] || {})->{headers} || [] };
ok(!$names{authorization}, 'IAM did not get the caller\'s Authorization');
ok(!$names{'x-auth-token'}, 'IAM did not get the caller\'s X-Auth-Token');

my @up = $t->upstream_records;
is(join('|', TaurusGuard::IAM::sent_tokens($up[-1] || {})),
    ($calls[0] || {})->{token} || 'none',
    'the upstream got the IAM token, not the caller\'s');

$r = $t->post(upgrade_path(), batch_json([ $OTHER_INSTANCE ]));
is($r->{status}, 403, 'denied: 403');
$r = $t->post(upgrade_path(), '{"databases_instance_infos":[]}');
is($r->{status}, 400, 'invalid: 400');
$r = $t->post(upgrade_path($PROJECT2), $body);
is($r->{status}, 200, 'second project: 200') or why($t, $r);
$r = $t->post(upgrade_path(), $body, method => 'GET');
is($r->{status}, 405, 'another method: 405');

my @tokens = map { $_->[0] } TaurusGuard::IAM::iam_tokens($t);
is(scalar @tokens, 2, 'two tokens issued');

no_secrets($t, 'working IAM', [ $PASSWORD ], \@tokens);

# nginx -T: the password lives in its own file, not in the configuration

my $out = $t->_cmd($t->{nginx}, '-T', '-p', $t->testdir . '/', '-e',
    'logs/nginx-t.log', '-c', 'conf/nginx.conf');
like($out, qr/password_file=/, 'nginx -T dumps the configuration');
unlike($out, qr/\Q${\ core($PASSWORD)}\E/, 'nginx -T: no password');

$t->finish;


# ---- IAM refuses the password, then fails ---------------------------------

my $t2 = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t2, password => $WRONG);
TaurusGuard::IAM::start_iam($t2, ttl => 86400);
TaurusGuard::IAM::upstream_tokens($t2);
$t2->run($conf);

$r = $t2->post(upgrade_path(), $body);
my $j = $t2->is_refusal($r, 503, 'TG.0503', 'wrong password');
is($j->{error_msg}, 'no usable IAM token', 'wrong password: error_msg');
@calls = TaurusGuard::IAM::iam_calls($t2);
is(scalar @calls, 1, 'wrong password: IAM was asked');
is(($calls[0] || {})->{error}, 'password', 'wrong password: IAM said so');
is(scalar $t2->upstream_records, 0, 'wrong password: nothing forwarded');

my @a = $t2->wait_audit($j->{audit_id} || 'none', 1);
is(($a[0] || {})->{decision}, 'error', 'wrong password: an error record');
is(($a[0] || {})->{reason}, 'no usable IAM token',
    'wrong password: its reason');

TaurusGuard::IAM::start_iam($t2, ttl => 86400, status => 500);

$r = $t2->post(upgrade_path(), $body);
$t2->is_refusal($r, 503, 'TG.0503', 'IAM answers 500');
is(scalar $t2->upstream_records, 0, 'IAM answers 500: nothing forwarded');

TaurusGuard::IAM::start_iam($t2, ttl => 86400, status => 401);

$r = $t2->post(upgrade_path(), $body);
$t2->is_refusal($r, 503, 'TG.0503', 'IAM answers 401');
is(scalar $t2->upstream_records, 0, 'IAM answers 401: nothing forwarded');

no_secrets($t2, 'failing IAM', [ $WRONG, $PASSWORD ], []);

$t2->finish;


# ---- a password with JSON's special characters ---------------------------

my $t3 = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t3, password => $SPECIAL);
TaurusGuard::IAM::start_iam($t3, ttl => 86400, password => $SPECIAL);
TaurusGuard::IAM::upstream_tokens($t3);
$t3->run($conf);

$r = $t3->post(upgrade_path(), $body);
is($r->{status}, 200, 'password with " \\ = $ /: IAM accepts it, 200')
    or diag($r->{raw});
@calls = TaurusGuard::IAM::iam_calls($t3);
is(($calls[0] || {})->{ok}, 1, 'password with special characters: '
    . 'sent intact') or diag(explain($calls[0]));

no_secrets($t3, 'special password', [ $SPECIAL ],
    [ map { $_->[0] } TaurusGuard::IAM::iam_tokens($t3) ]);

$t3->finish;

$t->done_testing;
