/* Backward against the float64 reference (itself checked against central differences of the
 * float64 forward), over kind x layout x dtype x mode x optional buffers. */
#include "harness.h"
#include "reference.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bcase {
    clnorm_desc desc;
    clnorm_mode mode;
    int gamma, running, save, want_dx, want_dgamma, want_dbeta, in_place;
    double offset;
    uint64_t seed;
} bcase;

static bcase *cases;
static int ncases;

static double norm(const double *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; ++i)
        s += v[i] * v[i];
    return sqrt(s);
}

/* Relative L2 error. With scale, relative to at least a tenth of the terms dx is the
 * difference of: where they cancel (a group of one or two elements, whose output barely
 * depends on x), float rounding of the terms is all that is left. */
static double rel_l2(const double *got, const double *want, const double *scale, size_t n)
{
    double num = 0;
    for (size_t i = 0; i < n; ++i)
        num += (got[i] - want[i]) * (got[i] - want[i]);
    double den = norm(want, n);
    if (scale && 0.1 * norm(scale, n) > den)
        den = 0.1 * norm(scale, n);
    return den > 0 ? sqrt(num) / den : sqrt(num);
}

static const char *name_of(const bcase *bc, char *buf, size_t size)
{
    static const char *const kinds[] = {"BATCH", "LAYER", "INSTANCE", "GROUP", "RMS"};
    const clnorm_desc *d = &bc->desc;
    snprintf(buf, size, "%s/%zu %s dtype%d %s %zux%zux%zu%s%s%s%s%s%s%s", kinds[d->kind],
             d->groups, d->layout ? "NHWC" : "NCHW", (int)d->dtype,
             bc->mode ? "INFERENCE" : "TRAINING", d->n, d->c, d->d, bc->gamma ? " gamma" : "",
             bc->running ? " running" : "", bc->save ? " save" : "", bc->want_dx ? " dx" : "",
             bc->want_dgamma ? " dgamma" : "", bc->want_dbeta ? " dbeta" : "",
             bc->in_place ? " in-place" : "");
    return buf;
}

static void check_case(const bcase *bc)
{
    clnorm_context *ctx = harness_ctx();
    const clnorm_desc *d = &bc->desc;
    char name[256];
    name_of(bc, name, sizeof name);
    size_t total = d->n * d->c * d->d, np = ref_params(d), groups = ref_groups(d);
    size_t es = d->dtype == CLNORM_F32 ? 4 : 2;
    float *xf = malloc(total * 4), *dyf = malloc(total * 4), *gamma = malloc(np * 4);
    void *xs = malloc(total * es), *dys = malloc(total * es), *dxs = malloc(total * es);
    double *xd = malloc(total * 8), *dyd = malloc(total * 8), *dxd = malloc(total * 8);
    double *want_dx = malloc(total * 8), *want_dg = malloc(np * 8), *want_db = malloc(np * 8);
    double *mean = malloc(groups * 8), *inv = malloc(groups * 8);
    float *rm = malloc(d->c * 4), *rv = malloc(d->c * 4), *dg = malloc(np * 4), *db = malloc(np * 4);
    double *dgd = calloc(np, 8), *dbd = calloc(np, 8), *y = malloc(total * 8);
    float *smean = malloc(groups * 4), *sinv = malloc(groups * 4);
    harness_rng rng = {bc->seed};
    for (size_t i = 0; i < total; ++i) {
        xf[i] = (float)(bc->offset + harness_normal(&rng));
        dyf[i] = (float)harness_normal(&rng);
    }
    for (size_t i = 0; i < np; ++i)
        gamma[i] = (float)(0.5 + harness_uniform(&rng));
    for (size_t c = 0; c < d->c; ++c) {
        rm[c] = (float)(bc->offset + 0.1 * harness_normal(&rng));
        rv[c] = (float)(0.5 + harness_uniform(&rng));
    }
    ref_store(d->dtype, xf, xs, total);
    ref_store(d->dtype, dyf, dys, total);
    ref_load(d->dtype, xs, xd, total);
    ref_load(d->dtype, dys, dyd, total);

    ref_inputs in = {xd, bc->gamma ? gamma : NULL, NULL, bc->running ? rm : NULL,
                     bc->running ? rv : NULL, dyd};
    ref_outputs fo = {y, mean, inv, NULL, NULL, NULL, NULL, NULL};
    int valid = ref_forward(d, CLNORM_TRAINING, &in, &fo) == 0 || (bc->running && bc->mode);
    double *scale = malloc(total * 8);
    ref_outputs bo = {want_dx, NULL, NULL, NULL, NULL, want_dg, want_db, scale};
    if (valid)
        ck_assert_int_eq(ref_backward(d, bc->mode, &in, &bo), 0);
    for (size_t g = 0; g < groups; ++g) {
        smean[g] = (float)mean[g];
        sinv[g] = (float)inv[g];
    }

    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, d, &plan));
    clnorm_buffers b = {0};
    b.x = harness_buffer(xs, total * es);
    b.dy = harness_buffer(dys, total * es);
    b.dx = bc->in_place ? b.dy : bc->want_dx ? harness_buffer(NULL, total * es) : NULL;
    if (bc->gamma)
        b.gamma = harness_buffer(gamma, np * 4);
    if (bc->want_dgamma)
        b.dgamma = harness_buffer(NULL, np * 4);
    if (bc->want_dbeta)
        b.dbeta = harness_buffer(NULL, np * 4);
    if (bc->running) {
        b.running_mean = harness_buffer(rm, d->c * 4);
        b.running_var = harness_buffer(rv, d->c * 4);
    }
    if (bc->save && valid) {
        b.save_mean = harness_buffer(smean, groups * 4);
        b.save_invstd = harness_buffer(sinv, groups * 4);
    }
    cl_event done;
    clnorm_status st = clnorm_backward(plan, bc->mode, &b, 0, NULL, &done);
    if (!valid) {
        ck_assert_msg(st == CLNORM_ERROR_INVALID_ARGUMENT, "%s: %s", name, clnorm_status_string(st));
    } else {
        ck_assert_msg(st == CLNORM_SUCCESS, "%s: %s: %s", name, clnorm_status_string(st),
                      clnorm_context_last_error(ctx));
        CL_OK(clWaitForEvents(1, &done));
        clReleaseEvent(done);
        double tol = d->dtype == CLNORM_F32 ? 1e-5 : d->dtype == CLNORM_F16 ? 2e-3 : 1.6e-2;
        if (b.dx) {
            harness_read(b.dx, dxs, total * es);
            ref_load(d->dtype, dxs, dxd, total);
            double e = rel_l2(dxd, want_dx, scale, total);
            ck_assert_msg(e <= tol, "%s: dx relative L2 error %.3g > %.3g", name, e, tol);
        }
        /* Parameter gradients are float sums: tight whatever the storage type, but a float
         * mean of data offset by m is only known to a few ulps of m (2^-24 m each), which
         * shifts dgamma by that times invstd * dbeta. */
        double ptol = d->dtype == CLNORM_F32 ? 1e-5 : 1e-4;
        double shift = ldexp(fabs(bc->offset), -20) * norm(want_db, np);
        if (b.dgamma) {
            harness_read(b.dgamma, dg, np * 4);
            for (size_t i = 0; i < np; ++i)
                dgd[i] = dg[i];
            double e = rel_l2(dgd, want_dg, NULL, np);
            double t = ptol + shift / norm(want_dg, np);
            ck_assert_msg(e <= t, "%s: dgamma relative L2 error %.3g > %.3g", name, e, t);
        }
        if (b.dbeta) {
            harness_read(b.dbeta, db, np * 4);
            for (size_t i = 0; i < np; ++i)
                dbd[i] = db[i];
            double e = rel_l2(dbd, want_db, NULL, np);
            ck_assert_msg(e <= ptol, "%s: dbeta relative L2 error %.3g", name, e);
        }
    }
    cl_mem mems[] = {b.x, b.dy, bc->in_place ? NULL : b.dx, b.gamma, b.dgamma, b.dbeta,
                     b.running_mean, b.running_var, b.save_mean, b.save_invstd};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; ++i)
        if (mems[i])
            clReleaseMemObject(mems[i]);
    clnorm_plan_release(plan);
    free(xf); free(dyf); free(gamma); free(xs); free(dys); free(dxs); free(xd); free(dyd);
    free(dxd); free(want_dx); free(want_dg); free(want_db); free(mean); free(inv); free(rm);
    free(rv); free(dg); free(db); free(dgd); free(dbd); free(y); free(smean); free(sinv);
    free(scale);
}

static void add(bcase bc)
{
    cases = realloc(cases, (size_t)(ncases + 1) * sizeof *cases);
    cases[ncases++] = bc;
}

static void build_matrix(void)
{
    static const size_t big[][3] = {{2, 6, 15}, {3, 4, 1}, {1, 8, 37}, {4, 16, 65}};
    static const size_t small[][3] = {{2, 6, 5}, {3, 4, 1}};
    const size_t(*shapes)[3] = harness_small() ? small : big;
    int nshapes = harness_small() ? 2 : 4;
    uint64_t seed = 7;
    for (int sh = 0; sh < nshapes; ++sh)
        for (int kind = 0; kind < 5; ++kind)
            for (size_t gi = 0; gi < (kind == CLNORM_GROUP ? 3u : 1u); ++gi)
                for (int layout = 0; layout < 2; ++layout)
                    for (int dtype = 0; dtype < 3; ++dtype)
                        for (int mode = 0; mode < 2; ++mode)
                            for (int variant = 0; variant < 3; ++variant) {
                                size_t c = shapes[sh][1];
                                size_t g = gi == 0 ? 1 : gi == 1 ? c / 2 : c;
                                bcase bc = {0};
                                bc.desc = (clnorm_desc){
                                    .kind = (clnorm_kind)kind, .layout = (clnorm_layout)layout,
                                    .dtype = (clnorm_dtype)dtype, .n = shapes[sh][0], .c = c,
                                    .d = shapes[sh][2], .groups = kind == CLNORM_GROUP ? g : 0,
                                    .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
                                };
                                bc.mode = (clnorm_mode)mode;
                                int has_running = kind == CLNORM_BATCH || kind == CLNORM_INSTANCE;
                                bc.gamma = variant != 1;
                                bc.running = has_running && variant != 2;
                                bc.save = variant == 0;
                                bc.want_dx = 1;
                                bc.want_dgamma = variant != 2;
                                bc.want_dbeta = variant != 1;
                                bc.in_place = variant == 1;
                                bc.offset = kind == CLNORM_RMS ? 0.5 : 2.0;
                                bc.seed = seed++;
                                add(bc);
                            }
}

START_TEST(matrix_matches_reference) { check_case(&cases[_i]); }
END_TEST

START_TEST(only_parameter_gradients)
{
    for (int kind = 0; kind < 5; ++kind)
        for (int layout = 0; layout < 2; ++layout) {
            bcase bc = {0};
            bc.desc = (clnorm_desc){
                .kind = (clnorm_kind)kind, .layout = (clnorm_layout)layout, .dtype = CLNORM_F32,
                .n = 3, .c = 4, .d = harness_small() ? 5 : 77, .groups = 2, .eps = 1e-5f,
                .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
            };
            bc.gamma = 1;
            bc.want_dgamma = bc.want_dbeta = 1;
            bc.seed = 100 + (uint64_t)kind;
            check_case(&bc);
            bc.want_dgamma = 0;
            check_case(&bc);
        }
}
END_TEST

START_TEST(every_backward_path_matches_reference)
{
    /* LAYER/RMS rows on CPUs take one fused pass per row when a row fits in cache and there
     * are rows for every core: shapes on both sides of those limits (65536 elements, 8 rows). */
    static const size_t big[][3] = {{33, 10, 100}, {9, 1, 65536}, {9, 1, 65537}, {7, 4, 5},
                                    {64, 3, 7}};
    static const size_t small[][3] = {{9, 5, 7}, {7, 4, 5}};
    const size_t(*shapes)[3] = harness_small() ? small : big;
    int nshapes = harness_small() ? 2 : 5;
    for (int sh = 0; sh < nshapes; ++sh)
        for (int kind = CLNORM_LAYER; kind <= CLNORM_RMS; kind += CLNORM_RMS - CLNORM_LAYER)
            for (int layout = 0; layout < 2; ++layout)
                for (int dtype = 0; dtype < 3; dtype += 2)
                    for (int variant = 0; variant < 3; ++variant) {
                        bcase bc = {0};
                        bc.desc = (clnorm_desc){
                            .kind = (clnorm_kind)kind, .layout = (clnorm_layout)layout,
                            .dtype = (clnorm_dtype)dtype, .n = shapes[sh][0], .c = shapes[sh][1],
                            .d = shapes[sh][2], .groups = 0, .eps = 1e-5f, .momentum = 0.1f,
                            .y_dtype = CLNORM_Y_AS_X
                        };
                        bc.mode = variant == 2 ? CLNORM_INFERENCE : CLNORM_TRAINING;
                        bc.gamma = variant != 1;
                        bc.save = variant == 0;
                        bc.want_dx = variant != 2 || sh % 2;
                        bc.want_dgamma = variant != 1;
                        bc.want_dbeta = variant != 0;
                        bc.in_place = variant == 1;
                        bc.offset = 3.0;
                        bc.seed = 300 + (uint64_t)(sh * 100 + kind * 10 + variant);
                        check_case(&bc);
                    }
}
END_TEST

START_TEST(every_column_shape_matches_reference)
{
    /* Channels-last slices are read in the forward's column tiles: 64 or 32 columns (also in
     * rows wider than 128: 192), 8, and for 2..7 channels whole runs whose vector lanes cycle
     * through the channels; rows that leave a partial period of lanes at a block's end. With
     * samples for every core, INSTANCE and GROUP take one pass per sample (bwd_slab) on CPUs. */
    static const size_t big[][3] = {{3, 64, 37}, {2, 96, 21}, {2, 40, 33}, {5, 3, 301},
                                    {3, 7, 97},  {2, 5, 1001}, {4, 6, 19}, {2, 2, 77},
                                    {9, 16, 45}, {8, 96, 13}, {10, 24, 7}, {8, 64, 700},
                                    {4, 192, 90}};
    static const size_t small[][3] = {{2, 64, 3}, {2, 3, 11}, {2, 6, 5}, {5, 16, 3}};
    const size_t(*shapes)[3] = harness_small() ? small : big;
    int nshapes = harness_small() ? 4 : 13;
    static const int kinds[] = {CLNORM_BATCH, CLNORM_INSTANCE, CLNORM_GROUP};
    for (int sh = 0; sh < nshapes; ++sh)
        for (int k = 0; k < 3; ++k)
            for (int variant = 0; variant < 3; ++variant) {
                size_t c = shapes[sh][1];
                bcase bc = {0};
                bc.desc = (clnorm_desc){
                    .kind = (clnorm_kind)kinds[k], .layout = CLNORM_NHWC,
                    .dtype = variant == 2 ? CLNORM_BF16 : CLNORM_F32, .n = shapes[sh][0], .c = c,
                    .d = shapes[sh][2], .groups = c % 2 ? 1 : c / 2, .eps = 1e-5f, .momentum = 0.1f,
                    .y_dtype = CLNORM_Y_AS_X
                };
                bc.mode = CLNORM_TRAINING;
                bc.gamma = variant != 1;
                bc.save = variant == 0;
                bc.want_dx = bc.want_dgamma = bc.want_dbeta = 1;
                bc.in_place = variant == 1;
                bc.offset = 3.0;
                bc.seed = 500 + (uint64_t)(sh * 100 + k * 10 + variant);
                check_case(&bc);
            }
}
END_TEST

/* The GPU row kernels' edges, as in the forward suite: groups of the work-group size and one
 * more, channels-first BATCH blocks of several segments, rows of several blocks. */
START_TEST(row_blocks_around_the_work_group_size)
{
    static const size_t shapes[][3] = {{2, 1, 256}, {2, 1, 257}, {30, 2, 100}, {2, 1, 5000}};
    for (int sh = 0; sh < 4; ++sh)
        for (int kind = 0; kind < 5; ++kind)
            for (int layout = 0; layout < 2; ++layout) {
                bcase bc = {0};
                bc.desc = (clnorm_desc){
                    .kind = (clnorm_kind)kind, .layout = (clnorm_layout)layout, .dtype = CLNORM_F32,
                    .n = shapes[sh][0], .c = shapes[sh][1], .d = shapes[sh][2],
                    .groups = shapes[sh][1], .eps = 1e-5f, .momentum = 0.1f,
                    .y_dtype = CLNORM_Y_AS_X
                };
                bc.gamma = bc.want_dx = bc.want_dgamma = bc.want_dbeta = 1;
                bc.offset = 3.0;
                bc.seed = 400 + (uint64_t)(sh * 10 + kind);
                check_case(&bc);
            }
}
END_TEST

START_TEST(channels_first_groups_match_reference)
{
    /* Channels-first INSTANCE and GROUP with groups for every core take one pass per group on
     * CPUs (bwd_groups) while a group fits in cache (65536 elements): both sides of that limit,
     * rows of several blocks, and rows shorter than a vector. */
    static const size_t big[][3] = {{9, 16, 45}, {3, 40, 700}, {4, 8, 16384}, {4, 8, 16385},
                                    {8, 2, 65536}, {8, 2, 65537}, {6, 4, 5}};
    static const size_t small[][3] = {{5, 4, 7}, {3, 6, 3}};
    const size_t(*shapes)[3] = harness_small() ? small : big;
    int nshapes = harness_small() ? 2 : 7;
    for (int sh = 0; sh < nshapes; ++sh)
        for (int kind = CLNORM_INSTANCE; kind <= CLNORM_GROUP; ++kind)
            for (int variant = 0; variant < 3; ++variant) {
                size_t c = shapes[sh][1];
                bcase bc = {0};
                bc.desc = (clnorm_desc){
                    .kind = (clnorm_kind)kind, .layout = CLNORM_NCHW,
                    .dtype = variant == 2 ? CLNORM_F16 : CLNORM_F32, .n = shapes[sh][0], .c = c,
                    .d = shapes[sh][2], .groups = kind == CLNORM_GROUP ? c / 2 : 0, .eps = 1e-5f,
                    .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
                };
                bc.gamma = variant != 1;
                bc.save = variant == 0;
                bc.want_dx = bc.want_dgamma = 1;
                bc.want_dbeta = variant != 2;
                bc.in_place = variant == 1;
                bc.offset = 5.0;
                bc.seed = 700 + (uint64_t)(sh * 100 + kind * 10 + variant);
                check_case(&bc);
            }
}
END_TEST

START_TEST(channels_first_batch_in_cache_matches_reference)
{
    /* Channels-first BATCH with channels for every core takes bwd_groups on CPUs while a
     * channel (n segments of D) fits in cache (65536 elements) and its segments are at least
     * 128 long: both sides of each limit, segments of odd length and of several blocks. */
    static const size_t big[][3] = {{4, 16, 127}, {4, 16, 128}, {3, 8, 131}, {2, 12, 5000},
                                    {4, 8, 16384}, {5, 8, 16384}};
    static const size_t small[][3] = {{3, 4, 130}, {2, 5, 128}};
    const size_t(*shapes)[3] = harness_small() ? small : big;
    int nshapes = harness_small() ? 2 : 6;
    for (int sh = 0; sh < nshapes; ++sh)
        for (int variant = 0; variant < 4; ++variant) {
            bcase bc = {0};
            bc.desc = (clnorm_desc){
                .kind = CLNORM_BATCH, .layout = CLNORM_NCHW,
                .dtype = variant == 2 ? CLNORM_F16 : variant == 3 ? CLNORM_BF16 : CLNORM_F32,
                .n = shapes[sh][0], .c = shapes[sh][1], .d = shapes[sh][2], .eps = 1e-5f,
                .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
            };
            bc.gamma = variant != 1;
            bc.save = variant != 1; /* else the statistics are recomputed from x */
            bc.want_dx = bc.want_dgamma = 1;
            bc.want_dbeta = variant != 2;
            bc.in_place = variant == 1;
            bc.offset = 5.0;
            bc.seed = 800 + (uint64_t)(sh * 10 + variant);
            check_case(&bc);
        }
}
END_TEST

START_TEST(pipelined_rows_match_reference)
{
    /* LAYER and RMS rows of one block (up to 4096 elements), several to a work-item, are
     * pipelined on CPUs (bwd_rows: the next row's sums inside this row's dx loop): rows
     * shorter than a vector and of odd length, one block and one more (not pipelined), row
     * counts that leave a last work-item a single row; with and without gamma, dgamma, dbeta
     * and save_*, in place (dx over dy), every floating-point storage. */
    static const size_t big[][3] = {{300, 1, 37}, {129, 8, 125}, {70, 1, 4096}, {70, 1, 4097},
                                    {131, 3, 11}, {200, 1, 5}};
    static const size_t small[][3] = {{70, 1, 13}, {71, 4, 9}};
    const size_t(*shapes)[3] = harness_small() ? small : big;
    int nshapes = harness_small() ? 2 : 6;
    for (int sh = 0; sh < nshapes; ++sh)
        for (int k = 0; k < 2; ++k)
            for (int variant = 0; variant < 4; ++variant) {
                bcase bc = {0};
                bc.desc = (clnorm_desc){
                    .kind = k ? CLNORM_RMS : CLNORM_LAYER, .layout = (clnorm_layout)(variant % 2),
                    .dtype = variant == 2 ? CLNORM_F16 : variant == 3 ? CLNORM_BF16 : CLNORM_F32,
                    .n = shapes[sh][0], .c = shapes[sh][1], .d = shapes[sh][2], .eps = 1e-5f,
                    .y_dtype = CLNORM_Y_AS_X
                };
                bc.gamma = variant != 1;
                bc.save = variant != 1;
                bc.want_dx = 1;
                bc.want_dgamma = variant != 2;
                bc.want_dbeta = variant != 3;
                bc.in_place = variant == 1;
                bc.offset = 4.0;
                bc.seed = 1300 + (uint64_t)(sh * 10 + k * 4 + variant);
                check_case(&bc);
            }
}
END_TEST

START_TEST(long_reductions_with_offset)
{
    /* A million elements per statistics group, mean 1e4: sums stay accurate. */
    for (int kind = 0; kind < 5; ++kind)
        for (int layout = 0; layout < 2; ++layout) {
            bcase bc = {0};
            size_t n = kind == CLNORM_BATCH ? 16 : 2;
            bc.desc = (clnorm_desc){
                .kind = (clnorm_kind)kind, .layout = (clnorm_layout)layout, .dtype = CLNORM_F32,
                .n = n, .c = 4, .d = kind == CLNORM_BATCH ? 16384 : 262144, .groups = 2,
                .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
            };
            bc.gamma = bc.want_dx = bc.want_dgamma = bc.want_dbeta = 1;
            bc.offset = 1e4;
            bc.seed = 200 + (uint64_t)kind;
            check_case(&bc);
        }
}
END_TEST

START_TEST(same_input_gives_same_bits)
{
    clnorm_context *ctx = harness_ctx();
    size_t N = 4, C = 8, D = harness_small() ? 9 : 3000, total = N * C * D;
    float *x = malloc(total * 4), *dy = malloc(total * 4), *a = malloc(total * 4),
          *b2 = malloc(total * 4);
    harness_rng rng = {3};
    for (size_t i = 0; i < total; ++i) {
        x[i] = (float)(50 + harness_normal(&rng));
        dy[i] = (float)harness_normal(&rng);
    }
    for (int kind = 0; kind < 5; ++kind) {
        clnorm_desc desc = {
            .kind = (clnorm_kind)kind, .layout = CLNORM_NHWC, .dtype = CLNORM_F32, .n = N, .c = C,
            .d = D, .groups = 4, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
        };
        clnorm_plan *plan;
        CLNORM_OK(ctx, clnorm_plan_create(ctx, &desc, &plan));
        clnorm_buffers b = {0};
        b.x = harness_buffer(x, total * 4);
        b.dy = harness_buffer(dy, total * 4);
        b.dx = harness_buffer(NULL, total * 4);
        CLNORM_OK(ctx, clnorm_backward(plan, CLNORM_TRAINING, &b, 0, NULL, NULL));
        harness_read(b.dx, a, total * 4);
        CLNORM_OK(ctx, clnorm_backward(plan, CLNORM_TRAINING, &b, 0, NULL, NULL));
        harness_read(b.dx, b2, total * 4);
        ck_assert_msg(memcmp(a, b2, total * 4) == 0, "kind %d differs between runs", kind);
        clReleaseMemObject(b.x);
        clReleaseMemObject(b.dy);
        clReleaseMemObject(b.dx);
        clnorm_plan_release(plan);
    }
    free(x); free(dy); free(a); free(b2);
}
END_TEST

/* The reference's gradients are those of its own forward: central differences of
 * L = sum(dy * y) in float64, for every kind, on a small problem. */
START_TEST(reference_matches_finite_differences)
{
    for (int kind = 0; kind < 5; ++kind)
        for (int mode = 0; mode < 2; ++mode) {
            clnorm_desc d = {
                .kind = (clnorm_kind)kind, .layout = CLNORM_NHWC, .dtype = CLNORM_F32, .n = 2,
                .c = 4, .d = 3, .groups = 2, .eps = 1e-3f, .momentum = 0.1f,
                .y_dtype = CLNORM_Y_AS_X
            };
            size_t total = 24, np = ref_params(&d);
            double x[24], dy[24], y[24], dx[24], dg[12], db[12];
            float gamma[12], beta[12], rm[4] = {0.1f, -0.2f, 0.3f, 0.0f}, rv[4] = {1, 2, 0.5f, 1.5f};
            harness_rng rng = {(uint64_t)(kind * 2 + mode + 1)};
            for (size_t i = 0; i < total; ++i) {
                x[i] = harness_normal(&rng);
                dy[i] = harness_normal(&rng);
            }
            for (size_t i = 0; i < np; ++i) {
                gamma[i] = (float)(0.5 + harness_uniform(&rng));
                beta[i] = (float)harness_normal(&rng);
            }
            int running = mode == CLNORM_INFERENCE && (kind == CLNORM_BATCH || kind == CLNORM_INSTANCE);
            ref_inputs in = {x, gamma, beta, running ? rm : NULL, running ? rv : NULL, dy};
            ref_outputs bo = {dx, NULL, NULL, NULL, NULL, dg, db, NULL};
            ck_assert_int_eq(ref_backward(&d, (clnorm_mode)mode, &in, &bo), 0);
            ref_outputs fo = {y, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
            const double h = 1e-6;
            for (size_t i = 0; i < total; ++i) {
                double keep = x[i], lp = 0, lm = 0;
                x[i] = keep + h;
                ref_forward(&d, (clnorm_mode)mode, &in, &fo);
                for (size_t k = 0; k < total; ++k)
                    lp += dy[k] * y[k];
                x[i] = keep - h;
                ref_forward(&d, (clnorm_mode)mode, &in, &fo);
                for (size_t k = 0; k < total; ++k)
                    lm += dy[k] * y[k];
                x[i] = keep;
                double fd = (lp - lm) / (2 * h);
                ck_assert_msg(fabs(fd - dx[i]) <= 1e-6 * (1 + fabs(fd)),
                              "kind %d mode %d: dx[%zu] = %.10g, finite difference %.10g", kind,
                              mode, i, dx[i], fd);
            }
            for (size_t j = 0; j < np; ++j) {
                float keep = gamma[j];
                double lp = 0, lm = 0;
                gamma[j] = keep + 1e-3f;
                double hp = (double)gamma[j] - keep;
                ref_forward(&d, (clnorm_mode)mode, &in, &fo);
                for (size_t k = 0; k < total; ++k)
                    lp += dy[k] * y[k];
                gamma[j] = keep;
                ref_forward(&d, (clnorm_mode)mode, &in, &fo);
                for (size_t k = 0; k < total; ++k)
                    lm += dy[k] * y[k];
                ck_assert_msg(fabs((lp - lm) / hp - dg[j]) <= 1e-6 * (1 + fabs(dg[j])),
                              "kind %d: dgamma[%zu]", kind, j);
            }
        }
}
END_TEST

START_TEST(rejected_calls_write_nothing)
{
    clnorm_context *ctx = harness_ctx();
    clnorm_desc desc = {
        .kind = CLNORM_BATCH, .layout = CLNORM_NCHW, .dtype = CLNORM_F32, .n = 2, .c = 3, .d = 4,
        .groups = 0, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
    };
    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &desc, &plan));
    float fill[24];
    for (int i = 0; i < 24; ++i)
        fill[i] = 42.0f;
    clnorm_buffers b = {0};
    b.x = harness_buffer(fill, sizeof fill);
    b.dx = harness_buffer(fill, sizeof fill);
    b.dgamma = harness_buffer(fill, 12);
    struct {
        const char *field;
        int what;
    } bad[] = {{"bufs.dy", 0}, {"bufs.save_invstd", 1}, {"bufs.dgamma", 2}, {"mode", 3},
                 {"bufs.running_mean", 4}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; ++k) {
        clnorm_buffers t = b;
        cl_mem small = harness_buffer(fill, 4), any = harness_buffer(fill, sizeof fill);
        clnorm_mode mode = CLNORM_TRAINING;
        if (bad[k].what != 0)
            t.dy = any;
        if (bad[k].what == 1)
            t.save_mean = any;
        if (bad[k].what == 2)
            t.dgamma = small;
        if (bad[k].what == 3)
            mode = (clnorm_mode)5;
        if (bad[k].what == 4)
            t.running_var = any;
        ck_assert_int_eq(clnorm_backward(plan, mode, &t, 0, NULL, NULL),
                         CLNORM_ERROR_INVALID_ARGUMENT);
        ck_assert_msg(strstr(clnorm_context_last_error(ctx), bad[k].field),
                      "\"%s\" does not name %s", clnorm_context_last_error(ctx), bad[k].field);
        float got[24];
        harness_read(b.dx, got, sizeof got);
        for (int i = 0; i < 24; ++i)
            ck_assert_float_eq(got[i], 42.0f);
        harness_read(b.dgamma, got, 12);
        for (int i = 0; i < 3; ++i)
            ck_assert_float_eq(got[i], 42.0f);
        clReleaseMemObject(small);
        clReleaseMemObject(any);
    }
    clReleaseMemObject(b.x);
    clReleaseMemObject(b.dx);
    clReleaseMemObject(b.dgamma);
    clnorm_plan_release(plan);
}
END_TEST

int main(void)
{
    harness_ctx();
    build_matrix();
    Suite *s = suite_create("backward");
    TCase *tc = tcase_create("backward");
    tcase_set_timeout(tc, 0);
    tcase_add_test(tc, reference_matches_finite_differences);
    tcase_add_loop_test(tc, matrix_matches_reference, 0, ncases);
    tcase_add_test(tc, only_parameter_gradients);
    tcase_add_test(tc, every_backward_path_matches_reference);
    tcase_add_test(tc, every_column_shape_matches_reference);
    tcase_add_test(tc, channels_first_groups_match_reference);
    tcase_add_test(tc, channels_first_batch_in_cache_matches_reference);
    tcase_add_test(tc, pipelined_rows_match_reference);
    if (!harness_small())
        tcase_add_test(tc, long_reductions_with_offset);
    tcase_add_test(tc, same_input_gives_same_bits);
    tcase_add_test(tc, rejected_calls_write_nothing);
    suite_add_tcase(s, tc);
    /* Apart, so that CK_RUN_CASE=work_groups runs it alone under smaller work-groups. */
    TCase *wg = tcase_create("work_groups");
    tcase_set_timeout(wg, 0);
    tcase_add_test(wg, row_blocks_around_the_work_group_size);
    suite_add_tcase(s, wg);
    int rc = harness_run(s);
    free(cases);
    return rc;
}
