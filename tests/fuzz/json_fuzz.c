/* libFuzzer: the notification reader and json_get_string. A notification
 * that parses, rebuilt with notify_build, parses back to the same values. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) ((c) ? (void)0 : __builtin_trap())

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    struct notify n, m;
    char out[NOTIFY_MAX * 2], s[300];

    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    int r = notify_parse(buf, size, &n);
    CHECK(r == 0 || r == -1);
    if (r == 0) {
        size_t idlen = strlen(n.id);
        CHECK(idlen > 0 && idlen <= 256 && strlen(n.ipaddr) < IPADDR_MAX);
        CHECK(json_get_string(buf, size, "id", s, sizeof(s)) == (int)idlen);
        CHECK(strcmp(s, n.id) == 0);
        int b = notify_build(out, sizeof(out), n.ipaddr, n.id, idlen, n.timeout);
        CHECK(b > 0);
        CHECK(notify_parse(out, (size_t)b, &m) == 0);
        CHECK(strcmp(m.id, n.id) == 0 && strcmp(m.ipaddr, n.ipaddr) == 0);
        CHECK(m.timeout == n.timeout);
    }
    int g = json_get_string(buf, size, "errorcode", s, sizeof(s));
    CHECK(g == -1 || (g >= 0 && (size_t)g < sizeof(s) && s[g] == '\0'));
    int e = json_escape(out, sizeof(out), buf, size < 100 ? size : 100);
    CHECK(e >= 0 && (size_t)e == strlen(out)); /* controls and NUL come out escaped */
    free(buf);
    return 0;
}
