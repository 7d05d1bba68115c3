/* Key files, generation, roles and constant-time compare. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/keys.h"
#include "tests/unit/guard.h"

#define SKEY "S3rverKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1"
#define CKEY "Cl1entKeyBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB2"
#define GOOD "server_key " SKEY "\nclient_key " CKEY "\n"

static char tmpdir[64];

static void mk_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/rapi-keys-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

static int parse(const char *text, size_t len, struct keys *k, char *err, size_t errlen)
{
    struct guard g = {0};
    char *p = guard_put(&g, text, len);
    int r = keys_parse(p, len, k, err, errlen);
    guard_free(&g);
    return r;
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        if (b[i])
            return false;
    }
    return true;
}

Test(keys, parse_good)
{
    struct keys k;
    char err[128];
    const char *text = "# rapi keys\n\n  server_key\t" SKEY "  \r\n"
                       "\t# comment\r\n"
                       "client_key " CKEY;
    cr_assert_eq(parse(text, strlen(text), &k, err, sizeof(err)), 0);
    cr_assert_str_eq(k.server, SKEY);
    cr_assert_eq(k.server_len, 64);
    cr_assert_str_eq(k.client, CKEY);
    cr_assert_eq(k.client_len, 64);
    cr_assert_str_eq(err, "");
    cr_assert_eq(parse(GOOD, strlen(GOOD), &k, NULL, 0), 0);
}

Test(keys, parse_lengths)
{
    struct keys k;
    char err[128], text[1024];
    char key[KEY_MAX_LEN + 2];

    memset(key, 'x', sizeof(key));
    snprintf(text, sizeof(text), "server_key %.*s\nclient_key " CKEY "\n", KEY_MIN_LEN, key);
    cr_assert_eq(parse(text, strlen(text), &k, err, sizeof(err)), 0);
    snprintf(text, sizeof(text), "server_key %.*s\nclient_key " CKEY "\n", KEY_MAX_LEN, key);
    cr_assert_eq(parse(text, strlen(text), &k, err, sizeof(err)), 0);
    cr_assert_eq(k.server_len, KEY_MAX_LEN);
    snprintf(text, sizeof(text), "server_key %.*s\nclient_key " CKEY "\n", KEY_MIN_LEN - 1, key);
    cr_assert_eq(parse(text, strlen(text), &k, err, sizeof(err)), -EINVAL);
    cr_assert_not_null(strstr(err, "line 1"));
    snprintf(text, sizeof(text), "server_key %.*s\nclient_key " CKEY "\n", KEY_MAX_LEN + 1, key);
    cr_assert_eq(parse(text, strlen(text), &k, err, sizeof(err)), -EINVAL);
}

/* Each bad file fails, names the line where there is one, leaks no key and
 * leaves no secret in k. */
Test(keys, parse_errors_never_show_keys)
{
    static const struct {
        const char *text;
        const char *needle;
    } bad[] = {
        {"server_key " SKEY "\n", "client_key"}, /* cases 0-3: -ENOENT, a key missing */
        {"client_key " CKEY "\n", "server_key"},
        {"", "server_key"},
        {"# only comments\n", "server_key"},
        {GOOD "server_key " SKEY "\n", "line 3"},
        {GOOD "client_key " CKEY "\n", "line 3"},
        {"server_key " SKEY "\nclient_key " SKEY "\n", "differ"},
        {"server_key " SKEY " extra\nclient_key " CKEY "\n", "line 1"},
        {"server_key S3rverKey\x01"
         "AAAAAAAAAAAAAAA\nclient_key " CKEY "\n",
         "line 1"},
        {"server_key S3rverKey\xc3\xa9"
         "AAAAAAAAAAAAAAA\nclient_key " CKEY "\n",
         "line 1"},
        {"server_key " SKEY "\n" SKEY "\n", "line 2"},
        {"Server_key " SKEY "\nclient_key " CKEY "\n", "line 1"},
        {"server_key\nclient_key " CKEY "\n", "line 1"},
        {"server_key=" SKEY "\nclient_key " CKEY "\n", "line 1"},
        {"server_key " SKEY "\rclient_key " CKEY "\n", "line 1"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct keys k;
        char err[256];
        memset(&k, 0x55, sizeof(k));
        cr_assert_eq(parse(bad[i].text, strlen(bad[i].text), &k, err, sizeof(err)),
                     i < 4 ? -ENOENT : -EINVAL, "case %zu", i);
        cr_assert_not_null(strstr(err, bad[i].needle), "case %zu: %s", i, err);
        cr_assert_null(strstr(err, "S3rverKey"), "case %zu leaks: %s", i, err);
        cr_assert_null(strstr(err, "Cl1entKey"), "case %zu leaks: %s", i, err);
        cr_assert(all_zero(&k, sizeof(k)), "case %zu left secrets", i);
    }
}

Test(keys, parse_nul_byte)
{
    static const char text[] = "server_key S3rverKeyAAAA\0AAAAAAAAAA\nclient_key " CKEY "\n";
    struct keys k;
    char err[128];
    cr_assert_eq(parse(text, sizeof(text) - 1, &k, err, sizeof(err)), -EINVAL);
    cr_assert_null(strstr(err, "S3rverKey"));
}

Test(keys, parse_small_err_buffer)
{
    struct keys k;
    char err[4];
    cr_assert_eq(parse("x", 1, &k, err, sizeof(err)), -EINVAL);
    cr_assert_eq(strlen(err), 3);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_neq(fd, -1);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    cr_assert_eq(fchmod(fd, mode), 0);
    close(fd);
}

Test(keys, load_permissions, .init = mk_tmpdir, .fini = rm_tmpdir)
{
    char path[128], err[256];
    struct keys k;
    snprintf(path, sizeof(path), "%s/keys", tmpdir);

    write_file(path, GOOD, 0600);
    cr_assert_eq(keys_load(path, &k, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(k.server, SKEY);
    static const mode_t refused[] = {0644, 0640, 0604, 0620, 0602, 0666};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        cr_assert_eq(chmod(path, refused[i]), 0);
        cr_assert_eq(keys_load(path, &k, err, sizeof(err)), -EPERM, "mode %o", refused[i]);
        cr_assert_not_null(strstr(err, "0600"), "%s", err);
        cr_assert_null(strstr(err, "S3rverKey"));
        cr_assert(all_zero(&k, sizeof(k)));
    }
    cr_assert_eq(chmod(path, 0400), 0);
    cr_assert_eq(keys_load(path, &k, err, sizeof(err)), 0);
    cr_assert_eq(chmod(path, 0700), 0);
    cr_assert_eq(keys_load(path, &k, err, sizeof(err)), 0);
}

Test(keys, load_not_regular_or_missing, .init = mk_tmpdir, .fini = rm_tmpdir)
{
    char path[128], err[256];
    struct keys k;

    cr_assert_eq(keys_load(tmpdir, &k, err, sizeof(err)), -EPERM);
    snprintf(path, sizeof(path), "%s/fifo", tmpdir);
    cr_assert_eq(mkfifo(path, 0600), 0);
    cr_assert_eq(keys_load(path, &k, err, sizeof(err)), -EPERM); /* and does not block */
    snprintf(path, sizeof(path), "%s/missing", tmpdir);
    cr_assert_eq(keys_load(path, &k, err, sizeof(err)), -ENOENT);
    cr_assert_not_null(strstr(err, "missing"));
}

Test(keys, load_bad_content_and_size, .init = mk_tmpdir, .fini = rm_tmpdir)
{
    char path[128], err[256];
    struct keys k;
    static char big[KEYS_FILE_MAX + 2];
    snprintf(path, sizeof(path), "%s/keys", tmpdir);

    write_file(path, "server_key " SKEY "\n", 0600);
    cr_assert_eq(keys_load(path, &k, err, sizeof(err)), -ENOENT);
    cr_assert_null(strstr(err, "S3rverKey"));

    /* Exactly KEYS_FILE_MAX bytes (comment padding) loads; one more does not. */
    size_t good = strlen(GOOD);
    memset(big, '#', KEYS_FILE_MAX);
    memcpy(big, GOOD, good);
    big[KEYS_FILE_MAX - 1] = '\n';
    big[KEYS_FILE_MAX] = '\0';
    write_file(path, big, 0600);
    cr_assert_eq(keys_load(path, &k, err, sizeof(err)), 0, "%s", err);
    big[KEYS_FILE_MAX] = '\n';
    big[KEYS_FILE_MAX + 1] = '\0';
    write_file(path, big, 0600);
    cr_assert_eq(keys_load(path, &k, err, sizeof(err)), -EFBIG);
}

Test(keys, random_alphabet_and_length)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static char buf[20000 + 1];
    int seen[256] = {0};

    buf[20000] = '!';
    cr_assert_eq(keys_random(buf, 20000), 0);
    cr_assert_eq(buf[20000], '!'); /* nothing past len */
    for (size_t i = 0; i < 20000; i++) {
        cr_assert_not_null(memchr(alphabet, buf[i], 62), "byte %zu = %d", i, buf[i]);
        seen[(unsigned char)buf[i]]++;
    }
    /* 20000 draws over 62 symbols: each expected ~322 times. */
    for (size_t i = 0; i < 62; i++)
        cr_assert(seen[(unsigned char)alphabet[i]] > 200, "%c rare", alphabet[i]);
    cr_assert_eq(keys_random(buf, 0), 0);
    char a[KEY_LEN], b[KEY_LEN];
    cr_assert_eq(keys_random(a, KEY_LEN), 0);
    cr_assert_eq(keys_random(b, KEY_LEN), 0);
    cr_assert(memcmp(a, b, KEY_LEN) != 0);
}

Test(keys, generate_text_parses)
{
    char text[512], err[128];
    struct keys k;
    int n = keys_generate_text(text, sizeof(text));

    cr_assert_gt(n, 0);
    cr_assert_eq((size_t)n, strlen(text));
    cr_assert_eq(keys_parse(text, (size_t)n, &k, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(k.server_len, KEY_LEN);
    cr_assert_eq(k.client_len, KEY_LEN);
    cr_assert_str_neq(k.server, k.client);
    cr_assert_eq(keys_generate_text(text, (size_t)n), -ENOSPC);
    cr_assert_eq(keys_generate_text(text, 0), -ENOSPC);
}

Test(keys, create_file, .init = mk_tmpdir, .fini = rm_tmpdir)
{
    char path[128], err[256];
    struct keys k;
    struct stat st;
    snprintf(path, sizeof(path), "%s/new-keys", tmpdir);

    mode_t old = umask(0);
    int r = keys_create_file(path);
    umask(old);
    cr_assert_eq(r, 0);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0600);
    cr_assert_eq(keys_load(path, &k, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(keys_create_file(path), -EEXIST);
    snprintf(path, sizeof(path), "%s/no/such/dir", tmpdir);
    cr_assert_eq(keys_create_file(path), -ENOENT);
}

Test(keys, role)
{
    struct keys k;
    cr_assert_eq(keys_parse(GOOD, strlen(GOOD), &k, NULL, 0), 0);
    cr_assert_eq(keys_role(&k, SKEY, 64), KEY_SERVER);
    cr_assert_eq(keys_role(&k, CKEY, 64), KEY_CLIENT);
    cr_assert_eq(keys_role(&k, SKEY, 63), KEY_NONE);
    cr_assert_eq(keys_role(&k, SKEY "x", 65), KEY_NONE);
    cr_assert_eq(keys_role(&k, "", 0), KEY_NONE);
    char wrong[] = SKEY;
    wrong[63] ^= 1;
    cr_assert_eq(keys_role(&k, wrong, 64), KEY_NONE);
    struct keys zero;
    memset(&zero, 0, sizeof(zero));
    cr_assert_eq(keys_role(&zero, "", 0), KEY_NONE);
    keys_wipe(&k);
    cr_assert(all_zero(&k, sizeof(k)));
    cr_assert_eq(keys_role(&k, SKEY, 64), KEY_NONE);
}

Test(keys, ct_equal)
{
    cr_assert_eq(ct_equal("abc", 3, "abc", 3), 1);
    cr_assert_eq(ct_equal("abc", 3, "abd", 3), 0);
    cr_assert_eq(ct_equal("abc", 3, "ab", 2), 0);
    cr_assert_eq(ct_equal("ab", 2, "abc", 3), 0);
    cr_assert_eq(ct_equal("", 0, "", 0), 1);
    cr_assert_eq(ct_equal("a", 1, "", 0), 0);
    cr_assert_eq(ct_equal("\0", 1, "", 0), 0); /* padding with zero must not match */
    cr_assert_eq(ct_equal("a\0", 2, "a", 1), 0);
    /* Inputs right before a guard page: no read past either length. */
    struct guard ga = {0}, gb = {0};
    char *a = guard_str(&ga, "secret-value");
    char *b = guard_str(&gb, "secret");
    cr_assert_eq(ct_equal(a, 12, b, 6), 0);
    cr_assert_eq(ct_equal(a, 6, b, 6), 1);
    guard_free(&ga);
    guard_free(&gb);
}

/* ------------------------------------------------------------ one reader, by role */

static int parse_for(const char *text, enum keys_need need, struct keys *k, char *err, size_t n)
{
    struct guard g = {0};
    const char *p = guard_str(&g, text);
    int r = keys_parse_for(p, strlen(text), need, k, err, n);
    guard_free(&g);
    return r;
}

Test(keys, parse_for_roles)
{
    struct keys k;
    char err[256];

    cr_assert_eq(parse_for(GOOD, KEYS_NEED_SERVER, &k, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(k.server, SKEY);
    cr_assert_eq(parse_for(GOOD, KEYS_NEED_CLIENT, &k, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(k.client, CKEY);
    /* A file with only the key a role needs. */
    cr_assert_eq(parse_for("server_key " SKEY "\n", KEYS_NEED_SERVER, &k, err, sizeof(err)), 0);
    cr_assert_eq(k.client_len, 0);
    cr_assert_eq(parse_for("server_key " SKEY "\n", KEYS_NEED_CLIENT, &k, err, sizeof(err)),
                 -ENOENT);
    cr_assert_not_null(strstr(err, "client_key"));
    cr_assert(all_zero(&k, sizeof(k)));
    /* The key not needed still follows the rules. */
    cr_assert_eq(
        parse_for("server_key " SKEY "\nclient_key c\n", KEYS_NEED_SERVER, &k, err, sizeof(err)),
        -EINVAL);
    cr_assert_eq(parse_for("server_key " SKEY "\nclient_key " SKEY "\n", KEYS_NEED_SERVER, &k, err,
                           sizeof(err)),
                 -EINVAL);
    cr_assert_eq(parse_for(GOOD, (enum keys_need)0, &k, err, sizeof(err)), -EINVAL);
}

Test(keys, parse_for_bare_key)
{
    struct keys k;
    char err[256];

    cr_assert_eq(
        parse_for("# the client key\n\n  " CKEY "  \r\n", KEYS_NEED_CLIENT, &k, err, sizeof(err)),
        0, "%s", err);
    cr_assert_str_eq(k.client, CKEY);
    cr_assert_eq(k.server_len, 0);
    cr_assert_eq(parse_for(SKEY, KEYS_NEED_SERVER, &k, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(k.server, SKEY);
    /* Not for the relay, which needs both. */
    cr_assert_eq(parse_for(SKEY "\n", KEYS_NEED_BOTH, &k, err, sizeof(err)), -EINVAL);
    cr_assert_not_null(strstr(err, "line 1"));
    /* One rule for length: a 1-character key is refused everywhere. */
    cr_assert_eq(parse_for("k\n", KEYS_NEED_CLIENT, &k, err, sizeof(err)), -EINVAL);
    cr_assert_not_null(strstr(err, "16 to 256"), "%s", err);
    /* Two bare lines, a bare line with named ones, a bare line with blanks. */
    cr_assert_eq(parse_for(SKEY "\n" CKEY "\n", KEYS_NEED_SERVER, &k, err, sizeof(err)), -EINVAL);
    cr_assert_not_null(strstr(err, "line 2"));
    cr_assert_eq(
        parse_for("server_key " SKEY "\n" CKEY "\n", KEYS_NEED_CLIENT, &k, err, sizeof(err)),
        -EINVAL);
    cr_assert_eq(parse_for(CKEY " more\n", KEYS_NEED_CLIENT, &k, err, sizeof(err)), -EINVAL);
    cr_assert_null(strstr(err, "Cl1entKey"));
    cr_assert(all_zero(&k, sizeof(k)));
}

Test(keys, load_for_roles_and_modes, .init = mk_tmpdir, .fini = rm_tmpdir)
{
    char path[128], err[256];
    struct keys k;
    snprintf(path, sizeof(path), "%s/client.key", tmpdir);

    write_file(path, CKEY "\n", 0600);
    cr_assert_eq(keys_load_for(path, KEYS_NEED_CLIENT, &k, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(k.client, CKEY);
    cr_assert_eq(keys_load(path, &k, err, sizeof(err)), -EINVAL);
    /* The same mode rule as the relay: group/other read or write refused,
     * execute bits alone are not access to the key. */
    cr_assert_eq(chmod(path, 0640), 0);
    cr_assert_eq(keys_load_for(path, KEYS_NEED_CLIENT, &k, err, sizeof(err)), -EPERM);
    cr_assert_eq(chmod(path, 0604), 0);
    cr_assert_eq(keys_load_for(path, KEYS_NEED_CLIENT, &k, err, sizeof(err)), -EPERM);
    cr_assert_eq(chmod(path, 0711), 0);
    cr_assert_eq(keys_load_for(path, KEYS_NEED_CLIENT, &k, err, sizeof(err)), 0);
    cr_assert_eq(keys_load_for(tmpdir, KEYS_NEED_CLIENT, &k, err, sizeof(err)), -EPERM);
}

Test(keys, check_copy_and_short)
{
    struct keys k;
    char out[KEY_MAX_LEN + 1], err[128];

    cr_assert_eq(keys_check(SKEY, strlen(SKEY)), 0);
    cr_assert_eq(keys_check("short", 5), -EINVAL);
    cr_assert_eq(keys_check("0123456789abcde", KEY_MIN_LEN - 1), -EINVAL);
    cr_assert_eq(keys_check("0123456789abcdef", KEY_MIN_LEN), 0);
    cr_assert_eq(keys_check("0123456789 abcdef", 17), -EINVAL);
    cr_assert_eq(keys_check(NULL, 20), -EINVAL);

    cr_assert_eq(parse_for(GOOD, KEYS_NEED_BOTH, &k, err, sizeof(err)), 0);
    cr_assert_eq(keys_copy(&k, KEYS_NEED_SERVER, out, sizeof(out)), (int)strlen(SKEY));
    cr_assert_str_eq(out, SKEY);
    cr_assert_eq(keys_copy(&k, KEYS_NEED_CLIENT, out, sizeof(out)), (int)strlen(CKEY));
    cr_assert_str_eq(out, CKEY);
    cr_assert_eq(keys_copy(&k, KEYS_NEED_CLIENT, out, strlen(CKEY)), -ENOSPC);
    cr_assert(all_zero(out, strlen(CKEY)));
    cr_assert_eq(keys_copy(&k, KEYS_NEED_BOTH, out, sizeof(out)), -EINVAL);
    cr_assert_eq(keys_short(&k), 0); /* 64 characters, like keygen's */
    cr_assert_eq(parse_for("server_key 0123456789abcdef\nclient_key " CKEY "\n", KEYS_NEED_BOTH, &k,
                           err, sizeof(err)),
                 0);
    cr_assert_eq(keys_short(&k), KEYS_NEED_SERVER);

    char text[KEYS_FILE_MAX];
    cr_assert_gt(keys_generate_text(text, sizeof(text)), 0);
    cr_assert_eq(parse_for(text, KEYS_NEED_BOTH, &k, err, sizeof(err)), 0);
    cr_assert_eq(keys_short(&k), 0);
    k.client_len = KEY_LEN - 1;
    cr_assert_eq(keys_short(&k), KEYS_NEED_CLIENT);
    keys_wipe(&k);
    cr_assert_eq(keys_short(&k), 0);
    cr_assert_eq(keys_copy(&k, KEYS_NEED_SERVER, out, sizeof(out)), -ENOENT);
}
