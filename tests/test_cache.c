/* The binary cache and the kernel override, end to end on a device. */
#include "harness.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static void fresh_cache(void)
{
    snprintf(dir, sizeof dir, "/tmp/clnorm-cache-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    setenv("CLNORM_CACHE_DIR", dir, 1);
    unsetenv("CLNORM_CACHE");
    unsetenv("CLNORM_KERNEL_DIR");
}

static int count_files(void)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "ls %s 2>/dev/null | grep -c '\\.bin$'", dir);
    FILE *p = popen(cmd, "r");
    int n = 0;
    if (fscanf(p, "%d", &n) != 1)
        n = -1;
    pclose(p);
    return n;
}

static void each_file(const char *shell_action)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "for f in %s/*.bin; do %s; done", dir, shell_action);
    ck_assert_int_eq(system(cmd), 0);
}

/* A new context (so nothing is in memory), one plan, one checked forward. Returns the
 * context's (compiled, loaded) counts. */
static void build_and_run(unsigned long *compiled, unsigned long *loaded)
{
    clnorm_context *ctx;
    CLNORM_OK(NULL, clnorm_context_create(getenv("CLNORM_TEST_DEVICE"), &ctx));
    clnorm_desc desc = {
        .kind = CLNORM_LAYER, .layout = CLNORM_NCHW, .dtype = CLNORM_F32, .n = 2, .c = 3, .d = 4,
        .groups = 0, .eps = 0.0f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
    };
    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &desc, &plan));
    float x[24], y[24];
    for (int i = 0; i < 24; ++i)
        x[i] = (float)(i % 12) - 5.5f; /* each row: -5.5 .. 5.5, mean 0 */
    cl_int err;
    cl_mem bx = clCreateBuffer(clnorm_context_cl(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                               sizeof x, x, &err);
    cl_mem by = clCreateBuffer(clnorm_context_cl(ctx), CL_MEM_READ_WRITE, sizeof y, NULL, &err);
    clnorm_buffers b = {0};
    b.x = bx;
    b.y = by;
    CLNORM_OK(ctx, clnorm_forward(plan, CLNORM_TRAINING, &b, 0, NULL, NULL));
    CL_OK(clEnqueueReadBuffer(clnorm_context_queue(ctx), by, CL_TRUE, 0, sizeof y, y, 0, NULL,
                              NULL));
    /* var = (11^2 - 1) / 12 = 143/12 */
    ck_assert_float_eq_tol(y[0], -5.5f / 3.4520525f, 1e-5f);
    ck_assert_float_eq_tol(y[23], 5.5f / 3.4520525f, 1e-5f);
    *compiled = ctx->compiled;
    *loaded = ctx->loaded;
    clReleaseMemObject(bx);
    clReleaseMemObject(by);
    clnorm_plan_release(plan);
    clnorm_context_release(ctx);
}

START_TEST(second_context_loads_from_cache)
{
    fresh_cache();
    unsigned long compiled, loaded;
    build_and_run(&compiled, &loaded);
    ck_assert_uint_eq(compiled, 1);
    ck_assert_uint_eq(loaded, 0);
    ck_assert_int_eq(count_files(), 1);
    build_and_run(&compiled, &loaded);
    ck_assert_uint_eq(compiled, 0);
    ck_assert_uint_eq(loaded, 1);
}
END_TEST

START_TEST(corrupt_cache_file_is_rebuilt)
{
    fresh_cache();
    unsigned long compiled, loaded;
    build_and_run(&compiled, &loaded);
    /* Overwrite the middle of the file. */
    each_file("printf 'garbage garbage garbage' | dd of=\"$f\" bs=1 seek=200 conv=notrunc "
              "2>/dev/null");
    build_and_run(&compiled, &loaded);
    ck_assert_uint_eq(compiled, 1);
    ck_assert_uint_eq(loaded, 0);
    /* The rebuilt binary replaced it. */
    build_and_run(&compiled, &loaded);
    ck_assert_uint_eq(loaded, 1);
}
END_TEST

START_TEST(truncated_cache_file_is_rebuilt)
{
    fresh_cache();
    unsigned long compiled, loaded;
    build_and_run(&compiled, &loaded);
    each_file("truncate -s 100 \"$f\"");
    build_and_run(&compiled, &loaded);
    ck_assert_uint_eq(compiled, 1);
    each_file("truncate -s 0 \"$f\"");
    build_and_run(&compiled, &loaded);
    ck_assert_uint_eq(compiled, 1);
}
END_TEST

START_TEST(unwritable_cache_folder_is_no_error)
{
    fresh_cache();
    char file[300];
    snprintf(file, sizeof file, "%s/not-a-folder", dir);
    FILE *f = fopen(file, "w");
    fclose(f);
    strcat(file, "/cache");
    setenv("CLNORM_CACHE_DIR", file, 1);
    unsigned long compiled, loaded;
    build_and_run(&compiled, &loaded);
    build_and_run(&compiled, &loaded);
    ck_assert_uint_eq(compiled, 1);
    /* CLNORM_CACHE=0: nothing written. */
    fresh_cache();
    setenv("CLNORM_CACHE", "0", 1);
    build_and_run(&compiled, &loaded);
    build_and_run(&compiled, &loaded);
    ck_assert_uint_eq(compiled, 1);
    ck_assert_int_eq(count_files(), 0);
    unsetenv("CLNORM_CACHE");
}
END_TEST

/* The source tree the tests were built from, or $CLNORM_SOURCE_DIR where they run elsewhere
 * (a kit from tools/make-kit). */
static const char *source_dir(void)
{
    const char *s = getenv("CLNORM_SOURCE_DIR");
    return s && *s ? s : CLNORM_SOURCE_DIR;
}

static void copy_kernels(const char *to)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/kernels/*.cl %s/kernels/*.clh %s/", to,
             source_dir(), source_dir(), to);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(kernel_dir_overrides_embedded_sources)
{
    fresh_cache();
    char kdir[300];
    snprintf(kdir, sizeof kdir, "%s/kernels", dir);
    copy_kernels(kdir);
    setenv("CLNORM_KERNEL_DIR", kdir, 1);
    unsigned long compiled, loaded;
    build_and_run(&compiled, &loaded); /* same text as embedded: works */

    /* A broken file: BUILD_FAILED, with the compiler's log naming the problem. */
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "printf '\\nthis_is_not_opencl;\\n' >> %s/stats.cl", kdir);
    ck_assert_int_eq(system(cmd), 0);
    clnorm_context *ctx;
    CLNORM_OK(NULL, clnorm_context_create(getenv("CLNORM_TEST_DEVICE"), &ctx));
    clnorm_desc desc = {
        .kind = CLNORM_BATCH, .layout = CLNORM_NCHW, .dtype = CLNORM_F32, .n = 2, .c = 3, .d = 4,
        .groups = 0, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
    };
    clnorm_plan *plan = (clnorm_plan *)&desc;
    ck_assert_int_eq(clnorm_plan_create(ctx, &desc, &plan), CLNORM_ERROR_BUILD_FAILED);
    ck_assert_ptr_null(plan);
    const char *msg = clnorm_context_last_error(ctx);
    ck_assert_msg(strstr(msg, "clBuildProgram") && strstr(msg, "build log") &&
                      strstr(msg, "error") &&
                      (strstr(msg, "stats.cl") || strstr(msg, "this_is_not_opencl")),
                  "last error lacks the build log: %s", msg);

    /* A missing file names the path. */
    snprintf(cmd, sizeof cmd, "rm %s/apply.cl", kdir);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(clnorm_plan_create(ctx, &desc, &plan), CLNORM_ERROR_BUILD_FAILED);
    ck_assert_ptr_nonnull(strstr(clnorm_context_last_error(ctx), "apply.cl"));
    clnorm_context_release(ctx);
    unsetenv("CLNORM_KERNEL_DIR");
}
END_TEST

START_TEST(tuning_is_saved_per_device_and_bad_files_ignored)
{
    fresh_cache();
    clnorm_context *ctx;
    CLNORM_OK(NULL, clnorm_context_create(getenv("CLNORM_TEST_DEVICE"), &ctx));
    ck_assert_int_eq(ctx->tuning.from_file, 0);
    clnorm_tuning defaults = ctx->tuning;
    ctx->tuning.block = 2048;
    ctx->tuning.chunk_max = 32768;
    ctx->tuning.local = 4;
    ctx->tuning.stream_min = 12345;
    char path[4300];
    CLNORM_OK(ctx, clnorm_tuning_store(ctx, path, sizeof path));
    clnorm_context_release(ctx);

    /* A new context on the device reads it, and its plans compute the same results. */
    CLNORM_OK(NULL, clnorm_context_create(getenv("CLNORM_TEST_DEVICE"), &ctx));
    ck_assert_int_eq(ctx->tuning.from_file, 1);
    ck_assert_uint_eq(ctx->tuning.block, 2048);
    ck_assert_uint_eq(ctx->tuning.chunk_max, 32768);
    ck_assert_uint_eq(ctx->tuning.local, 4);
    ck_assert_uint_eq(ctx->tuning.stream_min, 12345);
    clnorm_context_release(ctx);
    unsigned long compiled, loaded;
    build_and_run(&compiled, &loaded);

    /* Out of range, or not a tuning file: the defaults. */
    FILE *f = fopen(path, "w");
    fputs("clnorm-tune 2\nblock 3000\nchunk 16384\nlocal 8\nstream 0\n", f);
    fclose(f);
    CLNORM_OK(NULL, clnorm_context_create(getenv("CLNORM_TEST_DEVICE"), &ctx));
    ck_assert_int_eq(ctx->tuning.from_file, 0);
    ck_assert_uint_eq(ctx->tuning.block, defaults.block);
    clnorm_context_release(ctx);
    f = fopen(path, "w");
    fputs("garbage", f);
    fclose(f);
    CLNORM_OK(NULL, clnorm_context_create(getenv("CLNORM_TEST_DEVICE"), &ctx));
    ck_assert_int_eq(ctx->tuning.from_file, 0);
    clnorm_context_release(ctx);
}
END_TEST

int main(void)
{
    harness_ctx();
    Suite *s = suite_create("cache");
    TCase *tc = tcase_create("cache");
    tcase_set_timeout(tc, 0);
    tcase_add_test(tc, second_context_loads_from_cache);
    tcase_add_test(tc, corrupt_cache_file_is_rebuilt);
    tcase_add_test(tc, truncated_cache_file_is_rebuilt);
    tcase_add_test(tc, unwritable_cache_folder_is_no_error);
    tcase_add_test(tc, kernel_dir_overrides_embedded_sources);
    tcase_add_test(tc, tuning_is_saved_per_device_and_bad_files_ignored);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
