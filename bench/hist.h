/* Log-linear latency histogram (HdrHistogram-like, ~1.6% resolution) in
 * nanoseconds. One per worker thread, written only by it; merged by the main
 * thread after the workers are joined. No allocation, no locks. */
#ifndef RAPI_BENCH_HIST_H
#define RAPI_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 6                   /* 64 sub-buckets per power of two */
#define HIST_LINEAR (2u << HIST_SUB_BITS) /* values below are exact */
#define HIST_MAX_EXP 44                   /* 2^44 ns, about 4.9 hours */
#define HIST_BUCKETS (HIST_LINEAR + (HIST_MAX_EXP - HIST_SUB_BITS) * (1u << HIST_SUB_BITS))

struct hist {
    uint64_t count;
    uint64_t sum;
    uint64_t min;
    uint64_t max;
    uint64_t b[HIST_BUCKETS];
};

void hist_reset(struct hist *h);
void hist_add(struct hist *h, uint64_t ns);
void hist_merge(struct hist *dst, const struct hist *src);

/* Value (ns) at quantile q in [0,1]: the middle of the bucket holding it,
 * clamped to [min, max]. 0 for an empty histogram. */
uint64_t hist_quantile(const struct hist *h, double q);

#endif
