#!/usr/bin/perl

# A fetch whose answer is cut short: the service's connection closes
# before the Content-Length it promised (or before the last chunk), or
# goes silent until proxy_read_timeout, after the status line and the
# headers went through.  nginx finalizes such a subrequest with NGX_OK
# and the part that came; the gateway must take a secret only from a
# whole answer.  The stand-ins cut their answers on request
# (tg-metadata.pl --session-cut/--cut, tg-iam.pl --cut, with
# --cut-mode), with the proxy buffering the answer and not.
#
#   - the metadata session token (plain text: a part of it reads as a
#     token): 503, nothing forwarded, one [error] line saying the answer
#     was cut short, no securitykey call at all and none with a part of
#     a token; the service whole again, a new session token is fetched
#     and the batch served;
#   - the metadata credentials (JSON): the same, and the credentials of
#     the cut answer never sign anything;
#   - an IAM token (X-Subject-Token whole in the headers, the body cut):
#     not kept (the next batch asks IAM again), never sent upstream.
#
# (That no part of a secret reaches a log or a response is the harness's
# check at finish.)

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

BEGIN {
    require "$FindBin::Bin/lib/tg-metadata.pl";
    require "$FindBin::Bin/lib/tg-iam.pl";
}

my $body = batch_json([ $INSTANCES[0] ]);

my $CUT_SHORT = 'not fetched: the answer was cut short';


# The fetch locations: proxy_buffering $buf, 1 s to read (a stalled
# answer).

sub fetch_location {
    my ($name, $uri, $buf) = @_;
    return <<"EOF";
        location = $name {
            internal;
            proxy_buffering $buf;
            proxy_read_timeout 1s;
            proxy_pass $uri;
        }
EOF
}


sub meta_conf {
    my ($buf) = @_;

    my $meta = fetch_location('/_tg_meta',
        'http://127.0.0.1:%%PORT_META%%/openstack/latest/securitykey', $buf);
    my $token = fetch_location('/_tg_meta_token',
        'http://127.0.0.1:%%PORT_META%%/meta-data/latest/api/token', $buf);

    return <<"EOF";
http {
    taurus_guard_credentials metadata=/_tg_meta session=/_tg_meta_token;
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

$meta
$token
    }
}
EOF
}


sub iam_conf {
    my ($buf) = @_;

    my $iam = fetch_location('/_tg_iam',
        'http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens', $buf);

    return <<"EOF";
http {
    taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini;
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

$iam
    }
}
EOF
}


sub calls { return TaurusGuard::Metadata::meta_calls(@_) }


# The metadata calls since the $from-th, as "METHOD:status".

sub call_list {
    my ($t, $from) = @_;
    my @c = calls($t);
    return join ' ', map { ($_->{method} || '?') . ':' . ($_->{status} || '?') }
        @c[$from .. $#c];
}


# error.log lines with $what, at [error].

sub error_lines {
    my ($t, $what) = @_;
    return grep { /\[error\]/ && index($_, $what) >= 0 }
        split /\n/, $t->error_log;
}


# A batch while the fetch is cut short: the gateway's 503 with its JSON
# error and an error record, nothing forwarded.

sub refused {
    my ($t, $name, $why) = @_;

    my $n = scalar $t->upstream_records;
    my $r = $t->post(upgrade_path(), $body);
    my $j = $t->is_refusal($r, 503, 'TG.0503', $name);
    is($j->{error_msg}, $why, "$name: why");
    is(scalar $t->upstream_records, $n, "$name: nothing forwarded");

    my @a = $t->wait_audit($j->{audit_id} || 'none', 1);
    is(($a[0] || {})->{decision}, 'error', "$name: an error record");
}


# A batch once the service answers whole: 200, forwarded, verified
# upstream.  Returns the upstream's record.

sub served {
    my ($t, $name) = @_;

    my $n = scalar $t->upstream_records;
    my $r = $t->post(upgrade_path(), $body);
    is($r->{status}, 200, "$name: 200") or diag($r->{raw});

    my @up = $t->upstream_records;
    is(scalar @up, $n + 1, "$name: forwarded");

    return $up[-1] || {};
}


# ---- the metadata session token cut short ------------------------------
#
# 56 bytes, cut after 20: "tgSess" and 14 of its 50 letters, one
# printable word the old gateway kept as the session token for 6 hours.

for my $case ([ close => 'on' ], [ chunked => 'on' ], [ stall => 'on' ],
    [ close => 'off' ], [ chunked => 'off' ], [ stall => 'off' ])
{
    my ($mode, $buf) = @$case;
    my $name = "session token cut short ($mode, proxy_buffering $buf)";

    my $t = Test::TaurusGuard->new;
    TaurusGuard::Metadata::start_meta($t, session => 1, session_cut => 20,
        cut_mode => $mode);
    TaurusGuard::Metadata::upstream_keys($t);
    $t->run(meta_conf($buf));

    refused($t, $name, 'no usable credentials');

    is(call_list($t, 0), 'PUT:200', "$name: one PUT, no GET");

    my %whole = map { $_->[0] => 1 } TaurusGuard::Metadata::meta_sessions($t);
    my @partial = grep { $_->{method} eq 'GET' && defined $_->{session}
        && !$whole{ $_->{session} } } calls($t);
    is(scalar @partial, 0, "$name: no securitykey call carried a part of "
        . 'a session token');

    is(scalar error_lines($t, "metadata session token $CUT_SHORT"), 1,
        "$name: error.log says the answer was cut short");

    # whole again: a new session token, not the one cut short

    TaurusGuard::Metadata::start_meta($t, session => 1);
    my $u = served($t, "$name, then whole");
    is($u->{signature}{ok}, 1, "$name, then whole: the signature verifies")
        or diag($u->{signature}{error} || 'no record');
    is(call_list($t, 1), 'PUT:200 GET:200',
        "$name, then whole: a new session token, then the credentials");

    $t->finish;
}


# ---- the metadata credentials cut short --------------------------------
#
# About 1370 bytes of JSON, cut after 100: the session token is whole and
# kept, the credentials are not.

for my $case ([ close => 'on' ], [ chunked => 'on' ], [ stall => 'on' ],
    [ close => 'off' ])
{
    my ($mode, $buf) = @$case;
    my $name = "credentials cut short ($mode, proxy_buffering $buf)";

    my $t = Test::TaurusGuard->new;
    TaurusGuard::Metadata::start_meta($t, session => 1, cut => 100,
        cut_mode => $mode);
    TaurusGuard::Metadata::upstream_keys($t);
    $t->run(meta_conf($buf));

    refused($t, $name, 'no usable credentials');

    is(call_list($t, 0), 'PUT:200 GET:200',
        "$name: a session token, then the credentials, cut");
    my $cut = (calls($t))[1] || {};

    is(scalar error_lines($t, "metadata credentials $CUT_SHORT"), 1,
        "$name: error.log says the answer was cut short");

    # whole again: the session token kept, new credentials

    TaurusGuard::Metadata::start_meta($t, session => 1);
    my $u = served($t, "$name, then whole");
    is($u->{signature}{ok}, 1, "$name, then whole: the signature verifies")
        or diag($u->{signature}{error} || 'no record');
    is(call_list($t, 2), 'GET:200',
        "$name, then whole: the credentials again, with the same session");
    isnt(TaurusGuard::Metadata::access_of($u) || 'none',
        $cut->{access} || 'none',
        "$name, then whole: not signed with the AK of the cut answer");

    $t->finish;
}


# ---- an IAM token whose answer is cut short ----------------------------
#
# X-Subject-Token is whole, the body (with token.expires_at) is cut
# after 40 bytes.

for my $case ([ close => 'on' ], [ chunked => 'off' ], [ stall => 'on' ]) {
    my ($mode, $buf) = @$case;
    my $name = "IAM token cut short ($mode, proxy_buffering $buf)";

    my $t = Test::TaurusGuard->new;
    TaurusGuard::IAM::write_password_file($t);
    TaurusGuard::IAM::start_iam($t, cut => 40, cut_mode => $mode);
    TaurusGuard::IAM::upstream_tokens($t);
    $t->run(iam_conf($buf));

    refused($t, $name, 'no usable IAM token');
    refused($t, "$name, again", 'no usable IAM token');

    my @calls = TaurusGuard::IAM::iam_calls($t);
    is(join(' ', map { $_->{status} . ':' . $_->{ok} } @calls),
        '201:1 201:1', "$name: IAM asked again, the token was not kept");

    is(scalar error_lines($t, "IAM token for project \"$PROJECT\" "
        . $CUT_SHORT), 2, "$name: error.log says the answer was cut short");

    # whole again: a new token, never one of those cut short

    TaurusGuard::IAM::start_iam($t);
    my $u = served($t, "$name, then whole");
    is($u->{token_ok}, 1, "$name, then whole: the upstream accepts the "
        . 'token') or diag('token_error: ' . ($u->{token_error} || ''));

    my %cut = map { $_->{token} => 1 } @calls;
    my @sent = TaurusGuard::IAM::sent_tokens($u);
    is(scalar(grep { $cut{$_} } @sent), 0,
        "$name, then whole: no token of a cut answer sent");

    $t->finish;
}

done_testing;
