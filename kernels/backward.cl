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
 *       (row slices on GPUs: bwd_partial_rows_wg, a work-group per block)
 *   bwd_finalize   merges slices into group sums, writes dgamma/dbeta per channel and the
 *       coefficients of dx = k_dy*dy + k_x*(x - mean) + k_0
 *   bwd_param_partial / bwd_param_finalize   LAYER/RMS dgamma, dbeta: column sums over samples
 *   bwd_apply      dx over the whole tensor, in apply.cl's chunked shape
 * mean and invstd come from save_mean/save_invstd, or from the plan's own statistics buffer
 * ([means | invstds]), hence a buffer and an offset for each.
 */

#if CLNORM_APPLY == 2 /* LAYER, RMS */
#define PER_ELEMENT_GAMMA 1
#else
#define PER_ELEMENT_GAMMA 0
#endif

/* RMS passes no mean (NULL): it is 0 by definition. */
inline float stat_mean(__global const float *mean, ulong off, ulong i)
{
    return mean ? mean[off + i] : 0.0f;
}

/* The group's part of dx = k_dy*dy + k_x*(x - mean) + k_0: with invstd a, count elements and
 * the group's sums sg = sum g and sgx = sum g*xh, k_x = -a^2 * mean(g*xh), k_0 = -a * mean(g)
 * (RMS, whose mean is 0 by definition: no k_0). */
inline float coef_x(float a, float sgx, float count) { return -a * a * (sgx / count); }
inline float coef_0(float a, float sg, float count) { return -a * (sg / count); }

#ifdef CLNORM_WG
/* Row slices on GPUs: bwd_partial_rows' blocks and sums, one work-group of CLNORM_WG
 * work-items per block reading it coalesced (wg_walk), the group's sums taken by a fixed tree
 * in local memory, as stats_partial_rows_wg does. */
__kernel __attribute__((reqd_work_group_size(CLNORM_WG, 1, 1))) void
bwd_partial_rows_wg(__global const store_t *x, __global const store_t *skip,
                    __global const store_t *dy, __global float *part,
                    __global const float *mean, ulong moff, __global const float *invstd,
                    ulong ioff, __global const float *gamma, ulong P, ulong Q, ulong R, ulong S,
                    ulong qb, ulong sb, ulong sblocks, ulong nqb, ulong members)
{
    __local float lg[CLNORM_WG], lx[CLNORM_WG];
    ulong g = get_group_id(0);
    if (g >= P * R * nqb * sblocks) /* the whole group leaves: no barrier is skipped */
        return;
    row_block b = row_block_at(g, Q, R, S, qb, sb, sblocks, nqb);
    ulong k = (b.p * R + b.r) / members;
    float m = stat_mean(mean, moff, k), a = invstd[ioff + k];
    ulong width = wg_width(&b);
    float sg = 0.0f, sx = 0.0f;
    if (width == 4) {
        float4 sg4 = (float4)(0.0f), sx4 = (float4)(0.0f);
        for (wg_walk w = wg_walk_begin(&b, R, S, 4); w.j < w.count; wg_walk_next(&w)) {
            float4 d = LOAD4(dy, w.i);
#if PER_ELEMENT_GAMMA
            if (gamma)
                d *= vload4(0, gamma + b.s0 + w.s);
#endif
            sg4 += d;
            sx4 += d * ((HL4(x, skip, w.i) - m) * a);
        }
        sg = hsum4(sg4);
        sx = hsum4(sx4);
    } else {
        for (wg_walk w = wg_walk_begin(&b, R, S, 1); w.j < w.count; wg_walk_next(&w)) {
            float d = LOAD1(dy, w.i);
#if PER_ELEMENT_GAMMA
            if (gamma)
                d *= gamma[b.s0 + w.s];
#endif
            sg += d;
            sx += d * ((HL1(x, skip, w.i) - m) * a);
        }
    }
    uint l = get_local_id(0);
    lg[l] = sg;
    lx[l] = sx;
    wg_sum2(lg, lx);
    if (l == 0) {
        part[2 * b.out] = lg[0];
        part[2 * b.out + 1] = lx[0];
    }
}
#endif

__kernel void bwd_partial_rows(__global const store_t *x, __global const store_t *skip,
                               __global const store_t *dy,
                               __global float *part, __global const float *mean, ulong moff,
                               __global const float *invstd, ulong ioff,
                               __global const float *gamma, ulong P, ulong Q, ulong R, ulong S,
                               ulong qb, ulong sb, ulong sblocks, ulong nqb, ulong members,
                               __global const float *beta, __global const store_t *residual,
                               __global store_t *dzo, int act, float alpha, ulong C)
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
    float m = stat_mean(mean, moff, k), a = invstd[ioff + k];
    /* The epilogue's gradient (act nonzero): dy*act'(z) is what is summed, written to dzo (when
     * given) for the passes after; z's scale and shift per channel (the slice's), or per
     * element. */
    ulong ch;
    divide(p * R + r, C, &ch);
    float zs = PER_ELEMENT_GAMMA || !gamma ? a : a * gamma[ch];
    float zb = PER_ELEMENT_GAMMA || !beta ? 0.0f : beta[ch];

    float8 sg8 = (float8)(0.0f), sx8 = (float8)(0.0f);
    float sg1 = 0.0f, sx1 = 0.0f;
    for (ulong q = q0; q < q1; ++q) {
        ulong base = ((p * Q + q) * R + r) * S;
        ulong s = s0;
        for (; s + 8 <= s1; s += 8) {
            float8 d = LOAD8(dy, base + s), h = HL8(x, skip, base + s);
            if (act) {
#if PER_ELEMENT_GAMMA
                float8 z = (h - m) * (gamma ? a * vload8(0, gamma + s) : (float8)(a)) +
                           (beta ? vload8(0, beta + s) : (float8)(0.0f));
#else
                float8 z = (h - m) * zs + zb;
#endif
                if (residual)
                    z += LOAD8(residual, base + s);
                d *= dact8(z, act, alpha);
                if (dzo)
                    STORE8(d, dzo, base + s);
            }
#if PER_ELEMENT_GAMMA
            if (gamma)
                d *= vload8(0, gamma + s);
#endif
            sg8 += d;
            sx8 += d * ((h - m) * a);
        }
        for (; s < s1; ++s) {
            float d = LOAD1(dy, base + s), h = HL1(x, skip, base + s);
            if (act) {
#if PER_ELEMENT_GAMMA
                float z = (h - m) * (gamma ? a * gamma[s] : a) + (beta ? beta[s] : 0.0f);
#else
                float z = (h - m) * zs + zb;
#endif
                if (residual)
                    z += LOAD1(residual, base + s);
                d *= dact1(z, act, alpha);
                if (dzo)
                    STORE1(d, dzo, base + s);
            }
#if PER_ELEMENT_GAMMA
            if (gamma)
                d *= gamma[s];
#endif
            sg1 += d;
            sx1 += d * ((h - m) * a);
        }
    }
    ulong out = (p * R + r) * nblk + qbi * sblocks + sbi;
    part[2 * out] = hsum8(sg8) + sg1;
    part[2 * out + 1] = hsum8(sx8) + sx1;
}

/* The statistic s[off + (k + j) / members] of eight neighbouring columns k + j. */
inline float8 col_stat8(__global const float *s, ulong off, ulong k, ulong members)
{
    if (members == 1)
        return vload8(0, s + off + k);
    return (float8)(s[off + (k + 0) / members], s[off + (k + 1) / members],
                    s[off + (k + 2) / members], s[off + (k + 3) / members],
                    s[off + (k + 4) / members], s[off + (k + 5) / members],
                    s[off + (k + 6) / members], s[off + (k + 7) / members]);
}

/* Column sums of NT tiles of eight neighbouring columns from x + i0, rows [0, rows) of stride
 * R: sg = sum dy, sd = sum dy*(x - m) per column (invstd enters once, at the end). NT
 * independent chains, and runs of NT*32 contiguous bytes of each row, as the forward's wide
 * tiles read them. */
#define COLS_BWD_FN(NAME, NT)                                                                     \
    inline void NAME(__global const store_t *x, __global const store_t *skip,                 \
                     __global const store_t *dy, ulong i0, ulong stride, ulong rows,              \
                     const float8 *m, const float8 *zs, const float8 *zb,                         \
                     __global const store_t *residual, __global store_t *dzo, int act,            \
                     float alpha, float8 *sg, float8 *sd)                                         \
    {                                                                                             \
        float8 g[NT], d[NT];                                                                      \
        _Pragma("unroll") for (int t = 0; t < NT; ++t) g[t] = d[t] = (float8)(0.0f);              \
        for (ulong i = i0, end = i0 + rows * stride; i < end; i += stride)                        \
            _Pragma("unroll") for (int t = 0; t < NT; ++t)                                        \
            {                                                                                     \
                float8 v = LOAD8(dy, i + 8 * t), h = HL8(x, skip, i + 8 * t);                     \
                if (act) { /* the epilogue's gradient, as in bwd_partial_rows */                  \
                    float8 z = (h - m[t]) * zs[t] + zb[t];                                        \
                    if (residual)                                                                 \
                        z += LOAD8(residual, i + 8 * t);                                          \
                    v *= dact8(z, act, alpha);                                                    \
                    if (dzo)                                                                      \
                        STORE8(v, dzo, i + 8 * t);                                                \
                }                                                                                 \
                g[t] += v;                                                                        \
                d[t] += v * (h - m[t]);                                                           \
            }                                                                                     \
        _Pragma("unroll") for (int t = 0; t < NT; ++t)                                            \
        {                                                                                         \
            sg[t] = g[t];                                                                         \
            sd[t] = d[t];                                                                         \
        }                                                                                         \
    }
COLS_BWD_FN(cols8_bwd, 1)
COLS_BWD_FN(cols32_bwd, 4)
COLS_BWD_FN(cols64_bwd, 8)

#if CLNORM_NARROW
/* Fewer than eight columns: a block of rows is one contiguous run, read in whole vectors whose
 * lanes cycle through the columns (as narrow_stats reads it); m, a: the columns' statistics. */
inline void narrow_bwd(__global const store_t *x, __global const store_t *skip,
                       __global const store_t *dy,
                       __global float *part, ulong i0, ulong rows, ulong out, ulong nqb,
                       const float *m, const float *a)
{
    const int R = CLNORM_NARROW;
    ulong tail0 = i0 + rows / NARROW_RP * NARROW_L, end = i0 + rows * R;
    float8 mv[NARROW_M], g[NARROW_M], d[NARROW_M];
    narrow_spread(m, 0, mv);
    #pragma unroll
    for (int k = 0; k < NARROW_M; ++k)
        g[k] = d[k] = (float8)(0.0f);
    for (ulong i = i0; i < tail0; i += NARROW_L)
        #pragma unroll
        for (int k = 0; k < NARROW_M; ++k) {
            float8 v = LOAD8(dy, i + 8 * k);
            g[k] += v;
            d[k] += v * (HL8(x, skip, i + 8 * k) - mv[k]);
        }
    float sg[CLNORM_NARROW], sd[CLNORM_NARROW];
    #pragma unroll
    for (int c = 0; c < R; ++c)
        sg[c] = sd[c] = 0.0f;
    narrow_fold(g, sg);
    narrow_fold(d, sd);
    for (ulong i = tail0; i < end; i += R)
        #pragma unroll
        for (int c = 0; c < R; ++c) {
            float v = LOAD1(dy, i + c);
            sg[c] += v;
            sd[c] += v * (HL1(x, skip, i + c) - m[c]);
        }
    #pragma unroll
    for (int c = 0; c < R; ++c) {
        part[2 * (out + c * nqb)] = sg[c];
        part[2 * (out + c * nqb) + 1] = sd[c] * a[c];
    }
}
#endif

/* S == 1: slices are columns of a [Q][R] matrix, CLNORM_CT neighbouring columns per work-item
 * (the forward column kernel's tiles), a last narrower tile one column at a time. */
__kernel void bwd_partial_cols(__global const store_t *x, __global const store_t *skip,
                               __global const store_t *dy,
                               __global float *part, __global const float *mean, ulong moff,
                               __global const float *invstd, ulong ioff, ulong P, ulong Q,
                               ulong R, ulong qb, ulong nqb, ulong members,
                               __global const float *gamma, __global const float *beta,
                               __global const store_t *residual, __global store_t *dzo, int act,
                               float alpha)
{
    ulong p, r0, qbi, q0, q1;
    if (!col_tile(P, Q, R, qb, nqb, CLNORM_CT, &p, &r0, &qbi, &q0, &q1))
        return;
    ulong out = (p * R + r0) * nqb + qbi, i0 = (p * Q + q0) * R + r0, k = p * R + r0;
#if CLNORM_NARROW
    if (R == CLNORM_NARROW) {
        float m[CLNORM_NARROW], a[CLNORM_NARROW];
        #pragma unroll
        for (int c = 0; c < CLNORM_NARROW; ++c) {
            m[c] = mean[moff + (k + c) / members];
            a[c] = invstd[ioff + (k + c) / members];
        }
        narrow_bwd(x, skip, dy, part, i0, q1 - q0, out, nqb, m, a);
        return;
    }
#endif
#if CLNORM_CT % 8 == 0
    if (r0 + CLNORM_CT <= R) {
        const int NT = CLNORM_CT / 8;
        float8 m[CLNORM_CT / 8], sg[CLNORM_CT / 8], sd[CLNORM_CT / 8];
        float8 zs[CLNORM_CT / 8], zb[CLNORM_CT / 8]; /* z's scale and shift (columns: channels) */
        #pragma unroll
        for (int t = 0; t < NT; ++t) {
            m[t] = col_stat8(mean, moff, k + 8 * t, members);
            zs[t] = col_stat8(invstd, ioff, k + 8 * t, members) *
                    (gamma ? vload8(0, gamma + r0 + 8 * t) : (float8)(1.0f));
            zb[t] = beta ? vload8(0, beta + r0 + 8 * t) : (float8)(0.0f);
        }
#if CLNORM_CT == 64
        cols64_bwd(x, skip, dy, i0, R, q1 - q0, m, zs, zb, residual, dzo, act, alpha, sg, sd);
#elif CLNORM_CT == 32
        cols32_bwd(x, skip, dy, i0, R, q1 - q0, m, zs, zb, residual, dzo, act, alpha, sg, sd);
#else
        cols8_bwd(x, skip, dy, i0, R, q1 - q0, m, zs, zb, residual, dzo, act, alpha, sg, sd);
#endif
        float lg[CLNORM_CT], ld[CLNORM_CT];
        #pragma unroll
        for (int t = 0; t < NT; ++t) {
            vstore8(sg[t], t, lg);
            vstore8(sd[t] * col_stat8(invstd, ioff, k + 8 * t, members), t, ld);
        }
        for (int j = 0; j < CLNORM_CT; ++j) {
            part[2 * (out + j * nqb)] = lg[j];
            part[2 * (out + j * nqb) + 1] = ld[j];
        }
        return;
    }
#endif
    for (ulong j = 0; r0 + j < R && j < CLNORM_CT; ++j) {
        float m = mean[moff + (k + j) / members], a = invstd[ioff + (k + j) / members];
        float zs = gamma ? a * gamma[r0 + j] : a, zb = beta ? beta[r0 + j] : 0.0f;
        float sg = 0.0f, sd = 0.0f;
        for (ulong q = q0; q < q1; ++q) {
            ulong i = (p * Q + q) * R + r0 + j;
            float d = LOAD1(dy, i), h = HL1(x, skip, i);
            if (act) {
                float z = (h - m) * zs + zb;
                if (residual)
                    z += LOAD1(residual, i);
                d *= dact1(z, act, alpha);
                if (dzo)
                    STORE1(d, dzo, i);
            }
            sg += d;
            sd += d * (h - m);
        }
        part[2 * (out + j * nqb)] = sg;
        part[2 * (out + j * nqb) + 1] = sd * a;
    }
}

/* Adds v into the eight floats at p (first: stores it). */
inline void add8(__global float *p, float8 v, int first)
{
    vstore8(first ? v : vload8(0, p) + v, 0, p);
}

/* One block of bwd_slab: column sums of NT tiles (8*NT columns) at a time from column c,
 * added into the slab's running sums sg[], sd[]; means per column from cm[]. */
#define SLAB_BWD_TILES(FN, NT)                                                                    \
    for (; c + 8 * NT <= R; c += 8 * NT) {                                                        \
        float8 m[NT], g[NT], d[NT];                                                               \
        _Pragma("unroll") for (int t = 0; t < NT; ++t) m[t] = vload8(0, cm + c + 8 * t);          \
        FN(x, skip, dy, i0 + c, R, rows, m, m, m, 0, 0, 0, 0.0f, g, d);                                                      \
        _Pragma("unroll") for (int t = 0; t < NT; ++t)                                            \
        {                                                                                         \
            add8(sg + c + 8 * t, g[t], first);                                                    \
            add8(sd + c + 8 * t, d[t], first);                                                    \
        }                                                                                         \
    }

#if CLNORM_APPLY == 1 && !CLNORM_NARROW
/* Channels-last rows of whole vectors without an activation (ROWS8_WALK, common.clh), the four
 * coefficients of up to 64 channels in registers. */
#define BR_HOLD(tm, k)                                                                            \
    {                                                                                             \
        cm[k] = vload8(k, tm);                                                                    \
        ck[k] = vload8(k, (tm) + T);                                                              \
        cx[k] = vload8(k, (tm) + 2 * T);                                                          \
        c0[k] = vload8(k, (tm) + 3 * T);                                                          \
    }
#define BR_REG(e, k) OUT8(ck[k] * LOAD8(dy, e) + cx[k] * (HL8(x, skip, e) - cm[k]) + c0[k], dx, e);
#define BR_MEM(e, tm, pos)                                                                        \
    OUT8(vload8(0, (tm) + T + (pos)) * LOAD8(dy, e) +                                             \
             vload8(0, (tm) + 2 * T + (pos)) * (HL8(x, skip, e) - vload8(0, (tm) + (pos))) +      \
             vload8(0, (tm) + 3 * T + (pos)),                                                     \
         dx, e);
#ifdef CLNORM_NT_LINE
/* The same where dx is 64-byte aligned and rows are whole lines (C % 16 == 0): tile pairs in
 * float16, one non-temporal store a line (apply_lines). */
#define BL_HOLD(tm, k)                                                                            \
    if (!((k)&1)) {                                                                               \
        lm[(k) / 2] = vload16((k) / 2, tm);                                                       \
        lk[(k) / 2] = vload16((k) / 2, (tm) + T);                                                 \
        lx[(k) / 2] = vload16((k) / 2, (tm) + 2 * T);                                             \
        l0[(k) / 2] = vload16((k) / 2, (tm) + 3 * T);                                             \
    }
#define BL_REG(e, k)                                                                              \
    if (!((k)&1))                                                                                 \
        NT_LINE(lk[(k) / 2] * LOAD16(dy, e) + lx[(k) / 2] * (HL16(x, skip, e) - lm[(k) / 2]) +    \
                    l0[(k) / 2],                                                                  \
                dx, e);
inline void bwd_lines(__global const float *x, __global const float *skip,
                      __global const float *dy, __global float *dx, __global const float *coef,
                      ulong T, ulong tstride, const row_walk *w, ulong rowlen,
                      ulong rows_per_sample)
{
    float16 lm[ROW_VECTORS / 2], lk[ROW_VECTORS / 2], lx[ROW_VECTORS / 2], l0[ROW_VECTORS / 2];
    ROWS8_WALK(w, coef, tstride, rowlen, rows_per_sample, BL_HOLD, BL_REG, BR_MEM)
}
#endif
inline void bwd_rows8(__global const store_t *x, __global const store_t *skip,
                      __global const store_t *dy, __global store_t *dx,
                      __global const float *coef, ulong T, ulong tstride, const row_walk *w,
                      ulong rowlen, ulong rows_per_sample)
{
    float8 cm[ROW_VECTORS], ck[ROW_VECTORS], cx[ROW_VECTORS], c0[ROW_VECTORS];
    ROWS8_WALK(w, coef, tstride, rowlen, rows_per_sample, BR_HOLD, BR_REG, BR_MEM)
}
#endif

/*
 * Channels-last INSTANCE and GROUP on CPUs whose sample fits in a core's cache (the problems
 * of norm_slab): one work-item per sample p and its [Q][R] slab of x and dy, so that x and dy
 * cross memory once. Column sums (sum dy, sum dy*(x - mean)) by blocks of qb rows in the wide
 * tiles, added block after block in order; then per group the coefficients of dx, formed as
 * bwd_finalize forms them; then dx over the slab, re-read from cache. The sample's coefficient
 * entries hold the running sums until then. Each column's sums are left in part as its slice's
 * single partial, for bwd_finalize's dgamma and dbeta.
 */
__kernel void bwd_slab(__global const store_t *x, __global const store_t *skip,
                       __global const store_t *dy,
                       __global store_t *dx, __global float *part, __global const float *mean,
                       ulong moff, __global const float *invstd, ulong ioff,
                       __global const float *gamma, __global float *coef, ulong T, ulong P,
                       ulong Q, ulong R, ulong qb, ulong members)
{
    ulong p = get_global_id(0);
    if (p >= P)
        return;
    ulong base = p * Q * R, k = p * R;
    __global float *cm = coef + k, *cdy = cm + T, *sg = cm + 2 * T, *sd = cm + 3 * T;
    for (ulong c = 0; c < R; c += 8)
        vstore8(col_stat8(mean, moff, k + c, members), 0, cm + c);
    for (ulong q0 = 0; q0 < Q; q0 += qb) {
        ulong rows = min(qb, Q - q0), i0 = base + q0 * R, c = 0;
        int first = q0 == 0;
        SLAB_BWD_TILES(cols64_bwd, 8)
        SLAB_BWD_TILES(cols32_bwd, 4)
        SLAB_BWD_TILES(cols8_bwd, 1)
    }
    float count = (float)(Q * members);
    for (ulong c0 = 0; c0 < R; c0 += members) {
        ulong s = (k + c0) / members;
        float a = invstd[ioff + s], tg = 0.0f, tgx = 0.0f;
        for (ulong c = c0; c < c0 + members; ++c) {
            float g = sg[c], gx = sd[c] * a, w = gamma ? gamma[c] : 1.0f;
            part[2 * (k + c)] = g;
            part[2 * (k + c) + 1] = gx;
            tg += w * g;
            tgx += w * gx;
        }
        for (ulong c = c0; c < c0 + members; ++c) {
            cdy[c] = (gamma ? gamma[c] : 1.0f) * a;
            sg[c] = coef_x(a, tgx, count);
            sd[c] = coef_0(a, tg, count);
        }
    }
#if CLNORM_APPLY == 1 && !CLNORM_NARROW
    /* dx with the coefficients of 64 channels at a time in registers (bwd_apply's walk) */
    row_walk w = {base, base + Q * R, 0, base + Q * R, 0, 0};
#ifdef CLNORM_NT_LINE
    if (R % 16 == 0 && ((ulong)dx & 63) == 0)
        bwd_lines(x, skip, dy, dx, cm, T, 0, &w, R, Q);
    else
#endif
        bwd_rows8(x, skip, dy, dx, cm, T, 0, &w, R, Q);
#else
    for (ulong i = base, end = base + Q * R; i < end; i += R)
        for (ulong c = 0; c < R; c += 8)
            OUT8(vload8(0, cdy + c) * LOAD8(dy, i + c) +
                       vload8(0, sg + c) * (HL8(x, skip, i + c) - vload8(0, cm + c)) +
                       vload8(0, sd + c),
                   dx, i + c);
#endif
    stream_end();
}

/* Under CLNORM_NT_LINE, the part of a run without an activation from dx's first 64-byte
 * boundary, by whole lines (LINES_RUN, as apply's LINES_LOOP), the coefficients of sixteen elements (M16,
 * KDY16, KX16, K016) beside those of eight. */
#ifdef CLNORM_NT_LINE
#define BWD_LINES(M16, KDY16, KX16, K016, M8, KDY8, KX8, K08)                                   \
    LINES_RUN(dx, OUT8((KDY8) * LOAD8(dy, i) + (KX8) * (HL8(x, skip, i) - (M8)) + (K08), dx, i),  \
              NT_LINE((KDY16) * LOAD16(dy, i) + (KX16) * (HL16(x, skip, i) - (M16)) + (K016),   \
                      dx, i))
#else
#define BWD_LINES(M16, KDY16, KX16, K016, M8, KDY8, KX8, K08)
#endif

/* bwd_groups' sums of eight elements from e: sum dy, sum dy*(x - mean) */
#define BWD_SUMS8(e)                                                                              \
    {                                                                                             \
        float8 v = LOAD8(dy, e);                                                                  \
        g8 += v;                                                                                  \
        d8 += v * (HL8(x, skip, e) - m);                                                          \
    }

/*
 * Channels-first groups on CPUs that fit in a core's cache: one work-item per statistics group
 * g, whose cpg channels are slices g*cpg .. g*cpg + cpg - 1. Slice k is nseg segments of D
 * elements, from k*D, segstride apart: INSTANCE and GROUP have one (slice n*C + c, cpg
 * contiguous channels), channels-first BATCH one per sample (slice c, segstride C*D). Per
 * channel the sums (sum dy, sum dy*(x - mean)) in blocks of `block` elements of a segment,
 * added in order; then the group's coefficients, formed as bwd_finalize forms them; then dx
 * over the group, re-read from cache, so that x and dy cross memory once. Each channel's sums
 * are left in part as its slice's single partial, for bwd_finalize's dgamma and dbeta.
 * The sums prefetch x and dy 4 KiB ahead: a channel of 1024 float32 is one page, where the
 * hardware streamer starts over. In-process A/B, two runs cold and two hot, the same bits:
 * GROUP 8x256x1024/32 and 4x320x4096/32 and INSTANCE 8x256x1024 1.03-1.28x faster;
 * channels-first BATCH even.
 */
__kernel void bwd_groups(__global const store_t *x, __global const store_t *skip,
                         __global const store_t *dy,
                         __global store_t *dx, __global float *part, __global const float *mean,
                         ulong moff, __global const float *invstd, ulong ioff,
                         __global const float *gamma, ulong ngroups, ulong C, ulong cpg, ulong D,
                         ulong nseg, ulong segstride, ulong block)
{
    ulong g = get_global_id(0);
    if (g >= ngroups)
        return;
    float m = mean[moff + g], a = invstd[ioff + g];
    ulong k0 = g * cpg, c0;
    divide(k0, C, &c0); /* the group's first channel */
    float tg = 0.0f, tgx = 0.0f;
    for (ulong j = 0; j < cpg; ++j) {
        float sg = 0.0f, sd = 0.0f;
        for (ulong n = 0; n < nseg; ++n) {
            ulong base = (k0 + j) * D + n * segstride;
            for (ulong b0 = 0; b0 < D; b0 += block) {
                ulong i = base + b0, end = base + min(D, b0 + block);
                float8 g8 = (float8)(0.0f), d8 = (float8)(0.0f);
                float g1 = 0.0f, d1 = 0.0f;
                for (; i + 16 <= end; i += 16) {
                    PREFETCH(dy + i + PREFETCH_AHEAD);
                    PREFETCH(x + i + PREFETCH_AHEAD);
                    BWD_SUMS8(i)
                    BWD_SUMS8(i + 8)
                }
                for (; i + 8 <= end; i += 8)
                    BWD_SUMS8(i)
                for (; i < end; ++i) {
                    float v = LOAD1(dy, i);
                    g1 += v;
                    d1 += v * (HL1(x, skip, i) - m);
                }
                sg += hsum8(g8) + g1;
                sd += hsum8(d8) + d1;
            }
        }
        float gx = sd * a, w = gamma ? gamma[c0 + j] : 1.0f;
        part[2 * (k0 + j)] = sg;
        part[2 * (k0 + j) + 1] = gx;
        tg += w * sg;
        tgx += w * gx;
    }
    float count = (float)(cpg * nseg * D);
    float kx = coef_x(a, tgx, count), k1 = coef_0(a, tg, count);
    for (ulong j = 0; j < cpg; ++j) {
        float kdy = (gamma ? gamma[c0 + j] : 1.0f) * a;
        for (ulong n = 0; n < nseg; ++n) {
            ulong i = (k0 + j) * D + n * segstride, end = i + D, stop = end, pos = 0;
            BWD_LINES(m, kdy, kx, k1, m, kdy, kx, k1)
            for (; i + 8 <= end; i += 8)
                OUT8(kdy * LOAD8(dy, i) + kx * (HL8(x, skip, i) - m) + k1, dx, i);
            for (; i < end; ++i)
                STORE1(kdy * LOAD1(dy, i) + kx * (HL1(x, skip, i) - m) + k1, dx, i);
        }
    }
    stream_end();
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

/* clnorm_backward_sums: each slice's nblk partials summed in order, (sum dy*gw, sum dy*gw*xh)
 * per slice into sums, where the merged sums of every part come back for bwd_finalize. */
__kernel void bwd_slice_sums(__global const float *part, ulong nblk, ulong nslices,
                             __global float *sums)
{
    ulong j = get_global_id(0);
    if (j >= nslices)
        return;
    float2 s = slice_sums(part, j, nblk);
    sums[2 * j] = s.x;
    sums[2 * j + 1] = s.y;
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
    float m = stat_mean(mean, moff, j), a = invstd[ioff + j];
    coef[j] = m;
    coef[T + j] = a;
    coef[2 * T + j] = constant_stats ? 0.0f : coef_x(a, s.y, count);
    coef[3 * T + j] = constant_stats || !mean ? 0.0f : coef_0(a, s.x, count);
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
            coef[2 * T + e] = constant_stats ? 0.0f : coef_x(a, sgx, count);
            coef[3 * T + e] = constant_stats ? 0.0f : coef_0(a, sg, count);
        }
    }
#endif
}

/* LAYER/RMS dgamma, dbeta: column sums over the N samples of the [N][L] matrix, CLNORM_RT
 * columns and qb samples per work-item; partials (sum dy, sum dy*xh) per (column, block), or,
 * with a single block (part NULL), dbeta and dgamma themselves. */
__kernel void bwd_param_partial(__global const store_t *x, __global const store_t *skip,
                                __global const store_t *dy,
                                __global float *part, __global const float *mean, ulong moff,
                                __global const float *invstd, ulong ioff, ulong N, ulong L,
                                ulong qb, ulong nqb, __global float *dgamma,
                                __global float *dbeta)
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
            float m = stat_mean(mean, moff, n), a = invstd[ioff + n];
            float8 d = LOAD8(dy, n * L + c0);
            sb += d;
            sgm += d * ((HL8(x, skip, n * L + c0) - m) * a);
        }
        if (!part) {
            if (dbeta)
                vstore8(sb, 0, dbeta + c0);
            if (dgamma)
                vstore8(sgm, 0, dgamma + c0);
            return;
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
            float m = stat_mean(mean, moff, n), a = invstd[ioff + n];
            float d = LOAD1(dy, n * L + c);
            sb += d;
            sgm += d * ((HL1(x, skip, n * L + c) - m) * a);
        }
        if (part) {
            part[2 * (c * nqb + qbi)] = sb;
            part[2 * (c * nqb + qbi) + 1] = sgm;
        } else {
            if (dbeta)
                dbeta[c] = sb;
            if (dgamma)
                dgamma[c] = sgm;
        }
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

/* dx = k_dy*dy + k_x*(x - mean) + k_0, walking chunks and rows as apply does (row_walk). With
 * act nonzero, dy*act'(z) in place of dy, z recomputed: (h - mean) * k_dy + beta (+ residual),
 * k_dy being gamma*invstd (B8, B1: beta). */
#define BWD_LOOP(M16, KDY16, KX16, K016, M8, KDY8, KX8, K08, M1, KDY1, KX1, K01, B8, B1)         \
    if (act) {                                                                                    \
        for (; i + 8 <= stop; i += 8, pos += 8) {                                                 \
            float8 h = HL8(x, skip, i), z = (h - (M8)) * (KDY8) + (B8);                           \
            if (residual)                                                                         \
                z += LOAD8(residual, i);                                                          \
            float8 g = LOAD8(dy, i) * dact8(z, act, alpha);                                       \
            OUT8((KDY8) * g + (KX8) * (h - (M8)) + (K08), dx, i);                               \
        }                                                                                         \
        for (; i < stop; ++i, ++pos) {                                                            \
            float h = HL1(x, skip, i), z = (h - (M1)) * (KDY1) + (B1);                            \
            if (residual)                                                                         \
                z += LOAD1(residual, i);                                                          \
            float g = LOAD1(dy, i) * dact1(z, act, alpha);                                        \
            STORE1((KDY1) * g + (KX1) * (h - (M1)) + (K01), dx, i);                               \
        }                                                                                         \
    } else {                                                                                      \
        BWD_LINES(M16, KDY16, KX16, K016, M8, KDY8, KX8, K08)                                     \
        for (; i + 8 <= stop; i += 8, pos += 8)                                                   \
            OUT8((KDY8) * LOAD8(dy, i) + (KX8) * (HL8(x, skip, i) - (M8)) + (K08), dx, i);      \
        for (; i < stop; ++i, ++pos)                                                              \
            STORE1((KDY1) * LOAD1(dy, i) + (KX1) * (HL1(x, skip, i) - (M1)) + (K01), dx, i);      \
    }

__kernel void bwd_apply(__global const store_t *x, __global const store_t *skip,
                        __global const store_t *dy,
                        __global store_t *dx, __global const float *coef, ulong T,
                        __global const float *gamma, ulong total, ulong rowlen,
                        ulong rows_per_sample, ulong tstride, ulong chunk,
                        __global const float *beta, __global const store_t *residual, int act,
                        float alpha)
{
    row_walk w;
    if (!walk_begin(&w, chunk, total, rowlen, rows_per_sample))
        return;
#if CLNORM_APPLY == 1 && !CLNORM_NARROW
#ifdef CLNORM_NT_LINE
    if (!act && rowlen % 16 == 0 && ((ulong)dx & 63) == 0) {
        bwd_lines(x, skip, dy, dx, coef, T, tstride, &w, rowlen, rows_per_sample);
        stream_end();
        return;
    }
#endif
    if (!act && rowlen % 8 == 0) {
        bwd_rows8(x, skip, dy, dx, coef, T, tstride, &w, rowlen, rows_per_sample);
        stream_end();
        return;
    }
#endif
    do {
        ulong i = w.i, pos = w.pos, stop = w.stop, n = w.n;
#if CLNORM_APPLY == 0
        ulong t = n * tstride + w.rs;
        float m = coef[t], kdy = coef[T + t], kx = coef[2 * T + t], k0 = coef[3 * T + t];
        float b = act && beta ? beta[w.rs] : 0.0f;
        BWD_LOOP(m, kdy, kx, k0, m, kdy, kx, k0, m, kdy, kx, k0, b, b)
#elif CLNORM_APPLY == 1 && CLNORM_NARROW
        /* Fewer than eight channels: a row is a whole sample, as in apply. */
        __global const float *tm = coef + n * tstride;
        ulong c0;
        divide(pos, CLNORM_NARROW, &c0);
        float cm[CLNORM_NARROW], cdy[CLNORM_NARROW], cx[CLNORM_NARROW], c1[CLNORM_NARROW];
        float8 vm[NARROW_M], vdy[NARROW_M], vx[NARROW_M], v1[NARROW_M];
        narrow_consts(tm, (int)c0, cm, vm);
        narrow_consts(tm + T, (int)c0, cdy, vdy);
        narrow_consts(tm + 2 * T, (int)c0, cx, vx);
        narrow_consts(tm + 3 * T, (int)c0, c1, v1);
        for (; i + NARROW_L <= stop; i += NARROW_L)
            #pragma unroll
            for (int k = 0; k < NARROW_M; ++k) {
                ulong e = i + 8 * k;
                OUT8(vdy[k] * LOAD8(dy, e) + vx[k] * (HL8(x, skip, e) - vm[k]) + v1[k], dx, e);
            }
        for (int c = (int)c0; i < stop; ++i, c = c + 1 == CLNORM_NARROW ? 0 : c + 1)
            STORE1(cdy[c] * LOAD1(dy, i) + cx[c] * (HL1(x, skip, i) - cm[c]) + c1[c], dx, i);
#elif CLNORM_APPLY == 1
        __global const float *tm = coef + n * tstride;
        BWD_LOOP(vload16(0, tm + pos), vload16(0, tm + T + pos), vload16(0, tm + 2 * T + pos),
                 vload16(0, tm + 3 * T + pos), vload8(0, tm + pos), vload8(0, tm + T + pos),
                 vload8(0, tm + 2 * T + pos), vload8(0, tm + 3 * T + pos), tm[pos], tm[T + pos],
                 tm[2 * T + pos],
                 tm[3 * T + pos], act && beta ? vload8(0, beta + pos) : (float8)(0.0f),
                 act && beta ? beta[pos] : 0.0f)
#else
        float m = coef[n], a = coef[T + n], kx = coef[2 * T + n], k0 = coef[3 * T + n];
        if (gamma) {
            BWD_LOOP(m, a * vload16(0, gamma + pos), kx, k0, m, a * vload8(0, gamma + pos), kx,
                     k0, m, a * gamma[pos], kx, k0,
                     act && beta ? vload8(0, beta + pos) : (float8)(0.0f),
                     act && beta ? beta[pos] : 0.0f)
        } else {
            BWD_LOOP(m, a, kx, k0, m, a, kx, k0, m, a, kx, k0,
                     act && beta ? vload8(0, beta + pos) : (float8)(0.0f),
                     act && beta ? beta[pos] : 0.0f)
        }
#endif
    } while (walk_next(&w, rowlen, rows_per_sample));
    stream_end();
}

/* One step (eight elements at c, or one) of bwd_rows' sums over a row (xr, dyr, sr): dy and
 * dy*xh into the work-item's parameter partials (first: the item's first row, which sets
 * them), g = dy*gamma and g*xh into the row's sums. */
#define ROW_SUMS8(xr, dyr, sr, m, a, first, c)                                                    \
    {                                                                                             \
        float8 d = LOAD8(dyr, c), xh = (HL8(xr, sr, c) - (m)) * (a);                              \
        if (want_params) {                                                                        \
            float8 pb = (first) ? d : vload8(0, pdb + (c)) + d;                                   \
            float8 pg = (first) ? d * xh : vload8(0, pdg + (c)) + d * xh;                         \
            vstore8(pb, 0, pdb + (c));                                                            \
            vstore8(pg, 0, pdg + (c));                                                            \
        }                                                                                         \
        if (gamma)                                                                                \
            d *= vload8(0, gamma + (c));                                                          \
        g8 += d;                                                                                  \
        gx8 += d * xh;                                                                            \
    }
#define ROW_SUMS1(xr, dyr, sr, m, a, first, c)                                                    \
    {                                                                                             \
        float d = LOAD1(dyr, c), xh = (HL1(xr, sr, c) - (m)) * (a);                               \
        if (want_params) {                                                                        \
            pdb[c] = (first) ? d : pdb[c] + d;                                                    \
            pdg[c] = (first) ? d * xh : pdg[c] + d * xh;                                          \
        }                                                                                         \
        if (gamma)                                                                                \
            d *= gamma[c];                                                                        \
        g1 += d;                                                                                  \
        gx1 += d * xh;                                                                            \
    }
/* dx of one step of a row, from its coefficients (a, kx, k0) and mean m */
#define ROW_DX8(c)                                                                                \
    OUT8((gamma ? a * vload8(0, gamma + (c)) : (float8)(a)) * LOAD8(dyr, c) +                     \
             kx * (HL8(xr, sr, c) - m) + k0,                                                      \
         dxr, c);
#ifdef CLNORM_NT_LINE
/* The same for sixteen elements as one line of dx (64-byte aligned) */
#define ROW_DX16(c)                                                                               \
    NT_LINE((gamma ? a * vload16(0, gamma + (c)) : (float16)(a)) * LOAD16(dyr, c) +               \
                kx * (HL16(xr, sr, c) - m) + k0,                                                  \
            dxr, c);
#endif
#define ROW_DX1(c)                                                                                \
    STORE1((gamma ? a * gamma[c] : a) * LOAD1(dyr, c) + kx * (HL1(xr, sr, c) - m) + k0, dxr, c);

/*
 * LAYER/RMS on CPUs, rows that fit in cache: one work-item takes rows_per_item whole rows. For
 * each row it sums g = dy*gamma and g*xh in blocks of `block` elements (merged in order, as
 * the partial kernels do), adds dy and dy*xh into its own slice of parameter partials
 * ppart[item] = [dbeta L | dgamma L], then writes dx from the row still in cache: x and dy
 * cross memory once. bwd_rows_param_finalize sums the items' slices in order.
 * Rows of one block are pipelined: row n+1's sums run inside row n's dx loop, in the same
 * order, so that its reads from memory overlap row n's stores and the results are the same
 * bits; the loop prefetches 4 KiB ahead (rows of a page each stop the hardware's streamer) and
 * stores dx by whole lines where it streams. In-process A/B against neither, old time over new
 * (2-core PoCL machine): LAYER 4096x1024 1.12-1.19 cold and 1.49 hot, RMS 1.02-1.12 and 1.12,
 * LAYER 512x4096 1.18-1.67 and 1.18; against the prefetch alone 1.03-1.21 (one run 0.74).
 */
__kernel void bwd_rows(__global const store_t *x, __global const store_t *skip,
                       __global const store_t *dy,
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
    if (L <= block && want_dx && n1 - n0 > 1) {
        ulong n = n0;
        float m = stat_mean(mean, moff, n), a = invstd[ioff + n];
        __global const store_t *xr = x + n * L, *dyr = dy + n * L;
        __global const store_t *sr = skip ? skip + n * L : 0;
        float8 g8 = (float8)(0.0f), gx8 = (float8)(0.0f);
        float g1 = 0.0f, gx1 = 0.0f;
        ulong c = 0;
        for (; c + 8 <= L; c += 8)
            ROW_SUMS8(xr, dyr, sr, m, a, 1, c)
        for (; c < L; ++c)
            ROW_SUMS1(xr, dyr, sr, m, a, 1, c)
        for (;; ++n) {
            float sg = 0.0f, sgx = 0.0f;
            sg += hsum8(g8) + g1;
            sgx += hsum8(gx8) + gx1;
            float kx = coef_x(a, sgx, count);
            float k0 = mean ? coef_0(a, sg, count) : 0.0f;
            __global store_t *dxr = dx + n * L;
            if (n + 1 == n1) {
                for (c = 0; c + 8 <= L; c += 8)
                    ROW_DX8(c)
                for (; c < L; ++c)
                    ROW_DX1(c)
                break;
            }
            float mn = stat_mean(mean, moff, n + 1), an = invstd[ioff + n + 1];
            __global const store_t *xn = xr + L, *dyn = dyr + L, *sn = sr ? sr + L : 0;
            g8 = gx8 = (float8)(0.0f);
            g1 = gx1 = 0.0f;
            c = 0;
#ifdef CLNORM_NT_LINE
            if (!((ulong)dxr & 63))
                for (; c + 16 <= L; c += 16) {
                    PREFETCH(xn + c + PREFETCH_AHEAD);
                    PREFETCH(dyn + c + PREFETCH_AHEAD);
                    ROW_SUMS8(xn, dyn, sn, mn, an, 0, c)
                    ROW_SUMS8(xn, dyn, sn, mn, an, 0, c + 8)
                    ROW_DX16(c)
                }
#endif
            for (; c + 8 <= L; c += 8) {
                if (!(c & 15)) {
                    PREFETCH(xn + c + PREFETCH_AHEAD);
                    PREFETCH(dyn + c + PREFETCH_AHEAD);
                }
                ROW_SUMS8(xn, dyn, sn, mn, an, 0, c)
                ROW_DX8(c)
            }
            for (; c < L; ++c) {
                ROW_SUMS1(xn, dyn, sn, mn, an, 0, c)
                ROW_DX1(c)
            }
            m = mn;
            a = an;
            xr = xn;
            dyr = dyn;
            sr = sn;
        }
        stream_end();
        return;
    }
    for (ulong n = n0; n < n1; ++n) {
        float m = stat_mean(mean, moff, n), a = invstd[ioff + n];
        __global const store_t *xr = x + n * L, *dyr = dy + n * L;
        __global const store_t *sr = skip ? skip + n * L : 0;
        int first = n == n0;
        float sg = 0.0f, sgx = 0.0f;
        for (ulong b0 = 0; b0 < L; b0 += block) {
            ulong b1 = min(L, b0 + block), c = b0;
            float8 g8 = (float8)(0.0f), gx8 = (float8)(0.0f);
            float g1 = 0.0f, gx1 = 0.0f;
            for (; c + 8 <= b1; c += 8)
                ROW_SUMS8(xr, dyr, sr, m, a, first, c)
            for (; c < b1; ++c)
                ROW_SUMS1(xr, dyr, sr, m, a, first, c)
            sg += hsum8(g8) + g1;
            sgx += hsum8(gx8) + gx1;
        }
        if (!want_dx)
            continue;
        float kx = coef_x(a, sgx, count);
        float k0 = mean ? coef_0(a, sg, count) : 0.0f;
        __global store_t *dxr = dx + n * L;
        ulong c = 0;
        for (; c + 8 <= L; c += 8)
            ROW_DX8(c)
        for (; c < L; ++c)
            ROW_DX1(c)
    }
    stream_end();
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

/*
 * The epilogue's gradient (DESIGN.md section 11), before the passes above: dz = dy * act'(z),
 * z = (h - mean) * invstd * gamma + beta + residual recomputed from h = x + skip, written to dz
 * (the caller's dresidual, or the plan's scratch), which the passes then read as their dy.
 * Walks chunks and rows as bwd_apply does, eight elements at a time with their constants:
 * channels-first rows are one (n, c), one statistics group; channels-last rows one (n, d) of C
 * channels, channel c of sample n in statistics group (n*nc + c) / cpg (BATCH: nc 0, cpg 1;
 * INSTANCE: nc C, cpg 1; GROUP: nc C, cpg C/G), whose narrow rows (whole samples) go one
 * element at a time; LAYER and RMS rows are samples, parameters per element.
 */
#define EPI_GRAD8(M, S, B)                                                                        \
    {                                                                                             \
        float8 z = (HL8(x, skip, i) - (M)) * (S) + (B);                                           \
        if (residual)                                                                             \
            z += LOAD8(residual, i);                                                              \
        STORE8(LOAD8(dy, i) * dact8(z, act, alpha), dz, i);                                       \
    }
#define EPI_GRAD1(M, S, B)                                                                        \
    {                                                                                             \
        float z = (HL1(x, skip, i) - (M)) * (S) + (B);                                            \
        if (residual)                                                                             \
            z += LOAD1(residual, i);                                                              \
        STORE1(LOAD1(dy, i) * dact1(z, act, alpha), dz, i);                                       \
    }

__kernel void bwd_epilogue(__global const store_t *x, __global const store_t *skip,
                           __global const store_t *residual, __global const store_t *dy,
                           __global store_t *dz, __global const float *mean, ulong moff,
                           __global const float *invstd, ulong ioff, __global const float *gamma,
                           __global const float *beta, ulong total, ulong rowlen,
                           ulong rows_per_sample, ulong chunk, ulong C, ulong nc, ulong cpg,
                           int act, float alpha)
{
    row_walk w;
    if (!walk_begin(&w, chunk, total, rowlen, rows_per_sample))
        return;
    do {
        ulong i = w.i, pos = w.pos, stop = w.stop, n = w.n;
#if CLNORM_APPLY == 0
        ulong k = (n * nc + w.rs) / cpg;
        float m = stat_mean(mean, moff, k), a = invstd[ioff + k];
        float s = gamma ? a * gamma[w.rs] : a, b = beta ? beta[w.rs] : 0.0f;
        for (; i + 8 <= stop; i += 8)
            EPI_GRAD8(m, s, b)
        for (; i < stop; ++i)
            EPI_GRAD1(m, s, b)
#elif CLNORM_APPLY == 1
        ulong c;
        divide(pos, C, &c);
        for (; !CLNORM_NARROW && i + 8 <= stop; i += 8, c += 8) {
            ulong k = n * nc + c;
            float8 g8 = gamma ? vload8(0, gamma + c) : (float8)(1.0f);
            float8 b8 = beta ? vload8(0, beta + c) : (float8)(0.0f);
            EPI_GRAD8(col_stat8(mean, moff, k, cpg), col_stat8(invstd, ioff, k, cpg) * g8, b8)
        }
        for (; i < stop; ++i, c = c + 1 == C ? 0 : c + 1) {
            ulong k = (n * nc + c) / cpg;
            float a = invstd[ioff + k];
            EPI_GRAD1(stat_mean(mean, moff, k), gamma ? a * gamma[c] : a, beta ? beta[c] : 0.0f)
        }
#else
        float m = stat_mean(mean, moff, n), a = invstd[ioff + n];
        for (; i + 8 <= stop; i += 8, pos += 8)
            EPI_GRAD8(m, gamma ? a * vload8(0, gamma + pos) : (float8)(a),
                      beta ? vload8(0, beta + pos) : (float8)(0.0f))
        for (; i < stop; ++i, ++pos)
            EPI_GRAD1(m, gamma ? a * gamma[pos] : a, beta ? beta[pos] : 0.0f)
#endif
    } while (walk_next(&w, rowlen, rows_per_sample));
}
