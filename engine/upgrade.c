/* The handover channel and starting the new process: see engine/upgrade.h. */
#include "engine/upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

extern char **environ;

#define UPG_ENV_MAX 4096 /* environment entries passed on */

static char upg_exe[PATH_MAX];
static char **upg_argv;

int upg_exe_init(char **argv)
{
    ssize_t n = readlink("/proc/self/exe", upg_exe, sizeof(upg_exe) - 1);

    if (n <= 0)
        return n == 0 ? -ENOENT : -errno;
    upg_exe[n] = '\0';
    upg_argv = argv;
    return 0;
}

/* Blocking sends and receives, each bounded. */
static int channel_setup(int fd, long timeout_s)
{
    struct timeval tv = {.tv_sec = timeout_s};
    int buf = UPG_SOCKBUF;

    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == -1)
        return -errno;
    return 0;
}

int upg_channel(int sv[2], long timeout_s)
{
    int e;

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
        return -errno;
    e = channel_setup(sv[0], timeout_s);
    if (e == 0)
        e = channel_setup(sv[1], timeout_s);
    if (e < 0) {
        close(sv[0]);
        close(sv[1]);
    }
    return e;
}

/* Whether environment entry e sets the variable name. */
static bool env_is(const char *e, const char *name)
{
    size_t n = strlen(name);

    return strncmp(e, name, n) == 0 && e[n] == '=';
}

/* environ without any UPG_ENV, plus UPG_ENV=UPG_CHILD_FD; NULL-terminated,
 * in env[0..cap). WATCHDOG_PID goes too: it names the old process, and
 * the new one is the one to ping once it is the service's main pid. */
static int child_env(char **env, size_t cap, char *mine, size_t mine_len)
{
    size_t n = 0;

    snprintf(mine, mine_len, "%s=%d", UPG_ENV, UPG_CHILD_FD);
    for (char **e = environ; e && *e; e++) {
        if (env_is(*e, UPG_ENV) || env_is(*e, "WATCHDOG_PID"))
            continue;
        if (n + 2 >= cap)
            return -E2BIG;
        env[n++] = *e;
    }
    env[n++] = mine;
    env[n] = NULL;
    return 0;
}

/* The child's attributes: empty signal mask, default handlers for the
 * signals the relay blocks or ignores. */
static int spawn_attr(posix_spawnattr_t *at)
{
    sigset_t none, def;
    int e = posix_spawnattr_init(at);

    if (e)
        return -e;
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    sigaddset(&def, SIGTERM);
    sigaddset(&def, SIGINT);
    sigaddset(&def, SIGHUP);
    sigaddset(&def, SIGUSR2);
    e = posix_spawnattr_setsigmask(at, &none);
    if (!e)
        e = posix_spawnattr_setsigdefault(at, &def);
    if (!e)
        e = posix_spawnattr_setflags(at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    return -e;
}

int upg_spawn(int child_end, pid_t *pid)
{
    static char *env[UPG_ENV_MAX]; /* acceptor thread only */
    static char mine[sizeof(UPG_ENV) + 16];
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    int fd = child_end, e;

    if (!upg_argv)
        return -ENOEXEC;
    e = child_env(env, UPG_ENV_MAX, mine, sizeof(mine));
    if (e < 0)
        return e;
    /* dup2 onto itself would keep close-on-exec: move it first. */
    if (fd == UPG_CHILD_FD && (fd = fcntl(child_end, F_DUPFD_CLOEXEC, UPG_CHILD_FD + 1)) == -1)
        return -errno;
    e = spawn_attr(&at);
    if (e < 0)
        goto out;
    e = -posix_spawn_file_actions_init(&fa);
    if (e == 0)
        e = -posix_spawn_file_actions_adddup2(&fa, fd, UPG_CHILD_FD);
    if (e == 0)
        e = -posix_spawn_file_actions_addclosefrom_np(&fa, UPG_CHILD_FD + 1);
    if (e == 0)
        e = -posix_spawn(pid, upg_exe, &fa, &at, upg_argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
out:
    if (fd != child_end)
        close(fd);
    return e;
}

int upg_child_channel(long timeout_s)
{
    const char *v = getenv(UPG_ENV);
    int fd, type = 0;
    socklen_t len = sizeof(type);
    char *end;
    long n;

    if (!v)
        return -1;
    n = strtol(v, &end, 10);
    unsetenv(UPG_ENV); /* not for a process we start in turn */
    if (*end || n < 0 || n > INT_MAX)
        return -EINVAL;
    fd = (int)n;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1 || type != SOCK_SEQPACKET)
        return -EBADF;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) == -1)
        return -errno;
    n = channel_setup(fd, timeout_s);
    return n < 0 ? (int)n : fd;
}

/* One message: len bytes of buf and nfds descriptors. 0 or -errno. */
static int send_encoded(int fd, uint8_t *buf, size_t len, const int *fds, int nfds)
{
    union {
        char b[CMSG_SPACE(sizeof(int) * HO_FDS_MAX)];
        struct cmsghdr align;
    } cm;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    ssize_t k;

    if (nfds > 0) {
        struct cmsghdr *c;

        memset(&cm, 0, sizeof(cm));
        mh.msg_control = cm.b;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    do
        k = sendmsg(fd, &mh, MSG_NOSIGNAL);
    while (k == -1 && errno == EINTR);
    if (k == -1)
        return errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
    return 0;
}

int upg_send(int fd, const struct ho_rec *r, const int *fds, int nfds)
{
    /* On the heap, only while an upgrade runs: a thread-local buffer of
     * HO_REC_MAX would be zeroed, so resident, in every thread's TLS
     * block for the process's whole life (idle RSS, issue 13). */
    uint8_t *buf;
    long n;
    int e;

    if (nfds > HO_FDS_MAX)
        return -EMSGSIZE;
    buf = malloc(HO_REC_MAX);
    if (!buf)
        return -ENOMEM;
    n = ho_encode(r, buf, HO_REC_MAX);
    e = n < 0 ? -EMSGSIZE : send_encoded(fd, buf, (size_t)n, fds, nfds);
    free(buf);
    return e;
}

int upg_send_type(int fd, enum ho_type t)
{
    struct ho_rec r;

    ho_rec_init(&r, t);
    return upg_send(fd, &r, NULL, 0);
}

/* The fds of a received message into fds[]; their count, or -EPROTO (all
 * closed) when more than HO_FDS_MAX came or the control data was cut. */
static int take_fds(struct msghdr *mh, int fds[HO_FDS_MAX])
{
    int n = 0, bad = (mh->msg_flags & MSG_CTRUNC) != 0;

    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        size_t k;

        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;

            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (n < HO_FDS_MAX)
                fds[n++] = fd;
            else {
                close(fd);
                bad = 1;
            }
        }
    }
    if (bad) {
        for (int i = 0; i < n; i++)
            close(fds[i]);
        return -EPROTO;
    }
    return n;
}

int upg_recv(int fd, uint8_t *buf, size_t cap, struct ho_rec *r, int fds[HO_FDS_MAX], int dontwait)
{
    union {
        char b[CMSG_SPACE(sizeof(int) * HO_FDS_MAX)];
        struct cmsghdr align;
    } cm;
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof(cm.b)};
    int nn, ns, nf, got;
    ssize_t k;

    do
        k = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | (dontwait ? MSG_DONTWAIT : 0));
    while (k == -1 && errno == EINTR);
    if (k == -1)
        return errno == EWOULDBLOCK && !dontwait ? -ETIMEDOUT : -errno;
    if (k == 0)
        return -EPIPE;
    got = take_fds(&mh, fds);
    if (got < 0)
        return got;
    if ((mh.msg_flags & MSG_TRUNC) || ho_decode(buf, (size_t)k, r) < 0 ||
        ho_shape(r->type, &nn, &ns, &nf) < 0 || nf != got) {
        for (int i = 0; i < got; i++)
            close(fds[i]);
        return -EPROTO;
    }
    return (int)k;
}

void upg_str(const struct ho_rec *r, int i, char *dst, size_t cap)
{
    size_t n = r->str[i].len < cap - 1 ? r->str[i].len : cap - 1;

    if (n)
        memcpy(dst, r->str[i].p, n);
    dst[n] = '\0';
}
