# TLS: wolfSSL contexts and connections (tls_ctx, tls_conn, tls_ticket), the
# AES-GCM crypto-callback device backed by libcrypto (aead_accel), their
# unit tests and the tls-speed micro-benchmark. Included from the top-level
# Makefile after the package list (it appends to DEB_PKGS and build-all).

TLS_SRC    := tls/aead_accel.c tls/ossl_dl.c tls/tls_ctx.c tls/tls_conn.c tls/tls_ticket.c tls/tls_keycheck.c
TLS_OBJ    := $(TLS_SRC:%.c=$(BUILD)/obj/%.o)
LIBTLS     := $(BUILD)/libtls.a
TLS_SPEED  := $(BUILD)/tls-speed
# libcrypto (OpenSSL 3) does the AES-GCM arithmetic; wolfSSL stays the TLS stack.
TLS_LDLIBS := $(shell pkg-config --libs libcrypto 2>/dev/null) \
              $(shell pkg-config --libs wolfssl 2>/dev/null)

DEB_PKGS += libssl-dev openssl

$(LIBTLS): $(TLS_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(TLS_SPEED): $(BUILD)/obj/tls/tls_speed.o $(LIBTLS) $(LIBPROTO)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(TLS_LDLIBS) $(PKG_LDLIBS)

# Unit tests named tls_*_test link the TLS library and libcrypto (a more
# specific pattern than tests.mk's, so make prefers it).
$(BUILD)/tests/tls_%: tests/unit/tls_%.c $(LIBTLS) $(LIBPROTO)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -o $@ $< $(LIBTLS) $(LIBPROTO) \
	  $(CRITERION_LDLIBS) $(TLS_LDLIBS) $(PKG_LDLIBS) $(ALL_LDFLAGS)

build-all: $(LIBTLS) $(TLS_SPEED)

# rapi-server's TLS listeners (engine/xprt_tls.c): after libengine on its link line.
$(SERVER): $(LIBTLS)

# libengine's admin and acceptor use the TLS library: unit tests linking
# libengine link it too (after it), and libcrypto + wolfSSL at the end.
TEST_LIBS += $(LIBTLS)
$(UNIT_BIN): $(LIBTLS)
$(UNIT_BIN): LDFLAGS += $(TLS_LDLIBS)
