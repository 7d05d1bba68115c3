/* anet: socket, clock and file helpers (see anet.h). Stateless. */
#include "net/anet.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ANET_ULONG_TEXT 64 /* room for a number and a newline in a /proc file */

uint64_t anet_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t anet_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int anet_set_nonblock(int fd, bool nonblock)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl == -1)
        return -errno;
    fl = nonblock ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
    return fcntl(fd, F_SETFL, fl) == -1 ? -errno : 0;
}

int anet_set_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFD);

    if (fl == -1 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) == -1)
        return -errno;
    return 0;
}

static int set_int_opt(int fd, int level, int name, int v)
{
    return setsockopt(fd, level, name, &v, sizeof(v)) == -1 ? -errno : 0;
}

int anet_tcp_nodelay(int fd)
{
    return set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
}

int anet_defer_accept(int fd, int secs)
{
    return set_int_opt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, secs);
}

int anet_linger_zero(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    return setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == -1 ? -errno : 0;
}

int anet_sock_error(int fd)
{
    int soerr = 0;
    socklen_t sl = sizeof(soerr);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == -1)
        return -errno;
    return soerr ? -soerr : 0;
}

int anet_tcp_socket(int family, unsigned flags)
{
    int type = SOCK_STREAM | SOCK_CLOEXEC | (flags & ANET_NONBLOCK ? SOCK_NONBLOCK : 0);
    int fd = socket(family, type, 0);

    if (fd == -1)
        return -errno;
    /* Best effort: a socket without TCP_NODELAY still works. */
    if (flags & ANET_NODELAY)
        (void)anet_tcp_nodelay(fd);
    return fd;
}

int anet_tcp_connect_start(const struct sockaddr *sa, socklen_t len, unsigned flags)
{
    int fd = anet_tcp_socket(sa->sa_family, flags), rc;

    if (fd < 0)
        return fd;
    if (connect(fd, sa, len) == -1 && !(errno == EINPROGRESS && (flags & ANET_NONBLOCK))) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int anet_connect_wait(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int n;

    do {
        n = poll(&p, 1, timeout_ms);
    } while (n == -1 && errno == EINTR);
    if (n == -1)
        return -errno;
    if (n == 0)
        return -ETIMEDOUT;
    return anet_sock_error(fd);
}

int anet_tcp_listen(struct sockaddr_storage *sa, socklen_t *len, int backlog, unsigned flags)
{
    int fd = anet_tcp_socket(sa->ss_family, flags), rc;

    if (fd < 0)
        return fd;
    (void)set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if ((flags & ANET_REUSEPORT) && (rc = set_int_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1)) < 0)
        goto fail;
    if ((flags & ANET_V6ONLY) && sa->ss_family == AF_INET6 &&
        (rc = set_int_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1)) < 0)
        goto fail;
    if (bind(fd, (struct sockaddr *)sa, *len) == -1 || listen(fd, backlog) == -1 ||
        getsockname(fd, (struct sockaddr *)sa, len) == -1) {
        rc = -errno;
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return rc;
}

int anet_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    ssize_t w;

    while (n > 0) {
        w = write(fd, c, n);
        if (w == -1 && errno == EINTR)
            continue;
        if (w == -1)
            return -errno;
        if (w == 0)
            return -EIO;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int anet_send_nb(int fd, const void *buf, size_t len, size_t *off)
{
    const char *c = buf;
    ssize_t n;

    while (*off < len) {
        n = send(fd, c + *off, len - *off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
        *off += (size_t)n;
    }
    return 0;
}

static int read_fd(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    ssize_t n;

    for (;;) {
        n = read(fd, buf + len, cap - len);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1)
            return -errno;
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == cap)
            return -EFBIG; /* no room left for the NUL */
    }
    buf[len] = '\0';
    return (int)len;
}

int anet_read_file(const char *path, char *buf, size_t cap, unsigned *st_mode)
{
    struct stat st;
    int fd, rc;

    if (cap == 0 || cap > ANET_FILE_MAX)
        return -EINVAL;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd == -1)
        return -errno;
    if (fstat(fd, &st) == -1) {
        rc = -errno;
        goto out;
    }
    if (st_mode != NULL)
        *st_mode = (unsigned)st.st_mode;
    if (!S_ISREG(st.st_mode)) {
        rc = -EINVAL;
        goto out;
    }
    rc = read_fd(fd, buf, cap);
out:
    close(fd);
    return rc;
}

int anet_read_ulong(const char *path, unsigned long *out)
{
    char text[ANET_ULONG_TEXT], *end;
    unsigned long v;
    int rc = anet_read_file(path, text, sizeof(text), NULL);

    if (rc < 0)
        return rc;
    errno = 0;
    v = strtoul(text, &end, 10);
    if (end == text || errno != 0)
        return -EINVAL;
    *out = v;
    return 0;
}
