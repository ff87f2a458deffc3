#!/usr/bin/perl

# taurus_guard_health with audit files whose checks fill more than the
# answer's fixed 8k: each audit file's check names its path, and the
# buffer counted only the secrets' paths.  Four servers, each with its
# own audit log three thousand bytes deep: /health answered 500 (the
# JSON did not fit), which a load balancer takes for a failed gateway.
# Now 200 {"status":"ok"}, and 503 naming every check when one fails.
# And an audit path was put in that JSON as it is, where the secrets'
# paths are escaped: a '"' or a '\' in it made the 503 no JSON at all.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;

# a directory some 3000 bytes deep, 12 levels of 250, the last one
# with a quote and a backslash in its name

my $dir = $t->testdir;

for my $i (1 .. 12) {
    $dir .= '/' . ($i % 10) x 250;
    $dir .= 'a"b\\c' if $i == 12;
    mkdir $dir or die "mkdir: $!\n";
}

my @logs = map { "$dir/audit-$_.log" } qw(a b c d);

my $servers = '';

for my $i (0 .. 3) {
    $servers .= <<"EOF";
    server {
        listen 127.0.0.1:%%PORT_$i%%;
        server_name localhost;

        taurus_guard_audit_log '$logs[$i]';

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /health {
            taurus_guard_health;
        }
    }
EOF
}

$t->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

$servers
}
EOF

for my $i (0 .. 3) {
    is($t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]), port => $i)
       ->{status}, 200, "a batch through server $i");
}

my $r = $t->http("GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n");
is($r->{status}, 200, "health: 200 with four long audit paths")
    or diag($r->{raw});
is($r->{body}, '{"status":"ok"}', '... {"status":"ok"}');

# one of them gone: 503, every check named

unlink $logs[1] or die "unlink: $!\n";

$r = $t->http("GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n");
is($r->{status}, 503, 'an audit file gone: 503');
like($r->{body} || '', qr/\A\{"status":"fail","checks":\{.*\}\}\z/s,
    '... the fail shape');

my $j = eval { JSON::PP->new->decode($r->{body}) } || {};
is($j->{status}, 'fail', '... JSON, the path escaped') or diag($@);
is($j->{checks}{"audit $logs[1]"}, 'fail', '... it fails');
is($j->{checks}{"audit $logs[$_]"}, 'ok', "... log $_ is ok") for 0, 2, 3;
is(scalar(grep { /\Acredentials_file / } keys %{ $j->{checks} || {} }), 1,
    '... and the credentials check is there');

$t->done_testing;
