/* The per-shard pipe pool: reuse of empty pipes, closing of pipes given
 * back with data, the max_pipes limit and the idle cap. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "engine/pipepool.h"

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

Test(pipepool, get_gives_a_nonblocking_cloexec_pipe)
{
    struct pipepool p;
    int fds[2];
    char c = 'x';

    pipepool_init(&p, 4, 64 * 1024);
    cr_assert_eq(pipepool_get(&p, fds), 0);
    cr_assert_eq(p.live, 1);
    cr_assert(fcntl(fds[0], F_GETFL) & O_NONBLOCK);
    cr_assert(fcntl(fds[1], F_GETFD) & FD_CLOEXEC);
    cr_assert_eq(write(fds[1], &c, 1), 1);
    cr_assert_eq(read(fds[0], &c, 1), 1);
    cr_assert_eq(read(fds[0], &c, 1), -1, "empty and nonblocking");
    cr_assert_eq(errno, EAGAIN);
    pipepool_put(&p, fds, true);
    cr_assert_eq(fds[0], -1, "put clears the caller's fds");
    pipepool_fini(&p);
    cr_assert_eq(p.live, 0);
}

Test(pipepool, empty_pipe_is_reused)
{
    struct pipepool p;
    int a[2], b[2];

    pipepool_init(&p, 4, 64 * 1024);
    cr_assert_eq(pipepool_get(&p, a), 0);
    int r0 = a[0], w0 = a[1];

    pipepool_put(&p, a, true);
    cr_assert_eq(p.nidle, 1);
    cr_assert_eq(pipepool_get(&p, b), 0);
    cr_assert_eq(b[0], r0, "the idle pipe comes back");
    cr_assert_eq(b[1], w0);
    cr_assert_eq(p.created, 1, "no second pipe created");
    pipepool_put(&p, b, true);
    pipepool_fini(&p);
}

Test(pipepool, pipe_with_data_is_closed_not_reused)
{
    struct pipepool p;
    int a[2], r0, w0;

    pipepool_init(&p, 4, 64 * 1024);
    cr_assert_eq(pipepool_get(&p, a), 0);
    r0 = a[0];
    w0 = a[1];
    cr_assert_eq(write(a[1], "data", 4), 4);
    pipepool_put(&p, a, false);
    cr_assert_eq(p.nidle, 0);
    cr_assert_eq(p.live, 0);
    cr_assert_not(fd_open(r0), "closed");
    cr_assert_not(fd_open(w0), "closed");
    pipepool_fini(&p);
}

Test(pipepool, max_pipes_is_a_hard_limit)
{
    struct pipepool p;
    int a[2], b[2], c[2];

    pipepool_init(&p, 2, 64 * 1024);
    cr_assert_eq(pipepool_get(&p, a), 0);
    cr_assert_eq(pipepool_get(&p, b), 0);
    cr_assert_eq(pipepool_get(&p, c), -ENOSPC);
    pipepool_put(&p, a, true);
    cr_assert_eq(pipepool_get(&p, c), 0, "an idle pipe is given even at the max");
    pipepool_put(&p, b, false);
    pipepool_put(&p, c, true);
    pipepool_fini(&p);
    cr_assert_eq(p.live, 0);
}

Test(pipepool, max_zero_never_splices)
{
    struct pipepool p;
    int a[2];

    pipepool_init(&p, 0, 64 * 1024);
    cr_assert_eq(pipepool_get(&p, a), -ENOSPC);
    cr_assert_eq(p.live, 0);
    pipepool_fini(&p);
}

Test(pipepool, idle_pipes_are_capped)
{
    enum { N = PIPEPOOL_IDLE_MAX + 3 };
    static int fds[N][2];
    struct pipepool p;

    pipepool_init(&p, N, 4096);
    for (int i = 0; i < N; i++)
        cr_assert_eq(pipepool_get(&p, fds[i]), 0);
    cr_assert_eq(p.live, N);
    for (int i = 0; i < N; i++)
        pipepool_put(&p, fds[i], true);
    cr_assert_eq(p.nidle, PIPEPOOL_IDLE_MAX);
    cr_assert_eq(p.live, PIPEPOOL_IDLE_MAX, "the extra ones are closed");
    pipepool_fini(&p);
    cr_assert_eq(p.live, 0);
    cr_assert_eq(p.nidle, 0);
}

Test(pipepool, size_is_applied_when_allowed)
{
    struct pipepool p;
    int a[2];

    pipepool_init(&p, 1, 128 * 1024);
    cr_assert_eq(pipepool_get(&p, a), 0);
    if (!p.size_failed)
        cr_assert_geq(fcntl(a[0], F_GETPIPE_SZ), 128 * 1024);
    else
        cr_log_warn("F_SETPIPE_SZ refused here (pipe-user-pages limit): size not checked");
    pipepool_put(&p, a, true);
    pipepool_fini(&p);
}
