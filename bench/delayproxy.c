/* rapi-delayproxy: a TCP proxy that holds every byte for a fixed delay in
 * each direction, for latency measurements where netem is not available
 * (bench/PARK.md). One thread per connection pair, a FIFO of stamped chunks
 * per direction: byte order is kept, a FIN is forwarded (delayed like the
 * bytes before it), an error or reset closes the pair. Bounded: at most
 * DP_QUEUE_MAX bytes held per direction (reading stops until they go) and
 * DP_PAIRS_MAX pairs at once.
 *
 *   rapi-delayproxy LISTEN_PORT TARGET_HOST:PORT DELAY_MS
 *
 * Listens on 127.0.0.1:LISTEN_PORT (0: any free port) and prints
 * "listening 127.0.0.1:PORT" on stdout once it does. Not part of the relay;
 * loopback only. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DP_CHUNK (64 * 1024)           /* bytes read at once */
#define DP_QUEUE_MAX (4 * 1024 * 1024) /* bytes held per direction */
#define DP_PAIRS_MAX 1024              /* pairs at once; more are refused */
#define DP_DELAY_MAX_MS 10000

struct chunk {
    struct chunk *next;
    uint64_t due; /* ns, CLOCK_MONOTONIC */
    size_t len, off;
    bool eof; /* a FIN to forward, no bytes */
    char data[];
};

struct dir {
    int from, to;
    struct chunk *head, *tail;
    size_t held;
    bool rd_eof, shut;
};

struct pair {
    struct dir d[2];
    uint64_t delay_ns;
};

static const char *target_host, *target_port;
static uint64_t delay_ns;
static atomic_int npairs;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int connect_target(void)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int fd = -1, one = 1;

    if (getaddrinfo(target_host, target_port, &hints, &ai) != 0)
        return -1;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        close(fd);
        fd = -1;
    }
    if (fd >= 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    freeaddrinfo(ai);
    return fd;
}

/* Queue what one read brings (or the FIN). 0, or -1 on an error. */
static int dir_read(struct dir *d, uint64_t delay)
{
    struct chunk *c = malloc(sizeof(*c) + DP_CHUNK);
    ssize_t n;

    if (!c)
        return -1;
    n = recv(d->from, c->data, DP_CHUNK, MSG_DONTWAIT);
    if (n < 0) {
        free(c);
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    }
    c->next = NULL;
    c->due = now_ns() + delay;
    c->len = (size_t)n;
    c->off = 0;
    c->eof = n == 0;
    d->rd_eof = n == 0;
    d->held += (size_t)n;
    if (d->tail)
        d->tail->next = c;
    else
        d->head = c;
    d->tail = c;
    return 0;
}

/* Send the chunks that are due. 0, or -1 on an error. */
static int dir_flush(struct dir *d, uint64_t now)
{
    struct chunk *c;

    while ((c = d->head) && c->due <= now) {
        if (c->eof) {
            shutdown(d->to, SHUT_WR);
            d->shut = true;
        }
        while (c->off < c->len) {
            ssize_t n = send(d->to, c->data + c->off, c->len - c->off, MSG_DONTWAIT | MSG_NOSIGNAL);

            if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -1;
            c->off += (size_t)n;
            d->held -= (size_t)n;
        }
        d->head = c->next;
        if (!d->head)
            d->tail = NULL;
        free(c);
    }
    return 0;
}

static void dir_free(struct dir *d)
{
    while (d->head) {
        struct chunk *c = d->head;

        d->head = c->next;
        free(c);
    }
}

/* How long poll may sleep: until the earliest due chunk (-1: none). */
static int wait_timeout(const struct pair *p, uint64_t now, struct timespec *ts)
{
    uint64_t next = UINT64_MAX;

    for (int i = 0; i < 2; i++)
        if (p->d[i].head && p->d[i].head->due < next)
            next = p->d[i].head->due;
    if (next == UINT64_MAX)
        return -1;
    next = next > now ? next - now : 0;
    ts->tv_sec = (time_t)(next / 1000000000u);
    ts->tv_nsec = (long)(next % 1000000000u);
    return 0;
}

static int pair_turn(struct pair *p)
{
    struct pollfd pf[2];
    struct timespec ts;
    uint64_t now = now_ns();

    for (int i = 0; i < 2; i++) {
        if (dir_flush(&p->d[i], now) < 0)
            return -1;
        pf[i].fd = p->d[i].from;
        pf[i].events = 0;
        pf[i].revents = 0;
    }
    if (p->d[0].shut && p->d[1].shut)
        return 1;
    for (int i = 0; i < 2; i++) {
        const struct dir *d = &p->d[i];

        if (!d->rd_eof && d->held < DP_QUEUE_MAX)
            pf[i].events |= POLLIN;
        /* Output blocked with a due chunk: wait for room on d->to. */
        if (d->head && d->head->due <= now)
            pf[!i].events |= POLLOUT;
    }
    for (int i = 0; i < 2; i++)
        if (pf[i].events == 0)
            pf[i].fd = -1; /* nothing wanted: no POLLHUP spinning either */
    if (ppoll(pf, 2, wait_timeout(p, now, &ts) < 0 ? NULL : &ts, NULL) < 0)
        return errno == EINTR ? 0 : -1;
    for (int i = 0; i < 2; i++)
        if ((pf[i].revents & (POLLIN | POLLHUP | POLLERR)) && (pf[i].events & POLLIN) &&
            dir_read(&p->d[i], p->delay_ns) < 0)
            return -1;
    return 0;
}

static void *pair_run(void *arg)
{
    struct pair *p = arg;
    int r;

    while ((r = pair_turn(p)) == 0)
        ;
    if (r < 0) { /* an error on one side: reset both */
        struct linger lg = {1, 0};

        (void)setsockopt(p->d[0].from, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        (void)setsockopt(p->d[1].from, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(p->d[0].from);
    close(p->d[1].from);
    dir_free(&p->d[0]);
    dir_free(&p->d[1]);
    free(p);
    atomic_fetch_sub(&npairs, 1);
    return NULL;
}

static void pair_start(int cfd)
{
    struct pair *p;
    pthread_t t;
    int tfd, one = 1;

    if (atomic_fetch_add(&npairs, 1) >= DP_PAIRS_MAX || (tfd = connect_target()) < 0) {
        atomic_fetch_sub(&npairs, 1);
        close(cfd);
        return;
    }
    (void)setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    p = calloc(1, sizeof(*p));
    if (!p)
        goto fail;
    p->delay_ns = delay_ns;
    p->d[0] = (struct dir){.from = cfd, .to = tfd};
    p->d[1] = (struct dir){.from = tfd, .to = cfd};
    if (pthread_create(&t, NULL, pair_run, p) != 0)
        goto fail;
    pthread_detach(t);
    return;
fail:
    free(p);
    close(cfd);
    close(tfd);
    atomic_fetch_sub(&npairs, 1);
}

static int listen_on(const char *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    long p = strtol(port, NULL, 10);

    if (fd < 0 || p < 0 || p > 65535)
        return -1;
    sa.sin_port = htons((uint16_t)p);
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        close(fd);
        return -1;
    }
    printf("listening 127.0.0.1:%u\n", ntohs(sa.sin_port));
    fflush(stdout);
    return fd;
}

int main(int argc, char **argv)
{
    static char host[256];
    char *colon;
    long ms;
    int lfd;

    if (argc != 4 || !(colon = strrchr(argv[2], ':')) ||
        (size_t)(colon - argv[2]) >= sizeof(host)) {
        fprintf(stderr, "usage: rapi-delayproxy LISTEN_PORT TARGET_HOST:PORT DELAY_MS\n");
        return 2;
    }
    memcpy(host, argv[2], (size_t)(colon - argv[2]));
    target_host = host;
    target_port = colon + 1;
    ms = strtol(argv[3], NULL, 10);
    if (ms < 0 || ms > DP_DELAY_MAX_MS) {
        fprintf(stderr, "rapi-delayproxy: DELAY_MS: 0 to %d\n", DP_DELAY_MAX_MS);
        return 2;
    }
    delay_ns = (uint64_t)ms * 1000000u;
    signal(SIGPIPE, SIG_IGN);
    lfd = listen_on(argv[1]);
    if (lfd < 0) {
        perror("rapi-delayproxy: listen");
        return 1;
    }
    for (;;) {
        int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

        if (cfd >= 0)
            pair_start(cfd);
        else if (errno != EINTR && errno != ECONNABORTED)
            usleep(10000);
    }
}
