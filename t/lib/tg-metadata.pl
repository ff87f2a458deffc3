#!/usr/bin/perl

# tg-metadata.pl: a stand-in for the ECS metadata service's temporary
# credentials, GET /openstack/latest/securitykey, for the integration
# tests of `taurus_guard_credentials metadata=...`.  Each call issues a
# new temporary AK/SK and security token with a short life, and is
# recorded so a test can count the calls.  With --session it also
# wants a session token first (IMDS v2 style).
#
#   tg-metadata.pl --listen 127.0.0.1:PORT [--ttl SECONDS] [--record FILE]
#       [--keys FILE] [--status N] [--delay MS] [--session]
#       [--sessions FILE] [--session-status N] [--cut N]
#       [--session-cut N] [--cut-mode close|chunked|stall]
#       [--pidfile FILE]
#
# A GET (or HEAD) on exactly /openstack/latest/securitykey, no query, is
# answered 200 with the body the real service gives:
#
#   {"credential":{"access":AK,"secret":SK,"securitytoken":TOKEN,
#    "expires_at":"2026-11-30T21:00:00.000000Z"}}
#
# (RFC 3339 UTC with microseconds).  Anything else gets 404, or 405 for
# another method on that path.  AK is "TMPAK" and 15 upper-case letters
# or digits; SK 40 letters and digits; TOKEN about 1200 characters of
# base64url-like text.  All are random, so unique across restarts.
#
# With --session, the service wants a session token, as the real one
# does when told to:
#
#   - PUT on exactly /meta-data/latest/api/token, no query, with exactly
#     one header X-Metadata-Token-Ttl-Seconds: N, N an integer from 1 to
#     21600 (digits only; else 400 {"error":...}), is answered 200,
#     text/plain, the body a new session token: "tgSess" and 50 random
#     letters and digits, valid N seconds.  Another method on that path
#     gets 405;
#   - the GET (or HEAD) on the securitykey path then needs exactly one
#     header X-Metadata-Token naming a session token issued (listed in
#     --sessions), not expired and not revoked; else 401
#     {"error":"session token missing or expired"} and nothing issued.
#     That is checked before --status.
#
# Without --session the token path is like any other (404: an older
# service) and the GET needs no session token.
#
# Options:
#   --ttl N       credential lifetime in seconds (default 86400; may be
#                 a fraction)
#   --status N    answer every call on the securitykey path (one with a
#                 valid session token, with --session) with status N
#                 and a small error body (the service failing); nothing
#                 is issued
#   --delay MS    wait MS milliseconds before answering (a slow service;
#                 the session token PUT too)
#   --session     session tokens, as above
#   --broken      answer every call that issues credentials with JSON
#                 broken after them: the object's last "}" made ",}"
#                 (the credentials count as issued: --keys, --record)
#   --session-status N
#                 answer every session token PUT that would get a token
#                 with status N and a small error body; nothing issued
#   --cut N       cut short every answer that issues credentials: the
#                 status line and headers as usual, the Content-Length
#                 of the whole body, but only its first N bytes, then
#                 the connection closed (the service's connection lost
#                 in the middle of its answer).  The credentials count
#                 as issued (--keys, --record)
#   --session-cut N
#                 the same for every answer that issues a session
#                 token; the token counts as issued (--sessions,
#                 --record)
#   --cut-mode M  how --cut and --session-cut end the answer: close
#                 (the default, as above), chunked (Transfer-Encoding:
#                 chunked instead of Content-Length, the N bytes as one
#                 chunk, then closed without the last chunk) or stall
#                 (as close, but the connection is held open and
#                 nothing more sent: nginx's proxy_read_timeout ends
#                 it)
#   --record FILE append one JSON line per call: time (RFC 3339), epoch,
#                 method, target, headers (names only), status, ok (1
#                 when credentials or a session token were issued),
#                 access (the AK issued, or null), expires_at, expires
#                 (epoch; of the credentials, else null), session (the
#                 X-Metadata-Token sent, the last when several, or null),
#                 ttl (the X-Metadata-Token-Ttl-Seconds of a PUT, as
#                 sent, the last when several, else null),
#                 session_issued (the session token a PUT issued, else
#                 null).  Never the secret or the security token.
#   --keys FILE   append "AK SK TOKEN" for every credential issued:
#                 tg-upstream.pl --keys FILE verifies requests signed
#                 with them (and that they carry that security token)
#   --sessions FILE
#                 append "TOKEN EXPIRES_EPOCH" for every session token
#                 issued; the GET accepts exactly these.  A line
#                 "revoke TOKEN" (appended, so it cannot race the
#                 service's appends) revokes that token.  With --session
#                 but without this file no GET succeeds.
#
# One child process per connection; TERM stops the server and its
# children (the service "down": stop it; "back": start it again).
#
# Required from a test file, this file defines helpers instead of
# running a server (see TaurusGuard::Metadata below).
#
# Only core Perl.

use strict;
use warnings;

use File::Basename ();
use lib File::Basename::dirname(__FILE__);

package TaurusGuard::Metadata::Server;

use Getopt::Long qw(GetOptionsFromArray);
use POSIX qw(strftime);
use Time::HiRes qw(time sleep);

use TaurusGuard::HTTPServer;

my (%opt, $json);

my $KEY_PATH = '/openstack/latest/securitykey';
my $TOKEN_PATH = '/meta-data/latest/api/token';


sub main {
    my (@argv) = @_;

    %opt = (listen => '127.0.0.1:5001', ttl => 86400);

    GetOptionsFromArray(\@argv, \%opt, 'listen=s', 'ttl=f', 'record=s',
        'keys=s', 'status=i', 'delay=i', 'session', 'sessions=s',
        'session-status=i', 'cut=i', 'session-cut=i', 'cut-mode=s',
        'pidfile=s', 'broken')
        or die "usage: $0 --listen ADDR:PORT [options]\n";

    die "$0: --cut-mode: close, chunked or stall\n"
        if defined $opt{'cut-mode'}
            && $opt{'cut-mode'} !~ /\A(?:close|chunked|stall)\z/;

    $json = TaurusGuard::HTTPServer::json();

    TaurusGuard::HTTPServer::run(
        name    => 'tg-metadata',
        listen  => $opt{listen},
        pidfile => $opt{pidfile},
        handle  => \&handle,
        child   => sub { srand() },
        request => { body => 'discard' },
    );
}


sub rand_text {
    my ($n, $chars) = @_;
    return join '', map { substr $chars, int(rand length $chars), 1 }
        1 .. $n;
}


# Whether $token is a session token listed in the --sessions file, not
# expired and not revoked.

sub session_ok {
    my ($token) = @_;
    return TaurusGuard::HTTPServer::listed_token($opt{sessions}, $token);
}


# The session token PUT (--session): returns status, content type, body
# and the token issued (or undef).

sub put_session {
    my ($req) = @_;

    my $ttl = $req->{h}{'x-metadata-token-ttl-seconds'} || [];

    return (400, 'application/json',
        '{"error":"X-Metadata-Token-Ttl-Seconds: one integer from 1 to '
        . '21600 expected"}')
        unless @$ttl == 1 && $ttl->[0] =~ /\A[0-9]{1,5}\z/
            && $ttl->[0] >= 1 && $ttl->[0] <= 21600;

    return ($opt{'session-status'}, 'application/json',
        '{"error":"metadata service failing"}')
        if defined $opt{'session-status'};

    my $token = 'tgSess' . rand_text(50,
        'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789');

    # issued before it is answered: the GET that follows finds it

    append($opt{sessions}, sprintf("%s %.6f\n", $token, time + $ttl->[0]))
        if defined $opt{sessions};

    return (200, 'text/plain', $token, $token);
}


sub handle {
    my ($c, $req) = @_;

    sleep($opt{delay} / 1000) if $opt{delay};

    my ($status, $body, $issued, $session_issued);
    my $type = 'application/json';
    my $sent = $req->{h}{'x-metadata-token'} || [];
    my $ttl = $req->{h}{'x-metadata-token-ttl-seconds'} || [];

    if ($opt{session} && $req->{target} eq $TOKEN_PATH) {
        if ($req->{method} ne 'PUT') {
            $status = 405;
            $body = '{"error":"method not allowed"}';
        } else {
            ($status, $type, $body, $session_issued) = put_session($req);
        }

    } elsif ($req->{target} ne $KEY_PATH) {
        $status = 404;
        $body = '{"error":"not found"}';

    } elsif ($req->{method} ne 'GET' && $req->{method} ne 'HEAD') {
        $status = 405;
        $body = '{"error":"method not allowed"}';

    } elsif ($opt{session} && (@$sent != 1 || !session_ok($sent->[0]))) {
        $status = 401;
        $body = '{"error":"session token missing or expired"}';

    } elsif (defined $opt{status}) {
        $status = $opt{status};
        $body = '{"error":"metadata service failing"}';

    } else {
        my $up = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
        my $alnum = 'abcdefghijklmnopqrstuvwxyz' . $up;
        my $exp = time + $opt{ttl};

        $issued = {
            access        => 'TMPAK' . rand_text(15, $up),
            secret        => 'tgMetaSk' . rand_text(32, $alnum),
            securitytoken => 'tgMetaSt' . rand_text(1200, "$alnum-_"),
            expires_at    => strftime('%Y-%m-%dT%H:%M:%S', gmtime $exp)
                . sprintf('.%06dZ', ($exp - int $exp) * 1e6),
            expires       => $exp,
        };

        # issued before it is answered: the upstream knows it in time

        append($opt{keys}, "$issued->{access} $issued->{secret} "
            . "$issued->{securitytoken}\n") if defined $opt{keys};

        $status = 200;
        $body = $json->encode({ credential => {
            map { $_ => $issued->{$_} }
                qw(access secret securitytoken expires_at) } });
        $body =~ s/\}\z/,}/ if $opt{broken};
    }

    # the ttl as the string sent ("$v": put_session compared it as a
    # number, and JSON::PP would write a number)

    if (defined $opt{record}) {
        my $t = $req->{time};
        TaurusGuard::HTTPServer::append_record($opt{record}, {
            time           => strftime('%Y-%m-%dT%H:%M:%S', gmtime $t)
                . sprintf('.%03dZ', ($t - int $t) * 1000),
            epoch          => $t,
            method         => $req->{method},
            target         => $req->{target},
            headers        => [ map { $_->[0] } @{ $req->{headers} } ],
            status         => $status,
            ok             => $issued || $session_issued ? 1 : 0,
            access         => $issued ? $issued->{access} : undef,
            expires_at     => $issued ? $issued->{expires_at} : undef,
            expires        => $issued ? $issued->{expires} : undef,
            session        => $sent->[-1],
            ttl            => $req->{method} eq 'PUT' && @$ttl
                ? "$ttl->[-1]" : undef,
            session_issued => $session_issued,
        });
    }

    # --cut, --session-cut: the answer that issued something cut short

    my $cut = $issued ? $opt{cut}
        : $session_issued ? $opt{'session-cut'} : undef;

    return TaurusGuard::HTTPServer::respond($c,
        status       => $status,
        reason       => 'Status',
        content_type => $type,
        body         => $body,
        keep         => TaurusGuard::HTTPServer::keep_alive($req),
        no_body      => $req->{method} eq 'HEAD',
        cut          => $cut,
        cut_mode     => $opt{'cut-mode'},
    );
}


# Appends a line to a file under a lock (test helpers use it too).

sub append {
    TaurusGuard::HTTPServer::append(@_);
}


# ---- helpers for the test files ---------------------------------------
#
#   require "$FindBin::Bin/lib/tg-metadata.pl";
#   TaurusGuard::Metadata::start_meta($t, ttl => 12);   # %%PORT_META%%
#       (ttl, status, delay: as the options above; session => 1:
#       --session; session_status => N: --session-status N; cut,
#       session_cut, cut_mode: --cut, --session-cut, --cut-mode)
#   TaurusGuard::Metadata::upstream_keys($t, %o);       # tg-upstream
#       --keys keys (o: token => T, tokens => FILE, ak/sk => ...)
#   my @calls = TaurusGuard::Metadata::meta_calls($t);
#   my @keys = TaurusGuard::Metadata::meta_keys($t);  # [ak, sk, token]
#   my @s = TaurusGuard::Metadata::meta_sessions($t);  # [token, expires]
#   TaurusGuard::Metadata::revoke_session($t, $s[0][0]);
#   TaurusGuard::Metadata::stop_meta($t);
#
# The service writes meta.jsonl (--record) and appends to keys (--keys)
# and sessions (--sessions) in the test directory, and logs to
# logs/meta.log.

package TaurusGuard::Metadata;

use File::Basename qw(dirname);

my $BIN = dirname(__FILE__);

my %LIVE;


# %o: ttl, status, delay (as the server's options), session (true:
# --session), session_status (--session-status), cut, session_cut,
# cut_mode (--cut, --session-cut, --cut-mode).

sub start_meta {
    my ($t, %o) = @_;

    my $port = $t->port('META');
    my $d = $t->testdir;

    stop_meta($t);

    my @cmd = ($^X, "$BIN/tg-metadata.pl",
        '--listen', "127.0.0.1:$port",
        '--ttl', defined $o{ttl} ? $o{ttl} : 86400,
        '--record', "$d/meta.jsonl",
        '--keys', "$d/keys",
        '--sessions', "$d/sessions",
        '--pidfile', "$d/meta.pid");
    push @cmd, '--status', $o{status} if defined $o{status};
    push @cmd, '--delay', $o{delay} if defined $o{delay};
    push @cmd, '--session' if $o{session};
    push @cmd, '--broken' if $o{broken};
    push @cmd, '--session-status', $o{session_status}
        if defined $o{session_status};
    push @cmd, '--cut', $o{cut} if defined $o{cut};
    push @cmd, '--session-cut', $o{session_cut} if defined $o{session_cut};
    push @cmd, '--cut-mode', $o{cut_mode} if defined $o{cut_mode};

    my $pid = TaurusGuard::HTTPServer::spawn("$d/logs/meta.log", @cmd);

    $t->{meta_pid} = $pid;
    $LIVE{$pid} = $$;

    $t->_wait_stand_in($pid, 'meta.pid', $port)
        or die "tg-metadata did not start on $port\n";

    return $port;
}


sub stop_meta {
    my ($t) = @_;

    my $pid = delete $t->{meta_pid} or return;
    TaurusGuard::HTTPServer::stop($pid);
    delete $LIVE{$pid};
}


# tg-upstream.pl on %%PORT_UP%% verifying with every key in the test
# directory's "keys" file (the metadata service's, and any a test adds);
# the harness stops it.  %o: ak, sk, token, tokens (a file).

sub upstream_keys {
    my ($t, %o) = @_;

    my $port = $t->port('UP');
    my $d = $t->testdir;

    my @cmd = ($^X, "$BIN/tg-upstream.pl",
        '--listen', "127.0.0.1:$port",
        '--keys', "$d/keys",
        '--record', "$d/upstream.jsonl",
        '--audit-log', $o{audit_log} || "$d/audit.log",
        '--pidfile', "$d/upstream.pid");
    push @cmd, '--ak', $o{ak}, '--sk', $o{sk} if defined $o{ak};
    push @cmd, '--token', $o{token} if defined $o{token};
    push @cmd, '--tokens', $o{tokens} if defined $o{tokens};

    my $pid = TaurusGuard::HTTPServer::spawn("$d/logs/upstream.log", @cmd);

    $t->{upstream_pid} = $pid;

    $t->_wait_stand_in($pid, 'upstream.pid', $port)
        or die "tg-upstream did not start on $port\n";

    return $port;
}


# A key the upstream accepts from now on ("keys" file).

sub add_key {
    my ($t, $ak, $sk, $token) = @_;
    TaurusGuard::Metadata::Server::append($t->testdir . '/keys',
        join(' ', grep { defined } $ak, $sk, $token) . "\n");
}


sub meta_calls {
    my ($t) = @_;
    return $t->_jsonl('meta.jsonl');
}


# Credentials issued: [ ak, sk, token ], oldest first (and any added
# with add_key).

sub meta_keys {
    my ($t) = @_;
    my $c = $t->read_file('keys');
    return map { [ split ' ' ] } grep { /\S/ }
        split /\n/, defined $c ? $c : '';
}


# Session tokens issued (--session, "sessions"): [ token, expires
# (epoch) ], oldest first, revoked ones too (revoke lines left out).

sub meta_sessions {
    my ($t) = @_;
    my $c = $t->read_file('sessions');
    return map { [ split ' ' ] } grep { /\S/ && !/\Arevoke / }
        split /\n/, defined $c ? $c : '';
}


# From now on the service refuses this session token.

sub revoke_session {
    my ($t, $token) = @_;
    TaurusGuard::Metadata::Server::append($t->testdir . '/sessions',
        "revoke $token\n");
}


# The AK of a forwarded request's Authorization header.

sub access_of {
    my ($rec) = @_;
    for my $h (@{ $rec->{headers} || [] }) {
        next unless lc $h->[0] eq 'authorization';
        return $1 if $h->[1] =~ /\bAccess=([^,\s]+)/;
    }
    return undef;
}


END {
    # waitpid() sets $?, which would become the test's exit status
    local $?;

    for my $pid (keys %LIVE) {
        TaurusGuard::HTTPServer::stop($pid) if $LIVE{$pid} == $$;
    }
}


package main;

TaurusGuard::Metadata::Server::main(@ARGV) unless caller;

1;
