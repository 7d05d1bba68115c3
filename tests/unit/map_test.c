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
