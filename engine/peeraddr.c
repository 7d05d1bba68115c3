/* The client's address behind a trusted front end (see peeraddr.h). */
#include "engine/peeraddr.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define V2_SIG_FIRST '\r' /* PROXY v2 starts "\r\n\r\n\0\r\nQUIT\n"; v1 "PROXY " */

void peeraddr_store(struct sockaddr_storage *out, const struct sockaddr *sa)
{
    memset(out, 0, sizeof(*out));
    memcpy(out, sa,
           sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
}

/* A v2 header announces its length in bytes 14-15: refuse one that cannot
 * fit before waiting for it. */
static int proxy_too_long(const unsigned char *b, size_t len)
{
    return len >= PROXYPROTO_V2_HDR && b[0] == V2_SIG_FIRST &&
           PROXYPROTO_V2_HDR + ((size_t)b[14] << 8 | b[15]) > PEERADDR_PROXY_MAX;
}

int peeraddr_proxy_read(int fd, peeraddr_recv_fn *rcv, struct proxyproto *out)
{
    char buf[PEERADDR_PROXY_MAX];
    ssize_t n, k;
    int r;

    do
        n = rcv(fd, buf, sizeof(buf), MSG_PEEK);
    while (n == -1 && errno == EINTR);
    if (n == -1)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    if (n == 0)
        return -EPIPE;
    if (proxy_too_long((const unsigned char *)buf, (size_t)n))
        return -EPROTO;
    r = proxyproto_parse(buf, (size_t)n, out);
    if (r == -2)
        return (size_t)n < sizeof(buf) ? 0 : -EPROTO;
    if (r < 0)
        return -EPROTO;
    /* Take exactly the header: the bytes were peeked, so they are there. */
    do
        k = rcv(fd, buf, (size_t)r, 0);
    while (k == -1 && errno == EINTR);
    if (k == -1)
        return -errno;
    return k == r ? 1 : -EPROTO;
}

/* The values of every header line named name, joined by commas in order
 * (one line: no copy). 0 (*owned set when the caller must free *v), 1 when
 * the head has no such line, -ENOMEM. */
static int header_list(const struct http1_request *req, const char *name, const char **v,
                       size_t *len, char **owned)
{
    size_t nl = strlen(name), total = 0, count = 0, i;
    const struct http1_header *one = NULL;
    char *p;

    *owned = NULL;
    for (i = 0; i < req->num_headers; i++) {
        const struct http1_header *h = &req->headers[i];

        if (h->name_len == nl && strncasecmp(h->name, name, nl) == 0) {
            total += h->value_len + 1;
            count++;
            one = h;
        }
    }
    if (count == 0)
        return 1;
    if (count == 1) {
        *v = one->value;
        *len = one->value_len;
        return 0;
    }
    p = malloc(total);
    if (p == NULL)
        return -ENOMEM;
    *owned = p;
    *v = p;
    for (i = 0; i < req->num_headers; i++) {
        const struct http1_header *h = &req->headers[i];

        if (h->name_len == nl && strncasecmp(h->name, name, nl) == 0) {
            if (p != *owned)
                *p++ = ',';
            memcpy(p, h->value, h->value_len);
            p += h->value_len;
        }
    }
    *len = (size_t)(p - *owned);
    return 0;
}

int peeraddr_forwarded(const struct http1_request *req, const struct fwd_cidr *l, size_t n,
                       struct sockaddr_storage *out)
{
    const char *v = NULL;
    char *owned = NULL;
    size_t len = 0;
    int r;

    /* X-Forwarded-For first: the common front ends (nginx's
     * $proxy_add_x_forwarded_for, HAProxy's option forwardfor) append to it
     * and pass a client's own Forwarded through untouched. Forwarded only
     * when there is no X-Forwarded-For line at all (never when joining the
     * lines failed: that would let the client's header decide). */
    r = header_list(req, "X-Forwarded-For", &v, &len, &owned);
    if (r == 0)
        r = fwd_xff(v, len, l, n, out);
    else if (r == 1 && header_list(req, "Forwarded", &v, &len, &owned) == 0)
        r = fwd_forwarded(v, len, l, n, out);
    else
        r = -1;
    free(owned);
    return r < 0 ? -1 : 0;
}
