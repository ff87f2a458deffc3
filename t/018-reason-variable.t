#!/usr/bin/perl

# $taurus_guard_reason may quote the caller (an unknown key's name, the
# instances denied): in a header (add_header) or a log format with
# escape=none it carries no control byte, quote or backslash, which are
# written \xNN as nginx's own log escaping writes them.  Before, a key
# named "\r\nX-Injected: 1" in a body added a header to the response.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

$t->upstream;
$t->write_credentials;

$t->run(<<"CONF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    log_format raw escape=none 'reason=[\$taurus_guard_reason]';

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            add_header X-Reason \$taurus_guard_reason always;
            access_log %%TESTDIR%%/logs/raw.log raw;
        }
    }
}
CONF

my $key = '\\r\\nX-Injected: 1\\r\\n\\u001b[2J\\"\\\\';
my $body = '{"databases_instance_infos":[{"current_version":"2.0.48.231200",'
    . "\"instance_id\":\"$INSTANCES[0]\"}],\"delay\":\"false\",\"$key\":1}";

my $r = $t->post(upgrade_path(), $body);
is($r->{status}, 400, 'an unknown key: 400');
is(header($r, 'X-Injected'), undef, 'no header injected');
is(header($r, 'X-Reason'),
    'unknown key \x22\x0D\x0AX-Injected: 1\x0D\x0A\x1B[2J\x22\x5C\x22',
    'X-Reason: the key, escaped');
like(($r->{json} || {})->{error_msg} || '', qr/X-Injected: 1\r\n\e/,
    'the JSON answer still quotes the key as sent');

my $log = '';
for (1 .. 50) {
    $log = $t->read_file('logs/raw.log') // '';
    last if length $log;
    select(undef, undef, undef, 0.1);
}
is($log, 'reason=[unknown key \x22\x0D\x0AX-Injected: 1\x0D\x0A\x1B[2J'
    . '\x22\x5C\x22]' . "\n", 'escape=none: one line, escaped');

# a reason with nothing to escape is the reason as it is

$r = $t->post(upgrade_path(), batch_json([ $OTHER_INSTANCE ]));
is($r->{status}, 403, 'a denied instance: 403');
is(header($r, 'X-Reason'),
    "not allowed for project $PROJECT: $OTHER_INSTANCE",
    'X-Reason: as it is');

$t->done_testing;
