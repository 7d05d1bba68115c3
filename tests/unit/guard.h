/* Test helper: copy input so that it ends exactly at a PROT_NONE page, so a
 * parser reading one byte past its length faults at once (picohttpparser's
 * test.c trick; ASan cannot see over-reads inside a larger valid buffer).
 * Header-only; one struct guard per live buffer, freed with guard_free. */
#ifndef RAPI_TESTS_GUARD_H
#define RAPI_TESTS_GUARD_H

#include <criterion/criterion.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct guard {
    void *base;
    size_t size;
    char *data; /* len bytes, immediately followed by the guard page */
};

/* Returns a writable copy of src[0..len) ending at the guard page. */
static inline char *guard_put(struct guard *g, const void *src, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (len + page - 1) / page + 1;

    g->size = pages * page;
    g->base = mmap(NULL, g->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(g->base, MAP_FAILED, "mmap");
    cr_assert_eq(mprotect((char *)g->base + g->size - page, page, PROT_NONE), 0, "mprotect");
    g->data = (char *)g->base + g->size - page - len;
    if (len)
        memcpy(g->data, src, len);
    return g->data;
}

static inline void guard_free(struct guard *g)
{
    if (g->base != NULL)
        munmap(g->base, g->size);
    g->base = NULL;
    g->data = NULL;
}

/* Convenience for NUL-terminated literals (the NUL is not copied). */
static inline char *guard_str(struct guard *g, const char *s)
{
    return guard_put(g, s, strlen(s));
}

#endif
