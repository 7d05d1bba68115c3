#include "engine/pipepool.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

void pipepool_init(struct pipepool *p, long max, size_t size)
{
    p->nidle = 0;
    p->live = 0;
    p->max = max;
    p->size = size;
    p->size_failed = false;
    p->created = p->failed = 0;
}

void pipepool_fini(struct pipepool *p)
{
    while (p->nidle > 0) {
        p->nidle--;
        close(p->idle[p->nidle][0]);
        close(p->idle[p->nidle][1]);
        p->live--;
    }
}

int pipepool_get(struct pipepool *p, int fds[2])
{
    if (p->nidle > 0) {
        p->nidle--;
        fds[0] = p->idle[p->nidle][0];
        fds[1] = p->idle[p->nidle][1];
        return 0;
    }
    if (p->live >= p->max)
        return -ENOSPC;
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1) {
        p->failed++;
        return -errno;
    }
    /* Past fs.pipe-user-pages-soft an unprivileged user's pipes shrink and
     * F_SETPIPE_SZ fails: keep the pipe at its default size and stop asking. */
    if (!p->size_failed && fcntl(fds[0], F_SETPIPE_SZ, (int)p->size) == -1)
        p->size_failed = true;
    p->live++;
    p->created++;
    return 0;
}

void pipepool_put(struct pipepool *p, int fds[2], bool empty)
{
    if (empty && p->nidle < PIPEPOOL_IDLE_MAX) {
        p->idle[p->nidle][0] = fds[0];
        p->idle[p->nidle][1] = fds[1];
        p->nidle++;
    } else {
        close(fds[0]);
        close(fds[1]);
        p->live--;
    }
    fds[0] = fds[1] = -1;
}
