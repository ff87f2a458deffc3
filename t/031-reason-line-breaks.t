#!/usr/bin/perl

# $taurus_guard_reason quoting an unknown key that decodes to C1
# controls, U+2028 or U+2029 (readers take them for line breaks, and
# the body's strings refuse them for that reason): in a header and in a
# log format with escape=none every byte from 0x7f up is written \xNN,
# as nginx's own log escaping writes it.  Before, only C0 controls, DEL,
# '"' and '\' were, and the key's U+0085 and U+2028 went out as they
# were.

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

my $key = 'a\\u0085b\\u2028c\\u2029d\\u009be\\u00e9';
my $body = '{"databases_instance_infos":[{"current_version":"2.0.48.231200",'
    . "\"instance_id\":\"$INSTANCES[0]\"}],\"delay\":\"false\",\"$key\":1}";
my $escaped = 'unknown key \x22a\xC2\x85b\xE2\x80\xA8c\xE2\x80\xA9d'
    . '\xC2\x9Be\xC3\xA9\x22';

my $r = $t->post(upgrade_path(), $body);
is($r->{status}, 400, 'an unknown key: 400');
is(header($r, 'X-Reason'), $escaped, 'X-Reason: the key, escaped');

my $log = '';
for (1 .. 50) {
    $log = $t->read_file('logs/raw.log') // '';
    last if length $log;
    select(undef, undef, undef, 0.1);
}
is($log, "reason=[$escaped]\n", 'escape=none: one line, escaped');

$t->done_testing;
