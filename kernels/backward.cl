/*
 * Backward: dx, dgamma and dbeta through every kind, with the statistics of the forward.
 *
 * Per statistics group, with g = dy * gamma and xh = (x - mean) * invstd:
 *   dx = invstd * (g - mean(g) - xh * mean(g * xh))      (RMS: no mean(g) term)
 *   dgamma = sum(dy * xh), dbeta = sum(dy) over every element sharing the parameter.
 * With running statistics in INFERENCE the statistics are constants: dx = g * invstd.
 *
 * Passes (all sums two-stage: per-block partials, then a fixed-order merge; no atomics):
 *   bwd_partial_rows / bwd_partial_cols  per block of a slice: (sum dy*gw, sum dy*gw*xh), where
 *       a slice is one group's part that shares a channel (or a whole LAYER/RMS row, then gw is
 *       gamma per element; otherwise gw = 1 and gamma enters at the merge)
 *   bwd_finalize   merges slices into group sums, writes dgamma/dbeta per channel and the
 *       coefficients of dx = k_dy*dy + k_x*(x - mean) + k_0
 *   bwd_param_partial / bwd_param_finalize   LAYER/RMS dgamma, dbeta: column sums over samples
 *   bwd_apply      dx over the whole tensor, in apply.cl's chunked shape
 * mean and invstd come from save_mean/save_invstd, or from the plan's own statistics buffer
 * ([means | invstds]), hence a buffer and an offset for each.
 */

#if CLNORM_KIND == KIND_LAYER || CLNORM_KIND == KIND_RMS
#define PER_ELEMENT_GAMMA 1
#else
#define PER_ELEMENT_GAMMA 0
#endif

inline float stat_mean(__global const float *mean, ulong i)
{
#if CLNORM_KIND == KIND_RMS
    return 0.0f;
#else
    return mean[i];
#endif
}

__kernel void bwd_partial_rows(__global const store_t *x, __global const store_t *dy,
                               __global float *part, __global const float *mean, ulong moff,
                               __global const float *invstd, ulong ioff,
                               __global const float *gamma, ulong P, ulong Q, ulong R, ulong S,
                               ulong qb, ulong sb, ulong sblocks, ulong nqb, ulong members)
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
    ulong k = (p * R + r) / members;
    float m = stat_mean(mean + moff, k), a = invstd[ioff + k];

    float8 sg8 = (float8)(0.0f), sx8 = (float8)(0.0f);
    float sg1 = 0.0f, sx1 = 0.0f;
    for (ulong q = q0; q < q1; ++q) {
        ulong base = ((p * Q + q) * R + r) * S;
        ulong s = s0;
        for (; s + 8 <= s1; s += 8) {
            float8 d = LOAD8(dy, base + s);
#if PER_ELEMENT_GAMMA
            if (gamma)
                d *= vload8(0, gamma + s);
#endif
            sg8 += d;
            sx8 += d * ((LOAD8(x, base + s) - m) * a);
        }
        for (; s < s1; ++s) {
            float d = LOAD1(dy, base + s);
#if PER_ELEMENT_GAMMA
            if (gamma)
                d *= gamma[s];
#endif
            sg1 += d;
            sx1 += d * ((LOAD1(x, base + s) - m) * a);
        }
    }
    ulong out = (p * R + r) * nblk + qbi * sblocks + sbi;
    part[2 * out] = hsum8(sg8) + sg1;
    part[2 * out + 1] = hsum8(sx8) + sx1;
}

/* S == 1: slices are columns of a [Q][R] matrix; CLNORM_RT neighbouring columns per work-item,
 * one per vector lane, as in stats_partial_cols. */
__kernel void bwd_partial_cols(__global const store_t *x, __global const store_t *dy,
                               __global float *part, __global const float *mean, ulong moff,
                               __global const float *invstd, ulong ioff, ulong P, ulong Q,
                               ulong R, ulong qb, ulong nqb, ulong members)
{
    ulong p, r0, qbi, q0, q1;
    if (!col_tile(P, Q, R, qb, nqb, CLNORM_RT, &p, &r0, &qbi, &q0, &q1))
        return;
    ulong out = (p * R + r0) * nqb + qbi;
#if CLNORM_RT == 8
    if (r0 + 8 <= R) {
        ulong k = p * R + r0;
        float8 m, a;
        if (members == 1) {
            m = vload8(0, mean + moff + k);
            a = vload8(0, invstd + ioff + k);
        } else {
            m = (float8)(mean[moff + (k + 0) / members], mean[moff + (k + 1) / members],
                         mean[moff + (k + 2) / members], mean[moff + (k + 3) / members],
                         mean[moff + (k + 4) / members], mean[moff + (k + 5) / members],
                         mean[moff + (k + 6) / members], mean[moff + (k + 7) / members]);
            a = (float8)(invstd[ioff + (k + 0) / members], invstd[ioff + (k + 1) / members],
                         invstd[ioff + (k + 2) / members], invstd[ioff + (k + 3) / members],
                         invstd[ioff + (k + 4) / members], invstd[ioff + (k + 5) / members],
                         invstd[ioff + (k + 6) / members], invstd[ioff + (k + 7) / members]);
        }
        float8 sg = (float8)(0.0f), sx = (float8)(0.0f);
        for (ulong q = q0; q < q1; ++q) {
            ulong i = (p * Q + q) * R + r0;
            float8 d = LOAD8(dy, i);
            sg += d;
            sx += d * ((LOAD8(x, i) - m) * a);
        }
        part[2 * (out + 0 * nqb)] = sg.s0, part[2 * (out + 0 * nqb) + 1] = sx.s0;
        part[2 * (out + 1 * nqb)] = sg.s1, part[2 * (out + 1 * nqb) + 1] = sx.s1;
        part[2 * (out + 2 * nqb)] = sg.s2, part[2 * (out + 2 * nqb) + 1] = sx.s2;
        part[2 * (out + 3 * nqb)] = sg.s3, part[2 * (out + 3 * nqb) + 1] = sx.s3;
        part[2 * (out + 4 * nqb)] = sg.s4, part[2 * (out + 4 * nqb) + 1] = sx.s4;
        part[2 * (out + 5 * nqb)] = sg.s5, part[2 * (out + 5 * nqb) + 1] = sx.s5;
        part[2 * (out + 6 * nqb)] = sg.s6, part[2 * (out + 6 * nqb) + 1] = sx.s6;
        part[2 * (out + 7 * nqb)] = sg.s7, part[2 * (out + 7 * nqb) + 1] = sx.s7;
        return;
    }
#endif
    for (ulong j = 0; r0 + j < R && j < CLNORM_RT; ++j) {
        ulong k = (p * R + r0 + j) / members;
        float m = mean[moff + k], a = invstd[ioff + k];
        float sg = 0.0f, sx = 0.0f;
        for (ulong q = q0; q < q1; ++q) {
            ulong i = (p * Q + q) * R + r0 + j;
            float d = LOAD1(dy, i);
            sg += d;
            sx += d * ((LOAD1(x, i) - m) * a);
        }
        part[2 * (out + j * nqb)] = sg;
        part[2 * (out + j * nqb) + 1] = sx;
    }
}

/* The merged (sum g, sum g*xh) of one slice: its blocks in order. */
inline float2 slice_sums(__global const float *part, ulong slice, ulong nblk)
{
    float sg = 0.0f, sx = 0.0f;
    for (ulong b = 0; b < nblk; ++b) {
        sg += part[2 * (slice * nblk + b)];
        sx += part[2 * (slice * nblk + b) + 1];
    }
    return (float2)(sg, sx);
}

/*
 * Per-channel kinds (BATCH, INSTANCE, GROUP): work-item j owns channels [j*cpg, (j+1)*cpg)
 * (one channel, or one group of C/G) for every sample n < nsamples (1 for BATCH, whose slices
 * already span the batch). Slice of (n, c): n*C + c. Writes coef[4][T] for entry n*tstride + c:
 * mean, k_dy, k_x, k_0; and dgamma[c], dbeta[c] summed over n in order.
 * Per-sample kinds (LAYER, RMS): work-item n owns row n (slice n): coef[4][N] = mean, invstd,
 * k_x, k_0, with k_dy = gamma[i] * invstd applied per element.
 */
__kernel void bwd_finalize(__global const float *part, ulong nblk, __global const float *mean,
                           ulong moff, __global const float *invstd, ulong ioff,
                           __global const float *gamma, __global float *coef, ulong T,
                           __global float *dgamma, __global float *dbeta, ulong nitems,
                           ulong nsamples, ulong cpg, ulong C, ulong tstride, float count,
                           int constant_stats)
{
    ulong j = get_global_id(0);
    if (j >= nitems)
        return;
#if PER_ELEMENT_GAMMA
    float2 s = slice_sums(part, j, nblk);
    float m = stat_mean(mean + moff, j), a = invstd[ioff + j];
    coef[j] = m;
    coef[T + j] = a;
    coef[2 * T + j] = constant_stats ? 0.0f : -a * a * (s.y / count);
#if CLNORM_KIND == KIND_RMS
    coef[3 * T + j] = 0.0f;
#else
    coef[3 * T + j] = constant_stats ? 0.0f : -a * (s.x / count);
#endif
#else
    for (ulong n = 0; n < nsamples; ++n) {
        ulong k = n * (C / cpg) + j; /* statistics group */
        float m = mean[moff + k], a = invstd[ioff + k];
        float sg = 0.0f, sgx = 0.0f;
        for (ulong c = j * cpg; c < (j + 1) * cpg; ++c) {
            float2 s = slice_sums(part, n * C + c, nblk);
            float w = gamma ? gamma[c] : 1.0f;
            sg += w * s.x;
            sgx += w * s.y;
            if (dbeta)
                dbeta[c] = n ? dbeta[c] + s.x : s.x;
            if (dgamma)
                dgamma[c] = n ? dgamma[c] + s.y : s.y;
        }
        for (ulong c = j * cpg; c < (j + 1) * cpg; ++c) {
            ulong e = n * tstride + c;
            coef[e] = m;
            coef[T + e] = (gamma ? gamma[c] : 1.0f) * a;
            coef[2 * T + e] = constant_stats ? 0.0f : -a * a * (sgx / count);
            coef[3 * T + e] = constant_stats ? 0.0f : -a * (sg / count);
        }
    }
#endif
}

/* LAYER/RMS dgamma, dbeta: column sums over the N samples of the [N][L] matrix, CLNORM_RT
 * columns and qb samples per work-item; partials (sum dy, sum dy*xh) per (column, block). */
__kernel void bwd_param_partial(__global const store_t *x, __global const store_t *dy,
                                __global float *part, __global const float *mean, ulong moff,
                                __global const float *invstd, ulong ioff, ulong N, ulong L,
                                ulong qb, ulong nqb)
{
    ulong g = get_global_id(0);
    ulong nrt = (L + CLNORM_RT - 1) / CLNORM_RT;
    if (g >= nqb * nrt)
        return;
    ulong rt;
    ulong qbi = divide(g, nrt, &rt);
    ulong c0 = rt * CLNORM_RT;
    ulong q0 = qbi * qb, q1 = min(N, q0 + qb);
#if CLNORM_RT == 8
    if (c0 + 8 <= L) {
        float8 sb = (float8)(0.0f), sgm = (float8)(0.0f);
        for (ulong n = q0; n < q1; ++n) {
            float m = stat_mean(mean + moff, n), a = invstd[ioff + n];
            float8 d = LOAD8(dy, n * L + c0);
            sb += d;
            sgm += d * ((LOAD8(x, n * L + c0) - m) * a);
        }
        ulong o = c0 * nqb + qbi;
        part[2 * (o + 0 * nqb)] = sb.s0, part[2 * (o + 0 * nqb) + 1] = sgm.s0;
        part[2 * (o + 1 * nqb)] = sb.s1, part[2 * (o + 1 * nqb) + 1] = sgm.s1;
        part[2 * (o + 2 * nqb)] = sb.s2, part[2 * (o + 2 * nqb) + 1] = sgm.s2;
        part[2 * (o + 3 * nqb)] = sb.s3, part[2 * (o + 3 * nqb) + 1] = sgm.s3;
        part[2 * (o + 4 * nqb)] = sb.s4, part[2 * (o + 4 * nqb) + 1] = sgm.s4;
        part[2 * (o + 5 * nqb)] = sb.s5, part[2 * (o + 5 * nqb) + 1] = sgm.s5;
        part[2 * (o + 6 * nqb)] = sb.s6, part[2 * (o + 6 * nqb) + 1] = sgm.s6;
        part[2 * (o + 7 * nqb)] = sb.s7, part[2 * (o + 7 * nqb) + 1] = sgm.s7;
        return;
    }
#endif
    for (ulong c = c0; c < L && c < c0 + CLNORM_RT; ++c) {
        float sb = 0.0f, sgm = 0.0f;
        for (ulong n = q0; n < q1; ++n) {
            float m = stat_mean(mean + moff, n), a = invstd[ioff + n];
            float d = LOAD1(dy, n * L + c);
            sb += d;
            sgm += d * ((LOAD1(x, n * L + c) - m) * a);
        }
        part[2 * (c * nqb + qbi)] = sb;
        part[2 * (c * nqb + qbi) + 1] = sgm;
    }
}

__kernel void bwd_param_finalize(__global const float *part, ulong nqb, ulong L,
                                 __global float *dgamma, __global float *dbeta)
{
    ulong c = get_global_id(0);
    if (c >= L)
        return;
    float2 s = slice_sums(part, c, nqb);
    if (dbeta)
        dbeta[c] = s.x;
    if (dgamma)
        dgamma[c] = s.y;
}

/* INFERENCE with running statistics: the groups' statistics are the running ones. */
__kernel void bwd_running_stats(__global const float *running_mean,
                                __global const float *running_var, __global float *stats,
                                ulong ngroups, ulong C, float eps)
{
    ulong k = get_global_id(0);
    if (k >= ngroups)
        return;
    ulong c;
    divide(k, C, &c); /* BATCH: group c; INSTANCE: group n*C + c */
    stats[k] = running_mean[c];
    stats[ngroups + k] = rsqrt(running_var[c] + eps);
}

/* dx = k_dy*dy + k_x*(x - mean) + k_0, walking chunks and rows as apply does (row_walk). */
#define BWD_LOOP(M8, KDY8, KX8, K08, M1, KDY1, KX1, K01)                                          \
    for (; i + 8 <= stop; i += 8, pos += 8)                                                         \
        STORE8((KDY8) * LOAD8(dy, i) + (KX8) * (LOAD8(x, i) - (M8)) + (K08), dx, i);                \
    for (; i < stop; ++i, ++pos)                                                                    \
        STORE1((KDY1) * LOAD1(dy, i) + (KX1) * (LOAD1(x, i) - (M1)) + (K01), dx, i);

__kernel void bwd_apply(__global const store_t *x, __global const store_t *dy,
                        __global store_t *dx, __global const float *coef, ulong T,
                        __global const float *gamma, ulong total, ulong rowlen,
                        ulong rows_per_sample, ulong tstride, ulong chunk)
{
    row_walk w;
    if (!walk_begin(&w, chunk, total, rowlen, rows_per_sample))
        return;
    do {
        ulong i = w.i, pos = w.pos, stop = w.stop, n = w.n;
#if CLNORM_APPLY == 0
        ulong t = n * tstride + w.rs;
        float m = coef[t], kdy = coef[T + t], kx = coef[2 * T + t], k0 = coef[3 * T + t];
        BWD_LOOP(m, kdy, kx, k0, m, kdy, kx, k0)
#elif CLNORM_APPLY == 1
        __global const float *tm = coef + n * tstride;
        BWD_LOOP(vload8(0, tm + pos), vload8(0, tm + T + pos), vload8(0, tm + 2 * T + pos),
                 vload8(0, tm + 3 * T + pos), tm[pos], tm[T + pos], tm[2 * T + pos],
                 tm[3 * T + pos])
#else
        float m = coef[n], a = coef[T + n], kx = coef[2 * T + n], k0 = coef[3 * T + n];
        if (gamma) {
            BWD_LOOP(m, a * vload8(0, gamma + pos), kx, k0, m, a * gamma[pos], kx, k0)
        } else {
            BWD_LOOP(m, a, kx, k0, m, a, kx, k0)
        }
#endif
    } while (walk_next(&w, rowlen, rows_per_sample));
}

/*
 * LAYER/RMS on CPUs, rows that fit in cache: one work-item takes rows_per_item whole rows. For
 * each row it sums g = dy*gamma and g*xh in blocks of `block` elements (merged in order, as
 * the partial kernels do), adds dy and dy*xh into its own slice of parameter partials
 * ppart[item] = [dbeta L | dgamma L], then writes dx from the row still in cache: x and dy
 * cross memory once. bwd_rows_param_finalize sums the items' slices in order.
 */
__kernel void bwd_rows(__global const store_t *x, __global const store_t *dy,
                       __global store_t *dx, __global const float *mean, ulong moff,
                       __global const float *invstd, ulong ioff, __global const float *gamma,
                       __global float *ppart, ulong N, ulong L, ulong rows_per_item,
                       ulong block, int want_dx, int want_params)
{
    ulong item = get_global_id(0);
    ulong n0 = item * rows_per_item;
    if (n0 >= N)
        return;
    ulong n1 = min(N, n0 + rows_per_item);
    __global float *pdb = ppart + 2 * item * L, *pdg = pdb + L;
    float count = (float)L;
    for (ulong n = n0; n < n1; ++n) {
        float m = stat_mean(mean + moff, n), a = invstd[ioff + n];
        __global const store_t *xr = x + n * L, *dyr = dy + n * L;
        int first = n == n0;
        float sg = 0.0f, sgx = 0.0f;
        for (ulong b0 = 0; b0 < L; b0 += block) {
            ulong b1 = min(L, b0 + block), c = b0;
            float8 g8 = (float8)(0.0f), gx8 = (float8)(0.0f);
            float g1 = 0.0f, gx1 = 0.0f;
            for (; c + 8 <= b1; c += 8) {
                float8 d = LOAD8(dyr, c), xh = (LOAD8(xr, c) - m) * a;
                if (want_params) {
                    float8 pb = first ? d : vload8(0, pdb + c) + d;
                    float8 pg = first ? d * xh : vload8(0, pdg + c) + d * xh;
                    vstore8(pb, 0, pdb + c);
                    vstore8(pg, 0, pdg + c);
                }
                if (gamma)
                    d *= vload8(0, gamma + c);
                g8 += d;
                gx8 += d * xh;
            }
            for (; c < b1; ++c) {
                float d = LOAD1(dyr, c), xh = (LOAD1(xr, c) - m) * a;
                if (want_params) {
                    pdb[c] = first ? d : pdb[c] + d;
                    pdg[c] = first ? d * xh : pdg[c] + d * xh;
                }
                if (gamma)
                    d *= gamma[c];
                g1 += d;
                gx1 += d * xh;
            }
            sg += hsum8(g8) + g1;
            sgx += hsum8(gx8) + gx1;
        }
        if (!want_dx)
            continue;
        float kx = -a * a * (sgx / count);
#if CLNORM_KIND == KIND_RMS
        float k0 = 0.0f;
#else
        float k0 = -a * (sg / count);
#endif
        __global store_t *dxr = dx + n * L;
        ulong c = 0;
        for (; c + 8 <= L; c += 8) {
            float8 k = gamma ? a * vload8(0, gamma + c) : (float8)(a);
            STORE8(k * LOAD8(dyr, c) + kx * (LOAD8(xr, c) - m) + k0, dxr, c);
        }
        for (; c < L; ++c) {
            float k = gamma ? a * gamma[c] : a;
            STORE1(k * LOAD1(dyr, c) + kx * (LOAD1(xr, c) - m) + k0, dxr, c);
        }
    }
}

__kernel void bwd_rows_param_finalize(__global const float *ppart, ulong nitems, ulong L,
                                      __global float *dgamma, __global float *dbeta)
{
    ulong c = get_global_id(0);
    if (c >= L)
        return;
    float sb = 0.0f, sg = 0.0f;
    for (ulong i = 0; i < nitems; ++i) {
        sb += ppart[2 * i * L + c];
        sg += ppart[2 * i * L + L + c];
    }
    if (dbeta)
        dbeta[c] = sb;
    if (dgamma)
        dgamma[c] = sg;
}
