#!/usr/bin/perl

# A subrequest into a guarded location is refused (403): it would forward
# the main request's body, which the gateway never checked.  The refusal
# stands where the guarded location sends a 403 on with "error_page 403
# = @name" to an unguarded location that proxies (the retry pattern): a
# mirror of the API path, or an auth_request to it, must not have the
# body forwarded there after all, unchecked and with the API's path as
# its target.  A batch sent to the guarded location itself is still
# refused by the gateway, whose answer no error_page takes.  Nor may a
# limit_req of the guarded location refuse such a subrequest first (503)
# and have "error_page 503 = @fallback" send it on: the subrequest is
# refused before the location's limits run.  Nor may nginx's own 413 of
# a mirror's subrequest, made while it picks the guarded location
# before any module runs, have "error_page 413 = @fallback" send it on:
# a subrequest with a body that an error_page sends on is refused
# wherever it lands.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

my ($i0, $i1) = @INSTANCES;
my $path = upgrade_path();

$t->upstream;
$t->upstream(name => 'FB');
$t->upstream(name => 'MAIN');
$t->write_credentials;

$t->run(<<"EOF2");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $i0;
    }

    limit_req_zone \$server_name zone=one:1m rate=1r/m;

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            error_page 403 502 = \@fallback;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location /limited/ {
            taurus_guard on;
            limit_req zone=one nodelay;
            error_page 403 502 503 = \@fallback;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location /mirrored-limited/ {
            mirror /limited$path;
            mirror_request_body on;
            proxy_pass http://127.0.0.1:%%PORT_MAIN%%;
        }

        location /authed-limited/ {
            auth_request /limited$path;
            proxy_pass http://127.0.0.1:%%PORT_MAIN%%;
        }

        location /small/ {
            taurus_guard on;
            client_max_body_size 64;
            error_page 413 = \@fallback;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location /mirrored-small/ {
            client_max_body_size 1m;
            mirror /small$path;
            mirror_request_body on;
            proxy_pass http://127.0.0.1:%%PORT_MAIN%%;
        }

        location /small-page/ {
            client_max_body_size 64;
            error_page 413 /fallback-uri/;
            proxy_pass http://127.0.0.1:%%PORT_MAIN%%;
        }

        location /fallback-uri/ {
            proxy_pass http://127.0.0.1:%%PORT_FB%%;
        }

        location /mirrored-small-page/ {
            client_max_body_size 1m;
            mirror /small-page/x;
            mirror_request_body on;
            proxy_pass http://127.0.0.1:%%PORT_MAIN%%;
        }

        location \@fallback {
            proxy_pass http://127.0.0.1:%%PORT_FB%%;
        }

        location /mirrored/ {
            mirror $path;
            mirror_request_body on;
            proxy_pass http://127.0.0.1:%%PORT_MAIN%%;
        }

        location /authed/ {
            auth_request $path;
            proxy_pass http://127.0.0.1:%%PORT_MAIN%%;
        }
    }
}
EOF2

my $denied = batch_json([ $i0, $i1 ]);

# the main request: the gateway's own refusal, which no error_page takes

my $r = $t->post($path, $denied);
$t->is_refusal($r, 403, 'TG.0403', 'guarded, denied');

# a mirror of the API path: the main request goes where its location
# says, the mirror's subrequest nowhere

$r = $t->post('/mirrored/x', $denied);
ok(defined $r->{status} && !$r->{timed_out}, 'mirror: the main request'
    . ' answered');

# an auth_request to the API path: refused, so the request is too

$r = $t->post('/authed/x', $denied, timeout => 5);
ok(!$r->{timed_out}, 'auth_request: answered at once');
is($r->{status}, 403, 'auth_request: its subrequest refused, 403');

# the same into a location with limit_req: past the first, each
# subrequest would be over the limit (503)

for my $n (1 .. 3) {
    $r = $t->post('/mirrored-limited/x', $denied);
    ok(defined $r->{status} && !$r->{timed_out},
        "mirror into limit_req, $n: the main request answered");
}

for my $n (1 .. 2) {
    $r = $t->post('/authed-limited/x', $denied, timeout => 5);
    ok(!$r->{timed_out}, "auth_request into limit_req, $n: answered");
    is($r->{status}, 403, "auth_request into limit_req, $n: 403");
}

# a mirror into a guarded location whose client_max_body_size is smaller
# than the mirroring location's: nginx refuses the subrequest with 413
# while it picks the location, before any module runs, and the guarded
# location's "error_page 413 = @fallback" sends it to the fallback, whose
# proxy must not forward its body.  Nothing there says where the
# subrequest came from: one an unguarded location's error_page sends on
# (to a URI, the status kept) is refused the same way.

$r = $t->post('/mirrored-small/x', $denied);
ok(defined $r->{status} && !$r->{timed_out},
    'mirror into a smaller limit: the main request answered');

$r = $t->post('/mirrored-small-page/x', $denied);
ok(defined $r->{status} && !$r->{timed_out},
    'mirror into an unguarded smaller limit: the main request answered');

# the mirror's subrequest is finalized after its main request: give it
# the time to reach an upstream, if it were to

select undef, undef, undef, 0.5;

my @fb = $t->upstream_records('FB');
is(scalar @fb, 0, 'the fallback location forwarded nothing');
is(join(' ', map { $_->{target} } @fb), '',
    'no request for the API path reached the fallback\'s upstream');

is(scalar $t->upstream_records, 0, 'the guarded upstream got nothing');

my @main = $t->upstream_records('MAIN');
is(scalar @main, 6, 'the mirroring locations\' own requests went on');

my $refused = () = $t->error_log
    =~ /taurus_guard: subrequest to a guarded location refused/g;
is($refused, 7, 'every subrequest refused, once each');

my $sent_on = () = $t->error_log
    =~ /taurus_guard: a subrequest with a body sent on by error_page/g;
is($sent_on, 2, 'both subrequests sent on by error_page refused, once');

# "recursive_error_pages on" leaves off the mark nginx puts on a request
# its error page took, by which a subrequest sent on with its body is
# refused: with an "error_page 413" where the guard is on, nginx -t
# fails at the line of "taurus_guard on".

sub recursive {
    my ($pages) = @_;

    return <<"EOF";
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $i0;
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            recursive_error_pages on;
            $pages
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location \@fallback {
            proxy_pass http://127.0.0.1:%%PORT_FB%%;
        }
    }
}
EOF
}

my ($rc, $out) = $t->nginx_t(recursive('error_page 404 = @fallback;'));
is($rc, 0, 'recursive_error_pages, no error_page 413: nginx -t passes')
    or diag($out);

for my $pages ('error_page 413 = @fallback;',
    'error_page 404 413 /fallback-uri/;')
{
    ($rc, $out) = $t->nginx_t(recursive($pages));
    isnt($rc, 0, "recursive_error_pages, $pages: nginx -t fails");
    my $why = '[emerg] "recursive_error_pages on" with an "error_page 413"';
    ok(index($out, $why) >= 0, "recursive_error_pages, $pages: says why")
        or diag($out);

    my $conf = $t->conf_path('test.conf');
    my $at = $t->conf_line(qr/^\s*taurus_guard on;/, 'test.conf');
    like($out, qr/ in \Q$conf\E:$at\b/,
        "recursive_error_pages, $pages: in test.conf:$at") or diag($out);
}

$t->done_testing;
