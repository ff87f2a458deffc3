#!/usr/bin/perl

# tg-upstream.pl: a stand-in for the TaurusDB API that verifies the
# SDK-HMAC-SHA256 signature of each request with its own Perl code
# (TaurusGuard::Signer) and answers as the real API does.  Used by the
# integration tests and by `make run`.
#
#   tg-upstream.pl --listen 127.0.0.1:PORT (--ak AK --sk SK |
#       --credentials FILE | --keys FILE) [--record FILE] [--audit-log FILE]
#       [--status N] [--pidfile FILE] [--token TOKEN] [--tokens FILE]
#       [--accel-redirect URI] [--delay MS] [--header 'NAME: VALUE' ...]
#
# --delay MS: each answer waits MS milliseconds, once the request is
# recorded (an endpoint slow to answer a batch it received).
#
# --accel-redirect URI: every answer carries "X-Accel-Redirect: URI",
# which sends nginx to that location (a re-entry of the request).
#
# --header 'NAME: VALUE': every answer carries that header line (the
# option may be given more than once; the lines are sent in order).
#
# --keys FILE: more AK/SK pairs, one "AK SK [SECURITY_TOKEN]" line each
# (white space between fields; empty lines and lines starting with "#"
# ignored), read again at each request, so a test can add keys while the
# server runs (credentials rotation, temporary credentials).  A signed
# request is verified with the SK of the AK in its Authorization header:
# from this file, else --ak/--sk.  When the line has a third field (a
# temporary credential), the request must also carry exactly one
# X-Security-Token equal to it, or its signature is refused with the
# error "security token does not match the AK".  The record then has
# access (the AK of the Authorization header, or null).
#
# --token: a request with no Authorization header is accepted when its
# X-Auth-Token equals TOKEN (IAM token authentication).
#
# --tokens FILE: the tokens an IAM issued, as t/lib/tg-iam.pl --tokens
# writes them, one "TOKEN PROJECT EXPIRES_EPOCH" line each.  A request
# with no Authorization header is accepted when its one X-Auth-Token is
# listed there for the project in its one X-Project-Id and has not
# expired; else it gets what the real API answers for an expired or
# revoked token: 401 {"error_code":"APIG.0307","error_msg":"The token
# must be updated."}.  A line "revoke TOKEN" (appended, so it cannot race
# the IAM's appends) revokes that token; so does removing its line.  The
# file is read at each request.  token_ok is recorded as with --token,
# and token_error says why a token was refused (missing, unknown,
# project, expired, revoked).
#
# --record appends one JSON line per request: time, method, target,
# version, headers ([name, value] in the order received), body (text),
# body_b64, body_sha256, signature {ok, error, canonical_request,
# string_to_sign}, audit_seen (whether --audit-log held the request's
# X-Taurus-Guard-Id when the request arrived), token_ok, connection (an
# id of the client connection) and seq (the request's number on it).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin";

use Digest::SHA qw(sha256_hex);
use Encode qw(decode);
use Fcntl qw(:flock);
use Getopt::Long qw(GetOptions);
use MIME::Base64 qw(encode_base64);
use POSIX qw(strftime);
use Time::HiRes qw(time sleep);

use TaurusGuard::HTTPServer;
use TaurusGuard::Signer;

my %opt = (listen => '127.0.0.1:8081');

GetOptions(\%opt, 'listen=s', 'ak=s', 'sk=s', 'credentials=s', 'record=s',
    'audit-log=s', 'status=i', 'pidfile=s', 'token=s', 'tokens=s', 'keys=s',
    'accel-redirect=s', 'delay=i', 'header=s@', 'quiet')
    or die "usage: $0 --listen ADDR:PORT --ak AK --sk SK [options]\n";

if (defined $opt{credentials}) {
    my $c = read_ini($opt{credentials});
    $opt{ak} = $c->{ak} unless defined $opt{ak};
    $opt{sk} = $c->{sk} unless defined $opt{sk};
}

die "$0: --ak and --sk, --credentials, --keys, --token or --tokens are "
    . "required\n"
    unless defined $opt{ak} && defined $opt{sk} || defined $opt{token}
        || defined $opt{tokens} || defined $opt{keys};

my $json = TaurusGuard::HTTPServer::json();

TaurusGuard::HTTPServer::run(
    name    => 'tg-upstream',
    listen  => $opt{listen},
    pidfile => $opt{pidfile},
    handle  => \&handle,
    request => { fold => 1 },
);


sub read_ini {
    my ($file) = @_;
    open my $fh, '<', $file or die "$0: $file: $!\n";
    my ($section, %v) = ('');
    while (my $l = <$fh>) {
        $l =~ s/[\r\n]+\z//;
        next if $l =~ /\A\s*(?:[#;]|\z)/;
        if ($l =~ /\A\s*\[\s*([^\]]*?)\s*\]/) {
            $section = $1;
            next;
        }
        next unless $section eq 'basic';
        $v{ lc $1 } = $2 if $l =~ /\A\s*([^=\s]+)\s*=\s*(.*?)\s*\z/;
    }
    return \%v;
}


sub audit_seen {
    my ($req) = @_;

    return undef unless defined $opt{'audit-log'};

    my $ids = $req->{h}{'x-taurus-guard-id'} or return 0;
    my $id = $ids->[0];
    return 0 unless length $id;

    open my $fh, '<', $opt{'audit-log'} or return 0;
    local $/;
    my $log = <$fh>;
    close $fh;

    return index($log, "\"id\":\"$id\"") >= 0 ? 1 : 0;
}


sub handle {
    my ($c, $req) = @_;

    # checked first: what was on disk when the request arrived
    my $seen = audit_seen($req);

    my ($path, $query) = split /\?/, $req->{target}, 2;

    my $v = { ok => 0, error => 'no AK/SK configured' };

    my ($ak, $sk, $sts) = ($opt{ak}, $opt{sk}, undef);
    my $access;

    if (defined $opt{keys}) {
        my $a = TaurusGuard::Signer::parse_authorization(
            ($req->{h}{authorization} || [])->[0]);
        $access = $a->{access} if $a;
        my $k = defined $access ? read_keys()->{$access} : undef;
        ($ak, $sk, $sts) = ($access, @$k) if $k;
        $v->{error} = 'the AK is not in --keys' unless $k || defined $ak;
    }

    $v = TaurusGuard::Signer::verify({
        method  => $req->{method},
        path    => $path,
        query   => $query,
        headers => $req->{headers},
        body    => $req->{body},
    }, ak => $ak, sk => $sk)
        if defined $ak && defined $sk;

    if ($v->{ok} && defined $sts) {
        my $got = $req->{h}{'x-security-token'} || [];
        $v = { %$v, ok => 0,
            error => 'security token does not match the AK' }
            unless @$got == 1 && $got->[0] eq $sts;
    }

    my $tokens = $req->{h}{'x-auth-token'} || [];
    my $token_ok = defined $opt{token} && @$tokens == 1
        && $tokens->[0] eq $opt{token} ? 1 : 0;

    my $token_error;

    if (defined $opt{tokens} && !$token_ok) {
        $token_error = check_issued($tokens, $req->{h}{'x-project-id'} || []);
        $token_ok = defined $token_error ? 0 : 1;
    }

    my $copy = $req->{body};
    my $text = eval {
        decode('UTF-8', $copy, Encode::FB_CROAK | Encode::LEAVE_SRC)
    };

    my $rec = {
        time        => strftime('%Y-%m-%dT%H:%M:%S', gmtime $req->{time})
            . sprintf('.%03dZ', ($req->{time} - int $req->{time}) * 1000),
        method      => $req->{method},
        target      => $req->{target},
        version     => $req->{version},
        headers     => $req->{headers},
        body        => $text,
        body_b64    => encode_base64($req->{body}, ''),
        body_sha256 => sha256_hex($req->{body}),
        signature   => {
            ok                => $v->{ok} ? 1 : 0,
            error             => $v->{error},
            canonical_request => $v->{canonical_request},
            string_to_sign    => $v->{string_to_sign},
        },
        audit_seen  => $seen,
        token_ok    => $token_ok,
        (defined $opt{tokens} ? (token_error => $token_error) : ()),
        (defined $opt{keys} ? (access => $access) : ()),
        connection  => $req->{conn},
        seq         => $req->{seq},
    };

    record($rec);

    sleep($opt{delay} / 1000) if $opt{delay};

    my ($status, $body);

    if (defined $opt{status}) {
        $status = $opt{status};
        $body = $json->encode({ resp => "status $status" });

    } elsif ($v->{ok} || $token_ok && !$req->{h}{authorization}) {
        $status = 200;
        $body = '{"resp":"success"}';

    } elsif (defined $opt{tokens} && !$req->{h}{authorization}) {
        $status = 401;
        $body = '{"error_code":"APIG.0307","error_msg":"The token must be '
            . 'updated."}';
        print STDERR "tg-upstream: token refused: $token_error\n"
            unless $opt{quiet};

    } else {
        $status = 401;
        $body = '{"error_code":"APIG.0301","error_msg":"Incorrect IAM '
            . 'authentication information: verify aksk signature fail"}';
        print STDERR "tg-upstream: signature check failed: $v->{error}\n"
            unless $opt{quiet};
    }

    return TaurusGuard::HTTPServer::respond($c,
        status       => $status,
        reason       => reason($status),
        content_type => 'application/json',
        headers      => [ "X-Request-Id: tg-upstream-$$",
            (defined $opt{'accel-redirect'}
                ? "X-Accel-Redirect: $opt{'accel-redirect'}" : ()),
            @{ $opt{header} || [] } ],
        body         => $body,
        keep         => TaurusGuard::HTTPServer::keep_alive($req),
        no_body      => $req->{method} eq 'HEAD',
    );
}


# --keys: { AK => [ SK, SECURITY_TOKEN or undef ] }, read now (the
# file may be rewritten or appended to while the server runs).

sub read_keys {
    my %k;

    open my $fh, '<', $opt{keys} or return \%k;
    flock $fh, LOCK_SH;
    while (my $l = <$fh>) {
        next if $l =~ /\A\s*(?:#|\z)/;
        my @f = split ' ', $l;
        $k{ $f[0] } = [ $f[1], $f[2] ] if @f >= 2;
    }
    close $fh;

    return \%k;
}


# undef when the one token given was issued (--tokens) for the one
# project given and is still valid, else why not.

sub check_issued {
    my ($tokens, $projects) = @_;

    return 'missing' unless @$tokens == 1 && @$projects == 1;

    my ($token, $project) = ($tokens->[0], $projects->[0]);

    open my $fh, '<', $opt{tokens} or return 'unknown';
    flock $fh, LOCK_SH;

    my ($found, $revoked);
    while (my $l = <$fh>) {
        chomp $l;
        my @f = split / /, $l;
        if (@f == 2 && $f[0] eq 'revoke' && $f[1] eq $token) {
            $revoked = 1;
        } elsif (@f == 3 && $f[0] eq $token) {
            $found = [ @f ];
        }
    }
    close $fh;

    return 'unknown' unless $found;
    return 'revoked' if $revoked;
    return 'project' unless $found->[1] eq $project;
    return 'expired' unless $found->[2] > time;
    return undef;
}


sub record {
    my ($rec) = @_;
    return unless defined $opt{record};
    TaurusGuard::HTTPServer::append_record($opt{record}, $rec);
}


sub reason {
    my ($s) = @_;
    my %r = (200 => 'OK', 202 => 'Accepted', 400 => 'Bad Request',
        401 => 'Unauthorized', 403 => 'Forbidden', 404 => 'Not Found',
        500 => 'Internal Server Error', 502 => 'Bad Gateway',
        503 => 'Service Unavailable');
    return $r{$s} || 'Status';
}
