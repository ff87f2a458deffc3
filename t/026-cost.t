#!/usr/bin/perl

# What a guarded request costs, counted: nginx runs under valgrind's
# callgrind (one process, no master), and what each function did while
# a counted number of 1-instance batches went through a guarded location
# on one keep-alive connection (t/bench/client.pl, as `make bench` sends
# them) is divided by that number.  Calls and instructions counted so do
# not depend on the machine or its load.  Each check names work the
# gateway must not do for every batch; where nginx's own share is
# compared, the baseline is a location of the same nginx where the guard
# is off.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

plan(skip_all => 'the module is built into nginx (a sanitizer build)')
    unless $t->module_path;

for my $tool (qw(valgrind callgrind_control)) {
    plan(skip_all => "no $tool")
        unless grep { -x "$_/$tool" } split /:/, $ENV{PATH} || '';
}

# batches counted per case: every figure below is a whole number of
# calls a batch, so a few suffice
my $N = 10;

my $d = $t->testdir;

# the same answer for both locations: 200, whatever the signature (the
# signature itself is checked by the other tests)
$t->upstream(status => 200);
$t->write_credentials;

$t->run_wrapped(<<"EOF", [ 'valgrind', '--tool=callgrind',
master_process off;
daemon off;
error_log %%TESTDIR%%/logs/error.log warn;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0];
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_1%%;
        server_name localhost;

        location /v3/ {
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF
    "--callgrind-out-file=$d/cg.out", "--log-file=$d/logs/valgrind.log" ]);

my $path = upgrade_path();
my $body = $t->write_file('body-1.json', batch_json([ $INSTANCES[0] ]));

my $guard = measure($t->port(0));
my $off = measure($t->port(1));

ok($guard->{total} > $off->{total}, 'the guarded location was measured')
    or diag("guarded $guard->{total}, off $off->{total} instructions");

is(scalar(grep { $_->{decision} eq 'allow' } $t->audit_records),
    $N + 2, 'every guarded batch has its allow record');

# The SHA-256 states of public data (the body, the canonical request,
# the audit records) hold nothing to wipe once finalized: only the HMAC's
# inner and outer states, key material, are wiped, once each.  What is
# cleansed besides: the HMAC's inner digest, the MAC and its hex, the
# signer's window on the canonical request (its last bytes are a
# security token's with temporary credentials), the two signing
# headers' values once the proxy has sent them, and OpenSSL's own
# erasing of the last block in each of the six finals.

calls($guard, 'tg_sha256_wipe', 2, 'only the HMAC key states are wiped');
calls($guard, 'OPENSSL_cleanse', 14, 'nothing cleansed twice');

# The request's pool: a guarded batch of one takes no block more than an
# unguarded request (the items array was sized for
# taurus_guard_max_batch, 3,200 bytes, a block of its own).

baseline($guard, $off, 'ngx_memalign', 'pool blocks as many as unguarded');
baseline($guard, $off, 'malloc', 'mallocs as many as unguarded');

# The signed header names are lowercased once, into SignedHeaders, which
# the canonical request and the Authorization copy: only the method is
# changed in case as it is written (it was each name three times).

calls($guard, 'tg_out_case', 1, 'names lowercased once');

# The signer's own work (src/tg_sign.c: its checks, the canonical
# request, the Authorization; SHA-256 is OpenSSL's): the request's
# strings checked a table look-up or eight bytes at a time, not with
# comparisons of each byte (4,700 instructions a batch before, 3,480
# after), and the names lowercased eight bytes at a time as they are
# joined: about 3,250.

instructions($guard, 'src/tg_sign.c', 3350, 'the signer works on words');

# A digest's 64 hex digits (five a batch) from a table of every byte's
# two, not a digit at a time: about 150 instructions a digest (294
# before).

per_call($guard, 'tg_sha256_hex_of', 200, 'hex from a table of pairs');

# Time stamps (two audit records' and X-Sdk-Date a batch) and numbers
# written two digits at a time from a table, not with a division a
# digit: about 215 and 195 instructions (305 and 312 before), the
# calendar's arithmetic included.

per_call($guard, 'tg_rfc3339_ms', 250, 'time stamps two digits at a time');
per_call($guard, 'tg_sdk_date', 230, 'X-Sdk-Date two digits at a time');

# An audit field with nothing to escape (all of a batch's fifteen: the
# id, the digests, the addresses) is written with its name and quotes in
# one piece, not through the escaping writer.

calls($guard, 'tg_out_json', 0, 'plain audit fields in one piece');

# The route and the request's Content-Type are compared a word at a
# time (tg_caseless_eq(), memcmp()), not a byte at a time with
# ngx_strncasecmp(), which lowercases both sides and looks for a NUL:
# about 170 and 330 instructions a batch (580 and 640 before).

per_call($guard, 'ngx_http_taurus_guard_content_type', 250,
    'Content-Type compared a word at a time');
per_call($guard, 'ngx_http_taurus_guard_route', 450,
    'the route compared a word at a time');

# A flush nobody waits for (one worker: nobody ever does) wakes nobody:
# its unlock made a FUTEX_WAKE system call (the only syscall() of a
# batch) whether or not a worker slept on the flush lock.

calls($guard, 'syscall', 0, 'no futex wake-up for nobody');

# A flush syncs a duplicate of the audit file's descriptor (a reopen
# cannot close it under the flush), and the last flush's is kept for the
# next flush of the file: a batch flushed alone made a dup() and a
# close().  The duplicate is made by ngx_http_taurus_guard_audit_dup()
# (closed on exec), dup() by nothing.

calls($guard, $_, 0, 'the flush descriptor kept')
    for qw(dup ngx_http_taurus_guard_audit_dup);

# A location of the same nginx where the guard is off: nginx calls the
# module's hooks for its requests too (three phase handlers, the
# header filter and the body filters).  Each lets such a request go
# after a flag and a pointer or two, in the entries of
# ngx_http_taurus_guard_module.c, without calling the handler behind
# it, whose prologue and stack guard alone cost more: about 59
# instructions a request in all, the fetch's body filter and the 413
# page's included (129 when nginx called the handlers themselves; 75
# with the 413 page's filter whole in its entry).

my $hooks = 0;
$hooks += $off->{file}{$_} for grep { m{^ngx_module/} } keys %{ $off->{file} };
cmp_ok($hooks, '<=', 70, 'guard off: 70 instructions a request in the'
    . ' module at most') or diag(sprintf "%.0f instructions", $hooks);

calls($off, $_, 0, 'guard off: the handler behind the hook not called')
    for qw(ngx_http_taurus_guard_rewrite_handler ngx_http_taurus_guard_handler
        ngx_http_taurus_guard_log_handler ngx_http_taurus_guard_get_ctx
        ngx_http_taurus_guard_page_body);

# prove -v: where a guarded batch's instructions go, for the next change
if ($ENV{TEST_VERBOSE}) {
    my $s = $guard->{self};
    for my $f (grep { $s->{$_} >= 100 } sort { $s->{$b} <=> $s->{$a} }
        keys %$s)
    {
        diag(sprintf "%9.1f instructions %7.2f calls  %s", $s->{$f},
            $guard->{calls}{$f} || 0, $f);
    }
    diag(sprintf "%9.1f instructions in %s", $guard->{file}{$_}, $_)
        for sort keys %{ $guard->{file} };
    diag("instructions a batch: $guard->{total} guarded, $off->{total} off");
    diag(sprintf "%.1f instructions in the module a request, guard off",
        $hooks);
}

$t->done_testing;


# At most $max calls to $fn a batch.

sub calls {
    my ($m, $fn, $max, $what) = @_;
    my $n = $m->{calls}{$fn} || 0;
    cmp_ok($n, '<=', $max, "$what: $fn called $max times a batch at most")
        or diag("$fn: $n calls a batch");
}


# At most $max instructions a call of $fn and what it calls.

sub per_call {
    my ($m, $fn, $max, $what) = @_;
    my $c = $m->{calls}{$fn} || 0;
    my $n = $c ? ($m->{incl}{$fn} || 0) / $c : 0;
    ok($c > 0, "$what: $fn called") or return;
    cmp_ok($n, '<=', $max, "$what: $max instructions a call of $fn at most")
        or diag(sprintf "%s: %.0f instructions a call", $fn, $n);
}


# At most $max instructions a batch in the functions $file defines (and
# what they inline).

sub instructions {
    my ($m, $file, $max, $what) = @_;
    my $n = $m->{file}{$file} || 0;
    cmp_ok($n, '<=', $max, "$what: $max instructions a batch in $file at "
        . 'most') or diag(sprintf "%s: %.0f instructions a batch", $file, $n);
}


# No more calls to $fn a guarded batch than an unguarded request makes.
# Both may count a tenth of a call now and then (an upstream connection
# closed, a timer), never a whole one: half a call is let pass.

sub baseline {
    my ($m, $base, $fn, $what) = @_;
    my $n = $m->{calls}{$fn} || 0;
    my $b = $base->{calls}{$fn} || 0;
    cmp_ok($n, '<', $b + 0.5, "$what: $fn called $b times a batch at most")
        or diag("$fn: $n calls a batch");
}


# The calls and instructions of one batch on $port: two batches warm the
# location up (OpenSSL's lazy set-up, the first audit record), then the
# counters are zeroed, $N batches sent and the counters dumped.

sub measure {
    my ($port) = @_;

    my $pid = $t->{child_pid};
    my $client = $t->repo . '/t/bench/client.pl';

    system($^X, $client, $port, $path, $body, 2) == 0
        or die "the warm-up batches on $port failed\n";
    system("callgrind_control -z $pid >/dev/null 2>&1") == 0
        or die "callgrind_control -z failed\n";
    system($^X, $client, $port, $path, $body, $N) == 0
        or die "the counted batches on $port failed\n";

    my @before = glob "$d/cg.out.*";
    system("callgrind_control -d $pid >/dev/null 2>&1") == 0
        or die "callgrind_control -d failed\n";
    my @after = sort { ($a =~ /(\d+)$/)[0] <=> ($b =~ /(\d+)$/)[0] }
        glob "$d/cg.out.*";
    die "callgrind wrote no dump\n" unless @after > @before;

    # whole: its last line, "totals:", is written last
    my $end = now() + 10;
    while (now() < $end) {
        my $last = `tail -n 1 $after[-1]`;
        last if $last =~ /^totals:/;
        select(undef, undef, undef, 0.1);
    }

    my $m = parse($after[-1]);
    die "no totals in $after[-1]\n" unless $m->{total};

    $m->{calls}{$_} /= $N for keys %{ $m->{calls} };
    $m->{self}{$_} /= $N for keys %{ $m->{self} };
    $m->{incl}{$_} /= $N for keys %{ $m->{incl} };
    $m->{file}{$_} /= $N for keys %{ $m->{file} };
    $m->{total} /= $N;

    return $m;
}


# A callgrind dump: the calls each function got (from every caller) and
# the instructions it ran itself.  Names are compressed ("fn=(12) name"
# the first time, "fn=(12)" after); a cost line right after "calls=" is
# the call's inclusive cost, not the caller's own.

sub parse {
    my ($file) = @_;

    my (%name, %fname, %calls, %self, %incl, %in, $fn, $fl, $cfn, $call);
    my $total = 0;

    open my $fh, '<', $file or die "$file: $!\n";

    while (my $l = <$fh>) {
        # file names are compressed in one table for all their kinds
        if ($l =~ /^(c?f[lie])=\((\d+)\)(?: (.*))?$/) {
            $fname{$2} = $3 if defined $3;
            $fl = $fname{$2} if $1 eq 'fl';
            next;
        }

        if ($l =~ /^(c?)fn=\((\d+)\)(?: (.*))?$/) {
            $name{$2} = $3 if defined $3;
            if ($1) {
                $cfn = $name{$2};
            } else {
                $fn = $name{$2};
                $in{$fn} = $fl;
            }
            next;
        }

        if ($l =~ /^calls=(\d+)/) {
            $calls{$cfn} += $1;
            $call = 1;
            next;
        }

        if ($l =~ /^(?:summary|totals):\s*(\d+)/) {
            $total = $1;
            next;
        }

        if ($l =~ /^[+\-*]?\d*\s+(\d+)\s*$/ || $l =~ /^[+\-*]\s+(\d+)\s*$/)
        {
            if (defined $fn) {
                $self{$fn} += $1 unless $call;
                $incl{$fn} += $1;
            }
            $call = 0;
        }
    }

    close $fh;

    # the instructions of the functions each source file of ours defines
    my %file;
    for my $f (keys %self) {
        next unless defined $in{$f} && $in{$f} =~ m{\b(src|ngx_module)/(\S+)$};
        $file{"$1/$2"} += $self{$f};
    }

    return { calls => \%calls, self => \%self, incl => \%incl,
        file => \%file, total => $total };
}
