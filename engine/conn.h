/* Ending accepted connections: a plain close, or an error answer then a
 * close. Any thread, on a connection that thread owns; each call takes the
 * connection over and leaves c->fd closed. */
#ifndef RAPI_ENGINE_CONN_H
#define RAPI_ENGINE_CONN_H

#include <stdbool.h>

#include "engine/xprt.h"

struct relay;
struct wr_error;

/* Close an accepted connection (reset: as a reset) and drop it from the
 * relay's connection count. */
void conn_close(struct relay *r, struct xconn *c, bool reset);

/* Upgrade: our copy of a plain connection handed to the new process (its
 * watch already gone): close the fd only (no shutdown, no reset, no
 * close_notify) and drop it from the count. */
void conn_handed_over(struct relay *r, struct xconn *c);

/* Close a counted socket that has no transport yet (an adopted fd that
 * could not be used). */
void conn_close_fd(struct relay *r, int fd);

/* Answer an error (a JSON error answer, docs/PROTOCOL.md), then close: shut down
 * our side, discard what the peer already sent so that the close does not
 * turn into a reset that could destroy the answer, close. */
void conn_reject(struct relay *r, struct xconn *c, int status, const char *errorcode,
                 const char *message);
void conn_reject_err(struct relay *r, struct xconn *c, const struct wr_error *e);

#endif
