/* The operator's endpoint: /healthz and /metrics (Prometheus text format).
 * Runs on the acceptor thread; reads other threads' counters with relaxed
 * atomic loads, so the figures are consistent per counter, not as a set. */
#include "engine/admin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/keys.h"
#include "engine/pathstat.h"
#include "engine/shard.h"
#include "engine/status_page.h"
#include "net/anet.h"
#include "proto/http1.h"
#include "proto/json.h"

#define JSON_ESC_WORST 6           /* bytes of one escape, the worst case per byte */
#define ADMIN_BODY_MAX (64 * 1024) /* the largest answer body (status.json, top 50) */

static const int statuses[] = STATS_STATUSES;

int stats_status_index(int status)
{
    for (int i = 0; i < (int)(sizeof(statuses) / sizeof(statuses[0])); i++)
        if (statuses[i] == status)
            return i;
    return STATS_NSTATUS - 1;
}

struct out {
    char *p;
    size_t len, cap;
    bool overflow;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->overflow)
        return;
    va_start(ap, fmt);
    n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len)
        o->overflow = true;
    else
        o->len += (size_t)n;
}

static void metric(struct out *o, const char *name, const char *type, const char *help, uint64_t v)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
        (unsigned long long)v);
}

/* Sum of one shard_stats field over the shards. */
static uint64_t sum_field(struct relay *r, size_t off)
{
    uint64_t s = 0;

    for (int i = 0; i < r->nshards; i++)
        s += STAT_GET(*(_Atomic uint64_t *)((char *)&r->shards[i]->stats + off));
    return s;
}

#define SUM(field) sum_field(r, offsetof(struct shard_stats, field))

/* Open client and server sockets: nconn holds the admin ones too. */
static uint64_t client_conns(struct relay *r)
{
    return (uint64_t)(atomic_load(&r->nconn) - (long)STAT_GET(r->stats.admin_conns));
}

/* TLS listeners: completed handshakes by version, resumptions, failures
 * by reason (tls_err_name(), and "timeout" for header_timeout). */
static void render_tls(struct relay *r, struct out *o)
{
    static const char *const versions[STATS_TLS_NVERSIONS] = {"TLSv1.2", "TLSv1.3"};

    put(o, "# HELP rapi_tls_handshakes_total TLS handshakes completed, by version.\n"
           "# TYPE rapi_tls_handshakes_total counter\n");
    for (int i = 0; i < STATS_TLS_NVERSIONS; i++)
        put(o, "rapi_tls_handshakes_total{version=\"%s\"} %llu\n", versions[i],
            (unsigned long long)STAT_GET(r->stats.tls_versions[i]));
    metric(o, "rapi_tls_resumed_total", "counter",
           "TLS handshakes completed by resuming a session (ticket).",
           STAT_GET(r->stats.tls_resumed));
    put(o, "# HELP rapi_tls_handshake_failures_total TLS handshakes failed, by reason.\n"
           "# TYPE rapi_tls_handshake_failures_total counter\n");
    for (int i = TLS_ERR_NONE + 1; i < STATS_TLS_NFAILURES; i++)
        put(o, "rapi_tls_handshake_failures_total{reason=\"%s\"} %llu\n",
            i == STATS_TLS_TIMEOUT ? "timeout" : tls_err_name((enum tls_err)i),
            (unsigned long long)STAT_GET(r->stats.tls_failures[i]));
}

static void render_metrics(struct relay *r, struct out *o)
{
    metric(o, "rapi_connections", "gauge", "Open client and server sockets.", client_conns(r));
    metric(o, "rapi_admin_connections", "gauge", "Open admin endpoint sockets (this one too).",
           STAT_GET(r->stats.admin_conns));
    metric(o, "rapi_listeners", "gauge", "Registered listeners.", SUM(listeners));
    metric(o, "rapi_waiting_clients", "gauge", "Clients waiting for their dial-back.",
           SUM(waiting));
    metric(o, "rapi_links", "gauge", "Linked pairs open.", SUM(links));
    metric(o, "rapi_links_total", "counter", "Linked pairs made.", SUM(links_total));
    put(o,
        "# HELP rapi_bytes_total Bytes relayed on linked pairs.\n"
        "# TYPE rapi_bytes_total counter\n"
        "rapi_bytes_total{direction=\"client_to_server\"} %llu\n"
        "rapi_bytes_total{direction=\"server_to_client\"} %llu\n",
        (unsigned long long)SUM(bytes_up), (unsigned long long)SUM(bytes_down));
    metric(o, "rapi_pipes", "gauge", "Splice pipes open (pooled and in use).", SUM(pipes));
    metric(o, "rapi_copy_fallbacks_total", "counter",
           "Transfers that used a copy buffer because no pipe was available.", SUM(copy_fallbacks));
    metric(o, "rapi_dialback_timeouts_total", "counter",
           "Clients answered 504 because no dial-back came.", SUM(dialback_timeouts));
    metric(o, "rapi_clients_left_total", "counter", "Clients that hung up while waiting.",
           SUM(clients_left));
    metric(o, "rapi_reoffers_total", "counter",
           "Notifications sent again to another listener (dial-back late, listener gone).",
           SUM(reoffers));
    metric(o, "rapi_grace_waits_total", "counter",
           "Clients that waited for a listener to come back to their path (listener_grace).",
           SUM(grace_waits));
    metric(o, "rapi_grace_expiries_total", "counter",
           "Clients answered 502 because no listener came back within listener_grace.",
           SUM(grace_expiries));
    metric(o, "rapi_parked", "gauge", "Parked dial-backs waiting for a client.", SUM(parked));
    metric(o, "rapi_park_links_total", "counter",
           "Clients linked at once to a parked dial-back (no notification).", SUM(park_links));
    metric(o, "rapi_park_expiries_total", "counter",
           "Parked dial-backs closed unused after park_timeout.", SUM(park_expiries));
    metric(o, "rapi_park_drops_total", "counter",
           "Parked dial-backs closed because they sent bytes, hung up or their path closed.",
           SUM(park_drops));
    metric(o, "rapi_accepted_total", "counter", "Connections accepted.",
           STAT_GET(r->stats.accepted));
    metric(o, "rapi_header_timeouts_total", "counter",
           "Connections closed because their request head was not complete in time.",
           STAT_GET(r->stats.header_timeouts));
    render_tls(r, o);
    put(o,
        "# HELP rapi_proxy_rejects_total Connections closed on proxy_protocol sockets: a peer "
        "outside trusted_proxies, or a header that is not PROXY v1/v2.\n"
        "# TYPE rapi_proxy_rejects_total counter\n"
        "rapi_proxy_rejects_total{reason=\"untrusted\"} %llu\n"
        "rapi_proxy_rejects_total{reason=\"bad_header\"} %llu\n",
        (unsigned long long)STAT_GET(r->stats.proxy_untrusted),
        (unsigned long long)STAT_GET(r->stats.proxy_bad));
    put(o, "# HELP rapi_error_answers_total Error answers sent, by HTTP status.\n"
           "# TYPE rapi_error_answers_total counter\n");
    for (int i = 0; i < STATS_NSTATUS; i++) {
        uint64_t v = STAT_GET(r->stats.rejects[i]);

        if (i < STATS_NSTATUS - 1)
            put(o, "rapi_error_answers_total{status=\"%d\"} %llu\n", statuses[i],
                (unsigned long long)v);
        else
            put(o, "rapi_error_answers_total{status=\"other\"} %llu\n", (unsigned long long)v);
    }
    put(o,
        "# HELP rapi_info Build and runtime facts.\n# TYPE rapi_info gauge\n"
        "rapi_info{version=\"%s\",io=\"%s\",workers=\"%d\"} 1\n",
        RAPI_VERSION, r->be ? ev_backend_name(r->be) : "none", r->nshards);
}

static void put_path(struct out *o, const struct path_stat *p)
{
    char esc[PATHSTAT_PATH_MAX * JSON_ESC_WORST + 1];

    if (json_escape(esc, sizeof(esc), p->path, strlen(p->path)) < 0)
        esc[0] = '\0';
    put(o,
        "{\"path\":\"%s\",\"listeners\":%llu,\"waiting\":%llu,\"links\":%llu,\"up\":%llu,"
        "\"down\":%llu}",
        esc, (unsigned long long)p->listeners, (unsigned long long)p->waiting,
        (unsigned long long)p->links, (unsigned long long)p->up, (unsigned long long)p->down);
}

/* Every shard's busiest paths, merged: the top status_top_paths overall
 * and the rest summed (a path lives on one shard only). */
static void render_paths(struct relay *r, struct out *o)
{
    int cap = r->nshards * PATHSTAT_TOP_MAX, len = 0, n;
    struct path_stat *all = calloc((size_t)cap, sizeof(*all)), rest = {0};

    for (int i = 0; all && i < r->nshards; i++) {
        struct path_stat srest;

        len += pathstat_copy(&r->shards[i]->pstat, all + len, &srest);
        pathstat_fold(&rest, &srest);
    }
    n = all ? pathstat_select(all, len, (int)r->conf.status_top_paths, &rest) : 0;
    put(o, "\"paths\":[");
    for (int i = 0; i < n; i++) {
        put(o, i ? "," : "");
        put_path(o, &all[i]);
    }
    put(o,
        "],\"other\":{\"paths\":%llu,\"waiting\":%llu,\"links\":%llu,\"up\":%llu,"
        "\"down\":%llu}",
        (unsigned long long)rest.paths, (unsigned long long)rest.waiting,
        (unsigned long long)rest.links, (unsigned long long)rest.up, (unsigned long long)rest.down);
    free(all);
}

static void render_errors(struct relay *r, struct out *o)
{
    put(o, "\"errors\":{");
    for (int i = 0; i < STATS_NSTATUS - 1; i++)
        put(o, "\"%d\":%llu,", statuses[i], (unsigned long long)STAT_GET(r->stats.rejects[i]));
    put(o,
        "\"other\":%llu,\"no dial-back\":%llu,\"client left\":%llu,"
        "\"head timeout\":%llu}",
        (unsigned long long)STAT_GET(r->stats.rejects[STATS_NSTATUS - 1]),
        (unsigned long long)SUM(dialback_timeouts), (unsigned long long)SUM(clients_left),
        (unsigned long long)STAT_GET(r->stats.header_timeouts));
}

static void render_status(struct relay *r, struct out *o)
{
    uint64_t now = anet_now_ms();

    put(o,
        "{\"version\":\"%s\",\"io\":\"%s\",\"workers\":%d,\"uptime_s\":%llu,\"now_ms\":%llu,"
        "\"draining\":%s,\"top_paths\":%ld,",
        RAPI_VERSION, r->be ? ev_backend_name(r->be) : "none", r->nshards,
        (unsigned long long)((now - STAT_GET(r->stats.started_ms)) / 1000), (unsigned long long)now,
        atomic_load(&r->draining) ? "true" : "false", r->conf.status_top_paths);
    put(o,
        "\"connections\":%llu,\"listeners\":%llu,\"waiting\":%llu,\"links\":%llu,"
        "\"links_total\":%llu,\"bytes_up\":%llu,\"bytes_down\":%llu,\"accepted\":%llu,",
        (unsigned long long)client_conns(r), (unsigned long long)SUM(listeners),
        (unsigned long long)SUM(waiting), (unsigned long long)SUM(links),
        (unsigned long long)SUM(links_total), (unsigned long long)SUM(bytes_up),
        (unsigned long long)SUM(bytes_down), (unsigned long long)STAT_GET(r->stats.accepted));
    render_paths(r, o);
    put(o, ",");
    render_errors(r, o);
    put(o, "}\n");
}

static int respond(char *out, size_t cap, int status, const char *ctype, const char *body,
                   size_t body_len)
{
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nCache-Control: no-cache\r\n"
                     "Connection: close\r\nContent-Length: %zu\r\n\r\n",
                     status, http1_reason(status), ctype, body_len);

    if (n < 0 || (size_t)n + body_len > cap)
        return -1;
    memmove(out + n, body, body_len);
    return n + (int)body_len;
}

/* A 200 answer whose body render() builds, in a buffer made for the
 * request (a thread-local one cost 64 KiB of memory in every thread, issue
 * 13). -1 when it does not fit. */
static int respond_rendered(struct relay *r, void (*render)(struct relay *, struct out *),
                            const char *ctype, char *out, size_t cap)
{
    char *body = malloc(ADMIN_BODY_MAX);
    struct out o = {.p = body, .cap = ADMIN_BODY_MAX};
    int n = -1;

    if (!body)
        return respond(out, cap, 503, "text/plain", "out of memory\n", 14);
    render(r, &o);
    if (!o.overflow)
        n = respond(out, cap, 200, ctype, body, o.len);
    free(body);
    return n;
}

int admin_answer(struct relay *r, const char *method, size_t method_len, const char *path,
                 size_t path_len, char *out, size_t cap)
{
    size_t plen = http1_path_len(path, path_len);

    if (method_len != 3 || memcmp(method, "GET", 3) != 0)
        return respond(out, cap, 405, "text/plain", "GET only\n", 9);
    if (plen == 8 && memcmp(path, "/healthz", 8) == 0) {
        if (atomic_load(&r->draining))
            return respond(out, cap, 503, "text/plain", "draining\n", 9);
        return respond(out, cap, 200, "text/plain", "ok\n", 3);
    }
    if (plen == 8 && memcmp(path, "/metrics", 8) == 0)
        return respond_rendered(r, render_metrics, "text/plain; version=0.0.4", out, cap);
    if (plen == 1 && path[0] == '/')
        return respond(out, cap, 200, "text/html; charset=utf-8", status_page,
                       sizeof(status_page) - 1);
    if (plen == 12 && memcmp(path, "/status.json", 12) == 0)
        return respond_rendered(r, render_status, "application/json", out, cap);
    return respond(out, cap, 404, "text/plain", "not found\n", 10);
}

/* One line of printable characters without spaces, a trailing newline
 * allowed. Returns its length, or 0 when the text is not a token. */
static size_t token_len(const char *s, size_t n)
{
    if (n > 0 && s[n - 1] == '\n')
        n--;
    if (n > 0 && s[n - 1] == '\r')
        n--;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
            return 0;
    return n >= ADMIN_TOKEN_MIN ? n : 0;
}

int admin_token_load(const char *path, char *tok, size_t cap, size_t *len, char *err, size_t errlen)
{
    char buf[ADMIN_TOKEN_MAX + 1];
    struct stat st;
    ssize_t n = 0;
    int r = -EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

    if (fd == -1) {
        r = -errno;
        snprintf(err, errlen, "admin_token_file %s: %s", path, strerror(-r));
        return r;
    }
    if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
        r = -EPERM;
        snprintf(err, errlen, "admin_token_file %s: must be a regular file of mode 0600", path);
        goto out;
    }
    n = read(fd, buf, sizeof(buf));
    *len = n > 0 ? token_len(buf, (size_t)n) : 0;
    if (n < 0 || (size_t)n >= sizeof(buf) || *len == 0 || *len >= cap) {
        snprintf(err, errlen, "admin_token_file %s: not one line of %d to %d printable characters",
                 path, ADMIN_TOKEN_MIN, ADMIN_TOKEN_MAX - 1);
        goto out;
    }
    memcpy(tok, buf, *len);
    tok[*len] = '\0';
    r = 0;
out:
    explicit_bzero(buf, sizeof(buf));
    close(fd);
    return r;
}

bool admin_authorized(const struct http1_request *req, const char *tok, size_t len)
{
    static const char scheme[] = "Bearer ";
    const size_t slen = sizeof(scheme) - 1;
    const struct http1_header *h = http1_find_one(req->headers, req->num_headers, "Authorization");

    if (!h || h->value_len < slen || strncasecmp(h->value, scheme, slen) != 0)
        return false;
    return ct_equal(h->value + slen, h->value_len - slen, tok, len);
}

int admin_unauthorized(char *out, size_t cap)
{
    static const char body[] = "bearer token required\n";
    int n = snprintf(out, cap,
                     "HTTP/1.1 401 %s\r\nWWW-Authenticate: Bearer realm=\"rapi-server\"\r\n"
                     "Content-Type: text/plain\r\nCache-Control: no-cache\r\n"
                     "Connection: close\r\nContent-Length: %zu\r\n\r\n%s",
                     http1_reason(401), sizeof(body) - 1, body);

    return n < 0 || (size_t)n >= cap ? -1 : n;
}
