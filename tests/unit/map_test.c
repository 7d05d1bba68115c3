#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "engine/map.h"

struct item {
    struct map_entry me;
    char key[32];
};

Test(map, put_get_del_and_grow)
{
    enum { N = 5000 };
    static struct item it[N];
    struct map m;

    cr_assert_eq(map_init(&m), 0);
    for (int i = 0; i < N; i++) {
        snprintf(it[i].key, sizeof(it[i].key), "/path/%d", i);
        it[i].me.key = it[i].key;
        it[i].me.key_len = strlen(it[i].key);
        cr_assert_eq(map_put(&m, &it[i].me), 0);
    }
    cr_assert_eq(m.count, N);
    cr_assert_geq(m.nbuckets, N, "grew");
    for (int i = 0; i < N; i++)
        cr_assert_eq(map_get(&m, it[i].key, strlen(it[i].key)), &it[i].me);
    cr_assert_null(map_get(&m, "/path/", 6));
    cr_assert_null(map_get(&m, "/path/1", 6), "length is part of the key");
    for (int i = 0; i < N; i += 2)
        map_del(&m, &it[i].me);
    for (int i = 0; i < N; i++)
        cr_assert_eq(map_get(&m, it[i].key, strlen(it[i].key)) != NULL, i % 2 == 1);
    map_fini(&m);
}

Test(map, keys_with_nul_bytes)
{
    struct item a = {.me = {.key = "/p\0id1", .key_len = 6}};
    struct item b = {.me = {.key = "/p\0id2", .key_len = 6}};
    struct map m;

    cr_assert_eq(map_init(&m), 0);
    map_put(&m, &a.me);
    map_put(&m, &b.me);
    cr_assert_eq(map_get(&m, "/p\0id2", 6), &b.me);
    cr_assert_eq(map_get(&m, "/p\0id1", 6), &a.me);
    map_fini(&m);
}

/* Every entry exactly once, across growth and across chains. */
Test(map, iterator_visits_each_entry_once)
{
    enum { N = 1000 };
    static struct item it[N];
    static int seen[N];
    struct map_iter mi;
    struct map_entry *e;
    struct map m;
    int n = 0;

    cr_assert_eq(map_init(&m), 0);
    for (map_iter_init(&mi, &m); (e = map_iter_next(&mi));)
        n++;
    cr_assert_eq(n, 0, "an empty map yields nothing");
    for (int i = 0; i < N; i++) {
        snprintf(it[i].key, sizeof(it[i].key), "/i/%d", i);
        it[i].me.key = it[i].key;
        it[i].me.key_len = strlen(it[i].key);
        cr_assert_eq(map_put(&m, &it[i].me), 0);
    }
    for (map_iter_init(&mi, &m); (e = map_iter_next(&mi));) {
        int i = (int)((struct item *)e - it);

        cr_assert(i >= 0 && i < N);
        seen[i]++;
        n++;
    }
    cr_assert_eq(n, N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(seen[i], 1, "entry %d seen %d times", i, seen[i]);
    map_fini(&m);
}

/* The entry just returned may be deleted: the walk goes on and sees the
 * rest, and deleting all empties the map (shard drain and exit do this). */
Test(map, iterator_allows_deleting_the_current_entry)
{
    enum { N = 300 };
    static struct item it[N];
    struct map_iter mi;
    struct map_entry *e;
    struct map m;
    int n = 0;

    cr_assert_eq(map_init(&m), 0);
    for (int i = 0; i < N; i++) {
        snprintf(it[i].key, sizeof(it[i].key), "/d/%d", i);
        it[i].me.key = it[i].key;
        it[i].me.key_len = strlen(it[i].key);
        cr_assert_eq(map_put(&m, &it[i].me), 0);
    }
    for (map_iter_init(&mi, &m); (e = map_iter_next(&mi));) {
        map_del(&m, e);
        n++;
    }
    cr_assert_eq(n, N);
    cr_assert_eq(m.count, 0);
    for (int i = 0; i < N; i++)
        cr_assert_null(map_get(&m, it[i].key, strlen(it[i].key)));
    map_fini(&m);
}
