/* Logging to stderr: one line per event, "<ISO-8601 UTC> <level> <message>",
 * or "<N><message>" (N: the syslog priority) when stderr is journald's stream,
 * written with a single write(2) so lines from threads never interleave.
 * The level check happens before the arguments are evaluated (redis
 * serverLog style). Callable from any thread. Never pass a key. */
#ifndef RAPI_ENGINE_LOG_H
#define RAPI_ENGINE_LOG_H

#include <stdatomic.h>

/* Most to least severe: a level logs itself and everything before it. */
enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern _Atomic int log_level_cur;

/* Choose the line format: journald's when JOURNAL_STREAM names stderr's
 * device and inode (sd_journal_stream_fd(3)). Call once from main, before
 * any thread starts; without it lines are timestamped. */
void log_setup(void);

void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Per-connection noise (rejected requests): at most LOG_NOISY_PER_SEC lines a
 * second per thread; the number suppressed is reported with the next line. */
#define LOG_NOISY_PER_SEC 50
void log_noisy(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_at(lvl, ...)                                                                           \
    do {                                                                                           \
        if (atomic_load_explicit(&log_level_cur, memory_order_relaxed) >= (lvl))                   \
            log_write((lvl), __VA_ARGS__);                                                         \
    } while (0)

/* Start-up and shutdown lines ("listening on ADDR", "stopped"): logged at
 * every level, because operators and tools rely on them. */
#define log_notice(...) log_write(LOG_INFO, __VA_ARGS__)

#define log_error(...) log_at(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_at(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_at(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_DEBUG, __VA_ARGS__)
#define log_reject(...)                                                                            \
    do {                                                                                           \
        if (atomic_load_explicit(&log_level_cur, memory_order_relaxed) >= LOG_INFO)                \
            log_noisy(LOG_INFO, __VA_ARGS__);                                                      \
    } while (0)

#endif
