#!/usr/bin/perl

# One fetched source named in several places: the same
# `taurus_guard_credentials metadata=URI` or `taurus_guard_token iam=URI
# password_file=PATH` written in two server blocks (or two locations),
# as operators do when each server lists its own directives instead of
# inheriting them from http{}.  Both places must work, and since the two
# directives name the same source, share its one fetch.
#
# (Both directives name their shared memory zone after the source, so
# two directives with the same source get the same zone; each must then
# find the credentials the zone holds.  An agency directive keeps its
# user token in the zone of a plain directive with the same password
# file and location.)

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

BEGIN {
    require "$FindBin::Bin/lib/tg-metadata.pl";
    require "$FindBin::Bin/lib/tg-iam.pl";
}

my $body = batch_json([ $INSTANCES[0] ]);


sub server {
    my ($port, $directive, $internal) = @_;
    return <<"EOF";
    server {
        listen 127.0.0.1:%%PORT_$port%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            $directive;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

$internal
    }
EOF
}


# ---- the same metadata source in two servers -------------------------

my $meta_loc = <<'EOF';
        location = /_tg_meta {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_META%%/openstack/latest/securitykey;
        }
EOF

my $t = Test::TaurusGuard->new;

TaurusGuard::Metadata::start_meta($t);
TaurusGuard::Metadata::upstream_keys($t);

$t->run("http {\n"
    . "    taurus_guard_audit_log %%TESTDIR%%/audit.log;\n"
    . "    taurus_guard_allow {\n        %%PROJECT%% $INSTANCES[0];\n    }\n"
    . server(0, 'taurus_guard_credentials metadata=/_tg_meta', $meta_loc)
    . server(1, 'taurus_guard_credentials metadata=/_tg_meta', $meta_loc)
    . "}\n");

for my $port (1, 0, 1, 0) {
    my $r = $t->post(upgrade_path(), $body, port => $port);
    is($r->{status}, 200, "metadata, server $port: 200")
        or diag($r->{raw} || 'no response');
}

my @up = $t->upstream_records;
is(scalar(grep { $_->{signature}{ok} } @up), 4,
    'metadata: all four forwarded and verified');
is(scalar(TaurusGuard::Metadata::meta_calls($t)), 1,
    'metadata: one fetch for both servers');

$t->finish;


# ---- the same IAM source in two servers ------------------------------

my $iam_loc = <<'EOF';
        location = /_tg_iam {
            internal;
            proxy_pass http://127.0.0.1:%%PORT_IAM%%/v3/auth/tokens;
        }
EOF

my $t2 = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t2);
TaurusGuard::IAM::start_iam($t2);
TaurusGuard::IAM::upstream_tokens($t2);

my $iam = 'taurus_guard_token iam=/_tg_iam password_file=%%TESTDIR%%/iam.ini';

$t2->run("http {\n"
    . "    taurus_guard_audit_log %%TESTDIR%%/audit.log;\n"
    . "    taurus_guard_allow {\n        %%PROJECT%% $INSTANCES[0];\n    }\n"
    . server(0, $iam, $iam_loc)
    . server(1, $iam, $iam_loc)
    . "}\n");

for my $port (1, 0, 1, 0) {
    my $r = $t2->post(upgrade_path(), $body, port => $port);
    is($r->{status}, 200, "IAM, server $port: 200")
        or diag($r->{raw} || 'no response');
}

@up = $t2->upstream_records;
is(scalar(grep { $_->{token_ok} } @up), 4,
    'IAM: all four forwarded with a valid token');
is(scalar(TaurusGuard::IAM::iam_calls($t2)), 1,
    'IAM: one fetch for both servers');

$t2->finish;


# ---- one password file and IAM location, with and without an agency --
#
# The agency's user token (scoped to the user's domain) lives in the
# same zone as the plain directive's project tokens, under a key no
# project can have; two agency directives share the agency's tokens.

my $t3 = Test::TaurusGuard->new;

TaurusGuard::IAM::write_password_file($t3);
TaurusGuard::IAM::start_iam($t3, agency => 1);
TaurusGuard::IAM::upstream_tokens($t3);

my $agency = "$iam agency=$TaurusGuard::IAM::AGENCY "
    . "agency_domain=$TaurusGuard::IAM::AGENCY_DOMAIN";

$t3->run("http {\n"
    . "    taurus_guard_audit_log %%TESTDIR%%/audit.log;\n"
    . "    taurus_guard_allow {\n        %%PROJECT%% $INSTANCES[0];\n    }\n"
    . server(0, $iam, $iam_loc)
    . server(1, $agency, $iam_loc)
    . server(2, $agency, $iam_loc)
    . "}\n");

my %sent;
for my $port (1, 0, 2, 1, 0, 2) {
    my $r = $t3->post(upgrade_path(), $body, port => $port);
    is($r->{status}, 200, "password and agency, server $port: 200")
        or diag($r->{raw} || 'no response');
    my $u = ($t3->upstream_records)[-1] || {};
    $sent{$port}{ join '|', TaurusGuard::IAM::sent_tokens($u) } = 1;
}

my %kind = map { (($_->{token} || '') => join '/', $_->{auth_method} || '?',
    $_->{scope} || '?') } TaurusGuard::IAM::iam_calls($t3);
is(join(',', map { $kind{$_} || 'unknown' } sort keys %{ $sent{0} }),
    'password/project', 'server 0 (no agency): the password\'s project '
    . 'token, the same each time');
is(join(',', map { $kind{$_} || 'unknown' }
    sort keys %{ { %{ $sent{1} }, %{ $sent{2} } } }),
    'assume_role/project', 'servers 1 and 2 (agency): one agency token, '
    . 'shared');
is(join(' ', sort map { ($_->{auth_method} || '?') . '/' . ($_->{scope} || '?') }
    TaurusGuard::IAM::iam_calls($t3)),
    'assume_role/project password/domain password/project',
    'three IAM calls in all: the user token, the agency token, the '
    . 'password\'s token');
is(scalar(grep { $_->{token_ok} } $t3->upstream_records), 6,
    'all six forwarded with a token the upstream accepts');

$t3->finish;

$t->done_testing;
