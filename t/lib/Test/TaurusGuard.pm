package Test::TaurusGuard;

# A small nginx-tests style harness (after nginx/nginx-tests
# lib/Test/Nginx.pm): each test file gets a temp prefix, free loopback
# ports, its own nginx.conf, an nginx loading the module, and optionally
# the verifying upstream t/lib/tg-upstream.pl.  At the end it fails the
# file on any [alert], [emerg] or sanitizer report in error.log.
#
#   my $t = Test::TaurusGuard->new;          # skip_all if no module/nginx
#   $t->upstream;                            # %%PORT_UP%%
#   $t->write_credentials;                   # %%TESTDIR%%/credentials
#   $t->run(<<'EOF');                        # http { ... } etc.
#   $t->run_wrapped($conf, [ 'valgrind', ... ]);  # or under a wrapper
#   my $r = $t->post("/v3/$project/...", $body);
#   ...
#   $t->done_testing;
#
# Environment:
#   TG_NGINX    the nginx binary (default /usr/sbin/nginx)
#   TG_MODULE   the module .so (default build/ngx_http_taurus_guard_module.so);
#               set and empty: the module is built into TG_NGINX
#   TG_USER     the user workers run as when the tests run as root
#               (default: nginx's built-in nobody); secret files are
#               chowned to it
#   TG_LEAVE=1  keep the temp prefix (logs, audit log, upstream records)
#   TG_BAIL=1   bail out of the whole run when nginx does not start
#
# Only core Perl.

use strict;
use warnings;

use Cwd qw(abs_path);
use Digest::SHA qw(sha256_hex);
use Exporter 'import';
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(WNOHANG);
use Test::More ();
use Time::HiRes qw(sleep time clock_gettime CLOCK_MONOTONIC);

our @EXPORT_OK = qw($TEST_AK $TEST_SK $TEST_TOKEN $PROJECT $PROJECT2
    @INSTANCES $OTHER_INSTANCE $UPGRADE batch_json upgrade_path header
    headers_named chain_digest chain_body_ok now take_pid);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

our $TEST_AK = 'TGTESTAKQWERTYUIOP12';
our $TEST_SK = 'tgTestSk0secretNEVERlogged4Kq9ZpXv2LmNbVc';
our $TEST_TOKEN = 'MIITgTestTokenNEVERlogged.Zx81Kd0aq-_abc';

our $PROJECT  = '0123456789abcdef0123456789abcdef';
our $PROJECT2 = 'fedcba9876543210fedcba9876543210';

our @INSTANCES = (
    '6754902da1f447269c6979b0590102a5in07',
    '0d6c1b4a0e5f4e7c9a2b3c4d5e6f7a8bin07',
    'c3a9d0e1f2a34b5c8d7e6f5a4b3c2d1ein07',
);
our $OTHER_INSTANCE = 'ffffffffffffffffffffffffffffffffin07';

our $UPGRADE = '/instances/database-version/upgrade';

my $REPO = abs_path(dirname(__FILE__) . '/../../..');

my $json = JSON::PP->new->utf8->canonical;

my @LIVE;

# For a sanitizer build of nginx (make test-asan): reports go to stderr,
# which nginx sends to error.log, where log_problems() finds them.
# nginx does not free its pools at exit by design: leak reports are noise.

$ENV{ASAN_OPTIONS} = 'detect_leaks=0:abort_on_error=1:halt_on_error=1'
    unless defined $ENV{ASAN_OPTIONS};
$ENV{UBSAN_OPTIONS} = 'print_stacktrace=1:halt_on_error=1'
    unless defined $ENV{UBSAN_OPTIONS};


sub upgrade_path {
    my ($project) = @_;
    return '/v3/' . (defined $project ? $project : $PROJECT) . $UPGRADE;
}


# The audit chain, written here apart from the module's C: the link a
# record leaves for the next one ("prev") is the SHA-256 of its line,
# "\n" included; a record with "instances", "delay" (right after them)
# and "body_sha256" leaves its instances' items (between "[" and "]") out
# of it.  _brief() finds the pieces: the items' start and end, the end of
# the delay's value, the body digest.

sub _brief {
    my ($line) = @_;

    my $a = index($line, ',"instances":[');
    return undef if $a < 0;
    $a += length ',"instances":[';

    my ($i, $in) = ($a, 0);
    for (; $i < length $line; $i++) {
        my $c = substr($line, $i, 1);
        if ($in) {
            if ($c eq '\\') { $i++ } elsif ($c eq '"') { $in = 0 }
        } elsif ($c eq '"') {
            $in = 1;
        } elsif ($c eq ']') {
            last;
        }
    }

    pos($line) = $i;
    $line =~ /\G\],"delay":(true|false|"true"|"false")(?=[,}])/gc
        or return undef;
    my $delay_end = pos($line);

    my $s = substr($line, $delay_end);
    $s =~ /,"body_sha256":"([0-9a-f]{64})"/ or return undef;

    return ($a, $i, $delay_end, $1);
}

sub chain_digest {
    my ($line) = @_;
    my ($a, $b) = _brief($line);
    return sha256_hex($line) unless defined $a;
    return sha256_hex(substr($line, 0, $a) . substr($line, $b));
}

# Whether a record's items and delay make again the body its body_sha256
# is the digest of (undef: a record without that form).

sub chain_body_ok {
    my ($line) = @_;
    my ($a, $b, $delay_end, $sha) = _brief($line);
    return undef unless defined $a;
    my $body = '{"databases_instance_infos":['
        . substr($line, $a, $delay_end - $a) . '}';
    return sha256_hex($body) eq $sha ? 1 : 0;
}


# batch_json([id, ...], delay) or batch_json([[id, version], ...], delay):
# the canonical compact form the module forwards.

sub batch_json {
    my ($ids, $delay) = @_;
    $delay = '"false"' unless defined $delay;
    my @items = map {
        my ($id, $v) = ref $_ ? @$_ : ($_, '2.0.48.231200');
        '{"instance_id":"' . $id . '","current_version":"' . $v . '"}'
    } @$ids;
    return '{"databases_instance_infos":[' . join(',', @items)
        . '],"delay":' . $delay . '}';
}


sub new {
    my ($class, %o) = @_;

    # TG_MODULE set but empty: the module is built into TG_NGINX (the
    # sanitizer build), so no load_module

    my $nginx = $ENV{TG_NGINX} || '/usr/sbin/nginx';
    my $module = defined $ENV{TG_MODULE} ? $ENV{TG_MODULE}
        : "$REPO/build/ngx_http_taurus_guard_module.so";

    if (!-x $nginx) {
        Test::More::plan(skip_all => "no nginx binary at $nginx");
    }
    if (length $module && !-f $module) {
        Test::More::plan(skip_all => "no module at $module (run make)");
    }

    my $dir = tempdir('tg-test-XXXXXXXX', TMPDIR => 1,
        CLEANUP => !$ENV{TG_LEAVE});

    my $self = bless {
        nginx     => $nginx,
        module    => length $module ? abs_path($module) : '',
        dir       => $dir,
        ports     => {},
        pid       => $$,
        responses => [],
    }, $class;

    # workers run as nobody when the tests run as root: every directory
    # on the way must be traversable, files they read readable

    for my $d ('', qw(logs conf client_body_temp proxy_temp fastcgi_temp
        uwsgi_temp scgi_temp))
    {
        make_path("$dir/$d") unless -d "$dir/$d";
        chmod 0755, "$dir/$d";
    }

    # the directories above the prefix are not ours to change: say so when
    # the workers cannot get through them (bodies in temp files then fail
    # with 500)

    if ($> == 0) {
        for (my $p = dirname($dir); $p ne '/'; $p = dirname($p)) {
            my $mode = (stat $p)[2];
            Test::More::diag("$p is not traversable by others: set TMPDIR "
                . "to a directory that is") if defined $mode && !($mode & 01);
        }
    }

    my ($uid, $gid) = (getpwnam($ENV{TG_USER} || 'nobody'))[2, 3];
    $self->{worker_uid} = $uid;
    $self->{worker_gid} = $gid;

    if ($> == 0 && defined $uid) {
        chown $uid, -1, "$dir/$_"
            for qw(client_body_temp proxy_temp fastcgi_temp uwsgi_temp
                scgi_temp);
    }

    push @LIVE, $self;

    return $self;
}


sub testdir { $_[0]{dir} }
sub module_path { $_[0]{module} }
sub repo { $REPO }


# %%PORT_<n>%%: a free loopback port of its own for each name.

sub port {
    my ($self, $n) = @_;

    return $self->{ports}{$n} if $self->{ports}{$n};

    $self->{ports}{$n} = _new_port();
    return $self->{ports}{$n};
}


# A loopback port nothing of this file listens on, for a proxy_pass that
# must fail to connect: never one that port() gives, and run() does not
# wait for it.

sub closed_port {
    return _new_port();
}


# The ports this process handed out, of every object, each held by a
# socket bound to it with SO_REUSEADDR and not listening until the
# process exits.
#
# A port is found by binding to port 0.  Closed at once, it was free for
# anybody again: the next bind to port 0 here could be given it (two
# servers of one nginx.conf on the same port do not fail to start: they
# become virtual servers of one listen, and a request meant for one is
# answered by the other), and so could another test file's, running
# beside this one, before our server was listening (whose stand-in then
# failed to start while its port answered, with the other file's
# nginx).  Held this way, the kernel gives it to no other bind to port
# 0; a server that binds it with SO_REUSEADDR (nginx, the stand-ins,
# rsyslogd) listens on it all the same, one without fails, and while
# none listens a connection to it is refused.

my %GIVEN;

sub _new_port {
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1:0',
            Proto     => 'tcp',
            ReuseAddr => 1,
        ) or die "cannot find a free port: $!\n";

        my $p = $s->sockport;
        next if $GIVEN{$p};

        $GIVEN{$p} = $s;
        return $p;
    }

    die "cannot find a free port not given already\n";
}


sub _expand {
    my ($self, $text) = @_;

    $text =~ s/%%PORT_(\w+)%%/$self->port($1)/ge;
    $text =~ s/%%TESTDIR%%/$self->{dir}/g;
    $text =~ s/%%MODULE%%/$self->{module}/g;
    $text =~ s/%%AK%%/$TEST_AK/g;
    $text =~ s/%%PROJECT%%/$PROJECT/g;
    $text =~ s/%%PROJECT2%%/$PROJECT2/g;

    return $text;
}


# Builds a whole nginx.conf from the test's template: the globals the
# harness always needs go first (load_module unless the module is built
# in), temp paths and access_log into http{}.

sub _conf {
    my ($self, $template, %o) = @_;

    my $d = $self->{dir};
    my $text = $self->_expand($template);

    # a template's own error_log (at the start of a line: the main
    # level) replaces the harness's, as its daemon does
    my $g = ($self->{module} ? "load_module $self->{module};\n" : '');

    $g .= "error_log $d/logs/" . ($o{error_log} || 'error.log') . " debug;\n"
        unless $text =~ /^error_log\b/m;

    $g .= "pid $d/logs/nginx.pid;\n";

    $g .= "daemon on;\n" unless $text =~ /^\s*daemon\b/m;

    $g .= "worker_processes 1;\n"
        unless $text =~ /^\s*worker_processes\b/m;

    $g .= "user $ENV{TG_USER};\n"
        if $ENV{TG_USER} && $> == 0 && $text !~ /^\s*user\b/m;

    $g .= "events {\n}\n" unless $text =~ /^\s*events\s*\{/m;

    my $h = "    client_body_temp_path $d/client_body_temp;\n"
        . "    proxy_temp_path $d/proxy_temp;\n"
        . "    fastcgi_temp_path $d/fastcgi_temp;\n"
        . "    uwsgi_temp_path $d/uwsgi_temp;\n"
        . "    scgi_temp_path $d/scgi_temp;\n"
        . "    access_log $d/logs/access.log;\n";

    $text =~ s/^(\s*http\s*\{[^\n]*\n)/$1$h/m;

    return $g . $text;
}


sub write_file {
    my ($self, $name, $content, $mode, $owner) = @_;

    my $path = $name =~ m{\A/} ? $name : "$self->{dir}/$name";
    make_path(dirname($path));

    open my $fh, '>', "$path.tmp.$$" or die "$path: $!\n";
    binmode $fh;
    print $fh $content;
    close $fh or die "$path: $!\n";

    chmod(defined $mode ? $mode : 0644, "$path.tmp.$$");
    chown @$owner, "$path.tmp.$$" if $owner;
    rename "$path.tmp.$$", $path or die "$path: $!\n";

    return $path;
}


# A file the workers re-read: mode 0600 (by default), owned by the worker
# user when we are root.

sub write_secret_file {
    my ($self, $name, $content, $mode) = @_;

    $self->_note_secrets($content);

    # owned by the worker before it is renamed into place: a worker that
    # looks in between must not find a file it cannot read
    my $owner = ($> == 0 && defined $self->{worker_uid})
        ? [ $self->{worker_uid}, $self->{worker_gid} ] : undef;

    return $self->write_file($name, $content,
        defined $mode ? $mode : 0600, $owner);
}


# The secrets of a file the test writes, for finish()'s leak check: the
# values of sk, security_token and password, or a token file's words.
# Words shorter than 12 characters are too common to look for.

sub _note_secrets {
    my ($self, $content) = @_;

    my @values = $content =~ /^\s*(?:sk|security_token|password)\s*=(.*)$/mg;
    @values = ($content) unless $content =~ /=/;

    for my $v (@values) {
        $self->{secrets}{$_} = 1 for grep { length >= 12 } split ' ', $v;
    }
}


sub write_credentials {
    my ($self, %o) = @_;

    my $name = $o{name} || 'credentials';
    my $text = "[basic]\n";
    $text .= "ak = " . (exists $o{ak} ? $o{ak} : $TEST_AK) . "\n"
        if !exists $o{ak} || defined $o{ak};
    $text .= "sk = " . (exists $o{sk} ? $o{sk} : $TEST_SK) . "\n"
        if !exists $o{sk} || defined $o{sk};
    $text .= "security_token = $o{security_token}\n"
        if defined $o{security_token};

    return $self->write_secret_file($name, $text, $o{mode});
}


sub write_token {
    my ($self, $token, %o) = @_;
    return $self->write_secret_file($o{name} || 'token',
        defined $token ? "$token\n" : "$TEST_TOKEN\n", $o{mode});
}


sub read_file {
    my ($self, $name) = @_;
    my $path = $name =~ m{\A/} ? $name : "$self->{dir}/$name";
    open my $fh, '<', $path or return undef;
    binmode $fh;
    local $/;
    my $c = <$fh>;
    close $fh;
    return $c;
}


sub error_log {
    my ($self) = @_;
    my $l = $self->read_file('logs/error.log');
    return defined $l ? $l : '';
}


# JSON lines of a file, decoded; lines that do not parse are returned as
# { _bad_line => "..." } so a test sees them.

sub _jsonl {
    my ($self, $name) = @_;
    my $c = $self->read_file($name);
    my @r;
    $c = '' unless defined $c;
    for my $l (split /\n/, $c) {
        next unless length $l;
        my $v = eval { $json->decode($l) };
        push @r, defined $v ? $v : { _bad_line => $l };
    }
    return wantarray ? @r : scalar @r;
}


sub audit_records {
    my ($self, $name) = @_;
    return $self->_jsonl($name || 'audit.log');
}


sub audit_by_id {
    my ($self, $id, $name) = @_;
    return grep { defined $_->{id} && $_->{id} eq $id }
        $self->audit_records($name);
}


# The records of $id once there are at least $n of them (the done record
# is written in the log phase, after the response went out).

sub wait_audit {
    my ($self, $id, $n, $name) = @_;
    my @a;
    for (1 .. 60) {
        @a = $self->audit_by_id($id, $name);
        last if @a >= ($n || 1);
        sleep 0.05;
    }
    return @a;
}


sub upstream_records {
    my ($self, $name) = @_;
    return $self->_jsonl(defined $name ? "upstream-$name.jsonl"
        : 'upstream.jsonl');
}


# Starts t/lib/tg-upstream.pl on %%PORT_UP%%; name => N starts another
# on %%PORT_N%%, recording to upstream-N.jsonl (upstream_records(N)).
# status => N, delay => MS, token => T, accel_redirect => URI: its
# options of those names; headers => ['Name: value', ...] are added to
# every answer.

sub upstream {
    my ($self, %o) = @_;

    my $name = $o{name};
    my $port = $self->port(defined $name ? $name : 'UP');
    my $d = $self->{dir};
    my $file = defined $name ? "upstream-$name" : 'upstream';

    my @cmd = ($^X, "$REPO/t/lib/tg-upstream.pl",
        '--listen', "127.0.0.1:$port",
        '--ak', defined $o{ak} ? $o{ak} : $TEST_AK,
        '--sk', defined $o{sk} ? $o{sk} : $TEST_SK,
        '--record', "$d/$file.jsonl",
        '--audit-log', $o{audit_log} || "$d/audit.log",
        '--pidfile', "$d/$file.pid");
    push @cmd, '--status', $o{status} if defined $o{status};
    push @cmd, '--delay', $o{delay} if defined $o{delay};
    push @cmd, '--token', $o{token} if defined $o{token};
    push @cmd, '--accel-redirect', $o{accel_redirect}
        if defined $o{accel_redirect};
    push @cmd, map { ('--header', $_) } @{ $o{headers} || [] };

    my $pid = fork;
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$d/logs/upstream.log";
        open STDERR, '>>', "$d/logs/upstream.log";
        exec @cmd or POSIX::_exit(127);
    }

    if (defined $name) {
        push @{ $self->{more_upstream_pids} }, $pid;
    } else {
        $self->{upstream_pid} = $pid;
    }

    $self->_wait_stand_in($pid, "$file.pid", $port)
        or die "tg-upstream did not start on $port\n";

    return $port;
}


# Waits for the stand-in $pid to listen on $port: it writes its pidfile
# once it listens (TaurusGuard::HTTPServer::run).  Something else that
# answers on $port is not it: one that could not listen there exits,
# and its start fails here instead of the test talking to whatever holds
# the port.

sub _wait_stand_in {
    my ($self, $pid, $pidfile, $port) = @_;
    my $end = now() + 5;
    while (now() < $end) {
        my $p = $self->read_file($pidfile);
        return $self->_wait_port($port, $end - now())
            if defined $p && $p =~ /\A(\d+)\n/ && $1 == $pid;
        return 0 unless _alive($pid);
        sleep 0.05;
    }
    return 0;
}


# Waits for something to listen on $port.  A port the harness picks is
# in the kernel's ephemeral range, so while nothing listens there a
# connect() can be given it as its own source port and connect to itself
# (a TCP simultaneous open): such a connection is not a listener.

sub _wait_port {
    my ($self, $port, $timeout) = @_;
    my $end = now() + ($timeout || 5);
    while (now() < $end) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
            Proto => 'tcp');
        if ($s) {
            my $self_connect = $s->sockport == $port;
            close $s;
            return 1 unless $self_connect;
        }
        sleep 0.05;
    }
    return 0;
}


# Seconds on the monotonic clock: the waits and deadlines of the harness
# and of the tests (now()), which a step of the wall clock (a fresh
# machine syncing its time) must not cut short or stretch.  What is
# compared with a time the gateway or a stand-in wrote (an audit
# record's, a token's expiry) stays on the wall clock (time).

sub now {
    return clock_gettime(CLOCK_MONOTONIC);
}


sub conf_path {
    my ($self, $name) = @_;
    return "$self->{dir}/conf/" . ($name || 'nginx.conf');
}


# The 1-based line of the first line of a written conf matching $re.

sub conf_line {
    my ($self, $re, $name) = @_;
    my $c = $self->read_file($self->conf_path($name));
    my $n = 0;
    for my $l (split /\n/, $c) {
        $n++;
        return $n if $l =~ $re;
    }
    return undef;
}


sub write_conf {
    my ($self, $template, $name, %o) = @_;
    $name ||= 'nginx.conf';
    return $self->write_file("conf/$name", $self->_conf($template, %o));
}


# nginx -t on a conf written from $template (as conf/$name); returns
# (exit code, stdout+stderr).  Its logs (-e and error_log) go to
# logs/nginx-t.log, so the [emerg] lines expected here do not count
# against the run.

sub nginx_t {
    my ($self, $template, $name) = @_;

    $name ||= 'test.conf';
    $self->write_conf($template, $name, error_log => 'nginx-t.log')
        if defined $template;

    my $out = $self->_cmd($self->{nginx}, '-t', '-p', "$self->{dir}/",
        '-e', 'logs/nginx-t.log', '-c', "conf/$name");

    return ($? >> 8, $out);
}


sub _cmd {
    my ($self, @cmd) = @_;

    pipe my $r, my $w or die "pipe: $!\n";
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        close $r;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>&', $w;
        open STDERR, '>&', $w;
        exec @cmd or POSIX::_exit(127);
    }

    close $w;
    local $/;
    my $out = <$r>;
    close $r;
    waitpid $pid, 0;

    return defined $out ? $out : '';
}


sub run {
    my ($self, $template) = @_;

    $self->write_conf($template) if defined $template;

    my $out = $self->_cmd($self->{nginx}, '-p', "$self->{dir}/",
        '-e', 'logs/error.log', '-c', 'conf/nginx.conf');
    my $rc = $? >> 8;

    if ($rc != 0) {
        Test::More::diag("nginx failed to start ($rc):\n$out");
        Test::More::BAIL_OUT('nginx did not start') if $ENV{TG_BAIL};
        die "nginx did not start:\n$out";
    }

    # from here on stop() must stop it, even if a check below dies
    $self->{running} = 1;

    my $end = now() + 5;
    while (!-s "$self->{dir}/logs/nginx.pid" && now() < $end) {
        sleep 0.05;
    }
    $self->{nginx_pid} = $self->_nginx_pid;

    for my $n (sort keys %{ $self->{ports} }) {
        next if $n eq 'UP';
        $self->_wait_port($self->{ports}{$n})
            or die "nginx is not listening on $self->{ports}{$n}\n";
    }

    # the master listens before it forks its workers: a test that looks
    # at the workers (or their "start worker process" lines) right after
    # run() must find them all

    my $want = 1;
    my $conf = $self->read_file('conf/nginx.conf') // '';
    $want = $1 if $conf =~ /^\s*worker_processes\s+(\d+)\s*;/m;
    $want = 0 if $conf =~ /^\s*master_process\s+off\s*;/m;

    $end = now() + 5;
    while (now() < $end) {
        my $log = $self->read_file('logs/error.log') // '';
        my $started = () = $log =~ /start worker process \d+/g;
        my $running = () = $self->worker_pids;
        last if $running >= $want && $started >= $want;
        sleep 0.05;
    }

    return $self;
}


# Starts nginx in the foreground of a child process, under a wrapper
# (valgrind): the conf says "master_process off; daemon off;", so the
# child is the nginx that serves.  stop() quits it and reaps it.  Waits
# up to $o{timeout} seconds (default 60) for every port.

sub run_wrapped {
    my ($self, $template, $wrapper, %o) = @_;

    $self->write_conf($template) if defined $template;

    my $pid = fork;
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$self->{dir}/logs/wrapper.log";
        open STDERR, '>>', "$self->{dir}/logs/wrapper.log";
        exec @$wrapper, $self->{nginx}, '-p', "$self->{dir}/",
            '-e', 'logs/error.log', '-c', 'conf/nginx.conf'
            or POSIX::_exit(127);
    }

    $self->{running} = 1;
    $self->{nginx_pid} = $pid;
    $self->{child_pid} = $pid;

    for my $n (sort keys %{ $self->{ports} }) {
        next if $n eq 'UP';
        $self->_wait_port($self->{ports}{$n}, $o{timeout} || 60)
            or die "nginx is not listening on $self->{ports}{$n}\n";
    }

    return $pid;
}


# The pids of the master's live worker (and cache) processes, sorted.

sub worker_pids {
    my ($self) = @_;
    my $master = $self->_nginx_pid or return ();
    my @w;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $s = <$fh>;
        close $fh;
        push @w, $1 if defined $s
            && $s =~ /^(\d+) \(nginx\) ([A-Z]) (\d+)/
            && $3 == $master && $2 ne 'Z';
    }
    return sort { $a <=> $b } @w;
}


sub _nginx_pid {
    my ($self) = @_;
    my $p = $self->read_file('logs/nginx.pid');
    return undef unless defined $p && $p =~ /(\d+)/;
    return $1;
}


sub _alive {
    my ($pid) = @_;
    return 0 unless kill 0, $pid;
    # a daemon's master is not our child: once it exits it may linger as
    # a zombie of a pid 1 that does not reap
    if (open my $fh, '<', "/proc/$pid/stat") {
        my $s = <$fh>;
        close $fh;
        return 0 if defined $s && $s =~ /\)\s+Z\s/;
    }
    return 1;
}


sub reload {
    my ($self) = @_;
    my $pid = $self->_nginx_pid or return;
    kill 'HUP', $pid;
    sleep 1;
}


# The fdatasync() shim of t/lib/tg-syncshim.c, built into the test's
# directory: slow by delay_ms, held while the file "hold" is there,
# failing while "fail" is.  Returns the .so for LD_PRELOAD, or undef when
# it cannot be had (no compiler, or a sanitizer build of nginx, which
# cannot take a shim): the test then skips.

sub sync_shim {
    my ($self, %o) = @_;

    return undef if defined $ENV{TG_MODULE} && $ENV{TG_MODULE} eq '';

    my $d = $self->{dir};
    my $so = "$d/syncshim.so";
    my $delay = int($o{delay_ms} || 0);

    system('cc', '-shared', '-fPIC', "-DTG_SHIM_DIR=\"$d\"",
        "-DTG_SHIM_DELAY_MS=$delay", '-o', $so,
        "$REPO/t/lib/tg-syncshim.c", '-ldl') == 0
        or return undef;
    chmod 0755, $so;

    return $so;
}


# The SIGKILL shim of t/lib/tg-killshim.c, built into the test's
# directory: a process killed right after it writes an audit record while
# the file "kill" is there.  Returns the .so for LD_PRELOAD, or undef when
# it cannot be had (no compiler, or a sanitizer build of nginx).

sub kill_shim {
    my ($self) = @_;

    return undef if defined $ENV{TG_MODULE} && $ENV{TG_MODULE} eq '';

    my $d = $self->{dir};
    my $so = "$d/killshim.so";

    system('cc', '-shared', '-fPIC', "-DTG_SHIM_DIR=\"$d\"", '-o', $so,
        "$REPO/t/lib/tg-killshim.c", '-ldl') == 0
        or return undef;
    chmod 0755, $so;

    return $so;
}


# "nginx -s reopen": the master reopens the logs, then each worker.

sub reopen {
    my ($self) = @_;
    my $pid = $self->_nginx_pid or return;
    kill 'USR1', $pid;
    sleep 1;
}


sub stop {
    my ($self) = @_;

    if ($self->{running}) {
        my $pid = $self->_nginx_pid || $self->{nginx_pid};
        if ($pid) {
            kill 'QUIT', $pid;
            my $end = now() + 10;
            sleep 0.05 while _alive($pid) && now() < $end;
            if (_alive($pid)) {
                # the daemon is a process group leader (setsid): its
                # workers go with it
                Test::More::diag("nginx $pid did not quit: killed");
                kill 'TERM', -$pid;
                sleep 1;
                kill 'KILL', -$pid if _alive($pid);
            }
        }
        if (my $child = delete $self->{child_pid}) {
            kill 'KILL', $child if _alive($child);
            waitpid $child, 0;
        }
        $self->{running} = 0;
    }

    $self->stop_upstream;
}


sub stop_upstream {
    my ($self) = @_;
    if (my $pid = delete $self->{upstream_pid}) {
        kill 'TERM', $pid;
        waitpid $pid, 0;
    }
    for my $pid (@{ delete $self->{more_upstream_pids} || [] }) {
        kill 'TERM', $pid;
        waitpid $pid, 0;
    }
}


# An [alert] the test provokes on purpose (say, the audit log on
# /dev/full): lines matching $re are not counted.  Only [alert]: an
# [emerg] or a sanitizer report always fails.

sub expect_alert {
    my ($self, $re) = @_;
    push @{ $self->{expected_alerts} }, $re;
    return $self;
}


# An [emerg] nginx itself logs at run time for a failure the test
# provokes on purpose (a worker's reopen refused): lines matching $re
# are not counted.

sub expect_emerg {
    my ($self, $re) = @_;
    push @{ $self->{expected_emergs} }, $re;
    return $self;
}


# Problems in error.log that fail any test file.

sub log_problems {
    my ($self) = @_;
    my $log = $self->error_log;
    my @exp = @{ $self->{expected_alerts} || [] };
    my @emerg = @{ $self->{expected_emergs} || [] };

    return grep {
        my $l = $_;
        !($l =~ /\[emerg\]/ && grep { $l =~ $_ } @emerg)
    } grep {
        my $l = $_;
        !($l =~ /\[alert\]/ && !/AddressSanitizer|LeakSanitizer|runtime\ error:/
            && grep { $l =~ $_ } @exp)
    } grep { /\[alert\]|\[emerg\]|AddressSanitizer|LeakSanitizer|
        runtime\ error:|\[crit\].*(?:signal|core)/x } split /\n/, $log;
}


# Stops everything and checks error.log (one test).  done_testing does
# it for the object it is called on; a file running a second nginx calls
# finish on that one itself.

sub finish {
    my ($self) = @_;

    return if $self->{done};
    $self->stop;

    my @p = $self->log_problems;
    Test::More::is(scalar(@p), 0, 'no alert, emerg or sanitizer report '
        . 'in error.log') or Test::More::diag(join "\n",
        @p[0 .. ($#p > 20 ? 20 : $#p)]);

    my @secrets = $self->test_secrets;
    if (@secrets) {
        my @leaks = $self->leaks(@secrets);
        Test::More::is(scalar(@leaks), 0, 'none of the ' . scalar(@secrets)
            . ' test secrets in error.log, the access or audit logs or a '
            . 'response') or Test::More::diag(join "\n",
            @leaks[0 .. ($#leaks > 9 ? 9 : $#leaks)]);
    }

    $self->{done} = 1;
}


# Every secret of this test: those of the files it wrote (see
# _note_secrets) and those the stand-ins issued, from the lists they
# keep in the test directory (tg-metadata.pl's keys and sessions,
# tg-iam.pl's tokens and user tokens).

sub test_secrets {
    my ($self) = @_;

    my %s = %{ $self->{secrets} || {} };

    for my $f ([ keys => 1, 2 ], [ tokens => 0 ], [ 'user-tokens' => 0 ],
        [ sessions => 0 ])
    {
        my ($name, @cols) = @$f;
        my $c = $self->read_file($name);
        next unless defined $c;

        for my $l (split /\n/, $c) {
            my @w = split ' ', $l;
            next if !@w || $w[0] eq 'revoke';
            $s{$_} = 1 for grep { defined && length >= 12 } @w[@cols];
        }
    }

    return sort keys %s;
}


# Where a secret must never be: error.log at every level (but nginx's
# own dumps of the proxy's headers, README), the access and audit logs
# the configuration names (rotated ones too) and every response.  Looks
# for each secret and its first and last 12 characters; returns what it
# found, never the secret itself.

sub leaks {
    my ($self, @secrets) = @_;

    my %where = (
        'error.log' => $self->error_log_without_proxy_dumps,
        'responses' => join("\n", @{ $self->{responses} || [] }),
    );

    my $conf = $self->read_file('conf/nginx.conf');
    $conf = '' unless defined $conf;

    my %files = ("$self->{dir}/logs/access.log" => 1);
    while ($conf =~ /^\s*(?:access_log|taurus_guard_audit_log)\s+([^\s;]+)/mg)
    {
        my $f = $1;
        next if $f eq 'off' || $f =~ /^syslog:/;
        $f = "$self->{dir}/$f" unless $f =~ m{\A/};
        $files{$_} = 1 for grep { -f } $f, glob("$f.*");
    }

    for my $f (sort keys %files) {
        my $c = $self->read_file($f);
        (my $short = $f) =~ s{\A\Q$self->{dir}\E/}{};
        $where{$short} = $c if defined $c;
    }

    my @found;
    for my $w (sort keys %where) {
        for my $i (0 .. $#secrets) {
            my $v = $secrets[$i];
            for my $piece ($v, substr($v, 0, 12), substr($v, -12)) {
                next if index($where{$w}, $piece) < 0;
                push @found, "$w: test secret #$i (or 12 characters of it)";
                last;
            }
        }
    }

    return @found;
}


sub done_testing {
    my ($self) = @_;

    $_->finish for grep { $_->{pid} == $$ } @LIVE;
    Test::More::done_testing();
}


END {
    my $status = $?;
    for my $t (@LIVE) {
        next unless $t->{pid} == $$;
        next if $t->{done};
        $t->stop;
        my @p = $t->log_problems;
        if (@p) {
            Test::More::diag("error.log problems:\n" . join "\n", @p);
            $status ||= 1;
        }
    }
    $? = $status;
}


# ---- HTTP ----------------------------------------------------------

# $t->metrics: GET /metrics on the first port (a location with
# taurus_guard_metrics); returns the response and { "name{labels}" =>
# value } of its samples.

sub metrics {
    my ($self) = @_;

    my $r = $self->http("GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
    my %m;

    for my $l (split /\n/, $r->{body} || '') {
        next if $l =~ /^#/;
        my ($k, $v) = $l =~ /\A(\S+) (\S+)\z/ or next;
        $m{$k} = $v;
    }

    return ($r, \%m);
}

# $t->http($raw, port => N, split => [...], delay => s)
# $raw: the whole request, or an arrayref of pieces written with a
# short sleep between them; timeout => s (30 by default, on the
# monotonic clock) for the whole answer, which ends when the server
# closes.  socket => $s: on a connection already open (one of
# worker_connections()) instead of a new one.  Returns { status,
# headers => [[n, v]], body, raw, elapsed (seconds), timed_out } (status
# undef when nothing came).

sub http {
    my ($self, $raw, %o) = @_;

    my $s = $o{socket};

    if (!defined $s) {
        my $port = $self->port(defined $o{port} ? $o{port} : 0);
        $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
            Proto => 'tcp', Timeout => 5)
            or die "connect 127.0.0.1:$port: $!\n";
        binmode $s;
    }

    my @pieces = ref $raw ? @$raw : ($raw);
    local $SIG{PIPE} = 'IGNORE';

    for my $i (0 .. $#pieces) {
        my $p = $pieces[$i];
        my $off = 0;
        while ($off < length $p) {
            my $n = syswrite($s, $p, length($p) - $off, $off);
            last unless $n;
            $off += $n;
        }
        sleep(defined $o{delay} ? $o{delay} : 0.1) if $i < $#pieces;
    }

    return $self->answer($s, %o);
}


# $t->answer($s, timeout => s): the answer on connection $s to what was
# written on it, read until the server closes it (or timeout, 30 s by
# default); $s is closed.  Returns what http() does.

sub answer {
    my ($self, $s, %o) = @_;

    my $resp = '';
    my $sel = IO::Select->new($s);
    my $start = now();
    my $end = $start + ($o{timeout} || 30);
    my $timed_out = 1;

    while ((my $left = $end - now()) > 0) {
        if (!$sel->can_read($left)) {
            next if $!{EINTR};
            last;
        }
        my $n = sysread($s, $resp, 65536, length $resp);
        next if !defined $n && $!{EINTR};
        if (!$n) {
            $timed_out = 0;
            last;
        }
    }
    close $s;

    my $r = parse_response($resp);
    $r->{elapsed} = now() - $start;
    $r->{timed_out} = $timed_out;
    push @{ $self->{responses} }, $resp;
    return $r;
}


# $t->worker_connections($n): keep-alive connections to the first port,
# one to each of $n workers, as { pid => socket } (fewer when new
# connections keep going to the same workers).  nginx serves a
# connection in the worker that accepted it, so a request sent on one
# is that worker's.  The conf has a location "= /pid" answering "$pid".

sub worker_connections {
    my ($self, $n) = @_;

    my %conn;
    my $port = $self->port(0);

    for (1 .. 50 * $n) {
        last if keys %conn == $n;

        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
            Proto => 'tcp', Timeout => 5) or next;
        binmode $s;
        syswrite($s, "GET /pid HTTP/1.1\r\nHost: localhost\r\n\r\n");

        my $resp = '';
        my $sel = IO::Select->new($s);
        my $end = now() + 5;

        while (now() < $end && $sel->can_read($end - now())) {
            my $got = sysread($s, $resp, 4096, length $resp);
            last unless $got;
            my ($head, $body) = split /\r\n\r\n/, $resp, 2;
            last if defined $body && $head =~ /^Content-Length: (\d+)/mi
                && length $body >= $1;
        }

        my ($pid) = $resp =~ /\A HTTP\/1\.1 \s 200 .* \r\n\r\n (\d+) \z/sx;

        if (!defined $pid || $conn{$pid}) {
            close $s;
            next;
        }

        $conn{$pid} = $s;
    }

    return \%conn;
}


# A process (sleep 120) with pid $want, made through
# /proc/sys/kernel/ns_last_pid (root only), as CRIU restores processes:
# for a test of what a dead worker left under its pid.  undef when the
# kernel keeps giving the number to other processes first.  The caller
# kills and reaps it.

sub take_pid {
    my ($want) = @_;
    my $end = now() + 20;

    while (now() < $end) {

        # another process has it now: wait until it is gone

        if (kill 0, $want) {
            sleep 0.02;
            next;
        }

        open my $fh, '>', '/proc/sys/kernel/ns_last_pid' or return;
        print $fh $want - 1;
        close $fh or return;

        my $pid = fork;
        return unless defined $pid;

        if ($pid == 0) {
            exec 'sleep', '120' if $$ == $want;
            POSIX::_exit(0);
        }

        return $pid if $pid == $want;
        waitpid $pid, 0;
    }

    return;
}


sub parse_response {
    my ($resp) = @_;

    my $r = { raw => $resp, status => undef, headers => [], body => '' };

    return $r unless $resp =~ /\A(HTTP\/\d\.\d) (\d{3})[^\r\n]*\r\n/;
    $r->{status} = $2;

    my ($head, $body) = split /\r\n\r\n/, $resp, 2;
    my @lines = split /\r\n/, $head;
    shift @lines;
    for my $l (@lines) {
        my ($n, $v) = $l =~ /\A([^:]+):\s*(.*?)\s*\z/ or next;
        push @{ $r->{headers} }, [ $n, $v ];
    }
    $body = '' unless defined $body;

    if ((header($r, 'Transfer-Encoding') || '') =~ /chunked/i) {
        my $out = '';
        while ($body =~ s/\A([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $size = hex $1;
            last if $size == 0;
            $out .= substr $body, 0, $size, '';
            $body =~ s/\A\r\n//;
        }
        $body = $out;
    }

    $r->{body} = $body;
    $r->{json} = eval { $json->decode($body) }
        if $body =~ /\A\s*[\{\[]/;

    return $r;
}


# First value of header $name (case-insensitive) of a response or request.

sub header {
    my ($r, $name) = @_;
    return undef unless defined $r;
    for my $h (@{ (ref $r eq 'HASH' ? $r->{headers} : $r) || [] }) {
        return $h->[1] if lc $h->[0] eq lc $name;
    }
    return undef;
}


sub headers_named {
    my ($r, $name) = @_;
    return () unless defined $r;
    return map { $_->[1] } grep { lc $_->[0] eq lc $name }
        @{ (ref $r eq 'HASH' ? $r->{headers} : $r) || [] };
}


# $t->post($target, $body, headers => [[n, v], ...], content_type => ..,
#          method => .., chunked => [sizes] | 1, split => 1, port => N)

sub post {
    my ($self, $target, $body, %o) = @_;

    $body = '' unless defined $body;
    my $method = $o{method} || 'POST';
    my $ct = exists $o{content_type} ? $o{content_type}
        : 'application/json';

    my $head = "$method $target HTTP/1.1\r\n"
        . "Host: " . ($o{host} || 'localhost') . "\r\n"
        . "Connection: close\r\n";
    $head .= "Content-Type: $ct\r\n" if defined $ct;
    $head .= "$_->[0]: $_->[1]\r\n" for @{ $o{headers} || [] };

    my @pieces;

    if ($o{chunked}) {
        $head .= "Transfer-Encoding: chunked\r\n\r\n";
        my $size = ref $o{chunked} ? $o{chunked} : 100;
        my $b = $body;
        @pieces = ($head);
        while (length $b) {
            my $c = substr $b, 0, $size, '';
            push @pieces, sprintf("%x\r\n", length $c) . $c . "\r\n";
        }
        push @pieces, "0\r\n\r\n";
        @pieces = (join '', @pieces) unless $o{split};

    } else {
        $head .= "Content-Length: " . length($body) . "\r\n"
            unless $o{no_length};
        $head .= "\r\n";
        @pieces = $o{split} ? ($head, $body) : ($head . $body);
    }

    return $self->http(@pieces == 1 ? $pieces[0] : \@pieces, %o);
}


# $n POSTs of $body to $path at once, each from its own process; returns
# [status, error_code, id] for each, in no particular order.

sub concurrent_posts {
    my ($self, $path, $body, $n) = @_;

    my @kids;

    for my $i (1 .. $n) {
        pipe my $r, my $w or die "pipe: $!\n";
        my $pid = fork;
        die "fork: $!\n" unless defined $pid;

        if ($pid == 0) {
            close $r;
            my $resp = eval { $self->post($path, $body) } || {};
            my $j = $resp->{json} || {};
            print $w join(' ', $resp->{status} || 'none',
                $j->{error_code} || '-',
                header($resp, 'X-Taurus-Guard-Id') || '-') . "\n";
            close $w;
            POSIX::_exit(0);
        }

        close $w;
        push @kids, [ $pid, $r ];
    }

    my @out;
    for my $k (@kids) {
        my $fh = $k->[1];
        my $l = <$fh>;
        close $fh;
        waitpid $k->[0], 0;
        chomp $l if defined $l;
        push @out, [ split / /, defined $l ? $l : 'none - -' ];
    }

    return @out;
}


# The worker pids that served the requests @ids, from an access log
# "logs/pids.log" in the format '$pid $status $taurus_guard_id'.

sub workers_of {
    my ($self, @ids) = @_;
    my %want = map { $_ => 1 } @ids;
    my %pids;
    for my $l (split /\n/, $self->read_file('logs/pids.log') || '') {
        my ($pid, $status, $id) = split / /, $l;
        $pids{$pid}++ if defined $id && $want{$id};
    }
    return keys %pids;
}


# error.log without nginx's own dumps of the proxy's headers, which hold
# an injected X-Auth-Token or X-Security-Token at debug level (README).

sub error_log_without_proxy_dumps {
    my ($self) = @_;
    my ($cut, $in_block) = ('', 0);
    for my $l (split /\n/, $self->error_log) {
        # nginx cuts a log line at 2048 bytes: a long dump has no
        # closing quote, the next log line ends it
        $in_block = 0
            if $in_block && $l =~ m{\A\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[};
        if ($in_block) {
            $in_block = 0 if $l eq '"';
            next;
        }
        # one header a line, closed, or cut at 2048 bytes with no quote
        next if $l =~ /\[debug\] .* http proxy header: "/;
        if ($l =~ /\[debug\] .* http proxy header:\z/) {
            $in_block = 1;
            next;
        }
        $cut .= "$l\n";
    }
    return $cut;
}


# The response is one of the gateway's own refusals: status, JSON shape,
# error_code, id header equal to audit_id.  Returns the decoded body.

sub is_refusal {
    my ($self, $r, $status, $code, $name) = @_;

    my $ok = Test::More::is($r->{status}, $status, "$name: status $status");
    my $j = $r->{json} || {};
    $ok &= Test::More::is($j->{error_code}, $code, "$name: $code");
    $ok &= Test::More::like(header($r, 'Content-Type') || '',
        qr{\Aapplication/json\b}, "$name: application/json");
    my $id = header($r, 'X-Taurus-Guard-Id');
    $ok &= Test::More::like($id || '', qr/\A[0-9a-f]{32}\z/,
        "$name: X-Taurus-Guard-Id");
    $ok &= Test::More::is($j->{audit_id}, $id, "$name: audit_id is the id");
    Test::More::diag("response: $r->{raw}") unless $ok;

    return $j;
}


1;
