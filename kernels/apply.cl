/*
 * Apply: y = (x - mean) * scale + shift over the whole tensor, one work-item per contiguous
 * chunk of `chunk` elements (large on CPUs, a single vector on GPUs, where neighbouring
 * work-items then read neighbouring memory). A chunk walks rows: runs of elements that share
 * their per-row constants, processed eight at a time.
 *
 * CLNORM_APPLY selects what a row is:
 *   0  channels-first: a row is one (n, c) of D elements; table[3][T] gives mean, scale and
 *      shift of entry n*tstride + c (tstride 0 when statistics are per channel only)
 *   1  channels-last: a row is one (n, d) of C elements, entry n*tstride + c per position
 *   2  per-sample statistics (LAYER, RMS): a row is one sample of C*D elements, with mean
 *      stats[n] and invstd stats[N + n], and gamma / beta per element (either may be NULL)
 * Subtracting the mean before scaling, rather than folding it into a shift, keeps a constant
 * group's output exactly equal to beta.
 *
 * The file also holds the CPU forward's fused kernels (statistics and apply in one pass over
 * memory, for groups that fit in a core's cache): norm_rows and norm_slab, at its end.
 */

/* The epilogue of element(s) e (DESIGN.md section 11): h = x + skip, sum = h, z = (h - M) * S +
 * B + residual, y = act(z). skip, residual and sum may be NULL; h is read before y and sum are
 * written, so that y may be x and sum x or skip. */
#define EPI8(e, M, S, B)                                                                          \
    {                                                                                             \
        float8 h_ = HL8(x, skip, e);                                                              \
        if (sum)                                                                                  \
            XOUT8(h_, sum, e);                                                                    \
        float8 z_ = (h_ - (M)) * (S) + (B);                                                       \
        if (residual)                                                                             \
            z_ += LOAD8(residual, e);                                                             \
        OUT8(act8(z_, act, alpha), y, e);                                                         \
    }
#define EPI1(e, M, S, B)                                                                          \
    {                                                                                             \
        float h_ = HL1(x, skip, e);                                                               \
        if (sum)                                                                                  \
            XSTORE1(h_, sum, e);                                                                  \
        float z_ = (h_ - (M)) * (S) + (B);                                                        \
        if (residual)                                                                             \
            z_ += LOAD1(residual, e);                                                             \
        STORE1(act1(z_, act, alpha), y, e);                                                       \
    }

/* LINES_LOOP: the part of a plain run [i, stop) from y's first 64-byte boundary by whole lines
 * (LINES_RUN), M16, S16 and B16 the constants of elements pos..pos+15; without CLNORM_NT_LINE
 * nothing, and the eight-element loop that follows does the whole run. In-process A/B against 32-byte stores, old time over new:
 * channels-first BATCH 32x64x3136 inference 0.84-1.56 cold, 1.12-1.22 hot, training 1.04-1.08
 * cold and 1.02-1.10 hot; BATCH 8x256x1024 and INSTANCE even cold, up to 1.11 hot. */
#ifdef CLNORM_NT_LINE
#define LINES_LOOP(M8, S8, B8, M16, S16, B16)                                                      \
    LINES_RUN(y, OUT8((LOAD8(x, i) - (M8)) * (S8) + (B8), y, i),                                    \
              PREFETCH(x + i + PREFETCH_AHEAD);                                                     \
              NT_LINE((LOAD16(x, i) - (M16)) * (S16) + (B16), y, i))
#else
#define LINES_LOOP(M8, S8, B8, M16, S16, B16)
#endif

/* A run [i, stop) with its constants (by sixteen, eight and one element); the plain loop unless
 * the call has an epilogue (epi). */
#define APPLY_LOOP(M16, S16, B16, M8, S8, B8, M1, S1, B1)                                          \
    if (epi) {                                                                                      \
        for (; i + 8 <= stop; i += 8, pos += 8)                                                     \
            EPI8(i, M8, S8, B8)                                                                     \
        for (; i < stop; ++i, ++pos)                                                                \
            EPI1(i, M1, S1, B1)                                                                     \
    } else {                                                                                        \
        LINES_LOOP(M8, S8, B8, M16, S16, B16)                                                       \
        for (; i + 8 <= stop; i += 8, pos += 8)                                                     \
            OUT8((LOAD8(x, i) - (M8)) * (S8) + (B8), y, i);                                         \
        for (; i < stop; ++i, ++pos)                                                                \
            STORE1((LOAD1(x, i) - (M1)) * (S1) + (B1), y, i);                                       \
    }

/* A per-sample row (LAYER, RMS): scale a * gamma and shift beta per element of the row, either
 * possibly absent; straight-line loops for each case rather than a test per element. */
#define APPLY_PER_ELEMENT(M, A)                                                                   \
    if (gamma && beta) {                                                                          \
        APPLY_LOOP(M, (A) * vload16(0, gamma + pos), vload16(0, beta + pos), M,                    \
                   (A) * vload8(0, gamma + pos), vload8(0, beta + pos), M, (A) * gamma[pos],      \
                   beta[pos])                                                                     \
    } else if (gamma) {                                                                           \
        APPLY_LOOP(M, (A) * vload16(0, gamma + pos), 0.0f, M, (A) * vload8(0, gamma + pos), 0.0f, \
                   M, (A) * gamma[pos], 0.0f)                                                     \
    } else if (beta) {                                                                            \
        APPLY_LOOP(M, A, vload16(0, beta + pos), M, A, vload8(0, beta + pos), M, A, beta[pos])     \
    } else {                                                                                      \
        APPLY_LOOP(M, A, 0.0f, M, A, 0.0f, M, A, 0.0f)                                            \
    }

#if CLNORM_APPLY == 1 && !CLNORM_NARROW
/* Channels-last rows of whole vectors without an epilogue (ROWS8_WALK, common.clh): the mean,
 * scale and shift of up to 64 channels in registers, which took BATCH 32x64x3136 inference
 * 1.2-1.5x faster on the 2-core PoCL machine (four loads per vector had made it compute-bound). */
#define AR_HOLD(tm, k)                                                                            \
    {                                                                                             \
        cm[k] = vload8(k, tm);                                                                    \
        cs[k] = vload8(k, (tm) + T);                                                              \
        cb[k] = vload8(k, (tm) + 2 * T);                                                          \
    }
#define AR_REG(e, k)                                                                              \
    {                                                                                             \
        if (!((k)&1))                                                                             \
            PREFETCH(x + (e) + PREFETCH_AHEAD);                                                   \
        OUT8((LOAD8(x, e) - cm[k]) * cs[k] + cb[k], y, e);                                        \
    }
#define AR_MEM(e, tm, pos)                                                                        \
    OUT8((LOAD8(x, e) - vload8(0, (tm) + (pos))) * vload8(0, (tm) + T + (pos)) +                  \
             vload8(0, (tm) + 2 * T + (pos)),                                                     \
         y, e);
#ifdef CLNORM_NT_LINE
/* The same where y is 64-byte aligned and rows are whole lines (C % 16 == 0): each line of y
 * one non-temporal store, from float16 arithmetic on tile pairs (the odd k do nothing). BATCH
 * 32x64x3136 channels-last inference 1.07-1.23x faster than by 32-byte halves, INSTANCE
 * 8x256x1024 1.02-1.11x (2-core PoCL machine, in-process A/B). */
#define AL_HOLD(tm, k)                                                                            \
    if (!((k)&1)) {                                                                               \
        lm[(k) / 2] = vload16((k) / 2, tm);                                                       \
        ls[(k) / 2] = vload16((k) / 2, (tm) + T);                                                 \
        lb[(k) / 2] = vload16((k) / 2, (tm) + 2 * T);                                             \
    }
#define AL_REG(e, k)                                                                              \
    if (!((k)&1)) {                                                                               \
        PREFETCH(x + (e) + PREFETCH_AHEAD);                                                       \
        NT_LINE((vload16(0, x + (e)) - lm[(k) / 2]) * ls[(k) / 2] + lb[(k) / 2], y, e);           \
    }
inline void apply_lines(__global const float *x, __global float *y, __global const float *table,
                        ulong T, ulong tstride, const row_walk *w, ulong rowlen,
                        ulong rows_per_sample)
{
    float16 lm[ROW_VECTORS / 2], ls[ROW_VECTORS / 2], lb[ROW_VECTORS / 2];
    ROWS8_WALK(w, table, tstride, rowlen, rows_per_sample, AL_HOLD, AL_REG, AR_MEM)
}
#endif
inline void apply_rows8(__global const store_t *x, __global ystore_t *y,
                        __global const float *table, ulong T, ulong tstride, const row_walk *w,
                        ulong rowlen, ulong rows_per_sample)
{
    float8 cm[ROW_VECTORS], cs[ROW_VECTORS], cb[ROW_VECTORS];
    ROWS8_WALK(w, table, tstride, rowlen, rows_per_sample, AR_HOLD, AR_REG, AR_MEM)
}
#endif

__kernel void apply(__global const store_t *x, __global const store_t *skip, __global ystore_t *y,
                    __global const float *table, ulong T, __global const float *stats,
                    ulong nstats, __global const float *gamma, __global const float *beta,
                    ulong total, ulong rowlen, ulong rows_per_sample, ulong tstride, ulong chunk,
                    __global const store_t *residual, __global store_t *sum, int act, float alpha,
                    int across)
{
    int epi = skip || residual || sum || act;
#if CLNORM_APPLY == 2
    if (across) {
        /* Long rows (CPUs): work-item k takes positions [k*chunk, (k+1)*chunk) of every sample
         * in turn, so that its chunk of gamma and beta is read from memory once and from cache
         * for the other samples, where the plain walk read the whole of both once a sample. */
        ulong p0 = get_global_id(0) * chunk;
        if (p0 >= rowlen)
            return;
        ulong p1 = min(rowlen, p0 + chunk), ns = total / rowlen;
        for (ulong n = 0; n < ns; ++n) {
            ulong i = n * rowlen + p0, pos = p0, stop = n * rowlen + p1;
            float m = stats[n], a = stats[nstats + n];
            APPLY_PER_ELEMENT(m, a)
        }
        stream_end();
        return;
    }
#endif
    row_walk w;
    if (!walk_begin(&w, chunk, total, rowlen, rows_per_sample))
        return;
#if CLNORM_APPLY == 1 && !CLNORM_NARROW
#ifdef CLNORM_NT_LINE
    if (!epi && rowlen % 16 == 0 && ((ulong)y & 63) == 0) {
        apply_lines(x, y, table, T, tstride, &w, rowlen, rows_per_sample);
        stream_end();
        return;
    }
#endif
    if (!epi && rowlen % 8 == 0) {
        apply_rows8(x, y, table, T, tstride, &w, rowlen, rows_per_sample);
        stream_end();
        return;
    }
#endif
    do {
        ulong i = w.i, pos = w.pos, stop = w.stop, n = w.n;
#if CLNORM_APPLY == 0
        ulong t = n * tstride + w.rs;
        float m = table[t], s = table[T + t], b = table[2 * T + t];
        APPLY_LOOP(m, s, b, m, s, b, m, s, b)
#elif CLNORM_APPLY == 1 && CLNORM_NARROW
        /* Fewer than eight channels: a row is a whole sample (rowlen C*D, one row per sample),
         * whose per-channel constants repeat every NARROW_L = lcm(C, 8) elements; spread over
         * vector lanes once per row, from the channel of the row's first element. */
        __global const float *tm = table + n * tstride;
        ulong c0;
        divide(pos, CLNORM_NARROW, &c0);
        float cm[CLNORM_NARROW], cs[CLNORM_NARROW], cb[CLNORM_NARROW];
        float8 vm[NARROW_M], vs[NARROW_M], vb[NARROW_M];
        narrow_consts(tm, (int)c0, cm, vm);
        narrow_consts(tm + T, (int)c0, cs, vs);
        narrow_consts(tm + 2 * T, (int)c0, cb, vb);
        if (epi) {
            for (; i + NARROW_L <= stop; i += NARROW_L)
                #pragma unroll
                for (int k = 0; k < NARROW_M; ++k)
                    EPI8(i + 8 * k, vm[k], vs[k], vb[k])
            for (int c = (int)c0; i < stop; ++i, c = c + 1 == CLNORM_NARROW ? 0 : c + 1)
                EPI1(i, cm[c], cs[c], cb[c])
        } else {
            for (; i + NARROW_L <= stop; i += NARROW_L)
                #pragma unroll
                for (int k = 0; k < NARROW_M; ++k)
                    OUT8((LOAD8(x, i + 8 * k) - vm[k]) * vs[k] + vb[k], y, i + 8 * k);
            for (int c = (int)c0; i < stop; ++i, c = c + 1 == CLNORM_NARROW ? 0 : c + 1)
                STORE1((LOAD1(x, i) - cm[c]) * cs[c] + cb[c], y, i);
        }
#elif CLNORM_APPLY == 1
        __global const float *tm = table + n * tstride;
        __global const float *ts = tm + T;
        __global const float *tb = tm + 2 * T;
        APPLY_LOOP(vload16(0, tm + pos), vload16(0, ts + pos), vload16(0, tb + pos),
                   vload8(0, tm + pos), vload8(0, ts + pos), vload8(0, tb + pos), tm[pos],
                   ts[pos], tb[pos])
#else
        float m = stats[n], a = stats[nstats + n];
        APPLY_PER_ELEMENT(m, a)
#endif
    } while (walk_next(&w, rowlen, rows_per_sample));
    stream_end();
}

/* Merges a block's (mean bm, M2 bm2) of len elements into the running (n, mean, m2), kept
 * relative to *shift, the mean of the first block merged (set when n is 0), as stats_finalize
 * merges. */
inline void merge_block(float *n, float *mean, float *m2, float *shift, float len, float bm,
                        float bm2)
{
    if (*n == 0.0f)
        *shift = bm;
    chan_merge(n, mean, m2, len, bm - *shift, bm2 < 0.0f ? 0.0f : bm2);
}

/* Merges the (mean, M2) of the run x[i0, i0 + count), by blocks of `block` elements in order,
 * into the running (n, mean, m2) relative to *shift (merge_block). */
inline void merge_run(__global const store_t *x, __global const store_t *skip, ulong i0,
                      ulong count, ulong block, float *n, float *mean, float *m2, float *shift)
{
    for (ulong b0 = 0; b0 < count; b0 += block) {
        ulong len = min(block, count - b0);
        float bm, bm2;
        run_stats(x, skip, i0 + b0, len, len, &bm, &bm2); /* the row's next block follows */
        merge_block(n, mean, m2, shift, (float)len, bm, bm2);
    }
}

/* Row g's statistics, from its merged (n, mean, m2), into part, stats and save_*, each when
 * given; returns the mean and invstd apply takes (RMS: mean 0, and the mean's square joins the
 * second moment). */
inline float2 row_out(ulong g, float n, float mean, float m2, int rms, float eps,
                      __global float *part, __global float *stats, ulong ngroups,
                      __global float *save_mean, __global float *save_invstd)
{
    if (part) {
        part[2 * g] = mean;
        part[2 * g + 1] = m2;
    }
    float invstd = rsqrt(m2 / n + (rms ? mean * mean : 0.0f) + eps);
    float m = rms ? 0.0f : mean;
    if (stats) {
        stats[g] = m;
        stats[ngroups + g] = invstd;
    }
    if (save_mean && !rms)
        save_mean[g] = mean;
    if (save_invstd)
        save_invstd[g] = invstd;
    return (float2)(m, invstd);
}

#if CLNORM_APPLY == 2
/* y over the run [i, stop) of row g while row g+1 (S elements on, just read, from cache) gets
 * run_dev's deviations from its first mean m1 into d0, d1, e0, e1, dt, et, and row g+2 (2S
 * on, from memory) run_sum's shifted sums about c into a0..a3 and t: 32 elements a step, by
 * those functions themselves (so every row gives the same bits as alone). Memory streams
 * row g+2 in while the core writes row g and sweeps row g+1, where a two-row pipeline left it
 * idle during each sweep; the read prefetches 4 KiB ahead (rows of 4 KiB are a page each, where
 * the hardware's streamer stops). In-process A/B against the two-row pipeline, old time over
 * new, three runs cold and two hot (2-core PoCL machine): LAYER 4096x1024 1.20-1.54, RMS
 * 0.83-1.39 (four of five 1.14-1.39); against it with the same prefetch 0.96-1.64 and
 * 0.93-1.19. */
#define PIPE_SUMS                                                                                 \
    {                                                                                             \
        PREFETCH(x + i + 2 * S + PREFETCH_AHEAD);                                                 \
        PREFETCH(x + i + 2 * S + 16 + PREFETCH_AHEAD);                                            \
        run_sum(x, 0, i + 2 * S, i + 2 * S + 32, c, &a0, &a1, &a2, &a3, &t);                     \
        run_dev(x, 0, i + S, i + S + 32, m1, &d0, &d1, &e0, &e1, &dt, &et, 0);                    \
    }
#ifdef CLNORM_NT_LINE
/* y by whole lines where the row starts on a 64-byte boundary */
#define PIPE_LINES(S16, B16)                                                                      \
    if (!((ulong)(y + i) & 63))                                                                   \
        while (i + 32 <= stop) {                                                                  \
            PIPE_SUMS                                                                             \
            for (int h = 0; h < 32; h += 16, i += 16, pos += 16)                                  \
                NT_LINE((vload16(0, x + i) - m) * (S16) + (B16), y, i);                           \
        }
#else
#define PIPE_LINES(S16, B16)
#endif
#define PIPE_LOOP(S16, B16, S8, B8, S1, B1)                                                       \
    PIPE_LINES(S16, B16)                                                                          \
    while (i + 32 <= stop) {                                                                      \
        PIPE_SUMS                                                                                 \
        for (int h = 0; h < 32; h += 8, i += 8, pos += 8)                                         \
            OUT8((LOAD8(x, i) - m) * (S8) + (B8), y, i);                                          \
    }                                                                                             \
    run_sum(x, 0, i + 2 * S, stop + 2 * S, c, &a0, &a1, &a2, &a3, &t);                           \
    run_dev(x, 0, i + S, stop + S, m1, &d0, &d1, &e0, &e1, &dt, &et, 0);                          \
    for (; i + 8 <= stop; i += 8, pos += 8)                                                       \
        OUT8((LOAD8(x, i) - m) * (S8) + (B8), y, i);                                              \
    for (; i < stop; ++i, ++pos)                                                                  \
        STORE1((LOAD1(x, i) - m) * (S1) + (B1), y, i);
#define PIPE_PER_ELEMENT(A)                                                                       \
    if (gamma && beta) {                                                                          \
        PIPE_LOOP((A) * vload16(0, gamma + pos), vload16(0, beta + pos),                          \
                  (A) * vload8(0, gamma + pos), vload8(0, beta + pos), (A) * gamma[pos],          \
                  beta[pos])                                                                      \
    } else if (gamma) {                                                                           \
        PIPE_LOOP((A) * vload16(0, gamma + pos), 0.0f, (A) * vload8(0, gamma + pos), 0.0f,        \
                  (A) * gamma[pos], 0.0f)                                                         \
    } else if (beta) {                                                                            \
        PIPE_LOOP(A, vload16(0, beta + pos), A, vload8(0, beta + pos), A, beta[pos])              \
    } else {                                                                                      \
        PIPE_LOOP(A, 0.0f, A, 0.0f, A, 0.0f)                                                      \
    }
#endif

/*
 * Fused statistics and apply for row problems (Q == 1: every statistics group is one contiguous
 * row of S elements, group g at x + g*S) whose row fits in a CPU core's cache. Work-item k
 * takes rows [k*rows, (k+1)*rows): per row, its statistics by blocks of `block` elements, each
 * two-pass (run_stats), merged in order by Chan's formula; then y over the same row, which is
 * read again from cache rather than from memory. Writes save_mean / save_invstd, stats, and
 * the group's (mean, M2) as its single partial (for stats_finalize when running statistics
 * need the whole batch), each when given.
 *
 * LAYER and RMS rows of one block without an epilogue, several to a work-item, are pipelined
 * (PIPE_LOOP): row g's apply loop also sweeps row g+1's deviations and reads row g+2, each
 * in its own function's order, so that each row gives the same bits as alone.
 *
 * Parameters: LAYER and RMS take gamma / beta per element of the row; the other kinds per
 * channel, a row being nseg channels of S / nseg elements from channel (g mod gps) * nseg
 * (GROUP: C/G channels per row; INSTANCE and BATCH: one).
 */
__kernel void norm_rows(__global const store_t *x, __global const store_t *skip,
                        __global ystore_t *y, __global float *part, __global float *stats,
                        ulong ngroups, __global const float *gamma, __global const float *beta,
                        __global float *save_mean, __global float *save_invstd, ulong S,
                        ulong block, ulong nseg, ulong gps, float eps, int rms,
                        __global const store_t *residual, __global store_t *sum, int act,
                        float alpha, ulong rows)
{
    int epi = skip || residual || sum || act;
    ulong g0 = get_global_id(0) * rows;
    if (g0 >= ngroups)
        return;
    ulong g1 = min(ngroups, g0 + rows);
#if CLNORM_APPLY == 2
    if (!epi && S <= block && g1 - g0 > 1) {
        /* Row g0's statistics and row g0+1's sums first; then per row g, its y with the two
         * rows after it in PIPE_LOOP (the last two rows without it). */
        float fs = (float)S;
        ulong row = g0 * S;
        float c = LOAD1(x, row); /* run_stats's shift */
        float8 a0 = (float8)(0.0f), a1 = a0, a2 = a0, a3 = a0;
        float t = 0.0f;
        run_sum(x, 0, row, row + S, c, &a0, &a1, &a2, &a3, &t);
        float m1 = run_mean0(c, a0, a1, a2, a3, t, fs);
        float8 d0 = (float8)(0.0f), d1 = d0, e0 = d0, e1 = d0;
        float dt = 0.0f, et = 0.0f;
        run_dev(x, 0, row, row + S, m1, &d0, &d1, &e0, &e1, &dt, &et, 0);
        c = LOAD1(x, row + S);
        a0 = a1 = a2 = a3 = (float8)(0.0f);
        t = 0.0f;
        run_sum(x, 0, row + S, row + 2 * S, c, &a0, &a1, &a2, &a3, &t);
        for (ulong g = g0;; ++g, row += S) {
            float bm, bm2, n = 0.0f, mean = 0.0f, m2 = 0.0f, shift = 0.0f;
            run_close(m1, d0, d1, e0, e1, dt, et, fs, &bm, &bm2);
            merge_block(&n, &mean, &m2, &shift, fs, bm, bm2); /* as merge_run */
            float2 mi = row_out(g, n, mean + shift, m2, rms, eps, part, stats, ngroups,
                                save_mean, save_invstd);
            float m = mi.x;
            ulong i = row, pos = 0, stop = row + S;
            if (g + 1 == g1) {
                APPLY_PER_ELEMENT(m, mi.y)
                break;
            }
            m1 = run_mean0(c, a0, a1, a2, a3, t, fs); /* row g+1's */
            d0 = d1 = e0 = e1 = (float8)(0.0f);
            dt = et = 0.0f;
            if (g + 2 == g1) {
                APPLY_PER_ELEMENT(m, mi.y)
                run_dev(x, 0, row + S, row + 2 * S, m1, &d0, &d1, &e0, &e1, &dt, &et, 0);
                continue;
            }
            c = LOAD1(x, row + 2 * S);
            a0 = a1 = a2 = a3 = (float8)(0.0f);
            t = 0.0f;
            PIPE_PER_ELEMENT(mi.y)
        }
        stream_end();
        return;
    }
#endif
    for (ulong g = g0; g < g1; ++g) {
        ulong row0 = g * S;
        /* Merged relative to the first block's mean, as stats_finalize merges, and shifted
         * back. */
        float n = 0.0f, mean = 0.0f, m2 = 0.0f, shift = 0.0f;
        merge_run(x, skip, row0, S, block, &n, &mean, &m2, &shift);
        float2 mi = row_out(g, n, mean + shift, m2, rms, eps, part, stats, ngroups, save_mean,
                            save_invstd);
        float m = mi.x, invstd = mi.y;
        ulong i = row0, pos = 0;
#if CLNORM_APPLY == 2
        ulong stop = row0 + S;
        APPLY_PER_ELEMENT(m, invstd)
#else
        ulong gin;
        divide(g, gps, &gin);
        ulong c0 = gin * nseg, seglen = S / nseg;
        for (ulong j = 0; j < nseg; ++j) {
            ulong c = c0 + j;
            float s = gamma ? invstd * gamma[c] : invstd;
            float b = beta ? beta[c] : 0.0f;
            ulong stop = i + seglen;
            APPLY_LOOP(m, s, b, m, s, b, m, s, b)
        }
#endif
    }
    stream_end();
}

/* The parameters of norm_channels and norm_cols, which the host sets alike (forward.c). */
#define FUSED_BATCH_PARAMS                                                                        \
    __global const store_t *x, __global const store_t *skip, __global ystore_t *y,                \
        __global const float *gamma, __global const float *beta, __global float *save_mean,       \
        __global float *save_invstd, __global float *running_mean, __global float *running_var,   \
        ulong N, ulong C, ulong D, ulong block, float eps, float momentum, int use_running,       \
        int update_running, __global const store_t *residual, __global store_t *sum, int act,     \
        float alpha

#if CLNORM_APPLY == 0
/*
 * Fused forward of small channels-first BATCH problems (CPU): one work-item per channel c, which
 * owns the channel's whole group (N segments of D elements, segment n at x + (n*C + c)*D), and
 * so computes its statistics (blocks of `block` elements, two-pass each, merged in order by
 * Chan's formula relative to the first block's mean), writes save_*, updates the channel's
 * running statistics (use_running 0, update_running 1) or normalizes with them (use_running 1),
 * and writes y over the segments, read again from cache: the whole call in one launch, where
 * the blocked passes take three (or two, from running statistics).
 */
__kernel void norm_channels(FUSED_BATCH_PARAMS)
{
    int epi = skip || residual || sum || act;
    ulong c = get_global_id(0);
    if (c >= C)
        return;
    float m, invstd;
    if (use_running) {
        m = running_mean[c];
        invstd = rsqrt(running_var[c] + eps);
    } else {
        float n = 0.0f, mean = 0.0f, m2 = 0.0f, shift = 0.0f;
        for (ulong k = 0; k < N; ++k)
            merge_run(x, skip, (k * C + c) * D, D, block, &n, &mean, &m2, &shift);
        mean += shift;
        m = mean;
        invstd = rsqrt(m2 / n + eps);
        if (save_mean)
            save_mean[c] = mean;
        if (save_invstd)
            save_invstd[c] = invstd;
        if (update_running) { /* as stats_finalize updates them: the unbiased variance */
            running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mean;
            running_var[c] = (1.0f - momentum) * running_var[c] + momentum * (m2 / (n - 1.0f));
        }
    }
    float s = gamma ? invstd * gamma[c] : invstd, b = beta ? beta[c] : 0.0f;
    for (ulong k = 0; k < N; ++k) {
        ulong i = (k * C + c) * D, stop = i + D, pos = 0;
        APPLY_LOOP(m, s, b, m, s, b, m, s, b)
    }
    stream_end();
}
#endif

/* (mean, M2) of the eight columns at x + i0 over rows [0, rows) of stride R. */
inline void cols8_stats(__global const store_t *x, __global const store_t *skip, ulong i0,
                        ulong stride, ulong rows, float8 *mean, float8 *m2)
{
    ulong q0 = 0, q1 = rows;
    float8 mn, mm;
    COLUMN_STATS(float8, HX8, i0, stride, q0, q1, mn, mm)
    *mean = mn;
    *m2 = mm;
}

/* Merges a block's (mean, M2) of eight columns (T float8; one column: float) into the running
 * ones at pm, pm2, kept relative to the first block's means at psh (as stats_finalize merges;
 * first: the first block, which sets them); f = nb / (na + nb) and w = na * f, Chan's formula.
 * VL and VS load and store T at a pointer. */
#define MERGE_BLOCK(T, VL, VS)                                                                    \
    {                                                                                             \
        bm2 = select(bm2, (T)(0.0f), bm2 < (T)(0.0f));                                            \
        if (first) {                                                                              \
            VS((T)(0.0f), pm);                                                                    \
            VS(bm2, pm2);                                                                         \
            VS(bm, psh);                                                                          \
            return;                                                                               \
        }                                                                                         \
        T m = VL(pm);                                                                             \
        T delta = (bm - VL(psh)) - m;                                                             \
        VS(m + delta * f, pm);                                                                    \
        VS(VL(pm2) + bm2 + delta * delta * w, pm2);                                               \
    }
#define AT_VL8(p) vload8(0, p)
#define AT_VS8(v, p) vstore8(v, 0, p)
#define AT_VL1(p) (*(p))
#define AT_VS1(v, p) (*(p) = (v))
inline void merge8(__global float *pm, __global float *pm2, __global float *psh, float8 bm,
                   float8 bm2, float f, float w, int first) MERGE_BLOCK(float8, AT_VL8, AT_VS8)
inline void merge1(__global float *pm, __global float *pm2, __global float *psh, float bm,
                   float bm2, float f, float w, int first) MERGE_BLOCK(float, AT_VL1, AT_VS1)

/* One block of norm_slab: the (mean, M2) of NT tiles (8*NT columns) at a time from column c,
 * merged into the sample's running ones. */
#define SLAB_STATS_TILES(FN, NT)                                                                  \
    for (; c + 8 * NT <= R; c += 8 * NT) {                                                        \
        float8 bm[NT], bm2[NT];                                                                   \
        FN(x, skip, i0 + c, R, rows, bm, bm2);                                                          \
        _Pragma("unroll") for (int t = 0; t < NT; ++t)                                            \
            merge8(tm + c + 8 * t, ts + c + 8 * t, tb + c + 8 * t, bm[t], bm2[t], f, w, first);   \
    }

/*
 * Fused statistics and apply for channels-last INSTANCE and GROUP (S == 1; R % 8 == 0, or in
 * small problems R > 8, the last R % 8 columns one at a time) whose sample fits in a core's
 * cache: one work-item per sample p, whose [Q][R] slab is contiguous.
 * Statistics by blocks of qb rows (a block a few KiB, so both sweeps of each column tile hit
 * L1), every column's (mean, M2) merged block after block in order by Chan's formula, kept in
 * the sample's table entries (relative to its first block's mean, as stats_finalize merges);
 * then each group's `members` columns merged in order; then the table is rewritten with (mean, invstd*gamma, beta) and y computed over the slab, re-read from
 * cache. Writes the table, and save_*, stats and every column's (mean, M2) as its single
 * partial (for stats_finalize when running statistics need the whole batch), each when given.
 */
__kernel void norm_slab(__global const store_t *x, __global const store_t *skip,
                        __global ystore_t *y, __global float *part, __global float *stats,
                        ulong ngroups, __global float *table, ulong T, __global const float *gamma,
                        __global const float *beta, __global float *save_mean,
                        __global float *save_invstd, ulong P, ulong Q, ulong R, ulong qb,
                        ulong members, float eps, __global const store_t *residual,
                        __global store_t *sum, int act, float alpha)
{
    int epi = skip || residual || sum || act;
    ulong p = get_global_id(0);
    if (p >= P)
        return;
    ulong base = p * Q * R;
    __global float *tm = table + p * R;
    __global float *ts = tm + T;
    __global float *tb = tm + 2 * T;
    float n = 0.0f;
    for (ulong q0 = 0; q0 < Q; q0 += qb) {
        ulong rows = min(qb, Q - q0);
        float nb = (float)rows, nn = n + nb, f = nb / nn, w = n * f;
        int first = q0 == 0;
        ulong i0 = base + q0 * R, c = 0;
        SLAB_STATS_TILES(cols64_stats, 8)
        SLAB_STATS_TILES(cols32_stats, 4)
        SLAB_STATS_TILES(cols8_stats, 1)
        for (; c < R; ++c) { /* a last tile of fewer than eight columns (small problems) */
            ulong ic = i0 + c;
            float bm, bm2;
            COLUMN_STATS(float, HX1, ic, R, 0, rows, bm, bm2)
            merge1(tm + c, ts + c, tb + c, bm, bm2, f, w, first);
        }
        n = nn;
    }
    ulong groups = R / members;
    for (ulong k = 0; k < groups; ++k) {
        float gn = 0.0f, gm = 0.0f, gm2 = 0.0f, gshift = 0.0f;
        for (ulong j = 0; j < members; ++j) {
            ulong c = k * members + j;
            float cm = tm[c] + tb[c];
            if (j == 0)
                gshift = cm;
            if (part) {
                part[2 * (p * R + c)] = cm;
                part[2 * (p * R + c) + 1] = ts[c];
            }
            chan_merge(&gn, &gm, &gm2, n, cm - gshift, ts[c]);
        }
        gm += gshift;
        float invstd = rsqrt(gm2 / gn + eps);
        ulong gi = p * groups + k;
        if (stats) {
            stats[gi] = gm;
            stats[ngroups + gi] = invstd;
        }
        if (save_mean)
            save_mean[gi] = gm;
        if (save_invstd)
            save_invstd[gi] = invstd;
        for (ulong j = 0; j < members; ++j) {
            ulong c = k * members + j;
            tm[c] = gm;
            ts[c] = gamma ? invstd * gamma[c] : invstd;
            tb[c] = beta ? beta[c] : 0.0f;
        }
    }
#if CLNORM_APPLY == 1 && !CLNORM_NARROW
#ifdef CLNORM_NT_LINE
    if (!epi && R % 16 == 0 && ((ulong)y & 63) == 0) { /* whole lines of y, as apply */
        row_walk w = {base, base + Q * R, 0, base + Q * R, 0, 0};
        apply_lines(x, y, tm, T, 0, &w, R, Q);
        stream_end();
        return;
    }
#endif
    if (!epi && R % 8 == 0) { /* the constants of 64 channels at a time in registers */
        row_walk w = {base, base + Q * R, 0, base + Q * R, 0, 0};
        float8 cm[ROW_VECTORS], cs[ROW_VECTORS], cb[ROW_VECTORS];
        ROWS8_WALK(&w, tm, 0, R, Q, AR_HOLD, AR_REG, AR_MEM)
        stream_end();
        return;
    }
#endif
    for (ulong i = base, end = base + Q * R; i < end; i += R) {
        ulong c = 0;
        for (; c + 8 <= R; c += 8)
            if (epi)
                EPI8(i + c, vload8(0, tm + c), vload8(0, ts + c), vload8(0, tb + c))
            else
                OUT8((LOAD8(x, i + c) - vload8(0, tm + c)) * vload8(0, ts + c) +
                         vload8(0, tb + c),
                     y, i + c);
        for (; c < R; ++c)
            if (epi)
                EPI1(i + c, tm[c], ts[c], tb[c])
            else
                STORE1((LOAD1(x, i + c) - tm[c]) * ts[c] + tb[c], y, i + c);
    }
    stream_end();
}

#if CLNORM_APPLY == 1
/* One column tile of norm_cols: T float8 (eight channels from c, C % 8 == 0) or float (channel
 * c); VL / VS load and store its per-channel values; HX reads h = x + skip, LD x, and EPI / OUT
 * write y with and without the epilogue. */
#define NORM_COLS(T, VL, VS, HX, LD, EPI, OUT)                                                    \
    {                                                                                             \
        T m, invstd;                                                                              \
        if (use_running) {                                                                        \
            m = VL(running_mean);                                                                 \
            invstd = rsqrt(VL(running_var) + eps);                                                \
        } else {                                                                                  \
            float n = 0.0f;                                                                       \
            T mean = (T)(0.0f), m2 = (T)(0.0f), shift = (T)(0.0f);                                \
            for (ulong q0 = 0; q0 < rows; q0 += block) {                                          \
                ulong q1 = min(block, rows - q0), i0 = q0 * C + c;                                \
                T bm, bm2;                                                                        \
                COLUMN_STATS(T, HX, i0, C, 0, q1, bm, bm2)                                        \
                bm2 = select(bm2, (T)(0.0f), bm2 < (T)(0.0f));                                    \
                if (q0 == 0)                                                                      \
                    shift = bm;                                                                   \
                float nb = (float)q1, nn = n + nb;                                                \
                T delta = (bm - shift) - mean;                                                    \
                mean += delta * (nb / nn);                                                        \
                m2 += bm2 + delta * delta * (n * (nb / nn));                                      \
                n = nn;                                                                           \
            }                                                                                     \
            mean += shift;                                                                        \
            m = mean;                                                                             \
            invstd = rsqrt(m2 / n + eps);                                                         \
            if (save_mean)                                                                        \
                VS(mean, save_mean);                                                              \
            if (save_invstd)                                                                      \
                VS(invstd, save_invstd);                                                          \
            if (update_running) {                                                                 \
                VS((1.0f - momentum) * VL(running_mean) + momentum * mean, running_mean);         \
                VS((1.0f - momentum) * VL(running_var) + momentum * (m2 / (n - 1.0f)),            \
                   running_var);                                                                  \
            }                                                                                     \
        }                                                                                         \
        T s = gamma ? invstd * VL(gamma) : invstd, b = beta ? VL(beta) : (T)(0.0f);               \
        for (ulong i = c, end = rows * C; i < end; i += C)                                        \
            if (epi)                                                                              \
                EPI(i, m, s, b)                                                                   \
            else                                                                                  \
                OUT((LD(x, i) - m) * s + b, y, i);                                                \
    }
#define COLS_VL8(p) vload8(0, (p) + c)
#define COLS_VS8(v, p) vstore8(v, 0, (p) + c)
#define COLS_VL1(p) (p)[c]
#define COLS_VS1(v, p) ((p)[c] = (v))

/*
 * Fused forward of small channels-last BATCH problems (CPU), the counterpart of norm_channels,
 * with its arguments: N*D rows of C channels, channel c's elements at q*C + c. One work-item per
 * tile of eight channels (C % 8 == 0; vectors along the row) or per channel (other C) computes
 * the statistics (blocks of `block` rows, two-pass each, merged in order by Chan's formula
 * relative to the first block's means), writes save_*, updates or reads the running statistics,
 * and writes y over the rows, read again from cache: the whole call in one launch.
 */
__kernel void norm_cols(FUSED_BATCH_PARAMS)
{
    int epi = skip || residual || sum || act;
    ulong t = get_global_id(0), rows = N * D;
    if (C % 8 == 0) {
        ulong c = 8 * t;
        if (c >= C)
            return;
        NORM_COLS(float8, COLS_VL8, COLS_VS8, HX8, LOAD8, EPI8, OUT8)
    } else {
        ulong c = t;
        if (c >= C)
            return;
        NORM_COLS(float, COLS_VL1, COLS_VS1, HX1, LOAD1, EPI1, STORE1)
    }
    stream_end();
}
#endif
