#include "engine/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 1024

_Atomic int log_level_cur = LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
/* syslog(3) priorities of the levels: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG. */
static const int level_prio[] = {3, 4, 6, 7};

/* stderr is journald's stream: set by log_setup() before any thread starts. */
static bool log_journal;

void log_setup(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) == -1)
        return;
    log_journal = (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/* "<N>" for journald, which stamps the time itself; else "<UTC time> <level> ". */
static size_t log_prefix(char *line, size_t cap, int level)
{
    struct timespec ts;
    struct tm tm;
    size_t n;
    int r;

    level = level < 0 ? 0 : level > LOG_DEBUG ? LOG_DEBUG : level;
    if (log_journal) {
        r = snprintf(line, cap, "<%d>", level_prio[level]);
        return r > 0 ? (size_t)r : 0;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(line + n, cap - n, ".%03ldZ %s ", ts.tv_nsec / 1000000, level_names[level]);
    return n + (r > 0 ? (size_t)r : 0);
}

static void log_vwrite(int level, unsigned suppressed, const char *fmt, va_list ap)
{
    char line[LOG_LINE_MAX];
    size_t n = log_prefix(line, sizeof(line), level);
    int r;

    if (suppressed) {
        r = snprintf(line + n, sizeof(line) - n, "(%u similar lines suppressed) ", suppressed);
        n += r > 0 ? (size_t)r : 0;
    }
    r = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    if (r < 0)
        r = 0;
    n += (size_t)r < sizeof(line) - n - 1 ? (size_t)r : sizeof(line) - n - 2;
    line[n++] = '\n';
    /* Best effort: a log line that cannot be written is not worth failing for. */
    if (write(STDERR_FILENO, line, n) < 0)
        return;
}

void log_write(int level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(level, 0, fmt, ap);
    va_end(ap);
}

void log_noisy(int level, const char *fmt, ...)
{
    static _Thread_local time_t window;
    static _Thread_local unsigned used, suppressed;
    time_t now = time(NULL);
    va_list ap;

    if (now != window) {
        window = now;
        used = 0;
    }
    if (used >= LOG_NOISY_PER_SEC) {
        suppressed++;
        return;
    }
    used++;
    va_start(ap, fmt);
    log_vwrite(level, suppressed, fmt, ap);
    va_end(ap);
    suppressed = 0;
}
