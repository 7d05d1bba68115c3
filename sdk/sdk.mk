# librapi (static + shared) and its pkg-config file; the rapi CLI is cli/cli.mk.
# Included from the top-level Makefile. The library carries its own PIC copy
# of proto/, auth/ and net/, so users link -lrapi alone; only rapi_* symbols are
# exported (hidden visibility, and localized in the archive's one object so
# that a program linking librapi.a never clashes with url_parse & co).

SDK_LIB_SRC := sdk/listener.c sdk/connect.c sdk/handshake.c sdk/wire.c sdk/backoff.c sdk/proxyv2.c \
               sdk/sdkerr.c
SDK_PIC_OBJ := $(patsubst %.c,$(BUILD)/pic/%.o,$(SDK_LIB_SRC) $(PROTO_SRC) $(AUTH_SRC) $(NET_SRC))
SDK_LIBS    := $(shell pkg-config --libs wolfssl 2>/dev/null) -pthread
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

$(LIBRAPI_PC): sdk/sdk.mk
	@mkdir -p $(dir $@)
	printf '%s\n' 'prefix=/usr/local' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include' '' \
	  'Name: librapi' \
	  'Description: listen and connect through a rapi relay (WebRoute)' \
	  'Version: 0.1.0' \
	  'Libs: -L$${libdir} -lrapi' \
	  'Libs.private: $(SDK_LIBS)' \
	  'Cflags: -I$${includedir}' > $@

# Install the SDK and the CLI (cli/cli.mk): make sdk-install [PREFIX=/usr/local] [DESTDIR=...]
PREFIX ?= /usr/local
SDK_LIBDIR ?= $(PREFIX)/lib
.PHONY: sdk-install
sdk-install: $(LIBRAPI) $(LIBRAPI_SO) $(LIBRAPI_PC)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SDK_LIBDIR)/pkgconfig \
	  $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/share/man/man1 \
	  $(DESTDIR)$(PREFIX)/share/man/man3
	install -m 0755 $(RAPI_CLI) $(DESTDIR)$(PREFIX)/bin/rapi
	install -m 0644 $(LIBRAPI) $(DESTDIR)$(SDK_LIBDIR)/librapi.a
	install -m 0755 $(LIBRAPI_SO).$(SDK_SOVER) $(DESTDIR)$(SDK_LIBDIR)/librapi.so.$(SDK_SOVER)
	ln -sf librapi.so.$(SDK_SOVER) $(DESTDIR)$(SDK_LIBDIR)/librapi.so
	install -m 0644 sdk/rapi.h $(DESTDIR)$(PREFIX)/include/rapi.h
	sed -e 's|^prefix=.*|prefix=$(PREFIX)|' -e 's|^libdir=.*|libdir=$(SDK_LIBDIR)|' \
	  $(LIBRAPI_PC) > $(DESTDIR)$(SDK_LIBDIR)/pkgconfig/librapi.pc
	install -m 0644 man/rapi.1 $(DESTDIR)$(PREFIX)/share/man/man1/rapi.1
	install -m 0644 man/librapi.3 $(DESTDIR)$(PREFIX)/share/man/man3/librapi.3
