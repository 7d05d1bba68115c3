/* The client's address behind a trusted front end (docs/PROTOCOL.md
 * P-FWD-1..4): the PROXY header phase of a listen socket marked
 * proxy_protocol, and the X-Forwarded-For / Forwarded rule for the request
 * head. The caller (the acceptor thread) decides trust and owns every
 * buffer; nothing here keeps state.
 *
 * The PROXY header comes before any transport (before TLS), so it is read
 * from the socket itself: peeked, then exactly its bytes taken, so that what
 * follows (a TLS ClientHello, a request head) stays in the socket for the
 * next phase. */
#ifndef RAPI_ENGINE_PEERADDR_H
#define RAPI_ENGINE_PEERADDR_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "proto/fwd.h"
#include "proto/http1.h"
#include "proto/proxyproto.h"

/* The longest PROXY header taken (v2: 16 bytes and up to 1008 of addresses
 * and TLVs; HAProxy's send-proxy-v2 sends 28 or 52 without options). */
#define PEERADDR_PROXY_MAX 1024

/* recv(2) as the phase calls it (unit tests pass a fake). */
typedef ssize_t peeraddr_recv_fn(int fd, void *buf, size_t len, int flags);

/* Reads the PROXY header at the start of fd. 1: taken, *out filled
 * (out->local: keep the peer's address); 0: not all there yet, call again
 * when fd is readable (the caller's header deadline bounds the wait);
 * -EPROTO: not a PROXY v1/v2 header, or longer than PEERADDR_PROXY_MAX;
 * -EPIPE: the peer closed first; other -errno from recv. */
int peeraddr_proxy_read(int fd, peeraddr_recv_fn *rcv, struct proxyproto *out);

/* Copy an AF_INET or AF_INET6 address into *out (the rest zeroed). */
void peeraddr_store(struct sockaddr_storage *out, const struct sockaddr *sa);

/* From a trusted peer's head: the client named by X-Forwarded-For, or, when
 * the head has none, by Forwarded's for= (right-most untrusted hop; several
 * lines of one header count as one list, in order). 0 and *out (port 0
 * unless a quoted Forwarded form gave one), or -1: no such header, all
 * hops trusted, or a hop that is not an address (keep the peer). */
int peeraddr_forwarded(const struct http1_request *req, const struct fwd_cidr *l, size_t n,
                       struct sockaddr_storage *out);

#endif
