#!/usr/bin/perl

# A request that waits for its audit flush must send the secrets it was
# signed with, even when a rotation re-reads (and wipes, and frees) the
# token and credentials files meanwhile.  An earlier module injected
# pointers into those per-worker buffers, and such a request sent freed
# memory as its token.  fdatasync() is slowed by an LD_PRELOAD shim built
# here, only to make the window wide enough to hit every time.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);

use Test::TaurusGuard qw(:all);

plan(skip_all => 'a sanitizer build cannot take an LD_PRELOAD shim')
    if defined $ENV{TG_MODULE} && $ENV{TG_MODULE} eq '';
system('cc --version >/dev/null 2>&1') == 0
    or plan(skip_all => 'no C compiler for the shim');

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;

my $shim = $t->sync_shim(delay_ms => 2000)
    or plan(skip_all => 'no fdatasync shim (no compiler, or a sanitizer build)');

my $old_sts = 'OLD-SECURITY-TOKEN-' . ('a' x 40);
my $new_sts = 'NEW-SECURITY-TOKEN-' . ('b' x 40);
my $old_tok = 'OLD-IAM-TOKEN-' . ('c' x 60);
my $new_tok = 'NEW-IAM-TOKEN-' . ('d' x 60);

$t->upstream;
$t->write_credentials(security_token => $old_sts);
$t->write_token($old_tok);

{
    local $ENV{LD_PRELOAD} = $shim;

    $t->run(<<"CONF");
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
CONF
}

my $body = batch_json([ $INSTANCES[0] ]);

# A: read the files (first request of the worker), then wait 2 s for
# its flush; meanwhile both files are rotated, and B, a second later,
# makes the worker re-read them, wiping and freeing the old buffers

my $pid = fork;
die "fork: $!\n" unless defined $pid;

if ($pid == 0) {
    my $r = $t->post(upgrade_path(), $body);
    POSIX::_exit(($r->{status} || 0) == 200 ? 0 : 1);
}

sleep 0.4;
$t->write_credentials(security_token => $new_sts);
$t->write_token($new_tok);

sleep 0.8;
my $rb = $t->post(upgrade_path(), $body);
is($rb->{status}, 200, 'B: 200');

waitpid $pid, 0;
is($?, 0, 'A: 200');

my @up = sort { $a->{time} cmp $b->{time} } $t->upstream_records;
is(scalar @up, 2, 'both forwarded');

my ($ua, $ub) = @up;

is(join('|', headers_named($ua->{headers}, 'X-Auth-Token')), $old_tok,
    'A sends the token it had, whole, though the file was re-read');
is(join('|', headers_named($ua->{headers}, 'X-Security-Token')), $old_sts,
    'A sends the security token it was signed with');
is($ua->{signature}{ok}, 1, 'A: signature verifies');

is(join('|', headers_named($ub->{headers}, 'X-Auth-Token')), $new_tok,
    'B sends the new token');
is(join('|', headers_named($ub->{headers}, 'X-Security-Token')), $new_sts,
    'B sends the new security token');
is($ub->{signature}{ok}, 1, 'B: signature verifies');

$t->done_testing;
