# librapi (static + shared) and its pkg-config file; the rapi CLI is cli/cli.mk.
# Included from the top-level Makefile. The library carries its own PIC copy
# of proto/, auth/ and net/, so users link -lrapi alone; only rapi_* symbols are
# exported (hidden visibility, and localized in the archive's one object so
# that a program linking librapi.a never clashes with url_parse & co).

SDK_LIB_SRC := sdk/listener.c sdk/connect.c sdk/handshake.c sdk/wire.c sdk/backoff.c sdk/proxyv2.c \
               sdk/sdkerr.c sdk/sdktls.c
# rwss/rwrs/wrs: librapi carries its own PIC copy of tls/ (tls/tls.mk is
# included later, so the list is taken here: every tls/*.c but the benchmark).
SDK_TLS_SRC := $(filter-out tls/tls_speed.c,$(wildcard tls/*.c))
SDK_PIC_OBJ := $(patsubst %.c,$(BUILD)/pic/%.o,$(SDK_LIB_SRC) $(SDK_TLS_SRC) $(PROTO_SRC) \
                 $(AUTH_SRC) $(NET_SRC))
# wolfSSL is the TLS stack; libcrypto (OpenSSL 3) does AES-GCM for it (tls/aead_accel.c).
SDK_LIBS    := $(shell pkg-config --libs wolfssl libcrypto 2>/dev/null) -pthread
SDK_SOVER   := 0

LIBRAPI    := $(BUILD)/librapi.a
LIBRAPI_SO := $(BUILD)/librapi.so
LIBRAPI_PC := $(BUILD)/librapi.pc

ALL_TARGETS += $(LIBRAPI) $(LIBRAPI_SO) $(LIBRAPI_PC)

$(BUILD)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -c -o $@ $<

$(BUILD)/pic/librapi-all.o: $(SDK_PIC_OBJ)
	ld -r -o $@ $^
	objcopy --localize-hidden $@

$(LIBRAPI): $(BUILD)/pic/librapi-all.o
	rm -f $@ && ar rcs $@ $^

# librapi.so.N is the library (its soname); librapi.so the link-time name.
$(LIBRAPI_SO).$(SDK_SOVER): $(SDK_PIC_OBJ)
	$(CC) -shared -Wl,-soname,librapi.so.$(SDK_SOVER) -Wl,--as-needed $(ALL_LDFLAGS) \
	  -o $@ $^ $(SDK_LIBS)

$(LIBRAPI_SO): $(LIBRAPI_SO).$(SDK_SOVER)
	ln -sf $(notdir $<) $@

$(LIBRAPI_PC): sdk/sdk.mk VERSION
	@mkdir -p $(dir $@)
	printf '%s\n' 'prefix=/usr/local' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include' '' \
	  'Name: librapi' \
	  'Description: listen and connect through a rapi relay (WebRoute)' \
	  'Version: $(VERSION)' \
	  'Libs: -L$${libdir} -lrapi' \
	  'Libs.private: $(SDK_LIBS)' \
	  'Cflags: -I$${includedir}' > $@

# `make install` (top-level Makefile) installs the SDK and the CLI with the rest.

# librapi's TLS uses libcrypto: programs linking librapi.a (the unit tests'
# generic rule links $(PKG_LDLIBS)) need it too.
override PKG_LIBS += libcrypto

# handshake_test includes sdk/handshake.c (and sdktls.c), which reach tls/:
# it links the non-localized TLS archive as well.
$(BUILD)/tests/handshake_test: tests/unit/handshake_test.c $(LIBRAPI) $(BUILD)/libtls.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -o $@ $< $(BUILD)/libtls.a $(TEST_LIBS) \
	  $(CRITERION_LDLIBS) $(PKG_LDLIBS) $(ALL_LDFLAGS)
