/* Keys for the SDK side: a relay key file (pick the key by role) or a file
 * holding one bare key. Thread-safe; the buffer holding the file is wiped. */
#define RAPI_BUILDING 1
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>

#include "net/anet.h"
#include "sdk/rapi.h"

#define KEYFILE_MAX 8192
#define KEYFILE_KEY_MAX 256

/* A secret readable by others is a mistake worth stopping for. */
static int read_key_file(const char *path, char *buf, size_t cap)
{
    unsigned mode = 0;
    int rc = anet_read_file(path, buf, cap, &mode);

    if (rc >= 0 && (mode & (S_IRWXG | S_IRWXO)))
        rc = -EPERM;
    return rc;
}

static bool key_chars_ok(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > KEYFILE_KEY_MAX)
        return false;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/* One line: blank/comment, "name value", or a bare token. */
static void split_line(const char *l, size_t n, const char **a, size_t *alen, const char **b,
                       size_t *blen)
{
    size_t i = 0, j;

    while (i < n && (l[i] == ' ' || l[i] == '\t'))
        i++;
    j = i;
    while (j < n && l[j] != ' ' && l[j] != '\t')
        j++;
    *a = l + i;
    *alen = j - i;
    while (j < n && (l[j] == ' ' || l[j] == '\t'))
        j++;
    i = j;
    while (j < n && l[j] != ' ' && l[j] != '\t' && l[j] != '\r')
        j++;
    *b = l + i;
    *blen = j - i;
}

static int pick_key(const char *text, enum rapi_role role, const char **key, size_t *key_len)
{
    const char *want = role == RAPI_ROLE_SERVER ? "server_key" : "client_key";
    const char *line = text, *nl, *a, *b, *bare = NULL;
    size_t alen, blen, bare_len = 0, nbare = 0;
    bool named = false;

    *key = NULL;
    for (; *line; line = nl ? nl + 1 : line + strlen(line)) {
        nl = strchr(line, '\n');
        split_line(line, nl ? (size_t)(nl - line) : strlen(line), &a, &alen, &b, &blen);
        if (alen && a[alen - 1] == '\r')
            alen--;
        if (alen == 0 || a[0] == '#')
            continue;
        if ((alen == 10 &&
             (memcmp(a, "server_key", 10) == 0 || memcmp(a, "client_key", 10) == 0))) {
            named = true;
            if (memcmp(a, want, 10) == 0 && blen > 0) {
                *key = b;
                *key_len = blen;
            }
            continue;
        }
        bare = a;
        bare_len = alen;
        nbare++;
    }
    if (named)
        return *key ? 0 : -ENOENT;
    if (nbare != 1)
        return -EINVAL;
    *key = bare;
    *key_len = bare_len;
    return 0;
}

RAPI_API int rapi_key_load(const char *path, enum rapi_role role, char *out, size_t cap)
{
    char buf[KEYFILE_MAX];
    const char *key;
    size_t key_len = 0;
    int rc;

    if (path == NULL || out == NULL || (role != RAPI_ROLE_SERVER && role != RAPI_ROLE_CLIENT))
        return -EINVAL;
    buf[0] = '\0';
    rc = read_key_file(path, buf, sizeof(buf));
    if (rc < 0)
        goto out;
    rc = pick_key(buf, role, &key, &key_len);
    if (rc < 0)
        goto out;
    if (!key_chars_ok(key, key_len)) {
        rc = -EINVAL;
        goto out;
    }
    if (key_len + 1 > cap) {
        rc = -ENOSPC;
        goto out;
    }
    memcpy(out, key, key_len);
    out[key_len] = '\0';
    rc = (int)key_len;
out:
    explicit_bzero(buf, sizeof(buf));
    return rc;
}
