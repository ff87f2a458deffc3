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

use File::Basename ();
use lib File::Basename::dirname(__FILE__);

package TaurusGuard::Metadata::Server;

use Getopt::Long qw(GetOptionsFromArray);
use POSIX qw(strftime);
use Time::HiRes qw(time sleep);

use TaurusGuard::HTTPServer;

my (%opt, $json);


sub main {
    my (@argv) = @_;

    %opt = (listen => '127.0.0.1:5001', ttl => 86400);

    GetOptionsFromArray(\@argv, \%opt, 'listen=s', 'ttl=f', 'record=s',
        'keys=s', 'status=i', 'delay=i', 'pidfile=s')
        or die "usage: $0 --listen ADDR:PORT [options]\n";

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
        TaurusGuard::HTTPServer::append_record($opt{record}, {
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
        });
    }

    return TaurusGuard::HTTPServer::respond($c,
        status       => $status,
        reason       => 'Status',
        content_type => 'application/json',
        body         => $body,
        keep         => TaurusGuard::HTTPServer::keep_alive($req),
        no_body      => $req->{method} eq 'HEAD',
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

    my $pid = TaurusGuard::HTTPServer::spawn("$d/logs/meta.log", @cmd);

    $t->{meta_pid} = $pid;
    $LIVE{$pid} = $$;

    $t->_wait_port($port) or die "tg-metadata did not start on $port\n";

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
    # waitpid() sets $?, which would become the test's exit status
    local $?;

    for my $pid (keys %LIVE) {
        TaurusGuard::HTTPServer::stop($pid) if $LIVE{$pid} == $$;
    }
}


package main;

TaurusGuard::Metadata::Server::main(@ARGV) unless caller;

1;
