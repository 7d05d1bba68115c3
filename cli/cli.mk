# The rapi CLI (cli/*.c), linked against librapi's objects plus the internal archives
# it uses directly (librapi localizes its own copies). Included from the
# top-level Makefile after sdk/sdk.mk.

CLI_SRC  := $(sort $(wildcard cli/*.c))
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
RAPI_CLI := $(BUILD)/rapi

ALL_TARGETS += $(RAPI_CLI)

# The CLI pumps TLS sessions itself (sdk_int.h's raw accept/connect), so it
# links librapi's objects unlocalized, and the TLS archive, not librapi.a.
CLI_SDK_OBJ := $(SDK_LIB_SRC:%.c=$(BUILD)/obj/%.o)

$(RAPI_CLI): $(CLI_OBJ) $(CLI_SDK_OBJ) $(BUILD)/libtls.a $(LIBAUTH) $(LIBPROTO) $(LIBNET)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(SDK_LIBS)

