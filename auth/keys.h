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

/* Which keys a reader needs: the relay needs both; a server (rapi expose,
 * the bench's listener side) needs the server key, a client the client key. */
enum keys_need {
    KEYS_NEED_SERVER = 1,
    KEYS_NEED_CLIENT = 2,
    KEYS_NEED_BOTH = 3,
};

/* The key-file rules, the same for rapi-server, librapi/rapi and rapi-bench:
 * - Text: lines "server_key <key>" and "client_key <key>", '#' comments and
 *   blank lines; lines end in LF or CRLF; spaces/tabs around words are
 *   ignored; the key is the rest of the line and may not contain blanks.
 *   Each word at most once. Any other line is an error, except that a file
 *   of exactly one bare key (one word on one line, no server_key/client_key
 *   line) serves a reader that needs one key (not KEYS_NEED_BOTH).
 * - Every key present, needed or not: KEY_MIN_LEN..KEY_MAX_LEN characters
 *   of 0x21..0x7e (keys_check); when both are present they differ.
 * - The needed keys must be there (-ENOENT otherwise).
 * - The file (keys_load_for): a regular file not readable or writable by
 *   group or others (mode & 0066 == 0, -EPERM otherwise), at most
 *   KEYS_FILE_MAX bytes (-EFBIG). Its owner is not checked (the daemon never
 *   did: a root-started relay may read a service account's file); the mode
 *   check is what keeps a key from other users.
 * Errors: 0, or -EINVAL (syntax, length, characters, equal keys), -ENOENT
 * (a needed key missing), with a message in err naming the line or file,
 * never key text. On failure k is wiped. err may be NULL (errlen 0); on
 * success it is "". */
int keys_parse_for(const char *text, size_t len, enum keys_need need, struct keys *k, char *err,
                   size_t errlen);

/* The daemon's form: keys_parse_for(..., KEYS_NEED_BOTH, ...). */
int keys_parse(const char *text, size_t len, struct keys *k, char *err, size_t errlen);

/* Read and parse a key file with the rules above. Returns 0 or -errno
 * (-EPERM: group/other access or not a regular file; -EFBIG; open's errno;
 * keys_parse_for's). Opened O_NONBLOCK so a FIFO cannot block; the read
 * buffer is wiped. */
int keys_load_for(const char *path, enum keys_need need, struct keys *k, char *err, size_t errlen);

/* The daemon's form: keys_load_for(path, KEYS_NEED_BOTH, ...). */
int keys_load(const char *path, struct keys *k, char *err, size_t errlen);

/* The key rule alone, for keys that come from the environment or a URL:
 * 0 when key[0..len) is KEY_MIN_LEN..KEY_MAX_LEN chars of 0x21..0x7e,
 * else -EINVAL. */
int keys_check(const char *key, size_t len);

/* Copy one key (need is KEYS_NEED_SERVER or KEYS_NEED_CLIENT) into out with
 * a NUL. Returns its length, -ENOENT when k does not hold it, -ENOSPC when
 * cap is too small (out then wiped), -EINVAL for another need. */
int keys_copy(const struct keys *k, enum keys_need need, char *out, size_t cap);

/* Which of the keys held are shorter than the KEY_LEN keys keygen makes
 * (KEYS_NEED_SERVER | KEYS_NEED_CLIENT bits, 0 when none): the relay warns
 * at start, an operator-chosen key being easier to guess. */
unsigned keys_short(const struct keys *k);

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
