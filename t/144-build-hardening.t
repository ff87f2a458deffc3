#!/usr/bin/perl

# The module `make` builds is hardened as its nginx is: the options in
# `nginx -V`'s --with-cc-opt and --with-ld-opt (Debian's: the stack
# protector, _FORTIFY_SOURCE, full RELRO) reach the module's compile and
# link, which Debian's conf_flags alone leave out.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use Test::TaurusGuard;

my $repo = Test::TaurusGuard->repo;
my $so = "$repo/build/ngx_http_taurus_guard_module.so";
my $nginx = '/usr/sbin/nginx';

plan(skip_all => "no $so (run make)") unless -f $so;
plan(skip_all => "no $nginx") unless -x $nginx;
plan(skip_all => 'no readelf') if system('readelf -v >/dev/null 2>&1');

my $args = `$nginx -V 2>&1`;
my ($ccopt) = $args =~ /--with-cc-opt='([^']*)'/;
my ($ldopt) = $args =~ /--with-ld-opt='([^']*)'/;

plan(skip_all => "$nginx -V shows no --with-cc-opt or --with-ld-opt")
    unless defined $ccopt && defined $ldopt;

my $dynamic = `readelf -W -d $so 2>&1`;
my $segments = `readelf -W -l $so 2>&1`;
my $symbols = `readelf -W --dyn-syms $so 2>&1`;

ok($? == 0 && $symbols =~ /ngx_http_taurus_guard_module/,
    'readelf reads the module')
    or diag($symbols);

SKIP: {
    skip 'nginx has no -fstack-protector', 1
        unless $ccopt =~ /-fstack-protector/;

    like($symbols, qr/\b__stack_chk_fail\b/,
        'the stack protector, as nginx has it');
}

SKIP: {
    skip 'nginx has no _FORTIFY_SOURCE', 1
        unless $ccopt =~ /-D_FORTIFY_SOURCE=[1-9]/;

    like($symbols, qr/\b__\w+_chk\b/,
        '_FORTIFY_SOURCE checked calls, as nginx has them');
}

SKIP: {
    skip 'nginx is not linked -z relro', 1 unless $ldopt =~ /-z,?relro/;

    like($segments, qr/\bGNU_RELRO\b/, 'RELRO, as nginx has it');
}

SKIP: {
    skip 'nginx is not linked -z now', 1 unless $ldopt =~ /-z,?now/;

    like($dynamic, qr/\bBIND_NOW\b|\bFlags:.*\bNOW\b/,
        'immediate binding (full RELRO), as nginx has it');
}

SKIP: {
    skip 'nginx is not compiled -O2', 1 unless $ccopt =~ /(^|\s)-O2(\s|$)/;

    my $makefile = "$repo/build/nginx/objs/Makefile";
    open(my $fh, '<', $makefile) or skip "no $makefile", 1;
    my ($cflags) = grep { /^CFLAGS\s*=/ } <$fh>;
    close($fh);

    like($cflags // '', qr/\s-O2(\s|$)/,
        "the module's CFLAGS end with nginx's -O2");
}

done_testing();
