/* WebRoute v1 and the relay's request classification (docs/PROTOCOL.md).
 * Pure: no allocation, no globals, thread-safe. Outputs point into the
 * parsed request (and so into the caller's buffer). */
#ifndef RAPI_PROTO_WEBROUTE_H
#define RAPI_PROTO_WEBROUTE_H

#include <stddef.h>

#include "proto/http1.h"

#define WEBROUTE_GUID "BE7204BD-47E6-49EE-9B0D-016E370644B2"
#define WEBROUTE_ACCEPT_LEN 28
#define WEBROUTE_ID_MAX 256        /* longest WebRoute-ID accepted */
#define WEBROUTE_PATH_MAX 1024     /* longest path accepted */
#define WEBROUTE_MIN_TIMEOUT 60    /* seconds: the floor of the timeout rule */
#define WEBROUTE_MAX_TIMEOUT 86400 /* WebRoute-Timeout values above are clamped */
#define WR_ERROR_TEXT_MAX 512      /* wr_build_error: JSON-escaped message/errorcode limit */

/* Which key a request carried (auth/keys.h decides, in constant time). */
enum key_role { KEY_NONE = 0, KEY_SERVER = 1, KEY_CLIENT = 2 };

enum wr_kind {
    WR_LISTENER = 1, /* server key + WebSocket upgrade */
    WR_CLIENT,       /* client key + WebRoute upgrade */
    WR_DIALBACK,     /* server key + WebRoute upgrade */
    WR_PARK,         /* [ext] a dial-back with X-Rapi-Park: 1, parked for the next client
                        (docs/PROTOCOL.md P-PARK-*); wr_classify never returns it */
};

#define WR_PARK_HEADER "X-Rapi-Park"               /* [ext] on a dial-back head: "1" parks it */
#define WR_EXT_HEADER "X-Rapi-Ext"                 /* [ext] on the listener's 101: "park" */
#define WR_CLIENT_ADDR_HEADER "X-Rapi-Client-Addr" /* [ext] on a parked 101 */
#define WR_CLIENT_ID_HEADER "X-Rapi-Client-Id"
#define WR_CLIENT_TIMEOUT_HEADER "X-Rapi-Client-Timeout"

struct wr_request {
    enum wr_kind kind;
    const char *path; /* target without query string */
    size_t path_len;
    const char *id; /* WebRoute-ID (client, dialback) */
    size_t id_len;
    long timeout;       /* WebRoute-Timeout if present and numeric, else -1 */
    const char *ws_key; /* Sec-WebSocket-Key (listener) */
    size_t ws_key_len;
};

/* An error answer: status, errorcode and human text are static strings.
 * extra_header is NULL or one full header line without CRLF
 * ("WebRoute-Version: 1"). */
struct wr_error {
    int status;
    const char *errorcode;
    const char *message;
    const char *extra_header;
};

/* Find the X-Remoted-APIKey header value; NULL when absent (or present more
 * than once, which is treated as absent). */
const struct http1_header *wr_apikey(const struct http1_request *req);

/* Classify a parsed request given the role of its key. Returns 0 and fills
 * out, or -1 and fills err, applying docs/PROTOCOL.md in this order:
 *   method not GET                  -> 405 method_not_allowed
 *   no Host header                  -> 400 invalid_request
 *   key role KEY_NONE               -> 403 invalid_missing_apikey
 *   path empty, not starting with '/', or over WEBROUTE_PATH_MAX
 *                                   -> 400 invalid_request
 *   server key: Upgrade websocket (+ Connection contains upgrade):
 *       Sec-WebSocket-Version != 13 -> 426 version_not_supported, extra
 *                                      "Sec-WebSocket-Version: 13"
 *       Sec-WebSocket-Key invalid   -> 400 invalid_request
 *       else WR_LISTENER
 *   Upgrade webroute (+ Connection contains upgrade), either key:
 *       WebRoute-Version != 1       -> 426 version_not_supported, extra
 *                                      "WebRoute-Version: 1"
 *       WebRoute-ID missing, empty, over WEBROUTE_ID_MAX, or with a byte
 *       outside 0x21..0x7e          -> 400 invalid_request
 *       else WR_DIALBACK (server key) / WR_CLIENT (client key)
 *   client key + websocket upgrade, anything else -> 400 invalid_request
 * Details: the method is compared case-sensitively; Host, the version headers,
 * Sec-WebSocket-Key and WebRoute-ID count as missing when present more than
 * once; version values must be exactly "13" / "1"; Upgrade and Connection are
 * token lists ("keep-alive, Upgrade"). out->timeout is the WebRoute-Timeout
 * value when it is all digits (saturating at WEBROUTE_MAX_TIMEOUT), else -1;
 * a non-numeric timeout is ignored, not an error. On success err is zeroed;
 * on failure out->kind is 0. */
int wr_classify(const struct http1_request *req, enum key_role role, struct wr_request *out,
                struct wr_error *err);

/* Sec-WebRoute-Accept: base64(sha1(id + WEBROUTE_GUID)); out gets 28 chars
 * and a NUL. Returns 0 or -EINVAL (id empty or over WEBROUTE_ID_MAX). */
int wr_accept(const char *id, size_t id_len, char out[WEBROUTE_ACCEPT_LEN + 1]);

/* Effective timeout of one WebRoute side (docs/PROTOCOL.md's timeout rule):
 * max(header if >= 0, relay default, floor), the header clamped to
 * WEBROUTE_MAX_TIMEOUT. The protocol's floor is WEBROUTE_MIN_TIMEOUT; a relay
 * may configure another (rapi-server's min_timeout). Seconds. */
long wr_effective_timeout(long header_timeout, long relay_default, long floor);

/* The 101 answers. Each writes a complete head (ending CRLFCRLF) into out,
 * NUL-terminated, and returns its length, or -1 when cap is too small.
 *   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n
 *    Connection: Upgrade\r\nSec-WebSocket-Accept: <accept>\r\n\r\n"
 *   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: webroute\r\n
 *    Connection: Upgrade\r\nSec-WebRoute-Accept: <accept>\r\n\r\n" */
int wr_build_ws_101(char *out, size_t cap, const char *ws_accept);
int wr_build_wr_101(char *out, size_t cap, const char *wr_accept);
/* [ext] The listener's 101 with "X-Rapi-Ext: <ext>" before the blank line
 * (ext NULL: wr_build_ws_101), and a parked connection's 101 (P-PARK-3):
 * wr_build_wr_101's head plus "X-Rapi-Client-Addr: <addr>",
 * "X-Rapi-Client-Id: <id>" and "X-Rapi-Client-Timeout: <timeout>". Same
 * contract as above. */
int wr_build_ws_101_ext(char *out, size_t cap, const char *ws_accept, const char *ext);
int wr_build_park_101(char *out, size_t cap, const char *wr_accept, const char *addr,
                      const char *id, size_t id_len, long timeout);
/* [ext] Whether a head asks to be parked: X-Rapi-Park present once, "1". */
int wr_wants_park(const struct http1_request *req);

/* What one of our request heads carries (SDK and rapi-bench build them).
 * Strings are NUL-terminated, except key (key_len bytes, a secret). */
struct wr_head {
    const char *path;   /* request target: '/' then bytes 0x21..0x7e */
    const char *host;   /* Host value, "relay.example:37791" */
    const char *key;    /* X-Remoted-APIKey value */
    size_t key_len;     /* 1..KEY_MAX_LEN bytes of 0x21..0x7e (auth/keys.h) */
    const char *origin; /* registration: Origin value ("http://relay:80"), NULL
                           for none; the original PHP relay refuses a
                           registration without one */
    const char *ws_key; /* registration: Sec-WebSocket-Key (ws_key_new) */
    const char *id;     /* client arrival, dial-back: WebRoute-ID */
    long timeout;       /* client arrival, dial-back: WebRoute-Timeout, sent when > 0 */
};

/* Listener registration (docs/PROTOCOL.md 1):
 *   GET <path> HTTP/1.1\r\n
 *   Host: <host>\r\n
 *   [Origin: <origin>\r\n]
 *   Connection: keep-alive, Upgrade\r\n
 *   X-Remoted-APIKey: <key>\r\n
 *   Sec-WebSocket-Key: <ws_key>\r\n
 *   Sec-WebSocket-Version: 13\r\n
 *   Upgrade: websocket\r\n\r\n
 * Written NUL-terminated into out; returns the length without the NUL,
 * -EINVAL when a field is missing or holds a byte outside 0x21..0x7e (no
 * header injection; the ws_key must be valid, ws_key_valid), -ENOSPC when
 * cap is too small. On failure out[0..cap) is wiped: it may hold the key. */
int wr_build_ws_request(char *out, size_t cap, const struct wr_head *h);

/* Client arrival and dial-back (docs/PROTOCOL.md 2 and 3: the same head, the key
 * makes the difference):
 *   GET <path> HTTP/1.1\r\n
 *   Host: <host>\r\n
 *   Connection: keep-alive, Upgrade\r\n
 *   X-Remoted-APIKey: <key>\r\n
 *   WebRoute-Version: 1\r\n
 *   WebRoute-ID: <id>\r\n
 *   [WebRoute-Timeout: <timeout>\r\n]
 *   Upgrade: webroute\r\n\r\n
 * Same contract as wr_build_ws_request; the id must be 1..WEBROUTE_ID_MAX
 * bytes of 0x21..0x7e. origin and ws_key are ignored. */
int wr_build_wr_request(char *out, size_t cap, const struct wr_head *h);

/* A JSON error answer, exactly like the original relay's:
 *   HTTP/1.1 <status> <reason>\r\n
 *   Content-Type: application/json\r\n
 *   Cache-Control: no-cache\r\n
 *   Connection: close\r\n
 *   [extra_header\r\n]
 *   Content-Length: <n>\r\n\r\n
 *   {"success":false,"error":"<message>","errorcode":"<errorcode>"}
 * message and errorcode are JSON-escaped (each must escape to fewer than
 * WR_ERROR_TEXT_MAX bytes). <reason> is http1_reason(status). The output is
 * NUL-terminated; returns the length without the NUL, or -1 (cap too small). */
int wr_build_error(char *out, size_t cap, const struct wr_error *err);

/* Convenience: wr_build_error for a status/errorcode/message triple. */
int wr_build_error3(char *out, size_t cap, int status, const char *errorcode, const char *message);

#endif
