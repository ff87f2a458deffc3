#!/usr/bin/perl

# taurus_guard_token file=: the token in the file is injected as
# X-Auth-Token next to the signature, and a rewritten file is picked up
# at runtime, without a reload.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream(token => $TEST_TOKEN);
$t->write_credentials;
$t->write_token;

$t->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_token file=%%TESTDIR%%/token;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF

my $body = batch_json([ $INSTANCES[0] ]);

my $r = $t->post(upgrade_path(), $body);
is($r->{status}, 200, 'credentials and token: 200');

my @up = $t->upstream_records;
my $u = $up[0] || { headers => [] };
is(join('|', headers_named($u->{headers}, 'X-Auth-Token')), $TEST_TOKEN,
    'X-Auth-Token from the file (without its newline)');
is($u->{signature}{ok}, 1, 'signature verifies with the token added');
is(scalar(headers_named($u->{headers}, 'Authorization')), 1,
    'and is signed');

# an external refresher replaces the file

my $new = 'MIITgTestTokenREFRESHED.Zx81Kd0aq-_xyz';
my $before = time;
$t->write_token($new);

my $seen;
while (time - $before < 5) {
    $r = $t->post(upgrade_path(), $body);
    my @u = $t->upstream_records;
    my @tok = headers_named($u[-1]{headers}, 'X-Auth-Token');
    if (@tok == 1 && $tok[0] eq $new) {
        $seen = time - $before;
        last;
    }
    is(scalar @tok, 1, 'one X-Auth-Token while refreshing');
    is($tok[0], $TEST_TOKEN, 'old token while the new one is not yet read')
        or last;
    sleep 0.25;
}

ok(defined $seen, 'rewritten token file used without reload');
cmp_ok($seen || 99, '<', 3, 'within ~2 seconds');

# rewritten in place (truncate and write), not renamed

my $third = 'MIITgTestTokenINPLACE.aaaa-_bbb';
if (open my $fh, '+<', $t->testdir . '/token') {
    truncate $fh, 0;
    print $fh "$third\n";
    close $fh;
}
$before = time;
undef $seen;
while (time - $before < 5) {
    $r = $t->post(upgrade_path(), $body);
    my @u = $t->upstream_records;
    my @tok = headers_named($u[-1]{headers}, 'X-Auth-Token');
    if (@tok == 1 && $tok[0] eq $third) {
        $seen = 1;
        last;
    }
    sleep 0.25;
}
ok($seen, 'token rewritten in place also picked up');

$t->done_testing;
