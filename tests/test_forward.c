/* Forward normalization against the float64 reference, over the whole matrix of kinds,
 * layouts, storage types, modes and optional buffers, and on hard data. */
#include "forward_case.h"
#include "harness.h"
#include "internal.h"
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static fcase *cases;
static int ncases;

static void add(fcase fc)
{
    cases = realloc(cases, (size_t)(ncases + 1) * sizeof *cases);
    cases[ncases++] = fc;
}

/* kind x layout x dtype x mode x optional buffers, on a few shapes. */
static void build_matrix(void)
{
    static const size_t big[][3] = {{2, 6, 15}, {3, 4, 1}, {1, 8, 37}, {5, 12, 49}};
    static const size_t small[][3] = {{2, 6, 5}, {3, 4, 1}};
    const size_t(*shapes)[3] = harness_small() ? small : big;
    int nshapes = harness_small() ? 2 : 4;
    uint64_t seed = 1;
    for (int sh = 0; sh < nshapes; ++sh)
        for (int kind = CLNORM_BATCH; kind <= CLNORM_RMS; ++kind) {
            size_t c = shapes[sh][1];
            size_t glist[3] = {0}, ng = 1;
            if (kind == CLNORM_GROUP) {
                glist[0] = 1;
                glist[1] = c / 2;
                glist[2] = c;
                ng = 3;
            }
            for (size_t gi = 0; gi < ng; ++gi)
                for (int layout = 0; layout < 2; ++layout)
                    for (int dtype = 0; dtype < 3; ++dtype)
                        for (int mode = 0; mode < 2; ++mode)
                            for (int variant = 0; variant < 3; ++variant) {
                                fcase fc = {0};
                                fc.desc = (clnorm_desc){
                                    .kind = (clnorm_kind)kind, .layout = (clnorm_layout)layout,
                                    .dtype = (clnorm_dtype)dtype, .n = shapes[sh][0], .c = c,
                                    .d = shapes[sh][2], .groups = glist[gi], .eps = 1e-5f,
                                    .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
                                };
                                fc.mode = (clnorm_mode)mode;
                                int has_running = kind == CLNORM_BATCH || kind == CLNORM_INSTANCE;
                                fc.gamma = variant != 1;
                                fc.beta = variant == 0;
                                fc.running = variant == 0 && has_running;
                                fc.save = variant != 1;
                                fc.fill = FILL_NORMAL;
                                fc.offset = 0.5 * kind;
                                fc.scale = 1.0 + layout;
                                fc.seed = seed++;
                                add(fc);
                            }
        }
}

START_TEST(matrix_matches_reference) { fcase_check(&cases[_i]); }
END_TEST

/* One case per kind and layout with a given fill, for the data-shaped tests below. */
static void each_kind(fill_kind fill, double offset, double tol, int dtype, size_t n, size_t c,
                      size_t d, int running, clnorm_mode mode)
{
    for (int kind = CLNORM_BATCH; kind <= CLNORM_RMS; ++kind)
        for (int layout = 0; layout < 2; ++layout) {
            fcase fc = {0};
            fc.desc = (clnorm_desc){
                .kind = (clnorm_kind)kind, .layout = (clnorm_layout)layout,
                .dtype = (clnorm_dtype)dtype, .n = n, .c = c, .d = d,
                .groups = kind == CLNORM_GROUP ? (c % 2 ? c : c / 2) : 0, .eps = 1e-5f,
                .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
            };
            fc.mode = mode;
            fc.gamma = fc.beta = fc.save = 1;
            fc.running = running && (kind == CLNORM_BATCH || kind == CLNORM_INSTANCE);
            fc.fill = fill;
            fc.offset = offset;
            fc.scale = 1.0;
            fc.seed = 1000 + (uint64_t)kind * 10 + (uint64_t)layout;
            fc.tol = tol;
            fcase_check(&fc);
        }
}

START_TEST(exact_fill_is_within_four_ulps)
{
    size_t d = harness_small() ? 9 : 301;
    for (int dtype = 0; dtype < 3; ++dtype)
        each_kind(FILL_EXACT, 0.0, 4.0, dtype, 3, 6, d, 0, CLNORM_TRAINING);
}
END_TEST

START_TEST(constant_group_gives_beta)
{
    size_t d = harness_small() ? 7 : 1001;
    for (int dtype = 0; dtype < 3; ++dtype) {
        each_kind(FILL_CONSTANT, 2.5, 0, dtype, 2, 4, d, 0, CLNORM_TRAINING);
        each_kind(FILL_CONSTANT, -7.0, 0, dtype, 2, 4, d, 1, CLNORM_TRAINING);
    }
}
END_TEST

START_TEST(nan_stays_in_its_group)
{
    size_t d = harness_small() ? 6 : 257;
    for (int dtype = 0; dtype < 3; ++dtype)
        each_kind(FILL_NAN, 1.0, 0, dtype, 3, 4, d, 1, CLNORM_TRAINING);
}
END_TEST

START_TEST(odd_sizes)
{
    static const size_t shapes[][3] = {{1, 1, 2}, {7, 3, 13}, {2, 1, 1}, {1, 17, 1},
                                       {13, 5, 11}, {1, 2, 4099}, {3, 1031, 3}};
    int count = harness_small() ? 3 : 7;
    for (int s = 0; s < count; ++s)
        for (int dtype = 0; dtype < 3; dtype += 2)
            each_kind(FILL_NORMAL, 0.25, 0, dtype, shapes[s][0], shapes[s][1], shapes[s][2], 1,
                      CLNORM_TRAINING);
}
END_TEST

/* Shapes that reach each forward path on a CPU device: fused rows (several blocks, and row
 * lengths either side of the fused limit), fused channels-last samples (tiles of 64, 32 and 8
 * channels, groups of several channels, either side of the slab limit), 32-channel column
 * tiles, channels-last with fewer than eight channels, and with more than the 64 whose
 * constants apply holds in registers at once (136: tiles of 64, 64 and 8), and column
 * statistics of rows wider than 128 in tiles of 64 (192). */
START_TEST(every_forward_path_matches_reference)
{
    static const size_t big[][3] = {{9, 40, 37},  {9, 64, 20},   {2, 32, 300},  {10, 5, 301},
                                    {9, 3, 4500}, {1, 9, 5000},  {8, 1, 65536}, {8, 1, 65537},
                                    {8, 64, 4096}, {8, 64, 4097}, {3, 136, 45}, {4, 192, 200}};
    static const size_t small[][3] = {{9, 40, 5}, {9, 64, 3}, {2, 32, 7}, {10, 5, 9}, {1, 9, 11},
                                      {2, 136, 3}};
    const size_t(*shapes)[3] = harness_small() ? small : big;
    int count = harness_small() ? 6 : 12;
    for (int s = 0; s < count; ++s)
        for (int dtype = 0; dtype < 3; dtype += 2)
            each_kind(FILL_NORMAL, 3.0, 0, dtype, shapes[s][0], shapes[s][1], shapes[s][2], 1,
                      CLNORM_TRAINING);
}
END_TEST

/* LAYER and RMS rows of one statistics block (up to 4096 elements), enough of them for several
 * to a work-item, take norm_rows' pipelined path on CPUs (the next row's first sweep inside
 * this row's apply loop): rows shorter than a 32-element step, of odd length, of exactly one
 * block and one more (which leaves the pipeline), row counts that leave a last work-item a
 * single row; each gamma / beta combination, every floating-point storage, constant rows
 * (y == beta exactly) and a NaN that must stay in its row. */
START_TEST(pipelined_rows_match_reference)
{
    static const size_t big[][3] = {{300, 1, 37}, {300, 4, 8}, {129, 8, 125}, {257, 1, 4096},
                                    {70, 1, 4097}, {131, 3, 11}};
    static const size_t small[][3] = {{70, 1, 13}, {71, 4, 9}};
    const size_t(*shapes)[3] = harness_small() ? small : big;
    int count = harness_small() ? 2 : 6;
    uint64_t seed = 3000;
    for (int sh = 0; sh < count; ++sh)
        for (int k = 0; k < 2; ++k)
            for (int dtype = 0; dtype < 3; ++dtype)
                for (int variant = 0; variant < 4; ++variant) {
                    fcase fc = {0};
                    fc.desc = (clnorm_desc){
                        .kind = k ? CLNORM_RMS : CLNORM_LAYER, .layout = (clnorm_layout)(variant % 2),
                        .dtype = (clnorm_dtype)dtype, .n = shapes[sh][0], .c = shapes[sh][1],
                        .d = shapes[sh][2], .eps = 1e-5f, .y_dtype = CLNORM_Y_AS_X};
                    fc.mode = CLNORM_TRAINING;
                    fc.gamma = variant == 0 || variant == 1;
                    fc.beta = variant == 0 || variant == 2;
                    fc.save = variant != 3;
                    fc.fill = (sh + dtype + variant) % 5 == 0   ? FILL_CONSTANT
                              : (sh + dtype + variant) % 5 == 1 ? FILL_NAN
                                                                : FILL_NORMAL;
                    fc.offset = fc.fill == FILL_CONSTANT ? -7.0 : 3.0;
                    fc.scale = 1.0;
                    fc.seed = seed++;
                    fcase_check(&fc);
                }
}
END_TEST

/* The GPU row kernels' edges (one work-group per block; the device's class, or
 * CLNORM_DEVICE_CLASS=gpu, picks them): groups of exactly the work-group size and one more,
 * channels-first BATCH blocks of several segments longer and shorter than a work-group (so a
 * work-group's stride crosses one or more segment ends), and rows of several blocks. Small
 * enough for Oclgrind, which checks the barriers. */
START_TEST(row_blocks_around_the_work_group_size)
{
    static const size_t shapes[][3] = {{2, 1, 256}, {2, 1, 257}, {30, 2, 100}, {2, 1, 5000}};
    for (int s = 0; s < 4; ++s)
        each_kind(FILL_NORMAL, 3.0, 0, CLNORM_F32, shapes[s][0], shapes[s][1], shapes[s][2], 1,
                  CLNORM_TRAINING);
}
END_TEST

/* GPU plans reduce row-shaped groups a work-group per block, forward and backward, unless a
 * block is shorter than the work-group (D = 4 here), and keep channels-last columns one per
 * work-item; CPU plans use no work-group kernels. */
START_TEST(gpu_plans_reduce_rows_a_work_group_per_block)
{
    clnorm_context *ctx = harness_ctx();
    int gpu = ctx->info.cls == CLNORM_CLASS_GPU;
    for (int kind = CLNORM_BATCH; kind <= CLNORM_RMS; ++kind)
        for (int layout = 0; layout < 4; ++layout) {
            size_t D = layout < 2 ? 300 : 4;
            clnorm_desc desc = {
                .kind = (clnorm_kind)kind, .layout = (clnorm_layout)(layout % 2),
                .dtype = CLNORM_F32, .n = 3, .c = 4, .d = D, .groups = 2, .eps = 1e-5f,
                .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
            };
            clnorm_plan *plan;
            CLNORM_OK(ctx, clnorm_plan_create(ctx, &desc, &plan));
            size_t wg = plan->coop_wg, kcap = ctx->info.max_kernel_work_group;
            if (!gpu || ctx->info.max_work_group < 32 || (kcap && kcap < 32)) {
                /* CPUs, and GPUs (or the testing ceilings) allowing less than a warp */
                ck_assert_uint_eq(wg, 0);
            } else {
                /* a power of two from a warp up, that the device and the kernels allow (a GPU
                 * whose work-group kernels allowed fewer than 32 would fail here: none is known) */
                ck_assert_uint_ge(wg, 32);
                ck_assert_uint_le(wg, ctx->info.max_work_group);
                ck_assert_uint_eq(wg & (wg - 1), 0);
                if (plan->blocking.wg)
                    ck_assert_uint_le(wg, clnorm_kernel_max_local(ctx, plan->partial_rows));
            }
            const clnorm_blocking *bl[] = {&plan->blocking, &plan->bwd_blocking};
            const clnorm_view *v[] = {&plan->view, &plan->bwd_view};
            for (int i = 0; i < 2; ++i) {
                size_t block = v[i]->Q * v[i]->S / bl[i]->nblk;
                ck_assert_uint_eq(bl[i]->wg, bl[i]->cols || block < wg ? 0 : wg);
                if (bl[i]->wg)
                    ck_assert_uint_eq(bl[i]->work_items, v[i]->P * v[i]->R * bl[i]->nblk * wg);
            }
            if (D == 300)
                ck_assert_uint_eq(plan->blocking.wg, plan->blocking.cols ? 0 : wg);
            ck_assert_int_eq(plan->blocking.cols, layout % 2 == CLNORM_NHWC &&
                                                      kind != CLNORM_LAYER && kind != CLNORM_RMS);
            clnorm_plan_release(plan);
        }
}
END_TEST

START_TEST(large_offset_long_reductions)
{
    /* Mean 1e4, std 1: every kind reduces over 100k+ elements (a million for LAYER/RMS). */
    each_kind(FILL_NORMAL, 1e4, 0, CLNORM_F32, 4, 3, 60000, 1, CLNORM_TRAINING);
    each_kind(FILL_NORMAL, 1e4, 0, CLNORM_F32, 2, 8, 131072, 0, CLNORM_TRAINING);
}
END_TEST

START_TEST(inference_with_running_statistics)
{
    size_t d = harness_small() ? 5 : 97;
    for (int dtype = 0; dtype < 3; ++dtype)
        each_kind(FILL_NORMAL, 3.0, 0, dtype, 3, 5, d, 1, CLNORM_INFERENCE);
    /* Running statistics make single-element groups valid in INFERENCE. */
    each_kind(FILL_NORMAL, 3.0, 0, CLNORM_F32, 1, 5, 1, 1, CLNORM_INFERENCE);
}
END_TEST

/* Runs forward for desc on x (floats, stored as desc.dtype) and returns y as floats. */
static float *run(const clnorm_desc *desc, const float *x, int in_place, float *save_mean,
                  float *save_invstd)
{
    clnorm_context *ctx = harness_ctx();
    size_t total = desc->n * desc->c * desc->d, esize = desc->dtype == CLNORM_F32 ? 4 : 2;
    void *xs = malloc(total * esize);
    double *yd = malloc(total * sizeof *yd);
    float *y = malloc(total * sizeof *y);
    ref_store(desc->dtype, x, xs, total);
    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, desc, &plan));
    size_t groups = clnorm_plan_stats_count(plan);
    clnorm_buffers b = {0};
    b.x = harness_buffer(xs, total * esize);
    b.y = in_place ? b.x : harness_buffer(NULL, total * esize);
    b.save_mean = harness_buffer(NULL, groups * 4);
    b.save_invstd = harness_buffer(NULL, groups * 4);
    CLNORM_OK(ctx, clnorm_forward(plan, CLNORM_TRAINING, &b, 0, NULL, NULL));
    harness_read(b.y, xs, total * esize);
    if (save_mean)
        harness_read(b.save_mean, save_mean, groups * 4);
    if (save_invstd)
        harness_read(b.save_invstd, save_invstd, groups * 4);
    ref_load(desc->dtype, xs, yd, total);
    for (size_t i = 0; i < total; ++i)
        y[i] = (float)yd[i];
    clReleaseMemObject(b.x);
    if (!in_place)
        clReleaseMemObject(b.y);
    clReleaseMemObject(b.save_mean);
    clReleaseMemObject(b.save_invstd);
    clnorm_plan_release(plan);
    free(xs);
    free(yd);
    return y;
}

START_TEST(nhwc_equals_nchw_after_permutation)
{
    size_t N = 3, C = 6, D = harness_small() ? 5 : 211;
    harness_rng rng = {77};
    float *nchw = malloc(N * C * D * 4), *nhwc = malloc(N * C * D * 4);
    for (size_t i = 0; i < N * C * D; ++i)
        nchw[i] = (float)(5.0 + 2.0 * harness_normal(&rng));
    for (size_t n = 0; n < N; ++n)
        for (size_t c = 0; c < C; ++c)
            for (size_t d = 0; d < D; ++d)
                nhwc[(n * D + d) * C + c] = nchw[(n * C + c) * D + d];
    for (int kind = CLNORM_BATCH; kind <= CLNORM_RMS; ++kind) {
        clnorm_desc a = {
            .kind = (clnorm_kind)kind, .layout = CLNORM_NCHW, .dtype = CLNORM_F32, .n = N, .c = C,
            .d = D, .groups = 3, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
        };
        clnorm_desc b = a;
        b.layout = CLNORM_NHWC;
        float ma[64], mb[64], ia[64], ib[64];
        float *ya = run(&a, nchw, 0, ma, ia), *yb = run(&b, nhwc, 0, mb, ib);
        for (size_t n = 0; n < N; ++n)
            for (size_t c = 0; c < C; ++c)
                for (size_t d = 0; d < D; ++d) {
                    float u = ya[(n * C + c) * D + d], v = yb[(n * D + d) * C + c];
                    ck_assert_msg(fabsf(u - v) <= 1e-5f * (1 + fabsf(u)),
                                  "kind %d: NCHW y = %.9g, NHWC y = %.9g at (%zu,%zu,%zu)", kind,
                                  (double)u, (double)v, n, c, d);
                }
        size_t groups = ref_groups(&a);
        for (size_t g = 0; g < groups; ++g) {
            ck_assert_msg(fabsf(ma[g] - mb[g]) <= 1e-5f * (1 + fabsf(ma[g])), "kind %d mean", kind);
            ck_assert_msg(fabsf(ia[g] - ib[g]) <= 1e-5f * ia[g], "kind %d invstd", kind);
        }
        free(ya);
        free(yb);
    }
    free(nchw);
    free(nhwc);
}
END_TEST

START_TEST(same_input_gives_same_bits)
{
    size_t N = 4, C = 8, D = harness_small() ? 9 : 5000;
    harness_rng rng = {99};
    float *x = malloc(N * C * D * 4);
    for (size_t i = 0; i < N * C * D; ++i)
        x[i] = (float)(100.0 + harness_normal(&rng));
    for (int kind = CLNORM_BATCH; kind <= CLNORM_RMS; ++kind)
        for (int layout = 0; layout < 2; ++layout) {
            clnorm_desc desc = {
                .kind = (clnorm_kind)kind, .layout = (clnorm_layout)layout, .dtype = CLNORM_F32,
                .n = N, .c = C, .d = D, .groups = 4, .eps = 1e-5f, .momentum = 0.1f,
                .y_dtype = CLNORM_Y_AS_X
            };
            float *a = run(&desc, x, 0, NULL, NULL), *b = run(&desc, x, 0, NULL, NULL);
            ck_assert_msg(memcmp(a, b, N * C * D * 4) == 0, "kind %d layout %d differs", kind,
                          layout);
            free(a);
            free(b);
        }
    free(x);
}
END_TEST

START_TEST(in_place_matches_out_of_place)
{
    /* 70 samples: LAYER and RMS take the pipelined rows, whose next row is read while this
     * one's y is written */
    size_t N = 70, C = 5, D = harness_small() ? 7 : 333;
    harness_rng rng = {5};
    float *x = malloc(N * C * D * 4);
    for (size_t i = 0; i < N * C * D; ++i)
        x[i] = (float)harness_normal(&rng);
    for (int kind = CLNORM_BATCH; kind <= CLNORM_RMS; ++kind)
        for (int dtype = 0; dtype < 3; ++dtype) {
            clnorm_desc desc = {
                .kind = (clnorm_kind)kind, .layout = CLNORM_NHWC, .dtype = (clnorm_dtype)dtype,
                .n = N, .c = C, .d = D, .groups = 5, .eps = 1e-5f, .momentum = 0.1f,
                .y_dtype = CLNORM_Y_AS_X
            };
            float *a = run(&desc, x, 0, NULL, NULL), *b = run(&desc, x, 1, NULL, NULL);
            ck_assert_msg(memcmp(a, b, N * C * D * 4) == 0, "kind %d dtype %d", kind, dtype);
            free(a);
            free(b);
        }
    free(x);
}
END_TEST

START_TEST(running_statistics_over_several_steps)
{
    clnorm_context *ctx = harness_ctx();
    size_t N = 3, C = 4, D = harness_small() ? 5 : 50;
    for (int kind = CLNORM_BATCH; kind <= CLNORM_INSTANCE; kind += 2)
        for (int layout = 0; layout < 2; ++layout) {
            clnorm_desc desc = {
                .kind = (clnorm_kind)kind, .layout = (clnorm_layout)layout, .dtype = CLNORM_F32,
                .n = N, .c = C, .d = D, .groups = 0, .eps = 1e-5f, .momentum = 0.3f,
                .y_dtype = CLNORM_Y_AS_X
            };
            clnorm_plan *plan;
            CLNORM_OK(ctx, clnorm_plan_create(ctx, &desc, &plan));
            float rm[4] = {0, 0, 0, 0}, rv[4] = {1, 1, 1, 1}, x[3 * 4 * 50];
            double want_m[4], want_v[4], y[3 * 4 * 50], xd[3 * 4 * 50];
            clnorm_buffers b = {0};
            b.x = harness_buffer(NULL, sizeof x);
            b.y = harness_buffer(NULL, sizeof x);
            b.running_mean = harness_buffer(rm, sizeof rm);
            b.running_var = harness_buffer(rv, sizeof rv);
            harness_rng rng = {kind * 7 + layout};
            for (int step = 0; step < 5; ++step) {
                for (size_t i = 0; i < N * C * D; ++i)
                    xd[i] = x[i] = (float)(step + (1 + step) * harness_normal(&rng));
                CL_OK(clEnqueueWriteBuffer(clnorm_context_queue(ctx), b.x, CL_TRUE, 0,
                                           N * C * D * 4, x, 0, NULL, NULL));
                CLNORM_OK(ctx, clnorm_forward(plan, CLNORM_TRAINING, &b, 0, NULL, NULL));
                ref_inputs in = {xd, NULL, NULL, rm, rv, NULL};
                ref_outputs out = {y, NULL, NULL, want_m, want_v, NULL, NULL, NULL};
                ck_assert_int_eq(ref_forward(&desc, CLNORM_TRAINING, &in, &out), 0);
                for (size_t c = 0; c < C; ++c) {
                    rm[c] = (float)want_m[c];
                    rv[c] = (float)want_v[c];
                }
            }
            float got_m[4], got_v[4];
            harness_read(b.running_mean, got_m, sizeof got_m);
            harness_read(b.running_var, got_v, sizeof got_v);
            for (size_t c = 0; c < C; ++c) {
                ck_assert_msg(fabsf(got_m[c] - rm[c]) <= 1e-5f * (1 + fabsf(rm[c])),
                              "kind %d layout %d running_mean[%zu] = %g, want %g", kind, layout,
                              c, (double)got_m[c], (double)rm[c]);
                ck_assert_msg(fabsf(got_v[c] - rv[c]) <= 1e-5f * rv[c],
                              "kind %d layout %d running_var[%zu] = %g, want %g", kind, layout, c,
                              (double)got_v[c], (double)rv[c]);
            }
            clReleaseMemObject(b.x);
            clReleaseMemObject(b.y);
            clReleaseMemObject(b.running_mean);
            clReleaseMemObject(b.running_var);
            clnorm_plan_release(plan);
        }
}
END_TEST

int main(void)
{
    harness_ctx();
    build_matrix();
    Suite *s = suite_create("forward");
    TCase *tc = tcase_create("forward");
    tcase_set_timeout(tc, 0);
    tcase_add_loop_test(tc, matrix_matches_reference, 0, ncases);
    tcase_add_test(tc, exact_fill_is_within_four_ulps);
    tcase_add_test(tc, constant_group_gives_beta);
    tcase_add_test(tc, nan_stays_in_its_group);
    tcase_add_test(tc, odd_sizes);
    tcase_add_test(tc, every_forward_path_matches_reference);
    tcase_add_test(tc, pipelined_rows_match_reference);
    if (!harness_small())
        tcase_add_test(tc, large_offset_long_reductions);
    tcase_add_test(tc, inference_with_running_statistics);
    tcase_add_test(tc, nhwc_equals_nchw_after_permutation);
    tcase_add_test(tc, same_input_gives_same_bits);
    tcase_add_test(tc, in_place_matches_out_of_place);
    tcase_add_test(tc, running_statistics_over_several_steps);
    suite_add_tcase(s, tc);
    /* Apart, so that CK_RUN_CASE=work_groups runs them alone under smaller work-groups. */
    TCase *wg = tcase_create("work_groups");
    tcase_set_timeout(wg, 0);
    tcase_add_test(wg, row_blocks_around_the_work_group_size);
    tcase_add_test(wg, gpu_plans_reduce_rows_a_work_group_per_block);
    suite_add_tcase(s, wg);
    int rc = harness_run(s);
    free(cases);
    return rc;
}
