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
    CHECK(r == 0 || r == -22 /* -EINVAL */);
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
    size_t half = size / 2;
    int eq = ct_equal(buf, half, buf + half, size - half);
    CHECK(eq == (half == size - half && memcmp(buf, buf + half, half) == 0));
    keys_wipe(&k);
    free(buf);
    return 0;
}
