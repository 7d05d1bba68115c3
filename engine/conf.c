/* rapi-server configuration. One table row per keyword (CONF_ROWS) drives
 * the defaults, conf_set(), conf_validate() and conf_keywords[], so a
 * keyword cannot exist in one of them and not in the others; the unit test
 * holds the table against rapi-server.conf(5). Main thread only. */
#include "engine/conf.h"

#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/pathstat.h"
#include "proto/errbuf.h"

#define KIB 1024LL
#define MIB (1024LL * 1024)
#define SEC_MAX 86400LL        /* one day: the longest timeout or interval */
#define COUNT_MAX 2147483647LL /* INT_MAX: every count fits an int */
#define WORKERS_MAX 256
#define DEFER_ACCEPT_MAX 60LL       /* the kernel holds a silent connection about this long */
#define LISTENERS_PER_PATH_MAX 256  /* a client's pick walks the path's listeners */
#define AUTH_RATE_MAX 1000000LL     /* auth_fail_rate, auth_fail_burst: one per microsecond */
#define ADMIN_CONN_MAX 1024         /* admin sockets: a few scrapers and browsers */
#define CONF_FILE_MAX (1024 * 1024) /* a config file larger than this is a mistake */
#define ECHO_MAX 64                 /* longest piece of user text quoted in a message */

enum conf_type {
    T_LISTEN, /* "a.b.c.d:port" | "[v6]:port", repeatable, char[][ADDR_STR_MAX] */
    T_PATH,   /* a file name, the rest of the line, char[] */
    T_INT,    /* whole number, int */
    T_LONG,   /* whole number (seconds, counts), long */
    T_SIZE,   /* bytes with an optional k/K/m/M suffix, size_t */
    T_IO,     /* enum conf_io by name */
    T_LOG,    /* enum log_level by name */
    T_ADDR,   /* "off" or one "a.b.c.d:port" | "[v6]:port", char[ADDR_STR_MAX] */
    T_FILES,  /* a file name, repeatable, struct conf_files */
    T_TLSVER, /* "1.2" | "1.3", int 12 | 13 */
    T_CIDRS,  /* "CIDR[,CIDR...]" or "", struct fwd_cidr[] and its count ntrusted */
};

struct conf_row {
    const char *name;
    enum conf_type type;
    size_t off;  /* of the field in struct conf */
    size_t size; /* of the field, for strings */
    long long min, max;
    const char *def; /* the embedded default, as it would be written in the file */
};

/* keyword (= struct conf field), type, min, max, default */
#define CONF_ROWS(X)                                                                               \
    X(listen, T_LISTEN, 0, 0, CONF_DEFAULT_LISTEN)                                                 \
    X(keys, T_PATH, 0, 0, CONF_DEFAULT_KEYS)                                                       \
    X(workers, T_INT, 0, WORKERS_MAX, "0")                                                         \
    X(io, T_IO, 0, 0, "auto")                                                                      \
    X(timeout, T_LONG, 1, SEC_MAX, "60")                                                           \
    X(min_timeout, T_LONG, 1, SEC_MAX, "60")                                                       \
    X(header_timeout, T_LONG, 1, SEC_MAX, "10")                                                    \
    X(defer_accept, T_LONG, 0, DEFER_ACCEPT_MAX, "1")                                              \
    X(dialback_timeout, T_LONG, 1, SEC_MAX, "60")                                                  \
    X(keepalive, T_LONG, 0, SEC_MAX, "30")                                                         \
    X(drain_timeout, T_LONG, 1, SEC_MAX, "30")                                                     \
    X(upgrade_timeout, T_LONG, 1, SEC_MAX, "10")                                                   \
    X(max_header, T_SIZE, 256, MIB, "8192")                                                        \
    X(max_frame, T_SIZE, 256, 16 * MIB, "65536")                                                   \
    X(max_headers, T_INT, 1, CONF_MAX_HEADERS_MAX, "64")                                           \
    X(auth_fail_rate, T_LONG, 1, AUTH_RATE_MAX, "5")                                               \
    X(auth_fail_burst, T_LONG, 0, AUTH_RATE_MAX, "20")                                             \
    X(max_connections, T_LONG, 1, COUNT_MAX, "100000")                                             \
    X(max_waiting, T_LONG, 1, COUNT_MAX, "1024")                                                   \
    X(max_listeners, T_LONG, 1, COUNT_MAX, "10000")                                                \
    X(listeners_per_path, T_LONG, 1, LISTENERS_PER_PATH_MAX, "1")                                  \
    X(listener_grace, T_LONG, 0, SEC_MAX, "5")                                                     \
    X(offer_timeout, T_LONG, 1, SEC_MAX, "5")                                                      \
    X(max_parked, T_LONG, 0, COUNT_MAX, "16")                                                      \
    X(park_timeout, T_LONG, 1, SEC_MAX, "60")                                                      \
    X(pipe_size, T_SIZE, 4 * KIB, 16 * MIB, "262144")                                              \
    X(max_pipes, T_LONG, 0, COUNT_MAX, "4096")                                                     \
    X(log_level, T_LOG, 0, 0, "info")                                                              \
    X(admin, T_ADDR, 0, 0, "off")                                                                  \
    X(admin_max_connections, T_LONG, 1, ADMIN_CONN_MAX, "16")                                      \
    X(status_top_paths, T_LONG, 0, PATHSTAT_TOP_MAX, "20")                                         \
    X(admin_token_file, T_PATH, 0, 0, "")                                                          \
    X(tls_cert, T_FILES, 0, CONF_TLS_PAIRS, "")                                                    \
    X(tls_key, T_FILES, 0, CONF_TLS_PAIRS, "")                                                     \
    X(tls_min_version, T_TLSVER, 12, 13, "1.2")                                                    \
    X(tls_ciphers, T_PATH, 0, 0, "")                                                               \
    X(trusted_proxies, T_CIDRS, 0, CONF_MAX_TRUSTED, "")

#define CONF_ROW(f, t, lo, hi, d)                                                                  \
    {#f, t, offsetof(struct conf, f), sizeof(((struct conf *)0)->f), lo, hi, d},
static const struct conf_row conf_rows[] = {CONF_ROWS(CONF_ROW)};
#define CONF_NROWS (sizeof conf_rows / sizeof conf_rows[0])

#define CONF_NAME(f, t, lo, hi, d) #f,
const char *const conf_keywords[] = {CONF_ROWS(CONF_NAME) NULL};

static const char *const io_names[] = {"auto", "uring", "epoll", NULL};
static const char *const log_names[] = {"error", "warn", "info", "debug", NULL};

static const struct conf_row *conf_row_find(const char *name)
{
    for (size_t i = 0; i < CONF_NROWS; i++)
        if (strcmp(conf_rows[i].name, name) == 0)
            return &conf_rows[i];
    return NULL;
}

static void *conf_field(struct conf *c, const struct conf_row *r)
{
    return (char *)c + r->off;
}

static const void *conf_cfield(const struct conf *c, const struct conf_row *r)
{
    return (const char *)c + r->off;
}

/* Strict whole number: digits only (no sign, no space, no junk), no
 * overflow, then one optional k/K/m/M when suffix is set. 0, -EINVAL when
 * it is not a number, -ERANGE when it does not fit. */
static int parse_number(const char *s, bool suffix, unsigned long long *out)
{
    unsigned long long v = 0, mult = 1;
    const char *p = s;

    if (*p < '0' || *p > '9')
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    if (suffix && (*p == 'k' || *p == 'K'))
        mult = KIB;
    else if (suffix && (*p == 'm' || *p == 'M'))
        mult = MIB;
    if (mult != 1)
        p++;
    if (*p != '\0')
        return -EINVAL;
    if (v > ULLONG_MAX / mult)
        return -ERANGE;
    *out = v * mult;
    return 0;
}

static void store_number(struct conf *c, const struct conf_row *r, unsigned long long v)
{
    void *p = conf_field(c, r);

    if (r->type == T_INT)
        *(int *)p = (int)v;
    else if (r->type == T_LONG)
        *(long *)p = (long)v;
    else
        *(size_t *)p = (size_t)v;
}

/* The field as a long long; a size_t beyond that range is clamped (it is
 * out of every row's range anyway). */
static long long load_number(const struct conf *c, const struct conf_row *r)
{
    const void *p = conf_cfield(c, r);

    if (r->type == T_INT)
        return *(const int *)p;
    if (r->type == T_LONG)
        return *(const long *)p;
    return *(const size_t *)p > (size_t)LLONG_MAX ? LLONG_MAX : (long long)*(const size_t *)p;
}

static int set_number(struct conf *c, const struct conf_row *r, const char *v, char *err,
                      size_t errlen)
{
    unsigned long long n;
    int rc = parse_number(v, r->type == T_SIZE, &n);

    if (rc == -EINVAL) {
        errbuf_set(err, errlen, "%s: '%.*s' is not a whole number%s", r->name, ECHO_MAX, v,
                   r->type == T_SIZE ? " (with an optional k/K/m/M suffix)" : "");
        return -EINVAL;
    }
    if (rc == -ERANGE || n < (unsigned long long)r->min || n > (unsigned long long)r->max) {
        errbuf_set(err, errlen, "%s: '%.*s' is out of range (%lld..%lld)", r->name, ECHO_MAX, v,
                   r->min, r->max);
        return -EINVAL;
    }
    store_number(c, r, n);
    return 0;
}

static const char *const *enum_names(enum conf_type t)
{
    return t == T_IO ? io_names : log_names;
}

static int set_enum(struct conf *c, const struct conf_row *r, const char *v, char *err,
                    size_t errlen)
{
    const char *const *names = enum_names(r->type);
    char choices[128] = "";

    for (int i = 0; names[i] != NULL; i++) {
        if (strcmp(names[i], v) == 0) {
            if (r->type == T_IO)
                c->io = (enum conf_io)i;
            else
                c->log_level = (enum log_level)i;
            return 0;
        }
        size_t used = strlen(choices);
        snprintf(choices + used, sizeof choices - used, "%s%s", i ? ", " : "", names[i]);
    }
    errbuf_set(err, errlen, "%s: '%.*s' is not one of %s", r->name, ECHO_MAX, v, choices);
    return -EINVAL;
}

static int set_path(struct conf *c, const struct conf_row *r, const char *v, char *err,
                    size_t errlen)
{
    size_t n = strlen(v);

    if (n >= r->size) {
        errbuf_set(err, errlen, "%s: path longer than %zu bytes", r->name, r->size - 1);
        return -EINVAL;
    }
    memcpy(conf_field(c, r), v, n + 1);
    return 0;
}

/* A listen address: addr_parse() takes port 0 too (the kernel picks one). */
/* "host:0" asks for a free port: the same one twice is two sockets. */
static int listen_ephemeral(const char *a)
{
    size_t n = strlen(a);

    return n >= 2 && strcmp(a + n - 2, ":0") == 0;
}

static int listen_addr_check(const char *s)
{
    struct sockaddr_storage ss;
    socklen_t len;

    if (strnlen(s, ADDR_STR_MAX) >= ADDR_STR_MAX)
        return -EINVAL;
    return addr_parse(s, &ss, &len) == 0 ? 0 : -EINVAL;
}

/* The words a listen line may carry after its address. */
static const struct {
    const char *name;
    unsigned flag;
} listen_opts[] = {
    {"tls", LISTEN_F_TLS},
    {"proxy_protocol", LISTEN_F_PROXY},
};

/* The options after a listen address: words separated by blanks. */
static int listen_opts_parse(const char *s, unsigned *flags, char *err, size_t errlen)
{
    *flags = 0;
    while (*s) {
        size_t n = strcspn(s, " \t");
        size_t i = 0;

        while (i < sizeof(listen_opts) / sizeof(listen_opts[0]) &&
               (strlen(listen_opts[i].name) != n || memcmp(listen_opts[i].name, s, n) != 0))
            i++;
        if (i == sizeof(listen_opts) / sizeof(listen_opts[0])) {
            errbuf_set(err, errlen, "listen: unknown option '%.*s'",
                       (int)(n < ECHO_MAX ? n : ECHO_MAX), s);
            return -EINVAL;
        }
        *flags |= listen_opts[i].flag;
        s += n;
        s += strspn(s, " \t");
    }
    return 0;
}

static int set_listen(struct conf *c, const char *v, char *err, size_t errlen)
{
    size_t n = strcspn(v, " \t");
    char addr[ADDR_STR_MAX];
    unsigned flags;

    if (n < sizeof(addr)) {
        memcpy(addr, v, n);
        addr[n] = '\0';
    }
    if (n >= sizeof(addr) || listen_addr_check(addr) != 0) {
        errbuf_set(err, errlen, "listen: '%.*s' is not an address (a.b.c.d:port or [v6]:port)",
                   ECHO_MAX, v);
        return -EINVAL;
    }
    if (listen_opts_parse(v + n + strspn(v + n, " \t"), &flags, err, errlen) < 0)
        return -EINVAL;
    if (!c->listen_explicit) {
        c->nlisten = 0;
        c->listen_explicit = 1;
    }
    for (int i = 0; i < c->nlisten; i++) {
        if (strcmp(c->listen[i], addr) == 0 && !listen_ephemeral(addr)) {
            errbuf_set(err, errlen, "listen: '%s' given twice", addr);
            return -EINVAL;
        }
    }
    if (c->nlisten >= CONF_MAX_LISTEN) {
        errbuf_set(err, errlen, "listen: more than %d addresses", CONF_MAX_LISTEN);
        return -EINVAL;
    }
    c->listen_flags[c->nlisten] = flags;
    memcpy(c->listen[c->nlisten++], addr, n + 1);
    return 0;
}

/* "off", or one address (the admin listener). */
static int set_addr(struct conf *c, const struct conf_row *r, const char *v, char *err,
                    size_t errlen)
{
    if (strcmp(v, "off") != 0 && listen_addr_check(v) != 0) {
        errbuf_set(err, errlen,
                   "%s: '%.*s' is neither off nor an address (a.b.c.d:port or [v6]:port)", r->name,
                   ECHO_MAX, v);
        return -EINVAL;
    }
    memcpy(conf_field(c, r), v, strlen(v) + 1);
    return 0;
}

/* One more file for a repeatable keyword. */
static int set_files(struct conf *c, const struct conf_row *r, const char *v, char *err,
                     size_t errlen)
{
    struct conf_files *f = conf_field(c, r);
    size_t n = strlen(v);

    if (f->n >= r->max) {
        errbuf_set(err, errlen, "%s: more than %lld files", r->name, r->max);
        return -EINVAL;
    }
    if (n >= sizeof(f->path[0])) {
        errbuf_set(err, errlen, "%s: path longer than %zu bytes", r->name, sizeof(f->path[0]) - 1);
        return -EINVAL;
    }
    memcpy(f->path[f->n++], v, n + 1);
    return 0;
}

static int set_tlsver(struct conf *c, const struct conf_row *r, const char *v, char *err,
                      size_t errlen)
{
    if (strcmp(v, "1.2") == 0 || strcmp(v, "1.3") == 0) {
        *(int *)conf_field(c, r) = v[2] == '2' ? 12 : 13;
        return 0;
    }
    errbuf_set(err, errlen, "%s: '%.*s' is not one of 1.2, 1.3", r->name, ECHO_MAX, v);
    return -EINVAL;
}

/* "CIDR[,CIDR...]": the whole list at once (a later line replaces it); ""
 * trusts nobody. Parsed aside, so a bad list leaves the old one. */
static int set_cidrs(struct conf *c, const struct conf_row *r, const char *v, char *err,
                     size_t errlen)
{
    struct fwd_cidr l[CONF_MAX_TRUSTED];
    int n = fwd_cidr_list_parse(v, l, CONF_MAX_TRUSTED);

    if (n < 0) {
        errbuf_set(err, errlen,
                   "%s: '%.*s' is not a list of at most %d addresses or networks "
                   "(a.b.c.d[/n], v6[/n], separated by commas)",
                   r->name, ECHO_MAX, v, CONF_MAX_TRUSTED);
        return -EINVAL;
    }
    memset(c->trusted_proxies, 0, sizeof(c->trusted_proxies));
    memcpy(c->trusted_proxies, l, (size_t)n * sizeof(l[0]));
    c->ntrusted = n;
    return 0;
}

static int set_row(struct conf *c, const struct conf_row *r, const char *v, char *err,
                   size_t errlen)
{
    if (v == NULL || (*v == '\0' && r->def[0] != '\0')) { /* "" only unsets an optional one */
        errbuf_set(err, errlen, "%s: missing value", r->name);
        return -EINVAL;
    }
    switch (r->type) {
    case T_LISTEN:
        return set_listen(c, v, err, errlen);
    case T_PATH:
        return set_path(c, r, v, err, errlen);
    case T_INT:
    case T_LONG:
    case T_SIZE:
        return set_number(c, r, v, err, errlen);
    case T_IO:
    case T_LOG:
        return set_enum(c, r, v, err, errlen);
    case T_ADDR:
        return set_addr(c, r, v, err, errlen);
    case T_FILES:
        return *v ? set_files(c, r, v, err, errlen) : 0; /* the default: none */
    case T_TLSVER:
        return set_tlsver(c, r, v, err, errlen);
    case T_CIDRS:
        return set_cidrs(c, r, v, err, errlen);
    }
    return -EINVAL;
}

void conf_listen_reset(struct conf *c)
{
    memset(c->listen, 0, sizeof c->listen);
    memset(c->listen_flags, 0, sizeof c->listen_flags);
    memcpy(c->listen[0], CONF_DEFAULT_LISTEN, sizeof CONF_DEFAULT_LISTEN);
    c->nlisten = 1;
    c->listen_explicit = 0;
}

void conf_defaults(struct conf *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < CONF_NROWS; i++)
        if (conf_rows[i].type != T_LISTEN)
            set_row(c, &conf_rows[i], conf_rows[i].def, NULL, 0);
    conf_listen_reset(c);
}

int conf_set(struct conf *c, const char *keyword, const char *value, char *err, size_t errlen)
{
    const struct conf_row *r = keyword ? conf_row_find(keyword) : NULL;

    if (r == NULL) {
        errbuf_set(err, errlen, "unknown keyword '%.*s'", ECHO_MAX, keyword ? keyword : "");
        return -EINVAL;
    }
    return set_row(c, r, value, err, errlen);
}

int conf_set_assignment(struct conf *c, const char *assignment, char *err, size_t errlen)
{
    const char *eq = assignment ? strchr(assignment, '=') : NULL;
    char keyword[32];
    size_t n;

    if (eq == NULL) {
        errbuf_set(err, errlen, "'%.*s': expected KEYWORD=VALUE", ECHO_MAX,
                   assignment ? assignment : "");
        return -EINVAL;
    }
    n = (size_t)(eq - assignment);
    if (n >= sizeof keyword) {
        errbuf_set(err, errlen, "unknown keyword '%.*s'", ECHO_MAX < (int)n ? ECHO_MAX : (int)n,
                   assignment);
        return -EINVAL;
    }
    memcpy(keyword, assignment, n);
    keyword[n] = '\0';
    return conf_set(c, keyword, eq + 1, err, errlen);
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r';
}

/* Cut a '#' comment: at the start of the line or after whitespace (so a
 * value such as a path may hold '#' inside), then trailing whitespace. */
static void strip_line(char *line)
{
    size_t n;

    for (char *p = line; *p != '\0'; p++) {
        if (*p == '#' && (p == line || is_space(p[-1]))) {
            *p = '\0';
            break;
        }
    }
    n = strlen(line);
    while (n > 0 && is_space(line[n - 1]))
        line[--n] = '\0';
}

/* One NUL-terminated line: "keyword value", a comment or blank. The value is
 * the rest of the line, so a path may contain spaces. */
static int parse_line(struct conf *c, char *line, char *err, size_t errlen)
{
    char *kw = line, *val;

    strip_line(line);
    while (is_space(*kw))
        kw++;
    if (*kw == '\0')
        return 0;
    val = kw;
    while (*val != '\0' && !is_space(*val))
        val++;
    if (*val != '\0')
        *val++ = '\0';
    while (is_space(*val))
        val++;
    return conf_set(c, kw, val, err, errlen);
}

/* Parses into a copy: on an error *c is left as it was (a SIGHUP reload
 * with a broken file keeps the running configuration). */
int conf_parse(struct conf *c, const char *text, size_t len, const char *file, char *err,
               size_t errlen)
{
    struct conf tmp = *c;
    char line[CONF_LINE_MAX + 1];
    char msg[256];
    size_t pos = 0;
    unsigned lineno = 0;

    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;

        lineno++;
        if (n > CONF_LINE_MAX) {
            errbuf_set(err, errlen, "%s:%u: line longer than %d bytes", file, lineno,
                       CONF_LINE_MAX);
            return -EINVAL;
        }
        if (memchr(text + pos, '\0', n) != NULL) {
            errbuf_set(err, errlen, "%s:%u: NUL byte in line", file, lineno);
            return -EINVAL;
        }
        memcpy(line, text + pos, n);
        line[n] = '\0';
        if (parse_line(&tmp, line, msg, sizeof msg) != 0) {
            errbuf_set(err, errlen, "%s:%u: %s", file, lineno, msg);
            return -EINVAL;
        }
        pos += n + (nl != NULL);
    }
    *c = tmp;
    return 0;
}

/* Read all of fd into a fresh buffer of at most CONF_FILE_MAX bytes. Works
 * for pipes too (-c /dev/stdin). */
static int read_all(int fd, char **out, size_t *outlen)
{
    char *buf = malloc(CONF_FILE_MAX + 1);
    size_t len = 0;

    if (buf == NULL)
        return -ENOMEM;
    while (len <= CONF_FILE_MAX) {
        ssize_t n = read(fd, buf + len, CONF_FILE_MAX + 1 - len);
        if (n == 0) {
            *out = buf;
            *outlen = len;
            return 0;
        }
        if (n == -1 && errno != EINTR) {
            int e = -errno;
            free(buf);
            return e;
        }
        if (n > 0)
            len += (size_t)n;
    }
    free(buf);
    return -EFBIG;
}

int conf_load(struct conf *c, const char *path, char *err, size_t errlen)
{
    char *buf = NULL, ebuf[128];
    size_t len = 0;
    int fd, rc;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        rc = -errno;
        goto fail;
    }
    rc = read_all(fd, &buf, &len);
    close(fd);
    if (rc == -EFBIG) {
        errbuf_set(err, errlen, "%s: larger than %d bytes", path, CONF_FILE_MAX);
        return rc;
    }
    if (rc != 0)
        goto fail;
    rc = conf_parse(c, buf, len, path, err, errlen);
    free(buf);
    return rc;
fail:
    errbuf_set(err, errlen, "%s: %s", path, strerror_r(-rc, ebuf, sizeof ebuf));
    return rc;
}

static int check_listen(const struct conf *c, char *err, size_t errlen)
{
    if (c->nlisten < 1 || c->nlisten > CONF_MAX_LISTEN) {
        errbuf_set(err, errlen, "listen: %d addresses (1..%d)", c->nlisten, CONF_MAX_LISTEN);
        return -EINVAL;
    }
    for (int i = 0; i < c->nlisten; i++) {
        const char *a = c->listen[i];
        if (memchr(a, '\0', ADDR_STR_MAX) == NULL || listen_addr_check(a) != 0) {
            errbuf_set(err, errlen, "listen: '%.*s' is not an address", ECHO_MAX, a);
            return -EINVAL;
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(c->listen[j], a) == 0 && !listen_ephemeral(a)) {
                errbuf_set(err, errlen, "listen: '%s' given twice", a);
                return -EINVAL;
            }
        }
    }
    return 0;
}

static int check_path(const struct conf *c, const struct conf_row *r, char *err, size_t errlen)
{
    const char *path = conf_cfield(c, r);

    if (path[0] == '\0' && r->def[0] == '\0') /* optional, and not set */
        return 0;
    if (path[0] != '\0' && memchr(path, '\0', r->size) != NULL)
        return 0;
    errbuf_set(err, errlen, "%s: empty or unterminated path", r->name);
    return -EINVAL;
}

static int check_files(const struct conf *c, const struct conf_row *r, char *err, size_t errlen)
{
    const struct conf_files *f = conf_cfield(c, r);

    if (f->n < 0 || f->n > r->max) {
        errbuf_set(err, errlen, "%s: %d files (0..%lld)", r->name, f->n, r->max);
        return -EINVAL;
    }
    for (int i = 0; i < f->n; i++) {
        if (f->path[i][0] == '\0' || memchr(f->path[i], '\0', sizeof(f->path[i])) == NULL) {
            errbuf_set(err, errlen, "%s: empty or unterminated path", r->name);
            return -EINVAL;
        }
    }
    return 0;
}

static int check_row(const struct conf *c, const struct conf_row *r, char *err, size_t errlen)
{
    long long v;
    int n;

    switch (r->type) {
    case T_LISTEN:
        return check_listen(c, err, errlen);
    case T_PATH:
        return check_path(c, r, err, errlen);
    case T_ADDR: {
        const char *a = conf_cfield(c, r);

        if (memchr(a, '\0', ADDR_STR_MAX) != NULL &&
            (strcmp(a, "off") == 0 || listen_addr_check(a) == 0))
            return 0;
        errbuf_set(err, errlen, "%s: not off and not an address", r->name);
        return -EINVAL;
    }
    case T_CIDRS:
        if (c->ntrusted >= 0 && c->ntrusted <= r->max)
            return 0;
        errbuf_set(err, errlen, "%s: %d entries (0..%lld)", r->name, c->ntrusted, r->max);
        return -EINVAL;
    case T_IO:
    case T_LOG:
        n = r->type == T_IO ? (int)c->io : (int)c->log_level;
        if (n >= 0 && n <= (r->type == T_IO ? IO_EPOLL : LOG_DEBUG))
            return 0;
        errbuf_set(err, errlen, "%s: invalid value %d", r->name, n);
        return -EINVAL;
    case T_FILES:
        return check_files(c, r, err, errlen);
    case T_TLSVER:
        n = *(const int *)conf_cfield(c, r);
        if (n == 12 || n == 13)
            return 0;
        errbuf_set(err, errlen, "%s: invalid value %d", r->name, n);
        return -EINVAL;
    case T_INT:
    case T_LONG:
    case T_SIZE:
        v = load_number(c, r);
        if (v >= r->min && v <= r->max)
            return 0;
        errbuf_set(err, errlen, "%s: %lld is out of range (%lld..%lld)", r->name, v, r->min,
                   r->max);
        return -EINVAL;
    }
    return -EINVAL;
}

static bool addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    return sa->sa_family == AF_INET6 &&
           IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
}

/* The admin endpoint needs no key: off loopback it must ask for a token. */
static int admin_check(const struct conf *c, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;

    if (strcmp(c->admin, "off") == 0 || c->admin_token_file[0] ||
        addr_parse(c->admin, &ss, &len) < 0 || addr_is_loopback((struct sockaddr *)&ss))
        return 0;
    errbuf_set(err, errlen,
               "admin: %s is not a loopback address: set admin_token_file (a file of mode 0600 "
               "holding the bearer token every admin request must carry)",
               c->admin);
    return -EINVAL;
}

/* Certificates and keys go by pairs; a TLS listener needs one. */
static int tls_check(const struct conf *c, char *err, size_t errlen)
{
    if (c->tls_cert.n != c->tls_key.n) {
        errbuf_set(err, errlen, "tls_cert/tls_key: %d certificates but %d keys (they go by pairs)",
                   c->tls_cert.n, c->tls_key.n);
        return -EINVAL;
    }
    for (int i = 0; i < c->nlisten; i++) {
        if ((c->listen_flags[i] & LISTEN_F_TLS) && c->tls_cert.n == 0) {
            errbuf_set(err, errlen, "listen %s tls: no certificate (set tls_cert and tls_key)",
                       c->listen[i]);
            return -EINVAL;
        }
    }
    return 0;
}

/* A proxy_protocol socket closes every peer outside trusted_proxies: with
 * none trusted it could serve nobody, which is a mistake, not a choice. */
static int proxy_check(const struct conf *c, char *err, size_t errlen)
{
    for (int i = 0; i < c->nlisten; i++) {
        if ((c->listen_flags[i] & LISTEN_F_PROXY) && c->ntrusted == 0) {
            errbuf_set(err, errlen,
                       "listen: %s has proxy_protocol but trusted_proxies is empty: set "
                       "trusted_proxies to the front ends' addresses",
                       c->listen[i]);
            return -EINVAL;
        }
    }
    return 0;
}

int conf_validate(const struct conf *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < CONF_NROWS; i++) {
        int rc = check_row(c, &conf_rows[i], err, errlen);
        if (rc != 0)
            return rc;
    }
    if (tls_check(c, err, errlen) < 0 || proxy_check(c, err, errlen) < 0)
        return -EINVAL;
    return admin_check(c, err, errlen);
}

const char *conf_io_name(enum conf_io io)
{
    return (unsigned)io <= IO_EPOLL ? io_names[io] : "?";
}

const char *conf_log_level_name(enum log_level l)
{
    return (unsigned)l <= LOG_DEBUG ? log_names[l] : "?";
}
