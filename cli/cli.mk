# The rapi CLI (cli/*.c), linked against librapi.a plus the internal archives
# it uses directly (librapi localizes its own copies). Included from the
# top-level Makefile after sdk/sdk.mk.

CLI_SRC  := $(sort $(wildcard cli/*.c))
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
RAPI_CLI := $(BUILD)/rapi

ALL_TARGETS += $(RAPI_CLI)

$(RAPI_CLI): $(CLI_OBJ) $(LIBRAPI) $(LIBAUTH) $(LIBPROTO) $(LIBNET)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(SDK_LIBS)

