/* The operator's endpoint (/healthz, /metrics). Acceptor thread; reads the
 * shards' counters with relaxed atomic loads. */
#ifndef RAPI_ENGINE_ADMIN_H
#define RAPI_ENGINE_ADMIN_H

#include <stddef.h>

struct relay;

/* The answer to a request for path: a whole HTTP response in out. Returns
 * its length, or -1 when cap is too small. */
int admin_answer(struct relay *r, const char *method, size_t method_len, const char *path,
                 size_t path_len, char *out, size_t cap);

#endif
