/*
 * Statistics of every normalization kind, by blocked two-pass reduction.
 *
 * The problem is the view [P][Q][R][S]: one statistics group per (p, r), reduced over (q, s).
 * Pass 1 (stats_partial_rows / stats_partial_cols; on GPUs stats_partial_rows_wg, a work-group
 * per block) cuts each group into blocks and writes a (mean, M2) pair per block, computed
 * two-pass inside the block: a shifted sum gives a first mean, a second sweep over the same
 * (cached) elements sums the deviations from it and their squares, and the sum of deviations
 * corrects the mean. A constant block gives its value and M2 = 0 exactly. Pass 2
 * (stats_finalize) merges a group's blocks in a fixed order by Chan's formula, so results are
 * the same bits on every run, and writes what the apply pass needs.
 * No float atomics, no E[x^2] - E[x]^2, no long sequential sums.
 */

/* Partials are (mean, M2) pairs of scalars; scalar stores, because Oclgrind's uninitialized-value
 * check misreads vectors assembled from scalars. M2 is clamped by a comparison, not fmax: a NaN
 * must survive into the group's result. */
inline void store_partial(__global float *part, ulong i, float mean, float m2)
{
    part[2 * i] = mean;
    part[2 * i + 1] = m2 < 0.0f ? 0.0f : m2;
}

/* The run_* helpers are ALWAYS_INLINE: PoCL left run_sum and run_dev as calls, their
 * accumulators behind pointers, so every step loaded and stored them (`perf`). Inlined, the
 * forward of LAYER 8x256x1024 and 64x65536, RMS 8x256x1024, channels-first GROUP
 * 8x256x1024/32 and INSTANCE 8x256x1024 ran 1.03-1.18x faster cold and 0.98-1.30x hot (two
 * in-process A/B runs each, the same bits; BATCH, LAYER 4096x1024 and backward even). */

/* Sums over a contiguous run x[i, end), eight lanes per vector and four vectors per step in
 * independent accumulators: one chain of vector adds would wait on the adder's latency at every
 * step, and that, not memory, bounded the statistics pass on CPUs. The accumulators are combined
 * in a fixed order by whoever reads them, so results stay the same bits run to run. */
ALWAYS_INLINE void run_sum(__global const store_t *x, __global const store_t *skip, ulong i, ulong end, float c, float8 *a0,
                    float8 *a1, float8 *a2, float8 *a3, float *t)
{
    for (; i + 32 <= end; i += 32) {
        *a0 += HL8(x, skip, i) - c;
        *a1 += HL8(x, skip, i + 8) - c;
        *a2 += HL8(x, skip, i + 16) - c;
        *a3 += HL8(x, skip, i + 24) - c;
    }
    for (; i + 8 <= end; i += 8)
        *a0 += HL8(x, skip, i) - c;
    for (; i < end; ++i)
        *t += HL1(x, skip, i) - c;
}

/* Deviations from m over x[i, end): their sum (d) and their squares' sum (e). The sweep reads
 * from cache; `ahead` (0: none) is how far on the lines to prefetch meanwhile lie (the next
 * block's, where it follows this one). */
ALWAYS_INLINE void run_dev(__global const store_t *x, __global const store_t *skip, ulong i, ulong end, float m, float8 *d0,
                    float8 *d1, float8 *e0, float8 *e1, float *dt, float *et, ulong ahead)
{
    for (; i + 16 <= end; i += 16) {
        if (ahead)
            PREFETCH_L2(x + i + ahead);
        float8 u = HL8(x, skip, i) - m, v = HL8(x, skip, i + 8) - m;
        *d0 += u;
        *d1 += v;
        *e0 += u * u;
        *e1 += v * v;
    }
    for (; i + 8 <= end; i += 8) {
        float8 u = HL8(x, skip, i) - m;
        *d0 += u;
        *e0 += u * u;
    }
    for (; i < end; ++i) {
        float u = HL1(x, skip, i) - m;
        *dt += u;
        *et += u * u;
    }
}

/* The first mean of count elements from run_sum's shifted sums (a0..a3, t) about shift. */
inline float run_mean0(float shift, float8 a0, float8 a1, float8 a2, float8 a3, float t,
                       float fc)
{
    return shift + (hsum8((a0 + a1) + (a2 + a3)) + t) / fc;
}

/* (mean, M2) of count elements from their first mean and run_dev's sums of deviations from it:
 * the sum of deviations corrects both. */
inline void run_close(float mean0, float8 d0, float8 d1, float8 e0, float8 e1, float dt,
                      float et, float fc, float *mean, float *m2)
{
    float sd = hsum8(d0 + d1) + dt;
    *mean = mean0 + sd / fc;
    *m2 = hsum8(e0 + e1) + et - sd * (sd / fc);
}

/* The second half of run_stats, after run_sum gave the shifted sums (a0..a3, t) of x[i0, i0 +
 * count) about shift: the first mean, then the sweep of deviations (from cache). */
ALWAYS_INLINE void run_finish(__global const store_t *x, __global const store_t *skip, ulong i0,
                       ulong count, float shift, float8 a0, float8 a1, float8 a2, float8 a3,
                       float t, ulong ahead, float *mean, float *m2)
{
    float fc = (float)count;
    float mean0 = run_mean0(shift, a0, a1, a2, a3, t, fc);
    float8 d0 = (float8)(0.0f), d1 = d0, e0 = d0, e1 = d0;
    float dt = 0.0f, et = 0.0f;
    run_dev(x, skip, i0, i0 + count, mean0, &d0, &d1, &e0, &e1, &dt, &et, ahead);
    run_close(mean0, d0, d1, e0, e1, dt, et, fc, mean, m2);
}

/* (mean, M2) of count contiguous elements x[i0, i0 + count), two-pass: the shifted sum gives a
 * first mean, the second sweep (from cache) sums deviations from it and their squares, and the
 * sum of deviations corrects both. A constant run gives its value and M2 = 0 exactly. */
ALWAYS_INLINE void run_stats(__global const store_t *x, __global const store_t *skip, ulong i0,
                      ulong count, ulong ahead, float *mean, float *m2)
{
    float shift = HL1(x, skip, i0);
    float8 a0 = (float8)(0.0f), a1 = a0, a2 = a0, a3 = a0;
    float t = 0.0f;
    run_sum(x, skip, i0, i0 + count, shift, &a0, &a1, &a2, &a3, &t);
    run_finish(x, skip, i0, count, shift, a0, a1, a2, a3, t, ahead, mean, m2);
}

/* Row shape: one work-item per block of a (p, r) group; the block is qb segments of up to sb
 * contiguous elements, read eight at a time. Work-items are ordered so that neighbours read
 * neighbouring memory. */
__kernel void stats_partial_rows(__global const store_t *x, __global const store_t *skip, __global float *part, ulong P,
                                 ulong Q, ulong R, ulong S, ulong qb, ulong sb, ulong sblocks,
                                 ulong nqb)
{
    ulong g = get_global_id(0);
    if (g >= P * R * nqb * sblocks)
        return;
    row_block b = row_block_at(g, Q, R, S, qb, sb, sblocks, nqb);
    ulong ns = b.s1 - b.s0, stride = R * S;
    if (b.q1 - b.q0 == 1) { /* one contiguous run */
        float mean, m2;
        run_stats(x, skip, b.first, ns, ns, &mean, &m2); /* the next block follows */
        store_partial(part, b.out, mean, m2);
        return;
    }
    float count = (float)((b.q1 - b.q0) * ns);

    float shift = HL1(x, skip, b.first);
    float8 a0 = (float8)(0.0f), a1 = a0, a2 = a0, a3 = a0;
    float acc1 = 0.0f;
    for (ulong q = b.q0, i = b.first; q < b.q1; ++q, i += stride)
        run_sum(x, skip, i, i + ns, shift, &a0, &a1, &a2, &a3, &acc1);
    float mean0 = run_mean0(shift, a0, a1, a2, a3, acc1, count);

    float8 d0 = (float8)(0.0f), d1 = d0, e0 = d0, e1 = d0;
    float dt = 0.0f, et = 0.0f;
    for (ulong q = b.q0, i = b.first; q < b.q1; ++q, i += stride)
        run_dev(x, skip, i, i + ns, mean0, &d0, &d1, &e0, &e1, &dt, &et, 0);
    float mean, m2;
    run_close(mean0, d0, d1, e0, e1, dt, et, count, &mean, &m2);
    store_partial(part, b.out, mean, m2);
}

#ifdef CLNORM_WG
/*
 * Row shape on GPUs: one work-group of CLNORM_WG work-items per block, reading it coalesced
 * (wg_walk). Blocks are cut as for stats_partial_rows, only larger, and give the same partials.
 * The same two-pass scheme, with the group's sums taken by a fixed tree in local memory: the
 * shifted sums give mean0, seen by every work-item; a second sweep (from cache) sums the
 * deviations from it and their squares. Work-items past a short block's end add zeros.
 */
__kernel __attribute__((reqd_work_group_size(CLNORM_WG, 1, 1))) void
stats_partial_rows_wg(__global const store_t *x, __global const store_t *skip, __global float *part, ulong P, ulong Q, ulong R,
                      ulong S, ulong qb, ulong sb, ulong sblocks, ulong nqb)
{
    __local float lsum[CLNORM_WG], ldev[CLNORM_WG], lsq[CLNORM_WG];
    ulong g = get_group_id(0);
    if (g >= P * R * nqb * sblocks) /* the whole group leaves: no barrier is skipped */
        return;
    row_block b = row_block_at(g, Q, R, S, qb, sb, sblocks, nqb);
    ulong width = wg_width(&b);
    wg_walk start = wg_walk_begin(&b, R, S, width);
    float count = (float)(start.count * width);
    uint l = get_local_id(0);

    float shift = HL1(x, skip, b.first);
    float acc = 0.0f;
    if (width == 4) {
        float4 acc4 = (float4)(0.0f);
        for (wg_walk w = start; w.j < w.count; wg_walk_next(&w))
            acc4 += HL4(x, skip, w.i) - shift;
        acc = hsum4(acc4);
    } else {
        for (wg_walk w = start; w.j < w.count; wg_walk_next(&w))
            acc += HL1(x, skip, w.i) - shift;
    }
    lsum[l] = acc;
    wg_sum(lsum);
    float mean0 = shift + lsum[0] / count;

    float d = 0.0f, e = 0.0f;
    if (width == 4) {
        float4 d4 = (float4)(0.0f), e4 = (float4)(0.0f);
        for (wg_walk w = start; w.j < w.count; wg_walk_next(&w)) {
            float4 u = HL4(x, skip, w.i) - mean0;
            d4 += u;
            e4 += u * u;
        }
        d = hsum4(d4);
        e = hsum4(e4);
    } else {
        for (wg_walk w = start; w.j < w.count; wg_walk_next(&w)) {
            float u = HL1(x, skip, w.i) - mean0;
            d += u;
            e += u * u;
        }
    }
    ldev[l] = d;
    lsq[l] = e;
    wg_sum2(ldev, lsq);
    if (l == 0) {
        float sd = ldev[0];
        store_partial(part, b.out, mean0 + sd / count, lsq[0] - sd * (sd / count));
    }
}
#endif

/* Column shape, for S == 1 (channels-last BATCH, INSTANCE and GROUP): groups are columns of a
 * [Q][R] matrix. A work-item reduces qb rows of CLNORM_RT neighbouring columns, one column per
 * vector lane, so each row it reads is one contiguous run; a last, narrower tile of columns is
 * reduced one column at a time. The same two-pass scheme as the row shape, per column, with
 * even and odd rows in separate accumulators (two independent chains of adds), added at the end. */
#define COLUMN_STATS(T, LOAD, i0, stride, q0, q1, mean, m2)                                        \
    {                                                                                             \
        float count = (float)(q1 - q0);                                                           \
        ulong rows2 = (q1 - q0) & ~(ulong)1;                                                      \
        T shift = LOAD(x, i0);                                                                    \
        T acc = (T)(0.0f), acc2 = (T)(0.0f);                                                      \
        for (ulong q = 0; q < rows2; q += 2) {                                                    \
            acc += LOAD(x, i0 + q * stride) - shift;                                              \
            acc2 += LOAD(x, i0 + (q + 1) * stride) - shift;                                       \
        }                                                                                         \
        if (rows2 < q1 - q0)                                                                      \
            acc += LOAD(x, i0 + rows2 * stride) - shift;                                          \
        T mean0 = shift + (acc + acc2) / count;                                                   \
        T d = (T)(0.0f), dd = (T)(0.0f), d2 = (T)(0.0f), dd2 = (T)(0.0f);                         \
        for (ulong q = 0; q < rows2; q += 2) {                                                    \
            T v = LOAD(x, i0 + q * stride) - mean0;                                               \
            T w = LOAD(x, i0 + (q + 1) * stride) - mean0;                                         \
            d += v;                                                                               \
            dd += v * v;                                                                          \
            d2 += w;                                                                              \
            dd2 += w * w;                                                                         \
        }                                                                                         \
        if (rows2 < q1 - q0) {                                                                    \
            T v = LOAD(x, i0 + rows2 * stride) - mean0;                                           \
            d += v;                                                                               \
            dd += v * v;                                                                          \
        }                                                                                         \
        d += d2;                                                                                  \
        dd += dd2;                                                                                \
        mean = mean0 + d / count;                                                                 \
        m2 = dd - d * (d / count);                                                                \
    }

#if CLNORM_NARROW
inline void narrow_stats(__global const store_t *x, __global const store_t *skip, __global float *part, ulong i0, ulong rows,
                         ulong out, ulong nqb)
{
    const int R = CLNORM_NARROW;
    float count = (float)rows;
    ulong periods = rows / NARROW_RP;
    ulong tail0 = i0 + periods * NARROW_L, end = i0 + rows * R;
    float shift[CLNORM_NARROW], sum[CLNORM_NARROW], mean0[CLNORM_NARROW];
    float dsum[CLNORM_NARROW], dsq[CLNORM_NARROW];
    #pragma unroll
    for (int c = 0; c < R; ++c) {
        shift[c] = HL1(x, skip, i0 + c);
        sum[c] = 0.0f;
        dsum[c] = 0.0f;
        dsq[c] = 0.0f;
    }
    float8 sv[NARROW_M], acc[NARROW_M];
    narrow_spread(shift, 0, sv);
    #pragma unroll
    for (int k = 0; k < NARROW_M; ++k)
        acc[k] = (float8)(0.0f);
    for (ulong i = i0; i < tail0; i += NARROW_L)
        #pragma unroll
        for (int k = 0; k < NARROW_M; ++k)
            acc[k] += HL8(x, skip, i + 8 * k) - sv[k];
    narrow_fold(acc, sum);
    for (ulong i = tail0; i < end; i += R)
        #pragma unroll
        for (int c = 0; c < R; ++c)
            sum[c] += HL1(x, skip, i + c) - shift[c];
    #pragma unroll
    for (int c = 0; c < R; ++c)
        mean0[c] = shift[c] + sum[c] / count;

    float8 mv[NARROW_M], d[NARROW_M], dd[NARROW_M];
    narrow_spread(mean0, 0, mv);
    #pragma unroll
    for (int k = 0; k < NARROW_M; ++k) {
        d[k] = (float8)(0.0f);
        dd[k] = (float8)(0.0f);
    }
    for (ulong i = i0; i < tail0; i += NARROW_L)
        #pragma unroll
        for (int k = 0; k < NARROW_M; ++k) {
            float8 v = HL8(x, skip, i + 8 * k) - mv[k];
            d[k] += v;
            dd[k] += v * v;
        }
    narrow_fold(d, dsum);
    narrow_fold(dd, dsq);
    for (ulong i = tail0; i < end; i += R)
        #pragma unroll
        for (int c = 0; c < R; ++c) {
            float v = HL1(x, skip, i + c) - mean0[c];
            dsum[c] += v;
            dsq[c] += v * v;
        }
    #pragma unroll
    for (int c = 0; c < R; ++c)
        store_partial(part, out + c * nqb, mean0[c] + dsum[c] / count,
                      dsq[c] - dsum[c] * (dsum[c] / count));
}
#endif

/*
 * Wide column tiles: NT*8 neighbouring columns (CLNORM_CT = 64 or 32 when R is a multiple),
 * contiguous bytes of every row, as NT vector tiles with their own accumulators, so a work-item
 * reads whole cache lines and runs NT independent chains of adds. (mean, M2) per column of rows
 * [0, rows) of stride R from x + i0, two-pass as everywhere. Runs of 256 bytes per row stream
 * at memory speed where runs of 128 bytes or less (every other pair of lines) measured 3x
 * slower on the 2-core EPYC; 64 columns need 24 vector registers, and AVX-512 CPUs have 32.
 * The second sweep, from cache, prefetches the rows that follow the block's (the next block's,
 * which a neighbouring work-item reads next on the same core).
 */
#define COLS_STATS_FN(NAME, NT)                                                                   \
    inline void NAME(__global const store_t *x, __global const store_t *skip, ulong i0,         \
                     ulong stride, ulong rows, float8 *mean, float8 *m2)                          \
    {                                                                                             \
        float count = (float)rows;                                                                \
        float8 sh[NT], acc[NT], d[NT], dd[NT];                                                    \
        _Pragma("unroll") for (int t = 0; t < NT; ++t)                                            \
        {                                                                                         \
            sh[t] = HL8(x, skip, i0 + 8 * t);                                                         \
            acc[t] = (float8)(0.0f);                                                              \
            d[t] = (float8)(0.0f);                                                                \
            dd[t] = (float8)(0.0f);                                                               \
        }                                                                                         \
        for (ulong i = i0, end = i0 + rows * stride; i < end; i += stride)                        \
            _Pragma("unroll") for (int t = 0; t < NT; ++t) acc[t] += HL8(x, skip, i + 8 * t) - sh[t]; \
        _Pragma("unroll") for (int t = 0; t < NT; ++t) mean[t] = sh[t] + acc[t] / count;          \
        for (ulong i = i0, end = i0 + rows * stride; i < end; i += stride) {                      \
            _Pragma("unroll") for (int t = 0; t < NT; t += 2) PREFETCH_L2(x + i + rows * stride + 8 * t); \
            _Pragma("unroll") for (int t = 0; t < NT; ++t)                                        \
            {                                                                                     \
                float8 v = HL8(x, skip, i + 8 * t) - mean[t];                                         \
                d[t] += v;                                                                        \
                dd[t] += v * v;                                                                   \
            }                                                                                     \
        }                                                                                         \
        _Pragma("unroll") for (int t = 0; t < NT; ++t)                                            \
        {                                                                                         \
            mean[t] += d[t] / count;                                                              \
            m2[t] = dd[t] - d[t] * (d[t] / count);                                                \
        }                                                                                         \
    }
COLS_STATS_FN(cols32_stats, 4)
COLS_STATS_FN(cols64_stats, 8)

__kernel void stats_partial_cols(__global const store_t *x, __global const store_t *skip, __global float *part, ulong P,
                                 ulong Q, ulong R, ulong qb, ulong nqb)
{
    ulong p, r0, qbi, q0, q1;
    if (!col_tile(P, Q, R, qb, nqb, CLNORM_CT, &p, &r0, &qbi, &q0, &q1))
        return;
    ulong i0 = (p * Q + q0) * R + r0;
    ulong out = (p * R + r0) * nqb + qbi;
#if CLNORM_NARROW
    if (R == CLNORM_NARROW) {
        narrow_stats(x, skip, part, i0, q1 - q0, out, nqb);
        return;
    }
#endif
#if CLNORM_CT == 32 || CLNORM_CT == 64
    { /* the plan guarantees R % CLNORM_CT == 0 */
        float8 mean[CLNORM_CT / 8], m2[CLNORM_CT / 8];
#if CLNORM_CT == 64
        cols64_stats(x, skip, i0, R, q1 - q0, mean, m2);
#else
        cols32_stats(x, skip, i0, R, q1 - q0, mean, m2);
#endif
        float lm[CLNORM_CT], lm2[CLNORM_CT];
#pragma unroll
        for (int k = 0; k < CLNORM_CT / 8; ++k) {
            vstore8(mean[k], k, lm);
            vstore8(m2[k], k, lm2);
        }
        for (ulong j = 0; j < CLNORM_CT; ++j)
            store_partial(part, out + j * nqb, lm[j], lm2[j]);
        return;
    }
#endif
#if CLNORM_CT == 8
    if (r0 + 8 <= R) {
        float8 mean, m2;
        COLUMN_STATS(float8, HX8, i0, R, q0, q1, mean, m2)
        store_partial(part, out + 0 * nqb, mean.s0, m2.s0);
        store_partial(part, out + 1 * nqb, mean.s1, m2.s1);
        store_partial(part, out + 2 * nqb, mean.s2, m2.s2);
        store_partial(part, out + 3 * nqb, mean.s3, m2.s3);
        store_partial(part, out + 4 * nqb, mean.s4, m2.s4);
        store_partial(part, out + 5 * nqb, mean.s5, m2.s5);
        store_partial(part, out + 6 * nqb, mean.s6, m2.s6);
        store_partial(part, out + 7 * nqb, mean.s7, m2.s7);
        return;
    }
#endif
    for (ulong j = 0; r0 + j < R && j < CLNORM_CT; ++j) {
        float mean, m2;
        COLUMN_STATS(float, HX1, i0 + j, R, q0, q1, mean, m2)
        store_partial(part, out + j * nqb, mean, m2);
    }
}

/*
 * Merge: work-item w owns groups w + k*item_stride for k < per_item (one group, or for
 * INSTANCE with running statistics one channel over every sample, so that the running update
 * can average the per-sample statistics). A group's partials are `members` consecutive
 * partial columns of nblk blocks each (channels-last GROUP merges its C/G channels here).
 *
 * moments_in (clnorm_forward_with_moments): the groups' (count, mean, M2) are given, and
 * part is not read. moments_out (clnorm_moments): (count, mean, M2) of every group is written
 * there, and nothing else.
 *
 * Writes: stats = [mean of every group | invstd of every group] for the apply and backward
 * passes (rms, for RMS: mean 0, invstd = 1/rms); save_mean and
 * save_invstd when given; running statistics when update_running; and, for kinds whose
 * parameters are per channel, table[3][T] = (mean, invstd*gamma, beta) per (sample, channel).
 */
__kernel void stats_finalize(__global const float *part, __global float *stats, ulong ngroups,
                             __global float *table, ulong T, __global const float *gamma,
                             __global const float *beta, __global float *save_mean,
                             __global float *save_invstd, __global float *running_mean,
                             __global float *running_var, ulong nitems, ulong per_item,
                             ulong item_stride, ulong nblk, ulong members, ulong Q, ulong S,
                             ulong qb, ulong sb, ulong sblocks, float eps, float momentum,
                             int update_running, ulong groups_per_sample,
                             ulong chans_per_group, ulong C, int rms,
                             __global const float *moments_in, __global float *moments_out)
{
    ulong w = get_global_id(0);
    if (w >= nitems)
        return;
    float mean_sum = 0.0f, var_sum = 0.0f;
    for (ulong k = 0; k < per_item; ++k) {
        ulong gi = w + k * item_stride;
        float n = 0.0f, mean = 0.0f, m2 = 0.0f;
        if (moments_in) { /* given statistics (clnorm_forward_with_moments) */
            n = moments_in[3 * gi];
            mean = moments_in[3 * gi + 1];
            m2 = moments_in[3 * gi + 2];
        } else {
            /* Merged relative to the first block's mean: block means of offset data differ
             * from it by small, exactly computed amounts, so hundreds of merges do not each
             * round at the offset's scale; the offset is added back once. */
            float shift = part[2 * gi * members * nblk];
            for (ulong j = 0; j < members; ++j) {
                __global const float *col = part + 2 * (gi * members + j) * nblk;
                /* Blocks in order, b = qbi * sblocks + sbi, counted as block_count() counts
                 * them but without its division per block (the merge of many blocks is this
                 * kernel's whole cost). */
                ulong b = 0;
                for (ulong q0 = 0; b < nblk; q0 += qb) {
                    ulong rows = min(Q, q0 + qb) - q0;
                    for (ulong s0 = 0; s0 < S && b < nblk; s0 += sb, ++b)
                        chan_merge(&n, &mean, &m2, (float)(rows * (min(S, s0 + sb) - s0)),
                                   col[2 * b] - shift, col[2 * b + 1]);
                }
            }
            mean += shift;
        }
        if (moments_out) { /* the moments are the result (clnorm_moments) */
            moments_out[3 * gi] = n;
            moments_out[3 * gi + 1] = mean;
            moments_out[3 * gi + 2] = m2;
            continue;
        }
        if (rms) {
            float invstd = rsqrt(m2 / n + mean * mean + eps);
            stats[gi] = 0.0f;
            stats[ngroups + gi] = invstd;
            if (save_invstd)
                save_invstd[gi] = invstd;
            continue;
        }
        float invstd = rsqrt(m2 / n + eps);
        stats[gi] = mean;
        stats[ngroups + gi] = invstd;
        if (save_mean)
            save_mean[gi] = mean;
        if (save_invstd)
            save_invstd[gi] = invstd;
        mean_sum += mean;
        var_sum += m2 / (n - 1.0f);
#if CLNORM_APPLY != 2
        ulong gin;
        ulong sample = divide(gi, groups_per_sample, &gin);
        ulong c0 = gin * chans_per_group;
        for (ulong j = 0; j < chans_per_group; ++j) {
            ulong c = c0 + j;
            ulong t = sample * C + c;
            table[t] = mean;
            table[T + t] = gamma ? invstd * gamma[c] : invstd;
            table[2 * T + t] = beta ? beta[c] : 0.0f;
        }
#endif
    }
    if (update_running) {
        float inv = 1.0f / (float)per_item;
        running_mean[w] = (1.0f - momentum) * running_mean[w] + momentum * (mean_sum * inv);
        running_var[w] = (1.0f - momentum) * running_var[w] + momentum * (var_sum * inv);
    }
}

/* INFERENCE with running statistics: one work-item per channel turns them into the table. */
__kernel void stats_from_running(__global const float *running_mean,
                                 __global const float *running_var, __global const float *gamma,
                                 __global const float *beta, __global float *table, ulong C,
                                 float eps)
{
    ulong c = get_global_id(0);
    if (c >= C)
        return;
    float invstd = rsqrt(running_var[c] + eps);
    table[c] = running_mean[c];
    table[C + c] = gamma ? invstd * gamma[c] : invstd;
    table[2 * C + c] = beta ? beta[c] : 0.0f;
}
