# net/: anet, the socket/clock/file helpers shared by the relay, librapi, the
# CLI and rapi-bench. Included from the top-level Makefile before the other
# fragments (sdk.mk takes NET_SRC for librapi's PIC copy).

NET_SRC := $(sort $(wildcard net/*.c))
NET_OBJ := $(NET_SRC:%.c=$(BUILD)/obj/%.o)
LIBNET  := $(BUILD)/libnet.a

$(LIBNET): $(NET_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# Appended to the programs' link lines ($^): libnet comes after the archives
# that call into it.
$(SERVER) $(BUILD)/rapi-bench: $(LIBNET)
