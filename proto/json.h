/* The few JSON bits the protocol needs: escaping, the notification object,
 * and a bounded reader for flat objects of strings and integers.
 * Pure: no allocation, no globals, thread-safe. */
#ifndef RAPI_PROTO_JSON_H
#define RAPI_PROTO_JSON_H

#include <stddef.h>

#define NOTIFY_MAX 512 /* a notification never exceeds this (ID <= 256 bytes) */
#define IPADDR_MAX 64  /* "[ipv6]:port" fits */

/* Escape s[0..len) as the inside of a JSON string ('"', '\\', control
 * characters as \uXXXX, '/' left alone) into out. Returns the escaped length
 * (NUL-terminated), or -1 when cap is too small. Every byte below 0x20
 * (including \n and NUL) becomes \u00xx with lowercase hex; bytes >= 0x7f
 * pass through unchanged. */
int json_escape(char *out, size_t cap, const char *s, size_t len);

/* {"ipaddr":"<ipaddr>","id":"<id>","timeout":<timeout>} byte-exact, fields in
 * that order, no spaces. Returns the length (NUL-terminated) or -1. */
int notify_build(char *out, size_t cap, const char *ipaddr, const char *id, size_t id_len,
                 long timeout);

struct notify {
    char ipaddr[IPADDR_MAX];
    char id[257];
    long timeout; /* -1 when absent */
};

/* Read a notification: a flat JSON object with string fields "ipaddr" and
 * "id" and an integer "timeout", in any order, whitespace allowed, unknown
 * fields (strings, numbers, true/false/null) skipped. Escapes in strings are
 * decoded (\uXXXX to UTF-8). Returns 0, or -1 when malformed, when "id" is
 * missing or a value does not fit.
 * Details: "id" must be non-empty; "ipaddr" is "" when absent; "timeout" must
 * be an integer that fits a long, or null (= absent); nested objects/arrays
 * are malformed (the object is flat); \u0000 and unpaired surrogates are
 * malformed; a repeated field: the last one wins; only whitespace may follow
 * the object. On -1, out is zeroed with timeout -1. */
int notify_parse(const char *json, size_t len, struct notify *out);

/* Copy the decoded string value of field `name` of a flat JSON object into
 * out (NUL-terminated). Returns its length, or -1 when absent, not a string,
 * malformed or too long. Used for an error body's "errorcode".
 * The whole object must be well-formed (same grammar as notify_parse); the
 * last occurrence of a repeated name wins; names over 63 bytes never match.
 * "Too long" means length + NUL > cap. */
int json_get_string(const char *json, size_t len, const char *name, char *out, size_t cap);

#endif
