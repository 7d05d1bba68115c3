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
#include "sdk/sdk_int.h"

#define KEYS_ERR_MAX 256 /* keys_load_for's message, never shown: the code is the answer */

int wire_connect_start(const struct rapi_url *u, struct rapi_error *err)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[RELAY_PORT_STR];
    int rc;

    snprintf(port, sizeof(port), "%u", (unsigned)u->port);
    rc = getaddrinfo(u->host, port, &hints, &res);
    if (rc != 0) {
        err_set(err, RAPI_E_CONNECT, EHOSTUNREACH, "cannot resolve %s: %s", u->host,
                gai_strerror(rc));
        return -EHOSTUNREACH;
    }
    rc = anet_tcp_connect_start(res->ai_addr, res->ai_addrlen, ANET_NONBLOCK | ANET_NODELAY);
    if (rc < 0)
        err_set(err, rc == -EMFILE || rc == -ENFILE ? RAPI_E_SYSTEM : RAPI_E_CONNECT, -rc,
                "connect to %s:%u: %s", u->host, (unsigned)u->port, strerror(-rc));
    freeaddrinfo(res);
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
