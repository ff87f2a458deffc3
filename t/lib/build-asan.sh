#!/bin/bash
# t/lib/build-asan.sh DEST
#
# Builds a whole nginx 1.22.1 with the taurus-guard module linked in
# statically (--add-module), under AddressSanitizer and
# UndefinedBehaviorSanitizer, into DEST (DEST/sbin/nginx).  `make test-asan`
# then runs the suite against it with TG_NGINX=DEST/sbin/nginx TG_MODULE=
# (no load_module: the module is built in).
#
# Source: the original tarball of Debian's nginx source package
# (nginx_1.22.1.orig.tar.gz, fetched with `apt-get source --download-only`
# and checked against the SHA-256 apt's signed source index lists), built
# with Debian's configure flags (/usr/share/nginx/src/conf_flags, from
# nginx-dev) but with every path under DEST, so nothing under /etc/nginx,
# /var/lib/nginx or /var/log/nginx is touched.  Debian's patches are not
# applied: none of them matters to the module.
#
# On a fresh Debian 12 machine (CI, root) it adds a deb-src entry when there
# is none (/etc/apt/sources.list.d/taurus-guard-src.sources), runs
# apt-get update and installs the build dependencies it misses.
#
# Idempotent: nothing is rebuilt when DEST/sbin/nginx is newer than every
# file in src/, ngx_module/, config and this script.  FORCE=1 rebuilds.
#
# Sanitizer runtime options recommended for the test run (errors go to
# stderr, which the test harness sends to error.log; nginx does not free
# its pools at exit by design, so leak reports are noise: even `nginx -t`
# prints "138497 byte(s) leaked" without detect_leaks=0):
#
#   ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
#   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
#
# The binary also carries detect_leaks=0 and print_stacktrace=1 as its own
# defaults (__asan_default_options() and __ubsan_default_options() in a
# small object this script writes and links, build/asan-defaults.o), so a
# run without the variables is not drowned in leak reports.  Variables set
# in the environment still win.
#
# Sanitizer exclusions, each as narrow as we could make it (gcc 12; every
# other ASan and UBSan check stays on, for nginx and the module alike):
#
#   -fno-sanitize=nonnull-attribute   nginx passes NULL with length 0 to
#       memcpy() and friends (ngx_pstrdup() of an empty ngx_str_t, reached
#       from ngx_init_cycle() on every start: "null pointer passed as
#       argument 2, which is declared to never be null").  Harmless in
#       practice, undefined by the letter of C; nginx only started fixing
#       these in later versions, so the check is off for the whole binary.
#
#   -DNGX_HAVE_NONALIGNED=0   On x86 auto/os/conf defines
#       NGX_HAVE_NONALIGNED, and ngx_http_parse.c (ngx_str3_cmp() ...),
#       ngx_md5.c and the HTTP/2 code then read words through casts like
#       *(uint32_t *) p at any address: -fsanitize=alignment reports it on
#       the first request line that is not 4-byte aligned (the second of
#       two pipelined requests: "ngx_http_parse.c:165: load of misaligned
#       address ... for type 'uint32_t'").  With the feature off nginx uses
#       its portable byte-by-byte code instead, so the alignment check stays
#       on everywhere, the module included, rather than -fno-sanitize=
#       alignment.  (ngx_auto_config.h only defines it #ifndef.)
#
# Compiler: gcc (tested).  CC=clang-14 is accepted but untested; clang 14
# checks -fsanitize=function only for C++, so nginx's handler-pointer casts
# should not be reported in C.

set -euo pipefail

NGINX_VERSION=1.22.1
ORIG=nginx_$NGINX_VERSION.orig.tar.gz
# upstream nginx-1.22.1.tar.gz, identical to Debian's .orig
ORIG_SHA256=9ebb333a9e82b952acd3e2b4aeb1d4ff6406f72491bab6cd9fe69f0dea737f31
SRC_LIST=/etc/apt/sources.list.d/taurus-guard-src.sources
BUILD_DEPS="gcc make libpcre2-dev zlib1g-dev libssl-dev libcjson-dev \
nginx-dev ca-certificates"

say() { printf 'build-asan: %s\n' "$*"; }
die() { printf 'build-asan: error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 DEST"

top=$(cd "$(dirname "$0")/../.." && pwd)
self="$top/t/lib/build-asan.sh"
mkdir -p "$1"
dest=$(cd "$1" && pwd)
cache="$top/build/nginx-orig"
work="$top/build/asan-src"
codename=$( . /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
codename=${codename:-bookworm}
cc=${CC:-gcc}
[ "$cc" = cc ] && cc=gcc

sudo=
[ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive


# ---- up to date? ------------------------------------------------------

if [ -z "${FORCE:-}" ] && [ -x "$dest/sbin/nginx" ]; then
    newer=$(find "$top/src" "$top/ngx_module" "$top/config" "$self" \
            -type f -newer "$dest/sbin/nginx" -print -quit)
    if [ -z "$newer" ]; then
        say "$dest/sbin/nginx is up to date (FORCE=1 rebuilds)"
        exit 0
    fi
    say "rebuilding: $newer is newer than $dest/sbin/nginx"
fi


# ---- build dependencies -------------------------------------------------

apt_updated=
apt_update() {
    if [ -z "$apt_updated" ]; then
        say "apt-get update"
        $sudo apt-get update -q
        apt_updated=1
    fi
}

missing=
for p in $BUILD_DEPS $cc; do
    case $p in
        gcc|clang-*) ;;
        */*|*' '*) continue ;;
    esac
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
        | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    apt_update
    say "installing:$missing"
    $sudo apt-get install -y -q --no-install-recommends $missing
fi

conf_flags=/usr/share/nginx/src/conf_flags
[ -f "$conf_flags" ] || die "$conf_flags missing (apt-get install nginx-dev)"


# ---- the original tarball -------------------------------------------------

sha_ok() {
    [ -f "$1" ] && echo "$ORIG_SHA256  $1" | sha256sum --quiet -c - 2>/dev/null
}

fetch_orig() {
    local v versions

    # a deb-src entry for the release's main suite, main component
    if ! apt-get indextargets --format '$(TARGET_OF) $(RELEASE) $(COMPONENT)' \
            | grep -qx "deb-src $codename main"
    then
        say "no deb-src entry for $codename main: writing $SRC_LIST"
        $sudo tee "$SRC_LIST" > /dev/null <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        apt_updated=
    fi
    apt_update

    # Every nginx $NGINX_VERSION-* source version apt knows.  Some (the
    # security suite's, on some mirrors) have an index entry but no .dsc or
    # .debian.tar behind it: apt-get then fails after having fetched the
    # .orig.  The .orig is all we need, so success is "the .orig is there
    # with the right checksum", whatever apt-get's exit status.
    versions=$(apt-cache showsrc nginx 2>/dev/null \
               | sed -n "s/^Version: \($NGINX_VERSION-.*\)/\1/p" | sort -uV)
    [ -n "$versions" ] || die "apt knows no nginx $NGINX_VERSION source"

    mkdir -p "$cache"
    for v in $versions; do
        say "apt-get source --download-only nginx=$v (into $cache)"
        (cd "$cache" && apt-get source -q --download-only "nginx=$v") \
            || say "apt-get source nginx=$v failed; checking for the .orig"
        if sha_ok "$cache/$ORIG"; then
            return 0
        fi
        rm -f "$cache/$ORIG"
    done
    die "could not fetch $ORIG with the expected SHA-256"
}

if sha_ok "$cache/$ORIG"; then
    say "using cached $cache/$ORIG"
else
    fetch_orig
    say "fetched $cache/$ORIG (SHA-256 verified)"
fi


# ---- configure ------------------------------------------------------------

# Debian's flags, then ours: configure takes the last of repeated options,
# so every path below overrides Debian's /etc/nginx, /var/lib/nginx ...

. "$conf_flags"

cc_opt="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined"
cc_opt="$cc_opt -fno-sanitize-recover=all -DNGX_DEBUG_PALLOC=1"
cc_opt="$cc_opt -fno-sanitize=nonnull-attribute"
cc_opt="$cc_opt -DNGX_HAVE_NONALIGNED=0"
defaults="$top/build/asan-defaults"
ld_opt="-fsanitize=address,undefined $defaults.o"

# The binary gets the time the sources were read, not the time the build
# ended: a file edited during the build then triggers the next rebuild.
stamp="$top/build/asan-src.stamp"
touch "$stamp"

say "unpacking into $work"
rm -rf "$work"
mkdir -p "$work"
tar -xzf "$cache/$ORIG" -C "$work" --strip-components=1

# Runtime defaults, compiled without instrumentation: the sanitizer
# runtimes call these before anything else is set up.
cat > "$defaults.c" <<'EOF'
/* Written by t/lib/build-asan.sh: sanitizer defaults for nginx. */

const char *__asan_default_options(void);
const char *__ubsan_default_options(void);


const char *
__asan_default_options(void)
{
    return "detect_leaks=0";
}


const char *
__ubsan_default_options(void)
{
    return "print_stacktrace=1";
}
EOF
"$cc" -c -O1 -o "$defaults.o" "$defaults.c"

say "configuring nginx $NGINX_VERSION with $cc, prefix $dest"
say "  cc-opt: $cc_opt"
say "  ld-opt: $ld_opt"
start=$(date +%s)
(
    cd "$work"
    ./configure "${NGX_CONF_FLAGS[@]}" \
        --prefix="$dest" \
        --sbin-path="$dest/sbin/nginx" \
        --conf-path="$dest/conf/nginx.conf" \
        --modules-path="$dest/modules" \
        --pid-path="$dest/logs/nginx.pid" \
        --lock-path="$dest/logs/nginx.lock" \
        --error-log-path=stderr \
        --http-log-path="$dest/logs/access.log" \
        --http-client-body-temp-path="$dest/temp/body" \
        --http-fastcgi-temp-path="$dest/temp/fastcgi" \
        --http-proxy-temp-path="$dest/temp/proxy" \
        --http-scgi-temp-path="$dest/temp/scgi" \
        --http-uwsgi-temp-path="$dest/temp/uwsgi" \
        --with-debug \
        --with-cc="$cc" \
        --with-cc-opt="$cc_opt" \
        --with-ld-opt="$ld_opt" \
        --add-module="$top"
) > "$top/build/asan-configure.log" 2>&1 || {
    tail -20 "$top/build/asan-configure.log"
    die "configure failed (log: $top/build/asan-configure.log)"
}

grep -q taurus_guard "$work/objs/Makefile" \
    || die "configure did not pick up the module"


# ---- build and install ------------------------------------------------------

say "make -j2 (log: $top/build/asan-make.log)"
make -C "$work" -j2 > "$top/build/asan-make.log" 2>&1 || {
    tail -30 "$top/build/asan-make.log"
    die "make failed (log: $top/build/asan-make.log)"
}

say "installing into $dest"
make -C "$work" install > /dev/null

# Workers run as nobody when the tests run as root: the prefix must be
# traversable and the default temp dirs creatable.
mkdir -p "$dest/temp" "$dest/logs"
chmod 0755 "$dest" "$dest/sbin" "$dest/temp" "$dest/logs"
touch -r "$stamp" "$dest/sbin/nginx"

"$dest/sbin/nginx" -V 2>&1 | grep -q -- "--add-module=$top" \
    || die "$dest/sbin/nginx -V does not show the module"

say "built $dest/sbin/nginx in $(( $(date +%s) - start )) s"
say "run the suite with: ASAN_OPTIONS=detect_leaks=0:abort_on_error=1" \
    "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1" \
    "TG_NGINX=$dest/sbin/nginx TG_MODULE= prove -I t/lib t/*.t"
