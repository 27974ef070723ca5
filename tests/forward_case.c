#include "forward_case.h"

#include "harness.h"
#include "reference.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kinds[] = {"BATCH", "LAYER", "INSTANCE", "GROUP", "RMS"};
static const char *const dtypes[] = {"f32", "f16", "bf16", "u8", "u16"};

const char *fcase_name(const fcase *fc, char *buf, size_t size)
{
    const clnorm_desc *d = &fc->desc;
    char types[16];
    snprintf(types, sizeof types, "%s%s%s", dtypes[d->dtype], d->y_dtype ? ">" : "",
             d->y_dtype ? dtypes[ref_y_storage(d)] : "");
    snprintf(buf, size, "%s/%zu %s %s %s %zux%zux%zu%s%s%s%s fill=%d", kinds[d->kind], d->groups,
             d->layout == CLNORM_NCHW ? "NCHW" : "NHWC", types,
             fc->mode == CLNORM_TRAINING ? "TRAINING" : "INFERENCE", d->n, d->c, d->d,
             fc->gamma ? " gamma" : "", fc->beta ? " beta" : "", fc->running ? " running" : "",
             fc->save ? " save" : "", (int)fc->fill);
    return buf;
}

void fcase_fill_x(const fcase *fc, float *x)
{
    const clnorm_desc *d = &fc->desc;
    harness_rng rng = {fc->seed};
    size_t total = d->n * d->c * d->d;
    if (fc->fill == FILL_NORMAL || fc->fill == FILL_NAN) {
        for (size_t i = 0; i < total; ++i)
            x[i] = (float)(fc->offset + fc->scale * harness_normal(&rng));
        if (fc->fill == FILL_NAN && total)
            x[ref_offset(d, 0, 0, d->d / 2)] = NAN; /* (0, 0, *) is in group 0 for every kind */
        return;
    }
    /* Exact and constant fills: walk each group's elements in order, giving pairs
     * m + k/4 and m - k/4 (and m for an odd one out): sums and squares are exact. */
    size_t groups = ref_groups(d);
    size_t *seen = calloc(groups, sizeof *seen);
    for (size_t n = 0; n < d->n; ++n)
        for (size_t c = 0; c < d->c; ++c)
            for (size_t s = 0; s < d->d; ++s) {
                size_t g = ref_group(d, n, c, s);
                float m = (float)((long)(g % 7) - 3) + (float)fc->offset;
                size_t k = seen[g]++;
                float step = fc->fill == FILL_CONSTANT ? 0.0f : 0.25f * (float)(1 + (k / 2) % 150);
                x[ref_offset(d, n, c, s)] = k % 2 ? m - step : m + step;
            }
    /* A group of odd size ends on an unpaired m + step: make it m. */
    memset(seen, 0, groups * sizeof *seen);
    size_t *size = calloc(groups, sizeof *size);
    for (size_t n = 0; n < d->n; ++n)
        for (size_t c = 0; c < d->c; ++c)
            for (size_t s = 0; s < d->d; ++s)
                size[ref_group(d, n, c, s)]++;
    for (size_t n = 0; n < d->n; ++n)
        for (size_t c = 0; c < d->c; ++c)
            for (size_t s = 0; s < d->d; ++s) {
                size_t g = ref_group(d, n, c, s);
                if (++seen[g] == size[g] && size[g] % 2)
                    x[ref_offset(d, n, c, s)] = (float)((long)(g % 7) - 3) + (float)fc->offset;
            }
    free(seen);
    free(size);
}

/* Fails unless |got - want| <= tol; NaN must meet NaN. Returns 1 if it failed. */
static int mismatch(const char *what, size_t i, double got, double want, double tol,
                    const char *name)
{
    if (isnan(want) ? isnan(got) : fabs(got - want) <= tol)
        return 0;
    ck_abort_msg("%s: %s[%zu] = %.9g, want %.9g (tolerance %.3g)", name, what, i, got, want, tol);
    return 1;
}

void fcase_check(const fcase *fc)
{
    clnorm_context *ctx = harness_ctx();
    const clnorm_desc *d = &fc->desc;
    char name[256];
    fcase_name(fc, name, sizeof name);
    size_t total = d->n * d->c * d->d, groups = ref_groups(d), np = ref_params(d);
    size_t esize = ref_storage_size(d->dtype);
    clnorm_dtype yt = ref_y_storage(&fc->desc);
    size_t ysize = ref_storage_size(yt);
    double most = ref_integer_most(yt);

    float *xf = malloc((total ? total : 1) * sizeof *xf);
    void *xs = malloc((total ? total : 1) * esize), *ys = malloc((total ? total : 1) * ysize);
    double *xd = malloc((total ? total : 1) * sizeof *xd), *yd = malloc((total ? total : 1) * sizeof *yd);
    double *want = malloc((total ? total : 1) * sizeof *want), *scale = malloc((total ? total : 1) * sizeof *scale);
    float *gamma = malloc(np * sizeof *gamma), *beta = malloc(np * sizeof *beta);
    float *rm = malloc(d->c * sizeof *rm), *rv = malloc(d->c * sizeof *rv);
    double *want_mean = malloc((groups + 1) * sizeof(double)),
           *want_inv = malloc((groups + 1) * sizeof(double));
    double *want_rm = malloc(d->c * sizeof(double)), *want_rv = malloc(d->c * sizeof(double));
    float *got_mean = malloc((groups + 1) * sizeof(float)), *got_inv = malloc((groups + 1) * sizeof(float));
    float *got_rm = malloc(d->c * sizeof(float)), *got_rv = malloc(d->c * sizeof(float));

    fcase_fill_x(fc, xf);
    ref_store(d->dtype, xf, xs, total);
    ref_load(d->dtype, xs, xd, total);
    harness_rng rng = {fc->seed ^ 0x5555};
    double ps = fc->param_scale > 0 ? fc->param_scale : 1.0;
    for (size_t i = 0; i < np; ++i) {
        gamma[i] = (float)(ps * (0.5 + harness_uniform(&rng)));
        beta[i] = (float)(fc->param_offset + ps * harness_normal(&rng));
    }
    for (size_t c = 0; c < d->c; ++c) {
        rm[c] = (float)(fc->offset + 0.1 * harness_normal(&rng));
        rv[c] = (float)(fc->scale * fc->scale * (0.5 + harness_uniform(&rng)));
    }

    ref_inputs in = {xd, fc->gamma ? gamma : NULL, fc->beta ? beta : NULL,
                     fc->running ? rm : NULL, fc->running ? rv : NULL, NULL};
    ref_outputs out = {want, want_mean, want_inv, want_rm, want_rv, NULL, NULL, scale};
    int valid = ref_forward(d, fc->mode, &in, &out) == 0;

    clnorm_plan *plan = NULL;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, d, &plan));
    ck_assert_uint_eq(clnorm_plan_stats_count(plan), groups);
    /* Sentinels: whatever the call does not write must keep them. */
    memset(ys, 0x7f, total * ysize);
    float sentinel = -12345.0f;
    for (size_t g = 0; g < groups; ++g)
        got_mean[g] = got_inv[g] = sentinel;
    clnorm_buffers b = {0};
    b.x = total ? harness_buffer(xs, total * esize) : NULL;
    b.y = total ? harness_buffer(ys, total * ysize) : NULL;
    if (fc->gamma)
        b.gamma = harness_buffer(gamma, np * sizeof *gamma);
    if (fc->beta)
        b.beta = harness_buffer(beta, np * sizeof *beta);
    if (fc->running) {
        b.running_mean = harness_buffer(rm, d->c * sizeof *rm);
        b.running_var = harness_buffer(rv, d->c * sizeof *rv);
    }
    if (fc->save) {
        b.save_mean = harness_buffer(got_mean, (groups + 1) * sizeof(float));
        b.save_invstd = harness_buffer(got_inv, (groups + 1) * sizeof(float));
    }
    cl_event done = NULL;
    clnorm_status st = clnorm_forward(plan, fc->mode, &b, 0, NULL, &done);
    if (!valid) {
        ck_assert_msg(st == CLNORM_ERROR_INVALID_ARGUMENT, "%s: want INVALID_ARGUMENT, got %s",
                      name, clnorm_status_string(st));
        ck_assert_ptr_null(done);
    } else {
        ck_assert_msg(st == CLNORM_SUCCESS, "%s: %s: %s", name, clnorm_status_string(st),
                      clnorm_context_last_error(ctx));
        ck_assert_ptr_nonnull(done);
        CL_OK(clWaitForEvents(1, &done));
        clReleaseEvent(done);
    }
    if (total)
        harness_read(b.y, ys, total * ysize);
    if (fc->save) {
        harness_read(b.save_mean, got_mean, groups * sizeof(float));
        harness_read(b.save_invstd, got_inv, groups * sizeof(float));
    }
    if (fc->running) {
        harness_read(b.running_mean, got_rm, d->c * sizeof(float));
        harness_read(b.running_var, got_rv, d->c * sizeof(float));
    }
    ref_load(yt, ys, yd, total);

    if (!valid) {
        /* Rejected: nothing written. */
        unsigned char *bytes = ys;
        for (size_t i = 0; i < total * ysize; ++i)
            ck_assert_msg(bytes[i] == 0x7f, "%s: rejected call wrote y", name);
        for (size_t g = 0; fc->save && g < groups; ++g)
            ck_assert_msg(got_mean[g] == sentinel && got_inv[g] == sentinel,
                          "%s: rejected call wrote save_*", name);
        for (size_t c = 0; fc->running && c < d->c; ++c)
            ck_assert_msg(got_rm[c] == rm[c] && got_rv[c] == rv[c],
                          "%s: rejected call wrote running statistics", name);
    } else {
        /* Tolerance from the arithmetic (DESIGN.md section 7): max|x| of the element's group
         * times its |invstd * gamma|, plus the storage type's rounding of y. */
        double *gmax = calloc(groups, sizeof *gmax);
        for (size_t n = 0; n < d->n; ++n)
            for (size_t c = 0; c < d->c; ++c)
                for (size_t s = 0; s < d->d; ++s) {
                    double v = fabs(xd[ref_offset(d, n, c, s)]);
                    size_t g = ref_group(d, n, c, s);
                    if (v > gmax[g])
                        gmax[g] = v;
                }
        double factor = (fc->tol > 0 ? fc->tol : 16.0) * ldexp(1, -23);
        double u = ref_unit_roundoff(yt);
        int use_running = fc->running && fc->mode == CLNORM_INFERENCE;
        for (size_t n = 0; n < d->n; ++n)
            for (size_t c = 0; c < d->c; ++c)
                for (size_t s = 0; s < d->d; ++s) {
                    size_t i = ref_offset(d, n, c, s), g = ref_group(d, n, c, s);
                    double ref_mag = use_running ? fabs(rm[c]) : gmax[g];
                    double tol = factor * (ref_mag + fabs(xd[i])) * scale[i] +
                                 (u + ldexp(1, -23)) * fabs(want[i]) + 1e-30;
                    if (fc->fill == FILL_CONSTANT && d->kind != CLNORM_RMS && d->eps > 0) {
                        /* Exactly beta (as stored), never NaN. */
                        float bf = fc->beta ? beta[ref_param(d, n, c, s)] : 0.0f;
                        double bs;
                        uint32_t stored;
                        ref_store(yt, &bf, &stored, 1);
                        ref_load(yt, &stored, &bs, 1);
                        if (use_running)
                            tol = factor * 4 * (fabs(rm[c]) + fabs(xd[i])) * scale[i] + u * fabs(want[i]);
                        else
                            ck_assert_msg(yd[i] == bs, "%s: constant group gives y[%zu] = %.9g, "
                                          "want beta = %.9g", name, i, yd[i], bs);
                    }
                    if (most > 0) {
                        /* An integer y: the rounding and saturation of some value within the
                         * tolerance of the exact one; NaN gives 0. */
                        double lo = isnan(want[i]) ? 0 : ref_round_sat(want[i] - tol, most);
                        double hi = isnan(want[i]) ? 0 : ref_round_sat(want[i] + tol, most);
                        if (yd[i] < lo || yd[i] > hi) {
                            ck_abort_msg("%s: y[%zu] = %.0f, want %.0f..%.0f (exact %.9g)", name,
                                         i, yd[i], lo, hi, want[i]);
                            goto done;
                        }
                    } else if (mismatch("y", i, yd[i], want[i], tol, name)) {
                        goto done;
                    }
                }
        if (fc->save && !use_running) {
            for (size_t g = 0; g < groups; ++g) {
                if (d->kind != CLNORM_RMS &&
                    mismatch("save_mean", g, got_mean[g], want_mean[g], factor * gmax[g], name))
                    goto done;
                if (d->kind == CLNORM_RMS)
                    ck_assert_msg(got_mean[g] == sentinel, "%s: RMS wrote save_mean", name);
                if (mismatch("save_invstd", g, got_inv[g], want_inv[g],
                             64 * factor * fabs(want_inv[g]) + 1e-30, name))
                    goto done;
            }
        }
        if (fc->save && use_running)
            for (size_t g = 0; g < groups; ++g)
                ck_assert_msg(got_mean[g] == sentinel && got_inv[g] == sentinel,
                              "%s: INFERENCE with running statistics wrote save_*", name);
        for (size_t c = 0; fc->running && c < d->c; ++c) {
            if (mismatch("running_mean", c, got_rm[c], want_rm[c],
                         64 * factor * (fabs(want_rm[c]) + fc->scale), name) ||
                mismatch("running_var", c, got_rv[c], want_rv[c],
                         64 * factor * fabs(want_rv[c]) + 1e-30, name))
                goto done;
        }
    done:
        free(gmax);
    }

    cl_mem mems[] = {b.x, b.y, b.gamma, b.beta, b.running_mean, b.running_var, b.save_mean,
                     b.save_invstd};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; ++i)
        if (mems[i])
            clReleaseMemObject(mems[i]);
    clnorm_plan_release(plan);
    free(xf); free(xs); free(ys); free(xd); free(yd); free(want); free(scale);
    free(gamma); free(beta); free(rm); free(rv); free(want_mean); free(want_inv);
    free(want_rm); free(want_rv); free(got_mean); free(got_inv); free(got_rm); free(got_rv);
}
