#!/usr/bin/perl

# tg-metadata.pl: a stand-in for the ECS metadata service's temporary
# credentials, GET /openstack/latest/securitykey, for the integration
# tests of `taurus_guard_credentials metadata=...`.  Each call issues a
# new temporary AK/SK and security token with a short life, and is
# recorded so a test can count the calls.
#
#   tg-metadata.pl --listen 127.0.0.1:PORT [--ttl SECONDS] [--record FILE]
#       [--keys FILE] [--status N] [--delay MS] [--pidfile FILE]
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
# Options:
#   --ttl N       credential lifetime in seconds (default 86400; may be
#                 a fraction)
#   --status N    answer every call with status N and a small error body
#                 (the service failing); nothing is issued
#   --delay MS    wait MS milliseconds before answering (a slow service)
#   --record FILE append one JSON line per call: time (RFC 3339), epoch,
#                 method, target, headers (names only), status, ok (1
#                 when credentials were issued), access (the AK issued, or
#                 null), expires_at, expires (epoch).  Never the secret
#                 or the token.
#   --keys FILE   append "AK SK TOKEN" for every credential issued:
#                 tg-upstream.pl --keys FILE verifies requests signed
#                 with them (and that they carry that security token)
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

package TaurusGuard::Metadata::Server;

use Fcntl qw(:flock O_WRONLY O_APPEND O_CREAT);
use Getopt::Long qw(GetOptionsFromArray);
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(strftime WNOHANG);
use Time::HiRes qw(time sleep);

my (%opt, $json);


sub main {
    my (@argv) = @_;

    %opt = (listen => '127.0.0.1:5001', ttl => 86400);

    GetOptionsFromArray(\@argv, \%opt, 'listen=s', 'ttl=f', 'record=s',
        'keys=s', 'status=i', 'delay=i', 'pidfile=s')
        or die "usage: $0 --listen ADDR:PORT [options]\n";

    $json = JSON::PP->new->utf8->canonical;

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

    print STDERR "tg-metadata: ready on " . $server->sockhost . ':'
        . $server->sockport . "\n";

    while (1) {
        my $c = $server->accept or next;

        my $pid = fork;
        if (!defined $pid) {
            warn "$0: fork: $!\n";
            close $c;
            next;
        }

        if ($pid == 0) {
            close $server;
            $SIG{TERM} = $SIG{INT} = $SIG{CHLD} = 'DEFAULT';
            srand();
            serve($c);
            POSIX::_exit(0);
        }

        $kids{$pid} = 1;
        close $c;
    }
}


sub serve {
    my ($c) = @_;
    my $buf = '';

    binmode $c;

    while (1) {
        my $req = read_request($c, \$buf) or return;
        handle($c, $req) or return;
    }
}


sub read_request {
    my ($c, $bufref) = @_;

    while ($$bufref !~ /\r?\n\r?\n/) {
        return undef if length $$bufref > 1 << 20;
        sysread($c, $$bufref, 65536, length $$bufref) or return undef;
    }

    $$bufref =~ s/\A(.*?)\r?\n\r?\n//s;
    my @lines = split /\r?\n/, $1;
    my $line = shift @lines;

    my ($method, $target, $version) =
        $line =~ /\A(\S+) (\S+) (HTTP\/\d\.\d)\z/ or return undef;

    my @headers;
    for my $l (@lines) {
        my ($n, $v) = $l =~ /\A([^:]+):[ \t]*(.*?)[ \t]*\z/ or return undef;
        push @headers, [ $n, $v ];
    }

    my %h;
    push @{ $h{ lc $_->[0] } }, $_->[1] for @headers;

    # a GET has no body; one sent anyway is read and ignored

    if ($h{'content-length'} && $h{'content-length'}[0] =~ /\A(\d+)\z/) {
        while (length $$bufref < $1) {
            sysread($c, $$bufref, 65536, length $$bufref) or return undef;
        }
        substr $$bufref, 0, $1, '';
    }

    return { method => $method, target => $target, version => $version,
        headers => \@headers, h => \%h, time => time };
}


sub rand_text {
    my ($n, $chars) = @_;
    return join '', map { substr $chars, int(rand length $chars), 1 }
        1 .. $n;
}


sub handle {
    my ($c, $req) = @_;

    sleep($opt{delay} / 1000) if $opt{delay};

    my ($status, $body, $issued);

    if ($req->{target} ne '/openstack/latest/securitykey') {
        $status = 404;
        $body = '{"error":"not found"}';

    } elsif ($req->{method} ne 'GET' && $req->{method} ne 'HEAD') {
        $status = 405;
        $body = '{"error":"method not allowed"}';

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
    }

    if (defined $opt{record}) {
        my $t = $req->{time};
        append($opt{record}, $json->encode({
            time       => strftime('%Y-%m-%dT%H:%M:%S', gmtime $t)
                . sprintf('.%03dZ', ($t - int $t) * 1000),
            epoch      => $t,
            method     => $req->{method},
            target     => $req->{target},
            headers    => [ map { $_->[0] } @{ $req->{headers} } ],
            status     => $status,
            ok         => $issued ? 1 : 0,
            access     => $issued ? $issued->{access} : undef,
            expires_at => $issued ? $issued->{expires_at} : undef,
            expires    => $issued ? $issued->{expires} : undef,
        }) . "\n");
    }

    my $conn = $req->{h}{connection} ? lc $req->{h}{connection}[-1] : '';
    my $keep = $req->{version} eq 'HTTP/1.1' ? $conn ne 'close'
        : $conn eq 'keep-alive';

    my $resp = "HTTP/1.1 $status Status\r\n"
        . "Content-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n"
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


sub append {
    my ($file, $line) = @_;

    sysopen my $fh, $file, O_WRONLY | O_APPEND | O_CREAT, 0644
        or die "$0: $file: $!\n";
    flock $fh, LOCK_EX;
    syswrite $fh, $line;
    close $fh;
}


# ---- helpers for the test files ---------------------------------------
#
#   require "$FindBin::Bin/lib/tg-metadata.pl";
#   TaurusGuard::Metadata::start_meta($t, ttl => 12);   # %%PORT_META%%
#       (ttl, status, delay: as the options above)
#   TaurusGuard::Metadata::upstream_keys($t, %o);       # tg-upstream
#       --keys keys (o: token => T, tokens => FILE, ak/sk => ...)
#   my @calls = TaurusGuard::Metadata::meta_calls($t);
#   my @keys = TaurusGuard::Metadata::meta_keys($t);  # [ak, sk, token]
#   TaurusGuard::Metadata::stop_meta($t);
#
# The service writes meta.jsonl (--record) and appends to keys (--keys)
# in the test directory, and logs to logs/meta.log.

package TaurusGuard::Metadata;

use File::Basename qw(dirname);
use POSIX ();

my $BIN = dirname(__FILE__);

my %LIVE;


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
        '--pidfile', "$d/meta.pid");
    push @cmd, '--status', $o{status} if defined $o{status};
    push @cmd, '--delay', $o{delay} if defined $o{delay};

    my $pid = fork;
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$d/logs/meta.log";
        open STDERR, '>>', "$d/logs/meta.log";
        exec @cmd or POSIX::_exit(127);
    }

    $t->{meta_pid} = $pid;
    $LIVE{$pid} = $$;

    $t->_wait_port($port) or die "tg-metadata did not start on $port\n";

    return $port;
}


sub stop_meta {
    my ($t) = @_;

    my $pid = delete $t->{meta_pid} or return;
    kill 'TERM', $pid;
    waitpid $pid, 0;
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

    my $pid = fork;
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$d/logs/upstream.log";
        open STDERR, '>>', "$d/logs/upstream.log";
        exec @cmd or POSIX::_exit(127);
    }

    $t->{upstream_pid} = $pid;

    $t->_wait_port($port) or die "tg-upstream did not start on $port\n";

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
    for my $pid (keys %LIVE) {
        next unless $LIVE{$pid} == $$;
        kill 'TERM', $pid;
        waitpid $pid, 0;
    }
}


package main;

TaurusGuard::Metadata::Server::main(@ARGV) unless caller;

1;
