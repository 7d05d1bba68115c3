/* Internals shared by tls_ctx.c (contexts), tls_conn.c (connections) and
 * tls_ticket.c (ticket keys). Not for use outside tls/. */
#ifndef RAPI_TLS_TLS_INT_H
#define RAPI_TLS_TLS_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "tls/aead_accel.h"
#include "tls/tls_ctx.h"

struct tls_server {
    atomic_int refs;
    size_t n_pairs;
    WOLFSSL_CTX *ctx[TLS_MAX_PAIRS];   /* one per pair, configured alike */
    WOLFSSL_X509 *leaf[TLS_MAX_PAIRS]; /* for SNI matching */
};

struct tls_client {
    atomic_int refs;
    WOLFSSL_CTX *ctx;
};

/* wolfSSL reads a record in two recv() calls (5-byte header, then body):
 * reading ahead this much serves a 16 KiB record and the next header from
 * one call. The buffer lives only while it holds bytes. */
#define TLS_RX_AHEAD (32 << 10)

struct tls_conn {
    WOLFSSL *ssl;
    int fd;
    int io_errno; /* errno of the last failed send/recv, 0 if none */
    enum tls_err err;
    bool peer_eof; /* the socket reached EOF */
    bool truncated;
    unsigned char *rx; /* read-ahead: socket bytes wolfSSL has not taken yet */
    size_t rx_off, rx_len;
    int pair; /* server: the SNI-chosen pair */
    struct tls_server *srv;
    struct tls_client *cli;
    struct aead_keycache keys; /* this connection's expanded AES-GCM keys */
    char reason[TLS_REASON_MAX];
};

/* wolfSSL_Init() once per process; 0 or -EIO. */
int tls_global_init(void);

/* Have this thread's wolfSSL caches freed when it exits (cheap after the
 * first call on a thread). */
void tls_thread_mark(void);

/* The ticket-key callback for wolfSSL_CTX_set_TicketEncCb(). */
int tls_ticket_cb(WOLFSSL *ssl, unsigned char name[WOLFSSL_TICKET_NAME_SZ],
                  unsigned char iv[WOLFSSL_TICKET_IV_SZ], unsigned char mac[WOLFSSL_TICKET_MAC_SZ],
                  int enc, unsigned char *ticket, int in_len, int *out_len, void *arg);

/* The socket callbacks (MSG_NOSIGNAL, errno kept in the tls_conn). */
int tls_io_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx);
int tls_io_send(WOLFSSL *ssl, char *buf, int sz, void *ctx);

/* The SNI callback of a server's default context. */
int tls_sni_cb(WOLFSSL *ssl, int *alert, void *arg);

#endif
