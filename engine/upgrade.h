/* Seamless upgrade (docs/DESIGN.md "Seamless upgrade"): the handover
 * channel between an old and a new rapi-server (an AF_UNIX SOCK_SEQPACKET
 * socketpair, one proto/handover.h record per message, fds beside it by
 * SCM_RIGHTS, every wait bounded by SO_SNDTIMEO/SO_RCVTIMEO), and starting
 * the new process. The state machines live with what they move: the
 * acceptor's side of both processes (listen sockets, heads, freeze, END) in
 * engine/upgrade_run.c, the shards' records in engine/listener.c and
 * engine/link.c.
 *
 * upg_exe_init runs once in main before any thread; the other calls are
 * thread-safe (one record per sendmsg, so shard threads may send on one
 * channel at once). Received fds belong to the caller. */
#ifndef RAPI_ENGINE_UPGRADE_H
#define RAPI_ENGINE_UPGRADE_H

#include <stdint.h>
#include <sys/types.h>

#include "proto/handover.h"

#define UPG_ENV "RAPI_HANDOVER_FD" /* the new process's end of the channel */
#define UPG_CHILD_FD 3             /* where the child finds it */
#define UPG_SOCKBUF (1 << 20)      /* channel buffers: many records in flight */

/* Remember the binary (readlink /proc/self/exe, now: a binary replaced on
 * disk later is the one started) and argv for upg_spawn. 0 or -errno. */
int upg_exe_init(char **argv);

/* A channel: sv[0] for the old process, sv[1] for the child; close-on-exec,
 * blocking, every wait bounded by timeout_s. 0 or -errno. */
int upg_channel(int sv[2], long timeout_s);

/* Start the binary with the same argv and environment plus UPG_ENV, the
 * child's channel end as UPG_CHILD_FD and every other fd >= 3 closed, the
 * signal mask and the signals we catch reset. 0 and *pid, or -errno. */
int upg_spawn(int child_end, pid_t *pid);

/* In the new process: the channel from UPG_ENV (then unset), set up with
 * timeout_s; -1 when this is no upgrade, -errno when the variable is bad. */
int upg_child_channel(long timeout_s);

/* Send one record with nfds fds (MSG_NOSIGNAL). 0 or -errno (-EMSGSIZE:
 * the record does not fit; the caller keeps what it describes). */
int upg_send(int fd, const struct ho_rec *r, const int *fds, int nfds);

/* Send a record of a type with no fields. 0 or -errno. */
int upg_send_type(int fd, enum ho_type t);

/* Receive one record into buf[0..cap) (dontwait: MSG_DONTWAIT) and decode
 * it into r; its fds (exactly its type's count, else -EPROTO with every fd
 * received closed) into fds. The message's length (> 0), -EPIPE at end of
 * stream, -EAGAIN, -ETIMEDOUT, -EPROTO for a bad record, other -errno. */
int upg_recv(int fd, uint8_t *buf, size_t cap, struct ho_rec *r, int fds[HO_FDS_MAX], int dontwait);

/* A string field as a bounded C string into dst[0..cap). */
void upg_str(const struct ho_rec *r, int i, char *dst, size_t cap);

#endif
