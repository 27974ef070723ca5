/*
 * omp-ceiling: what plain OpenMP C reaches on this CPU for clnorm-bench's float32 problems, so
 * that a speed target can be shown to be a limit of the hardware or not.
 *
 * It shares nothing with the library. Each problem is timed the way clnorm-bench times it: the
 * median of repeated calls after warm-up, each followed by its yardstick, an OpenMP copy loop on
 * the same threads moving the same minimal bytes (forward: x read and y written; backward: x
 * and dy read and dx written; the copy reads and writes half of them each), so that
 * SOL = copy time / operation time means what it means there. Every result is first checked
 * against a float64 computation of the whole problem.
 *
 * Work layout. The tensor is seen as rows of contiguous floats: one (n, c) plane for batch,
 * instance and group in NCHW, one sample for layer, rms and the NHWC kinds. Rows are cut into
 * blocks of about 64 KiB. A unit is the set of rows whose statistics are complete by themselves
 * (a group's planes, one sample, or the whole tensor for batch); a unit is normalized in three
 * steps: mean and squared deviations of each block by two passes over the block while it is in
 * cache, the blocks merged exactly (sum of count * mean, then M2 plus count * (mean - group
 * mean)^2), and the apply pass. Small units go to threads whole, so each is read from memory
 * once; large ones (a long plane, a big sample, batch) are split among all threads by blocks.
 * Either way a thread interleaves the apply of one unit with the first pass over the next, so
 * that it reads and writes at once as a copy does, and applies the last unit in reverse, so
 * that what it read last is still in cache (for batch, all L3 can save of the second read).
 * Backward does the same with the sums of dy and dy * (x - mean) in place of the statistics.
 * NHWC rows keep one accumulator lane per position of a period of lcm(C, 64) floats, so that
 * channels stay apart without gathers.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define DEFAULT_REPEAT 20
#define WARMUP 2
#define EPS 1e-5f
#define MOMENTUM 0.1f
#define TOLERANCE 1e-4 /* forward: |y - want| / (1 + |want|); backward: relative L2 errors */
#define BLOCK 16384    /* floats per block: its two passes run in L2 */
#define LANES 64       /* accumulators of a plain row: enough independent adds to hide latency */
#define MAX_PERIOD 4096
#define CHUNK 512              /* floats of one unit's apply, then of the next unit's first pass */
#define UNIT_CACHE (24u << 20) /* bytes all threads' whole units may hold: most of L3 */
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

enum kind { BATCH, LAYER, INSTANCE, GROUP, RMS };
enum pass { TRAINING, INFERENCE, BACKWARD };
enum layout { NCHW, NHWC };


typedef struct shape {
    int kind, pass, layout;
    size_t n, c, d, groups;
} shape;

typedef struct plan {
    shape s;
    int nhwc;        /* channels interleaved along a row */
    int per_element; /* layer, rms: gamma and beta per element of a sample */
    int running;     /* batch, instance: running statistics (inference uses them) */
    int has_beta;
    size_t rows, width;      /* floats per row */
    size_t period;           /* accumulator lanes; NHWC: a multiple of C */
    size_t block, nblock;    /* floats per block (a multiple of period), blocks per row */
    size_t unit_rows, units; /* rows per unit */
    size_t ngroups, gcount;  /* statistics groups and elements in each */
    size_t params;           /* elements of gamma */
    int per_thread;          /* whole units per thread, else all threads on each unit */
} plan;

/* A thread's accumulators and per-lane vectors; one more set holds a unit's shared vectors. */
typedef struct scratch {
    float *acc, *acc2, *rep[5]; /* rep[0..3]: apply; rep[4]: means for the sums */
    double *c0, *c1, *c2;       /* per channel */
    float *dgamma, *dbeta;      /* layer, rms backward: this thread's share */
} scratch;

typedef struct bufs {
    float *x, *y, *dy, *dx;
    float *gamma, *beta, *rmean, *rvar;
    float *mean, *invstd, *dgamma, *dbeta;
    double *bs0, *bs1;                /* per block (and channel): mean and M2, or two sums */
    double *gs0, *gs1, *gmean, *ginv; /* per group */
    scratch *w;                       /* max threads + 1 (shared) */
    int nw;
} bufs;

/* ---- problems -------------------------------------------------------------------------- */

static int lookup(const char *name, size_t len, const char *const *names, size_t count)
{
    for (size_t i = 0; i < count; ++i)
        if (strlen(names[i]) == len && strncmp(name, names[i], len) == 0)
            return (int)i;
    return -1;
}

/* kind:pass:layout:NxCxD[/G], as clnorm-bench reads it. */
static int parse_problem(const char *text, shape *out)
{
    const char *field[4] = {text, NULL, NULL, NULL};
    for (int i = 1; i < 4; ++i) {
        const char *colon = strchr(field[i - 1], ':');
        if (!colon)
            return -1;
        field[i] = colon + 1;
    }
    int kind = lookup(field[0], (size_t)(field[1] - field[0] - 1), kind_names, COUNT(kind_names));
    int pass = lookup(field[1], (size_t)(field[2] - field[1] - 1), pass_names, COUNT(pass_names));
    int layout =
        lookup(field[2], (size_t)(field[3] - field[2] - 1), layout_names, COUNT(layout_names));
    size_t n, c, d, g = 0;
    const char *s = field[3];
    if (kind < 0 || pass < 0 || layout < 0 || parse_size(&s, &n) || *s++ != 'x' ||
        parse_size(&s, &c) || *s++ != 'x' || parse_size(&s, &d) ||
        (*s == '/' && (++s, parse_size(&s, &g))) || *s)
        return -1;
    if (n == 0 || c == 0 || d == 0 || (kind == GROUP) != (g != 0) || (g && c % g) ||
        n > SIZE_MAX / 64 / c / d)
        return -1;
    *out = (shape){kind, pass, layout, n, c, d, g};
    return 0;
}

static const char *problem_name(const shape *s, char *buf, size_t size)
{
    int len = snprintf(buf, size, "%s:%s:%s:%zux%zux%zu", kind_names[s->kind], pass_names[s->pass],
                       layout_names[s->layout], s->n, s->c, s->d);
    if (s->kind == GROUP && len > 0 && (size_t)len < size)
        snprintf(buf + len, size - (size_t)len, "/%zu", s->groups);
    return buf;
}

static size_t gcd(size_t a, size_t b)
{
    while (b) {
        size_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static void make_plan(const shape *s, int threads, plan *p)
{
    memset(p, 0, sizeof *p);
    p->s = *s;
    p->per_element = s->kind == LAYER || s->kind == RMS;
    p->nhwc = s->layout == NHWC && !p->per_element;
    p->running = s->kind == BATCH || s->kind == INSTANCE;
    p->has_beta = s->kind != RMS;
    size_t cg = s->kind == GROUP ? s->c / s->groups : 1;
    if (p->per_element || p->nhwc) {
        p->rows = s->n;
        p->width = s->c * s->d;
    } else {
        p->rows = s->n * s->c;
        p->width = s->d;
    }
    p->period = LANES;
    if (p->nhwc) {
        p->period = s->c / gcd(s->c, LANES) * LANES;
        if (p->period > MAX_PERIOD)
            p->period = s->c;
    }
    size_t nb = (p->width + BLOCK - 1) / BLOCK;
    size_t block = (p->width + nb - 1) / nb;
    block = (block + p->period - 1) / p->period * p->period;
    p->block = block < p->width ? block : p->width;
    p->nblock = (p->width + p->block - 1) / p->block;
    switch (s->kind) {
    case BATCH:
        p->unit_rows = p->rows;
        p->ngroups = s->c;
        p->gcount = s->n * s->d;
        break;
    case INSTANCE:
        p->unit_rows = 1;
        p->ngroups = s->n * s->c;
        p->gcount = s->d;
        break;
    case GROUP:
        p->unit_rows = p->nhwc ? 1 : cg;
        p->ngroups = s->n * s->groups;
        p->gcount = cg * s->d;
        break;
    default:
        p->unit_rows = 1;
        p->ngroups = s->n;
        p->gcount = s->c * s->d;
        break;
    }
    p->units = p->rows / p->unit_rows;
    p->params = p->per_element ? s->c * s->d : s->c;
    size_t th = (size_t)threads;
    size_t unit_bytes = p->unit_rows * p->width * sizeof(float) * (s->pass == BACKWARD ? 2 : 1);
    p->per_thread = p->units >= th && (p->units >= 4 * th || p->units % th == 0) &&
                    unit_bytes * th <= UNIT_CACHE;
}

/* Statistics group of channel c in row r. */
static size_t group_of(const plan *p, size_t r, size_t c)
{
    switch (p->s.kind) {
    case BATCH: return p->nhwc ? c : r % p->s.c;
    case INSTANCE: return p->nhwc ? r * p->s.c + c : r;
    case GROUP:
        return p->nhwc ? r * p->s.groups + c / (p->s.c / p->s.groups) : r / (p->s.c / p->s.groups);
    default: return r;
    }
}

/* ---- accumulator lanes ------------------------------------------------------------------ */
/* Element i of a span adds into lane i % P: P independent chains, and in NHWC lane k always
 * holds channel k % C because spans start at multiples of P within a row. */

static inline void lanes_zero(float *restrict a, size_t P)
{
    for (size_t k = 0; k < P; ++k)
        a[k] = 0;
}

static inline void lanes_add(const float *restrict x, size_t len, size_t P, float *restrict s)
{
    size_t i = 0;
    for (; i + P <= len; i += P) {
#pragma omp simd
        for (size_t k = 0; k < P; ++k)
            s[k] += x[i + k];
    }
    for (size_t k = 0; i + k < len; ++k)
        s[k] += x[i + k];
}

static inline void lanes_addsq(const float *restrict x, size_t len, size_t P, float *restrict s)
{
    size_t i = 0;
    for (; i + P <= len; i += P) {
#pragma omp simd
        for (size_t k = 0; k < P; ++k)
            s[k] += x[i + k] * x[i + k];
    }
    for (size_t k = 0; i + k < len; ++k)
        s[k] += x[i + k] * x[i + k];
}

/* dev and sq: sums of t and t * t, t = x - m (per lane). */
static inline void lanes_dev(const float *restrict x, size_t len, size_t P, const float *restrict m,
                             float *restrict dev, float *restrict sq)
{
    size_t i = 0;
    lanes_zero(dev, P);
    lanes_zero(sq, P);
    for (; i + P <= len; i += P) {
#pragma omp simd
        for (size_t k = 0; k < P; ++k) {
            float t = x[i + k] - m[k];
            dev[k] += t;
            sq[k] += t * t;
        }
    }
    for (size_t k = 0; i + k < len; ++k) {
        float t = x[i + k] - m[k];
        dev[k] += t;
        sq[k] += t * t;
    }
}

/* sa and sb: sums of dy and dy * (x - m) (per lane). */
static inline void lanes_bwd_add(const float *restrict x, const float *restrict dy, size_t len,
                                 size_t P, const float *restrict m, float *restrict sa,
                                 float *restrict sb)
{
    size_t i = 0;
    for (; i + P <= len; i += P) {
#pragma omp simd
        for (size_t k = 0; k < P; ++k) {
            sa[k] += dy[i + k];
            sb[k] += dy[i + k] * (x[i + k] - m[k]);
        }
    }
    for (size_t k = 0; i + k < len; ++k) {
        sa[k] += dy[i + k];
        sb[k] += dy[i + k] * (x[i + k] - m[k]);
    }
}

static inline void lanes_apply(const float *restrict x, float *restrict y, size_t len, size_t P,
                               const float *restrict m, const float *restrict sc,
                               const float *restrict sh)
{
    size_t i = 0;
    for (; i + P <= len; i += P) {
#pragma omp simd
        for (size_t k = 0; k < P; ++k)
            y[i + k] = (x[i + k] - m[k]) * sc[k] + sh[k];
    }
    for (size_t k = 0; i + k < len; ++k)
        y[i + k] = (x[i + k] - m[k]) * sc[k] + sh[k];
}

/* dx = dy * a + (x - m) * b + k, per lane. */
static inline void lanes_dx(const float *restrict x, const float *restrict dy, float *restrict dx,
                            size_t len, size_t P, float *const *rep)
{
    const float *restrict m = rep[0], *restrict a = rep[1], *restrict b = rep[2],
                          *restrict k0 = rep[3];
    size_t i = 0;
    for (; i + P <= len; i += P) {
#pragma omp simd
        for (size_t k = 0; k < P; ++k)
            dx[i + k] = dy[i + k] * a[k] + (x[i + k] - m[k]) * b[k] + k0[k];
    }
    for (size_t k = 0; i + k < len; ++k)
        dx[i + k] = dy[i + k] * a[k] + (x[i + k] - m[k]) * b[k] + k0[k];
}

/* Lane sums into channel sums: lane k holds channel k % C (P is a multiple of C). */
static void lanes_fold(const float *restrict s, size_t P, size_t C, double *restrict out)
{
    if (C == 1 && P % 16 == 0) { /* a tree in float: each lane is a partial sum already */
        float t[16] = {0};
        for (size_t i = 0; i < P; i += 16)
            for (size_t k = 0; k < 16; ++k)
                t[k] += s[i + k];
        for (size_t h = 8; h; h /= 2)
            for (size_t k = 0; k < h; ++k)
                t[k] += t[k + h];
        out[0] = t[0];
        return;
    }
    for (size_t c = 0; c < C; ++c) {
        double t = 0;
        for (size_t k = c; k < P; k += C)
            t += s[k];
        out[c] = t;
    }
}

static void lanes_fill(float *rep, size_t P, float v)
{
    for (size_t k = 0; k < P; ++k)
        rep[k] = v;
}

/* Per-channel values repeated over the lanes. */
static void lanes_spread(const double *v, size_t P, size_t C, float *rep)
{
    if (C == 1) {
        lanes_fill(rep, P, (float)v[0]);
        return;
    }
    for (size_t k = 0; k < P; k += C)
        for (size_t c = 0; c < C; ++c)
            rep[k + c] = (float)v[c];
}

/* ---- forward --------------------------------------------------------------------------- */

static size_t block_span(const plan *p, size_t b, size_t *len)
{
    if (p->nblock == 1) {
        *len = p->width;
        return b * p->width;
    }
    size_t r = b / p->nblock, o = b % p->nblock * p->block;
    *len = p->width - o < p->block ? p->width - o : p->block;
    return r * p->width + o;
}

/* A block's statistics come in three steps, so that its first pass can be cut into chunks
 * interleaved with the apply of another unit. */
static size_t lanes_of(const plan *p) { return p->nhwc ? p->period : LANES; }

static void stats_begin(const plan *p, const scratch *w) { lanes_zero(w->acc, lanes_of(p)); }

/* The first pass over floats [o, o + n) of block b; o is a multiple of the lanes. */
static void stats_range(const plan *p, const bufs *B, size_t b, size_t o, size_t n,
                        const scratch *w)
{
    size_t len, P = lanes_of(p);
    const float *x = B->x + block_span(p, b, &len) + o;
    if (p->s.kind == RMS)
        lanes_addsq(x, n, LANES, w->acc);
    else if (P != LANES)
        lanes_add(x, n, P, w->acc);
    else
        lanes_add(x, n, LANES, w->acc); /* a constant count: the lanes stay in registers */
}

/* The second pass, over the whole block (in cache): sums of t = x - m and t^2 with m the
 * float mean of the first; the sum of t corrects m. RMS: the sum of squares only. */
static void stats_end(const plan *p, const bufs *B, size_t b, const scratch *w)
{
    size_t len, off = block_span(p, b, &len);
    size_t C = p->nhwc ? p->s.c : 1, P = lanes_of(p), per = len / C;
    const float *x = B->x + off;
    double *mean = B->bs0 + b * C, *m2 = B->bs1 + b * C;
    if (p->s.kind == RMS) {
        lanes_fold(w->acc, LANES, 1, m2);
        mean[0] = 0;
        return;
    }
    lanes_fold(w->acc, P, C, w->c0);
    for (size_t c = 0; c < C; ++c)
        w->c0[c] = (float)(w->c0[c] / (double)per);
    lanes_spread(w->c0, P, C, w->rep[4]);
    if (P != LANES)
        lanes_dev(x, len, P, w->rep[4], w->acc, w->acc2);
    else
        lanes_dev(x, len, LANES, w->rep[4], w->acc, w->acc2);
    lanes_fold(w->acc, P, C, w->c1);
    lanes_fold(w->acc2, P, C, w->c2);
    for (size_t c = 0; c < C; ++c) {
        mean[c] = w->c0[c] + w->c1[c] / (double)per;
        m2[c] = w->c2[c] - w->c1[c] * w->c1[c] / (double)per;
    }
}

/* Mean and M2 of each channel of block b. */
static void stats_block(const plan *p, const bufs *B, size_t b, const scratch *w)
{
    size_t len;
    block_span(p, b, &len);
    stats_begin(p, w);
    stats_range(p, B, b, 0, len, w);
    stats_end(p, B, b, w);
}

/* Per channel c of an NHWC unit, the vectors of its apply pass. */
static void nhwc_reps(const plan *p, const bufs *B, size_t r, const scratch *w)
{
    size_t C = p->s.c;
    for (size_t k = 0; k < p->period; ++k) {
        size_t c = k % C, g = group_of(p, r, c);
        w->rep[0][k] = (float)B->gmean[g];
        w->rep[1][k] = (float)B->ginv[g] * B->gamma[c];
        w->rep[2][k] = p->has_beta ? B->beta[c] : 0.0f;
    }
}

/* Blocks merged into the unit's groups: count * mean summed for the group mean, then M2 plus
 * count * (block mean - group mean)^2 (exact, and no division per block). */
static void combine_forward(const plan *p, const bufs *B, size_t u, const scratch *w,
                            const scratch *reps)
{
    size_t r0 = u * p->unit_rows, r1 = r0 + p->unit_rows, nb = p->nblock;
    double cnt = (double)p->gcount;
    if (!p->nhwc) {
        for (size_t r = r0; r < r1; ++r)
            B->gs0[group_of(p, r, 0)] = B->gs1[group_of(p, r, 0)] = 0;
        for (size_t b = r0 * nb; b < r1 * nb; ++b) {
            size_t len;
            block_span(p, b, &len);
            B->gs0[group_of(p, b / nb, 0)] += (double)len * B->bs0[b];
        }
        for (size_t r = r0; r < r1; ++r)
            B->gmean[group_of(p, r, 0)] = B->gs0[group_of(p, r, 0)] / cnt;
        for (size_t b = r0 * nb; b < r1 * nb; ++b) {
            size_t len, g = group_of(p, b / nb, 0);
            block_span(p, b, &len);
            double dm = B->bs0[b] - B->gmean[g];
            B->gs1[g] += B->bs1[b] + (double)len * dm * dm;
        }
        for (size_t r = r0; r < r1; ++r) {
            size_t g = group_of(p, r, 0);
            B->ginv[g] = 1.0 / sqrt(B->gs1[g] / cnt + (double)EPS);
        }
        return;
    }
    size_t C = p->s.c;
    double *sum = w->c0, *m2 = w->c1, *gm = w->c2;
    for (size_t c = 0; c < C; ++c)
        sum[c] = m2[c] = 0;
    for (size_t b = r0 * nb; b < r1 * nb; ++b) {
        size_t len;
        block_span(p, b, &len);
        double pix = (double)(len / C);
        const double *bm = B->bs0 + b * C;
#pragma omp simd
        for (size_t c = 0; c < C; ++c)
            sum[c] += pix * bm[c];
    }
    for (size_t c = 0; c < C; ++c)
        B->gs0[group_of(p, r0, c)] = B->gs1[group_of(p, r0, c)] = 0;
    for (size_t c = 0; c < C; ++c)
        B->gs0[group_of(p, r0, c)] += sum[c];
    for (size_t c = 0; c < C; ++c)
        gm[c] = B->gmean[group_of(p, r0, c)] = B->gs0[group_of(p, r0, c)] / cnt;
    for (size_t b = r0 * nb; b < r1 * nb; ++b) {
        size_t len;
        block_span(p, b, &len);
        double pix = (double)(len / C);
        const double *bm = B->bs0 + b * C, *bq = B->bs1 + b * C;
#pragma omp simd
        for (size_t c = 0; c < C; ++c)
            m2[c] += bq[c] + pix * (bm[c] - gm[c]) * (bm[c] - gm[c]);
    }
    for (size_t c = 0; c < C; ++c)
        B->gs1[group_of(p, r0, c)] += m2[c];
    for (size_t c = 0; c < C; ++c) {
        size_t g = group_of(p, r0, c);
        B->ginv[g] = 1.0 / sqrt(B->gs1[g] / cnt + (double)EPS);
    }
    nhwc_reps(p, B, r0, reps);
}

/* y over floats [o, o + n) of block b. */
static void apply_range(const plan *p, const bufs *B, size_t b, size_t o, size_t n,
                        const scratch *reps)
{
    size_t len, off = block_span(p, b, &len) + o, r = b / p->nblock;
    size_t c = p->per_element ? 0 : r % p->s.c, g = group_of(p, r, c);
    const float *restrict gam = B->gamma + (p->per_element ? b % p->nblock * p->block + o : c);
    const float *restrict bet = B->beta + (p->per_element ? b % p->nblock * p->block + o : c);
    float m = (float)B->gmean[g], inv = (float)B->ginv[g], sc = inv * gam[0];
    const float *restrict x = B->x + off;
    float *restrict y = B->y + off;
    if (p->nhwc) {
        size_t P = p->period;
        if (P != LANES)
            lanes_apply(x, y, n, P, reps->rep[0], reps->rep[1], reps->rep[2]);
        else
            lanes_apply(x, y, n, LANES, reps->rep[0], reps->rep[1], reps->rep[2]);
    } else if (p->per_element && p->has_beta) {
#pragma omp simd
        for (size_t i = 0; i < n; ++i)
            y[i] = (x[i] - m) * inv * gam[i] + bet[i];
    } else if (p->per_element) {
#pragma omp simd
        for (size_t i = 0; i < n; ++i)
            y[i] = x[i] * inv * gam[i];
    } else {
#pragma omp simd
        for (size_t i = 0; i < n; ++i)
            y[i] = (x[i] - m) * sc + bet[0];
    }
}

static void apply_block(const plan *p, const bufs *B, size_t b, const scratch *reps)
{
    size_t len;
    block_span(p, b, &len);
    apply_range(p, B, b, 0, len, reps);
}

/* The blocks of unit u that thread tid of nth works on. */
static void unit_share(const plan *p, size_t u, int tid, int nth, size_t *lo, size_t *hi)
{
    size_t nb = p->unit_rows * p->nblock, b0 = u * nb;
    *lo = b0 + nb * (size_t)tid / (size_t)nth;
    *hi = b0 + nb * (size_t)(tid + 1) / (size_t)nth;
}

/* Floats per step of the interleaving: a multiple of the lanes. */
static size_t chunk_of(const plan *p)
{
    size_t P = lanes_of(p);
    return (CHUNK + P - 1) / P * P;
}

/*
 * Units [ua, ub), by thread tid of the nth that share each unit (nth 1: whole units per
 * thread). The apply of unit u is interleaved, a chunk at a time, with the first statistics
 * pass over the same blocks of unit u + 1: the thread keeps a read stream and a write stream
 * going at once, as a copy does, rather than a read phase and then a write phase, each of
 * which leaves about half of what one core can move unused. The last unit is applied in
 * reverse, so that its blocks read last in the statistics pass, still in cache, come first.
 */
static void forward_units(const plan *p, const bufs *B, size_t ua, size_t ub, int tid, int nth,
                          const scratch *w, const scratch *reps)
{
    size_t lo, hi, nbu = p->unit_rows * p->nblock, step = chunk_of(p);
    if (ua >= ub)
        return;
    unit_share(p, ua, tid, nth, &lo, &hi);
    for (size_t b = lo; b < hi; ++b)
        stats_block(p, B, b, w);
    for (size_t u = ua; u < ub; ++u, lo += nbu, hi += nbu) {
        if (nth > 1) {
#pragma omp barrier
        }
        if (tid == 0)
            combine_forward(p, B, u, w, reps);
        if (nth > 1) {
#pragma omp barrier
        }
        if (u + 1 == ub) {
            for (size_t b = hi; b-- > lo;)
                apply_block(p, B, b, reps);
            break;
        }
        for (size_t b = lo; b < hi; ++b) {
            size_t len;
            block_span(p, b, &len);
            stats_begin(p, w);
            for (size_t o = 0; o < len; o += step) {
                size_t n = len - o < step ? len - o : step;
                apply_range(p, B, b, o, n, reps);
                stats_range(p, B, b + nbu, o, n, w);
            }
            stats_end(p, B, b + nbu, w);
        }
    }
}

/* Running statistics of batch and instance training, as clnorm updates them. */
static void update_running(const plan *p, const bufs *B)
{
    size_t C = p->s.c, per = p->s.kind == BATCH ? 1 : p->s.n;
    double m = MOMENTUM, cnt = (double)p->gcount;
    for (size_t c = 0; c < C; ++c) {
        double am = 0, av = 0;
        for (size_t s = 0; s < per; ++s) {
            size_t g = p->s.kind == BATCH ? c : s * C + c;
            double var = 1.0 / (B->ginv[g] * B->ginv[g]) - (double)EPS;
            am += B->gmean[g];
            av += cnt > 1 ? var * cnt / (cnt - 1) : var;
        }
        B->rmean[c] = (float)((1 - m) * B->rmean[c] + m * am / (double)per);
        B->rvar[c] = (float)((1 - m) * B->rvar[c] + m * av / (double)per);
    }
}

/* One call of forward, training or inference. */
static void forward(const plan *p, const bufs *B)
{
    size_t blocks = p->rows * p->nblock;
    const scratch *shared = &B->w[B->nw - 1];
    if (p->s.pass == INFERENCE && p->running) { /* statistics given: one streaming pass */
        for (size_t g = 0; g < p->ngroups; ++g) {
            size_t c = p->s.kind == BATCH ? g : g % p->s.c;
            B->gmean[g] = B->rmean[c];
            B->ginv[g] = 1.0 / sqrt((double)B->rvar[c] + (double)EPS);
        }
        if (p->nhwc)
            nhwc_reps(p, B, 0, shared);
#pragma omp parallel for schedule(static)
        for (size_t b = 0; b < blocks; ++b)
            apply_block(p, B, b, shared);
        return;
    }
#pragma omp parallel
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        const scratch *w = &B->w[tid];
        size_t t = (size_t)tid, n = (size_t)nth;
        if (p->per_thread)
            forward_units(p, B, p->units * t / n, p->units * (t + 1) / n, 0, 1, w, w);
        else
            forward_units(p, B, 0, p->units, tid, nth, w, shared);
    }
    if (p->s.pass == TRAINING) {
        for (size_t g = 0; g < p->ngroups; ++g) {
            B->mean[g] = (float)B->gmean[g];
            B->invstd[g] = (float)B->ginv[g];
        }
        if (p->running)
            update_running(p, B);
    }
}

/* ---- backward -------------------------------------------------------------------------- */

/* Sums of block b: sum of dy and of dy * (x - mean) per channel, or for layer and rms, of
 * g = dy * gamma and g * (x - mean), with this thread's dgamma and dbeta shares. */
/* rep[4]: the means of unit u per lane, for its sums (NHWC; plain rows fill it per block). */
static void bwd_unit_means(const plan *p, const bufs *B, size_t u, const scratch *w)
{
    if (p->nhwc)
        for (size_t k = 0; k < p->period; ++k)
            w->rep[4][k] = B->mean[group_of(p, u * p->unit_rows, k % p->s.c)];
}

static void bwd_begin(const plan *p, const bufs *B, size_t b, const scratch *w)
{
    size_t r = b / p->nblock;
    if (p->per_element) {
        B->bs0[b] = B->bs1[b] = 0;
        return;
    }
    lanes_zero(w->acc, lanes_of(p));
    lanes_zero(w->acc2, lanes_of(p));
    if (!p->nhwc)
        lanes_fill(w->rep[4], LANES, B->mean[group_of(p, r, r % p->s.c)]);
}

/* Sums over floats [o, o + n) of block b: of dy and dy * (x - mean) per lane, or for layer
 * and rms, of g = dy * gamma and g * (x - mean), with this thread's dgamma and dbeta shares. */
static void bwd_range(const plan *p, const bufs *B, size_t b, size_t o, size_t n, const scratch *w)
{
    size_t len, off = block_span(p, b, &len) + o, r = b / p->nblock;
    const float *restrict x = B->x + off, *restrict dy = B->dy + off;
    if (lanes_of(p) != LANES) {
        lanes_bwd_add(x, dy, n, p->period, w->rep[4], w->acc, w->acc2);
    } else if (!p->per_element) {
        lanes_bwd_add(x, dy, n, LANES, w->rep[4], w->acc, w->acc2);
    } else {
        size_t j = b % p->nblock * p->block + o;
        const float *restrict gam = B->gamma + j;
        float *restrict dg = w->dgamma + j, *restrict db = w->dbeta + j;
        float m = B->mean[r], inv = B->invstd[r], sa = 0, sb = 0;
        if (p->has_beta) {
#pragma omp simd reduction(+ : sa, sb)
            for (size_t i = 0; i < n; ++i) {
                float g = dy[i] * gam[i], t = x[i] - m;
                sa += g;
                sb += g * t;
                dg[i] += dy[i] * t * inv;
                db[i] += dy[i];
            }
        } else {
#pragma omp simd reduction(+ : sb)
            for (size_t i = 0; i < n; ++i) {
                float t = x[i] - m;
                sb += dy[i] * gam[i] * t;
                dg[i] += dy[i] * t * inv;
            }
        }
        B->bs0[b] += sa;
        B->bs1[b] += sb;
    }
}

static void bwd_end(const plan *p, const bufs *B, size_t b, const scratch *w)
{
    size_t C = p->nhwc ? p->s.c : 1;
    if (p->per_element)
        return;
    lanes_fold(w->acc, lanes_of(p), C, B->bs0 + b * C);
    lanes_fold(w->acc2, lanes_of(p), C, B->bs1 + b * C);
}

static void bwd_block(const plan *p, const bufs *B, size_t b, const scratch *w)
{
    size_t len;
    block_span(p, b, &len);
    bwd_begin(p, B, b, w);
    bwd_range(p, B, b, 0, len, w);
    bwd_end(p, B, b, w);
}

/*
 * dx = invstd * (g - mean(g) - xh * mean(g * xh)), g = dy * gamma, xh = (x - mean) * invstd,
 * written dx = dy * (invstd * gamma) + (x - mean) * b + k with, per group, sg = sum(g) and
 * sgx = invstd * sum(g * (x - mean)): b = -invstd^2 * sgx / count, k = -invstd * sg / count
 * (rms: no mean, k = 0). gs0 gets k and gs1 gets b.
 */
static void group_coefficients(const plan *p, const bufs *B, size_t g, double sg, double sgr)
{
    double inv = B->invstd[g], cnt = (double)p->gcount;
    B->gs0[g] = p->s.kind == RMS ? 0 : -inv * sg / cnt;
    B->gs1[g] = -inv * inv * inv * sgr / cnt;
}

static void combine_backward(const plan *p, const bufs *B, size_t u, const scratch *w,
                             const scratch *reps)
{
    size_t r0 = u * p->unit_rows, r1 = r0 + p->unit_rows, nb = p->nblock;
    if (p->per_element) {
        double sg = 0, sgr = 0;
        for (size_t b = r0 * nb; b < r1 * nb; ++b) {
            sg += B->bs0[b];
            sgr += B->bs1[b];
        }
        group_coefficients(p, B, r0, sg, sgr);
        return;
    }
    if (!p->nhwc) { /* gmean and ginv hold sg and sum(g * (x - mean)) */
        for (size_t r = r0; r < r1; ++r)
            B->gmean[group_of(p, r, r % p->s.c)] = B->ginv[group_of(p, r, r % p->s.c)] = 0;
        for (size_t b = r0 * nb; b < r1 * nb; ++b) {
            size_t r = b / nb, c = r % p->s.c, g = group_of(p, r, c);
            B->gmean[g] += B->gamma[c] * B->bs0[b];
            B->ginv[g] += B->gamma[c] * B->bs1[b];
        }
        for (size_t r = r0; r < r1; ++r) {
            size_t g = group_of(p, r, r % p->s.c);
            group_coefficients(p, B, g, B->gmean[g], B->ginv[g]);
        }
        return;
    }
    size_t C = p->s.c;
    double *sa = w->c0, *sb = w->c1;
    for (size_t c = 0; c < C; ++c)
        sa[c] = sb[c] = 0;
    for (size_t b = r0 * nb; b < r1 * nb; ++b) {
        const double *ba = B->bs0 + b * C, *bb = B->bs1 + b * C;
#pragma omp simd
        for (size_t c = 0; c < C; ++c) {
            sa[c] += ba[c];
            sb[c] += bb[c];
        }
    }
    for (size_t c = 0; c < C; ++c)
        B->gmean[group_of(p, r0, c)] = B->ginv[group_of(p, r0, c)] = 0;
    for (size_t c = 0; c < C; ++c) {
        size_t g = group_of(p, r0, c);
        B->gmean[g] += B->gamma[c] * sa[c];
        B->ginv[g] += B->gamma[c] * sb[c];
    }
    for (size_t c = 0; c < C; ++c) {
        size_t g = group_of(p, r0, c);
        group_coefficients(p, B, g, B->gmean[g], B->ginv[g]);
    }
    for (size_t k = 0; k < p->period; ++k) {
        size_t c = k % C, g = group_of(p, r0, c);
        reps->rep[0][k] = B->mean[g];
        reps->rep[1][k] = B->invstd[g] * B->gamma[c];
        reps->rep[2][k] = (float)B->gs1[g];
        reps->rep[3][k] = (float)B->gs0[g];
    }
}

/* dx over floats [o, o + n) of block b. */
static void dx_range(const plan *p, const bufs *B, size_t b, size_t o, size_t n,
                     const scratch *reps)
{
    size_t len, off = block_span(p, b, &len) + o, r = b / p->nblock;
    size_t c = p->per_element ? 0 : r % p->s.c, g = group_of(p, r, c);
    const float *restrict gam = B->gamma + (p->per_element ? b % p->nblock * p->block + o : c);
    float m = B->mean[g], inv = B->invstd[g], a = inv * gam[0];
    float cb = (float)B->gs1[g], ck = (float)B->gs0[g];
    const float *restrict x = B->x + off, *restrict dy = B->dy + off;
    float *restrict dx = B->dx + off;
    if (p->nhwc) {
        if (p->period != LANES)
            lanes_dx(x, dy, dx, n, p->period, reps->rep);
        else
            lanes_dx(x, dy, dx, n, LANES, reps->rep);
    } else if (p->per_element) {
#pragma omp simd
        for (size_t i = 0; i < n; ++i)
            dx[i] = dy[i] * gam[i] * inv + (x[i] - m) * cb + ck;
    } else {
#pragma omp simd
        for (size_t i = 0; i < n; ++i)
            dx[i] = dy[i] * a + (x[i] - m) * cb + ck;
    }
}

static void dx_block(const plan *p, const bufs *B, size_t b, const scratch *reps)
{
    size_t len;
    block_span(p, b, &len);
    dx_range(p, B, b, 0, len, reps);
}

/* Units [ua, ub) as in forward_units, the dx pass of each interleaved with the sums of the
 * next. */
static void backward_units(const plan *p, const bufs *B, size_t ua, size_t ub, int tid, int nth,
                           const scratch *w, const scratch *reps)
{
    size_t lo, hi, nbu = p->unit_rows * p->nblock, step = chunk_of(p);
    if (ua >= ub)
        return;
    unit_share(p, ua, tid, nth, &lo, &hi);
    bwd_unit_means(p, B, ua, w);
    for (size_t b = lo; b < hi; ++b)
        bwd_block(p, B, b, w);
    for (size_t u = ua; u < ub; ++u, lo += nbu, hi += nbu) {
        if (nth > 1) {
#pragma omp barrier
        }
        if (tid == 0)
            combine_backward(p, B, u, w, reps);
        if (nth > 1) {
#pragma omp barrier
        }
        if (u + 1 == ub) {
            for (size_t b = hi; b-- > lo;)
                dx_block(p, B, b, reps);
            break;
        }
        bwd_unit_means(p, B, u + 1, w);
        for (size_t b = lo; b < hi; ++b) {
            size_t len;
            block_span(p, b, &len);
            bwd_begin(p, B, b + nbu, w);
            for (size_t o = 0; o < len; o += step) {
                size_t n = len - o < step ? len - o : step;
                dx_range(p, B, b, o, n, reps);
                bwd_range(p, B, b + nbu, o, n, w);
            }
            bwd_end(p, B, b + nbu, w);
        }
    }
}

/* One call of backward (training): dx, dgamma, dbeta from x, dy, the saved statistics and
 * gamma. */
static void backward(const plan *p, const bufs *B)
{
    const scratch *shared = &B->w[B->nw - 1];
    int nth_used = 1;
#pragma omp parallel
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        const scratch *w = &B->w[tid];
        if (tid == 0)
            nth_used = nth;
        if (p->per_element) {
            memset(w->dgamma, 0, p->params * sizeof(float));
            memset(w->dbeta, 0, p->params * sizeof(float));
        }
        size_t t = (size_t)tid, n = (size_t)nth;
        if (p->per_thread)
            backward_units(p, B, p->units * t / n, p->units * (t + 1) / n, 0, 1, w, w);
        else
            backward_units(p, B, 0, p->units, tid, nth, w, shared);
    }
    if (p->per_element) {
#pragma omp parallel for schedule(static)
        for (size_t j = 0; j < p->params; ++j) {
            float dg = 0, db = 0;
            for (int t = 0; t < nth_used; ++t) {
                dg += B->w[t].dgamma[j];
                db += B->w[t].dbeta[j];
            }
            B->dgamma[j] = dg;
            if (p->has_beta)
                B->dbeta[j] = db;
        }
        return;
    }
    size_t C = p->s.c, nb = p->nblock;
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < C; ++c) {
        double dg = 0, db = 0;
        for (size_t r = p->nhwc ? 0 : c; r < p->rows; r += p->nhwc ? 1 : C) {
            double inv = B->invstd[group_of(p, r, c)];
            for (size_t b = r * nb; b < (r + 1) * nb; ++b) {
                size_t i = p->nhwc ? b * C + c : b;
                db += B->bs0[i];
                dg += inv * B->bs1[i];
            }
        }
        B->dgamma[c] = (float)dg;
        B->dbeta[c] = (float)db;
    }
}

/* ---- float64 check --------------------------------------------------------------------- */

/* The problem's definition element by element, in memory order: for each sample, rows of
 * (c, d) for NCHW and (d, c) for NHWC. */
#define FOR_EACH(s)                                                                                \
    for (size_t n = 0, i = 0; n < (s)->n; ++n)                                                     \
        for (size_t a = 0; a < ((s)->layout == NCHW ? (s)->c : (s)->d); ++a)                       \
            for (size_t e = 0; e < ((s)->layout == NCHW ? (s)->d : (s)->c); ++e, ++i)

static size_t ref_group(const shape *s, size_t n, size_t c)
{
    switch (s->kind) {
    case BATCH: return c;
    case INSTANCE: return n * s->c + c;
    case GROUP: return n * s->groups + c / (s->c / s->groups);
    default: return n;
    }
}

/* Statistics of each group in float64, two-pass; RMS: mean 0. */
static int ref_stats(const shape *s, const float *x, size_t groups, double **mean, double **inv)
{
    double *cnt = calloc(groups, sizeof *cnt), *sum = calloc(groups, sizeof *sum);
    double *sq = calloc(groups, sizeof *sq);
    *mean = calloc(groups, sizeof **mean);
    *inv = calloc(groups, sizeof **inv);
    if (!cnt || !sum || !sq || !*mean || !*inv) {
        free(cnt);
        free(sum);
        free(sq);
        return -1;
    }
    FOR_EACH(s)
    {
        size_t c = s->layout == NCHW ? a : e, g = ref_group(s, n, c);
        cnt[g] += 1;
        sum[g] += s->kind == RMS ? 0 : x[i];
    }
    for (size_t g = 0; g < groups; ++g)
        (*mean)[g] = sum[g] / cnt[g];
    FOR_EACH(s)
    {
        size_t c = s->layout == NCHW ? a : e, g = ref_group(s, n, c);
        double t = x[i] - (*mean)[g];
        sq[g] += t * t;
    }
    for (size_t g = 0; g < groups; ++g)
        (*inv)[g] = 1.0 / sqrt(sq[g] / cnt[g] + (double)EPS);
    free(cnt);
    free(sum);
    free(sq);
    return 0;
}

/* Largest |y - want| / (1 + |want|). */
static double check_forward(const plan *p, const bufs *B, const float *rmean, const float *rvar)
{
    const shape *s = &p->s;
    double *mean, *inv, worst = 0;
    if (ref_stats(s, B->x, p->ngroups, &mean, &inv))
        return INFINITY;
    int use_running = s->pass == INFERENCE && p->running;
    FOR_EACH(s)
    {
        size_t c = s->layout == NCHW ? a : e, g = ref_group(s, n, c);
        size_t j = p->per_element ? i - n * s->c * s->d : c;
        double m = use_running ? rmean[c] : mean[g];
        double iv = use_running ? 1.0 / sqrt((double)rvar[c] + (double)EPS) : inv[g];
        double want = (B->x[i] - m) * iv * B->gamma[j] + (p->has_beta ? B->beta[j] : 0.0);
        double err = fabs(B->y[i] - want) / (1 + fabs(want));
        if (!(err <= worst))
            worst = isnan(err) ? INFINITY : err;
    }
    free(mean);
    free(inv);
    return worst;
}

static double rel_l2(double num, double den) { return den > 0 ? sqrt(num / den) : sqrt(num); }

/* Largest relative L2 error of dx, dgamma and dbeta. */
static double check_backward(const plan *p, const bufs *B)
{
    const shape *s = &p->s;
    size_t G = p->ngroups, np = p->params;
    double *mean, *inv;
    if (ref_stats(s, B->x, G, &mean, &inv))
        return INFINITY;
    double *sg = calloc(G, sizeof *sg), *sgx = calloc(G, sizeof *sgx);
    double *dg = calloc(np, sizeof *dg), *db = calloc(np, sizeof *db);
    double num = 0, den = 0, worst = 0;
    if (!sg || !sgx || !dg || !db) {
        worst = INFINITY;
        goto done;
    }
    FOR_EACH(s)
    {
        size_t c = s->layout == NCHW ? a : e, g = ref_group(s, n, c);
        size_t j = p->per_element ? i - n * s->c * s->d : c;
        double xh = (B->x[i] - mean[g]) * inv[g], gv = B->dy[i] * B->gamma[j];
        sg[g] += gv;
        sgx[g] += gv * xh;
        dg[j] += B->dy[i] * xh;
        db[j] += B->dy[i];
    }
    double cnt = (double)p->gcount;
    FOR_EACH(s)
    {
        size_t c = s->layout == NCHW ? a : e, g = ref_group(s, n, c);
        size_t j = p->per_element ? i - n * s->c * s->d : c;
        double xh = (B->x[i] - mean[g]) * inv[g], gv = B->dy[i] * B->gamma[j];
        double want = inv[g] * (gv - (s->kind == RMS ? 0 : sg[g] / cnt) - xh * sgx[g] / cnt);
        num += (B->dx[i] - want) * (B->dx[i] - want);
        den += want * want;
    }
    worst = rel_l2(num, den);
    for (int which = 0; which < 1 + p->has_beta; ++which) {
        const float *got = which ? B->dbeta : B->dgamma;
        const double *want = which ? db : dg;
        num = den = 0;
        for (size_t j = 0; j < np; ++j) {
            num += (got[j] - want[j]) * (got[j] - want[j]);
            den += want[j] * want[j];
        }
        double err = rel_l2(num, den);
        worst = err > worst || isnan(err) ? err : worst;
    }
    if (isnan(worst))
        worst = INFINITY;
done:
    free(mean);
    free(inv);
    free(sg);
    free(sgx);
    free(dg);
    free(db);
    return worst;
}

/* ---- timing ---------------------------------------------------------------------------- */

/* The yardstick: the plainest parallel loop that moves the bytes. */
static void copy(const float *restrict src, float *restrict dst, size_t count)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < count; ++i)
        dst[i] = src[i];
}

static uint64_t mix(uint64_t z) /* splitmix64's finalizer: element i's value from i alone */
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float uniform(uint64_t seed, size_t i) /* [0, 1) */
{
    return (float)(mix(seed ^ mix(i)) >> 40) * 0x1p-24f;
}

static void fill(float *a, size_t count, uint64_t seed, float lo, float hi)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < count; ++i)
        a[i] = lo + (hi - lo) * uniform(seed, i);
}

static void *alloc(size_t count, size_t size)
{
    size_t bytes = (count * size + 63) / 64 * 64;
    return aligned_alloc(64, bytes ? bytes : 64);
}

typedef struct result {
    double ms, copy_ms, bytes, err;
    int ok;
} result;

static const char *strategy(const plan *p, char *buf, size_t size)
{
    size_t unit = p->unit_rows * p->width * sizeof(float);
    if (p->s.pass == INFERENCE && p->running)
        snprintf(buf, size, "one streaming pass");
    else if (p->units == 1 && p->rows > 1)
        snprintf(buf, size, "whole tensor: stats pass, apply pass in reverse");
    else
        snprintf(buf, size, "units of %.1f KiB, %s", (double)unit / 1024,
                 p->per_thread ? "each on one thread" : "each on all threads");
    return buf;
}

static int run_problem(const shape *s, int repeat, int threads, result *res)
{
    plan p;
    make_plan(s, threads, &p);
    size_t total = s->n * s->c * s->d, C = p.nhwc ? s->c : 1;
    size_t nbs = p.rows * p.nblock * C;
    int backward_pass = s->pass == BACKWARD;
    bufs B = {0};
    int rc = -1;
    B.nw = threads + 1;
    B.w = calloc((size_t)B.nw, sizeof *B.w);
    B.x = alloc(total, sizeof(float));
    B.y = alloc(total, sizeof(float));
    B.dy = backward_pass ? alloc(total, sizeof(float)) : NULL;
    B.dx = backward_pass ? alloc(total, sizeof(float)) : NULL;
    B.gamma = alloc(p.params, sizeof(float));
    B.beta = alloc(p.params, sizeof(float));
    B.rmean = alloc(s->c, sizeof(float));
    B.rvar = alloc(s->c, sizeof(float));
    B.mean = alloc(p.ngroups, sizeof(float));
    B.invstd = alloc(p.ngroups, sizeof(float));
    B.dgamma = alloc(p.params, sizeof(float));
    B.dbeta = alloc(p.params, sizeof(float));
    B.bs0 = alloc(nbs, sizeof(double));
    B.bs1 = alloc(nbs, sizeof(double));
    B.gs0 = alloc(p.ngroups, sizeof(double));
    B.gs1 = alloc(p.ngroups, sizeof(double));
    B.gmean = alloc(p.ngroups, sizeof(double));
    B.ginv = alloc(p.ngroups, sizeof(double));
    size_t bytes = total * sizeof(float) * (backward_pass ? 3 : 2);
    size_t copy_count = (bytes / 2 + sizeof(float) - 1) / sizeof(float); /* as clnorm-bench */
    float *src = alloc(copy_count, sizeof(float)), *dst = alloc(copy_count, sizeof(float));
    float *rm0 = alloc(s->c, sizeof(float)), *rv0 = alloc(s->c, sizeof(float));
    double *t = malloc(2 * (size_t)repeat * sizeof *t);
    int ok = B.w && B.x && B.y && (!backward_pass || (B.dy && B.dx)) && B.gamma && B.beta &&
             B.rmean && B.rvar && B.mean && B.invstd && B.dgamma && B.dbeta && B.bs0 && B.bs1 &&
             B.gs0 && B.gs1 && B.gmean && B.ginv && src && dst && rm0 && rv0 && t;
    for (int i = 0; ok && i < B.nw; ++i) {
        scratch *w = &B.w[i];
        float *f = alloc(7 * p.period + 2 * p.params, sizeof(float));
        double *dd = alloc(3 * s->c, sizeof(double));
        if (!f || !dd) {
            free(f);
            free(dd);
            ok = 0;
            break;
        }
        w->acc = f;
        w->acc2 = f + p.period;
        for (int k = 0; k < 5; ++k)
            w->rep[k] = f + (size_t)(2 + k) * p.period;
        w->dgamma = f + 7 * p.period;
        w->dbeta = w->dgamma + p.params;
        w->c0 = dd;
        w->c1 = dd + s->c;
        w->c2 = dd + 2 * s->c;
    }
    if (!ok) {
        fprintf(stderr, "omp-ceiling: out of memory\n");
        goto done;
    }
    fill(B.x, total, 1, -1.2f, 2.2f);
    fill(B.y, total, 2, 0, 0);
    fill(B.gamma, p.params, 3, 0.5f, 1.5f);
    fill(B.beta, p.params, 4, -1, 1);
    fill(rm0, s->c, 5, 0.2f, 0.8f);
    fill(rv0, s->c, 6, 0.5f, 1.5f);
    fill(src, copy_count, 7, -1, 1);
    fill(dst, copy_count, 8, 0, 0);
    memcpy(B.rmean, rm0, s->c * sizeof(float));
    memcpy(B.rvar, rv0, s->c * sizeof(float));
    if (backward_pass) {
        fill(B.dy, total, 9, -1, 1);
        fill(B.dx, total, 10, 0, 0);
        shape f = *s;
        f.pass = TRAINING;
        plan fp;
        make_plan(&f, threads, &fp);
        forward(&fp, &B); /* the saved statistics backward reads */
        backward(&p, &B);
        res->err = check_backward(&p, &B);
    } else {
        forward(&p, &B);
        res->err = check_forward(&p, &B, rm0, rv0);
    }
    res->ok = res->err <= TOLERANCE;
    res->bytes = (double)bytes;

    for (int i = -WARMUP; i < repeat; ++i) {
        double t0 = omp_get_wtime();
        if (backward_pass)
            backward(&p, &B);
        else
            forward(&p, &B);
        double t1 = omp_get_wtime();
        copy(src, dst, copy_count);
        double t2 = omp_get_wtime();
        if (i >= 0) {
            t[i] = (t1 - t0) * 1e3;
            t[repeat + i] = (t2 - t1) * 1e3;
        }
    }
    res->ms = median(t, repeat);
    res->copy_ms = median(t + repeat, repeat);
    rc = 0;
done:
    for (int i = 0; B.w && i < B.nw; ++i) {
        free(B.w[i].acc);
        free(B.w[i].c0);
    }
    void *heap[] = {B.w,    B.x,     B.y,      B.dy,     B.dx,    B.gamma, B.beta, B.rmean,
                    B.rvar, B.mean,  B.invstd, B.dgamma, B.dbeta, B.bs0,   B.bs1,  B.gs0,
                    B.gs1,  B.gmean, B.ginv,   src,      dst,     rm0,     rv0,    t};
    for (size_t i = 0; i < COUNT(heap); ++i)
        free(heap[i]);
    return rc;
}

/* ---- main ------------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fputs("usage: omp-ceiling [--repeat N] [PROBLEM...]\n"
          "\n"
          "Times hand-written OpenMP float32 normalization on this CPU against an OpenMP copy\n"
          "of the same bytes, as clnorm-bench times clnorm against its copy kernel.\n"
          "\n"
          "  PROBLEM     kind:pass:layout:NxCxD[/G] as clnorm-bench takes it; none: the problems\n"
          "              of 16 MiB and more of clnorm-bench's default suite\n"
          "  --repeat N  timed calls per problem, each followed by the copy (default 20)\n"
          "\n"
          "Threads: OMP_NUM_THREADS (default: all cores). SOL = copy time / time; err is the\n"
          "largest error against float64 (forward |y - want| / (1 + |want|), backward relative\n"
          "L2 of dx, dgamma, dbeta); above 1e-4 the row fails and the exit status is 1.\n",
          out);
}

int main(int argc, char **argv)
{
    int repeat = DEFAULT_REPEAT, nargs = 0;
    const char **args = calloc((size_t)argc + SUITE_LARGE, sizeof *args);
    if (!args)
        return 1;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > 100000) {
                fprintf(stderr, "omp-ceiling: --repeat wants 1 to 100000, got '%s'\n", argv[i]);
                return 2;
            }
            repeat = (int)n;
        } else if (argv[i][0] == '-') {
            usage(stderr);
            return 2;
        } else {
            args[nargs++] = argv[i];
        }
    }
    if (nargs == 0)
        for (size_t i = 0; i < SUITE_LARGE; ++i)
            args[nargs++] = default_suite[i];
    shape *shapes = calloc((size_t)nargs, sizeof *shapes);
    if (!shapes)
        return 1;
    int width = 7;
    for (int i = 0; i < nargs; ++i) {
        char name[128];
        if (parse_problem(args[i], &shapes[i])) {
            fprintf(stderr, "omp-ceiling: bad problem '%s' (want kind:pass:layout:NxCxD[/G])\n",
                    args[i]);
            return 2;
        }
        int len = (int)strlen(problem_name(&shapes[i], name, sizeof name));
        width = len > width ? len : width;
    }
    int threads = omp_get_max_threads();
    printf("omp-ceiling: %d OpenMP threads, float32; ms: median of %d calls after %d warm-up,\n"
           "each followed by an OpenMP copy of the same bytes; SOL = copy time / time\n\n",
           threads, repeat, WARMUP);
    printf("%-*s %9s %8s %9s %6s %9s  %s\n", width, "problem", "ms", "GB/s", "copy GB/s", "SOL",
           "err", "strategy");
    int failed = 0;
    for (int i = 0; i < nargs; ++i) {
        char name[128], how[128];
        result r;
        plan p;
        make_plan(&shapes[i], threads, &p);
        if (run_problem(&shapes[i], repeat, threads, &r))
            return 1;
        printf("%-*s %9.3f %8.2f %9.2f %6.2f %9.2e  %s%s\n", width,
               problem_name(&shapes[i], name, sizeof name), r.ms, r.bytes / (r.ms * 1e6),
               r.bytes / (r.copy_ms * 1e6), r.copy_ms / r.ms, r.err, strategy(&p, how, sizeof how),
               r.ok ? "" : "  FAIL");
        fflush(stdout);
        failed += !r.ok;
    }
    free(shapes);
    free(args);
    return failed ? 1 : 0;
}
