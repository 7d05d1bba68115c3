/* The relay's two secrets: key files, key generation, constant-time checks.
 * No globals; thread-safe for distinct objects. struct keys holds secrets:
 * callers wipe it with keys_wipe() and never log it. */
#ifndef RAPI_AUTH_KEYS_H
#define RAPI_AUTH_KEYS_H

#include <stddef.h>

#include "proto/webroute.h" /* enum key_role */

#define KEY_LEN 64         /* generated keys: 64 chars of [A-Za-z0-9] */
#define KEY_MIN_LEN 16     /* shortest key a key file may hold */
#define KEY_MAX_LEN 256    /* longest */
#define KEYS_FILE_MAX 8192 /* keys_load refuses (-EFBIG) a larger file */

struct keys {
    char server[KEY_MAX_LEN + 1];
    size_t server_len;
    char client[KEY_MAX_LEN + 1];
    size_t client_len;
};

/* Parse key-file text: lines "server_key <key>" and "client_key <key>",
 * '#' comments and blank lines allowed, both keys required, each at most
 * once, KEY_MIN_LEN..KEY_MAX_LEN chars of 0x21..0x7e, and the two different.
 * Returns 0, or -EINVAL with a message in err naming the line (never the key
 * itself). Lines end in LF or CRLF; spaces/tabs around words are ignored; the
 * key is the rest of the line and may not contain blanks. On failure k is
 * wiped. err may be NULL (errlen 0); on success it is "". */
int keys_parse(const char *text, size_t len, struct keys *k, char *err, size_t errlen);

/* Read and parse a key file. Refuses (-EPERM, message in err) a file that is
 * readable or writable by group or others, or that is not a regular file.
 * Returns 0 or -errno (-EFBIG over KEYS_FILE_MAX bytes, -EINVAL from
 * keys_parse, open's errno). The file is opened O_NONBLOCK so a FIFO cannot
 * block; the read buffer is wiped. */
int keys_load(const char *path, struct keys *k, char *err, size_t errlen);

/* Fill out[0..len) with random chars of [A-Za-z0-9] from getrandom(), no
 * modulo bias. No NUL is written. Returns 0 or -errno. */
int keys_random(char *out, size_t len);

/* Format a new key file (two fresh KEY_LEN keys, a comment header) into out,
 * NUL-terminated. Returns its length or -errno (-ENOSPC: cap too small, out
 * then wiped). keys_parse accepts the result. */
int keys_generate_text(char *out, size_t cap);

/* Create path with O_EXCL and mode 0600 holding a new key file.
 * Returns 0 or -errno (-EEXIST when it exists). */
int keys_create_file(const char *path);

/* Role of a presented key, comparing against both keys in constant time
 * (the time depends only on the presented length). An empty stored key never
 * matches (a zeroed struct keys accepts nothing). */
enum key_role keys_role(const struct keys *k, const char *key, size_t len);

/* Constant-time equality of two buffers; the time depends on max(alen,blen)
 * only. 1 when equal. */
int ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Overwrite the secrets (explicit_bzero). */
void keys_wipe(struct keys *k);

#endif
