/* anet: small socket, clock and file helpers shared by the relay, librapi,
 * the rapi CLI and rapi-bench (in the spirit of redis's anet.c).
 * Every function acts only on the caller's fd or buffer and keeps no state:
 * all are thread-safe. Fallible calls return 0 (or an fd / a length) and
 * -errno on failure; nothing here closes an fd it did not open. */
#ifndef RAPI_NET_ANET_H
#define RAPI_NET_ANET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* ---- clocks (CLOCK_MONOTONIC: never jumps, arbitrary epoch) */
uint64_t anet_now_ms(void);
uint64_t anet_now_ns(void);

/* ---- descriptor flags */
/* Set (nonblock true) or clear O_NONBLOCK. */
int anet_set_nonblock(int fd, bool nonblock);
/* Set FD_CLOEXEC (for fds that could not be created with *_CLOEXEC). */
int anet_set_cloexec(int fd);

/* ---- socket options */
/* TCP_NODELAY on: small writes (handshakes, frames) leave at once. */
int anet_tcp_nodelay(int fd);
/* SO_LINGER {1, 0}: the next close() sends an RST instead of a FIN, so an
 * abortive close propagates as one. */
int anet_linger_zero(int fd);
/* TCP_DEFER_ACCEPT on a listening socket: the kernel hands a connection to
 * accept once its first bytes are there (or about secs later); 0 turns it
 * off. */
int anet_defer_accept(int fd, int secs);
/* SO_ERROR of a finished non-blocking connect: 0 connected, -errno failed.
 * Reads 0 while the connect is still in progress (poll for POLLOUT first). */
int anet_sock_error(int fd);

/* ---- sockets */
#define ANET_NONBLOCK 0x1u  /* create the socket non-blocking */
#define ANET_NODELAY 0x2u   /* TCP_NODELAY (inherited by accepted sockets) */
#define ANET_REUSEPORT 0x4u /* SO_REUSEPORT (listen only) */
#define ANET_V6ONLY 0x8u    /* IPV6_V6ONLY on an AF_INET6 listener */

/* A close-on-exec TCP socket of family with the flags above. fd or -errno. */
int anet_tcp_socket(int family, unsigned flags);
/* Start a TCP connect to sa: the fd (connected or, with ANET_NONBLOCK,
 * connecting) or -errno. */
int anet_tcp_connect_start(const struct sockaddr *sa, socklen_t len, unsigned flags);
/* Wait up to timeout_ms for a non-blocking connect on fd to finish: 0,
 * -ETIMEDOUT, or the connect's -errno. */
int anet_connect_wait(int fd, int timeout_ms);
/* A listening TCP socket (SO_REUSEADDR, close-on-exec) bound to *sa; on
 * success sa and len hold the bound address (port 0 resolved).
 * fd or -errno. */
int anet_tcp_listen(struct sockaddr_storage *sa, socklen_t *len, int backlog, unsigned flags);

/* ---- I/O */
/* Blocking: write all n bytes (EINTR retried). 0 or -errno (-EIO on a
 * zero-length write). MSG_NOSIGNAL is not used: callers ignore SIGPIPE. */
int anet_write_all(int fd, const void *p, size_t n);
/* Non-blocking: send buf[*off..len) on a socket, advancing *off. 0 when all
 * sent, -EAGAIN when the socket is full, -errno on failure. */
int anet_send_nb(int fd, const void *buf, size_t len, size_t *off);

/* ---- files */
#define ANET_FILE_MAX (1u << 20) /* the largest file anet_read_file reads */
/* Read a small regular file into buf (NUL-terminated; cap includes the
 * NUL). Opened O_NONBLOCK | O_NOCTTY | O_CLOEXEC, so a FIFO or a device
 * planted at path cannot hang the caller. Returns the length, -EFBIG when
 * it does not fit, -EINVAL when not a regular file, or -errno. When st_mode
 * is not NULL it receives the file's mode. */
int anet_read_file(const char *path, char *buf, size_t cap, unsigned *st_mode);
/* The first unsigned number in a small file (/proc/sys/...): 0 or -errno. */
int anet_read_ulong(const char *path, unsigned long *out);

#endif
