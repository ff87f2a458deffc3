#!/usr/bin/perl

# Every configuration the documentation shows works as shown: each nginx
# block of README.md and docs/*.md, and each examples/*.conf, passes
# `nginx -t` with the module.
#
# A block is fenced as ```nginx and preceded by an HTML comment saying
# the context it belongs to:
#
#   <!-- nginx-test: main -->        a whole nginx.conf
#   <!-- nginx-test: http -->        wrapped in http { }
#   <!-- nginx-test: server -->      wrapped in http { server { } }
#   <!-- nginx-test: location -->    wrapped in a location of a server
#   <!-- nginx-test: partial: WHY -->  not run (placeholders and the like)
#
# A block without its comment, or an indented block that looks like
# nginx configuration but is not fenced as nginx, fails the test: nothing
# is skipped silently.  Paths are moved into the test's prefix
# (/etc/nginx/taurus/ and /var/log/taurus-guard/, with the files they
# name made there), listen ports become free ones, and the TaurusDB and
# IAM host names become 127.0.0.1: nginx -t resolves the names of
# proxy_pass, and tests have no DNS.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Cwd qw(abs_path);
use File::Path qw(make_path);
use Test::More;

use Test::TaurusGuard qw(:all);

# the module the harness would load (TG_MODULE, or build/'s), through
# the snippets' own load_module lines; none when it is built in

my $builtin = defined $ENV{TG_MODULE} && $ENV{TG_MODULE} eq '';
my $so = $builtin ? '' : $ENV{TG_MODULE}
    || Test::TaurusGuard->repo . '/build/ngx_http_taurus_guard_module.so';
$ENV{TG_MODULE} = '';
plan(skip_all => "no module at $so (run make)") if !$builtin && !-f $so;
$so = abs_path($so) unless $builtin;

my $t = Test::TaurusGuard->new;
my $dir = $t->testdir;
my $repo = $t->repo;

# the files the snippets name

my $user = $> == 0 ? 'nobody' : scalar getpwuid($>);

make_path("$dir/$_") for qw(modules temp taurus/allow.d taurus/tokens auditlog
    conf/taurus/allow.d);
chmod 0755, "$dir/$_" for qw(modules temp taurus taurus/allow.d taurus/tokens
    auditlog conf/taurus conf/taurus/allow.d);
symlink $so, "$dir/modules/ngx_http_taurus_guard_module.so" unless $builtin;

my %secret = (
    'taurus/credentials' => "[basic]\nak = $TEST_AK\nsk = $TEST_SK\n",
    'taurus/token' => "$TEST_TOKEN\n",
    'taurus/iam' => "[iam]\ndomain = my-account\nuser = taurus-gateway\n"
        . "password = docsTestPassw0rd\n",
    'conf/taurus/credentials' => "[basic]\nak = $TEST_AK\nsk = $TEST_SK\n",
);
$t->write_file($_, $secret{$_}, 0600) for sort keys %secret;
$t->write_file('taurus/allow.d/team-a.conf',
    "0123456789abcdef0123456789abcdef $INSTANCES[1];\n", 0644);
for my $f (glob "$repo/examples/taurus/allow.d/*.conf") {
    (my $n = $f) =~ s{.*/}{};
    $t->write_file("conf/taurus/allow.d/$n", $t->read_file($f), 0644);
}

$ENV{HUAWEICLOUD_SDK_AK} = $TEST_AK;
$ENV{HUAWEICLOUD_SDK_SK} = $TEST_SK;

# the secret files belong to the user the workers run as

sub own {
    my ($name) = @_;
    return unless $> == 0;
    my ($uid, $gid) = (getpwnam($name))[2, 3];
    return unless defined $uid;
    chown $uid, $gid, "$dir/$_" for keys %secret;
}

# ```nginx blocks with their comments; every other code block is
# checked for nginx directives that escaped the fence

sub blocks {
    my ($file) = @_;
    my $text = $t->read_file($file);
    my (@b, @bad);
    my @l = split /\n/, $text, -1;
    my ($fence, $lang, $start, $marker, @body, $last) = ('');

    for my $i (0 .. $#l) {
        my $l = $l[$i];
        if ($fence eq '' && $l =~ /^```(\w*)\s*$/) {
            ($fence, $lang, $start, @body) = ('```', $1, $i + 1);
            $marker = $last && $last =~ /^<!--\s*nginx-test:\s*(.*?)\s*-->$/
                ? $1 : undef;
            next;
        }
        if ($fence ne '' && $l =~ /^```\s*$/) {
            push @b, { file => $file, line => $start, lang => $lang,
                marker => $marker, text => join("\n", @body) . "\n" };
            $fence = '';
            $last = $l;
            next;
        }
        if ($fence ne '') {
            push @body, $l;
            next;
        }
        push @bad, "$file:" . ($i + 1) . ": $l"
            if $l =~ /^[ ]{4}\s*(?:[a-z]+_[a-z_]+|proxy_pass|listen|location
                |load_module|server|http|include)\b[^;{]*[;{]\s*(?:\#.*)?$/x;
        $last = $l if $l =~ /\S/;
    }

    return (\@b, \@bad);
}

sub wrap {
    my ($ctx, $text) = @_;

    my $conf;
    if ($ctx eq 'main') {
        $conf = $text;
    } elsif ($ctx eq 'http') {
        $conf = "events {\n}\nhttp {\n$text}\n";
    } elsif ($ctx eq 'server') {
        $conf = "events {\n}\nhttp {\nserver {\nlisten 127.0.0.1:8080;\n"
            . "$text}\n}\n";
    } elsif ($ctx eq 'location') {
        $conf = "events {\n}\nhttp {\nserver {\nlisten 127.0.0.1:8080;\n"
            . "location /v3/ {\n$text}\n}\n}\n";
    } else {
        return undef;
    }

    $conf = "load_module modules/ngx_http_taurus_guard_module.so;\n$conf"
        unless $conf =~ /^\s*load_module\s/m;
    $conf =~ s/^\s*load_module\s[^\n]*\n//mg if $builtin;

    $conf =~ s{/etc/nginx/taurus/}{$dir/taurus/}g;
    $conf =~ s{/var/log/taurus-guard/}{$dir/auditlog/}g;
    $conf =~ s{\b[\w.-]+\.myhuaweicloud\.com\b}{127.0.0.1}g;

    my $n = 0;
    $conf =~ s{(listen\s+127\.0\.0\.1:)\d+}{$1 . $t->port('L' . $n++)}ge;

    my $h = '';
    for my $d (qw(client_body_temp proxy_temp fastcgi_temp uwsgi_temp
        scgi_temp))
    {
        $h .= "${d}_path $dir/$d;\n" unless $conf =~ /^\s*${d}_path\s/m;
    }
    $h .= "access_log $dir/logs/access.log;\n"
        unless $conf =~ /^\s*access_log\s/m;
    $conf =~ s/^(\s*http\s*\{[^\n]*\n)/$1$h/m;

    return $conf;
}

my $n = 0;

sub nginx_t {
    my ($where, $conf) = @_;

    my $name = 'snippet-' . ++$n . '.conf';
    $t->write_file("conf/$name", $conf);
    own($conf =~ /^\s*user\s+([^\s;]+)/m ? $1 : $user);

    my $out = $t->_cmd($t->{nginx}, '-t', '-p', "$dir/",
        '-e', 'logs/nginx-t.log', '-c', "conf/$name");
    is($? >> 8, 0, "$where: nginx -t") or diag("$out\n$conf");
}

my @files = ("$repo/README.md", sort glob "$repo/docs/*.md");
my $seen = 0;

for my $file (@files) {
    (my $short = $file) =~ s{^\Q$repo\E/}{};
    my ($b, $bad) = blocks($file);

    is(join("\n", @$bad), '', "$short: every nginx block is fenced as nginx");

    for my $blk (grep { $_->{lang} eq 'nginx' } @$b) {
        my $where = "$short:$blk->{line}";
        $seen++;

        if (!defined $blk->{marker}) {
            fail("$where: an nginx block says its context "
                . '(<!-- nginx-test: ... -->)');
            next;
        }
        if ($blk->{marker} =~ /^partial:\s*(\S.*)/) {
            pass("$where: partial ($1)");
            next;
        }

        my $conf = wrap($blk->{marker}, $blk->{text});
        if (!defined $conf) {
            fail("$where: unknown context \"$blk->{marker}\"");
            next;
        }
        nginx_t($where, $conf);
    }
}

cmp_ok($seen, '>=', 8, "$seen nginx blocks found in the docs");

# the examples, as make run uses them: the prefix's conf/ holds taurus/

for my $f (sort glob "$repo/examples/*.conf") {
    (my $short = $f) =~ s{^\Q$repo\E/}{};
    nginx_t($short, wrap('main', $t->read_file($f)));
}

$t->done_testing;
