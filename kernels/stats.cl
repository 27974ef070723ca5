/*
 * Statistics of every normalization kind, by blocked two-pass reduction.
 *
 * The problem is the view [P][Q][R][S]: one statistics group per (p, r), reduced over (q, s).
 * Pass 1 (stats_partial_rows / stats_partial_cols) cuts each group into blocks and writes a
 * (mean, M2) pair per block, computed two-pass inside the block: a shifted sum gives a first
 * mean, a second sweep over the same (cached) elements sums the deviations from it and their
 * squares, and the sum of deviations corrects the mean. A constant block gives its value and
 * M2 = 0 exactly. Pass 2 (stats_finalize) merges a group's blocks in a fixed order by Chan's
 * formula, so results are the same bits on every run, and writes what the apply pass needs.
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

/* Row shape: one work-item per block of a (p, r) group; the block is qb segments of up to sb
 * contiguous elements, read eight at a time. Work-items are ordered so that neighbours read
 * neighbouring memory. */
__kernel void stats_partial_rows(__global const store_t *x, __global float *part, ulong P,
                                 ulong Q, ulong R, ulong S, ulong qb, ulong sb, ulong sblocks,
                                 ulong nqb)
{
    ulong g = get_global_id(0);
    ulong nblk = nqb * sblocks;
    if (g >= P * R * nblk)
        return;
    ulong sbi, r, qbi;
    ulong t = divide(g, sblocks, &sbi);
    t = divide(t, R, &r);
    ulong p = divide(t, nqb, &qbi);
    ulong q0 = qbi * qb, q1 = min(Q, q0 + qb);
    ulong s0 = sbi * sb, s1 = min(S, s0 + sb);
    float count = (float)((q1 - q0) * (s1 - s0));

    float shift = LOAD1(x, ((p * Q + q0) * R + r) * S + s0);
    float8 acc8 = (float8)(0.0f);
    float acc1 = 0.0f;
    for (ulong q = q0; q < q1; ++q) {
        ulong i = ((p * Q + q) * R + r) * S + s0;
        ulong end = i + (s1 - s0);
        for (; i + 8 <= end; i += 8)
            acc8 += LOAD8(x, i) - shift;
        for (; i < end; ++i)
            acc1 += LOAD1(x, i) - shift;
    }
    float mean0 = shift + (hsum8(acc8) + acc1) / count;

    float8 d8 = (float8)(0.0f), dd8 = (float8)(0.0f);
    float d1 = 0.0f, dd1 = 0.0f;
    for (ulong q = q0; q < q1; ++q) {
        ulong i = ((p * Q + q) * R + r) * S + s0;
        ulong end = i + (s1 - s0);
        for (; i + 8 <= end; i += 8) {
            float8 v = LOAD8(x, i) - mean0;
            d8 += v;
            dd8 += v * v;
        }
        for (; i < end; ++i) {
            float v = LOAD1(x, i) - mean0;
            d1 += v;
            dd1 += v * v;
        }
    }
    float sd = hsum8(d8) + d1;
    store_partial(part, (p * R + r) * nblk + qbi * sblocks + sbi, mean0 + sd / count,
                  hsum8(dd8) + dd1 - sd * (sd / count));
}

/* Column shape, for S == 1 (channels-last BATCH, INSTANCE and GROUP): groups are columns of a
 * [Q][R] matrix. A work-item reduces qb rows of CLNORM_RT neighbouring columns, one column per
 * vector lane, so each row it reads is one contiguous run; a last, narrower tile of columns is
 * reduced one column at a time. The same two-pass scheme as the row shape, per column. */
#define COLUMN_STATS(T, LOAD, i0, stride, q0, q1, mean, m2)                                        \
    {                                                                                             \
        float count = (float)(q1 - q0);                                                           \
        T shift = LOAD(x, i0);                                                                    \
        T acc = (T)(0.0f);                                                                        \
        for (ulong q = q0; q < q1; ++q)                                                           \
            acc += LOAD(x, i0 + (q - q0) * stride) - shift;                                       \
        T mean0 = shift + acc / count;                                                            \
        T d = (T)(0.0f), dd = (T)(0.0f);                                                          \
        for (ulong q = q0; q < q1; ++q) {                                                         \
            T v = LOAD(x, i0 + (q - q0) * stride) - mean0;                                        \
            d += v;                                                                               \
            dd += v * v;                                                                          \
        }                                                                                         \
        mean = mean0 + d / count;                                                                 \
        m2 = dd - d * (d / count);                                                                \
    }

__kernel void stats_partial_cols(__global const store_t *x, __global float *part, ulong P,
                                 ulong Q, ulong R, ulong qb, ulong nqb)
{
    ulong g = get_global_id(0);
    ulong nrt = (R + CLNORM_RT - 1) / CLNORM_RT;
    if (g >= P * nqb * nrt)
        return;
    ulong rt, qbi;
    ulong t = divide(g, nrt, &rt);
    ulong p = divide(t, nqb, &qbi);
    ulong r0 = rt * CLNORM_RT;
    ulong q0 = qbi * qb, q1 = min(Q, q0 + qb);
    ulong i0 = (p * Q + q0) * R + r0;
    ulong out = (p * R + r0) * nqb + qbi;
#if CLNORM_RT == 8
    if (r0 + 8 <= R) {
        float8 mean, m2;
        COLUMN_STATS(float8, LOAD8, i0, R, q0, q1, mean, m2)
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
    for (ulong j = 0; r0 + j < R && j < CLNORM_RT; ++j) {
        float mean, m2;
        COLUMN_STATS(float, LOAD1, i0 + j, R, q0, q1, mean, m2)
        store_partial(part, out + j * nqb, mean, m2);
    }
}

/*
 * Merge: work-item w owns groups w + k*item_stride for k < per_item (one group, or for
 * INSTANCE with running statistics one channel over every sample, so that the running update
 * can average the per-sample statistics). A group's partials are `members` consecutive
 * partial columns of nblk blocks each (channels-last GROUP merges its C/G channels here).
 *
 * Writes: stats = [mean of every group | invstd of every group] for the apply and backward
 * passes (RMS: mean 0, invstd = 1/rms); save_mean and
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
                             ulong chans_per_group, ulong C)
{
    ulong w = get_global_id(0);
    if (w >= nitems)
        return;
    float mean_sum = 0.0f, var_sum = 0.0f;
    for (ulong k = 0; k < per_item; ++k) {
        ulong gi = w + k * item_stride;
        float n = 0.0f, mean = 0.0f, m2 = 0.0f;
        for (ulong j = 0; j < members; ++j) {
            __global const float *col = part + 2 * (gi * members + j) * nblk;
            for (ulong b = 0; b < nblk; ++b)
                chan_merge(&n, &mean, &m2, (float)block_count(b, Q, S, qb, sb, sblocks),
                           col[2 * b], col[2 * b + 1]);
        }
#if CLNORM_KIND == KIND_RMS
        float invstd = rsqrt(m2 / n + mean * mean + eps);
        stats[gi] = 0.0f;
        stats[ngroups + gi] = invstd;
        if (save_invstd)
            save_invstd[gi] = invstd;
#else
        float invstd = rsqrt(m2 / n + eps);
        stats[gi] = mean;
        stats[ngroups + gi] = invstd;
        if (save_mean)
            save_mean[gi] = mean;
        if (save_invstd)
            save_invstd[gi] = invstd;
        mean_sum += mean;
        var_sum += m2 / (n - 1.0f);
#endif
#if CLNORM_KIND == KIND_BATCH || CLNORM_KIND == KIND_INSTANCE || CLNORM_KIND == KIND_GROUP
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
