/* Fused epilogues (DESIGN.md section 11): residual adds and activations inside the
 * normalization, forward and backward, against the float64 reference (whose gradients are
 * checked here against central differences of its forward), over kind x layout x storage x
 * activation x {skip, residual, both}, and the rules for the new fields and buffers. */
#include "harness.h"
#include "reference.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ecase {
    clnorm_desc desc;
    clnorm_mode mode;
    int skip, residual, sum, gamma, beta, running, save;
    int in_place;  /* forward: y = x and sum = skip; backward: dx = dy */
    int dresidual; /* backward: ask for dresidual */
    uint64_t seed;
} ecase;

static const char *const kinds[] = {"BATCH", "LAYER", "INSTANCE", "GROUP", "RMS"};
static const char *const acts[] = {"none", "relu", "leaky_relu", "silu", "gelu", "gelu_tanh"};
static const char *const dtypes[] = {"f32", "f16", "bf16"};

static const char *ecase_name(const ecase *ec, char *buf, size_t size)
{
    const clnorm_desc *d = &ec->desc;
    snprintf(buf, size, "%s/%zu %s %s %s %zux%zux%zu %s%s%s%s%s%s%s%s%s", kinds[d->kind],
             d->groups, d->layout ? "NHWC" : "NCHW", dtypes[d->dtype],
             ec->mode ? "INFERENCE" : "TRAINING", d->n, d->c, d->d, acts[d->activation],
             ec->skip ? " skip" : "", ec->sum ? " sum" : "", ec->residual ? " residual" : "",
             ec->gamma ? " gamma" : "", ec->beta ? " beta" : "", ec->running ? " running" : "",
             ec->save ? " save" : "", ec->in_place ? " in-place" : "");
    return buf;
}

/* A case's host data, in storage and as the float64 values the device reads. */
typedef struct edata {
    size_t total, np, groups, es;
    void *xs, *ss, *rs, *dys;
    double *xd, *sd, *rd, *dyd;
    float *gamma, *beta, *rm, *rv;
} edata;

static void *stored(clnorm_dtype t, const float *f, double *d, size_t n)
{
    void *s = malloc((n ? n : 1) * ref_storage_size(t));
    ref_store(t, f, s, n);
    ref_load(t, s, d, n);
    return s;
}

static void edata_make(const ecase *ec, edata *e)
{
    const clnorm_desc *d = &ec->desc;
    e->total = d->n * d->c * d->d;
    e->np = ref_params(d);
    e->groups = ref_groups(d);
    e->es = ref_storage_size(d->dtype);
    size_t n = e->total ? e->total : 1;
    float *xf = malloc(n * 4), *sf = malloc(n * 4), *rf = malloc(n * 4), *df = malloc(n * 4);
    harness_rng rng = {ec->seed};
    for (size_t i = 0; i < e->total; ++i) {
        xf[i] = (float)(0.5 + harness_normal(&rng));
        sf[i] = (float)(0.3 * harness_normal(&rng) - 0.2);
        rf[i] = (float)(0.5 * harness_normal(&rng));
        df[i] = (float)harness_normal(&rng);
    }
    e->gamma = malloc(e->np * 4);
    e->beta = malloc(e->np * 4);
    for (size_t i = 0; i < e->np; ++i) {
        e->gamma[i] = (float)(0.5 + harness_uniform(&rng));
        e->beta[i] = (float)(0.3 * harness_normal(&rng));
    }
    e->rm = malloc(d->c * 4);
    e->rv = malloc(d->c * 4);
    for (size_t c = 0; c < d->c; ++c) {
        e->rm[c] = (float)(0.3 + 0.1 * harness_normal(&rng));
        e->rv[c] = (float)(0.5 + harness_uniform(&rng));
    }
    e->xd = malloc(n * 8);
    e->sd = malloc(n * 8);
    e->rd = malloc(n * 8);
    e->dyd = malloc(n * 8);
    e->xs = stored(d->dtype, xf, e->xd, e->total);
    e->ss = stored(d->dtype, sf, e->sd, e->total);
    e->rs = stored(d->dtype, rf, e->rd, e->total);
    e->dys = stored(d->dtype, df, e->dyd, e->total);
    free(xf);
    free(sf);
    free(rf);
    free(df);
}

static void edata_free(edata *e)
{
    void *p[] = {e->xs, e->ss, e->rs, e->dys, e->xd, e->sd, e->rd, e->dyd,
                 e->gamma, e->beta, e->rm, e->rv};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; ++i)
        free(p[i]);
}

static ref_inputs ref_in(const ecase *ec, const edata *e)
{
    ref_inputs in = {0};
    in.x = e->xd;
    in.gamma = ec->gamma ? e->gamma : NULL;
    in.beta = ec->beta ? e->beta : NULL;
    in.running_mean = ec->running ? e->rm : NULL;
    in.running_var = ec->running ? e->rv : NULL;
    in.dy = e->dyd;
    return in;
}

static ref_epilogue ref_epi(const ecase *ec, const edata *e)
{
    ref_epilogue epi = {0};
    epi.skip = ec->skip ? e->sd : NULL;
    epi.residual = ec->residual ? e->rd : NULL;
    epi.activation = ec->desc.activation;
    epi.alpha = ec->desc.activation_alpha;
    return epi;
}

static void release_all(cl_mem *mems, size_t count)
{
    for (size_t i = 0; i < count; ++i)
        for (size_t j = 0; j < i; ++j)
            if (mems[j] == mems[i])
                mems[i] = NULL; /* in-place pairs are one buffer */
    for (size_t i = 0; i < count; ++i)
        if (mems[i])
            clReleaseMemObject(mems[i]);
}

/* The call's inputs from e: x, and skip, residual, gamma, beta and the running statistics where
 * the case has them. */
static void inputs_make(const ecase *ec, const edata *e, clnorm_buffers *b)
{
    size_t bytes = e->total * e->es;
    b->x = harness_buffer(e->xs, bytes);
    if (ec->skip)
        b->skip = harness_buffer(e->ss, bytes);
    if (ec->residual)
        b->residual = harness_buffer(e->rs, bytes);
    if (ec->gamma)
        b->gamma = harness_buffer(e->gamma, e->np * 4);
    if (ec->beta)
        b->beta = harness_buffer(e->beta, e->np * 4);
    if (ec->running) {
        b->running_mean = harness_buffer(e->rm, ec->desc.c * 4);
        b->running_var = harness_buffer(e->rv, ec->desc.c * 4);
    }
}

/* The largest |act'| (LEAKY_RELU: its slope; GELU's reaches 1.13). */
static double act_slope(const clnorm_desc *d)
{
    double a = fabs((double)d->activation_alpha);
    return d->activation == CLNORM_ACTIVATION_LEAKY_RELU && a > 1 ? a : 1.2;
}

static void forward_case(const ecase *ec)
{
    clnorm_context *ctx = harness_ctx();
    const clnorm_desc *d = &ec->desc;
    char name[256];
    ecase_name(ec, name, sizeof name);
    edata e;
    edata_make(ec, &e);
    size_t total = e.total, n = total ? total : 1, groups = e.groups;
    double *want = malloc(n * 8), *h = malloc(n * 8), *scale = malloc(n * 8);
    double *mean = malloc(groups * 8), *inv = malloc(groups * 8);
    double *wrm = malloc(d->c * 8), *wrv = malloc(d->c * 8);
    ref_inputs in = ref_in(ec, &e);
    ref_epilogue epi = ref_epi(ec, &e);
    ref_outputs out = {0};
    out.y = want;
    out.mean = mean;
    out.invstd = inv;
    out.running_mean = wrm;
    out.running_var = wrv;
    out.scale = scale;
    ck_assert_int_eq(ref_epilogue_forward(d, ec->mode, &in, &epi, &out, h, NULL), 0);

    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, d, &plan));
    clnorm_buffers b = {0};
    inputs_make(ec, &e, &b);
    b.y = ec->in_place ? b.x : harness_buffer(NULL, total * e.es);
    if (ec->sum)
        b.sum = ec->in_place ? b.skip : harness_buffer(NULL, total * e.es);
    if (ec->save) {
        b.save_mean = harness_buffer(NULL, groups * 4);
        b.save_invstd = harness_buffer(NULL, groups * 4);
    }
    cl_event done;
    clnorm_status st = clnorm_forward(plan, ec->mode, &b, 0, NULL, &done);
    ck_assert_msg(st == CLNORM_SUCCESS, "%s: %s: %s", name, clnorm_status_string(st),
                  clnorm_context_last_error(ctx));
    CL_OK(clWaitForEvents(1, &done));
    clReleaseEvent(done);

    void *ys = malloc(n * e.es);
    double *yd = malloc(n * 8);
    harness_read(b.y, ys, total * e.es);
    ref_load(d->dtype, ys, yd, total);
    /* max |h| per group, for the tolerance of DESIGN.md section 7 */
    double *gmax = calloc(groups, 8);
    for (size_t s = 0; s < d->n; ++s)
        for (size_t c = 0; c < d->c; ++c)
            for (size_t k = 0; k < d->d; ++k) {
                size_t i = ref_offset(d, s, c, k), g = ref_group(d, s, c, k);
                if (fabs(h[i]) > gmax[g])
                    gmax[g] = fabs(h[i]);
            }
    double eps23 = ldexp(1, -23), u = ref_unit_roundoff(d->dtype);
    int use_running = ec->running && ec->mode == CLNORM_INFERENCE;
    int smooth = d->activation >= CLNORM_ACTIVATION_SILU;
    for (size_t s = 0; s < d->n; ++s)
        for (size_t c = 0; c < d->c; ++c)
            for (size_t k = 0; k < d->d; ++k) {
                size_t i = ref_offset(d, s, c, k), g = ref_group(d, s, c, k);
                double ref_mag = use_running ? fabs(e.rm[c]) : gmax[g];
                /* z's error (normalization, then the residual's add), through act, then act's
                 * own (exp, erf, tanh: a few ulps; 1 + tanh cancels for very negative z) */
                double tz = 16 * eps23 * (ref_mag + fabs(h[i])) * scale[i] + 4 * eps23 * 4.0;
                double tol = act_slope(d) * tz + (u + 64 * eps23) * fabs(want[i]) +
                             (smooth ? ldexp(1, -18) : 0.0) + 1e-30;
                ck_assert_msg(fabs(yd[i] - want[i]) <= tol, "%s: y[%zu] = %.9g, want %.9g (tol %.3g)",
                              name, i, yd[i], want[i], tol);
            }
    if (ec->sum) {
        /* h as the device forms it: the float sum of the stored values, stored as x */
        void *hs = malloc(n * e.es), *got = malloc(n * e.es);
        float *hf = malloc(n * 4);
        for (size_t i = 0; i < total; ++i)
            hf[i] = (float)e.xd[i] + (float)e.sd[i];
        ref_store(d->dtype, hf, hs, total);
        harness_read(b.sum, got, total * e.es);
        ck_assert_msg(memcmp(hs, got, total * e.es) == 0, "%s: sum is not x + skip", name);
        free(hs);
        free(got);
        free(hf);
    }
    if (ec->save && !use_running) {
        float *gm = malloc(groups * 4), *gi = malloc(groups * 4);
        harness_read(b.save_mean, gm, groups * 4);
        harness_read(b.save_invstd, gi, groups * 4);
        for (size_t g = 0; g < groups; ++g) {
            if (d->kind != CLNORM_RMS)
                ck_assert_msg(fabs(gm[g] - mean[g]) <= 16 * eps23 * gmax[g] + 1e-30,
                              "%s: save_mean[%zu] = %.9g, want %.9g", name, g, gm[g], mean[g]);
            ck_assert_msg(fabs(gi[g] - inv[g]) <= 1024 * eps23 * inv[g],
                          "%s: save_invstd[%zu] = %.9g, want %.9g", name, g, gi[g], inv[g]);
        }
        free(gm);
        free(gi);
    }
    if (ec->running) {
        float *grm = malloc(d->c * 4), *grv = malloc(d->c * 4);
        harness_read(b.running_mean, grm, d->c * 4);
        harness_read(b.running_var, grv, d->c * 4);
        for (size_t c = 0; c < d->c; ++c) {
            ck_assert_msg(fabs(grm[c] - wrm[c]) <= 1024 * eps23 * (fabs(wrm[c]) + 1),
                          "%s: running_mean[%zu] = %.9g, want %.9g", name, c, grm[c], wrm[c]);
            ck_assert_msg(fabs(grv[c] - wrv[c]) <= 1024 * eps23 * fabs(wrv[c]),
                          "%s: running_var[%zu] = %.9g, want %.9g", name, c, grv[c], wrv[c]);
        }
        free(grm);
        free(grv);
    }
    cl_mem mems[] = {b.x,     b.y,        b.skip,         b.sum,         b.residual,
                     b.gamma, b.beta,     b.running_mean, b.running_var, b.save_mean,
                     b.save_invstd};
    release_all(mems, sizeof mems / sizeof mems[0]);
    clnorm_plan_release(plan);
    free(ys); free(yd); free(gmax); free(want); free(h); free(scale); free(mean); free(inv);
    free(wrm); free(wrv);
    edata_free(&e);
}

/* Relative L2 error; with scale, relative to at least a tenth of the norm of the terms dx is
 * the difference of (in groups of a few elements they cancel, and rounding is all that is
 * left), as test_backward measures it. */
static double rel_l2(const double *got, const double *want, const double *scale, size_t n)
{
    double num = 0, den = 0, sc = 0;
    for (size_t i = 0; i < n; ++i) {
        num += (got[i] - want[i]) * (got[i] - want[i]);
        den += want[i] * want[i];
        sc += scale ? scale[i] * scale[i] : 0.0;
    }
    den = sqrt(den);
    if (0.1 * sqrt(sc) > den)
        den = 0.1 * sqrt(sc);
    return den > 0 ? sqrt(num) / den : sqrt(num);
}

static void read_floats(cl_mem m, double *out, size_t n)
{
    float *f = malloc((n ? n : 1) * 4);
    harness_read(m, f, n * 4);
    for (size_t i = 0; i < n; ++i)
        out[i] = f[i];
    free(f);
}

static void backward_case(const ecase *ec)
{
    clnorm_context *ctx = harness_ctx();
    const clnorm_desc *d = &ec->desc;
    char name[256];
    ecase_name(ec, name, sizeof name);
    edata e;
    edata_make(ec, &e);
    size_t total = e.total, n = total ? total : 1, np = e.np, groups = e.groups;
    double *want_dx = malloc(n * 8), *want_dr = malloc(n * 8), *want_dg = malloc(np * 8),
           *want_db = malloc(np * 8), *mean = malloc(groups * 8), *inv = malloc(groups * 8),
           *y = malloc(n * 8), *scale = malloc(n * 8);
    ref_inputs in = ref_in(ec, &e);
    ref_epilogue epi = ref_epi(ec, &e);
    /* With sum, backward reads h as forward stored it (rounded to x's storage) instead of
     * x + skip: the reference takes that h as its x. */
    void *hs = NULL;
    double *hd = NULL;
    if (ec->sum) {
        float *hf = malloc(n * 4);
        hd = malloc(n * 8);
        for (size_t i = 0; i < total; ++i)
            hf[i] = (float)e.xd[i] + (float)e.sd[i];
        hs = stored(d->dtype, hf, hd, total);
        free(hf);
        in.x = hd;
        epi.skip = NULL;
    }
    /* save_* from the float64 forward of the same inputs, as forward would leave them */
    ref_outputs fo = {0};
    fo.y = y;
    fo.mean = mean;
    fo.invstd = inv;
    ck_assert_int_eq(ref_epilogue_forward(d, CLNORM_TRAINING, &in, &epi, &fo, NULL, NULL), 0);
    ref_outputs bo = {0};
    bo.y = want_dx;
    bo.dgamma = want_dg;
    bo.dbeta = want_db;
    bo.scale = scale;
    ck_assert_int_eq(ref_epilogue_backward(d, ec->mode, &in, &epi, &bo, want_dr), 0);

    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, d, &plan));
    clnorm_buffers b = {0};
    inputs_make(ec, &e, &b);
    b.dy = harness_buffer(e.dys, total * e.es);
    b.dx = ec->in_place ? b.dy : harness_buffer(NULL, total * e.es);
    if (ec->sum)
        b.sum = harness_buffer(hs, total * e.es);
    if (ec->dresidual)
        b.dresidual = harness_buffer(NULL, total * e.es);
    b.dgamma = harness_buffer(NULL, np * 4);
    b.dbeta = harness_buffer(NULL, np * 4);
    if (ec->save) {
        float *sm = malloc(groups * 4), *si = malloc(groups * 4);
        for (size_t g = 0; g < groups; ++g) {
            sm[g] = (float)mean[g];
            si[g] = (float)inv[g];
        }
        b.save_mean = harness_buffer(sm, groups * 4);
        b.save_invstd = harness_buffer(si, groups * 4);
        free(sm);
        free(si);
    }
    cl_event done;
    clnorm_status st = clnorm_backward(plan, ec->mode, &b, 0, NULL, &done);
    ck_assert_msg(st == CLNORM_SUCCESS, "%s: %s: %s", name, clnorm_status_string(st),
                  clnorm_context_last_error(ctx));
    CL_OK(clWaitForEvents(1, &done));
    clReleaseEvent(done);

    /* Relative L2 errors: storage rounding of dx (and of dy*act'(z), which the passes read
     * back in x's storage), float sums for the parameters. */
    double u = ref_unit_roundoff(d->dtype);
    /* f32: the float derivatives of SiLU and GELU (exp, erf, tanh: a few ulps, 1 - tanh^2
     * cancelling in the tails) are what is left where dx cancels, in groups of two */
    double tol = d->dtype == CLNORM_F32 ? (d->activation >= CLNORM_ACTIVATION_SILU ? 1e-4 : 1e-5)
                 : d->dtype == CLNORM_F16 ? 2e-3
                                          : 1.6e-2;
    int rounded_dz = d->activation != CLNORM_ACTIVATION_NONE && d->dtype != CLNORM_F32;
    double ptol = d->dtype == CLNORM_F32 ? 1e-5 : rounded_dz ? 2 * u : 1e-4;
    void *got = malloc(n * e.es);
    double *gd = malloc(n * 8), *pd = malloc(np * 8);
    harness_read(b.dx, got, total * e.es);
    ref_load(d->dtype, got, gd, total);
    double err = rel_l2(gd, want_dx, scale, total);
    ck_assert_msg(err <= tol, "%s: dx relative L2 error %.3g > %.3g", name, err, tol);
    if (ec->dresidual) {
        harness_read(b.dresidual, got, total * e.es);
        ref_load(d->dtype, got, gd, total);
        err = rel_l2(gd, want_dr, NULL, total);
        double t = d->dtype == CLNORM_F32 ? 1e-6 : u;
        ck_assert_msg(err <= t, "%s: dresidual relative L2 error %.3g > %.3g", name, err, t);
    }
    read_floats(b.dgamma, pd, np);
    err = rel_l2(pd, want_dg, NULL, np);
    ck_assert_msg(err <= ptol, "%s: dgamma relative L2 error %.3g > %.3g", name, err, ptol);
    read_floats(b.dbeta, pd, np);
    err = rel_l2(pd, want_db, NULL, np);
    ck_assert_msg(err <= ptol, "%s: dbeta relative L2 error %.3g > %.3g", name, err, ptol);

    cl_mem mems[] = {b.x,      b.dy,     b.dx,           b.skip,        b.residual,
                     b.dresidual, b.gamma, b.beta,       b.dgamma,      b.dbeta,
                     b.running_mean, b.running_var, b.save_mean, b.save_invstd, b.sum};
    release_all(mems, sizeof mems / sizeof mems[0]);
    clnorm_plan_release(plan);
    free(hs);
    free(hd);
    free(got); free(gd); free(pd); free(want_dx); free(want_dr); free(want_dg); free(want_db);
    free(mean); free(inv); free(y); free(scale);
    edata_free(&e);
}

/* ---- the matrix -------------------------------------------------------------------------- */

static ecase *cases;
static int ncases;

static int full_matrix(void)
{
    const char *m = getenv("CLNORM_TEST_MATRIX");
    return m && strcmp(m, "0") != 0;
}

/*
 * Every kind x layout x activation x {skip + sum, residual, both}, on a shape whose groups take
 * the separate passes and one whose groups take the CPU's one-pass kernels (norm_rows,
 * norm_slab, bwd_rows, bwd_slab, bwd_groups); storage types in turn (all of them with
 * CLNORM_TEST_MATRIX=1). Under Oclgrind (small shapes) each activation meets each kind and
 * layout once.
 */
static void build_matrix(void)
{
    static const size_t shapes[][3] = {{2, 6, 15}, {16, 16, 24}};
    static const size_t small[][3] = {{2, 6, 5}, {9, 8, 3}};
    int small_run = harness_small(), full = full_matrix();
    uint64_t seed = 11;
    int k = 0;
    for (int sh = 0; sh < 2; ++sh)
        for (int kind = 0; kind < 5; ++kind)
            for (int layout = 0; layout < 2; ++layout)
                for (int act = 0; act < 6; ++act)
                    for (int variant = 0; variant < 3; ++variant)
                        for (int dtype = 0; dtype < 3; ++dtype, ++k) {
                            /* fast runs: one storage type per case, in turn; small runs: one
                             * epilogue per kind, layout and activation */
                            if (!full && dtype != (k / 3) % 3)
                                continue;
                            if (small_run && !full && variant != (act + kind) % 3)
                                continue;
                            const size_t *s = small_run ? small[sh] : shapes[sh];
                            ecase ec = {0};
                            ec.desc = (clnorm_desc){
                                .kind = (clnorm_kind)kind, .layout = (clnorm_layout)layout,
                                .dtype = (clnorm_dtype)dtype, .n = s[0], .c = s[1], .d = s[2],
                                .groups = kind == CLNORM_GROUP ? s[1] / 2 : 0, .eps = 1e-5f,
                                .momentum = 0.1f, .activation = (clnorm_activation)act,
                                .activation_alpha = 0.1f};
                            int has_running = kind == CLNORM_BATCH || kind == CLNORM_INSTANCE;
                            ec.skip = variant != 1;
                            ec.sum = ec.skip && (k % 2 == 0);
                            ec.residual = variant != 0;
                            ec.gamma = k % 4 != 1;
                            ec.beta = k % 4 != 2;
                            ec.running = has_running && k % 3 == 0;
                            ec.mode = ec.running && k % 2 ? CLNORM_INFERENCE : CLNORM_TRAINING;
                            ec.save = k % 5 != 0;
                            ec.in_place = k % 7 == 3;
                            ec.dresidual = k % 3 != 2;
                            ec.seed = seed++;
                            cases = realloc(cases, (size_t)(ncases + 1) * sizeof *cases);
                            cases[ncases++] = ec;
                        }
}

START_TEST(forward_matches_reference) { forward_case(&cases[_i]); }
END_TEST

START_TEST(backward_matches_reference) { backward_case(&cases[_i]); }
END_TEST


/* Channels-last BATCH, INSTANCE and GROUP whose channels come in whole runs of 32 or 64, more
 * than the 128 forward tiles whole: a plan with an activation builds its backward column
 * passes with tiles that wide (the sums pass writes dy*act'(z)), forward's stay narrow; the
 * matrix's shapes have none. */
START_TEST(wide_channels_last_backward)
{
    size_t c = harness_small() ? 160 : 192, d = harness_small() ? 2 : 9;
    static const clnorm_kind wide_kinds[] = {CLNORM_BATCH, CLNORM_INSTANCE, CLNORM_GROUP};
    uint64_t seed = 900;
    for (int k = 0; k < 3; ++k)
        for (int act = CLNORM_ACTIVATION_RELU; act <= CLNORM_ACTIVATION_GELU_TANH; act += 2)
            for (int variant = 0; variant < 2; ++variant) {
                ecase ec = {0};
                ec.desc = (clnorm_desc){.kind = wide_kinds[k], .layout = CLNORM_NHWC,
                                        .dtype = variant ? CLNORM_BF16 : CLNORM_F32, .n = 3,
                                        .c = c, .d = d, .groups = c / 16, .eps = 1e-5f,
                                        .activation = (clnorm_activation)act,
                                        .activation_alpha = 0.1f};
                ec.skip = variant;
                ec.residual = 1;
                ec.gamma = ec.beta = ec.save = 1;
                ec.dresidual = variant;
                ec.seed = seed++;
                forward_case(&ec);
                backward_case(&ec);
            }
}
END_TEST

/* Channels-first BATCH whose channels fit in cache takes the one-pass bwd_groups on CPUs
 * (segments of 128 elements and more): the matrix's shapes are shorter. Every activation, with
 * skip + sum and a residual. */
START_TEST(channels_first_batch_in_cache)
{
    size_t d = harness_small() ? 128 : 160;
    uint64_t seed = 950;
    for (int act = 0; act < 6; ++act)
        for (int variant = 0; variant < 2; ++variant) {
            ecase ec = {0};
            ec.desc = (clnorm_desc){.kind = CLNORM_BATCH, .layout = CLNORM_NCHW,
                                    .dtype = variant ? CLNORM_F16 : CLNORM_F32, .n = 3, .c = 8,
                                    .d = d, .eps = 1e-5f, .momentum = 0.1f,
                                    .activation = (clnorm_activation)act,
                                    .activation_alpha = 0.1f};
            ec.skip = 1;
            ec.sum = variant;
            ec.residual = 1;
            ec.gamma = ec.beta = 1;
            ec.save = !variant;
            ec.dresidual = variant;
            ec.seed = seed++;
            forward_case(&ec);
            backward_case(&ec);
        }
}
END_TEST

/* LAYER and RMS with enough rows for several to a work-item take the pipelined bwd_rows on
 * CPUs (forward: those without an epilogue pipeline; with one, the rows go one by one): every
 * activation, with skip (+ sum) and a residual. */
START_TEST(pipelined_rows)
{
    size_t n = 70, c = 4, d = harness_small() ? 5 : 33;
    uint64_t seed = 970;
    for (int k = 0; k < 2; ++k)
        for (int act = 0; act < 6; ++act) {
            ecase ec = {0};
            ec.desc = (clnorm_desc){.kind = k ? CLNORM_RMS : CLNORM_LAYER,
                                    .layout = (clnorm_layout)(act % 2),
                                    .dtype = act % 3 == 2 ? CLNORM_BF16 : CLNORM_F32, .n = n,
                                    .c = c, .d = d, .eps = 1e-5f,
                                    .activation = (clnorm_activation)act,
                                    .activation_alpha = 0.1f};
            ec.skip = act != 3;
            ec.sum = ec.skip && act % 2;
            ec.residual = act != 0;
            ec.gamma = ec.beta = 1;
            ec.save = act != 4;
            ec.dresidual = act % 2;
            ec.seed = seed++;
            forward_case(&ec);
            backward_case(&ec);
        }
}
END_TEST

/* ---- the reference's own gradients ---------------------------------------------------------- */

/* L = sum(w * y) over the float64 forward; backward with dy = w must give its derivatives in
 * x (and skip: the same), residual, gamma and beta, by central differences. */
START_TEST(reference_gradients_match_central_differences)
{
    for (int kind = 0; kind < 5; ++kind)
        for (int act = 0; act < 6; ++act) {
            clnorm_desc d = {.kind = (clnorm_kind)kind, .layout = CLNORM_NHWC, .n = 2, .c = 4,
                             .d = 3, .groups = 2, .eps = 1e-3f,
                             .activation = (clnorm_activation)act, .activation_alpha = 0.2f};
            size_t total = 24, np = ref_params(&d);
            double x[24], s[24], r[24], w[24], y[24], z[24], dx[24], dr[24], dg[24], db[24];
            float gamma[24], beta[24];
            harness_rng rng = {(uint64_t)(100 + kind * 10 + act)};
            for (size_t i = 0; i < total; ++i) {
                x[i] = harness_normal(&rng);
                s[i] = 0.5 * harness_normal(&rng);
                r[i] = 0.5 * harness_normal(&rng);
                w[i] = harness_normal(&rng);
            }
            for (size_t i = 0; i < np; ++i) {
                gamma[i] = (float)(0.5 + harness_uniform(&rng));
                beta[i] = (float)(0.2 * harness_normal(&rng));
            }
            ref_inputs in = {0};
            in.x = x;
            in.gamma = gamma;
            in.beta = beta;
            in.dy = w;
            ref_epilogue epi = {s, r, (clnorm_activation)act, 0.2};
            ref_outputs out = {0};
            out.y = y;
            ck_assert_int_eq(ref_epilogue_forward(&d, CLNORM_TRAINING, &in, &epi, &out, NULL, z),
                             0);
            /* away from ReLU's kink: no z within the step's reach of 0 */
            int kink = act == CLNORM_ACTIVATION_RELU || act == CLNORM_ACTIVATION_LEAKY_RELU;
            for (size_t i = 0; kink && i < total; ++i)
                ck_assert_msg(fabs(z[i]) > 1e-3, "seed puts z[%zu] = %g at the kink", i, z[i]);
            ref_outputs bo = {0};
            bo.y = dx;
            bo.dgamma = dg;
            bo.dbeta = db;
            ck_assert_int_eq(ref_epilogue_backward(&d, CLNORM_TRAINING, &in, &epi, &bo, dr), 0);
            const double step = 1e-6;
            /* L of the inputs as they stand */
#define LOSS(result)                                                                              \
    do {                                                                                          \
        ref_outputs o_ = {0};                                                                     \
        o_.y = y;                                                                                 \
        ck_assert_int_eq(ref_epilogue_forward(&d, CLNORM_TRAINING, &in, &epi, &o_, NULL, NULL), 0); \
        (result) = 0;                                                                             \
        for (size_t j = 0; j < total; ++j)                                                        \
            (result) += w[j] * y[j];                                                              \
    } while (0)
#define CHECK_DERIVATIVE(var, i, want, what)                                                      \
    do {                                                                                          \
        double keep = (var), lp, lm;                                                              \
        (var) = keep + step;                                                                      \
        LOSS(lp);                                                                                 \
        (var) = keep - step;                                                                      \
        LOSS(lm);                                                                                 \
        (var) = keep;                                                                             \
        double num = (lp - lm) / (2 * step);                                                      \
        ck_assert_msg(fabs(num - (want)) <= 1e-5 * (1 + fabs(num)),                               \
                      "%s %s: d%s[%zu] = %.9g, central difference %.9g", kinds[kind], acts[act],  \
                      what, (size_t)(i), (want), num);                                            \
    } while (0)
            for (size_t i = 0; i < total; ++i) {
                CHECK_DERIVATIVE(x[i], i, dx[i], "x");
                CHECK_DERIVATIVE(s[i], i, dx[i], "skip");
                CHECK_DERIVATIVE(r[i], i, dr[i], "residual");
            }
            for (size_t i = 0; i < np; ++i) {
                float gk = gamma[i], bk = beta[i];
                double lp, lm;
                /* parameters are float: steps of 2^-10 are exact, differences of a quadratic-
                 * free-enough L within the tolerance */
                gamma[i] = gk + 0x1p-10f;
                LOSS(lp);
                gamma[i] = gk - 0x1p-10f;
                LOSS(lm);
                gamma[i] = gk;
                double num = (lp - lm) / (2 * 0x1p-10);
                ck_assert_msg(fabs(num - dg[i]) <= 1e-4 * (1 + fabs(num)),
                              "%s %s: dgamma[%zu] = %.9g, central difference %.9g", kinds[kind],
                              acts[act], i, dg[i], num);
                beta[i] = bk + 0x1p-10f;
                LOSS(lp);
                beta[i] = bk - 0x1p-10f;
                LOSS(lm);
                beta[i] = bk;
                num = (lp - lm) / (2 * 0x1p-10);
                ck_assert_msg(fabs(num - db[i]) <= 1e-4 * (1 + fabs(num)),
                              "%s %s: dbeta[%zu] = %.9g, central difference %.9g", kinds[kind],
                              acts[act], i, db[i], num);
            }
#undef CHECK_DERIVATIVE
#undef LOSS
        }
}
END_TEST

/* ---- rules -------------------------------------------------------------------------------- */

/* A rejected call: the status, the field named in last_error, and y untouched. */
static void expect_rejected(clnorm_plan *plan, const clnorm_buffers *b, int backward,
                            clnorm_status want, const char *field, cl_mem watched, size_t bytes)
{
    clnorm_context *ctx = harness_ctx();
    cl_event done = NULL;
    clnorm_status st = backward ? clnorm_backward(plan, CLNORM_TRAINING, b, 0, NULL, &done)
                                : clnorm_forward(plan, CLNORM_TRAINING, b, 0, NULL, &done);
    ck_assert_msg(st == want, "%s: want %s, got %s (%s)", field, clnorm_status_string(want),
                  clnorm_status_string(st), clnorm_context_last_error(ctx));
    ck_assert_ptr_null(done);
    ck_assert_msg(strstr(clnorm_context_last_error(ctx), field), "last_error '%s' names no %s",
                  clnorm_context_last_error(ctx), field);
    harness_finish();
    unsigned char *got = malloc(bytes);
    harness_read(watched, got, bytes);
    for (size_t i = 0; i < bytes; ++i)
        ck_assert_msg(got[i] == 0x7f, "%s: a rejected call wrote its output", field);
    free(got);
}

START_TEST(bad_epilogues_are_rejected_naming_the_field)
{
    clnorm_context *ctx = harness_ctx();
    clnorm_desc d = {.kind = CLNORM_LAYER, .n = 2, .c = 3, .d = 4, .eps = 1e-5f};
    clnorm_plan *plan = NULL;
    d.activation = (clnorm_activation)6;
    ck_assert_int_eq(clnorm_plan_create(ctx, &d, &plan), CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clnorm_context_last_error(ctx), "desc.activation"));
    d.activation = CLNORM_ACTIVATION_LEAKY_RELU;
    d.activation_alpha = NAN;
    ck_assert_int_eq(clnorm_plan_create(ctx, &d, &plan), CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clnorm_context_last_error(ctx), "desc.activation_alpha"));
    d.activation_alpha = INFINITY;
    ck_assert_int_eq(clnorm_plan_create(ctx, &d, &plan), CLNORM_ERROR_INVALID_ARGUMENT);
    d.activation_alpha = 0.1f;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &d, &plan));

    unsigned char fill[96];
    memset(fill, 0x7f, sizeof fill);
    cl_mem x = harness_buffer(fill, 96), y = harness_buffer(fill, 96);
    cl_mem skip = harness_buffer(fill, 96), small = harness_buffer(fill, 92);
    cl_mem dy = harness_buffer(fill, 96), dx = harness_buffer(fill, 96);
    clnorm_buffers b = {0};
    b.x = x;
    b.y = y;
    b.sum = skip;
    expect_rejected(plan, &b, 0, CLNORM_ERROR_INVALID_ARGUMENT, "bufs.sum", y, 96);
    b.sum = NULL;
    b.skip = small;
    expect_rejected(plan, &b, 0, CLNORM_ERROR_INVALID_ARGUMENT, "bufs.skip", y, 96);
    b.skip = NULL;
    b.residual = small;
    expect_rejected(plan, &b, 0, CLNORM_ERROR_INVALID_ARGUMENT, "bufs.residual", y, 96);
    b.residual = NULL;
    b.skip = skip;
    b.sum = small;
    expect_rejected(plan, &b, 0, CLNORM_ERROR_INVALID_ARGUMENT, "bufs.sum", y, 96);
    b.sum = y; /* y and sum are both outputs: they may not share bytes */
    expect_rejected(plan, &b, 0, CLNORM_ERROR_INVALID_ARGUMENT, "bufs.", y, 96);
    b.sum = NULL;
    b.dresidual = dx;
    expect_rejected(plan, &b, 0, CLNORM_ERROR_INVALID_ARGUMENT, "bufs.dresidual", y, 96);

    clnorm_buffers g = {0};
    g.x = x;
    g.dy = dy;
    g.dx = dx;
    g.skip = small;
    expect_rejected(plan, &g, 1, CLNORM_ERROR_INVALID_ARGUMENT, "bufs.skip", dx, 96);
    g.skip = NULL;
    g.sum = y; /* h, read in place of x + skip: only with skip */
    expect_rejected(plan, &g, 1, CLNORM_ERROR_INVALID_ARGUMENT, "bufs.sum", dx, 96);
    g.skip = skip;
    g.sum = small;
    expect_rejected(plan, &g, 1, CLNORM_ERROR_INVALID_ARGUMENT, "bufs.sum", dx, 96);
    g.sum = NULL;
    g.dresidual = small;
    expect_rejected(plan, &g, 1, CLNORM_ERROR_INVALID_ARGUMENT, "bufs.dresidual", dx, 96);
    g.dresidual = dx; /* shares dx's bytes */
    expect_rejected(plan, &g, 1, CLNORM_ERROR_INVALID_ARGUMENT, "bufs.d", dx, 96);
    clnorm_plan_release(plan);

    /* integer pixels take the activation, not the tensors */
    clnorm_desc p = {.kind = CLNORM_INSTANCE, .layout = CLNORM_NHWC, .dtype = CLNORM_U8,
                     .n = 1, .c = 3, .d = 8, .eps = 1e-5f, .y_dtype = CLNORM_Y_F32,
                     .activation = CLNORM_ACTIVATION_RELU};
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &p, &plan));
    clnorm_buffers u = {0};
    u.x = x;
    u.y = y;
    u.skip = skip;
    expect_rejected(plan, &u, 0, CLNORM_ERROR_UNSUPPORTED, "bufs.skip", y, 96);
    u.skip = NULL;
    cl_event done;
    CLNORM_OK(ctx, clnorm_forward(plan, CLNORM_TRAINING, &u, 0, NULL, &done));
    CL_OK(clWaitForEvents(1, &done));
    clReleaseEvent(done);
    float out[24];
    harness_read(y, out, sizeof out);
    for (int i = 0; i < 24; ++i) /* a constant image: every z is 0 */
        ck_assert_msg(out[i] == 0.0f, "u8 with ReLU: y[%d] = %g", i, out[i]);
    clnorm_plan_release(plan);
    cl_mem all[] = {x, y, skip, small, dy, dx};
    release_all(all, 6);
}
END_TEST

/* The same call twice gives the same bits (the epilogue is elementwise after the same
 * blocked statistics). */
START_TEST(same_input_gives_same_bits)
{
    clnorm_context *ctx = harness_ctx();
    for (int kind = 0; kind < 5; ++kind) {
        ecase ec = {0};
        ec.desc = (clnorm_desc){.kind = (clnorm_kind)kind, .layout = CLNORM_NHWC, .n = 4,
                                .c = 8, .d = 33, .groups = 4, .eps = 1e-5f,
                                .activation = CLNORM_ACTIVATION_GELU};
        ec.skip = ec.residual = ec.gamma = ec.beta = 1;
        ec.seed = 5;
        edata e;
        edata_make(&ec, &e);
        clnorm_plan *plan;
        CLNORM_OK(ctx, clnorm_plan_create(ctx, &ec.desc, &plan));
        clnorm_buffers b = {0};
        inputs_make(&ec, &e, &b);
        float *first = malloc(e.total * 4), *again = malloc(e.total * 4);
        for (int run = 0; run < 2; ++run) {
            b.y = harness_buffer(NULL, e.total * 4);
            CLNORM_OK(ctx, clnorm_forward(plan, CLNORM_TRAINING, &b, 0, NULL, NULL));
            harness_read(b.y, run ? again : first, e.total * 4);
            clReleaseMemObject(b.y);
        }
        ck_assert_msg(memcmp(first, again, e.total * 4) == 0, "%s: runs differ", kinds[kind]);
        free(first);
        free(again);
        cl_mem mems[] = {b.x, b.skip, b.residual, b.gamma, b.beta};
        release_all(mems, 5);
        clnorm_plan_release(plan);
        edata_free(&e);
    }
}
END_TEST

/* The gradient dy*act'(z) is scratch of x's size, reported apart and allocated only by a
 * backward that has no bufs.dresidual to put it in. */
START_TEST(epilogue_scratch_is_reported_and_taken_only_without_dresidual)
{
    clnorm_context *ctx = harness_ctx();
    ecase ec = {0};
    ec.desc = (clnorm_desc){.kind = CLNORM_BATCH, .layout = CLNORM_NCHW, .n = 4, .c = 8,
                            .d = 33, .eps = 1e-5f, .activation = CLNORM_ACTIVATION_SILU};
    ec.residual = ec.gamma = ec.beta = 1;
    ec.seed = 9;
    edata e;
    edata_make(&ec, &e);
    clnorm_desc plain = ec.desc;
    plain.activation = CLNORM_ACTIVATION_NONE;
    clnorm_plan *plan, *none;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &ec.desc, &plan));
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &plain, &none));
    ck_assert_uint_eq(clnorm_plan_scratch_bytes(plan, CLNORM_SCRATCH_EPILOGUE), e.total * 4);
    ck_assert_uint_eq(clnorm_plan_scratch_bytes(none, CLNORM_SCRATCH_EPILOGUE), 0);
    clnorm_buffers b = {0};
    inputs_make(&ec, &e, &b);
    b.y = harness_buffer(NULL, e.total * 4);
    b.save_mean = harness_buffer(NULL, ec.desc.c * 4);
    b.save_invstd = harness_buffer(NULL, ec.desc.c * 4);
    CLNORM_OK(ctx, clnorm_forward(plan, CLNORM_TRAINING, &b, 0, NULL, NULL));
    size_t fwd = clnorm_plan_scratch_bytes(plan, CLNORM_SCRATCH_HELD);
    b.dy = harness_buffer(e.xs, e.total * 4);
    b.dx = harness_buffer(NULL, e.total * 4);
    b.dgamma = harness_buffer(NULL, e.np * 4);
    b.dbeta = harness_buffer(NULL, e.np * 4);
    b.dresidual = harness_buffer(NULL, e.total * 4);
    size_t bwd = clnorm_plan_scratch_bytes(plan, CLNORM_SCRATCH_BACKWARD);
    CLNORM_OK(ctx, clnorm_backward(plan, CLNORM_TRAINING, &b, 0, NULL, NULL));
    ck_assert_uint_eq(clnorm_plan_scratch_bytes(plan, CLNORM_SCRATCH_HELD), fwd + bwd);
    cl_mem dres = b.dresidual;
    b.dresidual = NULL;
    CLNORM_OK(ctx, clnorm_backward(plan, CLNORM_TRAINING, &b, 0, NULL, NULL));
    ck_assert_uint_eq(clnorm_plan_scratch_bytes(plan, CLNORM_SCRATCH_HELD),
                      fwd + bwd + e.total * 4);
    harness_finish();
    cl_mem mems[] = {b.x,  b.residual, b.gamma,  b.beta,  b.y,  b.save_mean,
                     b.save_invstd, b.dy, b.dx, b.dgamma, b.dbeta, dres};
    release_all(mems, 12);
    clnorm_plan_release(plan);
    clnorm_plan_release(none);
    edata_free(&e);
}
END_TEST

int main(void)
{
    build_matrix();
    Suite *s = suite_create("epilogue");
    TCase *tc = tcase_create("epilogue");
    tcase_set_timeout(tc, 0);
    tcase_add_test(tc, reference_gradients_match_central_differences);
    tcase_add_loop_test(tc, forward_matches_reference, 0, ncases);
    tcase_add_loop_test(tc, backward_matches_reference, 0, ncases);
    tcase_add_test(tc, wide_channels_last_backward);
    tcase_add_test(tc, channels_first_batch_in_cache);
    tcase_add_test(tc, pipelined_rows);
    tcase_add_test(tc, bad_epilogues_are_rejected_naming_the_field);
    tcase_add_test(tc, same_input_gives_same_bits);
    tcase_add_test(tc, epilogue_scratch_is_reported_and_taken_only_without_dresidual);
    suite_add_tcase(s, tc);
    int status = harness_run(s);
    free(cases);
    return status;
}
