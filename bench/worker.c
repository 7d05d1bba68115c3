/* One rapi-bench worker thread: an edge-triggered epoll loop that plays every
 * part of the workload it was given: WebRoute clients, the WebSocket listener
 * (one per thread, on its own path, so the notifications for a thread's
 * clients come back to that thread), dial-backs, and the backend server side
 * for --direct and --tcp-proxy (accepted on per-thread SO_REUSEPORT sockets).
 *
 * Connection memory never moves: tunnel slots are one array, server-side
 * connections come from chunks of a pool. A connection closed while a batch
 * of events is being handled is only recycled after the batch, so a stale
 * event in the same batch sees CS_FREE and is ignored. */
#include "bench/bench.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "auth/keys.h"
#include "proto/http1.h"
#include "proto/json.h"
#include "proto/webroute.h"
#include "proto/ws.h"
#include "proto/wsread.h"
#include "tls/tls_ctx.h"

#define CONN_BUF 512          /* response head, or echo data in flight */
#define LAT_RING 32           /* messages in flight per tunnel at a rate */
#define LBUF_SIZE (64 * 1024) /* listener WebSocket input */
#define LMSG_MAX (64 * 1024)  /* largest message taken from the relay */
#define ORIGIN_MAX (ADDR_STR_MAX + 16)
#define SCRATCH_SIZE (256 * 1024) /* heads we send, bytes we discard */
#define EV_BATCH 256
#define POOL_CHUNK 1024
#define HEAD_MAX_HEADERS 16
#define SCAN_NS 200000000ull     /* handshake timeout scan period */
#define RETRY_NS 10000000ull     /* pause before reopening a failed tunnel */
#define IDLE_WAIT_NS 50000000ull /* longest epoll wait: stop flag latency */
#define ID_HEX 16
#define IO_BUDGET 16 /* bulk reads or writes per connection per loop pass */
/* Source ports we pick ourselves (own_ports): below the kernel's ephemeral
 * range (32768-60999 by default), so that our thousands of sockets and their
 * TIME_WAIT entries never lengthen the port search of a proxy's own
 * outbound connect() (HAProxy's upstream connections). */
#define PORT_LO 2000
#define PORT_HI 32000
#define PORT_TRIES 64

enum ckind { CK_CLIENT, CK_SERVER, CK_LISTENER, CK_ACCEPT };

/* Connection states:
 *   CS_FREE       no socket (slot idle, pool entry free or stale event)
 *   CS_CONNECTING non-blocking connect in progress, waiting for EPOLLOUT
 *   CS_TLS        --tls: TLS handshake with the relay in progress
 *   CS_HEAD       request head sent, waiting for the relay's answer
 *   CS_OPEN       data phase: the workload runs */
enum cstate { CS_FREE, CS_CONNECTING, CS_TLS, CS_HEAD, CS_OPEN };

struct bconn {
    int fd;
    uint8_t kind;
    uint8_t state;
    uint8_t rblocked; /* echo: stopped reading, buffer full */
    uint8_t again;    /* EPOLLIN/EPOLLOUT work left over by a spent budget */
    uint16_t blen, boff;
    uint32_t slot; /* client: tunnel slot */
    uint64_t idn;  /* counter part of the WebRoute-ID */
    uint64_t t0;   /* connect time */
    size_t hlast;  /* head parser last_len */
    struct bconn *next_free;
    struct bconn *next_again;
    struct tls_conn *tc; /* --tls: the session on fd (relay connections) */
    char buf[CONN_BUF];
};

struct tunnel {
    struct bconn c;
    uint64_t due;            /* next send (latency at a rate) or earliest reopen */
    uint64_t ring[LAT_RING]; /* send times of messages in flight */
    uint32_t sent, answered; /* messages */
    uint32_t rcvd;           /* bytes of the current message/echo received */
    uint8_t active;          /* has (or is opening) a connection */
    uint8_t ready;           /* counted in stats.ready */
};

struct worker {
    unsigned id;
    const struct bench_cfg *cfg;
    struct run_ctl *ctl;
    pthread_t th;
    int ep;
    struct wstats st;
    struct tunnel *t;
    unsigned nt;
    unsigned *idle; /* stack of inactive slots */
    unsigned nidle;
    unsigned opening;
    struct bconn **chunks;
    unsigned nchunks;
    struct bconn *free;
    struct bconn *limbo; /* closed during this batch */
    struct bconn *again; /* connections with leftover work (see io_budget) */
    struct bconn lis;
    struct bconn acc;
    int lis_ready;
    uint8_t *lbuf; /* listener WebSocket input, as received */
    uint8_t *lmsg; /* its messages, reassembled */
    struct wsread lrd;
    char *scratch;
    char path[BENCH_PATH_MAX];
    char prefix[BENCH_ID_PREFIX_LEN + 1];
    char ws_key[WS_KEY_LEN + 1];
    uint64_t idn_next;
    uint64_t interval;
    uint64_t last_scan;
    unsigned srcn;
    unsigned port_next;
    struct tls_session *sess; /* --tls: resumed by this thread's next handshakes */
};

/* Same bytes for every bulk write, echo probe and latency message. */
static char bulk[1 << 20];

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void ctl_fail(struct run_ctl *ctl, const char *fmt, ...)
{
    pthread_mutex_lock(&ctl->lock);
    if (!atomic_load(&ctl->fatal)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctl->fatal_msg, sizeof(ctl->fatal_msg), fmt, ap);
        va_end(ap);
        atomic_store(&ctl->fatal, 1);
    }
    pthread_mutex_unlock(&ctl->lock);
    atomic_store(&ctl->stop, 1);
}

/* Only the owning worker writes its counters: no locked instruction needed. */
static void st_add(_Atomic uint64_t *v, uint64_t n)
{
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static void st_sub(_Atomic uint64_t *v, uint64_t n)
{
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) - n,
                          memory_order_relaxed);
}

static int stopping(const struct worker *w)
{
    return atomic_load_explicit(&w->ctl->stop, memory_order_relaxed);
}

/* Edge-triggered sockets are read or written until EAGAIN, but a peer that
 * keeps up (another thread) may never let that happen: after IO_BUDGET calls
 * the connection goes on the `again` list and continues on the next loop
 * pass, so one busy direction cannot starve the others. */
static void io_again(struct worker *w, struct bconn *c, uint8_t what)
{
    if (!c->again) {
        c->next_again = w->again;
        w->again = c;
    }
    c->again |= what;
}

static int measuring(const struct worker *w)
{
    return atomic_load_explicit(&w->ctl->measuring, memory_order_relaxed);
}

static void make_id(const struct worker *w, uint64_t idn, char *out, size_t cap)
{
    snprintf(out, cap, "%s%016" PRIx64, w->prefix, idn); /* ID_HEX digits */
}

/* ------------------------------------------------------------ pool */

static struct bconn *pool_get(struct worker *w)
{
    if (!w->free) {
        struct bconn *chunk = calloc(POOL_CHUNK, sizeof(*chunk));
        struct bconn **nc = realloc(w->chunks, (w->nchunks + 1) * sizeof(*nc));
        if (!chunk || !nc) {
            free(chunk);
            if (nc)
                w->chunks = nc;
            return NULL;
        }
        w->chunks = nc;
        w->chunks[w->nchunks++] = chunk;
        for (unsigned i = 0; i < POOL_CHUNK; i++) {
            chunk[i].fd = -1;
            chunk[i].next_free = w->free;
            w->free = &chunk[i];
        }
    }
    struct bconn *c = w->free;
    w->free = c->next_free;
    c->next_free = NULL;
    c->fd = -1;
    c->state = CS_FREE;
    c->blen = c->boff = 0;
    c->rblocked = 0;
    c->hlast = 0;
    return c;
}

static void conn_close(struct worker *w, struct bconn *c)
{
    if (c->state == CS_FREE)
        return;
    tls_conn_free(c->tc);
    c->tc = NULL;
    close(c->fd);
    c->fd = -1;
    c->state = CS_FREE;
    if (c->kind == CK_SERVER) {
        c->next_free = w->limbo;
        w->limbo = c;
    }
}

/* ------------------------------------------------------------ errors */

static void note_err(struct worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_err(struct worker *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->st.lasterr, sizeof(w->st.lasterr), fmt, ap);
    va_end(ap);
    st_add(&w->st.errors, 1);
}

/* A tunnel's client connection ended: free the slot for a new tunnel. */
static void tunnel_end(struct worker *w, struct tunnel *t, uint64_t reopen_at)
{
    struct bconn *c = &t->c;
    if (c->state == CS_CONNECTING || c->state == CS_HEAD)
        w->opening--;
    conn_close(w, c);
    if (t->ready) {
        t->ready = 0;
        st_sub(&w->st.ready, 1);
    }
    t->active = 0;
    t->due = reopen_at;
    w->idle[w->nidle++] = (unsigned)(t - w->t);
}

static void client_fail(struct worker *w, struct tunnel *t, const char *what)
{
    if (!stopping(w)) {
        if (t->ready && w->cfg->mode != BM_SETUP)
            st_add(&w->st.lost, 1);
        else
            note_err(w, "%s", what);
    }
    tunnel_end(w, t, now_ns() + RETRY_NS);
}

static void conn_fail(struct worker *w, struct bconn *c, const char *what)
{
    if (c->kind == CK_CLIENT) {
        client_fail(w, &w->t[c->slot], what);
        return;
    }
    if (c->kind == CK_LISTENER) {
        if (!stopping(w))
            ctl_fail(w->ctl, "listener: %s", what);
        conn_close(w, c);
        return;
    }
    /* server side: a failed dial-back is an error; an ending data stream is not */
    if (c->state != CS_OPEN && !stopping(w))
        note_err(w, "dial-back: %s", what);
    conn_close(w, c);
}

/* ------------------------------------------------------------ sockets */

static int new_socket(const struct bench_cfg *cfg)
{
    int fd = socket(cfg->dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd != -1)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int own_ports(const struct bench_cfg *cfg)
{
    const struct sockaddr_in *in = (const struct sockaddr_in *)&cfg->dst;
    return !cfg->kernel_ports && cfg->nsrc <= 1 && cfg->dst.ss_family == AF_INET &&
           ntohl(in->sin_addr.s_addr) == INADDR_LOOPBACK;
}

/* Connect from 127.0.0.1 with a source port of our own choosing, round-robin
 * over this thread's slice of PORT_LO..PORT_HI. With thousands of connections
 * from one address to one destination, the kernel's choice scans the port
 * range and its TIME_WAIT entries in every connect() (__inet_hash_connect),
 * which made the load, not the target, the bottleneck. A port that is taken
 * (EADDRINUSE at bind, EADDRNOTAVAIL at connect) is skipped. */
static int connect_own_port(struct worker *w, int *pfd)
{
    const struct bench_cfg *cfg = w->cfg;
    unsigned span = (PORT_HI - PORT_LO + 1) / cfg->threads;
    int one = 1;
    for (int i = 0; i < PORT_TRIES; i++) {
        int fd = new_socket(cfg);
        if (fd == -1)
            return -errno;
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        src.sin_port = htons((uint16_t)(PORT_LO + w->id * span + w->port_next++ % span));
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) == 0 &&
            (connect(fd, (const struct sockaddr *)&cfg->dst, cfg->dst_len) == 0 ||
             errno == EINPROGRESS)) {
            *pfd = fd;
            return 0;
        }
        int err = errno;
        close(fd);
        if (err != EADDRINUSE && err != EADDRNOTAVAIL)
            return -err;
    }
    return -EADDRNOTAVAIL;
}

static int connect_kernel_port(struct worker *w, int *pfd)
{
    const struct bench_cfg *cfg = w->cfg;
    int one = 1;
    int fd = new_socket(cfg);
    if (fd == -1)
        return -errno;
    if (cfg->nsrc > 1 && cfg->dst.ss_family == AF_INET) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000001u + (w->srcn++ % cfg->nsrc));
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) == -1)
            goto fail;
    }
    if (connect(fd, (const struct sockaddr *)&cfg->dst, cfg->dst_len) == -1 && errno != EINPROGRESS)
        goto fail;
    *pfd = fd;
    return 0;
fail:;
    int err = -errno;
    close(fd);
    return err;
}

static int conn_connect(struct worker *w, struct bconn *c)
{
    int fd = -1;
    int r = own_ports(w->cfg) ? connect_own_port(w, &fd) : connect_kernel_port(w, &fd);
    if (r < 0)
        return r;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
        r = -errno;
        close(fd);
        return r;
    }
    c->fd = fd;
    c->state = CS_CONNECTING;
    c->t0 = now_ns();
    c->blen = c->boff = 0;
    c->hlast = 0;
    c->rblocked = 0;
    return 0;
}

/* send(2)/recv(2) on c, through its TLS session when it has one (errno
 * set the same way; a TLS write that returns EAGAIN is retried with the
 * same bytes, which every caller here does). */
static ssize_t bc_send(struct bconn *c, const void *buf, size_t len)
{
    unsigned want;
    ssize_t n;

    if (c->tc == NULL)
        return send(c->fd, buf, len, MSG_NOSIGNAL);
    n = tls_conn_write(c->tc, buf, len < TLS_WRITE_MAX ? len : TLS_WRITE_MAX, &want);
    if (n >= 0)
        return n;
    errno = (int)-n;
    return -1;
}

static ssize_t bc_recv(struct bconn *c, void *buf, size_t len, int flags)
{
    unsigned want;
    ssize_t n;

    if (c->tc == NULL)
        return recv(c->fd, buf, len, flags);
    n = tls_conn_read(c->tc, buf, len, &want);
    if (n >= 0)
        return n;
    errno = (int)-n;
    return -1;
}

/* Send all of buf (small heads and messages: a partial write is an error). */
static int send_all(struct bconn *c, const void *buf, size_t len)
{
    ssize_t n = bc_send(c, buf, len);
    if (n == (ssize_t)len)
        return 0;
    return n == -1 ? -errno : -EAGAIN;
}

/* Registrations carry an Origin (http://<Host>): the original PHP relay
 * refuses a WebSocket upgrade without one. */
static int send_head(struct worker *w, struct bconn *c)
{
    const struct bench_cfg *cfg = w->cfg;
    char id[BENCH_ID_PREFIX_LEN + ID_HEX + 1], origin[ORIGIN_MAX];
    struct wr_head h = {.path = w->path, .host = cfg->host, .ws_key = w->ws_key, .id = id};
    int n;

    h.key = c->kind == CK_CLIENT ? cfg->client_key : cfg->server_key;
    h.key_len = c->kind == CK_CLIENT ? cfg->client_key_len : cfg->server_key_len;
    if (c->kind == CK_LISTENER) {
        snprintf(origin, sizeof(origin), "http://%s", cfg->host);
        h.origin = origin;
        n = wr_build_ws_request(w->scratch, SCRATCH_SIZE, &h);
    } else {
        make_id(w, c->idn, id, sizeof(id));
        n = wr_build_wr_request(w->scratch, SCRATCH_SIZE, &h);
    }
    if (n < 0)
        return n;
    int r = send_all(c, w->scratch, (size_t)n);
    explicit_bzero(w->scratch, (size_t)n);
    if (r < 0)
        return r;
    c->state = CS_HEAD;
    return 0;
}

/* ------------------------------------------------------------ data phase */

/* Write bulk bytes until the socket is full (edge-triggered: EPOLLOUT comes
 * again when there is room). */
static void write_bulk(struct worker *w, struct bconn *c)
{
    size_t block = w->cfg->block;
    for (int i = 0; !stopping(w); i++) {
        if (i == IO_BUDGET) {
            io_again(w, c, EPOLLOUT);
            return;
        }
        ssize_t n = bc_send(c, bulk, block);
        if (n > 0)
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_fail(w, c, n == -1 ? strerror(errno) : "short write");
        return;
    }
}

/* Read and drop everything readable: copied out like an application would
 * (cfg->trunc: MSG_TRUNC, TCP drops it without copying, a cheaper load).
 * Returns bytes read, or -1 when the connection ended (already closed). */
static ssize_t sink_read(struct worker *w, struct bconn *c)
{
    ssize_t total = 0;
    int flags = MSG_DONTWAIT | (w->cfg->trunc ? MSG_TRUNC : 0);
    for (int i = 0;; i++) {
        if (i == IO_BUDGET) {
            io_again(w, c, EPOLLIN);
            return total;
        }
        ssize_t n = bc_recv(c, w->scratch, SCRATCH_SIZE, flags);
        if (n > 0) {
            total += n;
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EINTR))
            return total;
        conn_fail(w, c, n == 0 ? "closed by peer" : strerror(errno));
        return -1;
    }
}

static void echo_flush(struct worker *w, struct bconn *c)
{
    while (c->boff < c->blen) {
        ssize_t n = bc_send(c, c->buf + c->boff, c->blen - c->boff);
        if (n > 0) {
            c->boff += (uint16_t)n;
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_fail(w, c, strerror(errno));
        return;
    }
    c->boff = c->blen = 0;
}

/* Echo server side: read what fits in buf, write it back; stop reading while
 * the peer does not take the echo (backpressure), resume on EPOLLOUT. */
static void echo_read(struct worker *w, struct bconn *c)
{
    for (;;) {
        if (c->blen == CONN_BUF) {
            c->rblocked = 1;
            return;
        }
        ssize_t n = bc_recv(c, c->buf + c->blen, CONN_BUF - c->blen, MSG_DONTWAIT);
        if (n > 0) {
            c->blen += (uint16_t)n;
            echo_flush(w, c);
            if (c->state != CS_OPEN)
                return;
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_fail(w, c, n == 0 ? "closed by peer" : strerror(errno));
        return;
    }
}

static void server_event(struct worker *w, struct bconn *c, uint32_t ev)
{
    enum bmode m = w->cfg->mode;
    if (m == BM_SETUP || m == BM_LATENCY || m == BM_ECHO) {
        if (ev & EPOLLOUT) {
            echo_flush(w, c);
            if (c->state == CS_OPEN && c->rblocked && c->blen == 0) {
                c->rblocked = 0;
                ev |= EPOLLIN;
            }
        }
        if (c->state == CS_OPEN && (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
            echo_read(w, c);
        return;
    }
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        ssize_t n = sink_read(w, c);
        if (n < 0)
            return;
        st_add(&w->st.up, (uint64_t)n);
    }
    if (m == BM_THROUGHPUT && (w->cfg->dir & DIR_DOWN) && (ev & EPOLLOUT))
        write_bulk(w, c);
}

/* Server side became open (dial-back answered 101, or backend accepted):
 * bytes past the head are data. */
static void server_open(struct worker *w, struct bconn *c)
{
    c->state = CS_OPEN;
    enum bmode m = w->cfg->mode;
    if (m == BM_SETUP || m == BM_LATENCY || m == BM_ECHO) {
        echo_flush(w, c);
        if (c->state == CS_OPEN)
            echo_read(w, c);
        return;
    }
    if (c->blen) {
        st_add(&w->st.up, c->blen);
        c->blen = 0;
    }
    server_event(w, c, EPOLLIN | EPOLLOUT);
}

/* The round trip is timed from the actual send: messages never wait for
 * earlier answers (up to LAT_RING in flight), so the only lateness left is
 * our own timer wake-up, which is not the target's. */
static void latency_send(struct worker *w, struct tunnel *t)
{
    t->ring[t->sent % LAT_RING] = now_ns();
    t->sent++;
    int r = send_all(&t->c, bulk, w->cfg->size);
    if (r < 0)
        client_fail(w, t, r == -EAGAIN ? "message not sent whole" : strerror(-r));
}

/* Bytes arrived for a setup or latency client. */
static void client_got(struct worker *w, struct tunnel *t, size_t n)
{
    const struct bench_cfg *cfg = w->cfg;
    uint64_t now = now_ns();
    t->rcvd += (uint32_t)n;
    if (cfg->mode == BM_SETUP) {
        if (t->rcvd < cfg->size)
            return;
        if (measuring(w))
            hist_add(&w->st.hist, now - t->c.t0);
        st_add(&w->st.done, 1);
        if (t->c.tc != NULL && w->sess == NULL) /* a proxy's ticket came before the echo */
            w->sess = tls_conn_session(t->c.tc);
        tunnel_end(w, t, now);
        return;
    }
    while (t->rcvd >= cfg->size && t->answered < t->sent) {
        t->rcvd -= cfg->size;
        uint64_t at = t->ring[t->answered % LAT_RING];
        t->answered++;
        if (measuring(w))
            hist_add(&w->st.hist, now - at);
        st_add(&w->st.done, 1);
    }
    if (cfg->rate == 0 && t->answered == t->sent && t->c.state == CS_OPEN)
        latency_send(w, t);
}

static void client_read(struct worker *w, struct tunnel *t)
{
    struct bconn *c = &t->c;
    enum bmode m = w->cfg->mode;
    if (m == BM_THROUGHPUT) {
        ssize_t n = sink_read(w, c);
        if (n > 0)
            st_add(&w->st.down, (uint64_t)n);
        return;
    }
    while (c->state == CS_OPEN) {
        ssize_t n = bc_recv(c, w->scratch, SCRATCH_SIZE, MSG_DONTWAIT);
        if (n > 0) {
            if (m == BM_SETUP || m == BM_LATENCY)
                client_got(w, t, (size_t)n);
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EINTR))
            return;
        client_fail(w, t, n == 0 ? "closed by peer" : strerror(errno));
        return;
    }
}

static void client_event(struct worker *w, struct tunnel *t, uint32_t ev)
{
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        client_read(w, t);
    if (t->c.state == CS_OPEN && (ev & EPOLLOUT) && w->cfg->mode == BM_THROUGHPUT &&
        (w->cfg->dir & DIR_UP))
        write_bulk(w, &t->c);
}

static void client_open(struct worker *w, struct tunnel *t)
{
    const struct bench_cfg *cfg = w->cfg;
    struct bconn *c = &t->c;
    w->opening--;
    c->state = CS_OPEN;
    t->rcvd = 0;
    t->sent = t->answered = 0;
    if (cfg->mode != BM_SETUP) {
        t->ready = 1;
        st_add(&w->st.ready, 1);
    }
    size_t extra = c->blen;
    c->blen = 0;
    switch (cfg->mode) {
    case BM_SETUP: {
        int r = send_all(c, bulk, cfg->size);
        if (r < 0) {
            client_fail(w, t, strerror(-r));
            return;
        }
        break;
    }
    case BM_LATENCY:
        if (cfg->rate == 0)
            latency_send(w, t);
        else
            t->due = now_ns() + w->interval * (t - w->t) / (w->nt ? w->nt : 1);
        break;
    case BM_THROUGHPUT:
        if (cfg->dir & DIR_UP)
            write_bulk(w, c);
        break;
    default:
        break;
    }
    if (extra && c->state == CS_OPEN) {
        if (cfg->mode == BM_THROUGHPUT)
            st_add(&w->st.down, extra);
        else if (cfg->mode == BM_SETUP || cfg->mode == BM_LATENCY)
            client_got(w, t, extra);
    }
    if (c->state == CS_OPEN)
        client_event(w, t, EPOLLIN);
}

/* ------------------------------------------------------------ heads */

static int check_accept(struct worker *w, struct bconn *c, const struct http1_response *res)
{
    char want[WS_ACCEPT_LEN + 1];
    const char *name;
    if (c->kind == CK_LISTENER) {
        name = "Sec-WebSocket-Accept";
        if (ws_accept(w->ws_key, WS_KEY_LEN, want) < 0)
            return -1;
    } else {
        char id[BENCH_ID_PREFIX_LEN + ID_HEX + 1];
        make_id(w, c->idn, id, sizeof(id));
        name = "Sec-WebRoute-Accept";
        if (wr_accept(id, strlen(id), want) < 0)
            return -1;
    }
    const struct http1_header *h = http1_find(res->headers, res->num_headers, name);
    if (!h || h->value_len != WS_ACCEPT_LEN || memcmp(h->value, want, WS_ACCEPT_LEN) != 0)
        return -1;
    return 0;
}

static void head_failed(struct worker *w, struct bconn *c, const struct http1_response *res, int hl)
{
    char code[64] = "";
    char what[BENCH_ERR_MAX];
    if (res)
        json_get_string(c->buf + hl, (size_t)(c->blen - hl), "errorcode", code, sizeof(code));
    if (res)
        snprintf(what, sizeof(what), "HTTP %d %s", res->status, code);
    else
        snprintf(what, sizeof(what), "invalid answer head");
    conn_fail(w, c, what);
}

static void listener_open(struct worker *w)
{
    w->lis.state = CS_OPEN;
    w->lis_ready = 1;
    st_add(&w->st.listening, 1);
    wsread_init(&w->lrd, WSREAD_CLIENT, LMSG_MAX, w->lmsg, LMSG_MAX);
}

static void listener_feed(struct worker *w, uint8_t *p, size_t n);
static void listener_read(struct worker *w);
static void dial_back(struct worker *w, const char *id);

/* Read the answer to our request head; on 101 the connection opens. */
static void head_read(struct worker *w, struct bconn *c)
{
    for (;;) {
        if (c->blen == CONN_BUF) {
            conn_fail(w, c, "answer head too large");
            return;
        }
        ssize_t n = bc_recv(c, c->buf + c->blen, CONN_BUF - c->blen, MSG_DONTWAIT);
        if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
            /* an error answer may be complete before the close */
            conn_fail(w, c, n == 0 ? "closed before answering" : strerror(errno));
            return;
        }
        if (n == -1)
            return;
        c->blen += (uint16_t)n;
        struct http1_header hdrs[HEAD_MAX_HEADERS];
        struct http1_response res;
        int hl = http1_parse_response(c->buf, c->blen, c->hlast, &res, hdrs, HEAD_MAX_HEADERS);
        c->hlast = c->blen;
        if (hl == -2)
            continue;
        if (hl < 0) {
            head_failed(w, c, NULL, 0);
            return;
        }
        if (res.status != 101) {
            head_failed(w, c, &res, hl);
            return;
        }
        if (check_accept(w, c, &res) < 0) {
            conn_fail(w, c, "101 with a wrong accept value");
            return;
        }
        if (c->tc != NULL && w->sess == NULL) /* its ticket came before the 101 */
            w->sess = tls_conn_session(c->tc);
        c->blen -= (uint16_t)hl;
        memmove(c->buf, c->buf + hl, c->blen);
        if (c->kind == CK_LISTENER) {
            listener_open(w);
            /* frames the relay sent right behind its 101 */
            listener_feed(w, (uint8_t *)c->buf + c->boff, (size_t)(c->blen - c->boff));
            c->blen = c->boff = 0;
            if (w->lis.state == CS_OPEN)
                listener_read(w);
        } else if (c->kind == CK_CLIENT) {
            client_open(w, &w->t[c->slot]);
        } else {
            server_open(w, c);
        }
        return;
    }
}

/* ------------------------------------------------------------ listener */

static void listener_pong(struct worker *w, const uint8_t *payload, size_t len)
{
    uint8_t frame[WS_MAX_HEADER + WS_MAX_CONTROL];
    uint8_t mask[4];
    size_t n = 0;

    if (ws_mask_new(mask) == 0)
        n = ws_build_frame(frame, sizeof(frame), WS_OP_PONG, true, payload, len, mask);
    if (n == 0 || send_all(&w->lis, frame, n) < 0)
        conn_fail(w, &w->lis, "pong not sent");
}

/* Bytes from the relay on the listener's WebSocket, in any pieces. */
static void listener_feed(struct worker *w, uint8_t *p, size_t n)
{
    while (n > 0 && w->lis.state == CS_OPEN) {
        struct wsread_ev ev;
        size_t used = wsread_feed(&w->lrd, p, n, &ev);
        struct notify nt = {0};

        p += used;
        n -= used;
        switch (ev.type) {
        case WSREAD_MESSAGE:
            if (ev.opcode != WS_OP_TEXT)
                break;
            if (notify_parse((const char *)ev.data, ev.len, &nt) == 0)
                dial_back(w, nt.id);
            else
                note_err(w, "unreadable notification");
            break;
        case WSREAD_PING:
            listener_pong(w, ev.data, ev.len);
            break;
        case WSREAD_CLOSE:
            conn_fail(w, &w->lis, "the relay closed the listener");
            return;
        case WSREAD_ERROR:
            conn_fail(w, &w->lis, "invalid WebSocket frame from the relay");
            return;
        default:
            break;
        }
    }
}

static void listener_read(struct worker *w)
{
    for (;;) {
        ssize_t n = bc_recv(&w->lis, w->lbuf, LBUF_SIZE, MSG_DONTWAIT);
        if (n > 0) {
            listener_feed(w, w->lbuf, (size_t)n);
            if (w->lis.state != CS_OPEN)
                return;
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_fail(w, &w->lis, n == 0 ? "closed by the relay" : strerror(errno));
        return;
    }
}

static void dial_back(struct worker *w, const char *id)
{
    size_t len = strlen(id);
    char *end;
    if (len != BENCH_ID_PREFIX_LEN + ID_HEX || memcmp(id, w->prefix, BENCH_ID_PREFIX_LEN) != 0) {
        note_err(w, "notification for an ID we did not send");
        return;
    }
    uint64_t idn = strtoull(id + BENCH_ID_PREFIX_LEN, &end, 16);
    struct bconn *c = pool_get(w);
    if (!c) {
        note_err(w, "out of memory");
        return;
    }
    c->kind = CK_SERVER;
    c->idn = idn;
    int r = conn_connect(w, c);
    if (r < 0) {
        note_err(w, "dial-back connect: %s", strerror(-r));
        c->next_free = w->limbo;
        w->limbo = c;
    }
}

/* ------------------------------------------------------------ tunnels */

static void tunnel_open(struct worker *w, struct tunnel *t)
{
    struct bconn *c = &t->c;
    c->kind = CK_CLIENT;
    c->slot = (uint32_t)(t - w->t);
    c->idn = w->idn_next++;
    int r = conn_connect(w, c);
    if (r < 0) {
        note_err(w, "connect: %s", strerror(-r));
        t->due = now_ns() + RETRY_NS;
        w->idle[w->nidle++] = c->slot;
        return;
    }
    t->active = 1;
    w->opening++;
}

/* Open tunnels on idle slots, at most cfg->inflight handshakes at a time. */
static void open_more(struct worker *w, uint64_t now)
{
    if ((w->cfg->kind == TK_RELAY && !w->lis_ready) || !atomic_load(&w->ctl->go))
        return;
    while (w->nidle && w->opening < w->cfg->inflight && !stopping(w)) {
        struct tunnel *t = &w->t[w->idle[w->nidle - 1]];
        if (t->due > now)
            return;
        w->nidle--;
        tunnel_open(w, t);
    }
}

static void scan_timeouts(struct worker *w, uint64_t now)
{
    uint64_t lim = w->cfg->timeout_ns;
    for (unsigned i = 0; i < w->nt; i++) {
        struct bconn *c = &w->t[i].c;
        if ((c->state == CS_CONNECTING || c->state == CS_HEAD) && now - c->t0 > lim)
            client_fail(w, &w->t[i], "handshake timeout");
    }
    for (unsigned k = 0; k < w->nchunks; k++)
        for (unsigned i = 0; i < POOL_CHUNK; i++) {
            struct bconn *c = &w->chunks[k][i];
            if ((c->state == CS_CONNECTING || c->state == CS_HEAD) && now - c->t0 > lim)
                conn_fail(w, c, "handshake timeout");
        }
    if (w->cfg->kind == TK_RELAY && !w->lis_ready && now - w->lis.t0 > lim)
        ctl_fail(w->ctl, "listener: no answer from the relay");
}

/* Latency at a fixed rate: send every message that is due. Returns the time
 * of the next one. */
static uint64_t send_due(struct worker *w, uint64_t now)
{
    uint64_t next = now + IDLE_WAIT_NS;
    for (unsigned i = 0; i < w->nt; i++) {
        struct tunnel *t = &w->t[i];
        if (!t->ready)
            continue;
        while (t->due <= now && t->c.state == CS_OPEN) {
            if (t->sent - t->answered < LAT_RING)
                latency_send(w, t);
            else
                st_add(&w->st.late, 1);
            t->due += w->interval;
        }
        if (t->ready && t->due < next)
            next = t->due;
    }
    return next;
}

/* ------------------------------------------------------------ loop */

static int tls_accept(struct worker *w, struct bconn *c);

static void do_accept(struct worker *w)
{
    for (;;) {
        int fd = accept4(w->acc.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                note_err(w, "accept: %s", strerror(errno));
            return;
        }
        struct bconn *c = pool_get(w);
        if (!c) {
            close(fd);
            note_err(w, "out of memory");
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = c};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
            close(fd);
            c->next_free = w->limbo;
            w->limbo = c;
            continue;
        }
        c->kind = CK_SERVER;
        c->fd = fd;
        c->t0 = now_ns();
        if (w->cfg->tls_srv != NULL)
            (void)tls_accept(w, c);
        else
            server_open(w, c);
    }
}

static int head_start(struct worker *w, struct bconn *c)
{
    int r = send_head(w, c);

    if (r < 0)
        conn_fail(w, c, strerror(-r));
    return r;
}

static int tls_step(struct worker *w, struct bconn *c);

/* --tls: a session on the connected socket (resuming this thread's last
 * one), then the handshake; the request head follows it. */
static int tls_start(struct worker *w, struct bconn *c)
{
    if (tls_conn_client(w->cfg->tls, c->fd, w->cfg->tls_host, &c->tc) < 0) {
        conn_fail(w, c, "out of memory");
        return -1;
    }
    if (w->sess && !w->cfg->tls_no_resume)
        (void)tls_conn_resume(c->tc, w->sess);
    c->state = CS_TLS;
    return tls_step(w, c);
}

/* --tls-cert: the server side of an accepted backend connection. */
static int tls_accept(struct worker *w, struct bconn *c)
{
    if (tls_conn_server(w->cfg->tls_srv, c->fd, &c->tc) < 0) {
        conn_fail(w, c, "out of memory");
        return -1;
    }
    c->state = CS_TLS;
    return tls_step(w, c);
}

static int tls_step(struct worker *w, struct bconn *c)
{
    unsigned want;
    int rc = tls_conn_handshake(c->tc, &want);

    if (rc == -EAGAIN)
        return 0;
    if (rc < 0) {
        conn_fail(w, c, rc == -EPROTO ? tls_conn_reason(c->tc) : strerror(-rc));
        return -1;
    }
    if (w->cfg->kind != TK_RELAY) { /* no head: straight to the workload */
        if (c->kind == CK_CLIENT)
            client_open(w, &w->t[c->slot]);
        else
            server_open(w, c);
        return 0;
    }
    c->state = CS_CONNECTING; /* for send_head's caller: the head goes out now */
    return head_start(w, c);
}

static void on_event(struct worker *w, struct bconn *c, uint32_t ev)
{
    if (c->kind == CK_ACCEPT) {
        do_accept(w);
        return;
    }
    if (c->state == CS_FREE)
        return;
    if (c->state == CS_CONNECTING) {
        if (ev & (EPOLLERR | EPOLLHUP)) {
            int err = 0;
            socklen_t len = sizeof(err);
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            conn_fail(w, c, err ? strerror(err) : "connect failed");
            return;
        }
        if (!(ev & EPOLLOUT))
            return;
        if (c->kind == CK_CLIENT && w->cfg->kind != TK_RELAY && w->cfg->tls == NULL) {
            client_open(w, &w->t[c->slot]);
            return;
        }
        if (w->cfg->tls != NULL && tls_start(w, c) < 0)
            return;
        if (c->state == CS_CONNECTING && head_start(w, c) < 0)
            return;
        ev |= EPOLLIN;
    }
    if (c->state == CS_TLS) {
        if (tls_step(w, c) < 0 || c->state == CS_TLS)
            return;
        ev |= EPOLLIN;
    }
    if (c->state == CS_HEAD) {
        if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            head_read(w, c);
        return;
    }
    if (c->kind == CK_LISTENER)
        listener_read(w);
    else if (c->kind == CK_CLIENT)
        client_event(w, &w->t[c->slot], ev);
    else
        server_event(w, c, ev);
}

/* Continue what spent budgets left over. A connection closed since it was
 * queued is CS_FREE (pool entries are recycled only after this). */
static void run_again(struct worker *w)
{
    struct bconn *c = w->again;
    w->again = NULL;
    while (c) {
        struct bconn *next = c->next_again;
        uint8_t what = c->again;
        c->again = 0;
        if (c->state == CS_OPEN)
            on_event(w, c, what);
        c = next;
    }
}

static void release_limbo(struct worker *w)
{
    while (w->limbo) {
        struct bconn *c = w->limbo;
        w->limbo = c->next_free;
        c->next_free = w->free;
        w->free = c;
    }
}

static int wait_events(struct worker *w, struct epoll_event *evs, uint64_t until)
{
    uint64_t now = now_ns();
    uint64_t d = until > now ? until - now : 0;
    if (d > IDLE_WAIT_NS)
        d = IDLE_WAIT_NS;
    struct timespec ts = {.tv_sec = (time_t)(d / 1000000000ull),
                          .tv_nsec = (long)(d % 1000000000ull)};
    return epoll_pwait2(w->ep, evs, EV_BATCH, &ts, NULL);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const struct bench_cfg *cfg = w->cfg;
    struct epoll_event evs[EV_BATCH];
    uint64_t next_due = 0;

    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL); /* fixed-rate sends on time */

    while (!stopping(w)) {
        uint64_t now = now_ns();
        open_more(w, now);
        int n = wait_events(w, evs, w->again ? now : cfg->rate > 0 ? next_due : now + IDLE_WAIT_NS);
        if (n == -1 && errno != EINTR) {
            ctl_fail(w->ctl, "epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++)
            on_event(w, evs[i].data.ptr, evs[i].events);
        run_again(w);
        release_limbo(w);
        now = now_ns();
        if (cfg->mode == BM_LATENCY && cfg->rate > 0)
            next_due = send_due(w, now);
        if (now - w->last_scan > SCAN_NS) {
            w->last_scan = now;
            scan_timeouts(w, now);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ life cycle */

static int worker_setup(struct worker *w)
{
    const struct bench_cfg *cfg = w->cfg;
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (w->ep == -1)
        return -errno;
    hist_reset(&w->st.hist);
    w->nt = cfg->tunnels / cfg->threads + (w->id < cfg->tunnels % cfg->threads ? 1 : 0);
    w->t = calloc(w->nt ? w->nt : 1, sizeof(*w->t));
    w->idle = calloc(w->nt ? w->nt : 1, sizeof(*w->idle));
    w->scratch = malloc(SCRATCH_SIZE);
    w->lbuf = malloc(LBUF_SIZE);
    w->lmsg = malloc(LMSG_MAX);
    if (!w->t || !w->idle || !w->scratch || !w->lbuf || !w->lmsg)
        return -ENOMEM;
    for (unsigned i = 0; i < w->nt; i++) {
        w->t[i].c.fd = -1;
        w->idle[w->nidle++] = w->nt - 1 - i;
    }
    if (cfg->rate > 0)
        w->interval = (uint64_t)(1e9 * (double)cfg->tunnels / cfg->rate);
    w->lis.fd = w->acc.fd = -1;
    if (cfg->backend_fds) {
        w->acc.kind = CK_ACCEPT;
        w->acc.fd = cfg->backend_fds[w->id];
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &w->acc};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->acc.fd, &ev) == -1)
            return -errno;
    }
    if (cfg->kind != TK_RELAY)
        return 0;
    int r = keys_random(w->prefix, BENCH_ID_PREFIX_LEN);
    if (r < 0)
        return r;
    w->prefix[BENCH_ID_PREFIX_LEN] = 0;
    if ((r = ws_key_new(w->ws_key)) < 0)
        return r;
    snprintf(w->path, sizeof(w->path), "%s/%d-%u-%u/", cfg->path_prefix, (int)getpid(), cfg->run_id,
             w->id);
    w->lis.kind = CK_LISTENER;
    return conn_connect(w, &w->lis);
}

struct worker *worker_start(unsigned id, const struct bench_cfg *cfg, struct run_ctl *ctl)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->id = id;
    w->cfg = cfg;
    w->ctl = ctl;
    w->ep = -1;
    int r = worker_setup(w);
    if (r < 0) {
        fprintf(stderr, "rapi-bench: worker %u: %s\n", id, strerror(-r));
        worker_free(w);
        return NULL;
    }
    if ((r = pthread_create(&w->th, NULL, worker_main, w)) != 0) {
        fprintf(stderr, "rapi-bench: thread: %s\n", strerror(r));
        worker_free(w);
        return NULL;
    }
    return w;
}

void worker_join(struct worker *w)
{
    pthread_join(w->th, NULL);
}

struct wstats *worker_stats(struct worker *w)
{
    return &w->st;
}

static void conn_drop(struct bconn *c)
{
    tls_conn_free(c->tc);
    c->tc = NULL;
    if (c->state != CS_FREE)
        close(c->fd);
}

void worker_free(struct worker *w)
{
    if (!w)
        return;
    for (unsigned i = 0; i < w->nt; i++)
        conn_drop(&w->t[i].c);
    for (unsigned k = 0; k < w->nchunks; k++) {
        for (unsigned i = 0; i < POOL_CHUNK; i++)
            conn_drop(&w->chunks[k][i]);
        free(w->chunks[k]);
    }
    conn_drop(&w->lis);
    tls_session_free(w->sess);
    if (w->ep != -1)
        close(w->ep);
    free(w->chunks);
    free(w->t);
    free(w->idle);
    free(w->scratch);
    free(w->lbuf);
    free(w->lmsg);
    free(w);
}
