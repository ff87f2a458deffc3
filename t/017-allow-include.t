#!/usr/bin/perl

# Allow-lists in included files, which the module reads itself rather
# than through nginx's configuration parser: the same syntax (comments,
# quotes, nested includes, globs), mistakes at their file and line,
# nginx -T showing the files, and what they list allowed end to end.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard qw(:all);

my $t = Test::TaurusGuard->new;

my ($i0, $i1, $i2) = @INSTANCES;
my $dir = $t->testdir;

$t->upstream;
$t->write_credentials;

# a.conf names i1 in quotes among comments and includes sub/*.conf,
# whose only file names i2 for the second project

$t->write_file('allow.d/a.conf', "# listed here\n"
    . "$PROJECT\n    \"$i1\" # one more\n    ;\n"
    . "include $dir/allow.d/sub/*.conf;\n");
$t->write_file('allow.d/sub/b.conf', "'$PROJECT2' $i2;\n");

# each broken in one way, the line of the statement's ';' given

$t->write_file('bad/dup.conf', "$PROJECT $i2;\n\n$PROJECT\n  $i2\n;\n");
$t->write_file('bad/block.conf', "# a block\n$PROJECT { $i2; }\n");
$t->write_file('bad/empty.conf', "\n$PROJECT2;\n");
$t->write_file('bad/nested.conf', "include $dir/bad/sub/*.conf;\n");
$t->write_file('bad/sub/short.conf', "\n\n$PROJECT abc;\n");
$t->write_file('bad/noend.conf', "$PROJECT $i2");

sub conf {
    my ($include) = @_;

    return <<"EOF";
http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log;

    taurus_guard_allow {
        %%PROJECT%% $i0;
        include $include;
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
}

my ($rc, $out);

for my $c (
    [ 'duplicate', 'bad/dup.conf', qr/\Q$i2\E" is listed twice/, 5 ],
    [ 'a block', 'bad/block.conf', qr/unexpected "\{"/, 2 ],
    [ 'a project without instances', 'bad/empty.conf',
        qr/project "\Q$PROJECT2\E" lists no instance/, 2 ],
    [ 'nested, malformed instance', 'bad/nested.conf',
        qr/malformed instance ID "abc"/, 3, 'bad/sub/short.conf' ],
    [ 'no final ";"', 'bad/noend.conf', qr/unexpected end of file/, 1 ],
    )
{
    my ($name, $file, $msg, $line, $at) = @$c;

    $at ||= $file;
    ($rc, $out) = $t->nginx_t(conf("%%TESTDIR%%/$file"));
    note($out);
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, qr/\[emerg\].*$msg/, "$name: message") or diag($out);
    like($out, qr/ in \Q$dir\/$at\E:$line\b/, "$name: in $at:$line")
        or diag($out);
}

# a missing ';' makes the next project ID an instance of the one before,
# which nginx -t refuses once it knows the projects: those listed before
# it or after, in a block or a file; the line is the entry's own

$t->write_file('stray/a.conf', "# lost its ';'\n$PROJECT $i2\n"
    . "    $PROJECT2\n    $i1;\n");
$t->write_file('stray/b.conf', "$PROJECT2 $i2;\n");

for my $c (
    [ 'the project listed in a later file', "include $dir/stray/a.conf;\n"
        . "        include $dir/stray/b.conf;" ],
    [ 'the project listed in an earlier block', "include $dir/stray/a.conf;",
        "taurus_guard_allow { %%PROJECT2%% $i0; }" ],
    [ 'the project listed in a later block', "include $dir/stray/a.conf;",
        undef, "taurus_guard_allow { %%PROJECT2%% $i0; }" ],
    )
{
    my ($name, $include, $before, $after) = @$c;

    my $text = conf($include);
    $text =~ s/(    taurus_guard_allow \{)/    $before\n$1/ if $before;
    $text =~ s/(\n    server \{)/\n    $after\n$1/ if $after;
    $text =~ s/include \Q$include\E;/$include/;

    ($rc, $out) = $t->nginx_t($text);
    note($out);
    isnt($rc, 0, "a project ID as an instance, $name: nginx -t fails");
    my $msg = "taurus_guard_allow: instance \"$PROJECT2\" of project"
        . " \"$PROJECT\" is a project ID of the allow-list: a missing"
        . ' ";"?';
    like($out, qr/\[emerg\] \Q$msg\E/,
        "a project ID as an instance, $name: message") or diag($out);
    like($out, qr/ in \Q$dir\/stray\/a.conf\E:3\b/,
        "a project ID as an instance, $name: in stray/a.conf:3")
        or diag($out);
}

($rc, $out) = $t->nginx_t(conf("%%TESTDIR%%/stray/a.conf"));
is($rc, 0, 'the same file, its second project listed nowhere: passes')
    or diag($out);

($rc, $out) = $t->nginx_t(conf("%%TESTDIR%%/no-such-dir/x.conf"));
isnt($rc, 0, 'a missing file: nginx -t fails');
like($out, qr/no-such-dir\/x\.conf.*failed/, 'a missing file: named');

# the good one: nginx -t passes, nginx -T shows both files

($rc, $out) = $t->nginx_t(conf("%%TESTDIR%%/allow.d/*.conf"));
is($rc, 0, 'comments, quotes, nested include: nginx -t passes')
    or diag($out);

$out = $t->_cmd($t->{nginx}, '-T', '-p', "$dir/", '-e',
    'logs/nginx-t.log', '-c', 'conf/test.conf');
like($out, qr/# configuration file \Q$dir\E\/allow\.d\/a\.conf:\n# listed/,
    'nginx -T shows the included allow-list');
like($out, qr/\Q$dir\E\/allow\.d\/sub\/b\.conf:\n'\Q$PROJECT2\E'/,
    'nginx -T shows the nested one');

# and what they list is what is allowed

$t->run(conf("%%TESTDIR%%/allow.d/*.conf"));

my $r = $t->post(upgrade_path(), batch_json([ $i0, $i1 ]));
is($r->{status}, 200, 'the block and a.conf: allowed');

$r = $t->post(upgrade_path($PROJECT2), batch_json([ $i2 ]));
is($r->{status}, 200, 'sub/b.conf, quoted project: allowed');

$r = $t->post(upgrade_path(), batch_json([ $i2 ]));
$t->is_refusal($r, 403, 'TG.0403', 'listed for the other project only');

$t->done_testing;
