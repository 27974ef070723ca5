/* Integer pixels: u8 and u16 x, y in any storage, against the float64 reference; the imaging
 * recipes of the README; what integer storage refuses. CLNORM_TEST_MATRIX=1 adds the whole
 * matrix (every x and y storage, kind and layout), which the `extended` label runs. */
#include "forward_case.h"
#include "harness.h"
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A case of x storage xt and y storage yt + 1 (0: as x) in the given kind and layout, data
 * spread over the integer range of x, and for an integer y parameters that push it past both
 * ends of its range. */
static fcase make_case(int kind, int layout, clnorm_dtype xt, int yt, size_t n, size_t c,
                       size_t d, fill_kind fill, uint64_t seed)
{
    fcase fc = {0};
    fc.desc = (clnorm_desc){
        .kind = (clnorm_kind)kind, .layout = (clnorm_layout)layout, .dtype = xt, .n = n, .c = c,
        .d = d, .groups = kind == CLNORM_GROUP ? c / 2 : 0, .eps = 1e-5f, .momentum = 0.1f,
        .y_dtype = (clnorm_y_dtype)yt
    };
    double xmost = ref_integer_most(xt), ymost = ref_integer_most(ref_y_storage(&fc.desc));
    fc.mode = CLNORM_TRAINING;
    fc.gamma = fc.beta = fc.save = 1;
    fc.running = kind == CLNORM_BATCH || kind == CLNORM_INSTANCE;
    fc.fill = fill;
    fc.offset = xmost > 0 ? xmost / 2 : 3.0;
    fc.scale = xmost > 0 ? xmost / 6 : 1.0;
    if (ymost > 0) { /* normalized values of +-3 land beyond 0 and the type's top */
        fc.param_scale = ymost / 5;
        fc.param_offset = ymost / 2;
    }
    fc.seed = seed;
    return fc;
}

/* Every kind and layout for one pair of storages. */
static void each_kind(clnorm_dtype xt, int yt, size_t n, size_t c, size_t d, fill_kind fill)
{
    for (int kind = CLNORM_BATCH; kind <= CLNORM_RMS; ++kind)
        for (int layout = 0; layout < 2; ++layout) {
            fcase fc = make_case(kind, layout, xt, yt, n, c, d, fill,
                                 77 + (uint64_t)(kind * 10 + layout));
            fcase_check(&fc);
        }
}

START_TEST(integer_matrix)
{
    size_t d = harness_small() ? 7 : 37;
    for (int xt = CLNORM_U8; xt <= CLNORM_U16; ++xt)
        for (int yt = CLNORM_Y_AS_X; yt <= CLNORM_Y_U16; ++yt) {
            each_kind((clnorm_dtype)xt, yt, 2, 6, d, FILL_NORMAL);  /* narrow channels-last */
            each_kind((clnorm_dtype)xt, yt, 3, 8, 5, FILL_CONSTANT); /* constant images */
        }
}
END_TEST

/* The recipes' shapes: what every CI run checks. */
START_TEST(integer_outputs_round_and_saturate)
{
    size_t d = harness_small() ? 9 : 301;
    /* auto-contrast: INSTANCE, u8 to u8, past both ends of 0..255 */
    for (int layout = 0; layout < 2; ++layout) {
        fcase fc = make_case(CLNORM_INSTANCE, layout, CLNORM_U8, CLNORM_Y_AS_X, 2, 3, d,
                             FILL_NORMAL, 5);
        fcase_check(&fc);
        fc.fill = FILL_CONSTANT; /* a flat image gives beta, rounded */
        fcase_check(&fc);
    }
    /* a float x with NaN to u8: the NaN's group gives 0 */
    fcase fc = make_case(CLNORM_LAYER, CLNORM_NCHW, CLNORM_F32, CLNORM_Y_U8, 2, 3, d, FILL_NAN, 6);
    fc.param_scale = 40;
    fc.param_offset = 128;
    fcase_check(&fc);
}
END_TEST

START_TEST(integer_inputs_to_float)
{
    size_t d = harness_small() ? 9 : 301;
    /* ImageNet-style: BATCH channels-last u8 RGB to f32, training and inference */
    for (int mode = 0; mode < 2; ++mode) {
        fcase fc = make_case(CLNORM_BATCH, CLNORM_NHWC, CLNORM_U8, CLNORM_Y_F32, 2, 3, d,
                             FILL_NORMAL, 7 + (uint64_t)mode);
        fc.mode = (clnorm_mode)mode;
        fcase_check(&fc);
    }
    /* a whole-frame LAYER on u16 to f32 */
    fcase fc = make_case(CLNORM_LAYER, CLNORM_NCHW, CLNORM_U16, CLNORM_Y_F32, 2, 1, d,
                         FILL_NORMAL, 9);
    fcase_check(&fc);
}
END_TEST

/* A 16-megapixel u16 frame far from zero: still exact to float rounding. */
START_TEST(large_frame)
{
    size_t d = harness_small() ? 4099 : (size_t)4096 * 4096;
    fcase fc = make_case(CLNORM_LAYER, CLNORM_NCHW, CLNORM_U16, CLNORM_Y_F32, 1, 1, d,
                         FILL_NORMAL, 11);
    fc.offset = 60000;
    fc.scale = 1000;
    fcase_check(&fc);
}
END_TEST

/* The ImageNet recipe of the README, against the formula it stands for: running_mean =
 * 255 * mean, running_var = (255 * std)^2, BATCH INFERENCE, u8 RGB channels-last to f32. */
START_TEST(imagenet_recipe)
{
    clnorm_context *ctx = harness_ctx();
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    size_t pixels = harness_small() ? 11 : 224 * 224;
    unsigned char *rgb = malloc(pixels * 3);
    float *out = malloc(pixels * 3 * sizeof(float));
    for (size_t i = 0; i < pixels * 3; ++i)
        rgb[i] = (unsigned char)((i * 2654435761u) >> 24);
    float rm[3], rv[3];
    for (int c = 0; c < 3; ++c) {
        rm[c] = 255.0f * mean[c];
        rv[c] = (255.0f * std[c]) * (255.0f * std[c]);
    }
    clnorm_desc desc = {
        .kind = CLNORM_BATCH, .layout = CLNORM_NHWC, .dtype = CLNORM_U8, .n = 1, .c = 3,
        .d = pixels, .groups = 0, .eps = 0.0f, .momentum = 0.1f, .y_dtype = CLNORM_Y_F32
    };
    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &desc, &plan));
    clnorm_buffers b = {0};
    b.x = harness_buffer(rgb, pixels * 3);
    b.y = harness_buffer(NULL, pixels * 3 * sizeof(float));
    b.running_mean = harness_buffer(rm, sizeof rm);
    b.running_var = harness_buffer(rv, sizeof rv);
    CLNORM_OK(ctx, clnorm_forward(plan, CLNORM_INFERENCE, &b, 0, NULL, NULL));
    harness_read(b.y, out, pixels * 3 * sizeof(float));
    for (size_t i = 0; i < pixels * 3; ++i) {
        int c = (int)(i % 3);
        double want = ((double)rgb[i] / 255.0 - mean[c]) / std[c];
        ck_assert_msg(fabs(out[i] - want) <= 1e-5 * (1 + fabs(want)), "pixel %zu: %g, want %g",
                      i, (double)out[i], want);
    }
    cl_mem mems[] = {b.x, b.y, b.running_mean, b.running_var};
    for (int i = 0; i < 4; ++i)
        clReleaseMemObject(mems[i]);
    clnorm_plan_release(plan);
    free(rgb);
    free(out);
}
END_TEST

/* y = x exactly (running mean 0, variance 1, eps 0, no gamma or beta): ties, saturation, NaN
 * and infinities of the conversion itself, through the vector and scalar stores. */
START_TEST(integer_outputs_round_ties_to_even)
{
    clnorm_context *ctx = harness_ctx();
    static const float x[] = {-1.0f, -0.5f, 0.5f, 1.5f, 2.5f, 3.49f, 254.5f, 255.5f, 256.0f, NAN,
                              INFINITY, -INFINITY, 1e10f, 65534.5f, 65535.5f, 70000.0f, 7.5f};
    static const double u8[] = {0, 0, 0, 2, 2, 3, 254, 255, 255, 0, 255, 0, 255, 255, 255, 255, 8};
    static const double u16[] = {0,     0,     0, 2,     2,     3,     254, 256, 256,
                                 0, 65535, 0, 65535, 65534, 65535, 65535, 8};
    enum { N = sizeof x / sizeof x[0] };
    for (int t = 0; t < 2; ++t) {
        clnorm_desc desc = {
            .kind = CLNORM_BATCH, .layout = CLNORM_NCHW, .dtype = CLNORM_F32, .n = 1, .c = 1,
            .d = N, .groups = 0, .eps = 0.0f, .momentum = 0.1f,
            .y_dtype = t ? CLNORM_Y_U16 : CLNORM_Y_U8
        };
        clnorm_plan *plan;
        CLNORM_OK(ctx, clnorm_plan_create(ctx, &desc, &plan));
        float zero = 0.0f, one = 1.0f;
        clnorm_buffers b = {0};
        b.x = harness_buffer(x, sizeof x);
        b.y = harness_buffer(NULL, N * 2);
        b.running_mean = harness_buffer(&zero, sizeof zero);
        b.running_var = harness_buffer(&one, sizeof one);
        CLNORM_OK(ctx, clnorm_forward(plan, CLNORM_INFERENCE, &b, 0, NULL, NULL));
        unsigned char got8[N];
        unsigned short got16[N];
        harness_read(b.y, t ? (void *)got16 : (void *)got8, t ? sizeof got16 : sizeof got8);
        for (int i = 0; i < N; ++i) {
            double got = t ? got16[i] : got8[i], want = t ? u16[i] : u8[i];
            ck_assert_msg(got == want, "%s: x = %g gives %g, want %g", t ? "u16" : "u8",
                          (double)x[i], got, want);
        }
        cl_mem mems[] = {b.x, b.y, b.running_mean, b.running_var};
        for (int i = 0; i < 4; ++i)
            clReleaseMemObject(mems[i]);
        clnorm_plan_release(plan);
    }
}
END_TEST

START_TEST(integer_storage_refusals)
{
    clnorm_context *ctx = harness_ctx();
    clnorm_desc desc = {
        .kind = CLNORM_INSTANCE, .layout = CLNORM_NHWC, .dtype = CLNORM_U8, .n = 1, .c = 3, .d = 16,
        .groups = 0, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_F32
    };
    clnorm_plan *plan = NULL;
    desc.y_dtype = (clnorm_y_dtype)6;
    ck_assert_int_eq(clnorm_plan_create(ctx, &desc, &plan), CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clnorm_context_last_error(ctx), "desc.y_dtype"));
    desc.y_dtype = CLNORM_Y_F32;
    desc.dtype = (clnorm_dtype)5;
    ck_assert_int_eq(clnorm_plan_create(ctx, &desc, &plan), CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clnorm_context_last_error(ctx), "desc.dtype"));
    desc.dtype = CLNORM_U8;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &desc, &plan));
    unsigned char px[48];
    for (int i = 0; i < 48; ++i)
        px[i] = (unsigned char)(i * 5);
    clnorm_buffers b = {0};
    b.x = harness_buffer(px, sizeof px);
    b.y = harness_buffer(NULL, 48 * sizeof(float));
    cl_mem small = harness_buffer(NULL, 48); /* room for u8, not for f32 */
    /* y sized for y's storage, and never x itself when the storages differ */
    clnorm_buffers bad = b;
    bad.y = small;
    ck_assert_int_eq(clnorm_forward(plan, CLNORM_TRAINING, &bad, 0, NULL, NULL),
                     CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clnorm_context_last_error(ctx), "bufs.y"));
    bad.y = b.x;
    ck_assert_int_eq(clnorm_forward(plan, CLNORM_TRAINING, &bad, 0, NULL, NULL),
                     CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clnorm_context_last_error(ctx), "bufs.y"));
    unsigned char after[48];
    harness_read(b.x, after, sizeof after);
    ck_assert_mem_eq(after, px, sizeof px);
    /* y stored otherwise than x, at the same size: still never x itself */
    clnorm_desc same_size = {
        .kind = CLNORM_INSTANCE, .layout = CLNORM_NHWC, .dtype = CLNORM_U16, .n = 1, .c = 3, .d = 8,
        .groups = 0, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_F16
    };
    clnorm_plan *p16;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &same_size, &p16));
    clnorm_buffers in_place = {0};
    in_place.x = in_place.y = small; /* 48 bytes: 24 u16 elements, 24 f16 */
    ck_assert_int_eq(clnorm_forward(p16, CLNORM_TRAINING, &in_place, 0, NULL, NULL),
                     CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(clnorm_context_last_error(ctx), "bufs.y") &&
                      strstr(clnorm_context_last_error(ctx), "bufs.x"),
                  "%s", clnorm_context_last_error(ctx));
    /* backward refuses y stored otherwise, even in floating point */
    clnorm_desc f2 = same_size;
    f2.dtype = CLNORM_F16;
    f2.y_dtype = CLNORM_Y_F32;
    clnorm_plan *pf;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &f2, &pf));
    clnorm_buffers gf = {0};
    gf.x = gf.dy = gf.dx = small;
    ck_assert_int_eq(clnorm_backward(pf, CLNORM_TRAINING, &gf, 0, NULL, NULL),
                     CLNORM_ERROR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(clnorm_context_last_error(ctx), "desc.y_dtype"));
    clnorm_plan_release(p16);
    clnorm_plan_release(pf);
    /* backward takes floating-point storage only */
    clnorm_buffers g = {0};
    g.x = b.x;
    g.dy = small;
    g.dx = b.y;
    ck_assert_int_eq(clnorm_backward(plan, CLNORM_TRAINING, &g, 0, NULL, NULL),
                     CLNORM_ERROR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(clnorm_context_last_error(ctx), "forward only"));
    CLNORM_OK(ctx, clnorm_forward(plan, CLNORM_TRAINING, &b, 0, NULL, NULL));
    clReleaseMemObject(b.x);
    clReleaseMemObject(b.y);
    clReleaseMemObject(small);
    clnorm_plan_release(plan);
}
END_TEST

int main(void)
{
    if (!harness_ctx())
        return 77;
    Suite *s = suite_create("imaging");
    TCase *t = tcase_create("imaging");
    tcase_set_timeout(t, 900);
    tcase_add_test(t, integer_outputs_round_and_saturate);
    tcase_add_test(t, integer_inputs_to_float);
    if (!harness_small() || getenv("CLNORM_TEST_MATRIX"))
        tcase_add_test(t, large_frame);
    tcase_add_test(t, imagenet_recipe);
    tcase_add_test(t, integer_outputs_round_ties_to_even);
    tcase_add_test(t, integer_storage_refusals);
    const char *matrix = getenv("CLNORM_TEST_MATRIX");
    if (matrix && strcmp(matrix, "1") == 0)
        tcase_add_test(t, integer_matrix);
    suite_add_tcase(s, t);
    return harness_run(s);
}
