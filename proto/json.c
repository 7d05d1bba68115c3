/* The protocol's JSON bits (see json.h). The reader walks one flat object
 * without recursion, so its stack use and time are bounded by the input. */
#include "proto/json.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define JSON_UESC_LEN 6 /* \uXXXX */
#define JSON_KEY_MAX 64 /* longer keys cannot be ours: compared as "unknown" */
#define JSON_HEX_DIGITS 4
#define JSON_SURR_HI_MIN 0xd800u
#define JSON_SURR_LO_MIN 0xdc00u
#define JSON_SURR_END 0xe000u
#define JSON_SURR_BASE 0x10000u
#define JSON_SURR_SHIFT 10

int json_escape(char *out, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[JSON_UESC_LEN];
        size_t elen = 0;

        if (c == '"' || c == '\\') {
            esc[elen++] = '\\';
            esc[elen++] = (char)c;
        } else if (c < 0x20) {
            esc[0] = '\\';
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            elen = JSON_UESC_LEN;
        } else {
            esc[elen++] = (char)c;
        }
        if (cap - n <= elen || n + elen > INT_MAX)
            return -1;
        memcpy(out + n, esc, elen);
        n += elen;
    }
    if (cap == 0)
        return -1;
    out[n] = '\0';
    return (int)n;
}

int notify_build(char *out, size_t cap, const char *ipaddr, const char *id, size_t id_len,
                 long timeout)
{
    char ip_esc[IPADDR_MAX * JSON_UESC_LEN];
    char id_esc[NOTIFY_MAX];

    if (json_escape(ip_esc, sizeof(ip_esc), ipaddr, strlen(ipaddr)) < 0 ||
        json_escape(id_esc, sizeof(id_esc), id, id_len) < 0)
        return -1;
    int n = snprintf(out, cap, "{\"ipaddr\":\"%s\",\"id\":\"%s\",\"timeout\":%ld}", ip_esc, id_esc,
                     timeout);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    return n;
}

/* ------------------------------------------------------------- reader */

struct jcur {
    const char *p;
    const char *end;
};

static void skip_ws(struct jcur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int hex4(struct jcur *c, unsigned *v)
{
    *v = 0;
    if (c->end - c->p < JSON_HEX_DIGITS)
        return -1;
    for (int i = 0; i < JSON_HEX_DIGITS; i++) {
        char h = *c->p++;
        unsigned d;
        if (h >= '0' && h <= '9')
            d = (unsigned)(h - '0');
        else if (h >= 'a' && h <= 'f')
            d = (unsigned)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F')
            d = (unsigned)(h - 'A' + 10);
        else
            return -1;
        *v = (*v << 4) | d;
    }
    return 0;
}

/* String sink: bytes beyond cap are counted but dropped (overflow flag). */
struct jsink {
    char *out;
    size_t cap;
    size_t len;
    bool overflow;
};

static void sink_put(struct jsink *s, const char *b, size_t n)
{
    if (s->out == NULL || s->overflow || s->cap - s->len <= n) {
        s->overflow = s->overflow || s->out != NULL;
        return;
    }
    memcpy(s->out + s->len, b, n);
    s->len += n;
}

static size_t utf8_encode(unsigned cp, char *b)
{
    if (cp < 0x80) {
        b[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (char)(0xc0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < JSON_SURR_BASE) {
        b[0] = (char)(0xe0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    b[0] = (char)(0xf0 | (cp >> 18));
    b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    b[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* \uXXXX (after the "\u"), with surrogate pairs. Lone surrogates and U+0000
 * are refused: decoded strings end up in C strings. */
static int read_uescape(struct jcur *c, struct jsink *s)
{
    unsigned cp, lo;
    char b[4];

    if (hex4(c, &cp) != 0 || cp == 0)
        return -1;
    if (cp >= JSON_SURR_HI_MIN && cp < JSON_SURR_END) {
        if (cp >= JSON_SURR_LO_MIN || c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u')
            return -1;
        c->p += 2;
        if (hex4(c, &lo) != 0 || lo < JSON_SURR_LO_MIN || lo >= JSON_SURR_END)
            return -1;
        cp =
            JSON_SURR_BASE + ((cp - JSON_SURR_HI_MIN) << JSON_SURR_SHIFT) + (lo - JSON_SURR_LO_MIN);
    }
    sink_put(s, b, utf8_encode(cp, b));
    return 0;
}

static int read_escape(struct jcur *c, struct jsink *s)
{
    static const char from[] = "\"\\/bfnrt";
    static const char to[] = "\"\\/\b\f\n\r\t";

    if (c->p >= c->end)
        return -1;
    char e = *c->p++;
    if (e == 'u')
        return read_uescape(c, s);
    const char *hit = e != '\0' ? strchr(from, e) : NULL;
    if (hit == NULL)
        return -1;
    sink_put(s, &to[hit - from], 1);
    return 0;
}

/* A string at c->p (which must be '"'), decoded into s. */
static int read_string(struct jcur *c, struct jsink *s)
{
    if (c->p >= c->end || *c->p != '"')
        return -1;
    c->p++;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p++;
        if (ch == '"') {
            if (s->out != NULL && !s->overflow)
                s->out[s->len] = '\0';
            return 0;
        }
        if (ch < 0x20)
            return -1;
        if (ch == '\\') {
            if (read_escape(c, s) != 0)
                return -1;
        } else {
            sink_put(s, (const char *)&ch, 1);
        }
    }
    return -1;
}

static int is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static int skip_digits(struct jcur *c)
{
    const char *start = c->p;

    while (c->p < c->end && is_digit(*c->p))
        c->p++;
    return c->p > start ? 0 : -1;
}

/* A JSON number; *is_int and *v set when it is an integer that fits a long. */
static int read_number(struct jcur *c, long *v, bool *is_int)
{
    const char *start = c->p;
    bool neg = c->p < c->end && *c->p == '-';
    long acc = 0;

    *is_int = true;
    c->p += neg;
    if (c->p < c->end && *c->p == '0' && c->end - c->p > 1 && is_digit(c->p[1]))
        return -1; /* leading zero */
    for (const char *d = c->p; d < c->end && is_digit(*d); d++) {
        int dig = *d - '0';
        if (acc > (LONG_MAX - dig) / 10)
            *is_int = false;
        else
            acc = acc * 10 + dig;
    }
    if (skip_digits(c) != 0)
        return -1;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        *is_int = false;
        if (skip_digits(c) != 0)
            return -1;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        *is_int = false;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            c->p++;
        if (skip_digits(c) != 0)
            return -1;
    }
    *v = neg ? -acc : acc;
    return c->p > start ? 0 : -1;
}

static int read_literal(struct jcur *c, const char *lit)
{
    size_t n = strlen(lit);

    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0)
        return -1;
    c->p += n;
    return 0;
}

/* Value kinds a flat object may hold. */
enum jval { JV_STRING, JV_NUMBER, JV_LITERAL, JV_NULL };

static enum jval peek_kind(const struct jcur *c)
{
    if (*c->p == '"')
        return JV_STRING;
    if (*c->p == '-' || is_digit(*c->p))
        return JV_NUMBER;
    return *c->p == 'n' ? JV_NULL : JV_LITERAL;
}

/* Skip any scalar value (objects and arrays are not flat: refused). */
static int skip_value(struct jcur *c)
{
    struct jsink none = {0};
    long v;
    bool is_int;

    if (c->p >= c->end)
        return -1;
    switch (peek_kind(c)) {
    case JV_STRING:
        return read_string(c, &none);
    case JV_NUMBER:
        return read_number(c, &v, &is_int);
    case JV_NULL:
        return read_literal(c, "null");
    case JV_LITERAL:
    default:
        if (read_literal(c, "true") == 0)
            return 0;
        return read_literal(c, "false");
    }
}

/* Called for each member with c->p at its value; must consume the value. */
typedef int (*member_fn)(void *ctx, const char *key, bool key_fits, struct jcur *c);

static int walk_object(const char *json, size_t len, member_fn fn, void *ctx)
{
    struct jcur c = {json, json + len};
    char key[JSON_KEY_MAX];

    skip_ws(&c);
    if (c.p >= c.end || *c.p++ != '{')
        return -1;
    skip_ws(&c);
    if (c.p < c.end && *c.p == '}') {
        c.p++;
    } else {
        for (;;) {
            struct jsink ks = {key, sizeof(key), 0, false};
            skip_ws(&c);
            if (read_string(&c, &ks) != 0)
                return -1;
            skip_ws(&c);
            if (c.p >= c.end || *c.p++ != ':')
                return -1;
            skip_ws(&c);
            if (c.p >= c.end || fn(ctx, key, !ks.overflow, &c) != 0)
                return -1;
            skip_ws(&c);
            if (c.p >= c.end)
                return -1;
            char sep = *c.p++;
            if (sep == '}')
                break;
            if (sep != ',')
                return -1;
        }
    }
    skip_ws(&c);
    return c.p == c.end ? 0 : -1;
}

/* A string value into a fixed buffer; -1 when not a string or too long. */
static int read_string_into(struct jcur *c, char *out, size_t cap, size_t *len)
{
    struct jsink s = {out, cap, 0, false};

    if (*c->p != '"' || read_string(c, &s) != 0 || s.overflow)
        return -1;
    *len = s.len;
    return 0;
}

struct notify_ctx {
    struct notify *n;
    bool have_id;
};

static int notify_member(void *ctx, const char *key, bool key_fits, struct jcur *c)
{
    struct notify_ctx *nc = ctx;
    size_t len;

    if (!key_fits)
        return skip_value(c);
    if (strcmp(key, "ipaddr") == 0)
        return read_string_into(c, nc->n->ipaddr, sizeof(nc->n->ipaddr), &len);
    if (strcmp(key, "id") == 0) {
        if (read_string_into(c, nc->n->id, sizeof(nc->n->id), &len) != 0 || len == 0)
            return -1;
        nc->have_id = true;
        return 0;
    }
    if (strcmp(key, "timeout") == 0) {
        bool is_int;
        if (peek_kind(c) == JV_NULL) {
            nc->n->timeout = -1;
            return read_literal(c, "null");
        }
        if (peek_kind(c) != JV_NUMBER || read_number(c, &nc->n->timeout, &is_int) != 0)
            return -1;
        return is_int ? 0 : -1;
    }
    return skip_value(c);
}

int notify_parse(const char *json, size_t len, struct notify *out)
{
    struct notify_ctx nc = {out, false};

    memset(out, 0, sizeof(*out));
    out->timeout = -1;
    if (walk_object(json, len, notify_member, &nc) != 0 || !nc.have_id) {
        memset(out, 0, sizeof(*out));
        out->timeout = -1;
        return -1;
    }
    return 0;
}

struct get_ctx {
    const char *name;
    char *out;
    size_t cap;
    int found; /* length of the last match, -1 none */
};

static int get_member(void *ctx, const char *key, bool key_fits, struct jcur *c)
{
    struct get_ctx *g = ctx;
    size_t len;

    if (!key_fits || strcmp(key, g->name) != 0)
        return skip_value(c);
    if (read_string_into(c, g->out, g->cap, &len) != 0 || len > INT_MAX)
        return -1;
    g->found = (int)len;
    return 0;
}

int json_get_string(const char *json, size_t len, const char *name, char *out, size_t cap)
{
    struct get_ctx g = {name, out, cap, -1};

    if (cap == 0 || walk_object(json, len, get_member, &g) != 0)
        return -1;
    return g.found;
}
