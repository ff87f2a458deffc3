#!/usr/bin/perl

# A fetched answer is wiped once the gateway has its secret: after one
# metadata fetch and one IAM fetch, the worker's private memory (its heap
# and anonymous mappings, read through /proc/PID/mem) holds neither the
# metadata service's JSON with the SK and security token nor IAM's
# "X-Subject-Token:" header line.  The proxy reads both into its
# u->buffer, which goes back to the request's pool as it is unless the
# fetcher wipes it.  (The secrets themselves stay in the shared zone,
# where they are kept, and the tokens the gateway sends upstream in the
# proxy's request buffer, docs/security.md, "What is not wiped": those
# are not looked for.)  Skipped where /proc/PID/mem of a worker cannot
# be read.

use strict;
use warnings;
no warnings 'portable';

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

BEGIN {
    require "$FindBin::Bin/lib/tg-iam.pl";
    require "$FindBin::Bin/lib/tg-metadata.pl";
}

my $t = Test::TaurusGuard->new;
my $d = $t->testdir;

TaurusGuard::Metadata::start_meta($t);
TaurusGuard::IAM::write_password_file($t);
TaurusGuard::IAM::start_iam($t);
TaurusGuard::Metadata::upstream_keys($t, tokens => "$d/tokens");

$t->run(<<"EOF");
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
            taurus_guard_credentials metadata=/_tg_meta;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_meta {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_META%%/openstack/latest/securitykey;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_iam {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }
    }
}
EOF

my ($pid) = $t->worker_pids;

# the private, readable mappings of $pid but its stack (where log lines
# are formatted): [ start, end ] each, or none if /proc/PID/mem cannot be
# read

sub regions {
    my ($pid) = @_;

    open my $maps, '<', "/proc/$pid/maps" or return;
    open my $mem, '<:raw', "/proc/$pid/mem" or return;

    my @r;
    while (<$maps>) {
        my ($s, $e, $perm, $name) =
            /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/ or next;
        next unless $perm =~ /^r..p/;
        next if $name =~ /^\[(?:stack|vvar|vdso|vsyscall)/ || $name =~ m{/};
        push @r, [ hex $s, hex $e ];
    }

    return @r;
}

# how many times each needle is in those mappings

sub scan {
    my ($pid, @needles) = @_;

    open my $mem, '<:raw', "/proc/$pid/mem" or return;
    my %n = map { $_ => 0 } @needles;

    for my $r (regions($pid)) {
        my ($s, $e) = @$r;
        next if $e - $s > 256 * 1024 * 1024;
        sysseek($mem, $s, 0) or next;
        my $buf = '';
        sysread($mem, $buf, $e - $s) or next;
        for my $x (@needles) {
            my $i = -1;
            $n{$x}++ while ($i = index($buf, $x, $i + 1)) >= 0;
        }
    }

    return \%n;
}

SKIP: {
    skip "cannot read the memory of worker $pid", 6
        unless $pid && regions($pid) && scan($pid, 'x');

    # each looked for once its batch is over, before the next request
    # reuses the memory

    my $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
    is($r->{status}, 200, 'signed with metadata credentials')
        or diag($r->{raw});

    my ($k) = TaurusGuard::Metadata::meta_keys($t);
    my ($ak, $sk, $sts) = @$k;
    my $json = "\"securitytoken\":\"$sts";

    my $n = scan($pid, $sk, $json);
    is($n->{$sk}, 0, 'the SK is not in the worker\'s memory');
    is($n->{$json}, 0, 'nor the JSON with the security token');

    $r = $t->post(upgrade_path(), batch_json([ $INSTANCES[0] ]),
        port => 1);
    is($r->{status}, 200, 'sent with an IAM token') or diag($r->{raw});

    my ($tok) = map { $_->[0] } TaurusGuard::IAM::iam_tokens($t);
    my ($line, $sent) = ("X-Subject-Token: $tok", "X-Auth-Token: $tok");

    $n = scan($pid, $line, $sent);
    is($n->{$line}, 0, 'the X-Subject-Token line is not in it');

    # and the scan finds what is there: the token sent upstream
    ok($n->{$sent}, 'the X-Auth-Token sent upstream is');
}

$t->finish;


# ---- an answer broken after the secret ------------------------------------
#
# cJSON reads the credentials' strings into blocks of its own and, when
# the JSON breaks after them, frees them itself: the gateway never sees
# that tree, so it cannot wipe it as it wipes a tree it was given.  The
# fetch fails (503), and the SK the answer carried must not be left in
# the freed blocks.  (The answer's own buffer is wiped by the fetcher,
# whatever the parse made of it.)

my $t2 = Test::TaurusGuard->new;

TaurusGuard::Metadata::start_meta($t2, broken => 1);

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
            taurus_guard_credentials metadata=/_tg_meta;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /_tg_meta {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_META%%/openstack/latest/securitykey;
        }
    }
}
EOF

($pid) = $t2->worker_pids;

SKIP: {
    skip "cannot read the memory of worker $pid", 4
        unless $pid && regions($pid) && scan($pid, 'x');

    my $r = $t2->post(upgrade_path(), batch_json([ $INSTANCES[0] ]));
    $t2->is_refusal($r, 503, 'TG.0503', 'an answer broken after the SK');

    my ($k) = TaurusGuard::Metadata::meta_keys($t2);
    ok(defined $k, 'broken answer: the service issued credentials');
    my (undef, $sk, $sts) = @{ $k || [ "\0", "\0", "\0" ] };

    # free() writes its links over a block's first 16 bytes: what follows
    # them is what a block left unwiped still holds

    my ($sk_tail, $sts_tail) = (substr($sk, 16), substr($sts, 16));
    my $n = scan($pid, $sk_tail, $sts_tail);
    is($n->{$sk_tail}, 0,
        'broken answer: the SK is not in the worker\'s memory');
    is($n->{$sts_tail}, 0, 'broken answer: nor the security token');
}

$t2->done_testing;
