# rapi-bench: the load generator (bench/*.c) and `make bench` (bench/run).
# Included from the top-level Makefile.

BENCH_SRC := $(sort $(filter-out bench/delayproxy.c bench/floor.c,$(wildcard bench/*.c)))
BENCH_OBJ := $(BENCH_SRC:%.c=$(BUILD)/obj/%.o)
BENCH     := $(BUILD)/rapi-bench
# A fixed-delay TCP proxy for latency runs (bench/PARK.md, tests/integration/test_parked.py).
DELAYPROXY := $(BUILD)/rapi-delayproxy
$(DELAYPROXY): $(BUILD)/obj/bench/delayproxy.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^
ALL_TARGETS += $(DELAYPROXY)

# --tls: the TLS archive (wolfSSL, AES-GCM through libcrypto: PKG_LDLIBS).
$(BENCH): $(BENCH_OBJ) $(BUILD)/libtls.a $(LIBAUTH) $(LIBPROTO)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LDLIBS) -lm

ALL_TARGETS += $(BENCH)

.PHONY: bench bench-quick
# BENCH_ARGS=--quick for the short form (under 3 minutes).
BENCH_ARGS ?=
bench:
	bench/run $(BENCH_ARGS)
bench-quick:
	bench/run --quick

# The kernel's floor for a tunnel: the cheapest relay rapi-bench can drive
# (bench/FLOOR.md). A measuring device, not part of the relay; built, never tested.
FLOOR := $(BUILD)/rapi-floor
$(FLOOR): $(BUILD)/obj/bench/floor.o $(LIBAUTH) $(LIBPROTO) $(LIBNET)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LDLIBS)
ALL_TARGETS += $(FLOOR)
