/* Per-path figures: collection on the shard, selection of the busiest
 * paths, and the snapshot the admin endpoint copies (engine/pathstat.h). */
#include "engine/pathstat.h"

#include <stdlib.h>
#include <string.h>

#include "engine/link.h"
#include "engine/listener.h"
#include "engine/shard.h"

static uint64_t busy(const struct path_stat *p)
{
    return p->up + p->down;
}

void pathstat_fold(struct path_stat *rest, const struct path_stat *p)
{
    rest->up += p->up;
    rest->down += p->down;
    rest->waiting += p->waiting;
    rest->links += p->links;
    rest->paths += p->paths;
}

static int busier_first(const void *a, const void *b)
{
    uint64_t x = busy(a), y = busy(b);

    if (x != y)
        return x > y ? -1 : 1;
    return strcmp(((const struct path_stat *)a)->path, ((const struct path_stat *)b)->path);
}

int pathstat_select(struct path_stat *all, int len, int n, struct path_stat *rest)
{
    qsort(all, (size_t)len, sizeof(*all), busier_first);
    for (int i = n; i < len; i++)
        pathstat_fold(rest, &all[i]);
    return len < n ? len : n;
}

/* A min-heap of the n busiest seen so far (least busy at 0). */
struct top {
    struct path_stat *h;
    int len, cap;
};

static void swap(struct path_stat *a, struct path_stat *b)
{
    struct path_stat t = *a;

    *a = *b;
    *b = t;
}

static void sift_down(struct top *t, int i)
{
    for (;;) {
        int m = i, c = 2 * i + 1;

        if (c < t->len && busy(&t->h[c]) < busy(&t->h[m]))
            m = c;
        if (c + 1 < t->len && busy(&t->h[c + 1]) < busy(&t->h[m]))
            m = c + 1;
        if (m == i)
            return;
        swap(&t->h[i], &t->h[m]);
        i = m;
    }
}

static void top_offer(struct top *t, const struct path_stat *p, struct path_stat *rest)
{
    int i = t->len;

    if (t->len < t->cap) {
        t->h[t->len++] = *p;
        for (; i > 0 && busy(&t->h[(i - 1) / 2]) > busy(&t->h[i]); i = (i - 1) / 2)
            swap(&t->h[i], &t->h[(i - 1) / 2]);
        return;
    }
    if (t->cap == 0 || busy(p) <= busy(&t->h[0])) {
        pathstat_fold(rest, p);
        return;
    }
    pathstat_fold(rest, &t->h[0]);
    t->h[0] = *p;
    sift_down(t, 0);
}

/* The bytes of the open links on list h onto their paths. */
static void count_list(struct dlist *h)
{
    for (struct dlist *d = h->next; d != h; d = d->next) {
        struct link *k = CONTAINER(d, struct link, node);

        if (k->flags & LF_CLOSING)
            continue;
        k->p->ps.live[0] += k->bytes[0];
        k->p->ps.live[1] += k->bytes[1];
        k->p->ps.links++;
    }
}

/* Open links' bytes onto their paths' scratch counters. */
static void count_live(struct shard *s)
{
    struct map_iter it;
    struct map_entry *e;

    for (map_iter_init(&it, &s->paths); (e = map_iter_next(&it));) {
        struct lpath *l = CONTAINER(e, struct lpath, me);

        memset(l->ps.live, 0, sizeof(l->ps.live));
        l->ps.links = 0;
    }
    count_list(&s->links);
    count_list(&s->ready); /* the links whose pump budget ran out */
}

static void publish(struct shard *s, const struct top *t, const struct path_stat *rest)
{
    pthread_mutex_lock(&s->pstat.lock);
    memcpy(s->pstat.top, t->h, (size_t)t->len * sizeof(*t->h));
    s->pstat.n = t->len;
    s->pstat.rest = *rest;
    pthread_mutex_unlock(&s->pstat.lock);
}

/* One snapshot: the busiest paths and the rest folded into one row. */
static void gather(struct shard *s)
{
    struct path_stat heap[PATHSTAT_TOP_MAX] = {0}, rest = {0};
    long cap = s->conf.status_top_paths;
    struct top t = {.h = heap, .cap = cap < PATHSTAT_TOP_MAX ? (int)cap : PATHSTAT_TOP_MAX};
    struct map_iter it;
    struct map_entry *e;

    count_live(s);
    for (map_iter_init(&it, &s->paths); (e = map_iter_next(&it));) {
        struct lpath *l = CONTAINER(e, struct lpath, me);
        struct path_stat p = {.up = l->ps.done[0] + l->ps.live[0],
                              .down = l->ps.done[1] + l->ps.live[1],
                              .waiting = (uint64_t)l->nwaiting,
                              .links = l->ps.links,
                              .listeners = (uint64_t)l->nlive,
                              .paths = 1};
        size_t n = l->path_len < PATHSTAT_PATH_MAX ? l->path_len : PATHSTAT_PATH_MAX - 1;

        memcpy(p.path, l->path, n);
        p.path[n] = '\0';
        top_offer(&t, &p, &rest);
    }
    qsort(t.h, (size_t)t.len, sizeof(*t.h), busier_first);
    publish(s, &t, &rest);
}

/* Every loop turn: cheap until a period has passed (the 4 KiB heap is
 * zeroed only then; it cost 6% of the relay's instructions per tunnel). */
void pathstat_tick(struct shard *s)
{
    if (s->now < s->pstat.next_ms) {
        s->pstat.pending = true;
        return;
    }
    s->pstat.pending = false;
    s->pstat.next_ms = s->now + PATHSTAT_PERIOD_MS;
    gather(s);
}

int pathstat_wait_ms(const struct shard *s, int t)
{
    uint64_t left;

    if (!s->pstat.pending)
        return t;
    left = s->pstat.next_ms > s->now ? s->pstat.next_ms - s->now : 0;
    return t < 0 || (uint64_t)t > left ? (int)left : t;
}

void pathstat_link_closed(struct lpath *p, uint64_t up, uint64_t down)
{
    p->ps.done[0] += up;
    p->ps.done[1] += down;
}

int pathstat_copy(struct pathstat *ps, struct path_stat *top, struct path_stat *rest)
{
    int n;

    pthread_mutex_lock(&ps->lock);
    n = ps->n;
    memcpy(top, ps->top, (size_t)n * sizeof(*top));
    *rest = ps->rest;
    pthread_mutex_unlock(&ps->lock);
    return n;
}

int pathstat_init(struct pathstat *ps)
{
    memset(ps, 0, sizeof(*ps));
    return -pthread_mutex_init(&ps->lock, NULL);
}

void pathstat_fini(struct pathstat *ps)
{
    pthread_mutex_destroy(&ps->lock);
}
