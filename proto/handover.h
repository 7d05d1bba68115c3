/* The handover record codec (seamless upgrade, docs/DESIGN.md "Seamless
 * upgrade"): one record per SOCK_SEQPACKET message between an old and a new
 * rapi-server, file descriptors travelling beside it (SCM_RIGHTS). Pure:
 * no sockets, no allocation, no globals; thread-safe. A decoded record's
 * strings point into the caller's message buffer, which must outlive it.
 *
 * Wire form (little-endian): magic u32, version u16, type u16, body length
 * u32; body: nnums u8, nnums x i64, nstrs u8, nstrs x (len u32, bytes).
 * Each type has a fixed count of numbers, strings and fds (ho_shape), and
 * decoding checks every count and length against the message. */
#ifndef RAPI_PROTO_HANDOVER_H
#define RAPI_PROTO_HANDOVER_H

#include <stddef.h>
#include <stdint.h>

#define HO_MAGIC 0x31484f52u   /* "RHO1" */
#define HO_VERSION 1           /* a new process refuses any other */
#define HO_HDR_LEN 12          /* magic, version, type, body length */
#define HO_NUMS_MAX 8          /* integers in one record */
#define HO_STRS_MAX 4          /* byte strings in one record */
#define HO_FDS_MAX 2           /* fds beside one record (a linked pair) */
#define HO_STR_MAX (64u << 10) /* one string; bigger state is not handed over */
#define HO_REC_MAX (HO_HDR_LEN + 2 + HO_NUMS_MAX * 8 + HO_STRS_MAX * (4 + HO_STR_MAX))

/* Record types, in the order of an upgrade (docs/DESIGN.md). */
enum ho_type {
    HO_R_HELLO = 1,  /* new -> old: nums: pid */
    HO_R_LISTEN,     /* old -> new: nums: admin, flags; strs: sockaddr; fd: the socket */
    HO_R_LISTEN_END, /* old -> new: every listen socket sent */
    HO_R_READY,      /* new -> old: listening (not accepting), shards up: freeze */
    HO_R_HEAD,       /* old -> new: a plain request head being read */
    HO_R_GRACE,      /* a path's grace: its end */
    HO_R_LISTENER,   /* a plain WebSocket listener */
    HO_R_WAITER,     /* a plain client waiting for its dial-back */
    HO_R_PARKED,     /* a plain parked dial-back */
    HO_R_LINK,       /* an idle plain linked pair */
    HO_R_END,        /* old -> new: everything sent: start accepting */
    HO_R_NTYPES
};

/* Field indexes per type. Times are CLOCK_MONOTONIC ms (one clock for both
 * processes on a host). */
enum { HO_HELLO_PID };
enum { HO_LISTEN_ADMIN, HO_LISTEN_FLAGS /* LISTEN_F_* of its line */ };
enum { HO_LISTEN_SA };
enum { HO_HEAD_FLAGS, HO_HEAD_PROXY };
enum { HO_HEAD_SA, HO_HEAD_BYTES };
enum { HO_GRACE_END };
enum { HO_GRACE_PATH };
enum { HO_LST_ID, HO_LST_LIVE, HO_LST_CLOSING, HO_LST_LAST_RX, HO_LST_NEXT_PING };
enum { HO_LST_PATH, HO_LST_PEER, HO_LST_IN, HO_LST_OUT };
enum {
    HO_W_STATE,    /* enum waiter_state */
    HO_W_LISTENER, /* HO_LST_ID of the listener it was offered to */
    HO_W_OFFERS,
    HO_W_TIMEOUT,   /* effective, s */
    HO_W_DEADLINE,  /* dialback_timeout end */
    HO_W_OFFER_END, /* end of its offer */
    HO_W_SAW_IN,
};
enum { HO_W_PATH, HO_W_ID, HO_W_PEER, HO_W_EARLY };
enum { HO_PK_TIMEOUT, HO_PK_EXPIRES };
enum { HO_PK_PATH, HO_PK_PEER };
enum {
    HO_LK_TIMEOUT_MS,
    HO_LK_LAST,  /* last activity */
    HO_LK_START, /* linked at */
    HO_LK_FLAGS, /* HO_LK_F_* */
    HO_LK_BYTES0,
    HO_LK_BYTES1,
};
enum { HO_LK_PATH, HO_LK_PEER };
#define HO_LK_F_EOF0 1u /* direction 0 (client -> server) saw its FIN */
#define HO_LK_F_SHUT0 2u
#define HO_LK_F_EOF1 4u
#define HO_LK_F_SHUT1 8u

struct ho_str {
    const char *p;
    size_t len;
};

struct ho_rec {
    enum ho_type type;
    int nnums, nstrs;
    int64_t num[HO_NUMS_MAX];
    struct ho_str str[HO_STRS_MAX];
};

/* The fixed shape of a type: numbers, strings, fds. -1 for an unknown type. */
int ho_shape(enum ho_type t, int *nnums, int *nstrs, int *nfds);

/* A record of type t with its shape and everything zero. */
void ho_rec_init(struct ho_rec *r, enum ho_type t);

/* Encode r into buf[0..cap). Bytes written, or -1 when r does not fit its
 * shape, a string is over HO_STR_MAX or buf is too small. */
long ho_encode(const struct ho_rec *r, uint8_t *buf, size_t cap);

/* Decode one whole message buf[0..len) into r (strings point into buf).
 * 0, or -1 when it is not exactly one valid record of this version. */
int ho_decode(const uint8_t *buf, size_t len, struct ho_rec *r);

#endif
