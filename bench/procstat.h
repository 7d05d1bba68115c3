/* What /proc tells about another process (the relay or proxy under test) and
 * about this one. Read-only, no state; any thread may call. */
#ifndef RAPI_BENCH_PROCSTAT_H
#define RAPI_BENCH_PROCSTAT_H

#include <stdint.h>
#include <sys/types.h>

struct pstat {
    uint64_t cpu_ns; /* on-CPU time of all threads (schedstat), or ticks converted */
    long rss_kib;    /* VmRSS */
    long fds;        /* open descriptors */
    long sockets;    /* of which sockets */
    long pipes;      /* of which pipe ends */
};

/* Fill st for pid. with_fds: also walk /proc/pid/fd (slow at 100k fds).
 * Returns 0 or -errno (process gone, no permission). */
int pstat_read(pid_t pid, int with_fds, struct pstat *st);

/* CPU time used by this process (user + system), in ns. */
uint64_t self_cpu_ns(void);

#endif
