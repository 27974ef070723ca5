/*
 * Statistics as a result: a problem cut into parts (along n, as ranks split a batch, or along
 * d, as tiles split an image), normalized part by part with moments merged over every part,
 * and differentiated with merged sums, equals the float64 reference of the whole problem;
 * what every part computes from the merged statistics (save_*, running statistics, BATCH's
 * dgamma and dbeta) is the same bits in every part, including a part with n = 0.
 */
#include "harness.h"
#include "reference.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARTS 4

typedef struct scase {
    clnorm_desc whole;
    int along_d;                /* cut along d (tiles), else along n (ranks) */
    size_t sizes[MAX_PARTS];    /* n or d of each part */
    int nparts;
    clnorm_mode mode;
    int running;                /* running statistics given (BATCH, INSTANCE) */
    double offset;
    uint64_t seed;
} scase;

static scase *cases;
static int ncases;

static const char *case_name(const scase *sc, char *buf, size_t size)
{
    static const char *const kinds[] = {"BATCH", "LAYER", "INSTANCE", "GROUP", "RMS"};
    static const char *const types[] = {"f32", "f16", "bf16"};
    const clnorm_desc *d = &sc->whole;
    int n = snprintf(buf, size, "%s/%zu %s %s %s%s %zux%zux%zu offset %g, along %s:", kinds[d->kind],
                     d->groups, d->layout ? "NHWC" : "NCHW", types[d->dtype],
                     sc->mode ? "INFERENCE" : "TRAINING", sc->running ? " running" : "", d->n,
                     d->c, d->d, sc->offset, sc->along_d ? "d" : "n");
    for (int p = 0; p < sc->nparts && n > 0 && (size_t)n < size; ++p)
        n += snprintf(buf + n, size - (size_t)n, " %zu", sc->sizes[p]);
    return buf;
}

/* Element (n, c, d) of part p sits at (n + n0, c, d + d0) of the whole. */
static void part_desc(const scase *sc, int p, clnorm_desc *out, size_t *n0, size_t *d0)
{
    *out = sc->whole;
    *n0 = *d0 = 0;
    for (int q = 0; q < p; ++q)
        *(sc->along_d ? d0 : n0) += sc->sizes[q];
    if (sc->along_d)
        out->d = sc->sizes[p];
    else
        out->n = sc->sizes[p];
}

/* Copies elements (bytes es each) between the whole tensor and part p: to_part or back. */
static void move(const scase *sc, const clnorm_desc *pd, size_t n0, size_t d0, size_t es,
                 unsigned char *whole, unsigned char *part, int to_part)
{
    for (size_t n = 0; n < pd->n; ++n)
        for (size_t c = 0; c < pd->c; ++c)
            for (size_t d = 0; d < pd->d; ++d) {
                unsigned char *w = whole + es * ref_offset(&sc->whole, n + n0, c, d + d0);
                unsigned char *q = part + es * ref_offset(pd, n, c, d);
                memcpy(to_part ? q : w, to_part ? w : q, es);
            }
}

/* The same for per-element parameters (LAYER, RMS: one sample's C*D). */
static void move_params(const scase *sc, const clnorm_desc *pd, size_t d0, float *whole,
                        float *part, int to_part)
{
    for (size_t c = 0; c < pd->c; ++c)
        for (size_t d = 0; d < pd->d; ++d) {
            float *w = whole + ref_param(&sc->whole, 0, c, d + d0);
            float *q = part + ref_param(pd, 0, c, d);
            *(to_part ? q : w) = *(to_part ? w : q);
        }
}

static double norm2(const double *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; ++i)
        s += v[i] * v[i];
    return sqrt(s);
}

static double rel_l2(const double *got, const double *want, size_t n)
{
    double e = 0;
    for (size_t i = 0; i < n; ++i)
        e += (got[i] - want[i]) * (got[i] - want[i]);
    double den = norm2(want, n);
    return den > 0 ? sqrt(e) / den : sqrt(e);
}

static void wait_release(cl_event ev)
{
    CL_OK(clWaitForEvents(1, &ev));
    clReleaseEvent(ev);
}

typedef struct part {
    clnorm_desc desc;
    size_t n0, d0, elements, groups, slices;
    clnorm_plan *plan;
    clnorm_buffers b;
    cl_mem moments, sums;
    float *gamma;
} part;

static void check_split(const scase *sc)
{
    clnorm_context *ctx = harness_ctx();
    const clnorm_desc *wd = &sc->whole;
    char name[256];
    case_name(sc, name, sizeof name);
    int per_sample = wd->kind == CLNORM_LAYER || wd->kind == CLNORM_RMS;
    size_t total = wd->n * wd->c * wd->d, np = ref_params(wd), G = ref_groups(wd);
    size_t es = ref_storage_size(wd->dtype);
    float *xf = malloc(total * 4), *dyf = malloc(total * 4), *gamma = malloc(np * 4);
    float *beta = malloc(np * 4), *rm = malloc(wd->c * 4), *rv = malloc(wd->c * 4);
    unsigned char *xs = malloc(total * es), *dys = malloc(total * es);
    unsigned char *ys = malloc(total * es), *dxs = malloc(total * es);
    double *xd = malloc(total * 8), *dyd = malloc(total * 8), *yd = malloc(total * 8);
    double *want_y = malloc(total * 8), *want_dx = malloc(total * 8), *got = malloc(total * 8);
    double *mean = malloc(G * 8), *inv = malloc(G * 8), *rmw = malloc(wd->c * 8);
    double *rvw = malloc(wd->c * 8), *want_dg = malloc(np * 8), *want_db = malloc(np * 8);
    double *scale = malloc(total * 8);
    harness_rng rng = {sc->seed};
    for (size_t i = 0; i < total; ++i) {
        xf[i] = (float)(sc->offset + harness_normal(&rng));
        dyf[i] = (float)harness_normal(&rng);
    }
    for (size_t i = 0; i < np; ++i) {
        gamma[i] = (float)(0.5 + harness_uniform(&rng));
        beta[i] = (float)harness_normal(&rng);
    }
    for (size_t c = 0; c < wd->c; ++c) {
        rm[c] = (float)(sc->offset + 0.1 * harness_normal(&rng));
        rv[c] = (float)(0.5 + harness_uniform(&rng));
    }
    ref_store(wd->dtype, xf, xs, total);
    ref_store(wd->dtype, dyf, dys, total);
    ref_load(wd->dtype, xs, xd, total);
    ref_load(wd->dtype, dys, dyd, total);
    /* The moments take the place of the batch's statistics in both modes; only TRAINING
     * updates the running ones. */
    int update = sc->running && sc->mode == CLNORM_TRAINING;
    ref_inputs in = {xd, gamma, beta, update ? rm : NULL, update ? rv : NULL, dyd};
    ref_outputs fo = {want_y, mean, inv, rmw, rvw, NULL, NULL, scale};
    ck_assert_int_eq(ref_forward(wd, CLNORM_TRAINING, &in, &fo), 0);
    ref_outputs bo = {want_dx, NULL, NULL, NULL, NULL, want_dg, want_db, NULL};
    ck_assert_int_eq(ref_backward(wd, CLNORM_TRAINING, &in, &bo), 0);

    /* Forward: moments per part, merged in part order, then each part normalized. */
    part parts[MAX_PARTS];
    memset(parts, 0, sizeof parts);
    float *sets = malloc(sizeof(float) * 3 * (G + 1) * MAX_PARTS);
    for (int p = 0; p < sc->nparts; ++p) {
        part *pt = &parts[p];
        part_desc(sc, p, &pt->desc, &pt->n0, &pt->d0);
        CLNORM_OK(ctx, clnorm_plan_create(ctx, &pt->desc, &pt->plan));
        pt->elements = pt->desc.n * pt->desc.c * pt->desc.d;
        pt->groups = clnorm_plan_stats_count(pt->plan);
        pt->slices = clnorm_plan_sums_count(pt->plan);
        unsigned char *tmp = malloc(pt->elements * es + 1);
        move(sc, &pt->desc, pt->n0, pt->d0, es, xs, tmp, 1);
        pt->b.x = harness_buffer(tmp, pt->elements * es + 1);
        move(sc, &pt->desc, pt->n0, pt->d0, es, dys, tmp, 1);
        pt->b.dy = harness_buffer(tmp, pt->elements * es + 1);
        free(tmp);
        pt->b.y = harness_buffer(NULL, pt->elements * es + 1);
        pt->b.dx = harness_buffer(NULL, pt->elements * es + 1);
        size_t pnp = ref_params(&pt->desc);
        pt->gamma = malloc(pnp * 4 + 4);
        float *pbeta = malloc(pnp * 4 + 4);
        if (per_sample) {
            move_params(sc, &pt->desc, pt->d0, gamma, pt->gamma, 1);
            move_params(sc, &pt->desc, pt->d0, beta, pbeta, 1);
        } else {
            memcpy(pt->gamma, gamma, pnp * 4);
            memcpy(pbeta, beta, pnp * 4);
        }
        pt->b.gamma = harness_buffer(pt->gamma, pnp * 4);
        pt->b.beta = harness_buffer(pbeta, pnp * 4);
        free(pbeta);
        pt->b.dgamma = harness_buffer(NULL, pnp * 4);
        pt->b.dbeta = harness_buffer(NULL, pnp * 4);
        if (sc->running) {
            pt->b.running_mean = harness_buffer(rm, wd->c * 4);
            pt->b.running_var = harness_buffer(rv, wd->c * 4);
        }
        pt->b.save_mean = harness_buffer(NULL, (pt->groups + 1) * 4);
        pt->b.save_invstd = harness_buffer(NULL, (pt->groups + 1) * 4);
        pt->moments = harness_buffer(NULL, (pt->groups * 3 + 1) * 4);
        pt->sums = harness_buffer(NULL, (pt->slices * 2 + 1) * 4);
        cl_event ev;
        CLNORM_OK(ctx, clnorm_moments(pt->plan, pt->b.x, pt->moments, 0, NULL, &ev));
        wait_release(ev);
        /* parts along d share every kind's groups; along n BATCH's */
        ck_assert_msg(pt->groups == G || (!sc->along_d && pt->desc.n == 0 &&
                                          wd->kind != CLNORM_BATCH),
                      "%s: part %d has %zu groups", name, p, pt->groups);
        if (pt->groups)
            harness_read(pt->moments, sets + (size_t)p * 3 * G, pt->groups * 3 * 4);
        else
            memset(sets + (size_t)p * 3 * G, 0, G * 3 * 4);
        /* each part's counts: its own elements per group */
        for (size_t g = 0; g < pt->groups; ++g)
            ck_assert_msg(sets[(size_t)p * 3 * G + 3 * g] ==
                              (float)(pt->elements / (pt->groups ? pt->groups : 1)),
                          "%s: part %d group %zu count %g", name, p, g,
                          (double)sets[(size_t)p * 3 * G + 3 * g]);
    }
    float *merged = malloc(3 * G * 4 + 4);
    clnorm_moments_merge(sets, (size_t)sc->nparts, G, merged);
    for (size_t g = 0; g < G; ++g)
        ck_assert_msg(merged[3 * g] == (float)(total / G), "%s: merged count %g", name,
                      (double)merged[3 * g]);
    cl_mem merged_buf = harness_buffer(merged, 3 * G * 4);
    for (int p = 0; p < sc->nparts; ++p) {
        part *pt = &parts[p];
        cl_event ev;
        CLNORM_OK(ctx, clnorm_forward_with_moments(pt->plan, sc->mode, merged_buf, &pt->b, 0,
                                                   NULL, &ev));
        wait_release(ev);
        unsigned char *tmp = malloc(pt->elements * es + 1);
        harness_read(pt->b.y, tmp, pt->elements * es);
        move(sc, &pt->desc, pt->n0, pt->d0, es, ys, tmp, 0);
        free(tmp);
    }
    ref_load(wd->dtype, ys, yd, total);
    double u = ref_unit_roundoff(wd->dtype);
    for (size_t i = 0; i < total; ++i) {
        double tol = 32 * ldexp(1, -23) * (fabs(xd[i]) + fabs(sc->offset) + 4) * scale[i] +
                     2 * u * fabs(want_y[i]) + 1e-6;
        ck_assert_msg(fabs(yd[i] - want_y[i]) <= tol, "%s: y[%zu] = %.9g, want %.9g", name, i,
                      yd[i], want_y[i]);
    }
    /* save_* and running statistics: the reference's, and the same bits in every part */
    float *first = malloc((G + 1) * 4 * 4), *other = malloc((G + 1) * 4 * 4);
    for (int p = 0; p < sc->nparts; ++p) {
        part *pt = &parts[p];
        if (pt->groups != G)
            continue;
        float *f = p == 0 ? first : other;
        harness_read(pt->b.save_mean, f, G * 4);
        harness_read(pt->b.save_invstd, f + G, G * 4);
        size_t nf = 2 * G;
        if (sc->running) {
            harness_read(pt->b.running_mean, f + nf, wd->c * 4);
            harness_read(pt->b.running_var, f + nf + wd->c, wd->c * 4);
            nf += 2 * wd->c;
        }
        if (p > 0)
            ck_assert_msg(memcmp(first, other, nf * 4) == 0,
                          "%s: part %d's save_* or running statistics differ from part 0's",
                          name, p);
        for (size_t g = 0; g < G; ++g) {
            double sd = 1 / inv[g];
            if (wd->kind != CLNORM_RMS)
                ck_assert_msg(fabs(f[g] - mean[g]) <= 1e-6 * (fabs(mean[g]) + sd),
                              "%s: save_mean[%zu] = %.9g, want %.9g", name, g, (double)f[g],
                              mean[g]);
            ck_assert_msg(fabs(f[G + g] - inv[g]) <= 2e-5 * inv[g],
                          "%s: save_invstd[%zu] = %.9g, want %.9g", name, g, (double)f[G + g],
                          inv[g]);
        }
        for (size_t c = 0; c < wd->c && sc->running; ++c) {
            double want_m = update ? rmw[c] : rm[c], want_v = update ? rvw[c] : rv[c];
            ck_assert_msg(fabs(f[2 * G + c] - want_m) <= 1e-6 * (fabs(want_m) + 1) &&
                              fabs(f[2 * G + wd->c + c] - want_v) <= 1e-4 * want_v,
                          "%s: running statistics of channel %zu: %.9g %.9g, want %.9g %.9g",
                          name, c, (double)f[2 * G + c], (double)f[2 * G + wd->c + c], want_m,
                          want_v);
        }
    }

    /* Backward (TRAINING, through the merged statistics): sums, merged, then each part. */
    size_t S = 0;
    for (int p = 0; p < sc->nparts; ++p)
        if (parts[p].slices > S)
            S = parts[p].slices;
    float *ssets = calloc((size_t)sc->nparts * 2 * S + 1, 4);
    for (int p = 0; p < sc->nparts; ++p) {
        part *pt = &parts[p];
        cl_event ev;
        CLNORM_OK(ctx, clnorm_backward_sums(pt->plan, CLNORM_TRAINING, &pt->b, pt->sums, 0, NULL,
                                            &ev));
        wait_release(ev);
        if (pt->slices)
            harness_read(pt->sums, ssets + (size_t)p * 2 * S, pt->slices * 2 * 4);
    }
    float *msums = malloc(2 * S * 4 + 4);
    clnorm_sums_merge(ssets, (size_t)sc->nparts, S, msums);
    cl_mem msums_buf = harness_buffer(msums, 2 * S * 4 + 4);
    size_t count = total / G;
    double *dgd = calloc(np, 8), *dbd = calloc(np, 8);
    float *dg = malloc(np * 4 + 4), *db = malloc(np * 4 + 4);
    float *dg0 = malloc(np * 8 + 8);
    for (int p = 0; p < sc->nparts; ++p) {
        part *pt = &parts[p];
        cl_event ev;
        CLNORM_OK(ctx, clnorm_backward_with_sums(pt->plan, CLNORM_TRAINING, msums_buf, count,
                                                 &pt->b, 0, NULL, &ev));
        wait_release(ev);
        unsigned char *tmp = malloc(pt->elements * es + 1);
        harness_read(pt->b.dx, tmp, pt->elements * es);
        move(sc, &pt->desc, pt->n0, pt->d0, es, dxs, tmp, 0);
        free(tmp);
        size_t pnp = ref_params(&pt->desc);
        if (per_sample) { /* each part's own parameters' share */
            float *pg = malloc(pnp * 4 + 4), *pb = malloc(pnp * 4 + 4);
            harness_read(pt->b.dgamma, pg, pnp * 4);
            harness_read(pt->b.dbeta, pb, pnp * 4);
            move_params(sc, &pt->desc, pt->d0, dg, pg, 0);
            move_params(sc, &pt->desc, pt->d0, db, pb, 0);
            free(pg);
            free(pb);
        } else if (wd->kind == CLNORM_BATCH || pt->desc.n == wd->n) {
            /* the merged sums' own: the same bits in every part */
            harness_read(pt->b.dgamma, dg, np * 4);
            harness_read(pt->b.dbeta, db, np * 4);
            if (p == 0) {
                memcpy(dg0, dg, np * 4);
                memcpy(dg0 + np, db, np * 4);
            } else {
                ck_assert_msg(memcmp(dg0, dg, np * 4) == 0 && memcmp(dg0 + np, db, np * 4) == 0,
                              "%s: part %d's dgamma or dbeta differ from part 0's", name, p);
            }
        }
    }
    ref_load(wd->dtype, dxs, got, total);
    double tol = wd->dtype == CLNORM_F32 ? 1e-5 : wd->dtype == CLNORM_F16 ? 2e-3 : 1.6e-2;
    double e = rel_l2(got, want_dx, total);
    ck_assert_msg(e <= tol, "%s: dx relative L2 error %.3g > %.3g", name, e, tol);
    for (size_t i = 0; i < np; ++i) {
        dgd[i] = dg[i];
        dbd[i] = db[i];
    }
    double shift = ldexp(fabs(sc->offset), -20) * norm2(want_db, np) / norm2(want_dg, np);
    e = rel_l2(dgd, want_dg, np);
    ck_assert_msg(e <= 1e-4 + shift, "%s: dgamma relative L2 error %.3g", name, e);
    e = rel_l2(dbd, want_db, np);
    ck_assert_msg(e <= 1e-4, "%s: dbeta relative L2 error %.3g", name, e);

    for (int p = 0; p < sc->nparts; ++p) {
        part *pt = &parts[p];
        cl_mem mems[] = {pt->b.x, pt->b.y, pt->b.dy, pt->b.dx, pt->b.gamma, pt->b.beta,
                         pt->b.dgamma, pt->b.dbeta, pt->b.running_mean, pt->b.running_var,
                         pt->b.save_mean, pt->b.save_invstd, pt->moments, pt->sums};
        for (size_t i = 0; i < sizeof mems / sizeof mems[0]; ++i)
            if (mems[i])
                clReleaseMemObject(mems[i]);
        clnorm_plan_release(pt->plan);
        free(pt->gamma);
    }
    clReleaseMemObject(merged_buf);
    clReleaseMemObject(msums_buf);
    free(xf); free(dyf); free(gamma); free(beta); free(rm); free(rv); free(xs); free(dys);
    free(ys); free(dxs); free(xd); free(dyd); free(yd); free(want_y); free(want_dx); free(got);
    free(mean); free(inv); free(rmw); free(rvw); free(want_dg); free(want_db); free(scale);
    free(sets); free(merged); free(first); free(other); free(ssets); free(msums); free(dgd);
    free(dbd); free(dg); free(db); free(dg0);
}

static void add(scase sc)
{
    cases = realloc(cases, (size_t)(ncases + 1) * sizeof *cases);
    cases[ncases++] = sc;
}

static void build_matrix(void)
{
    int small = harness_small();
    uint64_t seed = 11;
    for (int kind = 0; kind < 5; ++kind)
        for (int layout = 0; layout < 2; ++layout)
            for (int dtype = 0; dtype < 3; ++dtype) {
                if (small && dtype == CLNORM_BF16)
                    continue;
                int has_running = kind == CLNORM_BATCH || kind == CLNORM_INSTANCE;
                scase sc = {0};
                sc.whole = (clnorm_desc){.kind = (clnorm_kind)kind,
                                         .layout = (clnorm_layout)layout,
                                         .dtype = (clnorm_dtype)dtype,
                                         .n = 2,
                                         .c = 6,
                                         .d = small ? 9 : 37,
                                         .groups = kind == CLNORM_GROUP ? 3 : 0,
                                         .eps = 1e-5f,
                                         .momentum = 0.1f};
                /* tiles of an image: along d, uneven */
                sc.along_d = 1;
                sc.nparts = 3;
                sc.sizes[0] = small ? 2 : 10;
                sc.sizes[1] = 1;
                sc.sizes[2] = sc.whole.d - sc.sizes[0] - 1;
                sc.mode = (clnorm_mode)(dtype == CLNORM_F16);
                sc.running = has_running && dtype != CLNORM_BF16;
                sc.offset = dtype == CLNORM_F32 ? 100.0 : 3.0;
                sc.seed = seed++;
                add(sc);
                if (kind != CLNORM_BATCH)
                    continue;
                /* ranks of a batch: along n, one of them empty */
                sc.whole.n = 5;
                sc.whole.d = small ? 4 : 15;
                sc.along_d = 0;
                sc.sizes[0] = 2;
                sc.sizes[1] = 0;
                sc.sizes[2] = 3;
                sc.mode = CLNORM_TRAINING;
                sc.running = 1;
                sc.seed = seed++;
                add(sc);
            }
    if (small)
        return;
    /* A long reduction of offset data cut in four: the merge keeps the blocked accuracy. */
    scase sc = {0};
    sc.whole = (clnorm_desc){.kind = CLNORM_BATCH, .layout = CLNORM_NCHW, .dtype = CLNORM_F32,
                             .n = 8, .c = 3, .d = 4099, .eps = 1e-5f, .momentum = 0.1f};
    sc.nparts = 4;
    sc.sizes[0] = 3;
    sc.sizes[1] = 1;
    sc.sizes[2] = 0;
    sc.sizes[3] = 4;
    sc.running = 1;
    sc.offset = 1e4;
    sc.seed = seed++;
    add(sc);
}

START_TEST(split_equals_whole)
{
    check_split(&cases[_i]);
}
END_TEST

/* Chan's formula over one group's sets in the order given, in double: the specification. */
static void chan_in_order(const float *sets, const int *order, int k, float *out)
{
    double n = 0, mean = 0, m2 = 0;
    for (int j = 0; j < k; ++j) {
        const float *m = sets + 3 * order[j];
        if (m[0] == 0)
            continue;
        double nb = m[0], delta = m[1] - mean, total = n + nb;
        mean += delta * (nb / total);
        m2 += m[2] + delta * delta * (n * (nb / total));
        n = total;
    }
    out[0] = (float)n;
    out[1] = (float)mean;
    out[2] = (float)m2;
}

START_TEST(merge_skips_empty_sets_and_keeps_order)
{
    /* three sets of one group: (2, 1, 0.5), empty, (2, 3, 0.5) */
    const float sets[] = {2, 1, 0.5f, 0, 123, 456, 2, 3, 0.5f};
    float out[3];
    clnorm_moments_merge(sets, 3, 1, out);
    ck_assert(out[0] == 4 && out[1] == 2 && out[2] == 5); /* M2 = 0.5 + 0.5 + 4*2*2/4 */
    float copy[9];
    memcpy(copy, sets, sizeof copy);
    clnorm_moments_merge(copy, 3, 1, copy); /* in place */
    ck_assert(memcmp(copy, out, sizeof out) == 0);
    /* uneven sets, whose merge rounds differently in different orders: the order given */
    const float uneven[] = {3, 1000.1f, 0.7f, 5, 999.7f, 1.9f, 7, 1000.37f, 0.3f, 1, 998.9f, 0};
    const int forward[] = {0, 1, 2, 3}, backward[] = {3, 2, 1, 0};
    float want[3], got[3], reversed[12], want_rev[3], got_rev[3];
    chan_in_order(uneven, forward, 4, want);
    clnorm_moments_merge(uneven, 4, 1, got);
    ck_assert(memcmp(got, want, sizeof got) == 0);
    for (int j = 0; j < 4; ++j)
        memcpy(reversed + 3 * j, uneven + 3 * backward[j], 3 * sizeof(float));
    chan_in_order(uneven, backward, 4, want_rev);
    clnorm_moments_merge(reversed, 4, 1, got_rev);
    ck_assert(memcmp(got_rev, want_rev, sizeof got_rev) == 0);
    const float sums[] = {1, 2, 0.5f, 0.25f, 3, 4, 8, 16};
    float s[4];
    clnorm_sums_merge(sums, 2, 2, s);
    ck_assert(s[0] == 4 && s[1] == 6 && s[2] == 8.5f && s[3] == 16.25f);
    /* sums in order: 1e8 + 1 - 1e8 is 1 in double, whatever float would make of it */
    const float big[] = {1e8f, 0, 1, 0, -1e8f, 0}; /* three sets of one slice */
    float b[2];
    clnorm_sums_merge(big, 3, 1, b);
    ck_assert(b[0] == 1 && b[1] == 0);
}
END_TEST

START_TEST(refusals_name_the_field)
{
    clnorm_context *ctx = harness_ctx();
    clnorm_desc d = {.kind = CLNORM_BATCH, .n = 2, .c = 4, .d = 3, .eps = 1e-5f};
    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &d, &plan));
    cl_mem x = harness_buffer(NULL, 24 * 4), small = harness_buffer(NULL, 8);
    const float sentinel[2] = {7, 7};
    harness_finish();
    CL_OK(clEnqueueWriteBuffer(clnorm_context_queue(ctx), small, CL_TRUE, 0, 8, sentinel, 0,
                               NULL, NULL));
    cl_event ev = (cl_event)1;
    ck_assert_int_eq(clnorm_moments(plan, x, small, 0, NULL, &ev), CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert(ev == NULL);
    ck_assert_msg(strstr(clnorm_context_last_error(ctx), "moments"), "%s",
                  clnorm_context_last_error(ctx));
    clnorm_buffers b = {0};
    b.x = x;
    b.dy = x;
    ck_assert_int_eq(clnorm_backward_sums(plan, CLNORM_TRAINING, &b, small, 0, NULL, NULL),
                     CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(clnorm_context_last_error(ctx), "bufs.save_invstd"), "%s",
                  clnorm_context_last_error(ctx));
    cl_mem sm = harness_buffer(NULL, 16), si = harness_buffer(NULL, 16);
    cl_mem sums = harness_buffer(NULL, 32);
    b.save_mean = sm;
    b.save_invstd = si;
    ck_assert_int_eq(clnorm_backward_with_sums(plan, CLNORM_TRAINING, sums, 5, &b, 0, NULL, NULL),
                     CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(clnorm_context_last_error(ctx), "count"), "%s",
                  clnorm_context_last_error(ctx));
    ck_assert_int_eq(clnorm_backward_with_sums(plan, CLNORM_TRAINING, small, 6, &b, 0, NULL,
                                               NULL),
                     CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(clnorm_context_last_error(ctx), "sums"), "%s",
                  clnorm_context_last_error(ctx));
    /* nothing written by the refused calls */
    float back[2];
    harness_read(small, back, 8);
    ck_assert(back[0] == 7 && back[1] == 7);
    /* forward with moments too small, or sharing bytes with an output: y untouched */
    cl_mem y = harness_buffer(NULL, 24 * 4), moments = harness_buffer(NULL, 12 * 4);
    const float nan_fill = NAN;
    harness_finish();
    CL_OK(clEnqueueFillBuffer(clnorm_context_queue(ctx), y, &nan_fill, sizeof nan_fill, 0, 96, 0,
                              NULL, NULL));
    harness_finish();
    clnorm_buffers f = {0};
    f.x = x;
    f.y = y;
    f.save_mean = sm;
    ck_assert_int_eq(clnorm_forward_with_moments(plan, CLNORM_TRAINING, small, &f, 0, NULL, NULL),
                     CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(clnorm_context_last_error(ctx), "moments"), "%s",
                  clnorm_context_last_error(ctx));
    f.save_mean = moments; /* written while the moments are read */
    ck_assert_int_eq(
        clnorm_forward_with_moments(plan, CLNORM_TRAINING, moments, &f, 0, NULL, NULL),
        CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(clnorm_context_last_error(ctx), "moments"), "%s",
                  clnorm_context_last_error(ctx));
    float yback[24];
    harness_read(y, yback, sizeof yback);
    for (int i = 0; i < 24; ++i)
        ck_assert(isnan(yback[i]));
    /* sums written over x */
    ck_assert_int_eq(clnorm_backward_sums(plan, CLNORM_TRAINING, &b, x, 0, NULL, NULL),
                     CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(clnorm_context_last_error(ctx), "sums"), "%s",
                  clnorm_context_last_error(ctx));
    /* epilogues: forward with moments takes no skip (the moments are x's), the split
     * backward none at all */
    f.save_mean = sm;
    f.skip = x;
    ck_assert_int_eq(
        clnorm_forward_with_moments(plan, CLNORM_TRAINING, moments, &f, 0, NULL, NULL),
        CLNORM_ERROR_UNSUPPORTED);
    ck_assert_msg(strstr(clnorm_context_last_error(ctx), "bufs.skip"), "%s",
                  clnorm_context_last_error(ctx));
    clnorm_desc da = d;
    da.activation = CLNORM_ACTIVATION_RELU;
    clnorm_plan *act;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &da, &act));
    cl_mem sums8 = harness_buffer(NULL, 32);
    ck_assert_int_eq(clnorm_backward_sums(act, CLNORM_TRAINING, &b, sums8, 0, NULL, NULL),
                     CLNORM_ERROR_UNSUPPORTED);
    ck_assert_msg(strstr(clnorm_context_last_error(ctx), "desc.activation"), "%s",
                  clnorm_context_last_error(ctx));
    clnorm_plan_release(act);
    clReleaseMemObject(sums8);
    clReleaseMemObject(y);
    clReleaseMemObject(moments);
    ck_assert_int_eq(clnorm_forward_check(plan, CLNORM_TRAINING, &b, 1),
                     CLNORM_ERROR_INVALID_ARGUMENT); /* no y */
    ck_assert_msg(strstr(clnorm_context_last_error(ctx), "bufs.y"), "%s",
                  clnorm_context_last_error(ctx));
    cl_mem mems[] = {x, small, sm, si, sums};
    for (size_t i = 0; i < 5; ++i)
        clReleaseMemObject(mems[i]);
    clnorm_plan_release(plan);
}
END_TEST

int main(void)
{
    build_matrix();
    Suite *s = suite_create("stats");
    TCase *tc = tcase_create("split");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, split_equals_whole, 0, ncases);
    suite_add_tcase(s, tc);
    TCase *api = tcase_create("api");
    tcase_add_test(api, merge_skips_empty_sets_and_keeps_order);
    tcase_add_test(api, refusals_name_the_field);
    suite_add_tcase(s, api);
    int rc = harness_run(s);
    free(cases);
    return rc;
}
