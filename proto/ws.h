/* WebSocket (RFC 6455) frame codec and handshake helpers.
 * Pure: no allocation, no globals, thread-safe. Used by the relay (server
 * side: frames from clients must be masked) and by librapi/rapi-bench
 * (client side: frames to the server are masked). */
#ifndef RAPI_PROTO_WS_H
#define RAPI_PROTO_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_ACCEPT_LEN 28   /* base64(sha1) without NUL */
#define WS_KEY_LEN 24      /* base64 of a 16-byte nonce */
#define WS_MAX_HEADER 14   /* largest frame header (64-bit length + mask) */
#define WS_MAX_CONTROL 125 /* largest control frame payload */

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_NO_STATUS = 1005,    /* never sent: "the close frame had no code" */
    WS_CLOSE_INVALID_DATA = 1007, /* e.g. invalid UTF-8 in a text message */
    WS_CLOSE_TOO_BIG = 1009,
};

struct ws_frame {
    bool fin;
    uint8_t opcode; /* enum ws_opcode */
    bool masked;
    uint8_t mask[4];   /* valid when masked */
    uint64_t len;      /* payload length */
    size_t header_len; /* bytes of header, payload starts there */
};

/* Parse one frame header from buf[0..len). Returns the header length (2..14)
 * and fills f, -2 when more bytes are needed, -1 when the header is invalid
 * whatever the role: RSV bits set, unknown opcode, control frame with
 * payload > 125 or FIN clear, 64-bit length with the top bit set, a length
 * in a longer encoding than needed (RFC 6455 5.2: 16 bits for < 126, 64 bits
 * for <= 0xffff). Every -1 is answered with close code 1002.
 * Errors decidable from the first byte are reported with len == 1.
 * f->mask is zeroed for unmasked frames. For a whole connection, use the
 * incremental reader in proto/wsread.h, which adds the message rules. */
int ws_parse_header(const uint8_t *buf, size_t len, struct ws_frame *f);

/* Role checks after ws_parse_header: returns 0 when acceptable, else the
 * close code to send (WS_CLOSE_PROTOCOL for a mask bit that does not match the
 * role, WS_CLOSE_TOO_BIG for a payload over max_payload).
 * from_client: true on the server side (frames must be masked). The role is
 * checked before the size. */
int ws_check(const struct ws_frame *f, bool from_client, uint64_t max_payload);

/* XOR data[0..len) with mask, where data starts at payload offset `offset`
 * (lets a caller unmask a payload that arrives in pieces). */
void ws_unmask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);

/* Write a frame header into out (>= WS_MAX_HEADER bytes), minimal length
 * encoding; mask NULL for an unmasked (server) frame. Returns its length. */
size_t ws_build_header(uint8_t *out, uint8_t opcode, bool fin, uint64_t len, const uint8_t *mask);

/* Build a whole frame into out[0..cap): header (minimal length encoding),
 * then payload[0..len) masked with mask (NULL: unmasked, the server side).
 * payload may be NULL when len is 0. Returns the frame length, or 0 when it
 * does not fit in cap (WS_MAX_HEADER + len is always enough). */
size_t ws_build_frame(uint8_t *out, size_t cap, uint8_t opcode, bool fin, const void *payload,
                      size_t len, const uint8_t *mask);

/* A fresh masking key for a client frame (getrandom). 0 or -errno. */
int ws_mask_new(uint8_t mask[4]);

/* True for a close code a peer may send (RFC 6455 7.4 and the IANA
 * registry): 1000-1003, 1007-1014 and 3000-4999. 1004-1006, 1015 (reserved,
 * never on the wire), codes below 1000, 1016-2999 and 5000 up are not. */
bool ws_close_code_valid(uint16_t code);

/* Build a whole close frame (code + reason, reason <= 123 bytes) into out
 * (>= WS_MAX_HEADER + 125). mask NULL for server side. Returns its length.
 * A longer reason is cut at 123 bytes; reason may be NULL; code 0 builds a
 * close frame with an empty payload (no status code). */
size_t ws_build_close(uint8_t *out, uint16_t code, const char *reason, const uint8_t *mask);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(sha1(key + WS_GUID)).
 * out gets WS_ACCEPT_LEN chars and a NUL. Returns 0, or -EINVAL for a key
 * that is not 24 chars of base64 encoding 16 bytes (see ws_key_valid). */
int ws_accept(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1]);

/* 1 when key is valid Sec-WebSocket-Key syntax (24 base64 chars, 16 bytes):
 * 22 chars of [A-Za-z0-9+/] then "==". The unused low bits of the 22nd char
 * are not checked (decoders may ignore them, RFC 4648 3.5). */
int ws_key_valid(const char *key, size_t key_len);

/* New random Sec-WebSocket-Key (getrandom), NUL-terminated. 0 or -errno. */
int ws_key_new(char out[WS_KEY_LEN + 1]);

#endif
