/* /proc readers for the contender's CPU, memory and descriptors. */
#include "bench/procstat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Sum of the first field of /proc/pid/task/<tid>/schedstat: ns on CPU. */
static int cpu_of(pid_t pid, uint64_t *out)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -errno;
    uint64_t sum = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[320];
        snprintf(p, sizeof(p), "/proc/%d/task/%s/schedstat", (int)pid, e->d_name);
        FILE *f = fopen(p, "r");
        if (!f)
            continue;
        unsigned long long ns = 0;
        if (fscanf(f, "%llu", &ns) == 1)
            sum += ns;
        fclose(f);
    }
    closedir(d);
    *out = sum;
    return 0;
}

static long rss_of(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static int fds_of(pid_t pid, struct pstat *st)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd == -1)
        return -errno;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return -errno;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char target[64];
        ssize_t n = readlinkat(dfd, e->d_name, target, sizeof(target) - 1);
        st->fds++;
        if (n <= 0)
            continue;
        target[n] = 0;
        if (strncmp(target, "socket:", 7) == 0)
            st->sockets++;
        else if (strncmp(target, "pipe:", 5) == 0)
            st->pipes++;
    }
    closedir(d);
    return 0;
}

int pstat_read(pid_t pid, int with_fds, struct pstat *st)
{
    memset(st, 0, sizeof(*st));
    int r = cpu_of(pid, &st->cpu_ns);
    if (r < 0)
        return r;
    st->rss_kib = rss_of(pid);
    if (with_fds && (r = fds_of(pid, st)) < 0)
        return r;
    return 0;
}

uint64_t self_cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}
