package TaurusGuard::HTTPServer;

# The HTTP/1.1 server the test stand-ins share (t/lib/tg-upstream.pl,
# t/lib/tg-iam.pl, t/lib/tg-metadata.pl): a listening socket, one child
# process per connection, keep-alive, requests with a Content-Length or
# chunked body, responses written whole (or cut short on purpose),
# JSON-lines records appended under a lock; and the bits the test
# helpers of those files share (starting and stopping one of them).
# Only core Perl.
#
#   TaurusGuard::HTTPServer::run(
#       name    => 'tg-x',            # for "tg-x: ready on ADDR:PORT"
#       listen  => '127.0.0.1:PORT',
#       pidfile => FILE or undef,
#       handle  => sub { my ($c, $req) = @_; ...; return $keep },
#       child   => sub { ... },       # optional: run in each child first
#       request => { ... },           # optional: read_request options
#   );
#
# A request is a hash: method, target, version, headers ([name, value]
# in the order received), h (lower-case name => [values]), body (absent
# with body => 'discard'), time (Time::HiRes, when it was read whole),
# conn (the child's pid) and seq (its number on the connection).

use strict;
use warnings;

use Fcntl qw(:flock O_WRONLY O_APPEND O_CREAT);
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time);

my $JSON = JSON::PP->new->utf8->canonical;


# The JSON encoder of the records and bodies: UTF-8, keys sorted.

sub json {
    return $JSON;
}


# Listens, writes the pidfile, then serves each connection in a child
# of its own until TERM or INT, which stop the children too (so no idle
# keep-alive connection outlives the server).  Never returns.

sub run {
    my (%a) = @_;

    my $server = IO::Socket::INET->new(
        LocalAddr => $a{listen},
        Listen    => 128,
        ReuseAddr => 1,
        Proto     => 'tcp',
    ) or die "$0: cannot listen on $a{listen}: $@\n";

    if (defined $a{pidfile}) {
        open my $fh, '>', $a{pidfile} or die "$0: $a{pidfile}: $!\n";
        print $fh "$$\n";
        close $fh;
    }

    my %kids;

    $SIG{CHLD} = sub {
        while ((my $pid = waitpid(-1, WNOHANG)) > 0) {
            delete $kids{$pid};
        }
    };
    $SIG{PIPE} = 'IGNORE';
    $SIG{TERM} = $SIG{INT} = sub {
        kill 'TERM', keys %kids;
        exit 0;
    };

    print STDERR "$a{name}: ready on " . $server->sockhost . ':'
        . $server->sockport . "\n";

    while (1) {
        my $c = $server->accept or next;

        # one process per connection: nginx may keep one connection idle
        # while it opens another

        my $pid = fork;
        if (!defined $pid) {
            warn "$0: fork: $!\n";
            close $c;
            next;
        }

        if ($pid == 0) {
            close $server;
            $SIG{TERM} = $SIG{INT} = $SIG{CHLD} = 'DEFAULT';
            $a{child}->() if $a{child};
            serve($c, $a{handle}, %{ $a{request} || {} });
            POSIX::_exit(0);
        }

        $kids{$pid} = 1;
        close $c;
    }
}


# Requests on one connection, each given to $handle, until the client
# closes, a request cannot be read, or $handle returns false.

sub serve {
    my ($c, $handle, %o) = @_;
    my $buf = '';

    binmode $c;

    my $seq = 0;

    while (1) {
        my $req = read_request($c, \$buf, %o) or return;
        $req->{conn} = $$;
        $req->{seq} = ++$seq;
        $handle->($c, $req) or return;
    }
}


sub fill {
    my ($c, $bufref) = @_;
    return sysread($c, $$bufref, 65536, length $$bufref);
}


# One request from $c, with what is already in $$bufref (what follows
# it stays there); undef at the end of the connection or when it is
# malformed.  %o:
#
#   fold => 1            a header line starting with a space or a tab
#                        continues the one before (obs-fold)
#   one_length => 1      more than one Content-Length is malformed
#   body => 'discard'    Content-Length bytes (when a number) are read
#                        and dropped, Transfer-Encoding is not looked
#                        at, and the request has no body

sub read_request {
    my ($c, $bufref, %o) = @_;

    while ($$bufref !~ /\r?\n\r?\n/) {
        return undef if length $$bufref > 1 << 20;
        fill($c, $bufref) or return undef;
    }

    $$bufref =~ s/\A(.*?)\r?\n\r?\n//s;
    my @lines = split /\r?\n/, $1;
    my $line = shift @lines;

    my ($method, $target, $version) =
        $line =~ /\A(\S+) (\S+) (HTTP\/\d\.\d)\z/ or return undef;

    my @headers;
    for my $l (@lines) {
        if ($o{fold} && $l =~ /\A[ \t]/ && @headers) {
            $headers[-1][1] .= ' ' . $l =~ s/\A[ \t]+//r;
            next;
        }
        my ($n, $v) = $l =~ /\A([^:]+):[ \t]*(.*?)[ \t]*\z/ or return undef;
        push @headers, [ $n, $v ];
    }

    my %h;
    push @{ $h{ lc $_->[0] } }, $_->[1] for @headers;

    my %req = (
        method  => $method,
        target  => $target,
        version => $version,
        headers => \@headers,
        h       => \%h,
    );

    if (($o{body} || '') eq 'discard') {

        # a GET has no body; one sent anyway is read and ignored

        if ($h{'content-length'} && $h{'content-length'}[0] =~ /\A(\d+)\z/) {
            my $len = $1;
            while (length $$bufref < $len) {
                fill($c, $bufref) or return undef;
            }
            substr $$bufref, 0, $len, '';
        }

        return { %req, time => time };
    }

    my $body = '';

    if ($h{'transfer-encoding'}
        && lc($h{'transfer-encoding'}[-1]) =~ /chunked/)
    {
        while (1) {
            while ($$bufref !~ /\r?\n/) {
                fill($c, $bufref) or return undef;
            }
            $$bufref =~ s/\A([0-9A-Fa-f]+)[^\r\n]*\r?\n// or return undef;
            my $size = hex $1;
            if ($size == 0) {
                # trailers, then an empty line
                while ($$bufref !~ /\A\r?\n/ && $$bufref !~ /\r?\n\r?\n/) {
                    fill($c, $bufref) or return undef;
                }
                $$bufref =~ s/\A(?:.*?\r?\n)??\r?\n//s;
                last;
            }
            while (length $$bufref < $size + 2) {
                fill($c, $bufref) or return undef;
            }
            $body .= substr $$bufref, 0, $size, '';
            $$bufref =~ s/\A\r?\n//;
        }

    } elsif ($h{'content-length'}) {
        my $len = $h{'content-length'}[0];
        return undef unless $len =~ /\A\d+\z/;
        return undef if $o{one_length} && @{ $h{'content-length'} } != 1;
        while (length $$bufref < $len) {
            fill($c, $bufref) or return undef;
        }
        $body = substr $$bufref, 0, $len, '';
    }

    return { %req, body => $body, time => time };
}


# Whether the connection stays open after answering $req.

sub keep_alive {
    my ($req) = @_;

    my $conn = $req->{h}{connection} ? lc $req->{h}{connection}[-1] : '';

    return $req->{version} eq 'HTTP/1.1' ? $conn ne 'close'
        : $conn eq 'keep-alive';
}


# Writes a response whole (unless CUT, below):
#
#   HTTP/1.1 STATUS REASON
#   Content-Type: CONTENT_TYPE
#   Content-Length: length of BODY
#   each of HEADERS ("Name: value")
#   Connection: close                  (unless KEEP)
#
#   BODY                               (unless NO_BODY)
#
# Returns KEEP, or 0 when the client went away.
#
# CUT => N (a fault: the answer cut short) sends only the first N bytes
# of BODY, then ends the connection; returns 0.  CUT_MODE says how:
#
#   close    the headers as above (the whole body's Content-Length),
#            N bytes, then the connection closed (the default)
#   chunked  Transfer-Encoding: chunked instead of Content-Length, the
#            N bytes as one chunk, then the connection closed without
#            the last chunk
#   stall    as close, but the connection is held open, nothing more
#            sent, until the client closes it (its read timeout)

sub respond {
    my ($c, %r) = @_;

    my $cut = $r{no_body} ? undef : $r{cut};
    my $mode = $r{cut_mode} || 'close';
    my $body = $r{no_body} ? '' : $r{body};
    my $length = "Content-Length: " . length($r{body}) . "\r\n";

    if (defined $cut) {
        $body = substr $body, 0, $cut;

        if ($mode eq 'chunked') {
            $length = "Transfer-Encoding: chunked\r\n";
            $body = length $body
                ? sprintf("%x\r\n%s\r\n", length $body, $body) : '';
        }
    }

    my $resp = "HTTP/1.1 $r{status} $r{reason}\r\n"
        . "Content-Type: $r{content_type}\r\n"
        . $length
        . join('', map { "$_\r\n" } @{ $r{headers} || [] })
        . ($r{keep} && !defined $cut ? '' : "Connection: close\r\n")
        . "\r\n" . $body;

    my $off = 0;
    while ($off < length $resp) {
        my $n = syswrite($c, $resp, length($resp) - $off, $off);
        return 0 unless $n;
        $off += $n;
    }

    return $r{keep} unless defined $cut;

    if ($mode eq 'stall') {

        # the client's read times out: wait for it to close (at most a
        # minute), reading whatever it sends

        my ($rin, $buf) = ('', '');
        vec($rin, fileno($c), 1) = 1;
        my $until = time + 60;

        while (time < $until) {
            my $rout = $rin;
            next unless select($rout, undef, undef, 1) > 0;
            last unless sysread($c, $buf, 4096);
        }
    }

    return 0;
}


# Appends $line to $file in one write, under an exclusive lock (several
# children append to the same file).

sub append {
    my ($file, $line) = @_;

    sysopen my $fh, $file, O_WRONLY | O_APPEND | O_CREAT, 0644
        or die "$0: $file: $!\n";
    flock $fh, LOCK_EX;
    syswrite $fh, $line;
    close $fh;
}


# Whether $token is listed in $file ("TOKEN EXPIRES_EPOCH" lines) and
# neither expired nor revoked (a line "revoke TOKEN").  The stand-ins'
# token lists: IAM's user tokens, the metadata service's sessions.

sub listed_token {
    my ($file, $token) = @_;

    return 0 unless defined $file && defined $token && length $token;

    open my $fh, '<', $file or return 0;
    flock $fh, LOCK_SH;

    my ($expires, $revoked);

    while (my $l = <$fh>) {
        my @f = split ' ', $l;
        next unless @f == 2;
        if ($f[0] eq 'revoke') {
            $revoked = 1 if $f[1] eq $token;
        } elsif ($f[0] eq $token) {
            $expires = $f[1];
        }
    }

    close $fh;

    return defined $expires && !$revoked && $expires > time ? 1 : 0;
}


# Appends $rec to the JSON-lines file $file.

sub append_record {
    my ($file, $rec) = @_;
    append($file, $JSON->encode($rec) . "\n");
}


# ---- for the test helpers ---------------------------------------------

# Starts @cmd in the background, stdin from /dev/null, stdout and stderr
# appended to $log; returns its pid.

sub spawn {
    my ($log, @cmd) = @_;

    my $pid = fork;
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log;
        open STDERR, '>>', $log;
        exec @cmd or POSIX::_exit(127);
    }

    return $pid;
}


# Stops what spawn started: TERM, then waits for it.

sub stop {
    my ($pid) = @_;

    # waitpid() sets $?: keep the caller's (an END block's exit status)
    local $?;

    kill 'TERM', $pid;
    waitpid $pid, 0;
}


1;
