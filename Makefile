# rapi: relay daemon, SDK, CLI and bench.
#
#   make            build everything into $(BUILD) (default build/)
#   make deps       install the Debian packages the build and tests need (idempotent)
#   make run        build, create dev keys on first run, start the relay in the foreground
#   make test       unit + integration tests, then the same again under ASan+UBSan (clang)
#   make lint       clang-tidy and cppcheck
#   make tls-audit  testssl.sh against a TLS listener (TLS_MIN=1.2|1.3)
#   make format     clang-format -i on all C
#   make fuzz       run every libFuzzer target for FUZZ_SECONDS each
#   make install    install everything (PREFIX=/usr/local, DESTDIR=)
#   make deb        Debian packages into $(BUILD)/pkg (packaging/packaging.mk)
#   make rpm        RPM packages into $(BUILD)/pkg
#
# Sub-areas add their own rules in <area>/<area>.mk (sdk, bench, tests), so the
# top-level file stays small and each area owns its fragment.

BUILD    ?= build
CC       ?= cc
SAN      ?=
OPT      ?= -O2
PKG_LIBS := liburing jemalloc wolfssl

# The one version source: VERSION, passed to the code as RAPI_VERSION and
# written into the pkg-config file, the packages and checked against the man
# pages (tests/integration/test_build.py).
VERSION  := $(strip $(file < VERSION))

# pkg-config is asked quietly: on a fresh machine the packages are missing
# until `make deps` ran, and `make run`/`make test` then build in a recursive
# make that asks again. Each answer is computed once, on first use.
pkgconf = $(shell pkg-config $(1) 2>/dev/null)
PKG_CFLAGS = $(eval PKG_CFLAGS := $(call pkgconf,--cflags $(PKG_LIBS)))$(PKG_CFLAGS)
PKG_LDLIBS = $(eval PKG_LDLIBS := $(call pkgconf,--libs $(PKG_LIBS)))$(PKG_LDLIBS)

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wno-unused-parameter
CFLAGS   ?= $(OPT) -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -pthread -fno-strict-aliasing -I. $(WARN) $(CFLAGS) $(SAN) \
             -DRAPI_VERSION='"$(VERSION)"' $(PKG_CFLAGS) -MMD -MP
LDFLAGS  ?=
ALL_LDFLAGS = -pthread $(SAN) $(LDFLAGS)

PROTO_SRC  := $(sort $(wildcard proto/*.c))
AUTH_SRC   := $(sort $(wildcard auth/*.c))
ENGINE_SRC := $(sort $(filter-out engine/main.c,$(wildcard engine/*.c)))

PROTO_OBJ  := $(PROTO_SRC:%.c=$(BUILD)/obj/%.o)
AUTH_OBJ   := $(AUTH_SRC:%.c=$(BUILD)/obj/%.o)
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/obj/%.o)

LIBPROTO  := $(BUILD)/libproto.a
LIBAUTH   := $(BUILD)/libauth.a
LIBENGINE := $(BUILD)/libengine.a
SERVER    := $(BUILD)/rapi-server

# Everything that `make` builds; fragments append to it.
ALL_TARGETS := $(SERVER)

.PHONY: all build-all deps run test test-unit test-integration test-asan lint format fuzz \
        clean keys install
all: build-all

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIBPROTO): $(PROTO_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(LIBAUTH): $(AUTH_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(LIBENGINE): $(ENGINE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# $(LIBTLS) is added to the prerequisites by tls/tls.mk (defined there).
$(SERVER): $(BUILD)/obj/engine/main.o $(LIBENGINE) $(LIBAUTH) $(LIBPROTO)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ -Wl,--as-needed $(TLS_LDLIBS) $(SERVER_LDLIBS)

# rapi-server takes jemalloc from its static PIC archive where there is one:
# the shared library needs libstdc++ (for operator new, which C never calls),
# 0.9 MiB of resident memory in an idle relay. Elsewhere, and for the other
# programs, the shared library.
comma := ,
JEMALLOC_PIC = $(wildcard $(call pkgconf,--variable=libdir jemalloc)/libjemalloc_pic.a)
SERVER_LDLIBS = $(if $(and $(filter jemalloc,$(PKG_LIBS)),$(JEMALLOC_PIC)),$(subst \
  -ljemalloc,-Wl$(comma)-Bstatic -ljemalloc_pic -Wl$(comma)-Bdynamic -lm -ldl,$(PKG_LDLIBS)),$(PKG_LDLIBS))

include net/net.mk
include sdk/sdk.mk
include cli/cli.mk
include bench/bench.mk
include tests/tests.mk
include packaging/packaging.mk

# Every object sees RAPI_VERSION: a new VERSION rebuilds them.
$(PROTO_OBJ) $(AUTH_OBJ) $(ENGINE_OBJ) $(BUILD)/obj/engine/main.o $(SDK_PIC_OBJ) \
  $(CLI_OBJ) $(NET_OBJ) $(BENCH_OBJ): VERSION

build-all: $(ALL_TARGETS)

# ---------------------------------------------------------------- install
# make install [PREFIX=/usr/local] [DESTDIR=] installs every program, library,
# header, pkg-config file and man page, the systemd unit and (only when there
# is none yet) the commented default configuration. The packages in
# packaging/ are built from it. The key file is not installed: the package
# creates it (rapi-server keygen) or the operator does.
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= $(PREFIX)/sbin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR    ?= $(PREFIX)/lib/systemd/system
MAN_PAGES  := $(sort $(wildcard man/*.[1-8]))
# Outside /etc the key file is not where the daemon looks by default: say so.
CONF_SED    = -e 's|/etc/rapi/|$(SYSCONFDIR)/rapi/|g' $(if $(filter /etc,$(SYSCONFDIR)),,\
              -e 's|^\#keys |keys |')
D          := $(DESTDIR)

install: $(ALL_TARGETS)
	install -d $(D)$(BINDIR) $(D)$(SBINDIR) $(D)$(LIBDIR)/pkgconfig $(D)$(INCLUDEDIR) \
	  $(D)$(UNITDIR) $(D)$(SYSCONFDIR)/rapi
	install -m 0755 $(SERVER) $(D)$(SBINDIR)/rapi-server
	install -m 0755 $(RAPI_CLI) $(BENCH) $(D)$(BINDIR)/
	install -m 0644 $(LIBRAPI) $(D)$(LIBDIR)/librapi.a
	install -m 0755 $(LIBRAPI_SO).$(SDK_SOVER) $(D)$(LIBDIR)/librapi.so.$(SDK_SOVER)
	ln -sfn librapi.so.$(SDK_SOVER) $(D)$(LIBDIR)/librapi.so
	install -m 0644 sdk/rapi.h $(D)$(INCLUDEDIR)/rapi.h
	sed -e 's|^prefix=.*|prefix=$(PREFIX)|' -e 's|^libdir=.*|libdir=$(LIBDIR)|' \
	  -e 's|^includedir=.*|includedir=$(INCLUDEDIR)|' $(LIBRAPI_PC) > $(D)$(LIBDIR)/pkgconfig/librapi.pc
	chmod 0644 $(D)$(LIBDIR)/pkgconfig/librapi.pc
	for m in $(MAN_PAGES); do \
	  s=$${m##*.}; install -d $(D)$(MANDIR)/man$$s && install -m 0644 $$m $(D)$(MANDIR)/man$$s/; \
	done
	sed -e 's|/usr/sbin/|$(SBINDIR)/|g' -e 's|/etc/rapi/|$(SYSCONFDIR)/rapi/|g' \
	  packaging/systemd/rapi-server.service > $(D)$(UNITDIR)/rapi-server.service
	chmod 0644 $(D)$(UNITDIR)/rapi-server.service
	c=$(D)$(SYSCONFDIR)/rapi/rapi-server.conf; test -e $$c || { \
	  sed $(CONF_SED) packaging/rapi-server.conf > $$c && chmod 0644 $$c; }

# The SDK's former install target.
.PHONY: sdk-install
sdk-install: install

# ---------------------------------------------------------------- packages
# Every Debian package the build, the tests, the lint and the bench need.
DEB_PKGS := build-essential pkg-config clang clang-tidy clang-format cppcheck \
            liburing-dev libjemalloc-dev libwolfssl-dev libcriterion-dev \
            python3 python3-pytest python3-websockets curl procps iproute2 \
            haproxy nginx gnuplot-nox iperf3 man-db groff-base \
            debhelper dpkg-dev fakeroot lintian rpm rpmlint systemd adduser util-linux \
            chromium testssl.sh

deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "deps: need root to install$$missing" >&2; exit 1; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

include tls/tls.mk

# ---------------------------------------------------------------- run
DEV_KEYS ?= dev-keys
run: deps
	@$(MAKE) --no-print-directory build-all
	@test -f $(DEV_KEYS) || $(SERVER) keygen $(DEV_KEYS)
	@echo "rapi-server on 127.0.0.1:37791, keys in $(DEV_KEYS) (mode 0600)."
	@echo "  expose a local server:  RAPI_KEY_FILE=$(DEV_KEYS) $(BUILD)/rapi expose rws://127.0.0.1:37791/demo --to 127.0.0.1:8080"
	@echo "  reach it:               RAPI_KEY_FILE=$(DEV_KEYS) $(BUILD)/rapi connect rwr://127.0.0.1:37791/demo --listen 127.0.0.1:9090"
	@echo "  (the CLI picks the server or client key from the key file by role)"
	exec $(SERVER) -k $(DEV_KEYS) -l 127.0.0.1:37791

# ---------------------------------------------------------------- tls-audit
# testssl.sh (protocols, cipher categories, vulnerabilities) against a TLS
# listener on 127.0.0.1 with test certificates; fails on any finding rated
# LOW or worse and on anything below tls_min_version (TLS_MIN=1.2 or 1.3).
TLS_MIN ?= 1.2
.PHONY: tls-audit
tls-audit: build-all
	/usr/bin/python3 tests/integration/tls_audit.py $(SERVER) --min $(TLS_MIN)

# ---------------------------------------------------------------- lint/format
C_SOURCES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(C_SOURCES)
LINT_SOURCES = $(filter-out tests/%,$(filter %.c,$(C_SOURCES)))
LINT_DEFS = -D_GNU_SOURCE -DRAPI_VERSION='"$(VERSION)"'
lint:
	clang-tidy --quiet $(LINT_SOURCES) -- -std=c11 $(LINT_DEFS) -I. $(PKG_CFLAGS)
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --inline-suppr --suppress=missingIncludeSystem $(LINT_DEFS) -I. $(LINT_SOURCES)

clean:
	rm -rf $(BUILD) build

-include $(shell find $(BUILD)/obj $(BUILD)/pic $(BUILD)/tests -name '*.d' 2>/dev/null)
