#!/usr/bin/perl

# taurus_guard_audit_syslog: trusted_certificate= or ssl_name= without
# ssl fails nginx -t, with the file and line.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Sys::Hostname ();
use Test::More;
use Time::HiRes qw(sleep);

use Test::TaurusGuard qw(:all);

my $json = JSON::PP->new->utf8->canonical;
my @kids;

END {
    local $?;
    for my $pid (@kids) {
        kill 'TERM', $pid;
        waitpid $pid, 0;
    }
}

sub http_conf {
    my (%o) = @_;
    my $syslog = $o{syslog};
    my $fsync = $o{fsync} || '';
    return <<"EOF";
worker_processes 1;

http {
    taurus_guard_credentials %%TESTDIR%%/credentials;
    taurus_guard_audit_log %%TESTDIR%%/audit.log$fsync;
    taurus_guard_audit_syslog $syslog;
    taurus_guard_max_batch 100;

    taurus_guard_allow {
        %%PROJECT%% @INSTANCES;
    }

    server {
        listen 127.0.0.1:%%PORT_0%%;
        server_name localhost;

        location /v3/ {
            taurus_guard on;
            proxy_pass http://127.0.0.1:%%PORT_UP%%;
        }

        location = /ping {
            return 200 "pong\\n";
        }

        location = /metrics {
            taurus_guard_metrics;
        }
    }
}
EOF
}

# a collector in a child process: $serve->($client, $dir) per connection

sub collector {
    my ($port, $serve, $dir) = @_;

    my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$port",
        Proto => 'tcp', Listen => 8, ReuseAddr => 1)
        or die "collector on $port: $!\n";

    my $pid = fork;
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        $SIG{TERM} = sub { POSIX::_exit(0) };
        my $n = 0;
        while (my $c = $l->accept) {
            $n++;
            append("$dir/accepted", "$n\n");
            $serve->($c, $dir);
            close $c;
        }
        POSIX::_exit(0);
    }

    close $l;
    push @kids, $pid;
    return $pid;
}

sub append {
    my ($file, $data) = @_;
    open my $fh, '>>', $file or die "$file: $!\n";
    binmode $fh;
    print $fh $data;
    close $fh;
}

sub slurp {
    my ($file) = @_;
    open my $fh, '<', $file or return '';
    binmode $fh;
    local $/;
    my $c = <$fh>;
    close $fh;
    return defined $c ? $c : '';
}

# the octet-counted frames in $data: (messages, bytes left over)

sub frames {
    my ($data) = @_;
    my ($pos, @m) = (0);
    while (substr($data, $pos, 12) =~ /\A(\d+) /) {
        my $start = $pos + length($1) + 1;
        last if length($data) < $start + $1;
        push @m, substr($data, $start, $1);
        $pos = $start + $1;
    }
    return (\@m, length($data) - $pos);
}

# a port nobody listens on (the kernel's pick, let go): a collector down

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
        Proto => 'tcp', Listen => 1) or die "listen: $!\n";
    return $s->sockport;
}

sub cpu_ticks {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return undef;
    my $s = <$fh>;
    close $fh;
    $s =~ s/\A.*\)\s+//s;
    my @f = split ' ', $s;
    return $f[11] + $f[12];     # utime, stime: fields 14 and 15
}

sub wait_for {
    my ($cond, $timeout) = @_;
    my $end = now() + ($timeout || 5);
    while (now() < $end) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return $cond->();
}

# ---- nginx -t: trusted_certificate= or ssl_name= without ssl ----------

{
    my $t = Test::TaurusGuard->new;
    $t->write_credentials;

    $t->write_file('ca.pem', "not read\n");

    for my $p ('trusted_certificate=%%TESTDIR%%/ca.pem', 'ssl_name=logs') {
        my ($rc, $out) = $t->nginx_t(http_conf(syslog =>
            "server=127.0.0.1:%%PORT_SYSLOG%% $p"));
        (my $name = $p) =~ s/=.*/=/;
        my $line = $t->conf_line(qr/taurus_guard_audit_syslog/, 'test.conf');
        my $file = $t->conf_path('test.conf');

        isnt($rc, 0, "$name without ssl: nginx -t fails");
        like($out, qr/\[emerg\].*"\Q$name\E" without "ssl".* in \Q$file\E:$line\b/,
            "$name without ssl: [emerg] naming it, with file:line")
            or diag($out);
    }

    $t->finish;
}

done_testing();
