#!/usr/bin/perl

# A batch is forwarded at most once.  After the forward, a way back into
# the phases (error_page to a named location or a URI, post_action, an
# upstream's X-Accel-Redirect) that would reach a content handler again
# is refused, in a guarded location or not, and named in the done
# record; a static error page is still shown.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream(status => 502);
$t->upstream(name => 'B');
$t->upstream(name => 'X', accel_redirect => '@x');
$t->write_credentials;
$t->write_file('html/err.html', "static error page\n");

$t->run(<<"CONF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    # error_page to a guarded named location
    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            proxy_intercept_errors on;
            error_page 502 504 = \@retry;
        }

        location \@retry {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_B%%;
        }
    }

    # error_page to an unguarded named location, and to a URI
    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            proxy_intercept_errors on;
            error_page 502 504 = \@retry;
        }

        location \@retry {
            proxy_pass http://127.0.0.1:%%PORT_B%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_2%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            proxy_intercept_errors on;
            error_page 502 /retry/;
        }

        location /retry/ {
            proxy_pass http://127.0.0.1:%%PORT_B%%;
        }
    }

    # post_action after a forward that worked
    server {
        listen 127.0.0.1:%%PORT_3%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_B%%;
            post_action \@x;
        }

        location \@x {
            proxy_pass http://127.0.0.1:%%PORT_B%%;
        }
    }

    # the upstream answers "X-Accel-Redirect: \@x"
    server {
        listen 127.0.0.1:%%PORT_4%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_X%%;
        }

        location \@x {
            proxy_pass http://127.0.0.1:%%PORT_B%%;
        }
    }

    # a static error page is not a forward
    server {
        listen 127.0.0.1:%%PORT_5%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            proxy_intercept_errors on;
            error_page 502 /err.html;
        }

        location = /err.html {
            root %%TESTDIR%%/html;
        }
    }
}
CONF

my %seen = (UP => 0, B => 0, X => 0);

# the requests each upstream got since the last call
sub new_requests {
    my %n;
    for my $u (qw(UP B X)) {
        my @r = $u eq 'UP' ? $t->upstream_records : $t->upstream_records($u);
        $n{$u} = @r - $seen{$u};
        $seen{$u} = @r;
    }
    return \%n;
}

sub warns_for {
    my ($id) = @_;
    return scalar(() = $t->error_log
        =~ /\[warn\].*batch \Q$id\E forwarded already/g);
}

sub one_forward {
    my ($name, $port, $where, $want) = @_;

    my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]),
        port => $port);
    my $id = header($r, 'X-Taurus-Guard-Id') || 'none';

    if ($want->{refused}) {
        $t->is_refusal($r, 502, 'TG.0502', $name);
    } else {
        is($r->{status}, $want->{status}, "$name: status $want->{status}");
    }

    my @a = $t->wait_audit($id, 2);
    is(join(',', map { $_->{decision} } @a), 'allow,done',
        "$name: one allow, one done");
    is_deeply($a[1]{reentries}, $where ? [ $where ] : undef,
        "$name: re-entries in the done record");
    ok($a[1]{forwarded}, "$name: forwarded");
    is(warns_for($id), $where ? 1 : 0, "$name: warnings");

    # post_action runs after the response: give it its time
    sleep 0.5 if $want->{settle};

    is_deeply(new_requests(), $want->{got}, "$name: requests upstream");

    return \@a;
}

one_forward('error_page to a guarded @retry', 0, '@retry',
    { refused => 1, got => { UP => 1, B => 0, X => 0 } });

one_forward('error_page to an unguarded @retry', 1, '@retry',
    { refused => 1, got => { UP => 1, B => 0, X => 0 } });

one_forward('error_page to a URI', 2, '/retry/',
    { refused => 1, got => { UP => 1, B => 0, X => 0 } });

one_forward('post_action', 3, '@x',
    { status => 200, settle => 1, got => { UP => 0, B => 1, X => 0 } });

one_forward('X-Accel-Redirect', 4, '@x',
    { refused => 1, got => { UP => 0, B => 0, X => 1 } });

my $a = one_forward('static error page', 5, undef,
    { status => 502, got => { UP => 1, B => 0, X => 0 } });
is($a->[1]{status}, 502, 'static error page: done carries 502');

my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]), port => 5);
is($r->{body}, "static error page\n", 'static error page: shown');
new_requests();

my $v = $t->_cmd($t->repo . '/build/taurus-guard-verify',
    $t->testdir . '/audit.log');
like($v, qr/chain intact/, 'the audit log verifies');

$t->done_testing;
