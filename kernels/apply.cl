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
 */

#define APPLY_LOOP(M8, S8, B8, M1, S1, B1)                                                         \
    for (; i + 8 <= stop; i += 8, pos += 8)                                                         \
        STORE8((LOAD8(x, i) - (M8)) * (S8) + (B8), y, i);                                           \
    for (; i < stop; ++i, ++pos)                                                                    \
        STORE1((LOAD1(x, i) - (M1)) * (S1) + (B1), y, i);

__kernel void apply(__global const store_t *x, __global store_t *y, __global const float *table,
                    ulong T, __global const float *stats, ulong nstats, __global const float *gamma,
                    __global const float *beta, ulong total, ulong rowlen, ulong rows_per_sample,
                    ulong tstride, ulong chunk)
{
    ulong i = get_global_id(0) * chunk;
    if (i >= total)
        return;
    ulong end = min(total, i + chunk);
    ulong row = i / rowlen;
    ulong pos = i - row * rowlen;
    while (i < end) {
        ulong stop = min(end, i + (rowlen - pos));
        ulong n = row / rows_per_sample;
#if CLNORM_APPLY == 0
        ulong t = n * tstride + (row - n * rows_per_sample);
        float m = table[t], s = table[T + t], b = table[2 * T + t];
        APPLY_LOOP(m, s, b, m, s, b)
#elif CLNORM_APPLY == 1
        __global const float *tm = table + n * tstride;
        __global const float *ts = tm + T;
        __global const float *tb = tm + 2 * T;
        APPLY_LOOP(vload8(0, tm + pos), vload8(0, ts + pos), vload8(0, tb + pos), tm[pos],
                   ts[pos], tb[pos])
#else
        float m = stats[n], a = stats[nstats + n];
        if (gamma && beta) {
            APPLY_LOOP(m, a * vload8(0, gamma + pos), vload8(0, beta + pos), m, a * gamma[pos],
                       beta[pos])
        } else if (gamma) {
            APPLY_LOOP(m, a * vload8(0, gamma + pos), 0.0f, m, a * gamma[pos], 0.0f)
        } else if (beta) {
            APPLY_LOOP(m, a, vload8(0, beta + pos), m, a, beta[pos])
        } else {
            APPLY_LOOP(m, a, 0.0f, m, a, 0.0f)
        }
#endif
        pos = 0;
        ++row;
    }
}
