#!/usr/bin/perl

# The production setup: proxy_pass https:// with proxy_ssl_verify on.
# Certificates are made here with the openssl command (a test CA, a
# server certificate for "upstream.test" signed by it, and a second CA
# that did not sign it).  The verifying upstream speaks plain HTTP only
# (core Perl has no TLS), so a second server block of the same nginx
# terminates TLS in front of it and passes the request on unchanged; the
# verifier still checks the signature with its own code.
#
#   client -> guarded location --https--> TLS server block --http-->
#   tg-upstream.pl

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $openssl = `sh -c 'command -v openssl' 2>/dev/null`;
chomp $openssl;
plan(skip_all => 'no openssl command') unless length $openssl;

my $t = Test::TaurusGuard->new;
my $d = $t->testdir;

# ---- certificates ----------------------------------------------------

$t->write_file('tls-openssl.cnf', <<'EOF');
[req]
distinguished_name = dn
prompt = no

[dn]
CN = taurus-guard test

[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:upstream.test, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

sub openssl {
    my (@args) = @_;
    my $out = $t->read_file('logs/openssl.log');
    system("$openssl @args >>$d/logs/openssl.log 2>&1") == 0
        or die "openssl @args failed:\n"
            . substr($t->read_file('logs/openssl.log') || '',
                length($out || ''));
}

my $cnf = "$d/tls-openssl.cnf";
my $ec = '-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes';

for my $ca (qw(tls-ca tls-other-ca)) {
    openssl("req -x509 $ec -config $cnf -extensions ca -days 2"
        . " -subj /CN=$ca -keyout $d/$ca.key -out $d/$ca.crt");
}

openssl("req -new $ec -config $cnf -subj /CN=upstream.test"
    . " -keyout $d/tls-server.key -out $d/tls-server.csr");
openssl("x509 -req -in $d/tls-server.csr -CA $d/tls-ca.crt"
    . " -CAkey $d/tls-ca.key -CAcreateserial -days 2 -extfile $cnf"
    . " -extensions server -out $d/tls-server.crt");

# the chain is what we think it is, checked by openssl itself

my $cmd = "$openssl verify -CAfile $d/tls-ca.crt"
    . " -verify_hostname upstream.test $d/tls-server.crt 2>&1";
my $v = `$cmd`;
like($v, qr/: OK$/m, 'server certificate verifies against the test CA');
$v = `$openssl verify -CAfile $d/tls-other-ca.crt $d/tls-server.crt 2>&1`;
unlike($v, qr/: OK$/m, 'and not against the other CA');

# ---- nginx -------------------------------------------------------------

$t->upstream;
$t->write_credentials;

$t->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    upstream upstream.test {
        server 127.0.0.1:%%PORT_TLS%%;
    }

    # the same server under other names for the refusals: nginx keeps
    # upstream TLS sessions per upstream{} peer and resumes them without
    # verifying the certificate again, whatever the location's
    # proxy_ssl_trusted_certificate, so a shared upstream{} would let the
    # session verified with the right CA through

    upstream tls_other_ca {
        server 127.0.0.1:%%PORT_TLS%%;
    }

    upstream tls_wrong_name {
        server 127.0.0.1:%%PORT_TLS%%;
    }

    # the TLS stand-in in front of the verifying upstream: not guarded,
    # it passes the request on as it came (Host included) and says which
    # TLS it terminated

    server {
        listen 127.0.0.1:%%PORT_TLS%% ssl;
        server_name upstream.test;

        ssl_certificate %%TESTDIR%%/tls-server.crt;
        ssl_certificate_key %%TESTDIR%%/tls-server.key;

        location / {
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
            proxy_set_header Host \$host;
            proxy_set_header X-Tg-Tls "\$ssl_protocol \$ssl_server_name";
        }
    }

    # the right CA

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass https://upstream.test;
            proxy_ssl_verify on;
            proxy_ssl_server_name on;
            proxy_ssl_name upstream.test;
            proxy_ssl_trusted_certificate %%TESTDIR%%/tls-ca.crt;
        }
    }

    # a CA that did not sign the upstream's certificate

    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass https://tls_other_ca;
            proxy_ssl_verify on;
            proxy_ssl_server_name on;
            proxy_ssl_name upstream.test;
            proxy_ssl_trusted_certificate %%TESTDIR%%/tls-other-ca.crt;
        }
    }

    # the right CA, the wrong name

    server {
        listen 127.0.0.1:%%PORT_2%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass https://tls_wrong_name;
            proxy_ssl_verify on;
            proxy_ssl_server_name on;
            proxy_ssl_name other.example.test;
            proxy_ssl_trusted_certificate %%TESTDIR%%/tls-ca.crt;
        }
    }
}
EOF

my $path = upgrade_path();
my $body = batch_json([ $INSTANCES[0] ]);

# ---- verified TLS: forwarded, verified ---------------------------------

my $r = $t->post($path, $body);

is($r->{status}, 200, 'TLS, right CA: 200');
is($r->{body}, '{"resp":"success"}', 'TLS, right CA: upstream accepted it');
my $id = header($r, 'X-Taurus-Guard-Id') || 'none';

my @up = $t->upstream_records;
is(scalar @up, 1, 'TLS, right CA: one request upstream');
my $u = $up[0] || { headers => [], signature => {} };

is($u->{signature}{ok}, 1, 'TLS, right CA: signature verifies')
    or diag(explain($u->{signature}));
is($u->{target}, $path, 'TLS, right CA: path');
is($u->{body}, $body, 'TLS, right CA: the canonical body');
is($u->{audit_seen}, 1, 'TLS, right CA: audited before forwarding');
is(join('|', headers_named($u->{headers}, 'Host')), 'upstream.test',
    'TLS, right CA: Host is the upstream{} name');
like(join('|', headers_named($u->{headers}, 'X-Tg-Tls')),
    qr/\ATLSv1\.[23] upstream\.test\z/,
    'TLS, right CA: it came over TLS with SNI upstream.test');
like(join('|', headers_named($u->{headers}, 'Authorization')),
    qr/SignedHeaders=content-type;x-project-id;x-sdk-date,/,
    'TLS, right CA: SignedHeaders');

my @a = $t->wait_audit($id, 2);
is(join(',', map { $_->{decision} || '?' } @a), 'allow,done',
    'TLS, right CA: audit allow then done');
is(($a[1] || {})->{status}, 200, 'TLS, right CA: done status 200');

# ---- the wrong CA: 502, nothing reaches the verifier -------------------

for my $c ([ 'wrong CA', 1, qr/certificate verify error/ ],
    [ 'wrong name', 2, qr/certificate does not match "other\.example\.test"/ ])
{
    my ($name, $port, $why) = @$c;

    my $before = length $t->error_log;

    $r = $t->post($path, $body, port => $port);

    is($r->{status}, 502, "$name: 502");
    is(scalar $t->upstream_records, 1, "$name: the verifier got nothing");

    $id = header($r, 'X-Taurus-Guard-Id') || 'none';
    like($id, qr/\A[0-9a-f]{32}\z/, "$name: the response has the id");

    @a = $t->wait_audit($id, 2);
    is(join(',', map { $_->{decision} || '?' } @a), 'allow,done',
        "$name: audit allow then done");
    is(($a[1] || {})->{status}, 502, "$name: done status 502");

    like(substr($t->error_log, $before), $why,
        "$name: nginx says why the upstream was refused");
}

$t->done_testing;
