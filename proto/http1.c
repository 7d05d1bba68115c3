/* HTTP/1.1 head parser (see http1.h). Strict where laxness has bitten
 * proxies (obs-fold, bare CR, space before colon, control bytes), lenient
 * where real clients differ harmlessly (bare LF line ends). */
#include "proto/http1.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#define HTTP1_VERSION_PREFIX "HTTP/1."
#define HTTP1_VERSION_PREFIX_LEN (sizeof(HTTP1_VERSION_PREFIX) - 1)
#define HTTP1_STATUS_DIGITS 3
/* "\n\r\n" is the longest end-of-head marker: rescan that much below last_len. */
#define HTTP1_MARKER_BACKTRACK 3
/* ASCII upper and lower case letters differ in this bit only. */
#define HTTP1_CASE_BIT 0x20
#define HTTP1_BYTE_VALUES 256
#define HTTP1_MAP_WORD_BITS 32

/* RFC 9110 tchar, the bytes allowed in a method or header name, as a bitmap
 * (bit c of the 256): ALPHA, DIGIT and !#$%&'*+-.^_`|~. One load and a shift
 * per byte instead of range tests and strchr(); the unit test checks all 256
 * bytes against that definition. */
static const uint32_t tchar_map[HTTP1_BYTE_VALUES / HTTP1_MAP_WORD_BITS] = {
    0x00000000, 0x03ff6cfa, 0xc7fffffe, 0x57ffffff, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
};

static int is_tchar(unsigned char c)
{
    return (int)((tchar_map[c / HTTP1_MAP_WORD_BITS] >> (c % HTTP1_MAP_WORD_BITS)) & 1U);
}

/* Visible ASCII: request target bytes. */
static int is_vchar(unsigned char c)
{
    return c >= 0x21 && c <= 0x7e;
}

/* Field value / reason bytes: HTAB, SP, VCHAR, obs-text; no other controls. */
static int is_field_byte(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Consume CRLF or bare LF at *pos. A CR followed by anything but LF is a bare
 * CR: invalid, since CR-only line ends enable request smuggling. */
static int parse_eol(const char *buf, size_t len, size_t *pos)
{
    if (*pos >= len)
        return HTTP1_INCOMPLETE;
    if (buf[*pos] == '\n') {
        *pos += 1;
        return 0;
    }
    if (buf[*pos] != '\r')
        return HTTP1_INVALID;
    if (*pos + 1 >= len)
        return HTTP1_INCOMPLETE;
    if (buf[*pos + 1] != '\n')
        return HTTP1_INVALID;
    *pos += 2;
    return 0;
}

/* "HTTP/1.x" at *pos, x in {0, 1}. Fails early on a mismatching prefix. */
static int parse_version(const char *buf, size_t len, size_t *pos, int *minor)
{
    for (size_t i = 0; i < HTTP1_VERSION_PREFIX_LEN; i++) {
        if (*pos + i >= len)
            return HTTP1_INCOMPLETE;
        if (buf[*pos + i] != HTTP1_VERSION_PREFIX[i])
            return HTTP1_INVALID;
    }
    *pos += HTTP1_VERSION_PREFIX_LEN;
    if (*pos >= len)
        return HTTP1_INCOMPLETE;
    if (buf[*pos] != '0' && buf[*pos] != '1')
        return HTTP1_INVALID;
    *minor = buf[*pos] - '0';
    *pos += 1;
    return 0;
}

/* A non-empty run of bytes accepted by ok(), ending at a single SP. */
static int parse_word(const char *buf, size_t len, size_t *pos, int (*ok)(unsigned char),
                      const char **word, size_t *word_len)
{
    size_t start = *pos;

    while (*pos < len && ok((unsigned char)buf[*pos]))
        *pos += 1;
    if (*pos >= len)
        return HTTP1_INCOMPLETE;
    if (*pos == start || buf[*pos] != ' ')
        return HTTP1_INVALID;
    *word = buf + start;
    *word_len = *pos - start;
    *pos += 1;
    return 0;
}

/* One "name: value" line; *pos is at a non-blank line's first byte. The
 * scan runs on a local index: through *pos the compiler must store and reload
 * the position around every byte read (a char may alias it). */
static int parse_header(const char *buf, size_t len, size_t *pos, struct http1_header *h)
{
    size_t p = *pos;
    size_t start = p;

    while (p < len && is_tchar((unsigned char)buf[p]))
        p++;
    if (p >= len)
        return HTTP1_INCOMPLETE;
    if (p == start || buf[p] != ':')
        return HTTP1_INVALID;
    h->name = buf + start;
    h->name_len = p - start;
    p++;
    while (p < len && is_ows(buf[p]))
        p++;
    start = p;
    for (; p < len; p++) {
        unsigned char c = (unsigned char)buf[p];
        if (is_field_byte(c))
            continue;
        if (c == '\r' || c == '\n')
            break;
        return HTTP1_INVALID;
    }
    size_t end = p;
    while (end > start && is_ows(buf[end - 1]))
        end--;
    h->value = buf + start;
    h->value_len = end - start;
    *pos = p;
    return parse_eol(buf, len, pos);
}

/* Header lines up to and including the blank line. */
static int parse_headers(const char *buf, size_t len, size_t *pos, struct http1_header *headers,
                         size_t max_headers, size_t *num_headers)
{
    *num_headers = 0;
    for (;;) {
        if (*pos >= len)
            return HTTP1_INCOMPLETE;
        if (buf[*pos] == '\r' || buf[*pos] == '\n')
            return parse_eol(buf, len, pos);
        if (is_ows(buf[*pos])) /* obs-fold */
            return HTTP1_INVALID;
        if (*num_headers >= max_headers)
            return HTTP1_TOO_MANY_HEADERS;
        int r = parse_header(buf, len, pos, &headers[*num_headers]);
        if (r != 0)
            return r;
        *num_headers += 1;
    }
}

/* With last_len > 0 the previous call saw no end of head below last_len, so
 * only the new bytes (plus a marker's worth of overlap) need a look. */
static int head_may_be_complete(const char *buf, size_t len, size_t last_len)
{
    if (last_len == 0)
        return 1;
    size_t i = last_len > HTTP1_MARKER_BACKTRACK ? last_len - HTTP1_MARKER_BACKTRACK : 0;
    for (; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (i + 1 < len && buf[i + 1] == '\n')
            return 1;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return 1;
    }
    return 0;
}

/* Lengths are returned as int: a buffer past INT_MAX is parsed up to it. */
static size_t clamp_len(size_t len)
{
    return len > INT_MAX ? (size_t)INT_MAX : len;
}

static int finish(int r, size_t pos, size_t len, size_t orig_len)
{
    if (r == HTTP1_INCOMPLETE && len != orig_len)
        return HTTP1_INVALID; /* can never complete within INT_MAX bytes */
    return r == 0 ? (int)pos : r;
}

int http1_parse_request(const char *buf, size_t len, size_t last_len, struct http1_request *req,
                        struct http1_header *headers, size_t max_headers)
{
    size_t orig_len = len;
    size_t pos = 0;
    int r;

    len = clamp_len(len);
    memset(req, 0, sizeof(*req));
    req->headers = headers;
    if (!head_may_be_complete(buf, len, last_len))
        return finish(HTTP1_INCOMPLETE, 0, len, orig_len);
    r = parse_word(buf, len, &pos, is_tchar, &req->method, &req->method_len);
    if (r == 0)
        r = parse_word(buf, len, &pos, is_vchar, &req->target, &req->target_len);
    if (r == 0)
        r = parse_version(buf, len, &pos, &req->minor_version);
    if (r == 0)
        r = parse_eol(buf, len, &pos);
    if (r == 0)
        r = parse_headers(buf, len, &pos, headers, max_headers, &req->num_headers);
    return finish(r, pos, len, orig_len);
}

/* "SP 3DIGIT [SP reason]" after the version; the reason may be empty. */
static int parse_status(const char *buf, size_t len, size_t *pos, struct http1_response *res)
{
    if (*pos >= len)
        return HTTP1_INCOMPLETE;
    if (buf[*pos] != ' ')
        return HTTP1_INVALID;
    *pos += 1;
    res->status = 0;
    for (int i = 0; i < HTTP1_STATUS_DIGITS; i++, *pos += 1) {
        if (*pos >= len)
            return HTTP1_INCOMPLETE;
        if (buf[*pos] < '0' || buf[*pos] > '9')
            return HTTP1_INVALID;
        res->status = res->status * 10 + (buf[*pos] - '0');
    }
    if (*pos >= len)
        return HTTP1_INCOMPLETE;
    if (buf[*pos] == ' ')
        *pos += 1;
    else if (buf[*pos] != '\r' && buf[*pos] != '\n')
        return HTTP1_INVALID;
    size_t start = *pos;
    while (*pos < len && buf[*pos] != '\r' && buf[*pos] != '\n') {
        if (!is_field_byte((unsigned char)buf[*pos]))
            return HTTP1_INVALID;
        *pos += 1;
    }
    res->reason = buf + start;
    res->reason_len = *pos - start;
    return parse_eol(buf, len, pos);
}

int http1_parse_response(const char *buf, size_t len, size_t last_len, struct http1_response *res,
                         struct http1_header *headers, size_t max_headers)
{
    size_t orig_len = len;
    size_t pos = 0;
    int r;

    len = clamp_len(len);
    memset(res, 0, sizeof(*res));
    res->headers = headers;
    if (!head_may_be_complete(buf, len, last_len))
        return finish(HTTP1_INCOMPLETE, 0, len, orig_len);
    r = parse_version(buf, len, &pos, &res->minor_version);
    if (r == 0)
        r = parse_status(buf, len, &pos, res);
    if (r == 0)
        r = parse_headers(buf, len, &pos, headers, max_headers, &res->num_headers);
    return finish(r, pos, len, orig_len);
}

/* ASCII case-insensitive equality of a[0..n) and b[0..n): equal bytes, or
 * bytes that differ only in bit 0x20 and fold to a letter. */
static int fold_eq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i];
        unsigned char y = (unsigned char)b[i];
        unsigned char lx = x | HTTP1_CASE_BIT;

        if (x != y && ((x ^ y) != HTTP1_CASE_BIT || lx < 'a' || lx > 'z'))
            return 0;
    }
    return 1;
}

/* Length first: most names differ in length, and those cost one compare. */
static int name_is(const struct http1_header *h, const char *name, size_t name_len)
{
    return h->name_len == name_len && fold_eq(h->name, name, name_len);
}

int http1_eq(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && fold_eq(s, lit, len);
}

const struct http1_header *http1_find(const struct http1_header *h, size_t n, const char *name)
{
    size_t name_len = strlen(name);

    for (size_t i = 0; i < n; i++) {
        if (name_is(&h[i], name, name_len))
            return &h[i];
    }
    return NULL;
}

size_t http1_count(const struct http1_header *h, size_t n, const char *name)
{
    size_t name_len = strlen(name);
    size_t count = 0;

    for (size_t i = 0; i < n; i++)
        count += (size_t)name_is(&h[i], name, name_len);
    return count;
}

const struct http1_header *http1_find_one(const struct http1_header *h, size_t n, const char *name)
{
    size_t name_len = strlen(name);
    const struct http1_header *one = NULL;

    for (size_t i = 0; i < n; i++) {
        if (!name_is(&h[i], name, name_len))
            continue;
        if (one != NULL)
            return NULL;
        one = &h[i];
    }
    return one;
}

int http1_has_token(const char *value, size_t len, const char *token)
{
    size_t pos = 0;

    while (pos < len) {
        size_t start = pos;
        while (pos < len && value[pos] != ',')
            pos++;
        size_t end = pos;
        while (start < end && is_ows(value[start]))
            start++;
        while (end > start && is_ows(value[end - 1]))
            end--;
        if (end > start && http1_eq(value + start, end - start, token))
            return 1;
        pos++; /* past the comma */
    }
    return 0;
}

size_t http1_path_len(const char *target, size_t target_len)
{
    size_t i = 0;

    while (i < target_len && target[i] != '?' && target[i] != '#')
        i++;
    return i;
}

struct status_text {
    int status;
    const char *reason;
};

static const struct status_text reasons[] = {
    {101, "Switching Protocols"},
    {200, "OK"},
    {204, "No Content"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {413, "Content Too Large"},
    {426, "Upgrade Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
};

const char *http1_reason(int status)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        if (reasons[i].status == status)
            return reasons[i].reason;
    }
    return "Unknown";
}
