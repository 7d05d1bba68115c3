/* Key files, key generation and constant-time checks (see keys.h).
 * Error messages name lines and files, never key text: a key pasted on the
 * wrong line must not end up in a log. */
#include "auth/keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/rnd.h"
#include "proto/errbuf.h"

#define KEYS_ALPHABET "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
#define KEYS_ALPHABET_LEN 62
/* Largest multiple of 62 below 256: bytes at or above it are redrawn, so
 * every character is equally likely. */
#define KEYS_RAND_LIMIT 248
#define KEYS_RAND_BATCH 64
#define KEYS_SERVER_WORD "server_key"
#define KEYS_CLIENT_WORD "client_key"
#define KEYS_TOO_OPEN (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)
#define KEYS_FILE_MODE 0600
#define KEYS_CHAR_MIN 0x21 /* keys are printable ASCII without space */
#define KEYS_CHAR_MAX 0x7e
#define KEYS_HEADER                                                                                \
    "# rapi key file: keep it secret (mode 0600).\n"                                               \
    "# server_key authenticates servers (listeners, dial-backs); client_key clients.\n"

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

int keys_check(const char *key, size_t len)
{
    if (key == NULL || len < KEY_MIN_LEN || len > KEY_MAX_LEN)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)key[i] < KEYS_CHAR_MIN || (unsigned char)key[i] > KEYS_CHAR_MAX)
            return -EINVAL;
    }
    return 0;
}

/* Store one key; line is 1-based for messages. */
static int store_key(char *dst, size_t *dst_len, const char *word, const char *v, size_t n,
                     unsigned line, char *err, size_t errlen)
{
    if (*dst_len != 0) {
        errbuf_set(err, errlen, "line %u: duplicate %s", line, word);
        return -EINVAL;
    }
    if (n < KEY_MIN_LEN || n > KEY_MAX_LEN) {
        errbuf_set(err, errlen, "line %u: %s must be %d to %d characters", line, word, KEY_MIN_LEN,
                   KEY_MAX_LEN);
        return -EINVAL;
    }
    if (keys_check(v, n) != 0) {
        errbuf_set(err, errlen, "line %u: %s contains a space or non-printable character", line,
                   word);
        return -EINVAL;
    }
    memcpy(dst, v, n);
    dst[n] = '\0';
    *dst_len = n;
    return 0;
}

/* The one bare key a file may hold instead of named lines. */
struct bare {
    const char *key;
    size_t len;
    unsigned line; /* 0: none seen */
};

static int not_a_key_line(unsigned line, char *err, size_t errlen)
{
    errbuf_set(err, errlen, "line %u: expected server_key or client_key", line);
    return -EINVAL;
}

/* One line without its '\n': blank, comment, "<word> <key>", or a bare key. */
static int parse_line(const char *s, size_t n, unsigned line, struct keys *k, struct bare *b,
                      char *err, size_t errlen)
{
    if (n > 0 && s[n - 1] == '\r')
        n--;
    while (n > 0 && is_blank(*s)) {
        s++;
        n--;
    }
    while (n > 0 && is_blank(s[n - 1]))
        n--;
    if (n == 0 || s[0] == '#')
        return 0;
    size_t w = 0;
    while (w < n && !is_blank(s[w]))
        w++;
    size_t v = w;
    while (v < n && is_blank(s[v]))
        v++;
    bool server = w == strlen(KEYS_SERVER_WORD) && memcmp(s, KEYS_SERVER_WORD, w) == 0;
    bool client = w == strlen(KEYS_CLIENT_WORD) && memcmp(s, KEYS_CLIENT_WORD, w) == 0;
    if (!server && !client) {
        if (w != n || b->line != 0)
            return not_a_key_line(line, err, errlen);
        b->key = s;
        b->len = n;
        b->line = line;
        return 0;
    }
    if (server)
        return store_key(k->server, &k->server_len, KEYS_SERVER_WORD, s + v, n - v, line, err,
                         errlen);
    return store_key(k->client, &k->client_len, KEYS_CLIENT_WORD, s + v, n - v, line, err, errlen);
}

/* A bare key serves one role, and only in a file without named lines. */
static int use_bare(struct keys *k, enum keys_need need, const struct bare *b, char *err,
                    size_t errlen)
{
    if (b->line == 0)
        return 0;
    if (k->server_len != 0 || k->client_len != 0 || need == KEYS_NEED_BOTH)
        return not_a_key_line(b->line, err, errlen);
    if (need == KEYS_NEED_SERVER)
        return store_key(k->server, &k->server_len, "the key", b->key, b->len, b->line, err,
                         errlen);
    return store_key(k->client, &k->client_len, "the key", b->key, b->len, b->line, err, errlen);
}

static int check_complete(const struct keys *k, enum keys_need need, char *err, size_t errlen)
{
    if ((need & KEYS_NEED_SERVER) && k->server_len == 0) {
        errbuf_set(err, errlen, "no server_key line");
        return -ENOENT;
    }
    if ((need & KEYS_NEED_CLIENT) && k->client_len == 0) {
        errbuf_set(err, errlen, "no client_key line");
        return -ENOENT;
    }
    if (k->server_len != 0 && k->client_len != 0 &&
        ct_equal(k->server, k->server_len, k->client, k->client_len)) {
        errbuf_set(err, errlen, "server_key and client_key must differ");
        return -EINVAL;
    }
    return 0;
}

int keys_parse_for(const char *text, size_t len, enum keys_need need, struct keys *k, char *err,
                   size_t errlen)
{
    struct bare b = {0};
    size_t pos = 0;
    unsigned line = 1;
    int r = 0;

    keys_wipe(k);
    errbuf_set(err, errlen, "%s", "");
    if (need < KEYS_NEED_SERVER || need > KEYS_NEED_BOTH)
        return -EINVAL;
    while (pos < len && r == 0) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        r = parse_line(text + pos, end - pos, line, k, &b, err, errlen);
        pos = end + 1;
        line++;
    }
    if (r == 0)
        r = use_bare(k, need, &b, err, errlen);
    if (r == 0)
        r = check_complete(k, need, err, errlen);
    if (r != 0)
        keys_wipe(k);
    return r;
}

int keys_parse(const char *text, size_t len, struct keys *k, char *err, size_t errlen)
{
    return keys_parse_for(text, len, KEYS_NEED_BOTH, k, err, errlen);
}

int keys_copy(const struct keys *k, enum keys_need need, char *out, size_t cap)
{
    const char *key = need == KEYS_NEED_SERVER ? k->server : k->client;
    size_t len = need == KEYS_NEED_SERVER ? k->server_len : k->client_len;

    if (need != KEYS_NEED_SERVER && need != KEYS_NEED_CLIENT)
        return -EINVAL;
    if (len == 0)
        return -ENOENT;
    if (len >= cap) {
        if (cap > 0)
            explicit_bzero(out, cap);
        return -ENOSPC;
    }
    memcpy(out, key, len);
    out[len] = '\0';
    return (int)len;
}

unsigned keys_short(const struct keys *k)
{
    unsigned m = 0;

    if (k->server_len != 0 && k->server_len < KEY_LEN)
        m |= KEYS_NEED_SERVER;
    if (k->client_len != 0 && k->client_len < KEY_LEN)
        m |= KEYS_NEED_CLIENT;
    return m;
}

/* Read at most cap bytes of fd; -EFBIG when there is more. */
static ssize_t read_all(int fd, char *buf, size_t cap)
{
    size_t got = 0;

    for (;;) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1)
            return -errno;
        if (r == 0)
            return (ssize_t)got;
        got += (size_t)r;
        if (got == cap)
            return -EFBIG;
    }
}

int keys_load(const char *path, struct keys *k, char *err, size_t errlen)
{
    return keys_load_for(path, KEYS_NEED_BOTH, k, err, errlen);
}

int keys_load_for(const char *path, enum keys_need need, struct keys *k, char *err, size_t errlen)
{
    char buf[KEYS_FILE_MAX + 1]; /* +1 tells "exactly max" from "too big" */
    struct stat st;
    ssize_t n = -EBADF;
    int r;

    keys_wipe(k);
    /* O_NONBLOCK: a FIFO planted at path must not hang start-up. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd == -1) {
        r = -errno;
        errbuf_set(err, errlen, "%s: %s", path, strerror(-r));
        return r;
    }
    if (fstat(fd, &st) == -1) {
        r = -errno;
        errbuf_set(err, errlen, "%s: %s", path, strerror(-r));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = -EPERM;
        errbuf_set(err, errlen, "%s: not a regular file", path);
        goto out;
    }
    if (st.st_mode & KEYS_TOO_OPEN) {
        r = -EPERM;
        errbuf_set(err, errlen, "%s: mode %04o lets group or others read or write it; use 0600",
                   path, (unsigned)(st.st_mode & 07777));
        goto out;
    }
    n = read_all(fd, buf, sizeof(buf));
    if (n < 0) {
        r = (int)n;
        errbuf_set(err, errlen, "%s: %s", path,
                   r == -EFBIG ? "larger than a key file can be" : strerror(-r));
        goto out;
    }
    r = keys_parse_for(buf, (size_t)n, need, k, err, errlen);
out:
    explicit_bzero(buf, sizeof(buf));
    close(fd);
    return r;
}

int keys_random(char *out, size_t len)
{
    static const char alphabet[] = KEYS_ALPHABET;
    uint8_t pool[KEYS_RAND_BATCH];
    size_t n = 0;
    int r = 0;

    while (n < len) {
        r = rnd_fill(pool, sizeof(pool));
        if (r != 0)
            break;
        for (size_t i = 0; i < sizeof(pool) && n < len; i++) {
            if (pool[i] < KEYS_RAND_LIMIT)
                out[n++] = alphabet[pool[i] % KEYS_ALPHABET_LEN];
        }
    }
    explicit_bzero(pool, sizeof(pool));
    return r;
}

int keys_generate_text(char *out, size_t cap)
{
    char server[KEY_LEN], client[KEY_LEN];
    int r;

    do {
        r = keys_random(server, sizeof(server));
        if (r == 0)
            r = keys_random(client, sizeof(client));
    } while (r == 0 && memcmp(server, client, KEY_LEN) == 0);
    if (r == 0) {
        int n = snprintf(out, cap, KEYS_HEADER "%s %.*s\n%s %.*s\n", KEYS_SERVER_WORD, KEY_LEN,
                         server, KEYS_CLIENT_WORD, KEY_LEN, client);
        r = (n < 0 || (size_t)n >= cap) ? -ENOSPC : n;
        if (r < 0 && cap > 0)
            explicit_bzero(out, cap);
    }
    explicit_bzero(server, sizeof(server));
    explicit_bzero(client, sizeof(client));
    return r;
}

static int write_all(int fd, const char *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t w = write(fd, buf + done, len - done);
        if (w == -1 && errno == EINTR)
            continue;
        if (w == -1)
            return -errno;
        done += (size_t)w;
    }
    return 0;
}

int keys_create_file(const char *path)
{
    char text[KEYS_FILE_MAX];
    int n = keys_generate_text(text, sizeof(text));
    int r;

    if (n < 0)
        return n;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, KEYS_FILE_MODE);
    if (fd == -1) {
        r = -errno;
        goto out;
    }
    /* The umask may have taken bits off; 0600 exactly is what keys_load wants. */
    r = fchmod(fd, KEYS_FILE_MODE) == -1 ? -errno : 0;
    if (r == 0)
        r = write_all(fd, text, (size_t)n);
    if (r == 0 && fsync(fd) == -1)
        r = -errno;
    if (close(fd) == -1 && r == 0)
        r = -errno;
    if (r != 0)
        unlink(path);
out:
    explicit_bzero(text, sizeof(text));
    return r;
}

enum key_role keys_role(const struct keys *k, const char *key, size_t len)
{
    /* Both comparisons always run, so timing does not tell which key matched. */
    int s = ct_equal(k->server, k->server_len, key, len) & (k->server_len != 0);
    int c = ct_equal(k->client, k->client_len, key, len) & (k->client_len != 0);

    if (s)
        return KEY_SERVER;
    return c ? KEY_CLIENT : KEY_NONE;
}

int ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    const volatile unsigned char *pa = a;
    const volatile unsigned char *pb = b;
    size_t n = alen > blen ? alen : blen;
    unsigned char diff = 0;

    /* Index tests depend on the lengths only; every byte up to max is read
     * from the longer side and XORed with the other side or zero. */
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < alen ? pa[i] : 0;
        unsigned char y = i < blen ? pb[i] : 0;
        diff |= (unsigned char)(x ^ y);
    }
    return (diff == 0) & (alen == blen);
}

void keys_wipe(struct keys *k)
{
    explicit_bzero(k, sizeof(*k));
}
