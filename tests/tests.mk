# Test rules: Criterion units, pytest integration, libFuzzer targets, and the
# ASan+UBSan pass. Included from the top-level Makefile.
#
# The unit binaries and the noring helper are test artifacts: they are built by
# the test targets only, never by plain `make` (which must not need Criterion).

UNIT_SRC := $(sort $(wildcard tests/unit/*_test.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
CRITERION_LDLIBS = $(eval CRITERION_LDLIBS := $(call pkgconf,--libs criterion))$(CRITERION_LDLIBS)
TEST_LIBS = $(LIBRAPI) $(LIBENGINE) $(LIBAUTH) $(LIBPROTO) $(LIBNET)

# A unit test may #include the .c under test to reach its statics; the archive
# member it shadows is then simply not pulled in.
$(BUILD)/tests/%: tests/unit/%.c $(TEST_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -o $@ $< $(TEST_LIBS) \
	  $(CRITERION_LDLIBS) $(PKG_LDLIBS) $(ALL_LDFLAGS)

NORING := $(BUILD)/tests/noring

# A helper for the integration tests (not a test itself).
$(NORING): tests/integration/noring.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(ALL_LDFLAGS)

PYTEST  ?= /usr/bin/python3 -m pytest
# IT_ARGS: the integration tests to run (files, -k ...); the whole suite when
# it names no test file or directory.
IT_ARGS ?=
IT_SEL  = $(if $(filter tests/%,$(IT_ARGS)),,tests/integration) $(IT_ARGS)
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
export ASAN_OPTIONS  ?= detect_leaks=1:abort_on_error=0:exitcode=86
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1:exitcode=87

test-unit: build-all $(UNIT_BIN)
	@fail=0; for t in $(UNIT_BIN); do \
	  echo "== $$t"; $$t --jobs 2 || fail=1; \
	done; exit $$fail

test-integration: build-all $(NORING)
	RAPI_BUILD=$(abspath $(BUILD)) $(PYTEST) -q -p no:cacheprovider $(IT_SEL)

# The sanitizer pass rebuilds everything with clang (which also proves the
# tree is clang-clean at -Werror) and runs the same suites. jemalloc is left
# out there: ASan brings its own allocator.
test-asan:
	$(MAKE) --no-print-directory BUILD=$(BUILD)/asan CC=clang OPT=-O1 SAN="$(SAN_FLAGS)" \
	  PKG_LIBS="liburing wolfssl" RAPI_SAN=1 test-unit test-integration

# libFuzzer needs clang: FUZZ_CC follows CC when CC is a clang, else clang.
# Every target links proto/, auth/ and net/; one that needs more names its
# extra sources in FUZZ_EXTRA_<name> (and lists them as prerequisites), e.g.
#   FUZZ_EXTRA_foo_fuzz := engine/log.c
#   $(BUILD)/fuzz/foo_fuzz: $(FUZZ_EXTRA_foo_fuzz)
# (conf_fuzz needs none: it includes engine/conf.c itself.)
FUZZ_SRC     := $(sort $(wildcard tests/fuzz/*_fuzz.c))
FUZZ_BIN     := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
FUZZ_SECONDS ?= 10
FUZZ_CC      ?= $(if $(findstring clang,$(notdir $(CC))),$(CC),clang)
FUZZ_CFLAGS   = -std=c11 -D_GNU_SOURCE -I. -g -O1 -fsanitize=fuzzer,address,undefined \
                -DRAPI_VERSION='"$(VERSION)"' $(call pkgconf,--cflags wolfssl)
FUZZ_LDLIBS   = $(call pkgconf,--libs wolfssl)
FUZZ_LINK     = $(PROTO_SRC) $(AUTH_SRC) $(NET_SRC)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_LINK)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_EXTRA_$*) $(FUZZ_LINK) $(FUZZ_LDLIBS)

fuzz: $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do \
	  n=$$(basename $$f); c=tests/fuzz/corpus/$${n%_fuzz}; test -d $$c || c=; w=$(BUILD)/fuzz/work-$$n; \
	  rm -rf $$w; mkdir -p $$w; \
	  echo "== $$n ($(FUZZ_SECONDS)s, seeds $${c:-none})"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -timeout=5 -rss_limit_mb=1024 -print_final_stats=0 \
	      $$w $$c > $$w.log 2>&1; rc=$$?; tail -n 2 $$w.log; \
	  if [ $$rc != 0 ]; then echo "FUZZ FAILURE in $$n (exit $$rc): see $$w.log"; exit 1; fi; \
	done

test: deps
	$(MAKE) --no-print-directory build-all
	$(MAKE) --no-print-directory test-unit
	$(MAKE) --no-print-directory test-integration
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory fuzz
