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
#
# Packages missing on a Debian machine are installed with apt (sudo when
# not root).

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

.PHONY: all module verify deps unit fuzz-replay test test-asan fuzz bench run lint \
        check-core clean

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

# The core must stay free of nginx types (STYLE.md: two worlds).
check-core:
	@if grep -nE '#[[:space:]]*include[[:space:]]*[<"]ngx_' $(CORE_SRCS) \
	        $(CORE_HDRS) $(TOOL_SRCS); then \
	    echo "error: src/ must not include nginx headers"; exit 1; \
	fi

$(NGX_BUILD)/objs/Makefile: config | deps
	rm -rf $(NGX_BUILD)
	mkdir -p $(BUILD)
	cp -r $(NGINX_SRC) $(NGX_BUILD)
	cd $(NGX_BUILD) && . ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" \
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
$(VERIFY): src/tools/taurus-guard-verify.c $(CORE_SRCS) $(CORE_HDRS) | deps
	@mkdir -p $(BUILD)
	$(CC) $(CORE_CFLAGS) -Isrc -o $@ $< $(CORE_SRCS) $(CORE_LIBS)

verify: $(VERIFY)

$(BUILD)/unit/%: t/unit/%.c t/unit/tap.h $(CORE_SRCS) $(CORE_HDRS) | deps
	@mkdir -p $(BUILD)/unit
	$(CC) $(CORE_CFLAGS) -Isrc -It/unit -o $@ $< $(CORE_SRCS) $(CORE_LIBS)

unit: $(UNIT_BINS)

$(BUILD)/fuzz/%: t/fuzz/%.c t/fuzz/replay.c $(CORE_SRCS) $(CORE_HDRS) | deps
	@mkdir -p $(BUILD)/fuzz
	$(CC) $(CORE_CFLAGS) -Isrc -o $@ $< t/fuzz/replay.c $(CORE_SRCS) \
	    $(CORE_LIBS)

fuzz-replay: $(FUZZ_BINS)

# One runner: prove takes the unit binaries (TAP), the fuzz replay and the
# nginx integration tests in one go.
test: module $(VERIFY) unit fuzz-replay lint
	prove $(PROVE_FLAGS) -I t/lib $(UNIT_BINS) t/*.t

# The whole suite again against nginx built from source with the module
# linked in, under ASan and UBSan (-fno-sanitize-recover).
test-asan: unit fuzz-replay
	t/lib/build-asan.sh $(BUILD)/asan
	TG_NGINX=$(BUILD)/asan/sbin/nginx TG_MODULE= \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    prove $(PROVE_FLAGS) -I t/lib t/*.t

# libFuzzer (clang-14) on every target, FUZZ_SECONDS each.
FUZZ_SECONDS ?= 60
fuzz:
	t/fuzz/run-libfuzzer.sh $(FUZZ_SECONDS)

# Plain proxy_pass vs the module, in one run, as ratios.
bench: module
	t/bench/run.sh

run: module
	examples/run.sh

lint:
	@t/lib/lint.sh

clean:
	rm -rf $(BUILD)
