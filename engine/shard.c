/* Shard threads: the hand-off queue, the loop, drain. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "engine/shard.h"

#include "engine/conn.h"
#include "engine/link.h"
#include "engine/listener.h"
#include "engine/log.h"
#include "engine/notify.h"
#include "net/anet.h"
#include "proto/handover.h"

struct shard *relay_shard_for(struct relay *r, const char *path, size_t len)
{
    return r->shards[map_hash(path, len) % (uint64_t)r->nshards];
}

struct shard *shard_new(struct relay *r, int id)
{
    struct shard *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->id = id;
    s->relay = r;
    s->conf = r->conf;
    dlist_init(&s->links);
    dlist_init(&s->ready);
    pthread_mutex_init(&s->qlock, NULL);
    pathstat_init(&s->pstat);
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->wake_fd == -1 || map_init(&s->paths) < 0 || map_init(&s->waiters) < 0) {
        shard_free(s);
        return NULL;
    }
    pipepool_init(&s->pool, s->conf.max_pipes, s->conf.pipe_size);
    return s;
}

void shard_push(struct shard *s, struct handoff *h)
{
    uint64_t one = 1;
    bool was_empty;

    h->next = NULL;
    pthread_mutex_lock(&s->qlock);
    was_empty = s->qhead == NULL;
    if (s->qtail)
        s->qtail->next = h;
    else
        s->qhead = h;
    s->qtail = h;
    pthread_mutex_unlock(&s->qlock);
    /* A non-empty queue already has a wake-up on its way: the shard takes
     * the whole queue per wake-up. An eventfd write only fails when the
     * counter would overflow, and then a wake-up is pending anyway. */
    if (was_empty && write(s->wake_fd, &one, sizeof(one)) < 0)
        return;
}

/* A reload may lower max_parked: the pools over it shrink now, oldest
 * first, instead of keeping what the old limit allowed until it expires. */
static void shard_trim_parked(struct shard *s)
{
    struct map_iter it;
    struct map_entry *e;

    /* A path left with nothing goes from the map at once, which the
     * iterator allows. */
    for (map_iter_init(&it, &s->paths); (e = map_iter_next(&it));)
        lpath_trim_parked(CONTAINER(e, struct lpath, me), s->conf.max_parked);
}

static void shard_drain_start(struct shard *s)
{
    struct map_iter it;
    struct map_entry *e;

    s->draining = true;
    s->drain_deadline = s->now + (uint64_t)s->conf.drain_timeout * 1000;
    /* Paths go first: their waiting clients fail, their listeners get a
     * close frame. A listener whose close frame cannot go out at once stays
     * until it does (or the deadline); a path with nothing left goes from
     * the map at once, which the iterator allows. */
    for (map_iter_init(&it, &s->paths); (e = map_iter_next(&it));)
        lpath_drain(CONTAINER(e, struct lpath, me), false);
}

/* Upgrade, old side: send what can move on the channel, path by path,
 * then the idle plain links; what cannot move stays here and drains.
 * Reports to the acceptor through ho_left and ho_failed. */
static void shard_handover(struct shard *s, int fd)
{
    struct relay *r = s->relay;
    struct map_iter it;
    struct map_entry *e;
    int err = 0;

    /* A path with nothing left goes from the map at once, which the
     * iterator allows. */
    for (map_iter_init(&it, &s->paths); err == 0 && (e = map_iter_next(&it));)
        err = lpath_handover(CONTAINER(e, struct lpath, me), fd);
    if (err == 0)
        err = link_handover_all(s, fd);
    if (err < 0) {
        log_error("shard %d: handover: %s", s->id, strerror(-err));
        atomic_store(&r->ho_failed, err);
    }
    atomic_fetch_sub(&r->ho_left, 1);
}

/* Upgrade, new side: one record from the old process and its fds. */
static void shard_adopt(struct shard *s, struct handoff *h)
{
    struct ho_rec r;

    if (ho_decode((const uint8_t *)h->data, h->rec_len, &r) < 0) {
        for (int i = 0; i < h->nfds; i++)
            conn_close_fd(s->relay, h->fds[i]);
        return;
    }
    if (r.type == HO_R_LINK)
        link_adopt(s, &r, h->fds);
    else
        lpath_adopt(s, &r, h->fds);
}

static void shard_handle(struct shard *s, struct handoff *h)
{
    switch (h->type) {
    case HO_CONN:
        if (s->draining)
            conn_reject(s->relay, &h->conn, 503, "shutting_down", "The relay is shutting down");
        else if (h->kind == WR_LISTENER)
            listener_register(s, h);
        else if (h->kind == WR_CLIENT)
            client_arrive(s, h);
        else if (h->kind == WR_PARK)
            park_arrive(s, h);
        else
            dialback_arrive(s, h);
        break;
    case HO_CONFIG:
        /* Established connections keep what they started with; pipe
         * settings apply to pipes created from now on. */
        s->conf = *h->conf;
        s->pool.max = s->conf.max_pipes;
        s->pool.size = s->conf.pipe_size;
        free(h->conf);
        shard_trim_parked(s);
        break;
    case HO_DRAIN:
        if (!s->draining)
            shard_drain_start(s);
        break;
    case HO_HANDOVER:
        shard_handover(s, h->ho_fd);
        break;
    case HO_ADOPT:
        shard_adopt(s, h);
        break;
    }
    free(h);
}

static void shard_wake(void *arg, uint32_t events)
{
    struct shard *s = arg;
    struct handoff *h;
    uint64_t v;

    /* One read resets the counter; a push after it writes again. */
    if (read(s->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_error("shard %d: eventfd: %s", s->id, strerror(errno));
    pthread_mutex_lock(&s->qlock);
    h = s->qhead;
    s->qhead = s->qtail = NULL;
    pthread_mutex_unlock(&s->qlock);
    while (h) {
        struct handoff *next = h->next;

        s->now = anet_now_ms();
        shard_handle(s, h);
        h = next;
    }
}

static void shard_close_all(struct shard *s)
{
    struct map_iter it;
    struct map_entry *e;

    link_close_all(s, "drain timeout");
    s->draining = true; /* no grace, no offer elsewhere */
    for (map_iter_init(&it, &s->paths); (e = map_iter_next(&it));)
        lpath_drain(CONTAINER(e, struct lpath, me), true);
}

int shard_loop_init(struct shard *s)
{
    int r;

    s->now = anet_now_ms();
    wheel_init(&s->wheel, s->now);
    r = ev_init(&s->loop, s->relay->be);
    s->loop.clock = &s->now;
    if (r == 0)
        r = ev_add(&s->loop, s->wake_fd, EV_IN, shard_wake, s, &s->wake_tok);
    if (r < 0)
        log_error("shard %d: cannot start its %s loop: %s", s->id, ev_backend_name(s->relay->be),
                  strerror(-r));
    return r;
}

int shard_wait_ms(const struct shard *s)
{
    int t = !dlist_empty(&s->ready) ? 0 : wheel_timeout(&s->wheel, s->now);

    if (s->draining && (t < 0 || t > 100))
        t = 100;
    return notify_loop_wait(&notify_main, 1 + s->id, s->now,
                            pathstat_wait_ms(s, t)); /* heartbeat */
}

bool shard_turn(struct shard *s)
{
    link_run_ready(s);
    wheel_run(&s->wheel, s->now);
    STAT_SET(s->stats.links, (uint64_t)s->nlinks);
    STAT_SET(s->stats.listeners, (uint64_t)s->nlisteners);
    STAT_SET(s->stats.waiting, (uint64_t)s->waiters.count);
    STAT_SET(s->stats.pipes, (uint64_t)s->pool.live);
    STAT_SET(s->stats.parked, (uint64_t)s->nparked);
    pathstat_tick(s);
    return s->draining && ((s->nlinks == 0 && s->paths.count == 0) || s->now >= s->drain_deadline);
}

void shard_finish(struct shard *s)
{
    shard_close_all(s);
    ev_del(&s->loop, s->wake_tok);
    s->wake_tok = 0;
    if (!s->hosted)
        ev_fini(&s->loop); /* a hosted shard's loop is the acceptor's to end */
    atomic_fetch_sub(&s->relay->shards_running, 1);
}

static void *shard_main(void *arg)
{
    struct shard *s = arg;

    if (shard_loop_init(s) < 0)
        exit(1);
    for (;;) {
        int r = ev_wait(&s->loop, shard_wait_ms(s));

        if (r < 0) {
            log_error("shard %d: event loop: %s", s->id, strerror(-r));
            break;
        }
        s->now = anet_now_ms();
        if (shard_turn(s))
            break;
    }
    shard_finish(s);
    return NULL;
}

int shard_host(struct shard *s)
{
    s->hosted = true;
    return shard_loop_init(s);
}

void shard_deliver(struct shard *s, struct handoff *h)
{
    if (!s->hosted) {
        shard_push(s, h);
        return;
    }
    s->now = anet_now_ms();
    shard_handle(s, h);
}

int shard_start(struct shard *s)
{
    int r = pthread_create(&s->thread, NULL, shard_main, s);

    return r ? -r : 0;
}

void shard_join(struct shard *s)
{
    if (!s->hosted)
        pthread_join(s->thread, NULL);
}

void shard_free(struct shard *s)
{
    struct handoff *h, *next;

    if (!s)
        return;
    for (h = s->qhead; h; h = next) {
        next = h->next;
        if (h->type == HO_CONN)
            h->conn.ops->close(&h->conn, false);
        for (int i = 0; h->type == HO_ADOPT && i < h->nfds; i++)
            close(h->fds[i]);
        free(h->conf);
        free(h);
    }
    /* Paths, with their listeners and waiters, went in shard_close_all(). */
    map_fini(&s->paths);
    map_fini(&s->waiters);
    pipepool_fini(&s->pool);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    pthread_mutex_destroy(&s->qlock);
    pathstat_fini(&s->pstat);
    free(s);
}
