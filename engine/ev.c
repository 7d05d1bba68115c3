#include "engine/ev.h"

#include "engine/ev_backend.h"

#include "net/anet.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EV_SLOTS_INITIAL 256
#define EV_NO_SLOT UINT32_MAX
/* The mask bits a watch may ask for (the rest are reported anyway or not
 * used), packed into 6 bits of ev_slot.bits. */
#define EV_MASK_LOW (EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLERR | EPOLLHUP)
#define EV_MASK_RDHUP_BIT 0x20u

_Static_assert(sizeof(struct ev_slot) == 24, "two slots per linked pair: keep them small");

static inline uint64_t make_token(uint32_t idx, uint32_t gen)
{
    return ((uint64_t)(idx + 1) << 32) | gen; /* never 0 */
}

const struct ev_backend *ev_choose(enum ev_want want, char *why, size_t len)
{
    char reason[256] = "";

    why[0] = '\0';
    if (want == EV_WANT_EPOLL)
        return &ev_backend_epoll;
    if (ev_backend_uring.probe(reason, sizeof(reason)) == 0)
        return &ev_backend_uring;
    if (want == EV_WANT_URING) {
        snprintf(why, len, "io_uring unavailable: %s", reason);
        return NULL;
    }
    snprintf(why, len, "io_uring unavailable (%s), using epoll", reason);
    return &ev_backend_epoll;
}

const char *ev_backend_name(const struct ev_backend *be)
{
    return be->name;
}

static uint32_t mask_pack(uint32_t events)
{
    return (events & EV_MASK_LOW) | (events & EPOLLRDHUP ? EV_MASK_RDHUP_BIT : 0);
}

uint32_t ev_slot_events(const struct ev_slot *s)
{
    uint32_t m = s->bits >> EV_MASK_SHIFT;

    return (m & EV_MASK_LOW) | (m & EV_MASK_RDHUP_BIT ? EPOLLRDHUP : 0);
}

/* Double the table. The new part stays untouched (not resident) until
 * watch_add() hands its slots out one by one. */
static int slots_grow(struct ev_loop *l)
{
    uint32_t n = l->nslots ? l->nslots * 2 : EV_SLOTS_INITIAL;
    struct ev_slot *s = realloc(l->slot, n * sizeof(*s));

    if (!s)
        return -ENOMEM;
    l->slot = s;
    l->nslots = n;
    return 0;
}

/* A slot for a new watch: a freed one, else the next never used. */
static int slot_take(struct ev_loop *l, uint32_t *idx)
{
    if (l->free_head != EV_NO_SLOT) {
        *idx = l->free_head;
        l->free_head = l->slot[*idx].next_free;
        return 0;
    }
    if (l->used == l->nslots && slots_grow(l) < 0)
        return -ENOMEM;
    *idx = l->used++;
    l->slot[*idx].bits = 0;
    return 0;
}

int ev_init(struct ev_loop *l, const struct ev_backend *be)
{
    memset(l, 0, sizeof(*l));
    l->be = be;
    l->free_head = EV_NO_SLOT;
    if (slots_grow(l) < 0)
        return -ENOMEM;
    return be->init(l);
}

void ev_fini(struct ev_loop *l)
{
    if (l->be)
        l->be->fini(l);
    free(l->slot);
    l->slot = NULL;
}

struct ev_slot *ev_slot_of(struct ev_loop *l, uint64_t token)
{
    uint32_t idx = (uint32_t)(token >> 32) - 1;

    if (!token || idx >= l->used || ev_slot_gen(&l->slot[idx]) != (uint32_t)token)
        return NULL;
    return &l->slot[idx];
}

void ev_slot_release(struct ev_loop *l, uint64_t token)
{
    struct ev_slot *s = ev_slot_of(l, token);
    uint32_t idx = (uint32_t)(token >> 32) - 1;

    if (!s)
        return;
    s->bits = (s->bits + 1) & EV_GEN_MASK; /* the next generation; mask and flags cleared */
    s->cb = NULL;
    s->arg = NULL;
    s->next_free = l->free_head;
    l->free_head = idx;
}

static int watch_add(struct ev_loop *l, int fd, uint32_t events, ev_cb *cb, void *arg,
                     uint64_t *token, bool noref)
{
    struct ev_slot *s;
    uint32_t idx;
    int r;

    *token = 0;
    if (!cb || (events & ~(EV_MASK_LOW | EPOLLRDHUP)))
        return -EINVAL;
    if (slot_take(l, &idx) < 0)
        return -ENOMEM;
    s = &l->slot[idx];
    noref = noref && l->be->add_noref;
    s->cb = cb;
    s->arg = arg;
    s->fd = fd;
    s->bits = ev_slot_gen(s) | mask_pack(events) << EV_MASK_SHIFT | (noref ? EV_SLOT_NOREF : 0);
    *token = make_token(idx, ev_slot_gen(s));
    r = noref ? l->be->add_noref(l, fd, events, *token) : l->be->add(l, fd, events, *token);
    if (r < 0) {
        ev_slot_release(l, *token);
        *token = 0;
        return r;
    }
    l->live++;
    return 0;
}

int ev_add(struct ev_loop *l, int fd, uint32_t events, ev_cb *cb, void *arg, uint64_t *token)
{
    return watch_add(l, fd, events, cb, arg, token, false);
}

int ev_add_listen(struct ev_loop *l, int fd, uint32_t events, ev_cb *cb, void *arg, uint64_t *token)
{
    return watch_add(l, fd, events, cb, arg, token, true);
}

static void del_watch(struct ev_loop *l, uint64_t token, bool closing)
{
    struct ev_slot *s = ev_slot_of(l, token);

    if (!s || !s->cb)
        return;
    s->cb = NULL; /* dying */
    l->live--;
    if (l->be->del(l, s->fd, token, closing))
        ev_slot_release(l, token);
}

void ev_del(struct ev_loop *l, uint64_t token)
{
    del_watch(l, token, false);
}

void ev_del_closing(struct ev_loop *l, uint64_t token)
{
    del_watch(l, token, true);
}

void ev_rebind(struct ev_loop *l, uint64_t token, ev_cb *cb, void *arg)
{
    struct ev_slot *s = ev_slot_of(l, token);

    if (s && s->cb && cb) {
        s->cb = cb;
        s->arg = arg;
    }
}

void ev_dispatch(struct ev_loop *l, uint64_t token, uint32_t events)
{
    struct ev_slot *s = ev_slot_of(l, token);

    if (s && s->cb)
        s->cb(s->arg, events);
}

void ev_clock(struct ev_loop *l)
{
    if (l->clock)
        *l->clock = anet_now_ms();
}

int ev_wait(struct ev_loop *l, int timeout_ms)
{
    return l->be->wait(l, timeout_ms);
}
