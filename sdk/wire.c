/* Relay sockets, request heads, WebRoute-IDs and keys for the handshake
 * machine (handshake.c). Functions act on the caller's fd and buffers only. */
#define RAPI_BUILDING 1
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "auth/keys.h"
#include "net/anet.h"
#include "proto/addr.h"
#include "sdk/sdk_int.h"

#define KEYS_ERR_MAX 256 /* keys_load_for's message, never shown: the code is the answer */

int wire_resolve(const struct rapi_url *u, struct relay_addr *out, size_t max,
                 struct rapi_error *err)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL, *ai;
    char port[RELAY_PORT_STR];
    size_t n = 0, i;
    int rc;

    snprintf(port, sizeof(port), "%u", (unsigned)u->port);
    rc = getaddrinfo(u->host, port, &hints, &res);
    if (rc != 0) {
        err_set(err, RAPI_E_CONNECT, EHOSTUNREACH, "cannot resolve %s: %s", u->host,
                gai_strerror(rc));
        return -EHOSTUNREACH;
    }
    for (ai = res; ai != NULL && n < max; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(out[n].sa))
            continue;
        memset(&out[n], 0, sizeof(out[n]));
        memcpy(&out[n].sa, ai->ai_addr, ai->ai_addrlen);
        out[n].len = ai->ai_addrlen;
        for (i = 0; i < n && !wire_addr_eq(&out[i], &out[n]); i++)
            ;
        if (i == n) /* not a duplicate (a name listed twice, say) */
            n++;
    }
    freeaddrinfo(res);
    if (n == 0) {
        err_set(err, RAPI_E_CONNECT, EHOSTUNREACH, "cannot resolve %s: no address", u->host);
        return -EHOSTUNREACH;
    }
    return (int)n;
}

bool wire_addr_eq(const struct relay_addr *a, const struct relay_addr *b)
{
    return a->len == b->len && memcmp(&a->sa, &b->sa, a->len) == 0;
}

void wire_where(const struct rapi_url *u, const struct relay_addr *a, char *out, size_t cap)
{
    char hp[URL_HOST_MAX + 16], as[ADDR_STR_MAX];

    if (url_hostport(u, hp, sizeof(hp)) < 0)
        snprintf(hp, sizeof(hp), "%s", "the relay");
    if (a == NULL || a->len == 0 ||
        addr_format((const struct sockaddr *)&a->sa, as, sizeof(as)) < 0 || strcmp(as, hp) == 0)
        snprintf(out, cap, "%s", hp);
    else
        snprintf(out, cap, "%s (%s)", hp, as);
}

int wire_connect_addr(const struct relay_addr *a, const char *where, struct rapi_error *err)
{
    int rc = anet_tcp_connect_start((const struct sockaddr *)&a->sa, a->len,
                                    ANET_NONBLOCK | ANET_NODELAY);

    if (rc < 0)
        err_set(err, rc == -EMFILE || rc == -ENFILE ? RAPI_E_SYSTEM : RAPI_E_CONNECT, -rc,
                "connect to %s: %s", where, strerror(-rc));
    return rc;
}

/* The parts of a request head a relay URL gives: path and Host. */
static int head_from_url(struct wr_head *h, const struct rapi_url *u, const char *key, char *hp,
                         size_t hp_cap)
{
    if (url_hostport(u, hp, hp_cap) < 0)
        return -ENOSPC;
    h->path = u->path;
    h->host = hp;
    h->key = key;
    h->key_len = strlen(key);
    return 0;
}

int wire_ws_request(char *out, size_t cap, const struct rapi_url *u, const char *key,
                    const char *ws_key)
{
    char hp[URL_HOST_MAX + 16], origin[URL_HOST_MAX + 32];
    struct wr_head h = {.ws_key = ws_key};

    if (head_from_url(&h, u, key, hp, sizeof(hp)) < 0)
        return -ENOSPC;
    /* Origin: the original PHP relay refuses WebSocket upgrades without it. */
    snprintf(origin, sizeof(origin), "%s://%s", u->tls ? "https" : "http", hp);
    h.origin = origin;
    return wr_build_ws_request(out, cap, &h);
}

int wire_wr_request(char *out, size_t cap, const struct rapi_url *u, const char *key,
                    const char *id, long timeout)
{
    char hp[URL_HOST_MAX + 16];
    struct wr_head h = {.id = id, .timeout = timeout};

    if (head_from_url(&h, u, key, hp, sizeof(hp)) < 0)
        return -ENOSPC;
    return wr_build_wr_request(out, cap, &h);
}

int wire_new_id(char out[WR_ID_LEN + 1])
{
    int rc = keys_random(out, WR_ID_LEN);

    out[rc < 0 ? 0 : WR_ID_LEN] = '\0';
    return rc;
}

/* The key file rules are the relay's (auth/keys.h): one reader for all. */
RAPI_API int rapi_key_load(const char *path, enum rapi_role role, char *out, size_t cap)
{
    enum keys_need need = role == RAPI_ROLE_SERVER ? KEYS_NEED_SERVER : KEYS_NEED_CLIENT;
    struct keys k;
    char err[KEYS_ERR_MAX];
    int rc;

    if (path == NULL || out == NULL || cap == 0 ||
        (role != RAPI_ROLE_SERVER && role != RAPI_ROLE_CLIENT))
        return -EINVAL;
    rc = keys_load_for(path, need, &k, err, sizeof(err));
    if (rc == 0)
        rc = keys_copy(&k, need, out, cap);
    keys_wipe(&k);
    return rc;
}
