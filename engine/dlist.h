/* Intrusive doubly-linked list: the node lives in its owner, found again
 * with CONTAINER(). No allocation, no locking; the owner's thread only. */
#ifndef RAPI_ENGINE_DLIST_H
#define RAPI_ENGINE_DLIST_H

#include <stddef.h>

/* A node; a head is a node pointing at itself. */
struct dlist {
    struct dlist *prev, *next;
};

static inline void dlist_init(struct dlist *h)
{
    h->prev = h->next = h;
}

static inline int dlist_empty(const struct dlist *h)
{
    return h->next == h;
}

static inline void dlist_add_tail(struct dlist *h, struct dlist *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static inline void dlist_del(struct dlist *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

/* The struct of `type` whose member `field` is at ptr. */
#define CONTAINER(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

#endif
