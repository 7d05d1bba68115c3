/* Relay sockets, request heads and WebRoute-IDs for the handshake machine
 * (handshake.c). Functions act on the caller's fd and buffers only. */
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

int wire_ws_request(char *out, size_t cap, const struct rapi_url *u, const char *key,
                    const char *ws_key)
{
    char hp[URL_HOST_MAX + 16];
    int n;

    if (url_hostport(u, hp, sizeof(hp)) < 0)
        return -ENOSPC;
    /* Origin: the original PHP relay refuses WebSocket upgrades without it. */
    n = snprintf(out, cap,
                 "GET %s HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "Origin: %s://%s\r\n"
                 "Connection: keep-alive, Upgrade\r\n"
                 "X-Remoted-APIKey: %s\r\n"
                 "Sec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "Upgrade: websocket\r\n"
                 "\r\n",
                 u->path, hp, u->tls ? "https" : "http", hp, key, ws_key);
    return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

int wire_wr_request(char *out, size_t cap, const struct rapi_url *u, const char *key,
                    const char *id, long timeout)
{
    char hp[URL_HOST_MAX + 16], tmo[48] = "";
    int n;

    if (url_hostport(u, hp, sizeof(hp)) < 0)
        return -ENOSPC;
    if (timeout > 0)
        snprintf(tmo, sizeof(tmo), "WebRoute-Timeout: %ld\r\n", timeout);
    n = snprintf(out, cap,
                 "GET %s HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "Connection: keep-alive, Upgrade\r\n"
                 "X-Remoted-APIKey: %s\r\n"
                 "WebRoute-Version: 1\r\n"
                 "WebRoute-ID: %s\r\n"
                 "%s"
                 "Upgrade: webroute\r\n"
                 "\r\n",
                 u->path, hp, key, id, tmo);
    return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

int wire_new_id(char out[WR_ID_LEN + 1])
{
    int rc = keys_random(out, WR_ID_LEN);

    out[rc < 0 ? 0 : WR_ID_LEN] = '\0';
    return rc;
}
