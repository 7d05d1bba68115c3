/* libFuzzer: PROXY protocol v1/v2 header parser. Checks the contract: a
 * consumed length fits the input, a parsed address has its family's size,
 * and every proper prefix of an accepted header is "incomplete". */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) ((c) ? (void)0 : __builtin_trap())

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxyproto pp;
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
