/* Kernel packages end to end on a device: written, loaded without a compiler, and every kind
 * of unusable binary skipped. */
#include "harness.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POCLCC "poclcc -b \"{options}\" -o {output} {source}"

static const clnorm_desc layer = {
    .kind = CLNORM_LAYER, .layout = CLNORM_NCHW, .dtype = CLNORM_F32, .n = 2, .c = 3, .d = 4,
    .groups = 0, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
};
static char cache[256];

static void shell(const char *fmt, const char *a, const char *b)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
}

/* A fresh folder; the binary cache in one shared by the suite, so a program compiles once. */
static void temp_dir(char *out, size_t size)
{
    snprintf(out, size, "/tmp/clnorm-package-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(out));
    setenv("CLNORM_CACHE_DIR", cache, 1);
    unsetenv("CLNORM_CACHE");
    unsetenv("CLNORM_COMPILER");
    unsetenv("CLNORM_KERNEL_PACKAGE");
    unsetenv("CLNORM_KERNEL_DIR");
}

/* A context that compiles, with the suite's cache (CLNORM_CACHE is read at every build). */
static clnorm_context *new_context(void)
{
    unsetenv("CLNORM_CACHE");
    unsetenv("CLNORM_COMPILER");
    clnorm_context *ctx;
    CLNORM_OK(NULL, clnorm_context_create(getenv("CLNORM_TEST_DEVICE"), &ctx));
    return ctx;
}

/* A context that never compiles, with no cache until the next new_context: packages only. */
static clnorm_context *package_context(const char *dir)
{
    clnorm_context *ctx = NULL;
    setenv("CLNORM_COMPILER", "0", 1);
    setenv("CLNORM_CACHE", "0", 1);
    CLNORM_OK(NULL, clnorm_context_create(getenv("CLNORM_TEST_DEVICE"), &ctx));
    ck_assert(!ctx->info.compiler_available);
    if (dir)
        CLNORM_OK(ctx, clnorm_context_add_kernel_package(ctx, dir));
    return ctx;
}

/* Adds the programs of desc (backward too if asked) to dir, as clnorm-compile does. */
static void package(const char *dir, const clnorm_desc *desc, int backward,
                    clnorm_package_mode mode, const char *command)
{
    clnorm_context *ctx = new_context();
    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_prepare(ctx, desc, &plan));
    for (int pass = 0; pass <= backward; ++pass) {
        clnorm_program which = pass ? CLNORM_PROGRAM_BACKWARD : CLNORM_PROGRAM_FORWARD;
        char options[256], report[4096];
        clnorm_plan_program_options(plan, which, options, sizeof options);
        CLNORM_OK(ctx, clnorm_package_add(ctx, dir, which, options, mode, command, report,
                                          sizeof report));
    }
    clnorm_plan_release(plan);
    clnorm_context_release(ctx);
}

static cl_mem buffer(clnorm_context *ctx, const void *data, size_t bytes)
{
    cl_int err;
    cl_mem m = clCreateBuffer(clnorm_context_cl(ctx),
                              CL_MEM_READ_WRITE | (data ? CL_MEM_COPY_HOST_PTR : 0), bytes,
                              (void *)data, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    return m;
}

static void read_back(clnorm_context *ctx, cl_mem m, void *out, size_t bytes)
{
    CL_OK(clEnqueueReadBuffer(clnorm_context_queue(ctx), m, CL_TRUE, 0, bytes, out, 0, NULL,
                              NULL));
}

/* One forward (and backward) of the LAYER problem; y (and dx) into out. */
static clnorm_status run(clnorm_context *ctx, const clnorm_desc *desc, int backward,
                         float out[48])
{
    clnorm_plan *plan = NULL;
    clnorm_status s = clnorm_plan_create(ctx, desc, &plan);
    if (s)
        return s;
    float x[24], dy[24];
    for (int i = 0; i < 24; ++i) {
        x[i] = (float)((i * 7) % 11) - 3.0f;
        dy[i] = (float)((i * 5) % 7) - 2.5f;
    }
    cl_mem bx = buffer(ctx, x, sizeof x), bdy = buffer(ctx, dy, sizeof dy);
    cl_mem by = buffer(ctx, NULL, sizeof x), bdx = buffer(ctx, NULL, sizeof x);
    clnorm_buffers b = {0};
    b.x = bx;
    b.y = by;
    CLNORM_OK(ctx, clnorm_forward(plan, CLNORM_TRAINING, &b, 0, NULL, NULL));
    read_back(ctx, by, out, sizeof x);
    if (backward) {
        clnorm_buffers g = {0};
        g.x = bx;
        g.dy = bdy;
        g.dx = bdx;
        s = clnorm_backward(plan, CLNORM_TRAINING, &g, 0, NULL, NULL);
        if (!s)
            read_back(ctx, bdx, out + 24, sizeof x);
    }
    clReleaseMemObject(bx);
    clReleaseMemObject(bdy);
    clReleaseMemObject(by);
    clReleaseMemObject(bdx);
    clnorm_plan_release(plan);
    return s;
}

START_TEST(forward_plans_build_only_forward)
{
    char dir[256];
    temp_dir(dir, sizeof dir);
    clnorm_context *ctx = new_context();
    float out[48];
    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &layer, &plan));
    ck_assert_uint_eq(ctx->compiled + ctx->loaded, 1); /* the forward program alone */
    CLNORM_OK(ctx, run(ctx, &layer, 1, out));
    ck_assert_uint_eq(ctx->compiled + ctx->loaded, 2); /* backward's, at its first call */
    clnorm_plan_release(plan);
    clnorm_context_release(ctx);
}
END_TEST

START_TEST(package_serves_a_device_without_compiler)
{
    char dir[256];
    temp_dir(dir, sizeof dir);
    package(dir, &layer, 1, CLNORM_PACKAGE_DEVICE, NULL);
    float want[48], got[48];
    clnorm_context *ctx = new_context();
    CLNORM_OK(ctx, run(ctx, &layer, 1, want));
    clnorm_context_release(ctx);

    ctx = package_context(dir);
    CLNORM_OK(ctx, run(ctx, &layer, 1, got));
    ck_assert_uint_eq(ctx->from_package, 2);
    ck_assert_uint_eq(ctx->compiled + ctx->loaded, 0);
    ck_assert_mem_eq(got, want, sizeof want);
    clnorm_context_release(ctx);

    /* CLNORM_KERNEL_PACKAGE, with a missing folder before the package */
    char list[600];
    snprintf(list, sizeof list, "%s/none:%s", dir, dir);
    setenv("CLNORM_KERNEL_PACKAGE", list, 1);
    ctx = package_context(NULL);
    unsetenv("CLNORM_KERNEL_PACKAGE");
    CLNORM_OK(ctx, run(ctx, &layer, 0, got));
    ck_assert_uint_eq(ctx->from_package, 1);
    clnorm_context_release(ctx);
}
END_TEST

START_TEST(missing_program_names_the_command)
{
    char dir[256];
    temp_dir(dir, sizeof dir);
    package(dir, &layer, 0, CLNORM_PACKAGE_COMMAND, POCLCC);
    clnorm_context *ctx = package_context(dir);
    float out[48];
    /* in the package: forward; not: backward, and another problem's program */
    ck_assert_int_eq(run(ctx, &layer, 1, out), CLNORM_ERROR_UNSUPPORTED);
    const char *msg = clnorm_context_last_error(ctx);
    ck_assert_msg(strstr(msg, "program backward") && strstr(msg, "-DCLNORM_APPLY=2") &&
                      strstr(msg, "clnorm-compile --out ") && strstr(msg, dir) &&
                      strstr(msg, "--compiler '" POCLCC "'") &&
                      strstr(msg, "layer:backward:nchw:2x3x4:f32"),
                  "%s", msg);
    clnorm_desc narrow = {
        .kind = CLNORM_BATCH, .layout = CLNORM_NHWC, .dtype = CLNORM_F16, .n = 2, .c = 3, .d = 16,
        .groups = 0, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
    };
    clnorm_plan *plan = NULL;
    ck_assert_int_eq(clnorm_plan_create(ctx, &narrow, &plan), CLNORM_ERROR_UNSUPPORTED);
    ck_assert_ptr_null(plan);
    msg = clnorm_context_last_error(ctx);
    ck_assert_msg(strstr(msg, "program forward") &&
                      strstr(msg, "batch:forward-training:nhwc:2x3x16:f16") &&
                      strstr(msg, "CLNORM_COMPILER=0"),
                  "%s", msg);
    /* the command it names adds the program */
    char cmd[4096];
    const char *at = strstr(msg, "clnorm-compile ");
    snprintf(cmd, sizeof cmd, "%s/%s > /dev/null", CLNORM_BINARY_DIR, at);
    clnorm_context_release(ctx);
    ck_assert_msg(system(cmd) == 0, "%s", cmd);
    ctx = package_context(dir);
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &narrow, &plan));
    clnorm_plan_release(plan);

    /* pixels: the command names x's and y's storage, and adds that program */
    clnorm_desc pixels = {
        .kind = CLNORM_BATCH, .layout = CLNORM_NHWC, .dtype = CLNORM_U8, .n = 1, .c = 3, .d = 16,
        .groups = 0, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_F32
    };
    ck_assert_int_eq(clnorm_plan_create(ctx, &pixels, &plan), CLNORM_ERROR_UNSUPPORTED);
    msg = clnorm_context_last_error(ctx);
    ck_assert_msg(strstr(msg, "batch:forward-training:nhwc:1x3x16:u8-f32"), "%s", msg);
    at = strstr(msg, "clnorm-compile ");
    snprintf(cmd, sizeof cmd, "%s/%s > /dev/null", CLNORM_BINARY_DIR, at);
    clnorm_context_release(ctx);
    ck_assert_msg(system(cmd) == 0, "%s", cmd);
    ctx = package_context(dir);
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &pixels, &plan));
    clnorm_plan_release(plan);
    clnorm_context_release(ctx);
}
END_TEST

/* The forward program's binary in dir, and its manifest, edited by a shell command; then a
 * plan on a compiler-less context must be refused with `why` in the message, and a context
 * that compiles must still get the right results. */
static void expect_skipped(const char *dir, const char *edit, const char *why)
{
    shell("cd %s && %s", dir, edit);
    clnorm_context *ctx = package_context(dir);
    float out[48], want[48];
    ck_assert_int_eq(run(ctx, &layer, 0, out), CLNORM_ERROR_UNSUPPORTED);
    ck_assert_msg(strstr(clnorm_context_last_error(ctx), why), "want '%s' in: %s", why,
                  clnorm_context_last_error(ctx));
    clnorm_context_release(ctx);
    ctx = new_context();
    setenv("CLNORM_CACHE", "0", 1); /* so that it must compile */
    CLNORM_OK(ctx, clnorm_context_add_kernel_package(ctx, dir));
    CLNORM_OK(ctx, run(ctx, &layer, 0, out));
    ck_assert_uint_eq(ctx->from_package, 0);
    ck_assert_uint_eq(ctx->compiled, 1);
    clnorm_context_release(ctx);
    ctx = new_context();
    CLNORM_OK(ctx, run(ctx, &layer, 0, want));
    ck_assert_mem_eq(out, want, 24 * sizeof(float));
    clnorm_context_release(ctx);
}

START_TEST(unusable_binaries_are_skipped)
{
    static const struct {
        const char *edit, *why;
    } cases[] = {
        /* a flipped byte, or cut short: the manifest's size and hash catch it, and the
         * driver never sees it (PoCL 3.1 crashes on a truncated binary) */
        {"f=$(ls forward-*.bin) && printf 'X' | dd of=$f bs=1 seek=4000 conv=notrunc "
         "status=none",
         "corrupt"},
        {"f=$(ls forward-*.bin) && head -c 300 $f > t && mv t $f", "corrupt"},
        /* not recorded: copied in by hand */
        {"sed -i '/^binary_hash/d; /^binary_bytes/d' manifest", "not recorded"},
        /* another program's binary under this one's name, recorded: the driver loads it */
        {"cp $(ls backward-*.bin) $(ls forward-*.bin) && "
         "sed -i '/^binary_hash/d; /^binary_bytes/d' manifest && " CLNORM_BINARY_DIR
         "/clnorm-compile --out . > /dev/null",
         "not this program"},
        /* built for another device, or by another library version: never tried */
        {"sed -i 's/^device = .*/device = some FPGA board/' manifest", "no kernel package holds"},
        {"sed -i 's/^library = .*/library = 0.0.1/' manifest", "no kernel package holds"},
        {"sed -i 's/^source_hash = .*/source_hash = 0123456789abcdef/' manifest",
         "no kernel package holds"},
        {"rm $(ls forward-*.bin)", "binary missing"},
    };
    int i = _i;
    char dir[256];
    temp_dir(dir, sizeof dir);
    package(dir, &layer, 1, CLNORM_PACKAGE_DEVICE, NULL);
    expect_skipped(dir, cases[i].edit, cases[i].why);
}
END_TEST

START_TEST(emit_then_build_offline)
{
    char dir[256];
    temp_dir(dir, sizeof dir);
    package(dir, &layer, 0, CLNORM_PACKAGE_EMIT, NULL);
    clnorm_context *ctx = package_context(dir);
    float out[48];
    ck_assert_int_eq(run(ctx, &layer, 0, out), CLNORM_ERROR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(clnorm_context_last_error(ctx), "binary missing"));
    clnorm_context_release(ctx);
    /* a failing compiler is reported with its output, and nothing is recorded */
    ck_assert_int_eq(clnorm_package_build_missing(dir, "echo no luck for {source} >&2; false "
                                                       "{output}",
                                                  NULL, NULL, NULL),
                     CLNORM_ERROR_BUILD_FAILED);
    ck_assert_ptr_nonnull(strstr(clnorm_context_last_error(NULL), "no luck for"));
    CLNORM_OK(NULL, clnorm_package_build_missing(dir, POCLCC, NULL, NULL, NULL));
    ctx = package_context(dir);
    CLNORM_OK(ctx, run(ctx, &layer, 0, out));
    ck_assert_uint_eq(ctx->from_package, 1);
    clnorm_context_release(ctx);
}
END_TEST

START_TEST(add_kernel_package_checks_its_arguments)
{
    char dir[256], path[600];
    temp_dir(dir, sizeof dir);
    clnorm_context *ctx = new_context();
    ck_assert_int_eq(clnorm_context_add_kernel_package(NULL, dir),
                     CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_int_eq(clnorm_context_add_kernel_package(ctx, NULL),
                     CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_int_eq(clnorm_context_add_kernel_package(ctx, ""), CLNORM_ERROR_INVALID_ARGUMENT);
    snprintf(path, sizeof path, "%s/none", dir);
    ck_assert_int_eq(clnorm_context_add_kernel_package(ctx, path),
                     CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clnorm_context_last_error(ctx), "dir: "));
    shell("echo not a manifest > %s/manifest%s", dir, "");
    ck_assert_int_eq(clnorm_context_add_kernel_package(ctx, dir), CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clnorm_context_last_error(ctx), "manifest"));
    snprintf(path, sizeof path, "%s/manifest", dir);
    ck_assert_int_eq(clnorm_context_add_kernel_package(ctx, path),
                     CLNORM_ERROR_INVALID_ARGUMENT);
    clnorm_context_release(ctx);
}
END_TEST

START_TEST(program_log_lists_what_was_built)
{
    char dir[256], log[600];
    temp_dir(dir, sizeof dir);
    snprintf(log, sizeof log, "%s/programs.log", dir);
    setenv("CLNORM_PROGRAM_LOG", log, 1);
    clnorm_context *ctx = new_context();
    float out[48];
    CLNORM_OK(ctx, run(ctx, &layer, 1, out));
    clnorm_context_release(ctx);
    unsetenv("CLNORM_PROGRAM_LOG");
    /* and clnorm-compile --from packages exactly those */
    shell("grep -q '^forward\t-cl-std=CL1.2 .*\tlayer:forward-training:nchw:2x3x4:f32$' %s && "
          "grep -q '^backward\t.*\tlayer:backward:nchw:2x3x4:f32$' %s",
          log, log);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s/clnorm-compile --out %s/pkg --from %s > /dev/null",
             CLNORM_BINARY_DIR, dir, log);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/pkg", dir);
    ctx = package_context(cmd);
    CLNORM_OK(ctx, run(ctx, &layer, 1, out));
    ck_assert_uint_eq(ctx->from_package, 2);
    clnorm_context_release(ctx);

    /* without a compiler, what is missing is logged too: the list to package */
    char missing[700];
    snprintf(missing, sizeof missing, "%s/missing.log", dir);
    setenv("CLNORM_PROGRAM_LOG", missing, 1);
    ctx = package_context(NULL);
    clnorm_desc rms = {
        .kind = CLNORM_RMS, .layout = CLNORM_NCHW, .dtype = CLNORM_BF16, .n = 2, .c = 3, .d = 4,
        .groups = 0, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
    };
    clnorm_plan *plan = NULL;
    ck_assert_int_eq(clnorm_plan_create(ctx, &rms, &plan), CLNORM_ERROR_UNSUPPORTED);
    clnorm_context_release(ctx);
    unsetenv("CLNORM_PROGRAM_LOG");
    shell("grep -q '^forward\t.*-DCLNORM_DTYPE=2 .*\trms:forward-training:nchw:2x3x4:bf16$' %s%s",
          missing, "");
}
END_TEST

int main(void)
{
    clnorm_context *probe;
    if (clnorm_context_create(getenv("CLNORM_TEST_DEVICE"), &probe) != CLNORM_SUCCESS)
        return 77;
    clnorm_context_release(probe);
    snprintf(cache, sizeof cache, "/tmp/clnorm-package-cache-XXXXXX");
    if (!mkdtemp(cache))
        return 1;
    Suite *s = suite_create("package");
    TCase *t = tcase_create("package");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, forward_plans_build_only_forward);
    tcase_add_test(t, package_serves_a_device_without_compiler);
    tcase_add_test(t, missing_program_names_the_command);
    tcase_add_loop_test(t, unusable_binaries_are_skipped, 0, 8);
    tcase_add_test(t, emit_then_build_offline);
    tcase_add_test(t, add_kernel_package_checks_its_arguments);
    tcase_add_test(t, program_log_lists_what_was_built);
    suite_add_tcase(s, t);
    return harness_run(s);
}
