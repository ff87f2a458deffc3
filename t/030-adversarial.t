#!/usr/bin/perl

# Our own adversarial suite: every record of t/data/adversarial.txt is a
# request as raw bytes on the wire, sent on a fresh connection to one
# nginx with the module in front of the verifying upstream.  For each:
#
#   - the status (exact, or a class such as 4xx), and who answered: the
#     gateway (a JSON refusal with its audit id), nginx before the guarded
#     location was chosen, or nginx inside it (audited by the log phase);
#   - a refusal forwarded nothing: the upstream's record count did not
#     grow;
#   - an accepted request reached the upstream exactly once, signed so
#     that the upstream's own code verifies it, audited before it
#     arrived, with the body byte for byte the canonical re-serialization,
#     X-Project-Id the path's project, and no credential header value of
#     the caller's;
#   - every request the gateway saw has its audit record(s).
#
# The data file format is documented at its top.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(sha256_hex);
use Encode qw(encode_utf8);
use JSON::PP;
use MIME::Base64 qw(decode_base64);
use POSIX qw(strftime);
use Time::HiRes qw(time);
use Test::More;

use Test::TaurusGuard qw(:all);

my $DATA = "$FindBin::Bin/data/adversarial.txt";

# 101 more instances of $PROJECT, for the big batches

my @GEN = map { sprintf('%032xin07', 0xadad0000 + $_) } 1 .. 101;

# the usual header block of a JSON case

my $STD = "Host: localhost\r\nConnection: close\r\n"
    . "Content-Type: application/json\r\nContent-Length: %%CL%%\r\n";

my %PORTS = (main => 0, small => 'SMALL', tight => 'TIGHT',
    nobuf => 'NOBUF', infile => 'INFILE', keepup => 'KEEPUP');

# headers that carry or shape credentials: the caller's never go upstream

my $CRED_RE = qr/\A(?:authorization|x-auth-token|x-security-token|
    x-project-id|x-taurus-guard-id|x-sdk-.*)\z/xi;

my @cases = read_cases($DATA);

# TG_ADV_ONLY=regex: only the cases whose name matches (for debugging)

@cases = grep { $_->{name} =~ /$ENV{TG_ADV_ONLY}/ } @cases
    if defined $ENV{TG_ADV_ONLY};

my $t = Test::TaurusGuard->new;

$t->write_file('allow.d/gen.conf', "$PROJECT @GEN;\n");
$t->upstream(token => $TEST_TOKEN);
$t->write_credentials;
$t->write_token;

my $guarded = <<'EOF';
        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location / {
            return 404;
        }
EOF

$t->run(<<"EOF");
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_token file=%%TESTDIR%%/token;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;
    taurus_guard_max_body_size 64k;

    taurus_guard_allow {
        %%PROJECT%% $INSTANCES[0] $INSTANCES[1] $INSTANCES[2];
        %%PROJECT2%% $INSTANCES[2];
        include %%TESTDIR%%/allow.d/*.conf;
    }

    keepalive_timeout 1s;
    client_body_timeout 2s;

    upstream kept {
        server 127.0.0.1:%%PORT_UP%%;
        keepalive 4;
    }

    server {
        listen 127.0.0.1:%%PORT_KEEPUP%%;
        server_name localhost;
        client_body_buffer_size 1k;

        location /v3/ {
            taurus_guard on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://kept;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;
$guarded
    }

    server {
        listen 127.0.0.1:%%PORT_SMALL%%;
        server_name localhost;
        client_body_buffer_size 1k;
$guarded
    }

    server {
        listen 127.0.0.1:%%PORT_TIGHT%%;
        server_name localhost;
        client_max_body_size 1k;
$guarded
    }

    server {
        listen 127.0.0.1:%%PORT_INFILE%%;
        server_name localhost;
        client_body_in_file_only clean;
$guarded
    }

    server {
        listen 127.0.0.1:%%PORT_NOBUF%%;
        server_name localhost;
        client_body_buffer_size 1k;

        location /v3/ {
            taurus_guard on;
            proxy_request_buffering off;
            proxy_http_version 1.1;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }
    }
}
EOF

my %seen_name;
my %cats;
my $accepted_total = 0;

# the audit log's records so far, and by id (see audit_count)

my (@AUDIT, %AUDIT_ID);
my $audit_off = 0;
my $upstream_seen = 0;

ok(@cases >= 120 || defined $ENV{TG_ADV_ONLY},
    scalar(@cases) . ' cases in adversarial.txt');

for my $c (@cases) {
    ok(!$seen_name{ $c->{name} }++, "$c->{name}: unique name");
    $cats{ $c->{category} }++;
    $cats{_keepup}++ if ($c->{port} || '') eq 'keepup';
    my $start = time;
    run_case($c);
    my $took = time - $start;
    diag(sprintf '%s: %.2fs', $c->{name}, $took)
        if $ENV{TG_ADV_TIMES} && $took > 0.3;
}

# accepted requests, and nothing else, ever reached the upstream (a late
# smuggled request would show up here)

select undef, undef, undef, 0.3;
is(scalar(upstream_lines()), $upstream_seen,
    'no request reached the upstream after its case was over');

# the keepup cases went over one kept-alive upstream connection: a body
# of the wrong length would have shown up there as a bogus request

ok((grep { ($_->{seq} || 0) > 1 } $t->upstream_records),
    'an upstream connection was reused') if $cats{_keepup};

ok($accepted_total > 0 || defined $ENV{TG_ADV_ONLY},
    "$accepted_total accepted requests checked upstream");

# the audit file: JSON lines, no raw control byte from any request

my $audit = $t->read_file('audit.log');
$audit = '' unless defined $audit;
my @bad = grep { defined $_->{_bad_line} } $t->audit_records;
is(scalar @bad, 0, 'every audit line is JSON')
    or diag(explain(\@bad));
ok($audit !~ /[\x00-\x09\x0b-\x1f\x7f]/,
    'no raw control byte in the audit log');

diag(join ', ', map { "$_: $cats{$_}" } grep { !/\A_/ } sort keys %cats)
    if $ENV{TEST_VERBOSE};

$t->done_testing;


# ---- one case ------------------------------------------------------

sub run_case {
    my ($c) = @_;

    my $n = $c->{name};
    my ($raw, $pieces) = build_request($c);

    my $before = upstream_lines();
    my $audit_before = audit_count();

    my $r = $t->http(@$pieces == 1 ? $pieces->[0] : $pieces,
        port => $PORTS{ $c->{port} || 'main' },
        delay => defined $c->{delay} ? $c->{delay} : 0.05,
        timeout => $c->{timeout} || 6);

    my $head_req = $raw =~ /\AHEAD /;
    my @resp = split_responses($r->{raw}, $head_req);

    # a known open issue: only what is wrong is checked, as TODO

    if (defined $c->{todo}) {
        my @new = upstream_records_from($before);
        $upstream_seen = $before + @new;
        my $e = parse_expect($c->{expect}, $n);
        local $main::TODO = $c->{todo};
        status_ok(($resp[0] || {})->{status}, $e->{status}, $n);
        is(scalar @new, $e->{by} eq 'upstream' ? 1 : 0,
            "$n: forwarded as expected");
        return;
    }

    my @exp = ($c->{expect});
    push @exp, $c->{second} if defined $c->{second};

    my $want_up = 0;
    my $refused_ok = 0;
    my @id_ok;

    for my $i (0 .. $#exp) {
        my $label = $i ? "$n (second response)" : $n;
        my $e = parse_expect($exp[$i], $label);
        my $resp = $resp[$i];

        if (!defined $resp && $e->{status} =~ /\bnone\b/) {
            pass("$label: status $e->{status} (none)");

            # nginx gave up on the request inside the guarded location
            # (a body timeout): no id to look for, but a new record

            if ($e->{by} eq 'nginx-guarded') {
                my @a;
                for (1 .. 40) {
                    audit_count();
                    @a = grep { ($_->{reason} || '') =~ /refused by nginx/ }
                        @AUDIT[$audit_before .. $#AUDIT];
                    last if @a;
                    select undef, undef, undef, 0.05;
                }
                is(scalar @a, 1, "$label: audited as refused by nginx");
            }

            next;
        }

        if (!defined $resp) {
            fail("$label: a response");
            diag("raw response: " . printable($r->{raw}));
            next;
        }

        if (!status_ok($resp->{status}, $e->{status}, $label)) {
            diag("request: " . printable($raw) . "\nresponse: "
                . printable($resp->{raw}));
            $refused_ok = 1 if $e->{by} eq 'upstream';
            next;
        }

        my $id = header($resp, 'X-Taurus-Guard-Id');

        if ($e->{by} eq 'upstream') {
            $want_up++;
            push @id_ok, [ $label, $id, $i ];
            next;
        }

        if ($e->{by} eq 'guard') {
            guard_refusal($c, $resp, $id, $label, $head_req);

        } elsif ($e->{by} eq 'nginx-guarded') {

            # client_max_body_size's 413 is answered as the gateway's
            # refusal; nginx's other refusals keep nginx's own page

            if ($resp->{status} == 413) {
                is(($resp->{json} || {})->{error_code}, 'TG.0413',
                    "$label: the gateway's JSON for nginx's 413");
            } else {
                ok(!defined $resp->{json}
                    || !defined $resp->{json}{error_code},
                    "$label: nginx's own page");
            }

            like($id || '', qr/\A[0-9a-f]{32}\z/, "$label: X-Taurus-Guard-Id")
                or next;
            my @a = audit_wait($id, 1);
            my ($rec) = grep { ($_->{decision} || '') ne 'done' } @a;
            ok($rec && ($rec->{decision} || '') ne 'allow'
                && ($rec->{reason} || '') =~ /refused by nginx/
                && ($rec->{status} || 0) == $resp->{status},
                "$label: audited as refused by nginx")
                or diag(explain(\@a));

        } else {
            # nginx refused before the guarded location was chosen: no
            # module ran, so no id
            ok(!defined $id, "$label: answered by nginx, not the gateway")
                or diag("response: " . printable($resp->{raw}));
        }
    }

    # no more responses than expected: nothing smuggled got answered

    my $nexp = grep { !/\Anone\b/ } @exp;
    ok(@resp <= $nexp, "$n: no unexpected response")
        or diag("responses: " . printable($r->{raw}));

    # what reached the upstream

    my @new = upstream_records_from($before);

    $upstream_seen = $before + @new;

    if ($refused_ok) {
        # an accepted request was refused: its status failed already
        return;
    }

    if ($want_up == 0) {
        is(scalar @new, 0, "$n: nothing forwarded")
            or diag(explain([ map { $_->{target} } @new ]));
        return;
    }

    $accepted_total += $want_up;

    is(scalar @new, $want_up, "$n: $want_up request(s) upstream")
        or diag(explain([ map { $_->{target} } @new ]));

    my @canon = (expand_text($c->{upstream} // '%%BATCH%%'));
    push @canon, expand_text($c->{upstream2} // '%%BATCH%%') if $want_up > 1;

    for my $k (0 .. $want_up - 1) {
        my ($label, $id) = @{ $id_ok[$k] };
        upstream_ok($c, $label, $new[$k], $canon[$k], $id, $raw);
    }
}


sub guard_refusal {
    my ($c, $resp, $id, $label, $head_req) = @_;

    my $status = $resp->{status} || 0;

    my $ok = like($id || '', qr/\A[0-9a-f]{32}\z/,
        "$label: X-Taurus-Guard-Id");

    if (!$head_req) {
        my $j = $resp->{json} || {};
        $ok &= is($j->{error_code}, sprintf('TG.%04d', $status),
            "$label: error_code");
        $ok &= is($j->{audit_id}, $id, "$label: audit_id is the id");

        if (defined $c->{denied}) {
            $ok &= is(join(' ', map { encode_utf8($_) }
                @{ $j->{denied} || [] }), expand_text($c->{denied}),
                "$label: denied IDs");
        }

        if (defined $c->{reason}) {
            my $re = expand_text($c->{reason}, 1);
            $ok &= like(encode_utf8($j->{error_msg} // ''), qr/$re/,
                "$label: error_msg");
        }
    }

    diag("response: " . printable($resp->{raw})) unless $ok;

    return unless defined $id;

    my @a = audit_wait($id, 1);
    my ($rec) = grep { ($_->{decision} || '') ne 'done' } @a;
    ok($rec && ($rec->{decision} || '') =~ /\A(?:invalid|deny|error)\z/
        && ($rec->{status} || 0) == $status && length($rec->{reason} // ''),
        "$label: audited as refused ($status)") or diag(explain(\@a));
}


sub upstream_ok {
    my ($c, $label, $u, $canon, $id, $raw) = @_;

    $u ||= { headers => [], signature => {} };
    my $h = $u->{headers} || [];
    my $body = decode_base64($u->{body_b64} // '');

    my ($project) = $raw =~ m{\A\S+\s+/v3/(\w{32})/};
    $project //= '?';

    is($u->{method}, 'POST', "$label: POST upstream");
    is($u->{target}, upgrade_path($project), "$label: route upstream");
    ok($body eq $canon, "$label: canonical body upstream")
        or diag("upstream got: " . printable($body) . "\nexpected:    "
            . printable($canon));
    is($u->{signature}{ok}, 1, "$label: signature verifies")
        or diag(explain($u->{signature}));
    is($u->{token_ok}, 1, "$label: the configured X-Auth-Token");
    is($u->{audit_seen}, 1, "$label: audited before it arrived");

    is(join('|', headers_named($h, 'Content-Length')), length $canon,
        "$label: Content-Length of the canonical body");
    is(scalar(headers_named($h, 'Transfer-Encoding')), 0,
        "$label: no Transfer-Encoding");
    is(join('|', headers_named($h, 'Content-Type')), 'application/json',
        "$label: one Content-Type, the gateway's");
    is(join('|', headers_named($h, 'X-Project-Id')), $project,
        "$label: one X-Project-Id, the path's");
    is(join('|', headers_named($h, 'X-Taurus-Guard-Id')), $id // '',
        "$label: one X-Taurus-Guard-Id, the response's");
    is(join('|', headers_named($h, 'X-Auth-Token')), $TEST_TOKEN,
        "$label: one X-Auth-Token, the configured one");

    my @auth = headers_named($h, 'Authorization');
    ok(@auth == 1 && $auth[0] =~ /\ASDK-HMAC-SHA256 Access=\Q$TEST_AK\E, /,
        "$label: one Authorization, the gateway's") or diag(explain(\@auth));

    my @date = headers_named($h, 'X-Sdk-Date');
    my $now = time;
    my %near = map { (strftime('%Y%m%dT%H%M%SZ', gmtime($now + $_)) => 1) }
        -120 .. 5;
    ok(@date == 1 && $near{ $date[0] }, "$label: one X-Sdk-Date, now")
        or diag(explain(\@date));

    # what nginx's proxy always drops: an h2c or websocket upgrade, an
    # expectation, TE, Keep-Alive

    my @hop = grep { $_->[0] =~ /\A(?:upgrade|expect|te|keep-alive
        |content-encoding|trailer|http2-settings)\z/xi }
        @$h;
    is(scalar @hop, 0, "$label: no Upgrade, Expect, TE, Keep-Alive, "
        . "Content-Encoding, Trailer, HTTP2-Settings upstream")
        or diag(explain(\@hop));

    my @sdk = grep { $_->[0] =~ /\Ax-sdk-/i && lc $_->[0] ne 'x-sdk-date'
        || lc $_->[0] eq 'x-security-token' } @$h;
    is(scalar @sdk, 0, "$label: no other X-Sdk-*, no X-Security-Token")
        or diag(explain(\@sdk));

    # no value of any credential header the caller sent arrives anywhere

    my @client = client_cred_values($raw);
    my @leak;
    for my $v (@client) {
        next unless length $v >= 4;
        push @leak, grep { index($_->[1], $v) >= 0 } @$h;
    }
    push @leak, grep { "$_->[0]: $_->[1]" =~ /EVIL/i } @$h;
    is(scalar @leak, 0, "$label: no caller credential value upstream")
        or diag(explain(\@leak));

    # the audit records of that id: allow (with the digest), then done

    my @a = audit_wait($id // 'none', 2);
    my ($allow) = grep { ($_->{decision} || '') eq 'allow' } @a;
    my ($done) = grep { ($_->{decision} || '') eq 'done' } @a;
    ok($allow && ($allow->{body_sha256} || '') eq sha256_hex($canon)
        && ($allow->{project_id} || '') eq $project,
        "$label: allow record with the body's digest") or diag(explain(\@a));
    ok($done && ($done->{status} || 0) == 200, "$label: done record, 200")
        or diag(explain(\@a));
}


# The values of the credential headers in the caller's header block.

sub client_cred_values {
    my ($raw) = @_;
    my $end = index($raw, "\r\n\r\n");
    my $head = $end < 0 ? $raw : substr($raw, 0, $end);
    my @v;
    for my $l (split /\r?\n/, $head) {
        my ($name, $value) = $l =~ /\A([^:\s]+)\s*:[ \t]*(.*?)[ \t]*\z/
            or next;
        push @v, $value if $name =~ $CRED_RE;
    }
    return @v;
}


sub status_ok {
    my ($got, $want, $label) = @_;

    if ($want =~ /\A(\d)xx\z/) {
        return like($got // 'none', qr/\A$1\d\d\z/,
            "$label: status $want (" . ($got // 'none') . ")");
    }

    if ($want =~ /\|/) {
        my %w = map { $_ => 1 } split /\|/, $want;
        my $ok = ok(defined $got && $w{$got},
            "$label: status $want (" . ($got // 'none') . ")");
        diag("got " . ($got // 'none')) unless $ok;
        return $ok;
    }

    return is($got, $want, "$label: status $want");
}


# "200", "404 guard", "400 nginx", "413 nginx-guarded", "none"

sub parse_expect {
    my ($text, $label) = @_;
    my ($status, $by) = split ' ', $text // '';
    die "$label: no expect\n" unless defined $status;

    if (!defined $by) {
        $by = $status =~ /\A2/ ? 'upstream' : 'guard';
    }

    die "$label: bad expect \"$text\"\n"
        unless $by =~ /\A(?:upstream|guard|nginx|nginx-guarded)\z/;

    return { status => $status, by => $by };
}


# ---- the audit log, read incrementally -----------------------------

sub audit_count {
    my $c = $t->read_file('audit.log');
    return scalar @AUDIT unless defined $c;

    my $end = rindex($c, "\n");
    return scalar @AUDIT if $end < $audit_off;

    my $chunk = substr($c, $audit_off, $end + 1 - $audit_off);
    $audit_off = $end + 1;

    for my $l (split /\n/, $chunk) {
        my $v = eval { JSON::PP->new->utf8->decode($l) }
            || { _bad_line => $l };
        push @AUDIT, $v;
        push @{ $AUDIT_ID{ $v->{id} } }, $v if defined $v->{id};
    }

    return scalar @AUDIT;
}


# The records of $id once there are at least $n (the done record is
# written in the log phase, after the response went out).

sub audit_wait {
    my ($id, $n) = @_;
    for (1 .. 60) {
        audit_count();
        last if @{ $AUDIT_ID{$id} || [] } >= $n;
        select undef, undef, undef, 0.02;
    }
    return @{ $AUDIT_ID{$id} || [] };
}


# ---- the upstream's records ----------------------------------------

sub upstream_lines {
    my $c = $t->read_file('upstream.jsonl');
    return 0 unless defined $c;
    return scalar(() = $c =~ /\n/g);
}


sub upstream_records_from {
    my ($n) = @_;
    my @all = $t->upstream_records;
    return @all[$n .. $#all];
}


# ---- responses -----------------------------------------------------

# The responses on one connection, interim 1xx ones left out.

sub split_responses {
    my ($raw, $head_req) = @_;
    my @r;

    while (length $raw && $raw =~ /\AHTTP\/\d\.\d (\d{3})/) {
        my $status = $1;
        my $end = index($raw, "\r\n\r\n");
        last if $end < 0;

        my $head = substr($raw, 0, $end + 4);

        if ($status =~ /\A1/) {
            substr($raw, 0, $end + 4, '');
            next;
        }

        my $len;

        if ($head_req) {
            $len = 0;

        } elsif ($head =~ /\r\nContent-Length:[ \t]*(\d+)/i) {
            $len = $1;

        } elsif ($head =~ /\r\nTransfer-Encoding:[ \t]*chunked/i) {
            my $z = index($raw, "\r\n0\r\n\r\n", $end + 2);
            $len = $z < 0 ? length($raw) - $end - 4 : $z + 7 - ($end + 4);

        } else {
            $len = length($raw) - $end - 4;
        }

        my $one = substr($raw, 0, $end + 4 + $len, '');
        push @r, Test::TaurusGuard::parse_response($one);
    }

    return @r;
}


sub printable {
    my ($s) = @_;
    return 'undef' unless defined $s;
    $s = substr($s, 0, 600) . '...' if length $s > 600;
    $s =~ s/([^\x20-\x7e])/$1 eq "\n" ? "\\n\n" : sprintf('\\x%02x', ord $1)/ge;
    return $s;
}


# ---- the data file -------------------------------------------------

sub read_cases {
    my ($file) = @_;

    open my $fh, '<', $file or die "$file: $!\n";
    binmode $fh;

    my (@cases, $cur, $in_raw);

    while (my $l = <$fh>) {
        $l =~ s/\r?\n\z//;

        if ($l =~ /\A=== (\S+)\s*\z/) {
            $cur = { name => $1, raw => [], line => $. };
            push @cases, $cur;
            $in_raw = 0;
            next;
        }

        if ($in_raw) {
            push @{ $cur->{raw} }, $l if length $l && $l !~ /\A#/;
            next;
        }

        next if $l =~ /\A\s*(?:#|\z)/;

        die "$file:$.: outside a case\n" unless $cur;

        if ($l =~ /\Araw:\s*\z/) {
            $in_raw = 1;
            next;
        }

        my ($k, $v) = $l =~ /\A(\w+):[ \t]*(.*?)\s*\z/
            or die "$file:$.: bad line\n";
        die "$file:$.: $k twice\n" if exists $cur->{$k};
        $cur->{$k} = $v;
    }

    for my $c (@cases) {
        die "$file:$c->{line}: $c->{name}: no raw\n" unless @{ $c->{raw} };
        die "$file:$c->{line}: $c->{name}: no category\n"
            unless defined $c->{category};
        die "$file:$c->{line}: $c->{name}: no expect\n"
            unless defined $c->{expect};
    }

    return @cases;
}


sub unescape {
    my ($s) = @_;
    $s =~ s/\\(?:x([0-9A-Fa-f]{2})|(.))/
        defined $1 ? chr hex $1
        : $2 eq 'r' ? "\r" : $2 eq 'n' ? "\n" : $2 eq 't' ? "\t"
        : $2 eq '\\' ? '\\' : die "bad escape \\$2\n"/gse;
    return $s;
}


sub item {
    my ($id, $v) = @_;
    return '{"instance_id":"' . $id . '","current_version":"'
        . ($v // '2.0.48.231200') . '"}';
}


sub chunked {
    my ($body, $size) = @_;
    my $out = '';
    while (length $body) {
        my $c = substr $body, 0, $size, '';
        $out .= sprintf("%x\r\n", length $c) . $c . "\r\n";
    }
    return $out . "0\r\n\r\n";
}


# Macros, expanded after unescaping:
#   %%PATH%% %%PATH2%%        the upgrade route of $PROJECT, $PROJECT2
#   %%PROJECT%% %%PROJECT2%%  the project IDs
#   %%I0%% %%I1%% %%I2%%      @INSTANCES; %%DENIED%% $OTHER_INSTANCE
#   %%G:n%%                   the n-th generated instance of $PROJECT
#   %%ITEM0%% .. %%ITEM2%%    {"instance_id":..,"current_version":..}
#   %%ITEMS:n%%               n generated items, comma-separated
#   %%LONGIDS:n%%             n items with distinct 256-byte IDs that no
#                             allow-list names
#   %%BATCH%%                 batch_json([I0]): the canonical batch
#   %%BATCHN:n%%              the canonical batch of n generated items
#   %%HEXLEN%%                %%BATCH%%'s length in hex (a chunk size)
#   %%CHUNKS:n%%              %%BATCH%% chunked in n-byte chunks, with
#                             the last chunk
#   %%PAD:n%% %%REP:n:text%%  n spaces; text n times
#   %%DATE%%                  now as an X-Sdk-Date
#   %%STD%%                   Host, Connection: close, Content-Type:
#                             application/json, Content-Length: %%CL%%
#   %%CHUNKIFY:n%%..%%/CHUNKIFY%%  (last) the text chunked in n-byte
#                             chunks, with the last chunk
# In a "reason" (a regex) only the macros are expanded: escapes are the
# regex's own.

sub expand_text {
    my ($s, $regex) = @_;

    $s = unescape($s) unless $regex;

    for (1 .. 3) {
        $s =~ s/%%REP:(\d+):(.*?)%%/$2 x $1/gse;
        $s =~ s/%%PAD:(\d+)%%/' ' x $1/ge;
        $s =~ s/%%BATCHN:(\d+)%%/batch_json([ @GEN[0 .. $1 - 1] ])/ge;
        $s =~ s/%%ITEMS:(\d+)%%/join ',', map { item($_) } @GEN[0 .. $1 - 1]/ge;
        $s =~ s/%%LONGIDS:(\d+)%%/join ',', map { item(sprintf '%0256d', $_) }
            1 .. $1/ge;
        $s =~ s/%%CHUNKS:(\d+)%%/chunked(batch_json([ $INSTANCES[0] ]), $1)/ge;
        $s =~ s/%%HEXLEN%%/sprintf '%x', length(batch_json([ $INSTANCES[0] ]))
            /gex;
        $s =~ s/%%BATCH%%/batch_json([ $INSTANCES[0] ])/ge;
        $s =~ s/%%ITEM([0-2])%%/item($INSTANCES[$1])/ge;
        $s =~ s/%%PATH%%/upgrade_path()/ge;
        $s =~ s/%%PATH2%%/upgrade_path($PROJECT2)/ge;
        $s =~ s/%%PROJECT%%/$PROJECT/g;
        $s =~ s/%%PROJECT2%%/$PROJECT2/g;
        $s =~ s/%%I([0-2])%%/$INSTANCES[$1]/g;
        $s =~ s/%%G:(\d+)%%/$GEN[$1]/g;
        $s =~ s/%%DENIED%%/$OTHER_INSTANCE/g;
        $s =~ s/%%DATE%%/strftime('%Y%m%dT%H%M%SZ', gmtime)/ge;
        $s =~ s/%%STD%%/$STD/g;
    }

    $s =~ s/%%CHUNKIFY:(\d+)%%(.*?)%%\/CHUNKIFY%%/chunked($2, $1)/gse;

    return $s;
}


# The raw request, %%CL%% computed (the bytes after the header block, or
# up to %%END%% when a case sends more than its Content-Length says),
# cut into writes as the case's "split" says.

sub build_request {
    my ($c) = @_;

    my $raw = expand_text(join '', @{ $c->{raw} });

    my $end = index($raw, "\r\n\r\n");
    my $hlen = $end < 0 ? length $raw : $end + 4;

    if ($end < 0 && (my $lf = index($raw, "\n\n")) >= 0) {
        $hlen = $lf + 2;
    }

    my $body = substr($raw, $hlen);
    my $stop = index($body, '%%END%%');
    my $cl = $stop < 0 ? length $body : $stop;
    $raw =~ s/%%END%%//;
    $raw =~ s/%%CL%%/$cl/g;

    # %%CL2%%: the length of what follows the next header block (a second,
    # pipelined request)

    my $p2 = index($raw, '%%CL2%%');
    if ($p2 >= 0) {
        my $e2 = index($raw, "\r\n\r\n", $p2);
        die "$c->{name}: %%CL2%% without a header block\n" if $e2 < 0;
        my $cl2 = length($raw) - ($e2 + 4);
        $raw =~ s/%%CL2%%/$cl2/;
    }

    # the header block may have changed length: recompute it for "head"

    $end = index($raw, "\r\n\r\n");
    $hlen = $end < 0 ? length $raw : $end + 4;

    my @pieces = ($raw);
    my $split = $c->{split};

    if (defined $split) {
        my @at;

        if ($split eq 'head') {
            @at = ($hlen);

        } elsif ($split =~ /\Aeach:(\d+)\z/) {
            for (my $o = $1; $o < length $raw; $o += $1) {
                push @at, $o;
            }

        } elsif ($split =~ /\Abody-each:(\d+)\z/) {
            for (my $o = $hlen; $o < length $raw; $o += $1) {
                push @at, $o;
            }

        } elsif ($split =~ /\A\d+(?:,\d+)*\z/) {
            @at = split /,/, $split;

        } else {
            die "$c->{name}: bad split \"$split\"\n";
        }

        @pieces = ();
        my $prev = 0;
        for my $o (grep { $_ > 0 && $_ < length $raw } @at) {
            push @pieces, substr($raw, $prev, $o - $prev);
            $prev = $o;
        }
        push @pieces, substr($raw, $prev);
    }

    return ($raw, \@pieces);
}
