/* The status page's per-path selection (engine/pathstat.c) and the admin
 * bearer token helpers (engine/admin.c). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/admin.h"
#include "engine/pathstat.c"
#include "proto/http1.h"

static struct path_stat ps(const char *path, uint64_t up, uint64_t down)
{
    struct path_stat p = {.up = up, .down = down, .waiting = 1, .links = 2, .paths = 1};

    snprintf(p.path, sizeof(p.path), "%s", path);
    return p;
}

Test(pathstat, select_keeps_the_busiest_and_sums_the_rest)
{
    struct path_stat all[] = {ps("/a/", 10, 0), ps("/b/", 0, 50), ps("/c/", 30, 1),
                              ps("/d/", 5, 5)};
    struct path_stat rest = {0};
    int n = pathstat_select(all, 4, 2, &rest);

    cr_assert_eq(n, 2);
    cr_assert_str_eq(all[0].path, "/b/");
    cr_assert_str_eq(all[1].path, "/c/");
    cr_assert_eq(rest.paths, 2);
    cr_assert_eq(rest.up, 15);
    cr_assert_eq(rest.down, 5);
    cr_assert_eq(rest.waiting, 2);
    cr_assert_eq(rest.links, 4);
}

Test(pathstat, heap_matches_a_full_sort)
{
    struct path_stat h[PATHSTAT_TOP_MAX] = {0}, all[500], rest = {0}, rest2 = {0};
    struct top t = {.h = h, .cap = 20};

    for (int i = 0; i < 500; i++) {
        char name[16];

        snprintf(name, sizeof(name), "/p%d/", i);
        all[i] = ps(name, (uint64_t)((i * 7919) % 1009), 0);
        top_offer(&t, &all[i], &rest);
    }
    cr_assert_eq(t.len, 20);
    qsort(t.h, (size_t)t.len, sizeof(*t.h), busier_first);
    cr_assert_eq(pathstat_select(all, 500, 20, &rest2), 20);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(busy(&t.h[i]), busy(&all[i]), "rank %d", i);
    cr_assert_eq(rest.paths, 480);
    cr_assert_eq(rest.up, rest2.up);
}

Test(pathstat, zero_cap_sums_everything)
{
    struct path_stat h[1], rest = {0}, p = ps("/x/", 3, 4);
    struct top t = {.h = h, .cap = 0};

    top_offer(&t, &p, &rest);
    cr_assert_eq(t.len, 0);
    cr_assert_eq(rest.paths, 1);
    cr_assert_eq(rest.up + rest.down, 7);
}

static bool authorized(const char *value)
{
    struct http1_header hdr[1] = {{"Authorization", 13, value, strlen(value)}};
    struct http1_request req = {.headers = hdr, .num_headers = value[0] ? 1 : 0};

    return admin_authorized(&req, "0123456789abcdefXYZ", 19);
}

Test(admin, bearer_token_compare)
{
    cr_assert(authorized("Bearer 0123456789abcdefXYZ"));
    cr_assert(authorized("bearer 0123456789abcdefXYZ"));
    cr_assert_not(authorized("Bearer 0123456789abcdefXY"));
    cr_assert_not(authorized("Bearer 0123456789abcdefXYZZ"));
    cr_assert_not(authorized("Basic 0123456789abcdefXYZ"));
    cr_assert_not(authorized("Bearer"));
    cr_assert_not(authorized(""));
}

static int load(const char *text, mode_t mode, char *err, size_t errlen)
{
    char path[] = "/tmp/rapi-token-XXXXXX", tok[ADMIN_TOKEN_MAX];
    size_t len = 0;
    int fd = mkstemp(path), r;

    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    fchmod(fd, mode);
    close(fd);
    r = admin_token_load(path, tok, sizeof(tok), &len, err, errlen);
    unlink(path);
    if (r == 0)
        cr_assert_eq(len, strcspn(text, "\r\n"));
    return r;
}

Test(admin, token_file_rules)
{
    char err[256];

    cr_assert_eq(load("0123456789abcdef\n", 0600, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(load("0123456789abcdef\r\n", 0400, err, sizeof(err)), 0, "%s", err);
    cr_assert_lt(load("0123456789abcdef\n", 0640, err, sizeof(err)), 0);
    cr_assert_lt(load("0123456789abcdef\n", 0602, err, sizeof(err)), 0);
    cr_assert_lt(load("0123456789abcde\n", 0600, err, sizeof(err)), 0);
    cr_assert_lt(load("0123456789 abcdef\n", 0600, err, sizeof(err)), 0);
    cr_assert_lt(load("0123456789abcdef\n\n", 0600, err, sizeof(err)), 0);
    cr_assert(strstr(err, "0123456789") == NULL, "%s", err);
}
