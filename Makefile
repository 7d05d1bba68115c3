# rapi: relay daemon, SDK, CLI and bench.
#
#   make            build everything into $(BUILD) (default build/)
#   make deps       install the Debian packages the build and tests need (idempotent)
#   make run        build, create dev keys on first run, start the relay in the foreground
#   make test       unit + integration tests, then the same again under ASan+UBSan (clang)
#   make lint       clang-tidy and cppcheck
#   make format     clang-format -i on all C
#   make fuzz       run every libFuzzer target for FUZZ_SECONDS each
#
# Sub-areas add their own rules in <area>/<area>.mk (sdk, bench, tests), so the
# top-level file stays small and each area owns its fragment.

BUILD    ?= build
CC       ?= cc
SAN      ?=
OPT      ?= -O2
PKG_LIBS := liburing jemalloc wolfssl

PKG_CFLAGS := $(shell pkg-config --cflags $(PKG_LIBS) 2>/dev/null)
PKG_LDLIBS := $(shell pkg-config --libs $(PKG_LIBS) 2>/dev/null)

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wno-unused-parameter
CFLAGS   ?= $(OPT) -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -pthread -fno-strict-aliasing -I. $(WARN) $(CFLAGS) $(SAN) \
             $(PKG_CFLAGS) -MMD -MP
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

.PHONY: all deps run test test-unit test-integration test-asan lint format fuzz clean keys
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

$(SERVER): $(BUILD)/obj/engine/main.o $(LIBENGINE) $(LIBAUTH) $(LIBPROTO)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LDLIBS)

-include sdk/sdk.mk
-include bench/bench.mk
-include tests/tests.mk

build-all: $(ALL_TARGETS)

# ---------------------------------------------------------------- packages
# Every Debian package the build, the tests, the lint and the bench need.
DEB_PKGS := build-essential pkg-config clang clang-tidy clang-format cppcheck \
            liburing-dev libjemalloc-dev libwolfssl-dev libcriterion-dev \
            python3 python3-pytest python3-websockets curl procps iproute2 \
            haproxy gnuplot-nox iperf3 man-db groff-base

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

# ---------------------------------------------------------------- lint/format
C_SOURCES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(C_SOURCES)
LINT_SOURCES = $(filter-out tests/%,$(filter %.c,$(C_SOURCES)))
lint:
	clang-tidy --quiet $(LINT_SOURCES) -- -std=c11 -D_GNU_SOURCE -I. $(PKG_CFLAGS)
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --inline-suppr --suppress=missingIncludeSystem -D_GNU_SOURCE -I. $(LINT_SOURCES)

clean:
	rm -rf $(BUILD) build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
