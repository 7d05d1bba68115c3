/* rapi-floor: a MEASURING DEVICE, NOT A RELAY. It speaks just enough of the
 * rapi protocol (docs/PROTOCOL.md) for `rapi-bench setup --relay` to make
 * tunnels through it, with the least user-space work a relay could do: one
 * thread, one epoll, whole request heads assumed in one read, fields found
 * with memmem (header names in rapi-bench's exact spelling), keys compared
 * with memcmp, no error answers (anything unexpected is closed), no limits
 * but the fixed tables, no timeouts, no TLS, IPv4 listen address only. Its
 * CPU per tunnel is the kernel's floor for a design that accepts two TCP
 * connections per tunnel (bench/FLOOR.md). Never use it for real traffic.
 *
 *   rapi-floor -k KEYFILE -l 127.0.0.1:PORT [--lazy-read] [--defer-accept SECS]
 *              [--extra-frame] [--self-echo]
 *
 * --lazy-read: an accepted socket is watched first and read on its first
 * event (the relay reads right after accept4). --defer-accept: the listening
 * socket gets TCP_DEFER_ACCEPT. --extra-frame: each notification is followed
 * by a binary frame of the same size in a send of its own, which the
 * listener ignores (P-WS-4): the price of one notification write.
 * --self-echo: a client gets its 101 at once and the floor echoes its bytes
 * itself (no notification, no dial-back): half a tunnel, one accepted
 * connection, the least a relay could do if the dial-back were gone.
 * Prints "listening ADDR" on stdout, its counters on stderr at SIGTERM or
 * SIGINT. Single-threaded; owns every fd. */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/keys.h"
#include "net/anet.h"
#include "proto/addr.h"
#include "proto/webroute.h"
#include "proto/ws.h"

#define FL_FD_MAX (1 << 20)    /* table size cap (one entry per fd) */
#define FL_HEAD_MAX 4096       /* a request head must come whole in one read */
#define FL_SCRATCH (16 * 1024) /* copy chunk */
#define FL_LIS_MAX 64          /* registered listeners */
#define FL_WAIT_BUCKETS 4096   /* waiting clients, chained by fd */
#define FL_EV_BATCH 256
#define FL_BACKLOG 4096
#define FL_TIMEOUT_S 60 /* the notification's timeout field */
#define FL_DEFER_MAX 3600
#define FL_OUT_MAX 640  /* a 101 or a notification frame */
#define FL_WS_FIN 0x80  /* frame header: final fragment */
#define FL_WS_LEN7 125  /* largest 7-bit payload length */
#define FL_WS_LEN16 126 /* length code: a 16-bit length follows */

enum fstate {
    FS_FREE,    /* no socket */
    FS_HEAD,    /* accepted, head not read yet */
    FS_LISTEN,  /* a registered listener: input discarded */
    FS_WAITING, /* a client waiting for its dial-back */
    FS_LINKED,  /* one end of a linked pair */
};

struct fconn {
    uint8_t state;
    bool saw_input; /* waiting: input arrived (read it once linked) */
    bool rd_done;   /* linked: its input ended (FIN read) */
    uint32_t gen;   /* bumped on close: stale events are ignored */
    int peer;       /* linked: the other end */
    int next_wait;  /* waiting: bucket chain */
    uint32_t hash;  /* waiting: hash of the ID */
    uint16_t lis;   /* waiting: listener slot (path) */
    uint16_t id_len;
    struct sockaddr_in peer_addr;
    char id[WEBROUTE_ID_MAX];
};

struct flis {
    int fd; /* -1: free */
    size_t path_len;
    char path[WEBROUTE_PATH_MAX];
};

struct fstats {
    unsigned long long accepted, linked, notified, bad_head, no_route, aborted;
    unsigned long long head_again; /* a head read that found nothing yet */
    unsigned long long waits;      /* epoll_wait calls that returned events */
};

struct floor {
    int ep, lfd;
    int nfd;
    bool lazy;
    bool extra_frame;
    bool self_echo;
    struct fconn *c;
    struct flis lis[FL_LIS_MAX];
    int wait[FL_WAIT_BUCKETS];
    struct keys keys;
    struct fstats st;
    char scratch[FL_SCRATCH];
    char head[FL_HEAD_MAX];
};

/* What a head asks for, pointing into the head buffer. */
struct freq {
    const char *path, *key, *id, *ws_key;
    size_t path_len, key_len, id_len, ws_key_len;
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static const char ws_101[] = "HTTP/1.1 101 Switching Protocols\r\n"
                             "Upgrade: websocket\r\n"
                             "Connection: Upgrade\r\n"
                             "Sec-WebSocket-Accept: ";
static const char wr_101[] = "HTTP/1.1 101 Switching Protocols\r\n"
                             "Upgrade: webroute\r\n"
                             "Connection: Upgrade\r\n"
                             "Sec-WebRoute-Accept: ";
static const char crlf2[] = "\r\n\r\n";

/* ------------------------------------------------------------ fds */

static uint64_t ev_token(const struct floor *f, int fd)
{
    return (uint64_t)f->c[fd].gen << 32 | (uint32_t)fd;
}

static void fd_close(struct floor *f, int fd)
{
    struct fconn *c = &f->c[fd];
    c->state = FS_FREE;
    c->gen++;
    close(fd);
}

static int watch(struct floor *f, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.u64 = ev_token(f, fd)};
    return epoll_ctl(f->ep, EPOLL_CTL_ADD, fd, &ev);
}

static bool send_whole(int fd, const void *p, size_t n)
{
    return send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)n;
}

/* ------------------------------------------------------------ waiting clients */

static uint32_t id_hash(const char *id, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)id[i]) * 16777619u;
    return h;
}

static void wait_add(struct floor *f, int fd)
{
    struct fconn *c = &f->c[fd];
    int *b = &f->wait[c->hash % FL_WAIT_BUCKETS];
    c->next_wait = *b;
    *b = fd;
}

static void wait_del(struct floor *f, int fd)
{
    int *p = &f->wait[f->c[fd].hash % FL_WAIT_BUCKETS];
    while (*p != -1 && *p != fd)
        p = &f->c[*p].next_wait;
    if (*p == fd)
        *p = f->c[fd].next_wait;
}

/* The waiting client with this path's listener slot and ID, or -1. */
static int wait_find(const struct floor *f, const struct freq *q)
{
    uint32_t h = id_hash(q->id, q->id_len);
    for (int fd = f->wait[h % FL_WAIT_BUCKETS]; fd != -1; fd = f->c[fd].next_wait) {
        const struct fconn *c = &f->c[fd];
        const struct flis *l = &f->lis[c->lis];
        if (c->hash == h && c->id_len == q->id_len && memcmp(c->id, q->id, q->id_len) == 0 &&
            l->path_len == q->path_len && memcmp(l->path, q->path, q->path_len) == 0)
            return fd;
    }
    return -1;
}

/* ------------------------------------------------------------ heads */

/* The value of header `name` (given with its CRLF and ": "), or NULL. */
static const char *field(const char *h, size_t n, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    const char *v = memmem(h, n, name, nl);
    if (v == NULL)
        return NULL;
    v += nl;
    const char *e = memchr(v, '\r', (size_t)(h + n - v));
    if (e == NULL)
        return NULL;
    *len = (size_t)(e - v);
    return v;
}

static bool id_ok(const char *id, size_t len)
{
    if (len == 0 || len > WEBROUTE_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (id[i] < 0x21 || id[i] > 0x7e || id[i] == '"' || id[i] == '\\')
            return false; /* no JSON escaping here */
    return true;
}

/* Split a head of n bytes (ending in CRLF CRLF) into q. 0 or -1. */
static int head_split(const char *h, size_t n, struct freq *q)
{
    static const char get[] = "GET /";
    memset(q, 0, sizeof(*q));
    if (n < sizeof(get) || memcmp(h, get, sizeof(get) - 1) != 0)
        return -1;
    q->path = h + 4;
    const char *e = memchr(q->path, ' ', n - 4);
    if (e == NULL)
        return -1;
    const char *qm = memchr(q->path, '?', (size_t)(e - q->path));
    q->path_len = (size_t)((qm ? qm : e) - q->path);
    q->key = field(h, n, "\r\nX-Remoted-APIKey: ", &q->key_len);
    q->ws_key = field(h, n, "\r\nSec-WebSocket-Key: ", &q->ws_key_len);
    if (q->ws_key == NULL)
        q->id = field(h, n, "\r\nWebRoute-ID: ", &q->id_len);
    if (q->key == NULL || q->path_len > WEBROUTE_PATH_MAX ||
        (q->ws_key == NULL && (q->id == NULL || !id_ok(q->id, q->id_len))))
        return -1;
    return 0;
}

static bool key_is(const char *k, size_t len, const char *want, size_t want_len)
{
    return len == want_len && memcmp(k, want, len) == 0;
}

/* ------------------------------------------------------------ requests */

static int on_register(struct floor *f, int fd, const struct freq *q)
{
    char out[FL_OUT_MAX], acc[WS_ACCEPT_LEN + 1];
    int slot = -1;
    for (int i = 0; i < FL_LIS_MAX; i++) {
        struct flis *l = &f->lis[i];
        if (l->fd != -1 && l->path_len == q->path_len && memcmp(l->path, q->path, q->path_len) == 0)
            slot = i; /* newest wins: a stale listener of the same path */
        else if (l->fd == -1 && slot == -1)
            slot = i;
    }
    if (slot == -1 || ws_accept(q->ws_key, q->ws_key_len, acc) < 0)
        return -1;
    size_t n = sizeof(ws_101) - 1;
    memcpy(out, ws_101, n);
    memcpy(out + n, acc, WS_ACCEPT_LEN);
    memcpy(out + n + WS_ACCEPT_LEN, crlf2, sizeof(crlf2) - 1);
    if (!send_whole(fd, out, n + WS_ACCEPT_LEN + sizeof(crlf2) - 1))
        return -1;
    struct flis *l = &f->lis[slot];
    l->fd = fd;
    l->path_len = q->path_len;
    memcpy(l->path, q->path, q->path_len);
    f->c[fd].state = FS_LISTEN;
    f->c[fd].lis = (uint16_t)slot;
    return 0;
}

/* Decimal digits of v at p; returns the end. */
static char *put_u(char *p, unsigned v)
{
    char t[10];
    int n = 0;
    do
        t[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (n > 0)
        *p++ = t[--n];
    return p;
}

/* The notification frame (P-WS-1): unmasked text, 7- or 16-bit length. */
static size_t notification(const struct fconn *c, char *out)
{
    static const char a[] = "{\"ipaddr\":\"", b[] = "\",\"id\":\"", z[] = "\",\"timeout\":";
    uint32_t ip = ntohl(c->peer_addr.sin_addr.s_addr);
    char *p = out + 4; /* room for the longest header */
    char *s = p;
    memcpy(p, a, sizeof(a) - 1);
    p += sizeof(a) - 1;
    for (int i = 3; i >= 0; i--) {
        p = put_u(p, (ip >> (8 * i)) & 0xffu);
        *p++ = i ? '.' : ':';
    }
    p = put_u(p, ntohs(c->peer_addr.sin_port));
    memcpy(p, b, sizeof(b) - 1);
    p += sizeof(b) - 1;
    memcpy(p, c->id, c->id_len);
    p += c->id_len;
    memcpy(p, z, sizeof(z) - 1);
    p = put_u(p + sizeof(z) - 1, FL_TIMEOUT_S);
    *p++ = '}';
    size_t len = (size_t)(p - s);
    size_t hl = len <= FL_WS_LEN7 ? 2 : 4;
    char *h = s - hl;
    h[0] = (char)(FL_WS_FIN | WS_OP_TEXT);
    if (hl == 2) {
        h[1] = (char)len;
    } else {
        h[1] = FL_WS_LEN16;
        h[2] = (char)(len >> 8);
        h[3] = (char)(len & 0xffu);
    }
    memmove(out, h, hl + len);
    return hl + len;
}

static int link_reply(struct floor *f, int fd, int cfd, const struct freq *q);

static int on_client(struct floor *f, int fd, const struct freq *q)
{
    char out[FL_OUT_MAX];
    int slot = -1;
    for (int i = 0; i < FL_LIS_MAX && slot == -1; i++)
        if (f->lis[i].fd != -1 && f->lis[i].path_len == q->path_len &&
            memcmp(f->lis[i].path, q->path, q->path_len) == 0)
            slot = i;
    if (slot == -1) {
        f->st.no_route++;
        return -1;
    }
    if (f->self_echo)
        return link_reply(f, fd, fd, q);
    struct fconn *c = &f->c[fd];
    c->lis = (uint16_t)slot;
    c->id_len = (uint16_t)q->id_len;
    memcpy(c->id, q->id, q->id_len);
    c->hash = id_hash(q->id, q->id_len);
    c->saw_input = false;
    size_t n = notification(c, out);
    if (!send_whole(f->lis[slot].fd, out, n))
        return -1;
    if (f->extra_frame) {
        out[0] = (char)(FL_WS_FIN | WS_OP_BINARY); /* the same payload, binary */
        (void)send_whole(f->lis[slot].fd, out, n);
    }
    c->state = FS_WAITING;
    wait_add(f, fd);
    f->st.notified++;
    return 0;
}

static void pump(struct floor *f, int src, uint32_t ev);

/* Link the dial-back fd to the waiting client cfd (cfd == fd: --self-echo)
 * and send both the 101. On failure cfd is closed (fd is the caller's). */
static int link_reply(struct floor *f, int fd, int cfd, const struct freq *q)
{
    char out[FL_OUT_MAX], acc[WEBROUTE_ACCEPT_LEN + 1];
    struct fconn *s = &f->c[fd], *c = &f->c[cfd];
    size_t n = sizeof(wr_101) - 1;
    if (wr_accept(q->id, q->id_len, acc) < 0)
        goto fail;
    memcpy(out, wr_101, n);
    memcpy(out + n, acc, WEBROUTE_ACCEPT_LEN);
    n += WEBROUTE_ACCEPT_LEN;
    memcpy(out + n, crlf2, sizeof(crlf2) - 1);
    n += sizeof(crlf2) - 1;
    s->state = c->state = FS_LINKED;
    s->peer = cfd;
    c->peer = fd;
    s->rd_done = c->rd_done = false;
    f->st.linked++;
    if (!send_whole(fd, out, n) || (cfd != fd && !send_whole(cfd, out, n))) {
        f->st.aborted++;
        goto fail;
    }
    if (cfd != fd && c->saw_input)
        pump(f, cfd, EPOLLIN | EPOLLRDHUP);
    return 0;
fail:
    if (cfd != fd)
        fd_close(f, cfd);
    return -1;
}

static int on_dialback(struct floor *f, int fd, const struct freq *q)
{
    int cfd = wait_find(f, q);
    if (cfd == -1) {
        f->st.no_route++;
        return -1;
    }
    wait_del(f, cfd);
    return link_reply(f, fd, cfd, q);
}

/* The head of an accepted socket, in one read. On success the socket is in
 * its next state (watched); on failure it is closed. */
static void head_read(struct floor *f, int fd, bool watched)
{
    struct freq q;
    ssize_t n = recv(fd, f->head, sizeof(f->head), 0);
    if (n == -1 && errno == EAGAIN) {
        f->st.head_again++;
        if (watched || watch(f, fd) == 0)
            return;
        goto fail;
    }
    /* whole heads only, and nothing behind them */
    if (n < 4 || memcmp(f->head + n - 4, crlf2, 4) != 0 || head_split(f->head, (size_t)n, &q) < 0) {
        f->st.bad_head++;
        goto fail;
    }
    if (!watched && watch(f, fd) == -1)
        goto fail;
    int r;
    if (q.ws_key != NULL)
        r = key_is(q.key, q.key_len, f->keys.server, f->keys.server_len) ? on_register(f, fd, &q)
                                                                         : -1;
    else if (key_is(q.key, q.key_len, f->keys.client, f->keys.client_len))
        r = on_client(f, fd, &q);
    else if (key_is(q.key, q.key_len, f->keys.server, f->keys.server_len))
        r = on_dialback(f, fd, &q);
    else
        r = -1;
    if (r == 0)
        return;
fail:
    fd_close(f, fd);
}

/* ------------------------------------------------------------ linked pairs */

static void pair_close(struct floor *f, int a)
{
    int b = f->c[a].peer;
    fd_close(f, a);
    if (b != a) /* --self-echo: its own peer */
        fd_close(f, b);
}

/* Copy what src has to its peer. A short read empties the socket unless a
 * FIN may be queued behind it (RDHUP). A peer that does not take a chunk
 * whole aborts the pair: the floor holds no buffer. */
static void pump(struct floor *f, int src, uint32_t ev)
{
    int dst = f->c[src].peer;
    for (;;) {
        ssize_t n = recv(src, f->scratch, sizeof(f->scratch), 0);
        if (n > 0) {
            if (!send_whole(dst, f->scratch, (size_t)n)) {
                f->st.aborted++;
                pair_close(f, src);
                return;
            }
            if ((size_t)n < sizeof(f->scratch) && !(ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                return;
            continue;
        }
        if ((n == -1 && errno == EAGAIN) || (n == 0 && f->c[src].rd_done))
            return; /* nothing new (a repeated edge after the FIN) */
        if (n == 0 && dst != src && !f->c[dst].rd_done) { /* half-close: forward the FIN */
            f->c[src].rd_done = true;
            shutdown(dst, SHUT_WR);
            return;
        }
        if (n != 0)
            f->st.aborted++;
        pair_close(f, src); /* both ended (close sends the last FIN), or an error */
        return;
    }
}

/* ------------------------------------------------------------ loop */

static void on_accept(struct floor *f)
{
    for (;;) {
        struct sockaddr_in sa;
        socklen_t len = sizeof(sa);
        int fd = accept4(f->lfd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1)
            return; /* EAGAIN, or an error the next event retries */
        if (fd >= f->nfd || len != sizeof(sa)) {
            close(fd);
            continue;
        }
        f->st.accepted++;
        struct fconn *c = &f->c[fd];
        c->state = FS_HEAD;
        c->peer_addr = sa;
        if (f->lazy) {
            if (watch(f, fd) == -1)
                fd_close(f, fd);
        } else {
            head_read(f, fd, false);
        }
    }
}

static void on_listener_input(struct floor *f, int fd)
{
    for (;;) {
        ssize_t n = recv(fd, f->scratch, sizeof(f->scratch), 0);
        if (n > 0)
            continue;
        if (n == -1 && errno == EAGAIN)
            return;
        struct flis *l = &f->lis[f->c[fd].lis];
        if (l->fd == fd)
            l->fd = -1;
        fd_close(f, fd);
        return;
    }
}

static void on_event(struct floor *f, uint64_t tok, uint32_t ev)
{
    int fd = (int)(uint32_t)tok;
    struct fconn *c = &f->c[fd];
    if ((uint32_t)(tok >> 32) != c->gen)
        return; /* closed in this batch */
    switch (c->state) {
    case FS_HEAD:
        head_read(f, fd, true);
        break;
    case FS_LISTEN:
        on_listener_input(f, fd);
        break;
    case FS_WAITING:
        if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
            wait_del(f, fd);
            fd_close(f, fd);
        } else {
            c->saw_input = true;
        }
        break;
    case FS_LINKED:
        pump(f, fd, ev);
        break;
    default:
        break;
    }
}

static int run(struct floor *f)
{
    struct epoll_event evs[FL_EV_BATCH];
    while (!stop_flag) {
        int n = epoll_wait(f->ep, evs, FL_EV_BATCH, -1);
        if (n == -1 && errno != EINTR)
            return -errno;
        f->st.waits += n > 0;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == UINT64_MAX)
                on_accept(f);
            else
                on_event(f, evs[i].data.u64, evs[i].events);
        }
    }
    return 0;
}

/* ------------------------------------------------------------ start */

static int listen_on(struct floor *f, const char *addr, int defer)
{
    struct sockaddr_storage ss;
    socklen_t len;
    char shown[ADDR_STR_MAX];
    if (addr_parse(addr, &ss, &len) < 0 || ss.ss_family != AF_INET)
        return -EINVAL;
    f->lfd = anet_tcp_listen(&ss, &len, FL_BACKLOG, ANET_NONBLOCK | ANET_NODELAY);
    if (f->lfd < 0)
        return f->lfd;
    if (defer > 0 && setsockopt(f->lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof(defer)) == -1)
        return -errno;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
    if (epoll_ctl(f->ep, EPOLL_CTL_ADD, f->lfd, &ev) == -1)
        return -errno;
    if (addr_format((struct sockaddr *)&ss, shown, sizeof(shown)) > 0)
        printf("listening %s\n", shown);
    fflush(stdout);
    return 0;
}

static int floor_init(struct floor *f)
{
    struct rlimit rl;
    f->ep = epoll_create1(EPOLL_CLOEXEC);
    if (f->ep == -1 || getrlimit(RLIMIT_NOFILE, &rl) == -1)
        return -errno;
    f->nfd = rl.rlim_cur > FL_FD_MAX ? FL_FD_MAX : (int)rl.rlim_cur;
    f->c = calloc((size_t)f->nfd, sizeof(*f->c));
    if (f->c == NULL)
        return -ENOMEM;
    for (int i = 0; i < FL_LIS_MAX; i++)
        f->lis[i].fd = -1;
    for (int i = 0; i < FL_WAIT_BUCKETS; i++)
        f->wait[i] = -1;
    return 0;
}

static void usage(void)
{
    fputs("usage: rapi-floor -k KEYFILE -l 127.0.0.1:PORT [--lazy-read] [--defer-accept SECS]\n"
          "                  [--extra-frame] [--self-echo]\n"
          "A measuring device for bench/FLOOR.md, not a relay.\n",
          stderr);
    exit(2);
}

static void report(const struct floor *f)
{
    const struct fstats *s = &f->st;
    fprintf(stderr,
            "rapi-floor: accepted %llu, notified %llu, linked %llu, bad heads %llu, "
            "no route %llu, aborted %llu, empty head reads %llu, wake-ups %llu\n",
            s->accepted, s->notified, s->linked, s->bad_head, s->no_route, s->aborted,
            s->head_again, s->waits);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"lazy-read", no_argument, NULL, 'L'},
                                         {"defer-accept", required_argument, NULL, 'D'},
                                         {"extra-frame", no_argument, NULL, 'X'},
                                         {"self-echo", no_argument, NULL, 'E'},
                                         {NULL, 0, NULL, 0}};
    static struct floor f; /* large: not on the stack */
    const char *keyfile = NULL, *addr = NULL;
    char err[128];
    int defer = 0, o, r;
    while ((o = getopt_long(argc, argv, "k:l:", opts, NULL)) != -1) {
        if (o == 'k')
            keyfile = optarg;
        else if (o == 'l')
            addr = optarg;
        else if (o == 'L')
            f.lazy = true;
        else if (o == 'X')
            f.extra_frame = true;
        else if (o == 'E')
            f.self_echo = true;
        else if (o == 'D' && (defer = atoi(optarg)) > 0 && defer <= FL_DEFER_MAX)
            continue;
        else
            usage();
    }
    if (keyfile == NULL || addr == NULL || optind != argc)
        usage();
    if (keys_load(keyfile, &f.keys, err, sizeof(err)) < 0) {
        fprintf(stderr, "rapi-floor: %s\n", err);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if ((r = floor_init(&f)) < 0 || (r = listen_on(&f, addr, defer)) < 0 || (r = run(&f)) < 0) {
        fprintf(stderr, "rapi-floor: %s\n", strerror(-r));
        keys_wipe(&f.keys);
        return 1;
    }
    report(&f);
    keys_wipe(&f.keys);
    return 0;
}
