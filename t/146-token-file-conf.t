#!/usr/bin/perl

# A token file that holds no token fails nginx -t, as a credentials file
# that holds no credentials does: empty, blank, two words, a control
# byte, a BOM, or the credentials file named in its place.  The message
# names the file and the directive's file:line, never what the file
# holds.  A token with the refresher's CRLF passes.  A reload with the
# token file emptied is refused, and the running workers keep serving
# with the last good token.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

my $up = $t->upstream(token => $TEST_TOKEN);

sub conf {
    my ($file) = @_;
    return <<"EOF";
http {
    taurus_guard_token file=%%TESTDIR%%/$file;
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
}

my $SECRETISH = 'NotAToken-but-secret-9f8e7d6c5b4a';

$t->write_secret_file('empty', '');
$t->write_secret_file('blank', " \t\r\n\n");
$t->write_secret_file('two', "$SECRETISH $SECRETISH\n");
$t->write_secret_file('control', "$SECRETISH\x01\n");
$t->write_secret_file('bom', "\xef\xbb\xbf$SECRETISH\n");
$t->write_credentials(name => 'credentials');

for my $f (qw(empty blank two control bom credentials)) {
    my ($rc, $out) = $t->nginx_t(conf($f), "$f.conf");
    my $line = $t->conf_line(qr/taurus_guard_token/, "$f.conf");

    my $said = qr/taurus_guard_token: "[^"]*\/\Q$f\E" holds no valid token/;

    isnt($rc, 0, "$f: nginx -t fails");
    like($out, qr/$said.* in \S+\/\Q$f.conf\E:$line\b/,
        "$f: names the file and the directive's file:line") or diag($out);
    unlike($out, qr/\Q$SECRETISH\E|\Q$TEST_SK\E/,
        "$f: nothing the file holds");
}

$t->write_secret_file('crlf', "$TEST_TOKEN\r\n");

my ($rc, $out) = $t->nginx_t(conf('crlf'), 'crlf.conf');
is($rc, 0, 'a token and CRLF: nginx -t passes') or diag($out);

# a reload with the token file emptied: refused, the workers serve on

$t->write_token;
$t->run(conf('token'));

my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 200, 'running: 200') or diag($r->{raw});

my @workers = $t->worker_pids;

$t->expect_emerg(qr/"[^"]*\/token" holds no valid token/);

$t->write_secret_file('token', '');
$t->reload;

like($t->error_log, qr/\[emerg\] .*"[^"]*\/token" holds no valid token/,
    'reload with an empty token file: refused, and said');
is(join(',', $t->worker_pids), join(',', @workers),
    'reload with an empty token file: the same workers serve');

$r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
is($r->{status}, 200, 'reload with an empty token file: 200')
    or diag($r->{raw});

my @u = $t->upstream_records;
is(join('|', headers_named(($u[-1] || {})->{headers}, 'X-Auth-Token')),
    $TEST_TOKEN, 'the last good token is sent');

$t->done_testing;
