/* The event loop on both backends: readiness is delivered edge-triggered,
 * a deleted watch never calls back (not even for events already fetched),
 * and tokens of freed slots are stale. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "engine/ev.h"
#include "engine/ev_backend.h"

struct hits {
    int n;
    uint32_t last;
};

static void count_cb(void *arg, uint32_t events)
{
    struct hits *h = arg;

    h->n++;
    h->last = events;
}

static const struct ev_backend *backend(int i)
{
    char why[256];

    if (i == 0)
        return &ev_backend_epoll;
    if (ev_backend_uring.probe(why, sizeof(why)) < 0) {
        fprintf(stderr, "SKIP io_uring backend: %s\n", why);
        return NULL;
    }
    return &ev_backend_uring;
}

static void readiness(int bi)
{
    const struct ev_backend *be = backend(bi);
    struct ev_loop l;
    struct hits h = {0};
    uint64_t tok;
    int p[2];

    if (!be)
        cr_skip_test("io_uring unavailable");
    cr_assert_eq(ev_init(&l, be), 0);
    cr_assert_eq(pipe2(p, O_NONBLOCK), 0);
    cr_assert_eq(ev_add(&l, p[0], EV_IN, count_cb, &h, &tok), 0);
    cr_assert_eq(ev_wait(&l, 50), 0);
    cr_assert_eq(h.n, 0, "no event before data");
    cr_assert_eq(write(p[1], "x", 1), 1);
    cr_assert_eq(ev_wait(&l, 1000), 0);
    cr_assert_eq(h.n, 1);
    cr_assert(h.last & EV_IN);
    /* Edge-triggered: unread data does not report again. */
    cr_assert_eq(ev_wait(&l, 50), 0);
    cr_assert_eq(h.n, 1, "edge-triggered: no second event for the same data");
    cr_assert_eq(write(p[1], "y", 1), 1);
    cr_assert_eq(ev_wait(&l, 1000), 0);
    cr_assert_eq(h.n, 2, "a new edge reports again");
    ev_del(&l, tok);
    cr_assert_eq(write(p[1], "z", 1), 1);
    cr_assert_eq(ev_wait(&l, 50), 0);
    ev_wait(&l, 50);
    cr_assert_eq(h.n, 2, "no callback after ev_del");
    cr_assert_null(ev_slot_of(&l, tok), "token is stale once its slot is released");
    close(p[0]);
    close(p[1]);
    ev_fini(&l);
}

Test(ev, epoll_readiness)
{
    readiness(0);
}

Test(ev, uring_readiness)
{
    readiness(1);
}

/* Two watches ready in one batch; the first callback deletes the second:
 * the second must not be called (its owner may be freed). */
struct pair {
    struct ev_loop *l;
    uint64_t tok[2];
    int calls[2];
};

static void first_cb(void *arg, uint32_t events)
{
    struct pair *pr = arg;

    pr->calls[0]++;
    ev_del(pr->l, pr->tok[1]);
    ev_del(pr->l, pr->tok[0]);
}

static void second_cb(void *arg, uint32_t events)
{
    struct pair *pr = arg;

    pr->calls[1]++;
    ev_del(pr->l, pr->tok[1]);
    ev_del(pr->l, pr->tok[0]);
}

static void del_in_batch(int bi)
{
    const struct ev_backend *be = backend(bi);
    struct ev_loop l;
    struct pair pr = {.l = &l};
    int a[2], b[2];

    if (!be)
        cr_skip_test("io_uring unavailable");
    cr_assert_eq(ev_init(&l, be), 0);
    cr_assert_eq(pipe2(a, O_NONBLOCK), 0);
    cr_assert_eq(pipe2(b, O_NONBLOCK), 0);
    cr_assert_eq(write(a[1], "x", 1), 1);
    cr_assert_eq(write(b[1], "x", 1), 1);
    cr_assert_eq(ev_add(&l, a[0], EV_IN, first_cb, &pr, &pr.tok[0]), 0);
    cr_assert_eq(ev_add(&l, b[0], EV_IN, second_cb, &pr, &pr.tok[1]), 0);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(ev_wait(&l, 50), 0);
    cr_assert_eq(pr.calls[0] + pr.calls[1], 1, "exactly one callback ran");
    for (int i = 0; i < 2; i++) {
        close(a[i]);
        close(b[i]);
    }
    ev_fini(&l);
}

Test(ev, epoll_delete_in_batch)
{
    del_in_batch(0);
}

Test(ev, uring_delete_in_batch)
{
    del_in_batch(1);
}

Test(ev, choose)
{
    char why[256];

    cr_assert_eq(ev_choose(EV_WANT_EPOLL, why, sizeof(why)), &ev_backend_epoll);
    cr_assert_not_null(ev_choose(EV_WANT_AUTO, why, sizeof(why)));
}

Test(ev, many_watches_grow_the_table)
{
    struct ev_loop l;
    enum { N = 600 };
    static int p[N][2];
    static struct hits h[N];
    uint64_t tok[N];

    cr_assert_eq(ev_init(&l, &ev_backend_epoll), 0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(pipe2(p[i], O_NONBLOCK), 0);
        cr_assert_eq(ev_add(&l, p[i][0], EV_IN, count_cb, &h[i], &tok[i]), 0);
    }
    for (int i = 0; i < N; i += 7)
        cr_assert_eq(write(p[i][1], "x", 1), 1);
    for (int k = 0; k < 4; k++)
        ev_wait(&l, 20);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(h[i].n, i % 7 == 0 ? 1 : 0, "watch %d", i);
        ev_del(&l, tok[i]);
        close(p[i][0]);
        close(p[i][1]);
    }
    ev_fini(&l);
}

/* A slot keeps the mask it was added with in 6 bits (io_uring re-arms a
 * poll with it), a mask bit it cannot keep is refused, and slots past the
 * ones ever handed out are not reachable by any token. */
Test(ev, slot_keeps_its_mask_and_refuses_unknown_bits)
{
    struct ev_loop l;
    struct hits h = {0};
    uint64_t tok, tok2;
    int p[2];

    cr_assert_eq(ev_init(&l, &ev_backend_epoll), 0);
    cr_assert_eq(pipe2(p, O_NONBLOCK), 0);
    cr_assert_eq(ev_add(&l, p[0], EV_IN | EV_RDHUP | EPOLLET, count_cb, &h, &tok), -EINVAL);
    cr_assert_eq(tok, 0);
    cr_assert_eq(ev_add(&l, p[0], EV_IN | EV_OUT | EV_RDHUP, count_cb, &h, &tok), 0);
    cr_assert_eq(ev_slot_events(ev_slot_of(&l, tok)), EV_IN | EV_OUT | EV_RDHUP);
    cr_assert_eq(l.used, 1);
    cr_assert_null(ev_slot_of(&l, tok + (1ull << 32)), "a slot never handed out");
    ev_del(&l, tok);
    cr_assert_null(ev_slot_of(&l, tok), "a freed slot's old token");
    cr_assert_eq(ev_add(&l, p[0], EV_IN, count_cb, &h, &tok2), 0);
    cr_assert_eq(tok2 >> 32, tok >> 32, "the freed slot is reused");
    cr_assert_neq(tok2, tok);
    cr_assert_eq(ev_slot_events(ev_slot_of(&l, tok2)), EV_IN);
    ev_del(&l, tok2);
    ev_fini(&l);
    close(p[0]);
    close(p[1]);
}
