#!/usr/bin/perl

# tg-iam.pl: a stand-in for Huawei Cloud IAM's "Obtaining an IAM User
# Token (Using a Password)", POST /v3/auth/tokens, for the integration
# tests of `taurus_guard_token iam=...`.  It checks each request the way
# the real service does, issues project-scoped tokens with a short life,
# and records every call so a test can count them.
#
#   tg-iam.pl --listen 127.0.0.1:PORT --domain D --user U --password P
#       [--ttl SECONDS] [--record FILE] [--tokens FILE] [--status N]
#       [--delay MS] [--pidfile FILE]
#
# A call is answered 201 with `X-Subject-Token: TOKEN` and the body
# {"token":{"expires_at":"2026-11-30T21:00:00.000000Z",...}} (RFC 3339
# UTC with microseconds, as the real IAM writes it) when all of this
# holds, else 400 or 401 with an IAM-style error body:
#
#   - POST on exactly /v3/auth/tokens (with IAM's optional query
#     nocatalog=true or nocatalog=false, nothing else), Content-Type
#     application/json (parameters such as charset=utf8 allowed), a
#     body of exactly Content-Length bytes (or chunked);
#   - the body is exactly, key for key (no key missing, none extra):
#     {"auth":{"identity":{"methods":["password"],"password":{"user":
#     {"name":U,"password":P,"domain":{"name":D}}}},"scope":{"project":
#     {"id":PROJECT}}}} with PROJECT 32 ASCII letters or digits (400);
#   - U, P and D are the ones given on the command line (401).
#
# Options:
#   --ttl N       token lifetime in seconds (default 86400, as IAM;
#                 may be a fraction)
#   --status N    answer every call that would get a token with status N
#                 and an IAM-style error (500, 401, 503...): IAM failing
#   --delay MS    wait MS milliseconds before answering (a slow IAM)
#   --record FILE append one JSON line per call: time (RFC 3339), epoch,
#                 method, target, content_type, headers (names only),
#                 project (the scope asked for, or null), user, domain,
#                 status, ok (1 when a token was issued), token (the one
#                 issued, or null), expires_at, error.  Never the
#                 password: a call with a wrong one has error "password".
#   --tokens FILE append "TOKEN PROJECT EXPIRES_EPOCH" for every token
#                 issued: tg-upstream.pl --tokens FILE accepts exactly
#                 these (see there for revoking one)
#
# Tokens are "MIItg" followed by random hex, the issuing process id and
# a counter, padded to about 600 bytes of base64url-like text, unique
# across restarts (the random part).  One child process per connection;
# TERM stops the server and its children (IAM "down": stop it; "back":
# start it again on the same port).
#
# Required from a test file, this file defines helpers instead of
# running a server (see TaurusGuard::IAM below): write_password_file,
# start_iam, stop_iam, upstream_tokens, iam_calls, iam_tokens,
# revoke_token, sent_tokens, iam_supported.
#
# Only core Perl.

use strict;
use warnings;

use File::Basename ();
use lib File::Basename::dirname(__FILE__);

package TaurusGuard::IAM::Server;

use Digest::SHA qw(sha256_hex);
use Getopt::Long qw(GetOptionsFromArray);
use JSON::PP;
use MIME::Base64 ();
use POSIX qw(strftime);
use Time::HiRes qw(time sleep);

use TaurusGuard::HTTPServer;

my (%opt, $json, $seq);


sub main {
    my (@argv) = @_;

    %opt = (listen => '127.0.0.1:5000', ttl => 86400);

    GetOptionsFromArray(\@argv, \%opt, 'listen=s', 'domain=s', 'user=s',
        'password=s', 'ttl=f', 'record=s', 'tokens=s', 'status=i',
        'delay=i', 'pidfile=s')
        or die "usage: $0 --listen ADDR:PORT --domain D --user U "
            . "--password P [options]\n";

    for (qw(domain user password)) {
        die "$0: --$_ is required\n" unless defined $opt{$_};
    }

    $json = TaurusGuard::HTTPServer::json();

    TaurusGuard::HTTPServer::run(
        name    => 'tg-iam',
        listen  => $opt{listen},
        pidfile => $opt{pidfile},
        handle  => \&handle,
        request => { one_length => 1 },
    );
}


# The body's structure, key for key; returns (project, user, password,
# domain) or an error message.

sub check_body {
    my ($body) = @_;

    my $v = eval { JSON::PP->new->utf8->decode($body) };
    return (undef, 'the request body is not JSON') unless ref $v eq 'HASH';

    my $keys = sub {
        my ($o, @k) = @_;
        return 0 unless ref $o eq 'HASH';
        return join(',', sort keys %$o) eq join(',', sort @k);
    };
    my $str = sub { defined $_[0] && !ref $_[0] && length $_[0] };

    return (undef, 'auth expected') unless $keys->($v, 'auth');
    my $a = $v->{auth};
    return (undef, 'auth: identity and scope expected')
        unless $keys->($a, qw(identity scope));

    my $id = $a->{identity};
    return (undef, 'identity: methods and password expected')
        unless $keys->($id, qw(methods password));
    return (undef, 'identity.methods must be ["password"]')
        unless ref $id->{methods} eq 'ARRAY' && @{ $id->{methods} } == 1
            && defined $id->{methods}[0] && !ref $id->{methods}[0]
            && $id->{methods}[0] eq 'password';

    my $pw = $id->{password};
    return (undef, 'identity.password: user expected')
        unless $keys->($pw, 'user');
    my $u = $pw->{user};
    return (undef, 'user: name, password and domain expected')
        unless $keys->($u, qw(name password domain));
    return (undef, 'user.domain: name expected')
        unless $keys->($u->{domain}, 'name');
    return (undef, 'user: name, password and domain.name must be strings')
        unless $str->($u->{name}) && $str->($u->{password})
            && $str->($u->{domain}{name});

    my $s = $a->{scope};
    return (undef, 'scope: project expected') unless $keys->($s, 'project');
    return (undef, 'scope.project: id expected')
        unless $keys->($s->{project}, 'id');
    my $p = $s->{project}{id};
    return (undef, 'scope.project.id: 32 letters or digits expected')
        unless $str->($p) && $p =~ /\A[0-9A-Za-z]{32}\z/;

    return ($p, undef, $u->{name}, $u->{password}, $u->{domain}{name});
}


sub new_token {
    my ($project, $expires) = @_;

    open my $fh, '<', '/dev/urandom' or die "$0: /dev/urandom: $!\n";
    my $rnd;
    sysread $fh, $rnd, 16;
    close $fh;

    my $t = 'MIItg' . unpack('H*', $rnd) . sprintf('-%d-%d', $$, ++$seq);

    # padding like a PKI token's: base64url-ish, derived from the head

    my $pad = '';
    my $i = 0;
    while (length($t) + length($pad) < 600) {
        my $h = pack 'H*', sha256_hex("$t/$project/$expires/" . $i++);
        ($h = MIME::Base64::encode_base64($h, '')) =~ tr{+/=}{-_}d;
        $pad .= $h;
    }

    return substr($t . '.' . $pad, 0, 600);
}


sub rfc3339_us {
    my ($t) = @_;
    my $s = int $t;
    my $us = int(($t - $s) * 1_000_000 + 0.5);
    if ($us >= 1_000_000) {
        $s++;
        $us -= 1_000_000;
    }
    return strftime('%Y-%m-%dT%H:%M:%S', gmtime $s) . sprintf('.%06dZ', $us);
}


sub handle {
    my ($c, $req) = @_;

    my $ct = $req->{h}{'content-type'} ? $req->{h}{'content-type'}[-1] : '';

    my $rec = {
        time         => rfc3339_us($req->{time}),
        epoch        => $req->{time},
        method       => $req->{method},
        target       => $req->{target},
        content_type => $ct,
        headers      => [ map { $_->[0] } @{ $req->{headers} } ],
        project      => undef,
        user         => undef,
        domain       => undef,
        ok           => 0,
        token        => undef,
        expires_at   => undef,
    };

    my ($status, $body, @extra);

    my ($project, $err, $user, $password, $domain);

    # IAM's one query parameter here: nocatalog (leave the catalog out)

    if ($req->{method} ne 'POST' || $req->{target}
        !~ m{\A/v3/auth/tokens(?:\?nocatalog=(?:true|false))?\z})
    {
        ($status, $err) = (404, "no route for $req->{method} "
            . "$req->{target}");

    } elsif ($ct !~ m{\Aapplication/json\s*(?:;|\z)}i) {
        ($status, $err) = (400, 'Content-Type must be application/json');

    } else {
        ($project, $err, $user, $password, $domain) =
            check_body($req->{body});

        if (defined $err) {
            $status = 400;

        } else {
            $rec->{project} = $project;
            $rec->{user} = $user;
            $rec->{domain} = $domain;

            if ($user ne $opt{user} || $domain ne $opt{domain}) {
                ($status, $err) = (401, 'user or domain');
            } elsif ($password ne $opt{password}) {
                ($status, $err) = (401, 'password');
            }
        }
    }

    undef $password;

    sleep($opt{delay} / 1000) if $opt{delay};

    if (!defined $status && defined $opt{status}) {
        ($status, $err) = ($opt{status}, "--status $opt{status}");
    }

    if (defined $status) {
        $rec->{error} = $err;
        my %title = (400 => 'Bad Request', 401 => 'Unauthorized',
            404 => 'Not Found', 500 => 'Internal Server Error',
            503 => 'Service Unavailable');
        my $msg = $status == 401
            ? 'The username or password is wrong.'
            : $status == 400 ? "Invalid request: $err"
            : 'Internal error';
        $body = $json->encode({ error => { code => $status,
            message => $msg, title => $title{$status} || 'Error' } });

    } else {
        my $now = time;
        my $exp = $now + $opt{ttl};
        my $token = new_token($project, $exp);

        append($opt{tokens}, sprintf("%s %s %.6f\n", $token, $project, $exp))
            if defined $opt{tokens};

        $status = 201;
        $rec->{ok} = 1;
        $rec->{token} = $token;
        $rec->{expires_at} = rfc3339_us($exp);
        push @extra, "X-Subject-Token: $token";

        $body = $json->encode({ token => {
            expires_at => rfc3339_us($exp),
            issued_at  => rfc3339_us($now),
            methods    => [ 'password' ],
            catalog    => [],
            roles      => [ { id => '0' x 32, name => 'op_gated_taurus' } ],
            project    => {
                id     => $project,
                name   => 'ap-southeast-1',
                domain => { id => 'd' x 32, name => $domain },
            },
            user       => {
                id     => 'e' x 32,
                name   => $user,
                domain => { id => 'd' x 32, name => $domain },
                password_expires_at => '',
            },
        } });
    }

    $rec->{status} = $status;
    TaurusGuard::HTTPServer::append_record($opt{record}, $rec)
        if defined $opt{record};

    my %reason = (201 => 'Created', 400 => 'Bad Request',
        401 => 'Unauthorized', 404 => 'Not Found',
        500 => 'Internal Server Error', 503 => 'Service Unavailable');

    return TaurusGuard::HTTPServer::respond($c,
        status       => $status,
        reason       => $reason{$status} || 'Status',
        content_type => 'application/json;charset=UTF-8',
        headers      => [ @extra, "X-IAM-Trace-Id: tg-iam-$$-" . ($seq || 0) ],
        body         => $body,
        keep         => TaurusGuard::HTTPServer::keep_alive($req),
    );
}


# Appends a line to a file under a lock (test helpers use it too).

sub append {
    TaurusGuard::HTTPServer::append(@_);
}


# ---- helpers for the test files ---------------------------------------
#
#   require "$FindBin::Bin/lib/tg-iam.pl";
#   TaurusGuard::IAM::iam_supported($t, $conf) or ...;  # skip_all inside
#   TaurusGuard::IAM::write_password_file($t);    # iam.ini, 0600
#   TaurusGuard::IAM::start_iam($t, ttl => 12);   # on %%PORT_IAM%%
#       (ttl, status, delay, password: as the options above)
#   TaurusGuard::IAM::upstream_tokens($t);        # tg-upstream --tokens
#   my @calls = TaurusGuard::IAM::iam_calls($t);
#   TaurusGuard::IAM::stop_iam($t);
#
# The IAM writes iam.jsonl (--record) and tokens (--tokens) in the test
# directory, and logs to logs/iam.log.

package TaurusGuard::IAM;

use File::Basename qw(dirname);
use JSON::PP;
use Time::HiRes qw(sleep time);

our $DOMAIN   = 'tg-test-domain';
our $USER     = 'tg-test-user';
our $PASSWORD = 'tgIamPassw0rd-NEVERlogged-5Qx7';

my $BIN = dirname(__FILE__);

my %LIVE;


# The [iam] file the module reads; %o overrides or (undef) drops a key.

sub write_password_file {
    my ($t, %o) = @_;

    my $name = delete $o{name} || 'iam.ini';
    my $mode = delete $o{mode};
    my %v = (domain => $DOMAIN, user => $USER, password => $PASSWORD, %o);

    my $text = "# IAM password for taurus-guard\n[iam]\n";
    for my $k (qw(domain user password)) {
        $text .= "$k = $v{$k}\n" if defined $v{$k};
    }

    return $t->write_secret_file($name, $text, $mode);
}


sub start_iam {
    my ($t, %o) = @_;

    my $port = $t->port('IAM');
    my $d = $t->testdir;

    stop_iam($t);

    my @cmd = ($^X, "$BIN/tg-iam.pl",
        '--listen', "127.0.0.1:$port",
        '--domain', $DOMAIN, '--user', $USER,
        '--password', defined $o{password} ? $o{password} : $PASSWORD,
        '--ttl', defined $o{ttl} ? $o{ttl} : 86400,
        '--record', "$d/iam.jsonl",
        '--tokens', "$d/tokens",
        '--pidfile', "$d/iam.pid");
    push @cmd, '--status', $o{status} if defined $o{status};
    push @cmd, '--delay', $o{delay} if defined $o{delay};

    my $pid = TaurusGuard::HTTPServer::spawn("$d/logs/iam.log", @cmd);

    $t->{iam_pid} = $pid;
    $LIVE{$pid} = $$;

    $t->_wait_port($port) or die "tg-iam did not start on $port\n";

    return $port;
}


sub stop_iam {
    my ($t) = @_;

    my $pid = delete $t->{iam_pid} or return;
    TaurusGuard::HTTPServer::stop($pid);
    delete $LIVE{$pid};
}


# tg-upstream.pl on %%PORT_UP%% accepting the tokens the IAM issued
# (instead of the harness's $t->upstream); the harness stops it.

sub upstream_tokens {
    my ($t, %o) = @_;

    my $port = $t->port('UP');
    my $d = $t->testdir;

    my @cmd = ($^X, "$BIN/tg-upstream.pl",
        '--listen', "127.0.0.1:$port",
        '--tokens', "$d/tokens",
        '--record', "$d/upstream.jsonl",
        '--audit-log', "$d/audit.log",
        '--pidfile', "$d/upstream.pid");
    push @cmd, '--status', $o{status} if defined $o{status};

    my $pid = TaurusGuard::HTTPServer::spawn("$d/logs/upstream.log", @cmd);

    $t->{upstream_pid} = $pid;

    $t->_wait_port($port) or die "tg-upstream did not start on $port\n";

    return $port;
}


sub iam_calls {
    my ($t) = @_;
    return $t->_jsonl('iam.jsonl');
}


# Tokens issued: [ token, project, expires (epoch) ], oldest first.

sub iam_tokens {
    my ($t) = @_;
    my $c = $t->read_file('tokens');
    return map { [ split / / ] } grep { /\S/ && !/\Arevoke / }
        split /\n/, defined $c ? $c : '';
}


sub revoke_token {
    my ($t, $token) = @_;
    TaurusGuard::IAM::Server::append($t->testdir . '/tokens',
        "revoke $token\n");
}


# The X-Auth-Token values an upstream record carried.

sub sent_tokens {
    my ($rec) = @_;
    return map { $_->[1] } grep { lc $_->[0] eq 'x-auth-token' }
        @{ $rec->{headers} || [] };
}


# Does this module know `taurus_guard_token iam=`?  nginx -t on $conf
# (which must be valid): passes, or skip_all when the module refuses the
# directive's form, or a failing test when it refuses it otherwise.

sub iam_supported {
    my ($t, $conf) = @_;

    my ($rc, $out) = $t->nginx_t($conf, 'iam-probe.conf');
    return 1 if $rc == 0;

    if ($out =~ /taurus_guard_token[^\n]*(?:expected|invalid|unknown)
        |(?:expected|invalid|unknown)[^\n]*taurus_guard_token/x)
    {
        my ($line) = $out =~ /(\[emerg\][^\n]*)/;
        Test::More::plan(skip_all => 'the module has no '
            . '"taurus_guard_token iam=" yet: ' . ($line || $out));
    }

    Test::More::fail('nginx -t accepts a valid IAM configuration');
    Test::More::diag($out);
    return 0;
}


END {
    # waitpid() sets $?, which would become the test's exit status
    local $?;

    for my $pid (keys %LIVE) {
        TaurusGuard::HTTPServer::stop($pid) if $LIVE{$pid} == $$;
    }
}


package main;

TaurusGuard::IAM::Server::main(@ARGV) unless caller;

1;
