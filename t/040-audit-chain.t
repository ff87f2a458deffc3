#!/usr/bin/perl

# The audit hash chain: every record's "prev" is the SHA-256 of the line
# before it (newline included, 64 zeros for the first), without its
# instances' items when it is an allow record (their body_sha256 covers
# them), and taurus-guard-verify finds a changed, removed or reordered
# record at the line after it, a changed item of an allow record too.  A
# file written before that brief form (every link over the whole line)
# still verifies, alone or continued by the gateway.  The chain goes on
# across a restart that finds a torn last line (cut off, logged) and
# across a reload.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(sha256_hex);
use JSON::PP;
use Test::More;

our $TODO;

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

my $new_chain = 'is empty and no rotated file is beside it: a new chain '
    . 'starts';
like($t->error_log, qr/\[notice\].*audit log "\Q$log\E" \Q$new_chain\E/,
    'first start: a new chain, logged');

# lines of a file, each with its newline (a torn end without one)

sub lines_of {
    my ($path) = @_;
    my $c = $t->read_file($path);
    return () unless defined $c;
    return $c =~ /([^\n]*\n|[^\n]+\z)/g;
}

sub verify {
    my (@files) = @_;
    my $out = $t->_cmd($verify, @files);
    return ($? >> 8, $out);
}

sub write_copy {
    my ($name, @lines) = @_;
    return $t->write_file($name, join '', @lines);
}

# one batch, and its records once they are all written

sub batch {
    my ($body, $n) = @_;
    my $r = $t->post(upgrade_path(), $body);
    my $id = header($r, 'X-Taurus-Guard-Id') || 'none';
    $t->wait_audit($id, $n);
    return ($r, $id);
}

# every line links to the one before it

sub check_links {
    my ($name, $start, @lines) = @_;
    my ($bad, $prev) = (0, $start);
    for my $i (0 .. $#lines) {
        my $rec = eval { $json->decode($lines[$i]) };
        if (!$rec || !defined $rec->{prev} || $rec->{prev} ne $prev) {
            diag("$name: line " . ($i + 1) . " does not link: $lines[$i]");
            $bad++;
        }
        $prev = chain_digest($lines[$i]);
    }
    is($bad, 0, "$name: every record's prev is the link of the line "
        . "before it");
    return $prev;
}

my ($r, $id1) = batch(batch_json([ $INSTANCES[0] ]), 2);
is($r->{status}, 200, 'allowed batch: 200');
($r) = batch(batch_json([ $OTHER_INSTANCE ]), 1);
is($r->{status}, 403, 'denied batch: 403');
($r) = batch('{"delay":"false"}', 1);
is($r->{status}, 400, 'invalid batch: 400');
($r) = batch(batch_json([ $INSTANCES[1] ], '"true"'), 2);
is($r->{status}, 200, 'second allowed batch: 200');

my @lines = lines_of($log);
is(scalar @lines, 6, 'six records: allow, done, deny, invalid, allow, done');
is_deeply([ map { (eval { $json->decode($_) } || {})->{decision} } @lines ],
    [ qw(allow done deny invalid allow done) ], 'decisions in order');
is((eval { $json->decode($lines[0]) } || {})->{prev}, $zero,
    'first record: prev is 64 zeros');
check_links('first run', $zero, @lines);

my ($rc, $out) = verify($log);
is($rc, 0, 'verify: exit 0') or diag($out);
like($out, qr/chain intact/, 'verify: chain intact');
like($out, qr/\b6 records in 1 file\(s\)/, 'verify: counts the records');
like($out, qr/\(2 allowed, 2 completed, 2 refused or failed\)/,
    'verify: counts decisions');

# tampering, in copies: one byte of the id of line 3 (still JSON)

my @tampered = @lines;
$tampered[2] =~ s/"id":"(.)/'"id":"' . ($1 eq 'a' ? 'b' : 'a')/e;
isnt($tampered[2], $lines[2], 'tamper: line 3 changed');
my $copy = write_copy('tampered.log', @tampered);
($rc, $out) = verify($copy);
is($rc, 1, 'tamper: verify exits 1');
like($out, qr/^break: \Q$copy\E:4:/m, 'tamper: break at the next line')
    or diag($out);

# a digit of a status in the done record (line 2)

@tampered = @lines;
$tampered[1] =~ s/"status":200/"status":201/;
$copy = write_copy('tampered2.log', @tampered);
($rc, $out) = verify($copy);
is($rc, 1, 'tampered status: verify exits 1');
like($out, qr/^break: \Q$copy\E:3:/m, 'tampered status: break at line 3')
    or diag($out);

# a record removed

$copy = write_copy('removed.log', @lines[0, 1, 3, 4, 5]);
($rc, $out) = verify($copy);
is($rc, 1, 'removed: verify exits 1');
like($out, qr/^break: \Q$copy\E:3:/m, 'removed: break where it was')
    or diag($out);

# two records swapped

$copy = write_copy('swapped.log', @lines[0, 1, 3, 2, 4, 5]);
($rc, $out) = verify($copy);
is($rc, 1, 'swapped: verify exits 1');
like($out, qr/^break: \Q$copy\E:3:/m, 'swapped: break at the first moved')
    or diag($out);

# the allow records' links leave their items out, and their items make
# their body again

for my $i (0, 4) {
    isnt(chain_digest($lines[$i]), sha256_hex($lines[$i]),
        'allow record ' . ($i + 1) . ': linked without its items');
    is(chain_body_ok($lines[$i]), 1,
        'allow record ' . ($i + 1) . ': its items make its body_sha256');
}
is(chain_digest($lines[2]), sha256_hex($lines[2]),
    'the deny record: linked by its whole line');

# an instance of an allow record changed (line 1): its link is the same,
# its items no longer make its body

@tampered = @lines;
$tampered[0] =~ s/("instances":\[\{"instance_id":")(.)/$1 . ($2 eq 'a' ? 'b' : 'a')/e;
isnt($tampered[0], $lines[0], 'changed instance: line 1 changed');
is(chain_digest($tampered[0]), chain_digest($lines[0]),
    'changed instance: the same link');
$copy = write_copy('instance.log', @tampered);
($rc, $out) = verify($copy);
is($rc, 1, 'changed instance: verify exits 1');
like($out, qr/^break: \Q$copy\E:2: the instances of the record before it do not match its body_sha256/m,
    'changed instance: break at line 2, named') or diag($out);

# the same in the last record, which nothing links to

$copy = write_copy('instance-last.log', @lines[0 .. 3], $tampered[0] =~ s/"prev":"[0-9a-f]{64}"/'"prev":"' . chain_digest($lines[3]) . '"'/er);
($rc, $out) = verify($copy);
is($rc, 1, 'changed instance, last record: verify exits 1');
like($out, qr/^break: \Q$copy\E:5: its instances do not match its body_sha256/m,
    'changed instance, last record: named') or diag($out);

# the delay of an allow record changed (line 5): a new link

@tampered = @lines;
$tampered[4] =~ s/"delay":"true"/"delay":"false"/;
isnt($tampered[4], $lines[4], 'changed delay: line 5 changed');
$copy = write_copy('delay.log', @tampered);
($rc, $out) = verify($copy);
is($rc, 1, 'changed delay: verify exits 1');
like($out, qr/^break: \Q$copy\E:6: "prev" does not match/m,
    'changed delay: break at line 6') or diag($out);

# a file written before the brief form: each link over the whole line;
# then one the gateway went on with after an upgrade (old links, then
# new ones from the old file's last line)

sub relink {
    my ($old, @l) = @_;
    for my $i (1 .. $#l) {
        my $d = $i <= $old ? sha256_hex($l[$i - 1]) : chain_digest($l[$i - 1]);
        $l[$i] =~ s/"prev":"[0-9a-f]{64}"/"prev":"$d"/;
    }
    return @l;
}

my @old = relink(5, @lines);
is((eval { $json->decode($old[1]) } || {})->{prev}, sha256_hex($old[0]),
    'old file: linked by whole lines');
$copy = write_copy('old.log', @old);
($rc, $out) = verify($copy);
is($rc, 0, 'old file: verifies') or diag($out);

$copy = write_copy('mixed.log', relink(2, @lines));
($rc, $out) = verify($copy);
is($rc, 0, 'old links, then new ones: verifies') or diag($out);

# in the old file an allow record's changed instance breaks the whole-line
# link after it

@tampered = @old;
$tampered[0] =~ s/("instances":\[\{"instance_id":")(.)/$1 . ($2 eq 'a' ? 'b' : 'a')/e;
$copy = write_copy('old-tampered.log', @tampered);
($rc, $out) = verify($copy);
is($rc, 1, 'old file, changed instance: verify exits 1');
like($out, qr/^break: \Q$copy\E:2: "prev" does not match/m,
    'old file, changed instance: break at line 2') or diag($out);

# the last record removed cannot be seen in one file (t/033 has -t for
# it), but the first can: the chain then starts "after earlier, unchecked
# records", and is unanchored (exit 3)

$copy = write_copy('headless.log', @lines[1 .. 5]);
($rc, $out) = verify($copy);
is($rc, 3, 'headless: the rest is a chain, unanchored') or diag($out);
like($out, qr/after earlier, unchecked records/,
    'headless: verify says the start is not the beginning');

# every instance of an allow record removed ("instances":[]): that line's
# whole-line link is its brief link, but its items no longer make its
# body (an earlier verifier took the whole-line link and never looked)

@tampered = @lines;
$tampered[0] =~ s/("instances":\[).*?(\],"delay")/$1$2/;
like($tampered[0], qr/"instances":\[\],/, 'instances removed: line 1 changed');
is(sha256_hex($tampered[0]), chain_digest($lines[0]),
    'instances removed: its whole line hashes to the old link');
$copy = write_copy('no-instances.log', @tampered);
($rc, $out) = verify($copy);
is($rc, 1, 'instances removed: verify exits 1');
like($out, qr/^break: \Q$copy\E:2: the instances of the record before it do not match its body_sha256/m,
    'instances removed: break at line 2, named') or diag($out);

# a second object on a record's line: jq reads two records there

$copy = write_copy('two-objects.log', @lines[0 .. 4],
    $lines[5] =~ s/\n\z/ {"decision":"allow","id":"forged"}\n/r);
($rc, $out) = verify($copy);
is($rc, 1, 'two objects on a line: verify exits 1');
like($out, qr/^break: \Q$copy\E:6: not an audit record/m,
    'two objects on a line: named') or diag($out);

# a line too long to hold in memory: verify cannot read it, and says so
# (exit 2) rather than stopping there as at the file's end (an earlier
# verifier said "ok" and never read the forged record after it)

SKIP: {
    my $huge = $t->testdir . '/huge.log';
    write_copy('huge.log', @lines[0 .. 2]);
    truncate($huge, (-s $huge) + 400 * 1024 * 1024)
        or skip("no sparse file: $!", 3);
    open my $fh, '>>', $huge or die "$huge: $!\n";
    print $fh "\n", $lines[3];
    close $fh;

    my $cmd = "ulimit -v 300000 && exec $verify $huge";
    $out = `sh -c '$cmd' 2>&1`;
    $rc = $? >> 8;
    is($rc, 2, 'a 400 MB line under a 300 MB limit: verify exits 2');
    unlike($out, qr/^ok:/m, 'a 400 MB line: no "ok"') or diag($out);
    like($out, qr/\Q$huge\E:4: cannot be read/, 'a 400 MB line: named')
        or diag($out);
    unlink $huge;
}

# a torn end: verify refuses it

$copy = write_copy('torn.log', @lines, '{"id":"0123');
($rc, $out) = verify($copy);
is($rc, 1, 'torn copy: verify exits 1');
like($out, qr/^break: \Q$copy\E:7: torn record/m, 'torn copy: named')
    or diag($out);

# a crash in the middle of a write: nginx stopped, a partial record left
# at the end; the next start cuts it off, logs it, and links to the last
# whole line

$t->stop;

my $last_hash = chain_digest($lines[-1]);
my $torn = substr($lines[2], 0, 57);
open my $fh, '>>', $log or die "$log: $!\n";
print $fh $torn;
close $fh;
is(-s $log, length(join '', @lines) + length $torn, 'torn record appended');

$t->upstream;
$t->run;

my $torn_re = 'ends with a torn record of 57 bytes, cut off';
like($t->error_log, qr/\[warn\].*taurus_guard: audit log "\Q$log\E" $torn_re/,
    'restart: torn record logged');
is(-s $log, length(join '', @lines), 'restart: torn record cut off');

my ($id2);
($r, $id2) = batch(batch_json([ $INSTANCES[0] ]), 2);
is($r->{status}, 200, 'after restart: 200');

my @after = lines_of($log);
is(scalar @after, 8, 'after restart: two more records');
my $first = eval { $json->decode($after[6]) } || {};
is($first->{id}, $id2, 'after restart: the new allow record');
is($first->{prev}, $last_hash,
    'after restart: prev is the hash of the last whole line');
unlike(join('', @after), qr/\Q$torn\E\{/, 'no record ran into the torn one');
check_links('across the restart', $zero, @after);

($rc, $out) = verify($log);
is($rc, 0, 'verify across the restart: exit 0') or diag($out);
like($out, qr/8 records in 1 file\(s\), chain intact/,
    'verify across the restart: intact');

# a reload: the new cycle goes on from the old one's last record

my $master = $t->_nginx_pid;
my @workers_before = workers($master);
$t->reload;

for (1 .. 40) {
    my @w = workers($master);
    last if @w && !grep { my $o = $_; grep { $_ == $o } @w } @workers_before;
    select undef, undef, undef, 0.1;
}

isnt(join(',', workers($master)), join(',', @workers_before),
    'reload: new workers');

my $id3;
($r, $id3) = batch(batch_json([ $INSTANCES[1] ]), 2);
is($r->{status}, 200, 'after reload: 200');
($r) = batch(batch_json([ $OTHER_INSTANCE ]), 1);
is($r->{status}, 403, 'after reload: denied');

my @reload = lines_of($log);
is(scalar @reload, 11, 'after reload: three more records');
is((eval { $json->decode($reload[8]) } || {})->{prev}, chain_digest($after[7]),
    'after reload: first record links to the last before it');
check_links('across the reload', $zero, @reload);

($rc, $out) = verify($log);
is($rc, 0, 'verify across the reload: exit 0') or diag($out);
my $counts = '(4 allowed, 4 completed, 3 refused or failed)';
like($out, qr/11 records in 1 file\(s\), chain intact \Q$counts\E/,
    'verify across the reload: intact, counted');

# a rotation (the new file created empty, as logrotate's "create" does),
# then a restart before the first record: the new file holds no line to
# link to, so the chain goes on from the newest rotated file beside it
# (an older one, a compressed older one and a file of another name are
# there too); a newest one that is compressed starts a new chain

{
    my $older = "$log-20261101";
    $t->write_file('audit.log-20261101', $after[0]);
    $t->write_file('audit.log.2.gz', "\x1f\x8b not read");
    $t->write_file('audit.logs', $after[1]);
    utime time - 7200, time - 7200, $older, "$log.2.gz";

    rename $log, "$log.1" or die "rename: $!\n";
    open my $nf, '>', $log or die "$log: $!\n";
    close $nf;

    $t->stop;
    $t->upstream;
    $t->run;

    my $linked = 'is empty, its chain goes on from the last record of '
        . '"audit.log.1"';
    like($t->error_log, qr/\[notice\].*audit log "\Q$log\E" \Q$linked\E/,
        'rotated, then restarted: the file linked to is logged');

    my ($rr) = batch(batch_json([ $INSTANCES[0] ]), 2);
    is($rr->{status}, 200, 'rotated, then restarted: 200');

    my @new = lines_of($log);
    is((eval { $json->decode($new[0]) } || {})->{prev},
        chain_digest($reload[-1]),
        'rotated, then restarted: the first record links to the last of '
        . 'the rotated file');

    my ($vrc, $vout) = verify("$log.1", $log);
    is($vrc, 0, 'rotated, then restarted: the series verifies')
        or diag($vout);

    # again, the rotated file compressed and so the newest: a new chain

    rename $log, "$log.3.gz" or die "rename: $!\n";
    open $nf, '>', $log or die "$log: $!\n";
    close $nf;

    $t->stop;
    $t->upstream;
    $t->run;

    my $packed = 'is empty and the file before it, "audit.log.3.gz", is '
        . 'compressed: a new chain starts';
    like($t->error_log, qr/\[notice\].*audit log "\Q$log\E" \Q$packed\E/,
        'compressed, then restarted: logged');

    ($rr) = batch(batch_json([ $INSTANCES[1] ]), 2);
    is($rr->{status}, 200, 'compressed, then restarted: 200');
    is((eval { $json->decode((lines_of($log))[0]) } || {})->{prev}, $zero,
        'compressed, then restarted: a new chain from 64 zeros');
}

# the worker processes of a master

sub workers {
    my ($m) = @_;
    my @w;
    opendir my $d, '/proc' or return ();
    for my $p (grep { /\A\d+\z/ } readdir $d) {
        open my $f, '<', "/proc/$p/stat" or next;
        my $s = <$f>;
        close $f;
        push @w, $p if defined $s && $s =~ /\)\s+\S\s+(\d+)/ && $1 == $m;
    }
    closedir $d;
    return sort { $a <=> $b } @w;
}

$t->done_testing;
