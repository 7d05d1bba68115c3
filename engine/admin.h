/* The operator's endpoint (/healthz, /metrics). Acceptor thread; reads the
 * shards' counters with relaxed atomic loads. */
#ifndef RAPI_ENGINE_ADMIN_H
#define RAPI_ENGINE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#define ADMIN_TOKEN_MIN 16  /* shortest bearer token accepted */
#define ADMIN_TOKEN_MAX 256 /* buffer for a token, NUL included */

struct http1_request;
struct relay;

/* Read the bearer token from path: a regular file that group and others can
 * neither read nor write (0600), holding one line of ADMIN_TOKEN_MIN or more
 * printable characters without spaces. Sets tok (NUL-terminated) and *len.
 * 0, or -errno with a message in err that never holds the token. */
int admin_token_load(const char *path, char *tok, size_t cap, size_t *len, char *err,
                     size_t errlen);

/* Whether req carries "Authorization: Bearer <tok>" (constant-time compare). */
bool admin_authorized(const struct http1_request *req, const char *tok, size_t len);

/* The 401 answer (WWW-Authenticate: Bearer) in out; length or -1. */
int admin_unauthorized(char *out, size_t cap);

/* The answer to a request for path: a whole HTTP response in out. Returns
 * its length, or -1 when cap is too small. */
int admin_answer(struct relay *r, const char *method, size_t method_len, const char *path,
                 size_t path_len, char *out, size_t cap);

#endif
