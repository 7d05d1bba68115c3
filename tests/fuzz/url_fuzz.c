/* libFuzzer: URL chains and url_parse, plus addr_parse/addr_format on the
 * same bytes (both are operator-supplied address text). */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/addr.h"
#include "proto/url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) ((c) ? (void)0 : __builtin_trap())

static void check_url(const char *s, size_t len)
{
    struct rapi_url u;
    char hp[URL_HOST_MAX + 16];

    if (url_parse(s, len, &u) != 0)
        return;
    CHECK(u.port != 0 && u.host[0] != '\0' && u.path[0] == '/');
    CHECK(u.tls == (u.scheme == URL_RWSS || u.scheme == URL_RWRS || u.scheme == URL_WRS));
    CHECK(url_is_client(s, len) == (u.scheme == URL_RWR || u.scheme == URL_RWRS));
    CHECK(url_hostport(&u, hp, sizeof(hp)) > 0);
}

static void check_addr(const char *s)
{
    struct sockaddr_storage ss, ss2;
    socklen_t len, len2;
    char out[ADDR_STR_MAX];

    if (addr_parse(s, &ss, &len) != 0)
        return;
    int n = addr_format((struct sockaddr *)&ss, out, sizeof(out));
    CHECK(n > 0);
    CHECK(addr_parse(out, &ss2, &len2) == 0);
    /* A v4-mapped v6 address formats as v4, so compare the text instead. */
    char out2[ADDR_STR_MAX];
    CHECK(addr_format((struct sockaddr *)&ss2, out2, sizeof(out2)) == n);
    CHECK(strcmp(out, out2) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    size_t pos = 0, elen, count = 0;
    const char *elem;

    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    check_url(buf, size);
    while (url_chain_next(buf, size, &pos, &elem, &elen)) {
        CHECK(elen > 0 && elem >= buf && elem + elen <= buf + size && pos <= size);
        CHECK(++count <= size);
        check_url(elem, elen);
    }
    buf[size] = '\0';
    check_addr(buf);
    free(buf);
    return 0;
}
