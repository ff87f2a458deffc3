#!/usr/bin/perl

# A parameter given twice to any directive of the module fails `nginx
# -t` with the file and line: it used to take its last value silently
# ("fsync=on fsync=off" ended without fsync).  Every directive that takes
# name=value parameters, every parameter of each.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

BEGIN { require "$FindBin::Bin/lib/tg-iam.pl" }

my $t = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t);
TaurusGuard::IAM::write_password_file($t, name => 'iam2.ini');

my %base = (
    cred => 'taurus_guard_credentials metadata=/_tg_meta'
        . ' session=/_tg_meta_token session_ttl=1h refresh=10m;',
    token => 'taurus_guard_token iam=/_tg_iam'
        . ' password_file=%%TESTDIR%%/iam.ini agency=ops agency_domain=a'
        . ' refresh=30m;',
    audit => 'taurus_guard_audit_log %%TESTDIR%%/audit.log fsync=on'
        . ' thread_pool=default timeout=5s flush_delay=1ms;',
    syslog => 'taurus_guard_audit_syslog server=127.0.0.1:%%PORT_1%%'
        . ' facility=local1 tag=tg queue=64k max_message=8k;',
    policy => 'taurus_guard_policy %%PROJECT%% delay=required max_batch=5'
        . ' quota=10/1h cooldown=1h;',
);

sub conf {
    my (%o) = (%base, @_);

    return <<"EOF";
http {
    $o{cred}
    $o{token}
    $o{audit}
    $o{syslog}

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    $o{policy}

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_iam {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }
    }
}
EOF
}

my $conf = $t->conf_path('test.conf');
my ($rc, $out);

($rc, $out) = $t->nginx_t(conf());
is($rc, 0, 'every parameter once: nginx -t passes') or diag($out);

# [ directive (a key of %base), its line with one parameter twice, the
#   parameter's name as the message gives it ]

my $iam = 'taurus_guard_token iam=/_tg_iam'
    . ' password_file=%%TESTDIR%%/iam.ini';
my $meta = 'taurus_guard_credentials metadata=/_tg_meta';
my $audit = 'taurus_guard_audit_log %%TESTDIR%%/audit.log';
my $syslog = 'taurus_guard_audit_syslog server=127.0.0.1:%%PORT_1%%';
my $policy = 'taurus_guard_policy %%PROJECT%%';

my @cases = (
    [ audit => "$audit fsync=on fsync=off;", 'fsync=' ],
    [ audit => "$audit fsync=off fsync=off;", 'fsync=' ],
    [ audit => "$audit thread_pool=default thread_pool=off;",
        'thread_pool=' ],
    [ audit => "$audit timeout=5s fsync=on timeout=10s;", 'timeout=' ],
    [ audit => "$audit flush_delay=1ms flush_delay=2ms;", 'flush_delay=' ],

    [ token => "$iam password_file=%%TESTDIR%%/iam2.ini;",
        'password_file=' ],
    [ token => "$iam iam=/_tg_iam2;", 'iam=' ],
    [ token => "$iam agency=a agency_domain=b agency=c;", 'agency=' ],
    [ token => "$iam agency=a agency_domain=b agency_domain=c;",
        'agency_domain=' ],
    [ token => "$iam refresh=1h refresh=10m;", 'refresh=' ],

    [ cred => "$meta metadata=/_tg_meta2;", 'metadata=' ],
    [ cred => "$meta refresh=15m refresh=1m;", 'refresh=' ],
    [ cred => "$meta session=/_tg_t session=/_tg_u;", 'session=' ],
    [ cred => "$meta session=/_tg_t session_ttl=1h session_ttl=2h;",
        'session_ttl=' ],

    [ syslog => "$syslog server=127.0.0.1:%%PORT_2%%;", 'server=' ],
    [ syslog => "$syslog facility=local1 facility=local2;", 'facility=' ],
    [ syslog => "$syslog tag=a tag=b;", 'tag=' ],
    [ syslog => "$syslog queue=64k queue=1m;", 'queue=' ],
    [ syslog => "$syslog max_message=8k max_message=16k;", 'max_message=' ],
    [ syslog => "$syslog ssl ssl trusted_certificate=%%TESTDIR%%/ca.crt;",
        'ssl' ],
    [ syslog => "$syslog ssl trusted_certificate=%%TESTDIR%%/a.crt"
        . " trusted_certificate=%%TESTDIR%%/b.crt;", 'trusted_certificate=' ],
    [ syslog => "$syslog ssl ssl_name=a ssl_name=b"
        . " trusted_certificate=%%TESTDIR%%/ca.crt;", 'ssl_name=' ],

    [ policy => "$policy delay=required delay=required;", 'delay=' ],
    [ policy => "$policy max_batch=5 max_batch=50;", 'max_batch=' ],
    [ policy => "$policy quota=10/1h quota=100/1h;", 'quota=' ],
    [ policy => "$policy cooldown=1h cooldown=1s;", 'cooldown=' ],
);

for my $c (@cases) {
    my ($key, $line, $name) = @$c;
    my $what = "$key, $name twice";

    ($rc, $out) = $t->nginx_t(conf($key => $line));
    note($out);
    isnt($rc, 0, "$what: nginx -t fails");
    like($out, qr/\[emerg\] duplicate parameter "\Q$name\E" in /,
        "$what: says which") or diag($out);

    my ($directive) = $line =~ /^(\S+)/;
    my $at = $t->conf_line(qr/^\s*\Q$directive\E /, 'test.conf');
    like($out, qr/ in \Q$conf\E:$at\b/, "$what: in test.conf:$at")
        or diag($out);
}

# One file named by two directives has one flush: in one thread pool
# (or in the event loop), with one fsync=, timeout= and flush_delay=.
# The second directive's parameters must agree with the first's, or
# nginx -t fails at its line.  Before, another thread_pool= was taken
# without a word and not used.

sub two {
    my ($second) = @_;

    return <<"EOF";
thread_pool other threads=1;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_audit_log %%TESTDIR%%/two.log thread_pool=default timeout=5s;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location /v4/ {
            taurus_guard on;
            taurus_guard_audit_log %%TESTDIR%%/two.log $second;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF
}

$t->write_credentials;

($rc, $out) = $t->nginx_t(two('timeout=5s'));
is($rc, 0, 'one file, the same flush twice: nginx -t passes') or diag($out);

($rc, $out) = $t->nginx_t(two('thread_pool=default timeout=5s fsync=on'));
is($rc, 0, 'one file, the same flush spelled out: nginx -t passes')
    or diag($out);

for my $second ('thread_pool=other timeout=5s', 'thread_pool=off timeout=5s',
    'timeout=5s fsync=off', 'timeout=6s', 'timeout=5s flush_delay=1ms')
{
    my $what = "one file, then $second";

    ($rc, $out) = $t->nginx_t(two($second));
    isnt($rc, 0, "$what: nginx -t fails");
    like($out, qr/\[emerg\] audit log "[^"]*two\.log" is used with different/,
        "$what: says why") or diag($out);

    my $at = $t->conf_line(qr{^\s*taurus_guard_audit_log \S+two\.log \Q$second\E;},
        'test.conf');
    like($out, qr/ in \Q$conf\E:$at\b/, "$what: in test.conf:$at")
        or diag($out);
}

$t->done_testing;
