/* Incremental WebSocket (RFC 6455) reader: bytes in, in any pieces, events
 * out; it enforces framing, message and close rules and says which close
 * code to answer. Pure: no sockets, no allocation, no globals. One struct
 * wsread per connection, used by one thread at a time; the caller owns it
 * and the optional message buffer. Masked payload is unmasked in place in
 * the caller's input buffer. The relay reads listeners with it (role
 * WSREAD_SERVER: frames must be masked); librapi and rapi-bench read the
 * relay with it (WSREAD_CLIENT: frames must not be masked). Frames are
 * written with ws_build_frame/ws_build_close (proto/ws.h). */
#ifndef RAPI_PROTO_WSREAD_H
#define RAPI_PROTO_WSREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/utf8.h"
#include "proto/ws.h"

enum wsread_role {
    WSREAD_SERVER, /* we are the server: the peer's frames must be masked */
    WSREAD_CLIENT, /* we are the client: the peer's frames must not be masked */
};

enum wsread_event {
    WSREAD_MORE,    /* every byte given was consumed, nothing to report */
    WSREAD_DATA,    /* a piece of a data message (no message buffer given):
                       data/len in the caller's buffer, unmasked; fin on the
                       last piece (possibly empty) of the message */
    WSREAD_MESSAGE, /* a whole data message in the caller's message buffer */
    WSREAD_PING,    /* data/len: the payload to echo in a pong */
    WSREAD_PONG,    /* data/len: its payload */
    WSREAD_CLOSE,   /* a valid close frame: code is the peer's code, 1005
                       (WS_CLOSE_NO_STATUS) when the frame had none; data/len
                       is the reason (valid UTF-8). Answer with a close frame
                       echoing the code (an empty one for 1005). */
    WSREAD_ERROR,   /* a violation: code is the close code to send, 1002
                       (protocol), 1007 (invalid UTF-8) or 1009 (too big) */
};

struct wsread_ev {
    enum wsread_event type;
    uint8_t opcode; /* DATA/MESSAGE: WS_OP_TEXT or WS_OP_BINARY, the message's */
    bool fin;       /* DATA: last piece of its message */
    uint16_t code;  /* CLOSE, ERROR */
    const uint8_t *data;
    size_t len;
};

enum wsread_state {
    WSREAD_HEADER,  /* collecting a frame header in hdr */
    WSREAD_PAYLOAD, /* f parsed, got of f.len payload bytes seen */
    WSREAD_DONE,    /* after CLOSE or ERROR: input is only consumed */
};

struct wsread {
    enum wsread_role role;
    uint64_t max_message; /* data frame and message limit, bytes (1009 above) */
    uint8_t *msg;         /* assembly buffer, or NULL for DATA events */
    enum wsread_state st;
    uint8_t hdr[WS_MAX_HEADER];
    size_t hdr_len;
    struct ws_frame f;
    uint64_t got;
    bool in_message;  /* a data message is open (fragmented) */
    uint8_t msg_op;   /* its opcode */
    uint64_t msg_len; /* its bytes so far, counting the current frame's */
    struct utf8 utf8; /* text messages: validity so far */
    uint8_t ctrl[WS_MAX_CONTROL];
};

/* Start reading a connection. max_message bounds every data frame and every
 * (reassembled) data message; over it the answer is 1009 (control frames
 * are held to 125 bytes by the protocol itself). msg/msg_cap: when
 * msg is not NULL, data messages are assembled there and reported whole as
 * WSREAD_MESSAGE (the limit is then min(max_message, msg_cap)); when NULL,
 * data arrives as WSREAD_DATA pieces. */
void wsread_init(struct wsread *r, enum wsread_role role, uint64_t max_message, uint8_t *msg,
                 size_t msg_cap);

/* Feed buf[0..len). Returns how many bytes were consumed and fills ev. When
 * ev->type is WSREAD_MORE all len bytes were consumed; otherwise call again
 * with the rest (buf + returned, len - returned) after handling the event.
 * ev->data stays valid until the next call (it points into buf, into r, or
 * into the message buffer). After WSREAD_CLOSE or WSREAD_ERROR the reader is
 * done: further input is consumed and reported as WSREAD_MORE.
 * Rules (RFC 6455): mask bit per role, RSV bits clear, known opcodes,
 * minimal length encoding, control frames <= 125 bytes and unfragmented,
 * continuation only inside a message and a new message only outside one
 * (1002); a close payload of 1 byte or a code not allowed on the wire
 * (ws_close_code_valid) is 1002; invalid UTF-8 in a text message (checked
 * across fragments as bytes arrive) or in a close reason is 1007; a frame or
 * message over the limit is 1009. Control frames may come between the
 * fragments of a message. */
size_t wsread_feed(struct wsread *r, uint8_t *buf, size_t len, struct wsread_ev *ev);

/* True once a CLOSE or ERROR was reported. */
bool wsread_done(const struct wsread *r);

#endif
