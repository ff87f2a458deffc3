#!/usr/bin/perl

# taurus-guard-verify reads a record as JSON readers (jq, Python's json,
# JSON::PP here) read it, or refuses it.  An insider who rewrites the log
# relinks every line after his change; the chain then holds, and the
# verifier's reading of each line is all that stands between him and an
# "ok".  So each hostile line below is put in a copy of a real log and
# the chain relinked over it: a key given twice (readers keep the last,
# the verifier kept the first), a key spelt with escapes, "\u0000" in a
# decision, bytes that are no JSON (controls as white space, raw controls
# and invalid UTF-8 in strings, numbers like 0403, a BOM, a CR) that the
# verifier took and jq stops at, hiding every record after them, and an
# allow record whose unlinked items are a nested key's, not its own
# "instances".  Each is a break at its own line, named with its column;
# lines every reader reads alike still verify.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(sha256_hex);
use JSON::PP;
use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

my $verify = $t->repo . '/build/taurus-guard-verify';
plan(skip_all => "no $verify (run make verify)") unless -x $verify;

my $json = JSON::PP->new->utf8;
my $dir = $t->testdir;
my $log = "$dir/audit.log";
my $zero = '0' x 64;

$t->upstream;
$t->write_credentials;

$t->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0] $INSTANCES[1];
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

sub batch {
    my ($body, $n) = @_;
    my $r = $t->post(upgrade_path(), $body);
    my $id = header($r, 'X-Taurus-Guard-Id') || 'none';
    $t->wait_audit($id, $n);
    return $r;
}

is(batch(batch_json([ $INSTANCES[0] ]), 2)->{status}, 200, 'allowed: 200');
is(batch(batch_json([ $OTHER_INSTANCE ]), 1)->{status}, 403, 'denied: 403');
is(batch(batch_json([ $INSTANCES[1] ]), 2)->{status}, 200,
    'allowed again: 200');

my @lines = ($t->read_file($log) // '') =~ /([^\n]*\n)/g;
is(scalar @lines, 5, 'five records: allow, done, deny, allow, done');
my ($deny) = grep { /"decision":"deny"/ } @lines;
ok(defined $deny && $deny eq $lines[2], 'the third is the deny record');

# the insider's rewrite: every "prev" from the first line on made the link
# of the line before it again

sub relink {
    my (@l) = @_;
    my $prev = $zero;
    for (@l) {
        s/"prev":"[0-9a-f]{64}"/"prev":"$prev"/;
        $prev = chain_digest($_);
    }
    return @l;
}

my $n = 0;

sub verify_lines {
    my (@l) = @_;
    my $copy = $t->write_file('copy-' . ++$n . '.log', join '', relink(@l));
    my $out = $t->_cmd($verify, $copy);
    return ($? >> 8, $out, $copy);
}

my ($rc, $out, $copy) = verify_lines(@lines);
is($rc, 0, 'the log relinked as it is: verifies') or diag($out);

# what a JSON reader reads of a line, or undef when it cannot read it

sub reader {
    my ($l) = @_;
    return eval { $json->decode($l) };
}

# a hostile deny record, at the third line and as the last one (which
# nothing links to): a break at that line, naming what is wrong

sub refused {
    my ($name, $line, $what) = @_;

    for my $at (2, 5) {
        my @l = @lines;
        if ($at == 5) {
            push @l, $line;
        } else {
            $l[2] = $line;
        }
        my $where = $at + 1;
        ($rc, $out, $copy) = verify_lines(@l);
        is($rc, 1, "$name, line $where: exit 1") or diag($out);
        like($out, qr/^break: \Q$copy\E:$where: not an audit record: $what at column \d+$/m,
            "$name, line $where: named") or diag($out);
        unlike($out, qr/^ok:/m, "$name, line $where: no ok");
    }
}

# the same key twice: JSON::PP, jq and Python keep the last

my $dup = $deny =~ s/"decision":"deny"/"decision":"deny","decision":"allow"/r;
is((reader($dup) || {})->{decision}, 'allow',
    'a second decision: readers read "allow"');
refused('a second decision', $dup, 'duplicate key "decision"');

my $esc = $deny =~ s/"decision":"deny"/"decision":"deny","dec\\u0069sion":"allow"/r;
is((reader($esc) || {})->{decision}, 'allow',
    'a second decision spelt with an escape: readers read "allow"');
refused('a second decision spelt with an escape', $esc,
    'duplicate key "decision"');

my $prev2 = $deny =~ s/\}\n\z/,"prev":"$zero"}\n/r;
refused('a second prev', $prev2, 'duplicate key "prev"');

my $nested = $lines[4] =~ s/"addr":/"addr":"x","addr":/r;
isnt($nested, $lines[4], 'a key twice in an upstream try');
refused('a key twice in a nested object', $nested, 'duplicate key "addr"');

# a decision cut short by \u0000: the verifier counted "allow"

my $nul = $deny =~ s/"decision":"deny"/"decision":"allow\\u0000x"/r;
is((reader($nul) || {})->{decision}, "allow\0x",
    '"allow\u0000x": readers read all of it');
refused('"allow\u0000x"', $nul, '"decision" is not one the gateway writes');
refused('"Allow"', $deny =~ s/"deny"/"Allow"/r,
    '"decision" is not one the gateway writes');

# bytes no JSON reader takes, which cJSON took

my %bytes = (
    'NUL between members'        => [ ',"decision"', ",\0\"decision\"",
                                      'unexpected byte' ],
    '0x01 between members'       => [ ',"decision"', ",\x01\"decision\"",
                                      'unexpected byte' ],
    'a vertical tab'             => [ ',"decision"', ",\x0b\"decision\"",
                                      'unexpected byte' ],
    'a raw tab in a string'      => [ '"deny"', "\"de\tny\"",
                                      'a raw control byte in a string' ],
    'a raw NUL in a string'      => [ '"deny"', "\"deny\0\"",
                                      'a raw control byte in a string' ],
    'invalid UTF-8'              => [ '"client":"', "\"client\":\"\xff",
                                      'invalid UTF-8' ],
    'an overlong UTF-8 "/"'      => [ '"client":"', "\"client\":\"\xc0\xaf",
                                      'invalid UTF-8' ],
    'a surrogate in UTF-8'       => [ '"client":"', "\"client\":\"\xed\xa0\x80",
                                      'invalid UTF-8' ],
    'a number with a leading 0'  => [ '"status":403', '"status":0403',
                                      'unexpected byte' ],
    'a number with a plus'       => [ '"status":403', '"status":+403',
                                      'unexpected byte' ],
    'an unpaired surrogate'      => [ '"client":"', '"client":"\ud800',
                                      'unpaired surrogate escape' ],
    'white space'                => [ ',"decision"', ', "decision"',
                                      'white space outside a string' ],
);

for my $name (sort keys %bytes) {
    my ($from, $to, $what) = @{ $bytes{$name} };
    my $l = $deny =~ s/\Q$from\E/$to/r;
    isnt($l, $deny, "$name: in the line");
    refused($name, $l, $what);
}

# an integer of 4301 digits: jq reads it, Python's json refuses it, so a
# Python review stops at that line and shows nothing after it

{
    my $l = $deny =~ s/"status":403/'"status":' . '9' x 4301/er;
    isnt($l, $deny, 'an integer of 4301 digits: in the line');
    refused('an integer of 4301 digits', $l, 'a number longer than 64 bytes');
}

refused('a BOM', "\xef\xbb\xbf$deny", 'byte order mark');
refused('a CR before the newline', $deny =~ s/\n\z/\r\n/r,
    'a carriage return before the newline');
refused('a space after the object', $deny =~ s/\n\z/ \n/r,
    'data after the object');
refused('nested 40 deep', $deny =~ s/\}\n\z/,"x":${\('[' x 40 . ']' x 40)}}\n/r,
    'nesting deeper than 16');
refused('65 keys', $deny =~ s/\}\n\z/join('', map { ",\"k$_\":1" } 1 .. 60) . "}\n"/er,
    'more than 64 keys in an object');

# an allow record whose items left out of its link are a nested key's:
# the verifier checked them against a nested body_sha256, while readers
# take the record's own "instances" and "body_sha256"

my ($items) = $lines[0] =~ /"instances":\[(.*?)\],"delay"/;
my $evil = '{"instance_id":"' . $OTHER_INSTANCE
    . '","current_version":"2.0.48.231200"}';
my $body = '{"databases_instance_infos":[' . $evil . '],"delay":"false"}';
my $trick = $lines[0] =~ s/,"instances":/,"x":{"a":1,"instances":[$items],"delay":"false","body_sha256":"${\sha256_hex('{"databases_instance_infos":[' . $items . '],"delay":"false"}')}"},"instances":/r;
$trick =~ s/("instances":\[)\Q$items\E(\],"delay":"false","decision")/$1$evil$2/;
$trick =~ s/("decision":"allow","body_sha256":")[0-9a-f]{64}/$1 . '1' x 64/e;
my $r = reader($trick) || {};
is(($r->{instances}[0] || {})->{instance_id}, $OTHER_INSTANCE,
    'nested instances: readers read the other instance');
is(chain_body_ok($trick), 1,
    'nested instances: the nested items make the nested body_sha256');
{
    my @l = @lines;
    $l[0] = $trick;
    ($rc, $out, $copy) = verify_lines(@l);
    is($rc, 1, 'nested instances: exit 1') or diag($out);
    like($out, qr/^break: \Q$copy\E:1: not an audit record: the items its link leaves out are not its own "instances" at column \d+$/m,
        'nested instances: named') or diag($out);
}

# lines every reader reads alike: still records

sub accepted {
    my ($name, $line, $decision) = @_;
    my @l = @lines;
    $l[2] = $line;
    is((reader($line) || {})->{decision}, $decision,
        "$name: readers read \"$decision\"");
    ($rc, $out, $copy) = verify_lines(@l);
    is($rc, 0, "$name: verifies") or diag($out);
    like($out, qr/\(2 allowed, 2 completed, 1 refused or failed\)/,
        "$name: counted as readers read it") or diag($out);
}

accepted('a key spelt with an escape',
    $deny =~ s/"decision"/"dec\\u0069sion"/r, 'deny');
accepted('\u0000 and a surrogate pair in the client',
    $deny =~ s/"client":"/"client":"\\u0000\\ud83d\\ude00/r, 'deny');
accepted('DEL, U+0085 and U+2028 escaped in the client',
    $deny =~ s/"client":"/"client":"\\u007f\\u0085\\u2028/r, 'deny');

# DEL, a C1 control and U+2028 raw, which the gateway never writes (it
# escapes them): readers that split lines by Unicode's rules (Python's
# str.splitlines()) cut a record at the last two

for my $c ([ 'a raw DEL', "\x7f", 'a raw control byte in a string' ],
    [ 'a raw U+0085', "\xc2\x85",
      'a raw control character or line separator in a string' ],
    [ 'a raw U+2028', "\xe2\x80\xa8",
      'a raw control character or line separator in a string' ])
{
    my ($name, $bytes, $what) = @$c;
    my $l = $deny =~ s/"client":"/"client":"$bytes/r;
    refused("$name in the client", $l, $what);
}

$t->done_testing;
