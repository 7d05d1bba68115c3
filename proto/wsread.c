/* Incremental WebSocket reader (see wsread.h). */
#include "proto/wsread.h"

#include <string.h>

#define WS_CLOSE_CODE_LEN 2

void wsread_init(struct wsread *r, enum wsread_role role, uint64_t max_message, uint8_t *msg,
                 size_t msg_cap)
{
    memset(r, 0, sizeof(*r));
    r->role = role;
    r->max_message = max_message;
    r->msg = msg;
    if (msg != NULL && msg_cap < max_message)
        r->max_message = msg_cap;
    r->st = WSREAD_HEADER;
    utf8_init(&r->utf8);
}

bool wsread_done(const struct wsread *r)
{
    return r->st == WSREAD_DONE;
}

static void ev_set(struct wsread_ev *ev, enum wsread_event type, const uint8_t *data, size_t len)
{
    ev->type = type;
    ev->data = data;
    ev->len = len;
}

static void fail(struct wsread *r, struct wsread_ev *ev, uint16_t code)
{
    r->st = WSREAD_DONE;
    ev_set(ev, WSREAD_ERROR, NULL, 0);
    ev->code = code;
}

/* Rules that need the message state: 0 or the close code. */
static uint16_t frame_check(struct wsread *r, const struct ws_frame *f)
{
    if (f->masked != (r->role == WSREAD_SERVER))
        return WS_CLOSE_PROTOCOL;
    if (f->opcode >= WS_OP_CLOSE) /* header parser: FIN set, <= 125 bytes */
        return f->opcode == WS_OP_CLOSE && f->len == 1 ? WS_CLOSE_PROTOCOL : 0;
    if ((f->opcode == WS_OP_CONT) != r->in_message)
        return WS_CLOSE_PROTOCOL;
    uint64_t before = f->opcode == WS_OP_CONT ? r->msg_len : 0;
    if (f->len > r->max_message || before > r->max_message - f->len)
        return WS_CLOSE_TOO_BIG;
    return 0;
}

/* A data frame's header passed: open or extend its message. */
static void message_frame(struct wsread *r, const struct ws_frame *f)
{
    if (f->opcode != WS_OP_CONT) {
        r->in_message = true;
        r->msg_op = f->opcode;
        r->msg_len = 0;
        utf8_init(&r->utf8);
    }
    r->msg_len += f->len;
}

/* A whole control frame is in r->ctrl, unmasked. */
static void control_end(struct wsread *r, struct wsread_ev *ev)
{
    size_t n = (size_t)r->f.len;

    if (r->f.opcode != WS_OP_CLOSE) {
        ev_set(ev, r->f.opcode == WS_OP_PING ? WSREAD_PING : WSREAD_PONG, r->ctrl, n);
        return;
    }
    if (n == 0) {
        r->st = WSREAD_DONE;
        ev_set(ev, WSREAD_CLOSE, r->ctrl, 0);
        ev->code = WS_CLOSE_NO_STATUS;
        return;
    }
    uint16_t code = (uint16_t)(r->ctrl[0] << 8 | r->ctrl[1]);
    if (!ws_close_code_valid(code)) {
        fail(r, ev, WS_CLOSE_PROTOCOL);
        return;
    }
    if (!utf8_valid(r->ctrl + WS_CLOSE_CODE_LEN, n - WS_CLOSE_CODE_LEN)) {
        fail(r, ev, WS_CLOSE_INVALID_DATA);
        return;
    }
    r->st = WSREAD_DONE;
    ev_set(ev, WSREAD_CLOSE, r->ctrl + WS_CLOSE_CODE_LEN, n - WS_CLOSE_CODE_LEN);
    ev->code = code;
}

/* The last payload byte of a data frame went by; piece/len is the last
 * piece of it (DATA mode). Reports the piece, the message, or nothing. */
static void data_end(struct wsread *r, const uint8_t *piece, size_t len, struct wsread_ev *ev)
{
    bool fin = r->f.fin;

    if (fin) {
        r->in_message = false;
        if (r->msg_op == WS_OP_TEXT && !utf8_complete(&r->utf8)) {
            fail(r, ev, WS_CLOSE_INVALID_DATA);
            return;
        }
    }
    ev->opcode = r->msg_op;
    ev->fin = fin;
    if (r->msg == NULL) {
        if (len > 0 || fin)
            ev_set(ev, WSREAD_DATA, piece, len);
    } else if (fin) {
        ev_set(ev, WSREAD_MESSAGE, r->msg, (size_t)r->msg_len);
    }
}

/* A piece from the middle of a data frame (DATA mode). */
static void data_piece(struct wsread *r, const uint8_t *piece, size_t len, struct wsread_ev *ev)
{
    ev->opcode = r->msg_op;
    ev->fin = false;
    ev_set(ev, WSREAD_DATA, piece, len);
}

static void frame_end(struct wsread *r, const uint8_t *piece, size_t len, struct wsread_ev *ev)
{
    r->st = WSREAD_HEADER;
    r->hdr_len = 0;
    if (r->f.opcode >= WS_OP_CLOSE)
        control_end(r, ev);
    else
        data_end(r, piece, len, ev);
}

/* Collect header bytes; on a whole header, check it and go to the payload. */
static size_t header_step(struct wsread *r, const uint8_t *p, size_t n, struct wsread_ev *ev)
{
    size_t had = r->hdr_len, take = sizeof(r->hdr) - had;

    if (take > n)
        take = n;
    memcpy(r->hdr + had, p, take);
    int h = ws_parse_header(r->hdr, had + take, &r->f);
    if (h == -2) {
        r->hdr_len += take;
        return take;
    }
    if (h < 0) {
        fail(r, ev, WS_CLOSE_PROTOCOL);
        return take;
    }
    uint16_t code = frame_check(r, &r->f);
    if (code) {
        fail(r, ev, code);
        return (size_t)h - had;
    }
    if (r->f.opcode < WS_OP_CLOSE)
        message_frame(r, &r->f);
    r->st = WSREAD_PAYLOAD;
    r->got = 0;
    if (r->f.len == 0)
        frame_end(r, p, 0, ev);
    return (size_t)h - had;
}

/* Take payload bytes of the current frame. */
static size_t payload_step(struct wsread *r, uint8_t *p, size_t n, struct wsread_ev *ev)
{
    uint64_t left = r->f.len - r->got;
    size_t take = left < n ? (size_t)left : n;

    if (r->f.masked)
        ws_unmask(p, take, r->f.mask, r->got);
    if (r->f.opcode >= WS_OP_CLOSE) {
        memcpy(r->ctrl + r->got, p, take);
    } else {
        if (r->msg_op == WS_OP_TEXT && utf8_feed(&r->utf8, p, take) < 0) {
            fail(r, ev, WS_CLOSE_INVALID_DATA);
            return take;
        }
        if (r->msg != NULL) /* msg_len counts this frame whole: start of it */
            memcpy(r->msg + (r->msg_len - r->f.len) + r->got, p, take);
    }
    r->got += take;
    if (r->got == r->f.len)
        frame_end(r, p, take, ev);
    else if (r->f.opcode < WS_OP_CLOSE && r->msg == NULL)
        data_piece(r, p, take, ev);
    return take;
}

size_t wsread_feed(struct wsread *r, uint8_t *buf, size_t len, struct wsread_ev *ev)
{
    size_t used = 0;

    memset(ev, 0, sizeof(*ev));
    ev->type = WSREAD_MORE;
    if (r->st == WSREAD_DONE)
        return len;
    while (used < len && ev->type == WSREAD_MORE) {
        if (r->st == WSREAD_HEADER)
            used += header_step(r, buf + used, len - used, ev);
        else
            used += payload_step(r, buf + used, len - used, ev);
    }
    return used;
}
