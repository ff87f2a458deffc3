#!/usr/bin/perl

# tg-upstream.pl: a stand-in for the TaurusDB API that verifies the
# SDK-HMAC-SHA256 signature of each request with its own Perl code
# (TaurusGuard::Signer) and answers as the real API does.  Used by the
# integration tests and by `make run`.
#
#   tg-upstream.pl --listen 127.0.0.1:PORT (--ak AK --sk SK |
#       --credentials FILE | --keys FILE) [--record FILE] [--audit-log FILE]
#       [--status N] [--pidfile FILE] [--token TOKEN] [--tokens FILE]
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
use Fcntl qw(:flock O_WRONLY O_APPEND O_CREAT);
use Getopt::Long qw(GetOptions);
use IO::Socket::INET;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use POSIX qw(strftime WNOHANG);
use Time::HiRes qw(time);

use TaurusGuard::Signer;

my %opt = (listen => '127.0.0.1:8081');

GetOptions(\%opt, 'listen=s', 'ak=s', 'sk=s', 'credentials=s', 'record=s',
    'audit-log=s', 'status=i', 'pidfile=s', 'token=s', 'tokens=s', 'keys=s',
    'quiet')
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

my $json = JSON::PP->new->utf8->canonical;

my $server = IO::Socket::INET->new(
    LocalAddr => $opt{listen},
    Listen    => 128,
    ReuseAddr => 1,
    Proto     => 'tcp',
) or die "$0: cannot listen on $opt{listen}: $@\n";

if (defined $opt{pidfile}) {
    open my $fh, '>', $opt{pidfile} or die "$0: $opt{pidfile}: $!\n";
    print $fh "$$\n";
    close $fh;
}

# children serve one connection each; stopping the server stops them too,
# so no idle keep-alive connection outlives it

my %kids;

$SIG{CHLD} = sub {
    while ((my $pid = waitpid(-1, WNOHANG)) > 0) {
        delete $kids{$pid};
    }
};
$SIG{PIPE} = 'IGNORE';
$SIG{TERM} = $SIG{INT} = sub {
    kill 'TERM', keys %kids;
    exit 0;
};

print STDERR "tg-upstream: ready on " . $server->sockhost . ':'
    . $server->sockport . "\n";

while (1) {
    my $c = $server->accept or next;

    # one process per connection: nginx may keep one connection idle
    # while it opens another

    my $pid = fork;
    if (!defined $pid) {
        warn "$0: fork: $!\n";
        close $c;
        next;
    }

    if ($pid == 0) {
        close $server;
        $SIG{TERM} = $SIG{INT} = $SIG{CHLD} = 'DEFAULT';
        serve($c);
        POSIX::_exit(0);
    }

    $kids{$pid} = 1;
    close $c;
}


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


sub serve {
    my ($c) = @_;
    my $buf = '';

    binmode $c;

    my $seq = 0;

    while (1) {
        my $req = read_request($c, \$buf) or return;
        $req->{conn} = $$;
        $req->{seq} = ++$seq;
        my $keep = handle($c, $req);
        return unless $keep;
    }
}


sub fill {
    my ($c, $bufref) = @_;
    my $n = sysread($c, $$bufref, 65536, length $$bufref);
    return $n;
}


sub read_request {
    my ($c, $bufref) = @_;

    while ($$bufref !~ /\r?\n\r?\n/) {
        return undef if length $$bufref > 1 << 20;
        fill($c, $bufref) or return undef;
    }

    $$bufref =~ s/\A(.*?)\r?\n\r?\n//s;
    my @lines = split /\r?\n/, $1;
    my $line = shift @lines;

    my ($method, $target, $version) = $line =~ /\A(\S+) (\S+) (HTTP\/\d\.\d)\z/
        or return undef;

    my @headers;
    for my $l (@lines) {
        if ($l =~ /\A[ \t]/ && @headers) {
            $headers[-1][1] .= ' ' . $l =~ s/\A[ \t]+//r;
            next;
        }
        my ($n, $v) = $l =~ /\A([^:]+):[ \t]*(.*?)[ \t]*\z/ or return undef;
        push @headers, [ $n, $v ];
    }

    my %h;
    push @{ $h{ lc $_->[0] } }, $_->[1] for @headers;

    my $body = '';

    if ($h{'transfer-encoding'}
        && lc($h{'transfer-encoding'}[-1]) =~ /chunked/)
    {
        while (1) {
            while ($$bufref !~ /\r?\n/) {
                fill($c, $bufref) or return undef;
            }
            $$bufref =~ s/\A([0-9A-Fa-f]+)[^\r\n]*\r?\n// or return undef;
            my $size = hex $1;
            if ($size == 0) {
                # trailers, then an empty line
                while ($$bufref !~ /\A\r?\n/ && $$bufref !~ /\r?\n\r?\n/) {
                    fill($c, $bufref) or return undef;
                }
                $$bufref =~ s/\A(?:.*?\r?\n)??\r?\n//s;
                last;
            }
            while (length $$bufref < $size + 2) {
                fill($c, $bufref) or return undef;
            }
            $body .= substr $$bufref, 0, $size, '';
            $$bufref =~ s/\A\r?\n//;
        }

    } elsif ($h{'content-length'}) {
        my $len = $h{'content-length'}[0];
        return undef unless $len =~ /\A\d+\z/;
        while (length $$bufref < $len) {
            fill($c, $bufref) or return undef;
        }
        $body = substr $$bufref, 0, $len, '';
    }

    return {
        method  => $method,
        target  => $target,
        version => $version,
        headers => \@headers,
        h       => \%h,
        body    => $body,
        time    => time,
    };
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

    my $conn = $req->{h}{connection} ? lc $req->{h}{connection}[-1] : '';
    my $keep = $req->{version} eq 'HTTP/1.1' ? $conn ne 'close'
        : $conn eq 'keep-alive';

    my $resp = "HTTP/1.1 $status " . reason($status) . "\r\n"
        . "Content-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n"
        . "X-Request-Id: tg-upstream-$$\r\n"
        . ($keep ? '' : "Connection: close\r\n")
        . "\r\n" . ($req->{method} eq 'HEAD' ? '' : $body);

    my $off = 0;
    while ($off < length $resp) {
        my $n = syswrite($c, $resp, length($resp) - $off, $off);
        return 0 unless $n;
        $off += $n;
    }

    return $keep;
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

    my $line = $json->encode($rec) . "\n";

    sysopen my $fh, $opt{record}, O_WRONLY | O_APPEND | O_CREAT, 0644
        or die "$0: $opt{record}: $!\n";
    flock $fh, LOCK_EX;
    syswrite $fh, $line;
    close $fh;
}


sub reason {
    my ($s) = @_;
    my %r = (200 => 'OK', 202 => 'Accepted', 400 => 'Bad Request',
        401 => 'Unauthorized', 403 => 'Forbidden', 404 => 'Not Found',
        500 => 'Internal Server Error', 502 => 'Bad Gateway',
        503 => 'Service Unavailable');
    return $r{$s} || 'Status';
}
