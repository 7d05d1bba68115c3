/* Random bytes from the kernel (getrandom), for keys, WebRoute-IDs,
 * Sec-WebSocket-Key nonces and frame masks. No state; any thread. */
#ifndef RAPI_PROTO_RND_H
#define RAPI_PROTO_RND_H

#include <stddef.h>

/* Fill p[0..len) with random bytes, retrying short reads and EINTR.
 * Returns 0 or -errno (p then partly filled). */
int rnd_fill(void *p, size_t len);

#endif
