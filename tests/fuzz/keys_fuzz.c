/* libFuzzer: key-file text. A file that parses yields keys whose roles
 * resolve correctly; ct_equal agrees with memcmp. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) ((c) ? (void)0 : __builtin_trap())

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    struct keys k;
    char err[128];

    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    int r = keys_parse(buf, size, &k, err, sizeof(err));
    CHECK(r == 0 || r == -22 /* -EINVAL */ || r == -2 /* -ENOENT */);
    CHECK(strlen(err) < sizeof(err));
    if (r == 0) {
        CHECK(k.server_len >= KEY_MIN_LEN && k.server_len <= KEY_MAX_LEN);
        CHECK(k.client_len >= KEY_MIN_LEN && k.client_len <= KEY_MAX_LEN);
        CHECK(keys_role(&k, k.server, k.server_len) == KEY_SERVER);
        CHECK(keys_role(&k, k.client, k.client_len) == KEY_CLIENT);
        CHECK(err[0] == '\0');
    } else {
        /* No key text survives a failed parse. */
        CHECK(k.server_len == 0 && k.client_len == 0 && k.server[0] == '\0');
    }
    /* Readers that need one key accept whatever the relay accepts, and
     * take the same key from it; what they accept follows the key rule. */
    struct keys one;
    for (int need = KEYS_NEED_SERVER; need <= KEYS_NEED_CLIENT; need++) {
        int q = keys_parse_for(buf, size, (enum keys_need)need, &one, err, sizeof(err));
        CHECK(q == 0 || q == -22 || q == -2);
        CHECK(r != 0 || q == 0);
        if (q != 0)
            continue;
        const char *key = need == KEYS_NEED_SERVER ? one.server : one.client;
        size_t len = need == KEYS_NEED_SERVER ? one.server_len : one.client_len;
        CHECK(keys_check(key, len) == 0);
        if (r == 0)
            CHECK(need == KEYS_NEED_SERVER ? ct_equal(key, len, k.server, k.server_len)
                                           : ct_equal(key, len, k.client, k.client_len));
        keys_wipe(&one);
    }
    size_t half = size / 2;
    int eq = ct_equal(buf, half, buf + half, size - half);
    CHECK(eq == (half == size - half && memcmp(buf, buf + half, half) == 0));
    keys_wipe(&k);
    free(buf);
    return 0;
}
