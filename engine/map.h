/* String-keyed hash map with chaining, owned by one thread (a shard); not
 * thread-safe. Entries are embedded in their owners (intrusive): the map
 * never allocates an entry or copies a key, it only keeps a pointer to the
 * owner's key bytes, which must stay valid while the entry is in the map. */
#ifndef RAPI_ENGINE_MAP_H
#define RAPI_ENGINE_MAP_H

#include <stddef.h>
#include <stdint.h>

struct map_entry {
    struct map_entry *next;
    const char *key;
    size_t key_len;
    uint64_t hash;
};

struct map {
    struct map_entry **bucket;
    size_t nbuckets; /* power of two */
    size_t count;
};

uint64_t map_hash(const char *key, size_t len);

/* 0 or -ENOMEM. */
int map_init(struct map *m);
void map_fini(struct map *m);

struct map_entry *map_get(const struct map *m, const char *key, size_t len);

/* Insert e (e->key/e->key_len set by the caller). The key must not be present.
 * Grows the table when needed; 0, or -ENOMEM (then e is not inserted). */
int map_put(struct map *m, struct map_entry *e);

void map_del(struct map *m, struct map_entry *e);

/* Walk every entry, in no particular order:
 *     for (map_iter_init(&it, m); (e = map_iter_next(&it));) ...
 * The entry just returned may be deleted (map_del) during the walk, no other
 * entry may, and nothing may be put. */
struct map_iter {
    const struct map *m;
    size_t bucket;          /* next bucket to look at */
    struct map_entry *next; /* next entry of the current chain */
};

void map_iter_init(struct map_iter *it, const struct map *m);
struct map_entry *map_iter_next(struct map_iter *it);

#endif
