package TaurusGuard::Signer;

# SDK-HMAC-SHA256 (Huawei Cloud API Gateway signature), written again in
# Perl so that the integration tests check the C signer against code that
# shares nothing with it.
#
# Rules as the official Python SDK applies them (huaweicloud-sdk-python-v3
# 3.1.211, huaweicloudsdkcore/signer/signer.py, class Signer):
#
#   CanonicalRequest = METHOD "\n" CanonicalURI "\n" CanonicalQuery "\n"
#                      CanonicalHeaders "\n" SignedHeaders "\n"
#                      hex(sha256(body))
#   CanonicalURI     = the path percent-decoded, split on "/", each
#                      segment percent-encoded (everything but
#                      A-Z a-z 0-9 - _ . ~ as %XX, uppercase), with a
#                      trailing "/" added when missing
#   CanonicalQuery   = "k=v" pairs, both encoded as above, sorted by the
#                      decoded key then value, joined with "&"
#   CanonicalHeaders = for each signed header: "name:value\n", the value
#                      stripped as Python's str.strip() does
#   StringToSign     = "SDK-HMAC-SHA256\n" X-Sdk-Date "\n"
#                      hex(sha256(CanonicalRequest))
#   Signature        = hex(HMAC-SHA256(SK, StringToSign))
#
# Checked against vectors captured from that SDK (t/data/sdk_vectors.json)
# by t/000-signer.t.

use strict;
use warnings;

use Digest::SHA qw(sha256_hex hmac_sha256_hex);
use Encode qw(decode encode);
use POSIX qw(strftime);
use Time::Local qw(timegm);

use Exporter 'import';
our @EXPORT_OK = qw(url_encode canonical_uri canonical_query
    canonical_request string_to_sign sign verify parse_authorization
    sdk_date parse_sdk_date);

my $ALGORITHM = 'SDK-HMAC-SHA256';


sub url_encode {
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9\-_.~])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}


sub url_decode {
    my ($s) = @_;
    $s =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
    return $s;
}


# Python's unquote(): escapes decoded, then the bytes read as UTF-8 with
# malformed sequences replaced by U+FFFD; returns UTF-8 bytes again.

sub _unquote {
    my ($s) = @_;
    my $b = url_decode($s);
    return encode('UTF-8', decode('UTF-8', $b));
}


# The SDK unquotes the whole path first (so %2F becomes a real "/"), then
# splits it and quotes each segment.

sub canonical_uri {
    my ($path) = @_;
    my $uri = join '/', map { url_encode($_) } split m{/}, _unquote($path),
        -1;
    $uri .= '/' unless $uri =~ m{/\z};
    return $uri;
}


# The received query parsed back: pieces split on "&" (empty ones
# skipped), the first "=" splits, "+" is a literal plus; sorted by the
# decoded (key, value), which for UTF-8 is Python's code point order.

sub canonical_query {
    my ($query) = @_;
    return '' unless defined $query && length $query;

    my @pairs;
    for my $kv (split /&/, $query) {
        next unless length $kv;
        my ($k, $v) = split /=/, $kv, 2;
        $v = '' unless defined $v;
        push @pairs, [ _unquote($k), _unquote($v) ];
    }

    return join '&', map { url_encode($_->[0]) . '=' . url_encode($_->[1]) }
        sort { $a->[0] cmp $b->[0] || $a->[1] cmp $b->[1] } @pairs;
}


# Python's str.strip() on the value read as UTF-8: Unicode white space
# and the separators 1C-1F.

sub _trim {
    my ($s) = @_;
    my $u = eval { decode('UTF-8', "$s", Encode::FB_CROAK) };
    return $s unless defined $u;
    $u =~ s/\A[\s\x{1c}-\x{1f}]+//;
    $u =~ s/[\s\x{1c}-\x{1f}]+\z//;
    return encode('UTF-8', $u);
}


# $req: { method, path, query, headers => [[name, value], ...], body }
# $signed: arrayref of lowercase header names, in the order signed.
# Returns (canonical request, error); error is set when a signed header is
# absent or present more than once.

sub canonical_request {
    my ($req, $signed) = @_;

    my %h;
    for my $hv (@{ $req->{headers} }) {
        push @{ $h{ lc $hv->[0] } }, $hv->[1];
    }

    my $headers = '';
    for my $name (@$signed) {
        my $vals = $h{$name};
        return (undef, "signed header \"$name\" absent") unless $vals;
        return (undef, "signed header \"$name\" sent " . scalar(@$vals)
            . " times") if @$vals > 1;
        $headers .= $name . ':' . _trim($vals->[0]) . "\n";
    }

    my $body = defined $req->{body} ? $req->{body} : '';

    my $cr = join "\n", uc $req->{method}, canonical_uri($req->{path}),
        canonical_query($req->{query}), $headers, join(';', @$signed),
        sha256_hex($body);

    return ($cr, undef);
}


sub string_to_sign {
    my ($cr, $date) = @_;
    return "$ALGORITHM\n$date\n" . sha256_hex($cr);
}


sub sdk_date {
    my ($t) = @_;
    return strftime('%Y%m%dT%H%M%SZ', gmtime(defined $t ? $t : time));
}


sub parse_sdk_date {
    my ($d) = @_;
    return undef unless defined $d
        && $d =~ /\A(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z\z/;
    my $t = eval { timegm($6, $5, $4, $3, $2 - 1, $1) };
    return $t;
}


# Signs $req (adds nothing to it); returns the Authorization value.

sub sign {
    my ($req, $ak, $sk, $date, $signed) = @_;
    my ($cr, $err) = canonical_request($req, $signed);
    die $err if $err;
    my $sig = hmac_sha256_hex(string_to_sign($cr, $date), $sk);
    return "$ALGORITHM Access=$ak, SignedHeaders=" . join(';', @$signed)
        . ", Signature=$sig";
}


sub parse_authorization {
    my ($v) = @_;
    return undef unless defined $v;
    return undef unless $v =~ /\A\Q$ALGORITHM\E\s+Access=([^,\s]+),\s*
        SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})\z/x;
    return { access => $1, signed => [ split /;/, $2 ], signature => $3 };
}


# Verifies a received request.  $req as for canonical_request, with the
# headers exactly as received.  Returns a hashref:
#   { ok => 0|1, error => '...', canonical_request => ..,
#     string_to_sign => .. }

sub verify {
    my ($req, %o) = @_;

    my $ak = $o{ak};
    my $sk = $o{sk};
    my $skew = defined $o{max_skew} ? $o{max_skew} : 15 * 60;
    my $now = defined $o{now} ? $o{now} : time;

    my $res = { ok => 0, error => undef, canonical_request => undef,
        string_to_sign => undef };

    my %h;
    for my $hv (@{ $req->{headers} }) {
        push @{ $h{ lc $hv->[0] } }, $hv->[1];
    }

    my $auth = $h{authorization};
    if (!$auth) {
        $res->{error} = 'no Authorization header';
        return $res;
    }
    if (@$auth > 1) {
        $res->{error} = 'Authorization header sent ' . scalar(@$auth)
            . ' times';
        return $res;
    }

    my $a = parse_authorization($auth->[0]);
    if (!$a) {
        $res->{error} = 'malformed Authorization header';
        return $res;
    }

    if ($a->{access} ne $ak) {
        $res->{error} = 'Access is not the expected AK';
        return $res;
    }

    my @signed = @{ $a->{signed} };
    my %signed = map { $_ => 1 } @signed;

    for my $i (0 .. $#signed) {
        if ($signed[$i] ne lc $signed[$i]) {
            $res->{error} = "signed header \"$signed[$i]\" not lowercase";
            return $res;
        }
        if ($i > 0 && $signed[$i - 1] ge $signed[$i]) {
            $res->{error} = 'SignedHeaders not sorted or repeated';
            return $res;
        }
    }

    my $date = $h{'x-sdk-date'};
    if (!$date || @$date != 1) {
        $res->{error} = 'X-Sdk-Date absent or repeated';
        return $res;
    }
    my $t = parse_sdk_date($date->[0]);
    if (!defined $t) {
        $res->{error} = 'malformed X-Sdk-Date';
        return $res;
    }
    if (abs($now - $t) > $skew) {
        $res->{error} = 'X-Sdk-Date too far from now';
        return $res;
    }

    if ($h{'x-security-token'} && !$signed{'x-security-token'}) {
        $res->{error} = 'X-Security-Token present but not signed';
        return $res;
    }

    my ($cr, $err) = canonical_request($req, \@signed);
    if (!defined $cr) {
        $res->{error} = $err;
        return $res;
    }

    my $sts = string_to_sign($cr, $date->[0]);
    $res->{canonical_request} = $cr;
    $res->{string_to_sign} = $sts;

    my $want = hmac_sha256_hex($sts, $sk);

    if ($want ne $a->{signature}) {
        $res->{error} = 'signature mismatch';
        return $res;
    }

    $res->{ok} = 1;
    return $res;
}


1;
