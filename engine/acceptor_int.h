/* The acceptor's insides, shared by engine/acceptor.c and the acceptor's
 * side of an upgrade (engine/upgrade_run.c). Acceptor thread only; the
 * acceptor owns everything here (engine/acceptor.h). */
#ifndef RAPI_ENGINE_ACCEPTOR_INT_H
#define RAPI_ENGINE_ACCEPTOR_INT_H

#include <sys/socket.h>
#include <sys/types.h>

#include "engine/acceptor.h"
#include "engine/authlimit.h"
#include "engine/timer.h"
#include "engine/xprt_tls.h"
#include "proto/handover.h"

#define ADMIN_ANSWER_MAX (66 * 1024) /* the largest admin body and its head */
#define STOP_WAIT_MS 50              /* loop wake-up while shards drain */
#define UP_FROZEN_WAIT_MS 2          /* loop wake-up while shards send their state */

/* Where an upgrade stands in the old process (docs/DESIGN.md "Seamless
 * upgrade"). */
enum up_state {
    UP_IDLE,   /* no upgrade under way */
    UP_HELLO,  /* the new process started: waiting for its HELLO */
    UP_READY,  /* listen sockets sent: waiting for READY */
    UP_FROZEN, /* not accepting; heads sent, shards sending their state */
    UP_DONE,   /* handed over: draining what stayed, then exit */
};

/* The old side of an upgrade. */
struct up_old {
    enum up_state st;
    int fd; /* the channel; -1 when none */
    uint64_t tok;
    pid_t pid; /* the new process, our child */
    struct timer timer;
};

/* A listen socket the old process handed over (new side, until matched). */
struct up_inherit {
    int fd;
    bool admin;
    unsigned flags; /* LISTEN_F_* of its line in the old process */
    struct sockaddr_storage ss;
};

/* A head handed over, held until END: its client may wait for a listener,
 * or its dial-back for a client, that the shards get before it. */
struct up_head {
    struct up_head *next;
    int fd;
    bool proxy_hdr;
    struct sockaddr_storage ss;
    size_t len;
    char bytes[];
};

/* The new side of an upgrade: what came, for the "took over" line. */
struct up_new {
    struct up_head *heads, **heads_tail;
    int fd; /* the channel from the old process; -1: no upgrade */
    pid_t from;
    struct up_inherit inh[CONF_MAX_LISTEN + 1];
    int ninh, nadopted;
    long count[HO_R_NTYPES];
};
struct pending;

/* A listen socket: fd -1 when closed. */
struct lsock {
    struct acceptor *a;
    int fd;
    bool admin;
    unsigned flags; /* LISTEN_F_* from its listen line */
    uint64_t tok;
};

struct acceptor {
    struct relay *relay;
    /* The loop, timers and clock in use: the acceptor's own, or those of
     * the shard it hosts (one shard: one thread, see shard_host()). */
    struct ev_loop *loop;
    struct wheel *wheel;
    uint64_t *now;
    struct ev_loop own_loop;
    struct wheel own_wheel;
    uint64_t own_now;
    struct shard *host;
    struct keys *keys; /* own page, MADV_DONTDUMP; wiped by acceptor_free() */
    size_t keys_len;
    struct lsock ls[CONF_MAX_LISTEN], admin;
    int nls;
    struct timer retry;
    int sigfd;
    uint64_t sigtok;
    struct pending *pend;      /* list of heads being read */
    struct authlimit *authlim; /* failed authentications per source */
    bool stopping;
    acceptor_reload_fn *reload;
    void *reload_arg;
    char admin_out[ADMIN_ANSWER_MAX];
    char *admin_token; /* ADMIN_TOKEN_MAX bytes on the keys' page; empty: none asked */
    size_t admin_token_len;
    struct tls_server *tls; /* TLS listeners' context (one reference); NULL: none */
    struct up_old up;
    struct up_new upn;
};

/* A connection whose request head is being read. */
struct pending {
    struct acceptor *a;
    struct pending *prev, *next;
    uint64_t tok;
    struct xconn c;
    struct timer timer;
    char *buf;
    size_t len, cap, last_len;
    bool admin;     /* came in on the admin address */
    bool tls_hs;    /* a TLS listener's socket whose handshake is not done */
    bool proxy_hdr; /* PROXY header phase: its header not read yet */
    bool hup;       /* the peer shut down or failed: no more bytes will come */
    /* The peer, or the client a trusted front end named (engine/peeraddr.h) */
    struct sockaddr_storage sa;
    char peer[ADDR_STR_MAX];
    struct authlimit_src src; /* the peer, for the failed-authentication limit */
};

/* acceptor.c, for the upgrade's side (engine/upgrade_run.c). */
void pending_free(struct pending *p, bool close_fd);
/* A plain head handed over: its socket, peer, whether its PROXY header is
 * still to come, and the bytes read so far (under a new deadline). */
void pending_adopt(struct acceptor *a, int fd, const struct sockaddr *sa, bool proxy_hdr,
                   const char *bytes, size_t len);
void acceptor_stop(struct acceptor *a);
void listen_event(void *arg, uint32_t events);
void lsock_close(struct acceptor *a, struct lsock *ls);

/* upgrade_run.c, for acceptor.c. */
void upgrade_signal(struct acceptor *a);      /* SIGUSR2 */
void upgrade_turn(struct acceptor *a);        /* each loop turn */
int upgrade_take_listens(struct acceptor *a); /* new: before opening any */
/* new: the old process's socket for a listen line (spec, admin, flags); -1: none */
int upgrade_listen_fd(struct acceptor *a, const char *spec, bool admin, unsigned flags);
void upgrade_close_unused(struct acceptor *a); /* new: after opening */
void upgrade_take_state(struct acceptor *a);   /* new: after the loop is set up */
void upgrade_fini(struct acceptor *a);         /* close what the upgrade holds */

#endif
