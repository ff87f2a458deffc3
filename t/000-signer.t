#!/usr/bin/perl

# The Perl verifier used by tg-upstream.pl (t/lib/TaurusGuard/Signer.pm)
# against the vectors captured from the official Python SDK
# (t/data/sdk_vectors.json, see its "sdk" field for the commit): if this
# file fails, a passing integration test proves nothing about the C
# signer.  Needs no nginx.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(sha256_hex);
use Encode qw(encode);
use JSON::PP;
use MIME::Base64 qw(decode_base64);
use Test::More;

use TaurusGuard::Signer qw(canonical_request string_to_sign sign verify
    parse_sdk_date);

my $file = "$FindBin::Bin/data/sdk_vectors.json";
plan(skip_all => "no $file") unless -f $file;

open my $fh, '<', $file or die "$file: $!\n";
my $data = JSON::PP->new->utf8->decode(do { local $/; <$fh> });
close $fh;

my @v = @{ $data->{vectors} };
ok(@v >= 10, scalar(@v) . ' vectors');

sub b { encode('UTF-8', $_[0]) }

for my $v (@v) {
    my $n = $v->{name};

    my $body = defined $v->{body_base64} ? decode_base64($v->{body_base64})
        : b($v->{body});
    is(sha256_hex($body), $v->{body_sha256}, "$n: body sha256");

    my $req = {
        method  => $v->{method},
        path    => b($v->{path}),
        query   => b($v->{query}),
        headers => [ map { [ b($_->[0]), b($_->[1]) ] } @{ $v->{headers} } ],
        body    => $body,
    };
    my @signed = split /;/, $v->{signed_headers};

    my ($cr, $err) = canonical_request($req, \@signed);
    is($cr, b($v->{canonical_request}), "$n: canonical request")
        or diag($err);
    is(string_to_sign(b($v->{canonical_request}), $v->{x_sdk_date}),
        b($v->{string_to_sign}), "$n: string to sign");
    is(sign($req, b($v->{ak}), b($v->{sk}), $v->{x_sdk_date}, \@signed),
        b($v->{authorization}), "$n: Authorization");

    # and as tg-upstream.pl checks a received request
    my $wire = $v->{wire_headers} ? [ map { [ b($_->[0]), b($_->[1]) ] }
        @{ $v->{wire_headers} } ]
        : [ @{ $req->{headers} }, [ 'Authorization', b($v->{authorization}) ] ];
    my $res = verify({ %$req, headers => $wire }, ak => b($v->{ak}),
        sk => b($v->{sk}), now => parse_sdk_date($v->{x_sdk_date}));
    is($res->{ok}, 1, "$n: verifies") or diag($res->{error});
}

# what the verifier refuses (built on the first vector)

my $v = $v[0];
my $req = {
    method  => $v->{method},
    path    => b($v->{path}),
    query   => b($v->{query}),
    headers => [ map { [ b($_->[0]), b($_->[1]) ] } @{ $v->{wire_headers} } ],
    body    => b($v->{body}),
};
my %o = (ak => b($v->{ak}), sk => b($v->{sk}),
    now => parse_sdk_date($v->{x_sdk_date}));

is(verify($req, %o)->{ok}, 1, 'base request verifies');

sub with {
    my ($f) = @_;
    my %r = %$req;
    $r{headers} = [ map { [@$_] } @{ $req->{headers} } ];
    $f->(\%r);
    return verify(\%r, %o);
}

like(with(sub { $_[0]{body} .= ' ' })->{error}, qr/mismatch/,
    'body changed: refused');
like(with(sub { $_[0]{path} .= 'x' })->{error}, qr/mismatch/,
    'path changed: refused');
like(with(sub { $_[0]{method} = 'PUT' })->{error}, qr/mismatch/,
    'method changed: refused');
like(with(sub { $_->[1] .= 'x' for grep { lc $_->[0] eq 'x-project-id' }
    @{ $_[0]{headers} } })->{error}, qr/mismatch/,
    'signed header changed: refused');
like(with(sub { push @{ $_[0]{headers} }, [ 'X-Project-Id', 'x' ] })->{error},
    qr/2 times/, 'signed header repeated: refused');
like(with(sub { $_[0]{headers} = [ grep { lc $_->[0] ne 'x-sdk-date' }
    @{ $_[0]{headers} } ] })->{error}, qr/X-Sdk-Date/,
    'X-Sdk-Date absent: refused');
like(with(sub { push @{ $_[0]{headers} }, [ 'X-Security-Token', 't' ] })
    ->{error}, qr/not signed/, 'unsigned X-Security-Token: refused');
like(verify($req, %o, now => $o{now} + 16 * 60)->{error}, qr/too far/,
    'date 16 minutes old: refused');
is(verify($req, %o, now => $o{now} + 14 * 60)->{ok}, 1,
    'date 14 minutes old: verifies');
like(verify($req, %o, ak => 'OTHER')->{error}, qr/AK/, 'other AK: refused');
like(verify($req, %o, sk => 'other')->{error}, qr/mismatch/,
    'other SK: refused');

done_testing;
