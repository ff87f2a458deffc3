#!/usr/bin/perl

# A fetch of the gateway's own (an IAM token asked with the password, the
# metadata credentials asked with a session token) is a subrequest whose
# URI nginx looks up in the server of the batch that needs it.  It may
# only be served by an internal location, or a named one reached from
# one (error_page after the proxy).  Here the URI reaches an ordinary
# application instead (a recording stand-in): in a server that lacks the
# location and falls to its "location /", through an internal location
# that rewrites to a public one, and through a public location's "return"
# that error_page sends to a named location.  Each fetch is refused
# before anything is sent: the batch gets 503, the application receives
# nothing (no password, no token), error.log names the URI and the
# location in one [error] line.  An internal location, and a named one
# reached from it, still serve their fetches.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

BEGIN {
    require "$FindBin::Bin/lib/tg-iam.pl";
    require "$FindBin::Bin/lib/tg-metadata.pl";
}

my $body = batch_json([ $INSTANCES[0] ]);

my $t = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t);
TaurusGuard::IAM::start_iam($t);
TaurusGuard::IAM::upstream_tokens($t);
$t->upstream(name => 'APP');

# a port nothing listens on, never one of the servers': the proxy's 502
# sends the fetch to error_page

my $dead = $t->closed_port;

my $guarded = <<'EOF';
        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
EOF

$t->run(<<"EOF");
http {
    taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
        %%PROJECT2%% $INSTANCES[0];
    }

    # the one server with the fetch location

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name iam-here;

$guarded
        location = /_tg_iam {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }
    }

    # none: /_tg_iam falls to the application's location

    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name no-location;

$guarded
        location / {
            proxy_pass http://127.0.0.1:%%PORT_APP%%;
        }
    }

    # an internal location that sends the fetch on to a public one

    server {
        listen 127.0.0.1:%%PORT_2%%;
        server_name rewritten;

$guarded
        location = /_tg_iam {
            internal;
            rewrite ^ /app/ last;
        }

        location /app/ {
            proxy_pass http://127.0.0.1:%%PORT_APP%%;
        }
    }

    # a public location's return, sent to a named location by error_page

    server {
        listen 127.0.0.1:%%PORT_3%%;
        server_name returned;

$guarded
        location / {
            return 404;
            error_page 404 = \@app;
        }

        location \@app {
            proxy_pass http://127.0.0.1:%%PORT_APP%%;
        }
    }

    # an internal location whose proxy fails, and error_page to a named
    # location that asks IAM: a fetch it may serve

    server {
        listen 127.0.0.1:%%PORT_4%%;
        server_name named;

        location /v3/ {
            taurus_guard on;
            taurus_guard_token iam=/_tg_iam_named
                               password_file=%%TESTDIR%%/iam.ini;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_iam_named {
            internal;
            proxy_pass http://127.0.0.1:$dead/v3/auth/tokens;
            error_page 502 = \@iam;
        }

        location \@iam {
            rewrite ^ /v3/auth/tokens break;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%;
        }
    }
}
EOF

sub app_received { return scalar $t->upstream_records('APP') }
sub iam_calls { return scalar TaurusGuard::IAM::iam_calls($t) }


# A batch on $port whose fetch the gateway refuses: 503, the
# application and IAM got nothing, and the [error] names the URI and the
# location.

sub refused {
    my ($port, $server, $location, $why, $name) = @_;

    my $r = $t->post(upgrade_path(), $body, port => $port);
    $t->is_refusal($r, 503, 'TG.0503', $name);

    is(app_received(), 0, "$name: the application received nothing");
    is(iam_calls(), 0, "$name: nor did IAM");

    my @lines = grep { /server: \Q$server\E,/ }
        grep { /\[error\].*taurus_guard: the fetch from "\/_tg_iam" reached/ }
        split /\n/, $t->error_log;

    is(scalar @lines, 1, "$name: one [error] line") or diag(join "\n",
        @lines);
    like($lines[0] || '',
        qr/location "\Q$location\E", which is \Q$why\E; nothing was sent/,
        "$name: it names the location");
}

refused(1, 'no-location', '/', 'not internal',
    'no fetch location in the server');
refused(2, 'rewritten', '/app/', 'not internal',
    'internal location rewritten to a public one');
refused(3, 'returned', '@app',
    'named but not reached from an internal one',
    'named location reached from a public one');

unlike($t->error_log, qr/\Q$TaurusGuard::IAM::PASSWORD\E/,
    'the password is not in error.log');


# The internal location serves its fetches: the token IAM issued is the
# one the batch was forwarded with.

sub served {
    my ($port, $project, $name) = @_;

    my $n = scalar $t->upstream_records;
    my $r = $t->post(upgrade_path($project), $body, port => $port);
    is($r->{status}, 200, "$name: 200") or diag($r->{raw});

    my @up = $t->upstream_records;
    is(scalar @up, $n + 1, "$name: forwarded once");
    my @sent = TaurusGuard::IAM::sent_tokens($up[-1] || {});
    my %issued = map { $_->[0] => 1 } TaurusGuard::IAM::iam_tokens($t);
    ok(@sent == 1 && $issued{ $sent[0] }, "$name: with a token IAM issued");
}

served(0, $PROJECT, 'internal location');
served(4, $PROJECT2, 'named location reached from an internal one');

is(app_received(), 0, 'the application never received anything');
unlike($t->error_log, qr/reached location "(?:\/_tg_iam|\@iam)"/,
    'no refusal for the internal or the named location');

$t->finish;


# The metadata credentials asked with a session token: the session
# location is there, the credentials one is not, and the fetch that
# would carry X-Metadata-Token is refused.

my $t2 = Test::TaurusGuard->new;

TaurusGuard::Metadata::start_meta($t2, session => 1);
$t2->upstream;
$t2->upstream(name => 'APP');

$t2->run(<<"EOF");
http {
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_credentials metadata=/_tg_meta
                                     session=/_tg_meta_token;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_meta_token {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_META%%/meta-data/latest/api/token;
        }

        location / {
            proxy_pass http://127.0.0.1:%%PORT_APP%%;
        }
    }
}
EOF

my $r = $t2->post(upgrade_path(), $body);
$t2->is_refusal($r, 503, 'TG.0503', 'metadata: no credentials location');

my @sessions = TaurusGuard::Metadata::meta_sessions($t2);
is(scalar @sessions, 1, 'metadata: the session token was fetched');
is(scalar $t2->upstream_records('APP'), 0,
    'metadata: the application received nothing');
my $refusal = 'taurus_guard: the fetch from "/_tg_meta" reached location'
    . ' "/", which is not internal; nothing was sent';
like($t2->error_log, qr/\[error\].*\Q$refusal\E/,
    'metadata: the refusal is logged');

$t2->done_testing;
