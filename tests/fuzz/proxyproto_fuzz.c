/* libFuzzer: PROXY protocol v1/v2 header parser. Checks the contract: a
 * consumed length fits the input, a parsed address has its family's size,
 * and every proper prefix of an accepted header is "incomplete". The same
 * bytes also go through the X-Forwarded-For / Forwarded / CIDR parsers. */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/fwd.h"
#include "proto/proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) ((c) ? (void)0 : __builtin_trap())

static void check_fwd(const char *s, size_t size)
{
    static const char trust[] = "127.0.0.1/32,10.0.0.0/8,::1";
    struct fwd_cidr l[4], c;
    struct sockaddr_storage ss;
    int n = fwd_cidr_list_parse(trust, l, 4);

    CHECK(n == 3);
    if (fwd_xff(s, size, l, 3, &ss) == 0)
        CHECK(!fwd_trusted(l, 3, (const struct sockaddr *)&ss));
    if (fwd_forwarded(s, size, l, 3, &ss) == 0)
        CHECK(!fwd_trusted(l, 3, (const struct sockaddr *)&ss));
    if (fwd_cidr_parse(s, size, &c) == 0)
        CHECK(c.prefix <= (c.family == AF_INET ? 32u : 128u));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxyproto pp;

    check_fwd((const char *)data, size);
    int rc = proxyproto_parse((const char *)data, size, &pp);
    CHECK(rc == -1 || rc == -2 || (rc > 0 && (size_t)rc <= size));
    if (rc <= 0)
        return 0;
    if (!pp.local) {
        sa_family_t f = pp.src.ss_family;
        CHECK((f == AF_INET && pp.src_len == sizeof(struct sockaddr_in)) ||
              (f == AF_INET6 && pp.src_len == sizeof(struct sockaddr_in6)));
    }
    CHECK(proxyproto_parse((const char *)data, (size_t)rc - 1, &pp) == -2);
    CHECK(proxyproto_parse((const char *)data, (size_t)rc, &pp) == rc);
    return 0;
}
