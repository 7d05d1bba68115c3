/* Strict incremental UTF-8 validation (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), for WebSocket text messages and close
 * reasons (RFC 6455 8.1). Pure: no allocation, no globals; the state belongs
 * to the caller, so one stream per struct utf8, any thread. */
#ifndef RAPI_PROTO_UTF8_H
#define RAPI_PROTO_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where a stream stands between two pieces. Zeroed = at a character start. */
struct utf8 {
    uint8_t need; /* continuation bytes still expected */
    uint8_t lo;   /* allowed range of the next continuation byte */
    uint8_t hi;
};

/* Start a new stream (same as zeroing the struct). */
void utf8_init(struct utf8 *u);

/* Feed p[0..n). Returns 0 while the bytes so far can start valid UTF-8, -1
 * as soon as they cannot (the state is then meaningless). A sequence may be
 * cut anywhere between two calls. */
int utf8_feed(struct utf8 *u, const uint8_t *p, size_t n);

/* True when the stream ends on a character boundary (no sequence left open). */
bool utf8_complete(const struct utf8 *u);

/* Whole-buffer check: 1 when p[0..n) is valid UTF-8, else 0. */
int utf8_valid(const uint8_t *p, size_t n);

#endif
