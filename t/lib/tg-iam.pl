#!/usr/bin/perl

# tg-iam.pl: a stand-in for Huawei Cloud IAM's POST /v3/auth/tokens, for
# the integration tests of `taurus_guard_token iam=...`: "Obtaining an
# IAM User Token (Using a Password)", project- or domain-scoped, and
# "Obtaining an Agency Token" (assume_role).  It checks each request the
# way the real service does, issues tokens with a short life, and
# records every call so a test can count them.
#
#   tg-iam.pl --listen 127.0.0.1:PORT --domain D --user U --password P
#       [--ttl SECONDS] [--user-ttl SECONDS] [--record FILE]
#       [--tokens FILE] [--user-tokens FILE] [--agency-domain A
#       --agency N] [--status N] [--delay MS] [--cut N]
#       [--cut-mode close|chunked|stall] [--pidfile FILE]
#       [--expires-at S] [--subject-token-also S]
#
# Every call is a POST on exactly /v3/auth/tokens (with IAM's optional
# query nocatalog=true or nocatalog=false, nothing else; else 404),
# Content-Type application/json (parameters such as charset=utf8
# allowed; else 400), a body of exactly Content-Length bytes (or
# chunked).  The body's identity.methods says which of two calls it is;
# each is checked key for key (no key missing, none extra), else 400
# with an IAM-style error body naming what is wrong.
#
# The password method (user U of domain D gets a token of its own):
#
#   {"auth":{"identity":{"methods":["password"],"password":{"user":
#   {"name":U,"password":P,"domain":{"name":D}}}},"scope":SCOPE}}
#
#   - SCOPE is {"project":{"id":PROJECT}} with PROJECT 32 ASCII letters
#     or digits: a project token, appended to --tokens; or SCOPE is
#     {"domain":{"name":DOMAIN}}: a user token (domain-scoped), appended
#     to --user-tokens, never to --tokens (the upstream must not accept
#     it); anything else 400;
#   - U, P and D are the ones given on the command line (401, error
#     "user or domain" or "password"), and a DOMAIN scope names D (401,
#     error "scope domain").
#
# The assume_role method (a user of domain D, holding a user token,
# gets a token for project PROJECT of the delegating account A through
# its agency N), only with --agency-domain A --agency N (else 400, error
# "assume_role not enabled"):
#
#   X-Auth-Token: USER_TOKEN
#   {"auth":{"identity":{"methods":["assume_role"],"assume_role":
#   {"domain_name":A,"agency_name":N}},"scope":{"project":{"id":
#   PROJECT}}}}
#
#   - PROJECT 32 ASCII letters or digits (400);
#   - exactly one X-Auth-Token header, naming a user token listed in the
#     --user-tokens file, not expired and not revoked (401, error "auth
#     token");
#   - domain_name is A and agency_name is N (403, error "agency").
#
# A call that passes is answered 201 with `X-Subject-Token: TOKEN` and
# the body {"token":{"expires_at":"2026-11-30T21:00:00.000000Z",...}}
# (RFC 3339 UTC with microseconds, as the real IAM writes it), with
# "methods":["password"] or ["assume_role"], and "project" (project
# tokens) or "domain" (user tokens); an agency token also names the
# user who assumed the agency (token.assumed_by.user).
#
# Options:
#   --ttl N       project token lifetime in seconds, password or
#                 assume_role (default 86400, as IAM; may be a fraction)
#   --user-ttl N  user token lifetime (default: --ttl)
#   --agency-domain A, --agency N
#                 accept the assume_role method for agency N of the
#                 delegating domain A (both or neither)
#   --status N    answer every call that would get a token (of any
#                 kind) with status N and an IAM-style error (500, 401,
#                 503...): IAM failing
#   --delay MS    wait MS milliseconds before answering (a slow IAM)
#   --subject-token-also S
#                 send a second X-Subject-Token: S after the one issued
#                 (an answer IAM never makes; S is no token it issued)
#   --expires-at S
#                 write the literal S as a project token's expires_at
#                 (a form the real IAM never writes); the token itself
#                 lives --ttl as usual (--tokens has its real expiry)
#   --cut N       cut short every answer that issues a token: the status
#                 line and headers (X-Subject-Token too) as usual, the
#                 Content-Length of the whole body, but only its first
#                 N bytes, then the connection closed (IAM's connection
#                 lost in the middle of its answer).  The token counts
#                 as issued (--tokens, --user-tokens, --record)
#   --cut-mode M  how --cut ends the answer: close (the default, as
#                 above), chunked (Transfer-Encoding: chunked instead of
#                 Content-Length, the N bytes as one chunk, then closed
#                 without the last chunk) or stall (as close, but the
#                 connection is held open and nothing more sent: nginx's
#                 proxy_read_timeout ends it)
#   --record FILE append one JSON line per call: time (RFC 3339), epoch,
#                 method, target, content_type, headers (names only),
#                 auth_method ("password" or "assume_role", or null when
#                 the body does not say), scope ("project" or "domain",
#                 or null), project (the project asked for, or null),
#                 user, domain (of a password call, else null), agency,
#                 agency_domain (what an assume_role call asked for,
#                 else null), auth_token (the X-Auth-Token an
#                 assume_role call sent, the last when several, else
#                 null), status, ok (1 when a token was issued), token
#                 (the one issued, or null), expires_at, error.  Never
#                 the password: a call with a wrong one has error
#                 "password".
#   --tokens FILE append "TOKEN PROJECT EXPIRES_EPOCH" for every project
#                 token issued (password or assume_role):
#                 tg-upstream.pl --tokens FILE accepts exactly these
#                 (see there for revoking one)
#   --user-tokens FILE
#                 append "TOKEN EXPIRES_EPOCH" for every user token
#                 issued; assume_role accepts exactly these.  A line
#                 "revoke TOKEN" (appended, so it cannot race the
#                 IAM's appends) revokes that token.  Without this
#                 file no assume_role call succeeds.
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
# revoke_token, iam_user_tokens, revoke_user_token, sent_tokens,
# iam_supported.
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
        'password=s', 'ttl=f', 'user-ttl=f', 'record=s', 'tokens=s',
        'user-tokens=s', 'agency-domain=s', 'agency=s', 'status=i',
        'delay=i', 'cut=i', 'cut-mode=s', 'pidfile=s', 'expires-at=s',
        'subject-token-also=s')
        or die "usage: $0 --listen ADDR:PORT --domain D --user U "
            . "--password P [options]\n";

    for (qw(domain user password)) {
        die "$0: --$_ is required\n" unless defined $opt{$_};
    }

    die "$0: --agency-domain and --agency go together\n"
        if defined $opt{'agency-domain'} != defined $opt{agency};

    $opt{'user-ttl'} = $opt{ttl} unless defined $opt{'user-ttl'};

    die "$0: --cut-mode: close, chunked or stall\n"
        if defined $opt{'cut-mode'}
            && $opt{'cut-mode'} !~ /\A(?:close|chunked|stall)\z/;

    $json = TaurusGuard::HTTPServer::json();

    TaurusGuard::HTTPServer::run(
        name    => 'tg-iam',
        listen  => $opt{listen},
        pidfile => $opt{pidfile},
        handle  => \&handle,
        request => { one_length => 1 },
    );
}


# The body's structure, key for key.  Returns a hash and an error
# message (undef when the structure is right).  The hash has
# auth_method ("password" or "assume_role", when identity.methods or
# identity.assume_role says so) even with an error; with none also
# scope ("project" or "domain") and project or scope_domain, and user,
# password and domain (password) or agency_domain and agency
# (assume_role).

sub check_body {
    my ($body) = @_;

    my %b;

    my $v = eval { JSON::PP->new->utf8->decode($body) };
    return (\%b, 'the request body is not JSON') unless ref $v eq 'HASH';

    my $keys = sub {
        my ($o, @k) = @_;
        return 0 unless ref $o eq 'HASH';
        return join(',', sort keys %$o) eq join(',', sort @k);
    };
    my $str = sub { defined $_[0] && !ref $_[0] && length $_[0] };
    my $only = sub {
        my ($m, $name) = @_;
        return ref $m eq 'ARRAY' && @$m == 1 && defined $m->[0]
            && !ref $m->[0] && $m->[0] eq $name;
    };

    return (\%b, 'auth expected') unless $keys->($v, 'auth');
    my $a = $v->{auth};
    return (\%b, 'auth: identity and scope expected')
        unless $keys->($a, qw(identity scope));

    my $id = $a->{identity};

    if (ref $id eq 'HASH' && ($only->($id->{methods}, 'assume_role')
                              || exists $id->{assume_role}))
    {
        $b{auth_method} = 'assume_role';
        return (\%b, check_assume_role($a, \%b, $keys, $str, $only));
    }

    $b{auth_method} = 'password'
        if ref $id eq 'HASH' && $only->($id->{methods}, 'password');

    return (\%b, 'identity: methods and password expected')
        unless $keys->($id, qw(methods password));
    return (\%b, 'identity.methods must be ["password"]')
        unless $only->($id->{methods}, 'password');

    my $pw = $id->{password};
    return (\%b, 'identity.password: user expected')
        unless $keys->($pw, 'user');
    my $u = $pw->{user};
    return (\%b, 'user: name, password and domain expected')
        unless $keys->($u, qw(name password domain));
    return (\%b, 'user.domain: name expected')
        unless $keys->($u->{domain}, 'name');
    return (\%b, 'user: name, password and domain.name must be strings')
        unless $str->($u->{name}) && $str->($u->{password})
            && $str->($u->{domain}{name});

    my $s = $a->{scope};

    if ($keys->($s, 'domain')) {
        return (\%b, 'scope.domain: name expected')
            unless $keys->($s->{domain}, 'name');
        return (\%b, 'scope.domain.name must be a string')
            unless $str->($s->{domain}{name});
        @b{qw(scope scope_domain)} = ('domain', $s->{domain}{name});

    } else {
        return (\%b, 'scope: project or domain expected')
            unless $keys->($s, 'project');
        my $err = check_project($s, \%b, $keys, $str);
        return (\%b, $err) if defined $err;
    }

    @b{qw(user password domain)} =
        ($u->{name}, $u->{password}, $u->{domain}{name});

    return (\%b, undef);
}


# The assume_role call's identity and scope (check_body's $a); fills
# agency_domain, agency, scope and project in $b.  Returns an error
# message, or undef.

sub check_assume_role {
    my ($a, $b, $keys, $str, $only) = @_;

    return 'assume_role not enabled' unless defined $opt{agency};

    my $id = $a->{identity};
    return 'identity: methods and assume_role expected'
        unless $keys->($id, qw(methods assume_role));
    return 'identity.methods must be ["assume_role"]'
        unless $only->($id->{methods}, 'assume_role');

    my $ar = $id->{assume_role};
    return 'identity.assume_role: domain_name and agency_name expected'
        unless $keys->($ar, qw(domain_name agency_name));
    return 'assume_role: domain_name and agency_name must be strings'
        unless $str->($ar->{domain_name}) && $str->($ar->{agency_name});

    my $s = $a->{scope};
    return 'scope: project expected' unless $keys->($s, 'project');
    my $err = check_project($s, $b, $keys, $str);
    return $err if defined $err;

    @$b{qw(agency_domain agency)} = ($ar->{domain_name}, $ar->{agency_name});

    return undef;
}


# {"project":{"id":PROJECT}}'s inside; fills scope and project in $b.

sub check_project {
    my ($s, $b, $keys, $str) = @_;

    return 'scope.project: id expected' unless $keys->($s->{project}, 'id');
    my $p = $s->{project}{id};
    return 'scope.project.id: 32 letters or digits expected'
        unless $str->($p) && $p =~ /\A[0-9A-Za-z]{32}\z/;

    @$b{qw(scope project)} = ('project', $p);

    return undef;
}


# Whether $token is a user token listed in the --user-tokens file, not
# expired and not revoked.

sub user_token_ok {
    my ($token) = @_;
    return TaurusGuard::HTTPServer::listed_token($opt{'user-tokens'}, $token);
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
        time          => rfc3339_us($req->{time}),
        epoch         => $req->{time},
        method        => $req->{method},
        target        => $req->{target},
        content_type  => $ct,
        headers       => [ map { $_->[0] } @{ $req->{headers} } ],
        auth_method   => undef,
        scope         => undef,
        project       => undef,
        user          => undef,
        domain        => undef,
        agency        => undef,
        agency_domain => undef,
        auth_token    => undef,
        ok            => 0,
        token         => undef,
        expires_at    => undef,
    };

    my ($status, $body, @extra);

    my ($b, $err);

    # IAM's one query parameter here: nocatalog (leave the catalog out)

    if ($req->{method} ne 'POST' || $req->{target}
        !~ m{\A/v3/auth/tokens(?:\?nocatalog=(?:true|false))?\z})
    {
        ($status, $err) = (404, "no route for $req->{method} "
            . "$req->{target}");

    } elsif ($ct !~ m{\Aapplication/json\s*(?:;|\z)}i) {
        ($status, $err) = (400, 'Content-Type must be application/json');

    } else {
        ($b, $err) = check_body($req->{body});

        my $am = $rec->{auth_method} = $b->{auth_method};

        my $sent = $req->{h}{'x-auth-token'} || [];

        # the token of an assume_role call, whatever is wrong with it

        $rec->{auth_token} = $sent->[-1]
            if defined $am && $am eq 'assume_role';

        if (defined $err) {
            $status = 400;

        } elsif ($am eq 'assume_role') {
            $rec->{$_} = $b->{$_} for qw(scope project agency agency_domain);

            if (@$sent != 1 || !user_token_ok($sent->[0])) {
                ($status, $err) = (401, 'auth token');
            } elsif ($b->{agency_domain} ne $opt{'agency-domain'}
                     || $b->{agency} ne $opt{agency})
            {
                ($status, $err) = (403, 'agency');
            }

        } else {
            $rec->{$_} = $b->{$_} for qw(scope project user domain);

            if ($b->{user} ne $opt{user} || $b->{domain} ne $opt{domain}) {
                ($status, $err) = (401, 'user or domain');
            } elsif ($b->{password} ne $opt{password}) {
                ($status, $err) = (401, 'password');
            } elsif ($b->{scope} eq 'domain'
                     && $b->{scope_domain} ne $opt{domain})
            {
                ($status, $err) = (401, 'scope domain');
            }
        }
    }

    delete $b->{password} if $b;

    sleep($opt{delay} / 1000) if $opt{delay};

    if (!defined $status && defined $opt{status}) {
        ($status, $err) = ($opt{status}, "--status $opt{status}");
    }

    if (defined $status) {
        $rec->{error} = $err;
        my %title = (400 => 'Bad Request', 401 => 'Unauthorized',
            403 => 'Forbidden', 404 => 'Not Found',
            500 => 'Internal Server Error', 503 => 'Service Unavailable');
        my $msg = $status == 401 && $err eq 'auth token'
            ? 'The request you have made requires authentication.'
            : $status == 401 && $err eq 'scope domain'
            ? 'The domain in the scope is not the user\'s domain.'
            : $status == 401 ? 'The username or password is wrong.'
            : $status == 403 ? 'You are not authorized to perform the '
                . 'requested action: no such agency trusts this user.'
            : $status == 400 ? "Invalid request: $err"
            : 'Internal error';
        $body = $json->encode({ error => { code => $status,
            message => $msg, title => $title{$status} || 'Error' } });

    } else {
        ($body, my $token, my $exp) = issue($b);

        $status = 201;
        $rec->{ok} = 1;
        $rec->{token} = $token;
        $rec->{expires_at} = rfc3339_us($exp);
        push @extra, "X-Subject-Token: $token";
        push @extra, "X-Subject-Token: $opt{'subject-token-also'}"
            if defined $opt{'subject-token-also'};
    }

    $rec->{status} = $status;
    TaurusGuard::HTTPServer::append_record($opt{record}, $rec)
        if defined $opt{record};

    my %reason = (201 => 'Created', 400 => 'Bad Request',
        401 => 'Unauthorized', 403 => 'Forbidden', 404 => 'Not Found',
        500 => 'Internal Server Error', 503 => 'Service Unavailable');

    return TaurusGuard::HTTPServer::respond($c,
        status       => $status,
        reason       => $reason{$status} || 'Status',
        content_type => 'application/json;charset=UTF-8',
        headers      => [ @extra, "X-IAM-Trace-Id: tg-iam-$$-" . ($seq || 0) ],
        body         => $body,
        keep         => TaurusGuard::HTTPServer::keep_alive($req),
        cut          => $rec->{ok} ? $opt{cut} : undef,
        cut_mode     => $opt{'cut-mode'},
    );
}


# A new token for the call check_body read into $b: a user token
# (domain scope, --user-ttl, --user-tokens) or a project token (project
# scope, --ttl, --tokens), written to its file before it is answered.
# Returns the answer's body, the token and its expiry (epoch).

sub issue {
    my ($b) = @_;

    my $now = time;
    my $did = 'd' x 32;
    my $user = {
        id     => 'e' x 32,
        name   => $opt{user},
        domain => { id => $did, name => $opt{domain} },
        password_expires_at => '',
    };
    my %t = (
        issued_at => rfc3339_us($now),
        methods   => [ $b->{auth_method} ],
        catalog   => [],
        roles     => [ { id => '0' x 32, name => 'op_gated_taurus' } ],
    );

    if ($b->{scope} eq 'domain') {
        my $exp = $now + $opt{'user-ttl'};
        my $token = new_token("domain:$b->{scope_domain}", $exp);

        append($opt{'user-tokens'}, sprintf("%s %.6f\n", $token, $exp))
            if defined $opt{'user-tokens'};

        return ($json->encode({ token => { %t,
            expires_at => rfc3339_us($exp),
            domain     => { id => $did, name => $b->{scope_domain} },
            user       => $user,
        } }), $token, $exp);
    }

    my $exp = $now + $opt{ttl};
    my $token = new_token($b->{project}, $exp);

    append($opt{tokens}, sprintf("%s %s %.6f\n", $token, $b->{project}, $exp))
        if defined $opt{tokens};

    $t{expires_at} = defined $opt{'expires-at'} ? $opt{'expires-at'}
        : rfc3339_us($exp);
    $t{project} = {
        id     => $b->{project},
        name   => 'ap-southeast-1',
        domain => { id => $did, name => $opt{domain} },
    };
    $t{user} = $user;

    if ($b->{auth_method} eq 'assume_role') {
        my $aid = 'a' x 32;
        $t{project}{domain} = { id => $aid, name => $b->{agency_domain} };
        $t{user} = {
            id     => 'f' x 32,
            name   => "$b->{agency_domain}/$b->{agency}",
            domain => { id => $aid, name => $b->{agency_domain} },
        };
        $t{assumed_by} = { user => $user };
    }

    return ($json->encode({ token => \%t }), $token, $exp);
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
#       (ttl, user_ttl, status, delay, user, password: as the options
#       above;
#       agency => 1: assume_role for $AGENCY of $AGENCY_DOMAIN;
#       agency => NAME, agency_domain => A: for another agency)
#   TaurusGuard::IAM::upstream_tokens($t);        # tg-upstream --tokens
#   my @calls = TaurusGuard::IAM::iam_calls($t);
#   my @user = TaurusGuard::IAM::iam_user_tokens($t);  # [token, expires]
#   TaurusGuard::IAM::revoke_user_token($t, $user[0][0]);
#   TaurusGuard::IAM::stop_iam($t);
#
# The IAM writes iam.jsonl (--record), tokens (--tokens) and user-tokens
# (--user-tokens) in the test directory, and logs to logs/iam.log.

package TaurusGuard::IAM;

use File::Basename qw(dirname);
use JSON::PP;
use Time::HiRes qw(sleep time);

our $DOMAIN   = 'tg-test-domain';
our $USER     = 'tg-test-user';
our $PASSWORD = 'tgIamPassw0rd-NEVERlogged-5Qx7';

# the delegating account and its agency trusting $DOMAIN (assume_role)

our $AGENCY_DOMAIN = 'tg-delegating-domain';
our $AGENCY        = 'tg_taurus_agency';

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


# %o: ttl, user_ttl, status, delay, password, cut, cut_mode (as the
# server's options); agency (1: $AGENCY, or an agency name) and
# agency_domain (default $AGENCY_DOMAIN): either enables assume_role.

sub start_iam {
    my ($t, %o) = @_;

    my $port = $t->port('IAM');
    my $d = $t->testdir;

    stop_iam($t);

    my @cmd = ($^X, "$BIN/tg-iam.pl",
        '--listen', "127.0.0.1:$port",
        '--domain', $DOMAIN,
        '--user', defined $o{user} ? $o{user} : $USER,
        '--password', defined $o{password} ? $o{password} : $PASSWORD,
        '--ttl', defined $o{ttl} ? $o{ttl} : 86400,
        '--record', "$d/iam.jsonl",
        '--tokens', "$d/tokens",
        '--user-tokens', "$d/user-tokens",
        '--pidfile', "$d/iam.pid");
    push @cmd, '--user-ttl', $o{user_ttl} if defined $o{user_ttl};
    push @cmd, '--status', $o{status} if defined $o{status};
    push @cmd, '--delay', $o{delay} if defined $o{delay};
    push @cmd, '--cut', $o{cut} if defined $o{cut};
    push @cmd, '--cut-mode', $o{cut_mode} if defined $o{cut_mode};
    push @cmd, '--expires-at', $o{expires_at} if defined $o{expires_at};
    push @cmd, '--subject-token-also', $o{subject_token_also}
        if defined $o{subject_token_also};

    if ($o{agency} || defined $o{agency_domain}) {
        push @cmd,
            '--agency-domain', defined $o{agency_domain}
                ? $o{agency_domain} : $AGENCY_DOMAIN,
            '--agency', $o{agency} && $o{agency} ne '1'
                ? $o{agency} : $AGENCY;
    }

    my $pid = TaurusGuard::HTTPServer::spawn("$d/logs/iam.log", @cmd);

    $t->{iam_pid} = $pid;
    $LIVE{$pid} = $$;

    $t->_wait_stand_in($pid, 'iam.pid', $port)
        or die "tg-iam did not start on $port\n";

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

    $t->_wait_stand_in($pid, 'upstream.pid', $port)
        or die "tg-upstream did not start on $port\n";

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


# User tokens issued (domain-scoped, "user-tokens"): [ token, expires
# (epoch) ], oldest first, revoked ones too (revoke lines left out).

sub iam_user_tokens {
    my ($t) = @_;
    my $c = $t->read_file('user-tokens');
    return map { [ split / / ] } grep { /\S/ && !/\Arevoke / }
        split /\n/, defined $c ? $c : '';
}


# From now on the IAM refuses this user token for assume_role.

sub revoke_user_token {
    my ($t, $token) = @_;
    TaurusGuard::IAM::Server::append($t->testdir . '/user-tokens',
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
