/* The acceptor's side of a seamless upgrade (docs/DESIGN.md "Seamless
 * upgrade"): in the old process, SIGUSR2 -> start the new one, send the
 * listen sockets, freeze, send the heads, let each shard send its state,
 * END, then drain; in the new one, take the listen sockets, then the heads
 * and the shards' records, then accept. Acceptor thread only. */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/acceptor_int.h"
#include "engine/conn.h"
#include "engine/log.h"
#include "engine/notify.h"
#include "engine/shard.h"
#include "engine/upgrade.h"
#include "net/anet.h"

#define UP_REAP_TRIES 20 /* a child that closed its end: wait this many times */
#define UP_REAP_WAIT_US 5000
#define UP_SMALL_REC 1024 /* the old side only receives HELLO and READY */

/* ------------------------------------------------------------ old side */

/* The child's end, as words for the log ("exited with status 1"). */
static void child_reap(pid_t pid, char *out, size_t cap)
{
    int st = 0;
    pid_t r = 0;

    for (int i = 0; i < UP_REAP_TRIES && (r = waitpid(pid, &st, WNOHANG)) == 0; i++)
        usleep(UP_REAP_WAIT_US);
    if (r == 0) {
        kill(pid, SIGKILL);
        (void)waitpid(pid, &st, 0);
        snprintf(out, cap, "; pid %ld killed", (long)pid);
        return;
    }
    if (r < 0)
        snprintf(out, cap, "; pid %ld: %s", (long)pid, strerror(errno));
    else if (WIFEXITED(st))
        snprintf(out, cap, "; pid %ld exited with status %d", (long)pid, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(out, cap, "; pid %ld killed by signal %d", (long)pid, WTERMSIG(st));
}

static void up_close(struct acceptor *a)
{
    timer_del(a->wheel, &a->up.timer);
    if (a->up.fd >= 0) {
        ev_del(a->loop, a->up.tok);
        close(a->up.fd);
    }
    a->up.tok = 0;
    a->up.fd = -1;
}

static int lsock_watch(struct acceptor *a, struct lsock *ls)
{
    if (ls->fd < 0 || ls->tok)
        return 0;
    return ev_add_listen(a->loop, ls->fd, EV_IN, listen_event, ls, &ls->tok);
}

/* Accept again after a failed freeze (the queue was kept meanwhile). */
static void up_thaw(struct acceptor *a)
{
    for (int i = 0; i < a->nls; i++)
        if (lsock_watch(a, &a->ls[i]) < 0)
            log_error("upgrade: cannot watch a listen socket again");
    if (lsock_watch(a, &a->admin) < 0)
        log_error("upgrade: cannot watch the admin socket again");
    for (int i = 0; i < a->nls; i++)
        listen_event(&a->ls[i], EV_IN); /* what queued while frozen */
    if (a->admin.fd >= 0)
        listen_event(&a->admin, EV_IN);
}

/* The new process failed: the old one goes on as before. */
static void up_fail(struct acceptor *a, const char *why)
{
    char how[96] = "";
    bool frozen = a->up.st == UP_FROZEN;

    up_close(a);
    if (a->up.pid > 0)
        child_reap(a->up.pid, how, sizeof(how));
    log_error("upgrade failed: %s%s", why, how);
    a->up.st = UP_IDLE;
    a->up.pid = 0;
    if (frozen)
        up_thaw(a);
}

static void up_timeout(struct timer *t)
{
    struct acceptor *a = CONTAINER(t, struct acceptor, up.timer);

    up_fail(a, "the new process did not answer in time");
}

static int send_listen(int fd, const struct lsock *ls)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    struct ho_rec r;

    if (getsockname(ls->fd, (struct sockaddr *)&ss, &len) == -1)
        return -errno;
    ho_rec_init(&r, HO_R_LISTEN);
    r.num[HO_LISTEN_ADMIN] = ls->admin;
    r.num[HO_LISTEN_FLAGS] = ls->flags;
    r.str[HO_LISTEN_SA] = (struct ho_str){(const char *)&ss, len};
    return upg_send(fd, &r, &ls->fd, 1);
}

/* HELLO came: every listen socket (and the admin one), then LISTEN_END. */
static int up_send_listens(struct acceptor *a)
{
    int e = 0;

    for (int i = 0; e == 0 && i < a->nls; i++)
        if (a->ls[i].fd >= 0)
            e = send_listen(a->up.fd, &a->ls[i]);
    if (e == 0 && a->admin.fd >= 0)
        e = send_listen(a->up.fd, &a->admin);
    if (e == 0)
        e = upg_send_type(a->up.fd, HO_R_LISTEN_END);
    if (e == 0) {
        a->up.st = UP_READY;
        timer_set(a->wheel, &a->up.timer, *a->now + (uint64_t)a->relay->conf.upgrade_timeout * 1000,
                  up_timeout);
    }
    return e;
}

/* A plain head being read: its socket and bytes go; ours is closed (the
 * socket lives on in the new process). 0, or -errno: p stays ours. */
static int send_head(int fd, struct pending *p)
{
    struct relay *rl = p->a->relay;
    struct ho_rec r;
    int e, cfd = p->c.fd;

    ho_rec_init(&r, HO_R_HEAD);
    r.num[HO_HEAD_PROXY] = p->proxy_hdr;
    r.str[HO_HEAD_SA] = (struct ho_str){(const char *)&p->sa, sizeof(p->sa)};
    r.str[HO_HEAD_BYTES] = (struct ho_str){p->buf, p->len};
    e = upg_send(fd, &r, &cfd, 1);
    if (e < 0)
        return e == -EMSGSIZE ? 0 : e; /* too big to move: it stays here */
    pending_free(p, false);
    conn_close_fd(rl, cfd);
    return 0;
}

/* READY came: stop accepting (the sockets stay open: the kernel queues),
 * send the plain heads, have each shard send its state. */
static int up_freeze(struct acceptor *a)
{
    struct relay *r = a->relay;
    int e = 0;

    timer_del(a->wheel, &a->up.timer);
    for (int i = 0; i < a->nls; i++) {
        ev_del(a->loop, a->ls[i].tok);
        a->ls[i].tok = 0;
    }
    ev_del(a->loop, a->admin.tok);
    a->admin.tok = 0;
    timer_del(a->wheel, &a->retry);
    a->up.st = UP_FROZEN;
    for (struct pending *p = a->pend, *next; e == 0 && p; p = next) {
        next = p->next;
        if (!p->admin && !p->tls_hs && p->c.ops == &xprt_raw)
            e = send_head(a->up.fd, p);
    }
    if (e < 0)
        return e;
    atomic_store(&r->ho_failed, 0);
    atomic_store(&r->ho_left, r->nshards);
    for (int i = 0; i < r->nshards; i++) {
        struct handoff *h = calloc(1, sizeof(*h));

        if (!h) {
            atomic_store(&r->ho_failed, -ENOMEM);
            atomic_fetch_sub(&r->ho_left, 1);
            continue;
        }
        h->type = HO_HANDOVER;
        h->ho_fd = a->up.fd;
        shard_deliver(r->shards[i], h);
    }
    return 0;
}

static void up_event(void *arg, uint32_t events)
{
    struct acceptor *a = arg;

    while (a->up.fd >= 0 && a->up.st != UP_FROZEN) {
        uint8_t buf[UP_SMALL_REC];
        int fds[HO_FDS_MAX];
        struct ho_rec r;
        int e = upg_recv(a->up.fd, buf, sizeof(buf), &r, fds, 1);

        if (e == -EAGAIN)
            return;
        if (e >= 0 && r.type == HO_R_HELLO && a->up.st == UP_HELLO)
            e = up_send_listens(a);
        else if (e >= 0 && r.type == HO_R_READY && a->up.st == UP_READY)
            e = up_freeze(a);
        else if (e >= 0)
            e = -EPROTO;
        if (e < 0) {
            up_fail(a, e == -EPIPE ? "the new process went away" : strerror(-e));
            return;
        }
    }
}

static void up_start(struct acceptor *a)
{
    long tmo = a->relay->conf.upgrade_timeout;
    int sv[2], e = upg_channel(sv, tmo);

    if (e < 0) {
        log_error("upgrade failed: channel: %s", strerror(-e));
        return;
    }
    e = upg_spawn(sv[1], &a->up.pid);
    close(sv[1]);
    if (e < 0) {
        close(sv[0]);
        log_error("upgrade failed: cannot start the new process: %s", strerror(-e));
        return;
    }
    a->up.fd = sv[0];
    a->up.st = UP_HELLO;
    log_notice("upgrade: started pid %ld", (long)a->up.pid);
    if (ev_add(a->loop, sv[0], EV_IN | EV_RDHUP, up_event, a, &a->up.tok) < 0) {
        up_fail(a, "cannot watch the channel");
        return;
    }
    timer_set(a->wheel, &a->up.timer, *a->now + (uint64_t)tmo * 1000, up_timeout);
}

void upgrade_signal(struct acceptor *a)
{
    if (a->up.st == UP_DONE)
        log_warn("upgrade: already handed over to pid %ld: SIGUSR2 ignored", (long)a->up.pid);
    else if (a->stopping)
        log_warn("upgrade: stopping: SIGUSR2 ignored");
    else if (a->up.st != UP_IDLE)
        log_warn("upgrade: pid %ld is starting: SIGUSR2 ignored", (long)a->up.pid);
    else
        up_start(a);
}

/* Every shard sent its state: END, then drain what stayed here. */
static void up_done(struct acceptor *a)
{
    pid_t pid = a->up.pid;
    int e = atomic_load(&a->relay->ho_failed);

    if (e < 0) {
        up_fail(a, strerror(-e));
        return;
    }
    notify_handed_over(&notify_main, (long)pid);
    e = upg_send_type(a->up.fd, HO_R_END);
    if (e < 0) {
        up_fail(a, strerror(-e));
        return;
    }
    log_notice("handed over to pid %ld", (long)pid);
    up_close(a);
    a->up.st = UP_DONE;
    acceptor_stop(a);
    lsock_close(a, &a->admin); /* the new process answers there now */
}

void upgrade_turn(struct acceptor *a)
{
    if (a->up.st == UP_FROZEN && atomic_load(&a->relay->ho_left) == 0)
        up_done(a);
}

void upgrade_fini(struct acceptor *a)
{
    if (a->up.st == UP_HELLO || a->up.st == UP_READY)
        up_fail(a, "the running process is stopping");
    if (a->upn.fd >= 0)
        close(a->upn.fd);
    a->upn.fd = -1;
}

/* ------------------------------------------------------------ new side */

void acceptor_handover_from(struct acceptor *a, int fd)
{
    struct ho_rec r;
    int e;

    a->upn.fd = fd;
    a->upn.from = getppid();
    a->upn.heads_tail = &a->upn.heads;
    ho_rec_init(&r, HO_R_HELLO);
    r.num[HO_HELLO_PID] = getpid();
    e = upg_send(fd, &r, NULL, 0);
    if (e < 0) {
        log_error("upgrade: cannot greet pid %ld: %s", (long)a->upn.from, strerror(-e));
        close(fd);
        a->upn.fd = -1;
    }
}

static void inherit_close(struct acceptor *a)
{
    for (int i = 0; i < a->upn.ninh; i++)
        if (a->upn.inh[i].fd >= 0)
            close(a->upn.inh[i].fd);
    a->upn.ninh = 0;
}

int upgrade_take_listens(struct acceptor *a)
{
    for (;;) {
        uint8_t buf[UP_SMALL_REC];
        int fds[HO_FDS_MAX];
        struct ho_rec r;
        int e = upg_recv(a->upn.fd, buf, sizeof(buf), &r, fds, 0);
        struct up_inherit *in;

        if (e >= 0 && r.type == HO_R_LISTEN_END)
            return 0;
        if (e < 0 || r.type != HO_R_LISTEN || r.str[HO_LISTEN_SA].len > sizeof(in->ss) ||
            a->upn.ninh == CONF_MAX_LISTEN + 1) {
            if (e >= 0)
                close(fds[0]);
            inherit_close(a);
            return -EPROTO;
        }
        in = &a->upn.inh[a->upn.ninh++];
        memset(in, 0, sizeof(*in));
        in->fd = fds[0];
        in->admin = r.num[HO_LISTEN_ADMIN] != 0;
        in->flags = (unsigned)r.num[HO_LISTEN_FLAGS];
        if (r.str[HO_LISTEN_SA].len)
            memcpy(&in->ss, r.str[HO_LISTEN_SA].p, r.str[HO_LISTEN_SA].len);
    }
}

/* Same family, address and port; a configured port 0 takes the running
 * socket of the same address, role and flags, whatever port it got. */
static bool addr_matches(const struct sockaddr_storage *want, const struct up_inherit *in,
                         bool admin, unsigned flags)
{
    const struct sockaddr_storage *got = &in->ss;
    bool role = in->admin == admin && in->flags == flags;

    if (want->ss_family != got->ss_family)
        return false;
    if (want->ss_family == AF_INET) {
        const struct sockaddr_in *w = (const void *)want, *g = (const void *)got;

        return w->sin_addr.s_addr == g->sin_addr.s_addr &&
               (w->sin_port == g->sin_port || (w->sin_port == 0 && role));
    }
    if (want->ss_family == AF_INET6) {
        const struct sockaddr_in6 *w = (const void *)want, *g = (const void *)got;

        return memcmp(&w->sin6_addr, &g->sin6_addr, sizeof(w->sin6_addr)) == 0 &&
               (w->sin6_port == g->sin6_port || (w->sin6_port == 0 && role));
    }
    return false;
}

int upgrade_listen_fd(struct acceptor *a, const char *spec, bool admin, unsigned flags)
{
    struct sockaddr_storage ss;
    socklen_t len;

    if (addr_parse(spec, &ss, &len) < 0)
        return -1;
    for (int i = 0; i < a->upn.ninh; i++) {
        struct up_inherit *in = &a->upn.inh[i];

        if (in->fd >= 0 && addr_matches(&ss, in, admin, flags)) {
            int fd = in->fd;

            in->fd = -1;
            a->upn.nadopted++;
            return fd;
        }
    }
    return -1;
}

void upgrade_close_unused(struct acceptor *a)
{
    inherit_close(a); /* the old process closes its own after the freeze */
}

int acceptor_handover_ready(struct acceptor *a)
{
    int e;

    if (a->upn.fd < 0)
        return 0;
    e = upg_send_type(a->upn.fd, HO_R_READY);
    if (e < 0) {
        log_error("upgrade: pid %ld went away: %s", (long)a->upn.from, strerror(-e));
        close(a->upn.fd);
        a->upn.fd = -1;
    }
    return e;
}

/* One shard record (its path says which shard): a hand-off holding the
 * message and its fds, which the shard decodes again. */
static void adopt_for_shard(struct acceptor *a, const struct ho_rec *r, const uint8_t *msg,
                            size_t len, const int *fds, int nfds)
{
    struct relay *rl = a->relay;
    const struct ho_str *path = &r->str[0]; /* every shard record starts with its path */
    struct handoff *h = calloc(1, sizeof(*h) + len);

    atomic_fetch_add(&rl->nconn, nfds);
    if (!h) {
        for (int i = 0; i < nfds; i++) {
            close(fds[i]);
            atomic_fetch_sub(&rl->nconn, 1);
        }
        return;
    }
    h->type = HO_ADOPT;
    memcpy(h->data, msg, len);
    h->rec_len = len;
    h->nfds = nfds;
    memcpy(h->fds, fds, sizeof(int) * (size_t)nfds);
    shard_deliver(relay_shard_for(rl, path->p, path->len), h);
}

/* Keep a HEAD record for after END (struct up_head). */
static void head_hold(struct acceptor *a, const struct ho_rec *r, int fd)
{
    const struct ho_str *b = &r->str[HO_HEAD_BYTES], *sa = &r->str[HO_HEAD_SA];
    struct up_head *h = calloc(1, sizeof(*h) + b->len);

    atomic_fetch_add(&a->relay->nconn, 1);
    if (!h) {
        conn_close_fd(a->relay, fd);
        return;
    }
    h->fd = fd;
    h->proxy_hdr = r->num[HO_HEAD_PROXY] != 0;
    if (sa->len)
        memcpy(&h->ss, sa->p, sa->len < sizeof(h->ss) ? sa->len : sizeof(h->ss));
    h->len = b->len;
    if (b->len)
        memcpy(h->bytes, b->p, b->len);
    *a->upn.heads_tail = h;
    a->upn.heads_tail = &h->next;
}

/* END came: the heads go on, after every shard record (a hosted shard has
 * handled them; a shard thread finds them first in its queue). */
static void heads_start(struct acceptor *a)
{
    struct up_head *h = a->upn.heads, *next;

    for (; h; h = next) {
        next = h->next;
        atomic_fetch_sub(&a->relay->nconn, 1); /* pending_adopt counts it again */
        pending_adopt(a, h->fd, (struct sockaddr *)&h->ss, h->proxy_hdr, h->bytes, h->len);
        free(h);
    }
    a->upn.heads = NULL;
    a->upn.heads_tail = &a->upn.heads;
}

static void adopt_one(struct acceptor *a, const struct ho_rec *r, const uint8_t *msg, size_t len,
                      const int *fds)
{
    int nn, ns, nf;

    (void)ho_shape(r->type, &nn, &ns, &nf);
    a->upn.count[r->type]++;
    if (r->type == HO_R_HEAD) {
        head_hold(a, r, fds[0]);
        return;
    }
    if (r->type >= HO_R_GRACE && r->type <= HO_R_LINK && r->str[0].len > 0) {
        adopt_for_shard(a, r, msg, len, fds, nf);
        return;
    }
    a->upn.count[r->type]--;
    for (int i = 0; i < nf; i++)
        close(fds[i]);
    log_warn("upgrade: record type %d ignored", (int)r->type);
}

void upgrade_take_state(struct acceptor *a)
{
    static uint8_t buf[HO_REC_MAX];
    const char *why = "end";
    long *n = a->upn.count;

    for (;;) {
        int fds[HO_FDS_MAX];
        struct ho_rec r;
        int e = upg_recv(a->upn.fd, buf, sizeof(buf), &r, fds, 0);

        if (e < 0) {
            why = strerror(-e);
            break;
        }
        if (r.type == HO_R_END)
            break;
        *a->now = anet_now_ms();
        adopt_one(a, &r, buf, (size_t)e, fds);
    }
    if (strcmp(why, "end") != 0)
        log_warn("upgrade: pid %ld stopped sending (%s): taking what came", (long)a->upn.from, why);
    close(a->upn.fd);
    a->upn.fd = -1;
    heads_start(a);
    log_notice("upgrade: took over from pid %ld: %d listen sockets, %ld listeners, %ld waiting "
               "clients, %ld parked, %ld heads, %ld links",
               (long)a->upn.from, a->upn.nadopted, n[HO_R_LISTENER], n[HO_R_WAITER], n[HO_R_PARKED],
               n[HO_R_HEAD], n[HO_R_LINK]);
}
