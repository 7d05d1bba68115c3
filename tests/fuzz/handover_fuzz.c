/* libFuzzer: the upgrade's handover record decoder (proto/handover.c).
 * Checks the contract: a decoded record has its type's shape, its strings
 * lie inside the input, and encoding it again gives the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/handover.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) ((c) ? (void)0 : __builtin_trap())

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t again[HO_REC_MAX];
    struct ho_rec r;
    int nn, ns, nf;
    long n;

    if (ho_decode(data, size, &r) < 0)
        return 0;
    CHECK(ho_shape(r.type, &nn, &ns, &nf) == 0 && nn == r.nnums && ns == r.nstrs);
    CHECK(nf >= 0 && nf <= HO_FDS_MAX);
    for (int i = 0; i < r.nstrs; i++) {
        const uint8_t *p = (const uint8_t *)r.str[i].p;

        CHECK(r.str[i].len <= HO_STR_MAX);
        CHECK(p >= data && p + r.str[i].len <= data + size);
    }
    n = ho_encode(&r, again, sizeof(again));
    CHECK(n == (long)size && memcmp(again, data, size) == 0);
    return 0;
}
