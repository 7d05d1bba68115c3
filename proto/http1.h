/* HTTP/1.1 request and response head parser, picohttpparser style.
 * Pure: no allocation, no globals, thread-safe. Every output pointer points
 * into the caller's buffer, which must outlive the parsed structures. */
#ifndef RAPI_PROTO_HTTP1_H
#define RAPI_PROTO_HTTP1_H

#include <stddef.h>

/* The caller sizes the header array (max_headers); this is only the usual
 * size, not a parser limit. */
#define HTTP1_MAX_HEADERS 64

/* Parser results other than a head length (> 0). */
#define HTTP1_INVALID (-1)          /* malformed: answer 400 */
#define HTTP1_INCOMPLETE (-2)       /* no end of head yet: read more */
#define HTTP1_TOO_MANY_HEADERS (-3) /* more header lines than max_headers: answer 431 */

struct http1_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading/trailing spaces and tabs trimmed */
    size_t value_len;
};

struct http1_request {
    const char *method;
    size_t method_len;
    const char *target; /* request target as sent: "/path/?q=1" */
    size_t target_len;
    int minor_version; /* 0 or 1 for HTTP/1.0 and HTTP/1.1 */
    struct http1_header *headers;
    size_t num_headers;
};

struct http1_response {
    int minor_version;
    int status;
    const char *reason;
    size_t reason_len;
    struct http1_header *headers;
    size_t num_headers;
};

/* Parse a request head in buf[0..len). last_len is the length of buf at the
 * previous call that returned -2 (0 the first time): the parser may skip
 * re-scanning for the blank line below it.
 * headers/max_headers is the caller's array; req->headers points to it.
 * Returns the head's length including the final CRLFCRLF (bytes past it are
 * not part of the head), -2 (HTTP1_INCOMPLETE) when incomplete, -1
 * (HTTP1_INVALID) when invalid (bad method or target token, bad version,
 * control characters, obs-fold, a header without colon, empty header name,
 * bare CR), -3 (HTTP1_TOO_MANY_HEADERS) as soon as a header line starts with
 * all max_headers slots used (so a head within the size limit but with too
 * many lines can be answered 431 like an oversized one; lines before the
 * extra one were well-formed, later ones are not looked at).
 * Both CRLF and bare LF line ends are accepted.
 * Grammar details: method is 1+ tchar; the target is 1+ bytes 0x21..0x7e;
 * exactly one SP between the three parts; version is "HTTP/1.0" or
 * "HTTP/1.1" only; no leading empty lines; header names are tchar, values
 * HTAB/SP/VCHAR/obs-text (NUL, other controls and DEL are invalid).
 * With last_len == 0 an invalid prefix is reported as -1 as soon as seen;
 * with last_len > 0 only the new bytes are scanned for the end of the head,
 * so -2 may be returned for an invalid head until its blank line arrives
 * (picohttpparser semantics; the size limit bounds the wait). A len above
 * INT_MAX is parsed up to INT_MAX (-1 when no head ends within it). */
int http1_parse_request(const char *buf, size_t len, size_t last_len, struct http1_request *req,
                        struct http1_header *headers, size_t max_headers);

/* Same contract (including HTTP1_TOO_MANY_HEADERS) for a response head ("HTTP/1.1 101 Switching
 * Protocols"). The status is exactly 3 digits; the reason may be empty and its SP may be missing
 * ("HTTP/1.1 200\r\n"). */
int http1_parse_response(const char *buf, size_t len, size_t last_len, struct http1_response *res,
                         struct http1_header *headers, size_t max_headers);

/* First header whose name equals name (ASCII case-insensitive), or NULL. */
const struct http1_header *http1_find(const struct http1_header *h, size_t n, const char *name);

/* Number of headers named name (to refuse duplicates of singleton headers). */
size_t http1_count(const struct http1_header *h, size_t n, const char *name);

/* The header named name when exactly one is present, else NULL (absent or
 * repeated): http1_count() == 1 and http1_find() in one pass. */
const struct http1_header *http1_find_one(const struct http1_header *h, size_t n, const char *name);

/* 1 when the comma-separated list value[0..len) contains token
 * (case-insensitive, optional whitespace around elements), else 0.
 * "keep-alive, Upgrade" contains "upgrade". */
int http1_has_token(const char *value, size_t len, const char *token);

/* Length of the path part of a request target: up to '?' or '#'. */
size_t http1_path_len(const char *target, size_t target_len);

/* Case-insensitive equality of s[0..len) and the NUL-terminated lit. */
int http1_eq(const char *s, size_t len, const char *lit);

/* Reason phrase for the status codes rapi uses ("Switching Protocols",
 * "Bad Request", ...), "Unknown" otherwise. */
const char *http1_reason(int status);

#endif
