/* The end-of-run table and the --json document: per target and metric the
 * median with min-max over the rounds that succeeded, and the ratios of the
 * medians to the direct and to the first tcp-proxy target. */
#include "bench/run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct summary {
    double med, min, max;
    unsigned n;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static struct summary summarize(const struct opts *o, const struct target *t, unsigned m)
{
    double vals[MAX_ROUNDS];
    struct summary s = {NAN, NAN, NAN, 0};
    for (unsigned r = 0; r < o->rounds; r++)
        if (!isnan(t->v[r][m]) && (!t->failed[r] || o->mode == BM_HOLD))
            vals[s.n++] = t->v[r][m];
    if (!s.n)
        return s;
    qsort(vals, s.n, sizeof(vals[0]), cmp_double);
    s.min = vals[0];
    s.max = vals[s.n - 1];
    s.med = s.n % 2 ? vals[s.n / 2] : (vals[s.n / 2 - 1] + vals[s.n / 2]) / 2;
    return s;
}

static const struct target *find_kind(const struct opts *o, enum tkind k)
{
    for (unsigned i = 0; i < o->nt; i++)
        if (o->t[i].kind == k)
            return &o->t[i];
    return NULL;
}

static double ratio(const struct opts *o, const struct target *t, const struct target *base,
                    unsigned m)
{
    if (!base)
        return NAN;
    struct summary a = summarize(o, t, m), b = summarize(o, base, m);
    if (isnan(a.med) || isnan(b.med) || b.med == 0)
        return NAN;
    return a.med / b.med;
}

static void fmt_num(char *out, size_t cap, double v)
{
    if (isnan(v))
        snprintf(out, cap, "-");
    else if (fabs(v) >= 1000 || v == floor(v))
        snprintf(out, cap, "%.0f", v);
    else if (fabs(v) >= 10)
        snprintf(out, cap, "%.1f", v);
    else
        snprintf(out, cap, "%.3g", v);
}

static void describe(const struct opts *o, FILE *out)
{
    fprintf(out, "rapi-bench %s: %u tunnel(s)", mode_name(o->mode), o->tunnels);
    if (o->mode == BM_THROUGHPUT)
        fprintf(out, ", %s", o->dir == DIR_UP ? "up" : o->dir == DIR_DOWN ? "down" : "both");
    if (o->mode == BM_LATENCY || o->mode == BM_SETUP)
        fprintf(out, ", %u-byte echo", o->size);
    if (o->mode == BM_LATENCY && o->rate > 0)
        fprintf(out, " at %.0f/s", o->rate);
    fprintf(out, ", %u round(s) x %.1f s", o->rounds, o->duration);
    if (o->mode != BM_HOLD)
        fprintf(out, " (+%.1f s warm-up)", o->warmup);
    fprintf(out, ", %u thread(s) on %d CPU(s)\n", o->threads, o->cpus);
}

void report_table(const struct opts *o, FILE *out)
{
    unsigned nm;
    const struct metric_def *md = mode_metrics(o->mode, &nm);
    const struct target *direct = find_kind(o, TK_DIRECT), *proxy = find_kind(o, TK_PROXY);
    describe(o, out);
    fprintf(out, "%-14s %-26s %12s %12s %12s %9s %9s\n", "target", "metric", "median", "min", "max",
            "x direct", "x proxy");
    for (unsigned i = 0; i < o->nt; i++) {
        const struct target *t = &o->t[i];
        for (unsigned m = 0; m < nm; m++) {
            if (!md[m].key)
                continue;
            struct summary s = summarize(o, t, m);
            char med[32], mn[32], mx[32], rd[32], rp[32];
            fmt_num(med, sizeof(med), s.med);
            fmt_num(mn, sizeof(mn), s.min);
            fmt_num(mx, sizeof(mx), s.max);
            double x = ratio(o, t, direct, m), y = ratio(o, t, proxy, m);
            snprintf(rd, sizeof(rd), isnan(x) ? "-" : "%.2f", x);
            snprintf(rp, sizeof(rp), isnan(y) ? "-" : "%.2f", y);
            fprintf(out, "%-14s %-26s %12s %12s %12s %9s %9s\n", t->label, md[m].name, med, mn, mx,
                    rd, rp);
        }
        unsigned nf = 0;
        for (unsigned r = 0; r < o->rounds; r++)
            nf += (unsigned)t->failed[r];
        if (nf || t->err[0])
            fprintf(out, "%-14s %u of %u round(s) failed%s%s\n", t->label, nf, o->rounds,
                    t->err[0] ? "; last error: " : "", t->err);
    }
}

static void json_num(FILE *out, double v)
{
    if (isnan(v) || isinf(v))
        fputs("null", out);
    else
        fprintf(out, "%.6g", v);
}

static void json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(out, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(out, "\\u%04x", ch);
        else
            fputc(ch, out);
    }
    fputc('"', out);
}

static void json_params(const struct opts *o, FILE *out)
{
    fprintf(out, "\"params\":{\"tunnels\":%u,\"threads\":%u,\"cpus\":%d,\"rounds\":%u,", o->tunnels,
            o->threads, o->cpus, o->rounds);
    fprintf(out,
            "\"duration_s\":%g,\"warmup_s\":%g,\"size\":%u,\"rate\":%g,\"direction\":", o->duration,
            o->warmup, o->size, o->rate);
    json_str(out, o->dir == DIR_UP ? "up" : o->dir == DIR_DOWN ? "down" : "both");
    fprintf(out, ",\"block\":%zu,\"count\":%llu}", o->block, (unsigned long long)o->count);
}

static void json_target(const struct opts *o, const struct target *t, FILE *out)
{
    unsigned nm;
    const struct metric_def *md = mode_metrics(o->mode, &nm);
    const struct target *direct = find_kind(o, TK_DIRECT), *proxy = find_kind(o, TK_PROXY);
    fputs("{\"label\":", out);
    json_str(out, t->label);
    fputs(",\"kind\":", out);
    json_str(out, kind_name(t->kind));
    fputs(",\"addr\":", out);
    json_str(out, t->addr);
    fprintf(out, ",\"pid\":%d,\"rounds\":[", (int)t->pid);
    for (unsigned r = 0; r < o->rounds; r++) {
        fprintf(out, "%s{\"failed\":%s", r ? "," : "", t->failed[r] ? "true" : "false");
        for (unsigned m = 0; m < nm; m++) {
            fprintf(out, ",\"%s\":", md[m].name);
            json_num(out, t->v[r][m]);
        }
        fputc('}', out);
    }
    fputc(']', out);
    const char *what[] = {"median", "min", "max", "ratio_direct", "ratio_proxy"};
    for (unsigned k = 0; k < 5; k++) {
        fprintf(out, ",\"%s\":{", what[k]);
        for (unsigned m = 0; m < nm; m++) {
            struct summary s = summarize(o, t, m);
            double v = k == 0   ? s.med
                       : k == 1 ? s.min
                       : k == 2 ? s.max
                       : k == 3 ? ratio(o, t, direct, m)
                                : ratio(o, t, proxy, m);
            fprintf(out, "%s\"%s\":", m ? "," : "", md[m].name);
            json_num(out, v);
        }
        fputc('}', out);
    }
    fputs(",\"error\":", out);
    if (t->err[0])
        json_str(out, t->err);
    else
        fputs("null", out);
    fputc('}', out);
}

void report_json(const struct opts *o, FILE *out)
{
    fputs("{\"tool\":\"rapi-bench\",\"version\":1,\"mode\":", out);
    json_str(out, mode_name(o->mode));
    fputc(',', out);
    json_params(o, out);
    fputs(",\"targets\":[", out);
    for (unsigned i = 0; i < o->nt; i++) {
        if (i)
            fputc(',', out);
        json_target(o, &o->t[i], out);
    }
    fputs("]}\n", out);
}
