# taurus-guard: build, run and test the nginx module.
#
#   make            build build/ngx_http_taurus_guard_module.so and
#                   build/taurus-guard-verify (the audit chain checker)
#   make run        the example gateway in front of a local stand-in API
#   make test       unit tests, fuzz corpus replay, integration tests
#   make lint       the cheap style rules
#   make test-asan  the suite against an ASan/UBSan build of nginx
#   make fuzz       libFuzzer on every fuzz target
#   make bench      plain proxy_pass vs the module
#   make install    the module, its load snippet, the verifier and the
#                   logrotate file, the Debian way (DESTDIR, PREFIX, ...)
#   make uninstall  removes what make install put in place
#   make deb        libnginx-mod-http-taurus-guard_*.deb in $(DEB_OUT)
#
# The targets an operator starts from a fresh clone (run, test, test-asan,
# bench, fuzz, deb) install the Debian packages they miss with apt (sudo
# when not root) first; the file targets (make, module, verify, unit) never
# run apt.
#
# NGINX_SRC is the nginx source tree to build against: Debian's nginx-dev
# copy by default, or any nginx source (a release tarball or a git
# checkout).  Its configure arguments are Debian's conf_flags when the tree
# has them, else those of $(NGINX_BIN) -V, which must show --with-compat.

SHELL       := /bin/bash

NGINX_SRC   ?= /usr/share/nginx/src
NGINX_BIN   ?= /usr/sbin/nginx
BUILD       := $(CURDIR)/build
NGX_BUILD   := $(BUILD)/nginx
MODULE      := $(BUILD)/ngx_http_taurus_guard_module.so

CC          ?= cc
CORE_CFLAGS := -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror \
               -pedantic -O2 -g
CORE_LIBS   := -lcjson -lcrypto

CORE_SRCS   := $(wildcard src/*.c)
CORE_HDRS   := $(wildcard src/*.h)
TOOL_SRCS   := $(wildcard src/tools/*.c)
GLUE_SRCS   := $(wildcard ngx_module/*.c ngx_module/*.h)
UNIT_SRCS   := $(wildcard t/unit/test_*.c)
UNIT_BINS   := $(patsubst t/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRCS))
FUZZ_SRCS   := $(wildcard t/fuzz/fuzz_*.c)
FUZZ_BINS   := $(patsubst t/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))

DEB_PKGS    := nginx nginx-dev libcjson-dev libssl-dev gcc make perl \
               openssl
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all module verify deps unit fuzz-replay test test-asan asan-nginx \
        fuzz bench run lint \
        check-core clean install uninstall deb deb-deps

VERIFY      := $(BUILD)/taurus-guard-verify

all: module $(VERIFY)

deps:
	@missing=""; \
	for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null \
	        | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    $(SUDO) apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q \
	        --no-install-recommends $$missing; \
	fi

# The core must stay free of nginx types: src/ is plain C (README, Layout).
check-core:
	@if grep -nE '#[[:space:]]*include[[:space:]]*[<"]ngx_' $(CORE_SRCS) \
	        $(CORE_HDRS) $(TOOL_SRCS); then \
	    echo "error: src/ must not include nginx headers"; exit 1; \
	fi

# Debian's conf_flags, or the arguments of `nginx -V` without the other
# dynamic and third-party modules and those needing extra libraries
# (GeoIP, XSLT, GD, Perl): their sources or libraries may be missing here,
# and with --with-compat they do not change what a dynamic module sees.
# Either way the module is compiled and linked with the --with-cc-opt and
# --with-ld-opt its nginx binary was (Debian's: -O2, the stack protector,
# _FORTIFY_SOURCE, full RELRO), not with configure's bare -O: conf_flags
# leaves them out, and a security module should be no less hardened than
# the server it loads into.
$(NGX_BUILD)/objs/Makefile: config
	@[ -d $(NGINX_SRC)/src/core ] || { echo "error: no nginx source in" \
	    "NGINX_SRC=$(NGINX_SRC) (apt-get install nginx-dev)"; exit 1; }
	rm -rf $(NGX_BUILD)
	mkdir -p $(BUILD)
	cp -r $(NGINX_SRC) $(NGX_BUILD)
	cd $(NGX_BUILD) && \
	eval "args=( $$($(NGINX_BIN) -V 2>&1 \
	    | sed -n 's/^configure arguments: //p') )"; \
	if [ -f conf_flags ]; then \
	    . ./conf_flags; \
	    for a in "$${args[@]}"; do \
	        case "$$a" in \
	        --with-cc-opt=*|--with-ld-opt=*) NGX_CONF_FLAGS+=("$$a");; \
	        esac; \
	    done; \
	else \
	    NGX_CONF_FLAGS=(); \
	    for a in "$${args[@]}"; do \
	        case "$$a" in \
	        *=dynamic|--add-module=*|--add-dynamic-module=*|*geoip* \
	        |*xslt*|*image_filter*|*perl*) ;; \
	        *) NGX_CONF_FLAGS+=("$$a");; \
	        esac; \
	    done; \
	    case " $${NGX_CONF_FLAGS[*]} " in *" --with-compat "*) ;; *) \
	        echo "error: $(NGINX_BIN) -V shows no --with-compat: build" \
	            "the module with that nginx's own source and flags"; \
	        exit 1;; \
	    esac; \
	fi; \
	conf=./configure; [ -x $$conf ] || conf=auto/configure; \
	$$conf "$${NGX_CONF_FLAGS[@]}" \
	        --add-dynamic-module=$(CURDIR) > $(BUILD)/configure.log 2>&1 \
	    || { tail -20 $(BUILD)/configure.log; exit 1; }

$(MODULE): $(NGX_BUILD)/objs/Makefile $(CORE_SRCS) $(CORE_HDRS) $(GLUE_SRCS) \
           | check-core
	$(MAKE) -C $(NGX_BUILD) -f objs/Makefile modules
	@# a new inode: an nginx running the old module keeps its mapping
	cp $(NGX_BUILD)/objs/ngx_http_taurus_guard_module.so $@.tmp
	mv -f $@.tmp $@

module: $(MODULE)

# The audit chain verifier (README: "Audit log").
# CPPFLAGS, CFLAGS and LDFLAGS from the environment are added, so that a
# package build gets dpkg-buildflags' hardening.
$(VERIFY): src/tools/taurus-guard-verify.c $(CORE_SRCS) $(CORE_HDRS)
	@mkdir -p $(BUILD)
	$(CC) $(CPPFLAGS) $(CORE_CFLAGS) $(CFLAGS) -Isrc -o $@ $< $(CORE_SRCS) \
	    $(LDFLAGS) $(CORE_LIBS)

verify: $(VERIFY)

$(BUILD)/unit/%: t/unit/%.c t/unit/tap.h $(CORE_SRCS) $(CORE_HDRS)
	@mkdir -p $(BUILD)/unit
	$(CC) $(CORE_CFLAGS) -Isrc -It/unit -o $@ $< $(CORE_SRCS) $(CORE_LIBS)

# test_sign again with SHA-256 through EVP only, as a provider other
# than OpenSSL's default one (a FIPS one) is used (src/tg_sha256.c)
UNIT_BINS   += $(BUILD)/unit/test_sign_evp

$(BUILD)/unit/test_sign_evp: t/unit/test_sign.c t/unit/tap.h $(CORE_SRCS) \
                             $(CORE_HDRS)
	@mkdir -p $(BUILD)/unit
	$(CC) $(CORE_CFLAGS) -DTG_SHA256_EVP_ONLY -Isrc -It/unit -o $@ $< \
	    $(CORE_SRCS) $(CORE_LIBS)

unit: $(UNIT_BINS)

$(BUILD)/fuzz/%: t/fuzz/%.c t/fuzz/replay.c $(CORE_SRCS) $(CORE_HDRS)
	@mkdir -p $(BUILD)/fuzz
	$(CC) $(CORE_CFLAGS) -Isrc -o $@ $< t/fuzz/replay.c $(CORE_SRCS) \
	    $(CORE_LIBS)

fuzz-replay: $(FUZZ_BINS)

# The allow-list's lookup cost outside nginx (t/bench/run.sh runs it).
$(BUILD)/bench/allow-lookup: t/bench/allow-lookup.c $(CORE_SRCS) \
                             $(CORE_HDRS)
	@mkdir -p $(BUILD)/bench
	$(CC) $(CORE_CFLAGS) -Isrc -o $@ $< $(CORE_SRCS) $(CORE_LIBS)

# One runner: prove takes the unit binaries (TAP), the fuzz replay and the
# nginx integration tests in one go, two at a time: each test has its own
# prefix, ports and files, and most of its time is spent waiting (timers,
# flushes, reloads), so two jobs halve the run on a 2-core machine.
# PROVE_FLAGS="-v" (or -j1, or --timer) overrides it.
PROVE_FLAGS ?= -j2

# The longest files first, so that neither is left running alone at the end.
SLOW_TESTS  := t/140-package.t t/122-audit-page-cache.t
TESTS       := $(SLOW_TESTS) \
               $(filter-out $(SLOW_TESTS),$(sort $(wildcard t/*.t)))

test: deps
	$(MAKE) module verify unit fuzz-replay lint
	prove $(PROVE_FLAGS) -I t/lib $(TESTS) $(UNIT_BINS)

# The whole suite again against nginx built from source with the module
# linked in, under ASan and UBSan (-fno-sanitize-recover).
test-asan: asan-nginx
	$(MAKE) unit fuzz-replay
	TG_NGINX=$(BUILD)/asan/sbin/nginx TG_MODULE= \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    prove $(PROVE_FLAGS) -I t/lib $(TESTS)

# The ASan/UBSan nginx alone (nothing is rebuilt when it is up to date):
# .ci/run builds it while `make test` runs.
asan-nginx: deps
	t/lib/build-asan.sh $(BUILD)/asan

# libFuzzer (clang-14) on every target, FUZZ_SECONDS each.
FUZZ_SECONDS ?= 60
fuzz: deps
	t/fuzz/run-libfuzzer.sh $(FUZZ_SECONDS)

# Plain proxy_pass vs the module, in one run, as ratios.
bench: deps
	$(MAKE) module $(BUILD)/bench/allow-lookup
	t/bench/run.sh

run: deps
	$(MAKE) module
	examples/run.sh

lint:
	@t/lib/lint.sh

# make install: where Debian's own libnginx-mod-* packages put things.
# `install` removes the old file and writes a new one: an nginx running
# the old module keeps its mapping of the old inode (cp would rewrite the
# mapped pages under the running workers and crash them).
PREFIX        ?= /usr
BINDIR        ?= $(PREFIX)/bin
MANDIR        ?= $(PREFIX)/share/man
SYSCONFDIR    ?= /etc
LOCALSTATEDIR ?= /var
NGX_MODDIR    ?= $(PREFIX)/lib/nginx/modules
NGX_MODAVAIL  ?= $(PREFIX)/share/nginx/modules-available
NGX_MODENABLED ?= $(SYSCONFDIR)/nginx/modules-enabled
LOGROTATEDIR  ?= $(SYSCONFDIR)/logrotate.d
AUDITDIR      ?= $(LOCALSTATEDIR)/log/taurus-guard
NGX_USER      ?= www-data
NGX_GROUP     ?= adm
MODCONF       := mod-http-taurus-guard.conf
INSTALL       ?= install

install: all
	$(INSTALL) -d $(DESTDIR)$(NGX_MODDIR) $(DESTDIR)$(NGX_MODAVAIL) \
	    $(DESTDIR)$(NGX_MODENABLED) $(DESTDIR)$(BINDIR) \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(LOGROTATEDIR)
	$(INSTALL) -m 0644 $(MODULE) $(DESTDIR)$(NGX_MODDIR)/
	echo "load_module modules/ngx_http_taurus_guard_module.so;" \
	    > $(DESTDIR)$(NGX_MODAVAIL)/$(MODCONF)
	chmod 0644 $(DESTDIR)$(NGX_MODAVAIL)/$(MODCONF)
	ln -sfn $(NGX_MODAVAIL)/$(MODCONF) \
	    $(DESTDIR)$(NGX_MODENABLED)/50-$(MODCONF)
	$(INSTALL) -m 0755 $(VERIFY) $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 0644 docs/taurus-guard-verify.1 $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 0644 examples/logrotate.d/taurus-guard \
	    $(DESTDIR)$(LOGROTATEDIR)/taurus-guard
	$(INSTALL) -d -m 0751 $(DESTDIR)$(AUDITDIR)
	@# root's: the master (root) opens and chowns the file by name, so
	@# the workers' user must not be able to put a link there; they
	@# only pass through to reopen it, and the first file is theirs
	if [ "$$(id -u)" = 0 ]; then \
	    chown root:$(NGX_GROUP) $(DESTDIR)$(AUDITDIR) \
	    || chown root $(DESTDIR)$(AUDITDIR); \
	    if [ ! -e $(DESTDIR)$(AUDITDIR)/audit.log ] \
	       && id -u $(NGX_USER) >/dev/null 2>&1; then \
	        $(INSTALL) -m 0640 -o $(NGX_USER) -g $(NGX_GROUP) /dev/null \
	            $(DESTDIR)$(AUDITDIR)/audit.log \
	        || $(INSTALL) -m 0640 -o $(NGX_USER) /dev/null \
	            $(DESTDIR)$(AUDITDIR)/audit.log; \
	    fi; \
	fi

# The audit directory goes only when empty: audit records are evidence.
uninstall:
	rm -f $(DESTDIR)$(NGX_MODENABLED)/50-$(MODCONF) \
	    $(DESTDIR)$(NGX_MODAVAIL)/$(MODCONF) \
	    $(DESTDIR)$(NGX_MODDIR)/ngx_http_taurus_guard_module.so \
	    $(DESTDIR)$(BINDIR)/taurus-guard-verify \
	    $(DESTDIR)$(MANDIR)/man1/taurus-guard-verify.1 \
	    $(DESTDIR)$(LOGROTATEDIR)/taurus-guard
	@# the empty file make install put there is no record, unless a
	@# running nginx still writes to it (debian/postrm)
	-f=$(DESTDIR)$(AUDITDIR)/audit.log; \
	if [ -f $$f ] && [ ! -s $$f ]; then \
	    if [ -n "$$(find /proc/[0-9]*/fd -maxdepth 1 \
	                -lname "$$(readlink -f $$f)" \
	                -print 2>/dev/null | head -n 1)" ]; then \
	        echo "keeping $$f: a running nginx writes its audit records" \
	             "there"; \
	    else \
	        rm -f $$f; \
	    fi; \
	fi
	-rmdir $(DESTDIR)$(AUDITDIR) 2>/dev/null

# make deb: the package is built by dpkg-buildpackage (dh with nginx-dev's
# nginx sequence) in a copy of the tree under $(DEB_OUT), so the build
# leaves nothing in the repository; the .deb lands in $(DEB_OUT).
# DEB_VERSION=x.y-z overrides debian/changelog's version (a rebuild).
DEB_OUT     ?= $(BUILD)/deb
DEB_VERSION ?=
DEB_PKGS_BUILD := debhelper dpkg-dev fakeroot lintian

deb-deps:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(DEB_PKGS) $(DEB_PKGS_BUILD)"

deb: deb-deps
	rm -rf $(DEB_OUT)/src
	mkdir -p $(DEB_OUT)/src
	tar -C $(CURDIR) --exclude=./build --exclude=./.git -cf - . \
	    | tar -C $(DEB_OUT)/src -xf -
	if [ -n "$(DEB_VERSION)" ]; then \
	    sed -i '1s/([^)]*)/($(DEB_VERSION))/' $(DEB_OUT)/src/debian/changelog; \
	fi
	cd $(DEB_OUT)/src && dpkg-buildpackage -us -uc -b \
	    > $(DEB_OUT)/build.log 2>&1 \
	    || { tail -30 $(DEB_OUT)/build.log; exit 1; }
	rm -rf $(DEB_OUT)/src
	@ls -1 $(DEB_OUT)/*.deb

clean:
	rm -rf $(BUILD)
