#include "engine/map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAP_INITIAL 64

/* FNV-1a, 64 bit: keys are short paths and IDs; no attacker gains from
 * collisions more than a longer chain, bounded by max_waiting per path. */
uint64_t map_hash(const char *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

int map_init(struct map *m)
{
    m->bucket = calloc(MAP_INITIAL, sizeof(*m->bucket));
    if (!m->bucket)
        return -ENOMEM;
    m->nbuckets = MAP_INITIAL;
    m->count = 0;
    return 0;
}

void map_fini(struct map *m)
{
    free(m->bucket);
    m->bucket = NULL;
    m->nbuckets = m->count = 0;
}

struct map_entry *map_get(const struct map *m, const char *key, size_t len)
{
    uint64_t h = map_hash(key, len);
    struct map_entry *e = m->bucket[h & (m->nbuckets - 1)];

    for (; e; e = e->next)
        if (e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0)
            return e;
    return NULL;
}

static int map_grow(struct map *m)
{
    size_t n = m->nbuckets * 2;
    struct map_entry **b = calloc(n, sizeof(*b));

    if (!b)
        return -ENOMEM;
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct map_entry *e = m->bucket[i], *next;

        for (; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(m->bucket);
    m->bucket = b;
    m->nbuckets = n;
    return 0;
}

int map_put(struct map *m, struct map_entry *e)
{
    struct map_entry **head;

    if (m->count + 1 > m->nbuckets && map_grow(m) < 0 && m->count >= m->nbuckets * 4)
        return -ENOMEM;
    e->hash = map_hash(e->key, e->key_len);
    head = &m->bucket[e->hash & (m->nbuckets - 1)];
    e->next = *head;
    *head = e;
    m->count++;
    return 0;
}

void map_del(struct map *m, struct map_entry *e)
{
    struct map_entry **p = &m->bucket[e->hash & (m->nbuckets - 1)];

    for (; *p; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            e->next = NULL;
            m->count--;
            return;
        }
    }
}

void map_iter_init(struct map_iter *it, const struct map *m)
{
    it->m = m;
    it->bucket = 0;
    it->next = NULL;
}

struct map_entry *map_iter_next(struct map_iter *it)
{
    struct map_entry *e = it->next;

    while (!e && it->bucket < it->m->nbuckets)
        e = it->m->bucket[it->bucket++];
    /* Taken now, so that the caller may delete e. */
    it->next = e ? e->next : NULL;
    return e;
}
