/*
 * Build logs name kernel files and their own lines, not lines of the concatenated program.
 *
 * The kernel files are compiled as one source (common.clh, stats.cl, apply.cl, ...). A driver
 * that honours the #line before each file (PoCL) names the file itself; one that does not
 * (Oclgrind 21.10 says "input.cl:<line of the concatenation>") has its log mapped back by the
 * library. Either way the last error must point at the line that is wrong.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The source tree the tests were built from, or $CLNORM_SOURCE_DIR where they run elsewhere. */
static const char *source_dir(void)
{
    const char *s = getenv("CLNORM_SOURCE_DIR");
    return s && *s ? s : CLNORM_SOURCE_DIR;
}

static char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert_int_ge(n, 0);
    rewind(f);
    char *text = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(fread(text, 1, (size_t)n, f), (size_t)n);
    text[n] = '\0';
    fclose(f);
    *size = (size_t)n;
    return text;
}

static void spill(const char *path, const char *a, const char *b, size_t b_size, const char *c)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(a, f);
    ck_assert_uint_eq(fwrite(b, 1, b_size, f), b_size);
    fputs(c, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* A temporary copy of kernels/ with an #error as the first line of apply.cl and as the line
 * after the last of stats.cl (appended, so that no comment or macro can swallow it). Returns
 * that line's number. */
static unsigned long plant_errors(const char *dir)
{
    char cmd[2048], path[600];
    snprintf(cmd, sizeof cmd, "cp %s/kernels/*.cl %s/kernels/*.clh %s/", source_dir(),
             source_dir(), dir);
    ck_assert_int_eq(system(cmd), 0);

    size_t n;
    snprintf(path, sizeof path, "%s/stats.cl", dir);
    char *text = slurp(path, &n);
    unsigned long line = 1;
    for (size_t i = 0; i < n; ++i)
        line += text[i] == '\n';
    int newline = n == 0 || text[n - 1] == '\n';
    if (!newline)
        ++line;
    spill(path, "", text, n, newline ? "#error planted_in_stats\n" : "\n#error planted_in_stats\n");
    free(text);

    snprintf(path, sizeof path, "%s/apply.cl", dir);
    text = slurp(path, &n);
    spill(path, "#error planted_in_apply\n", text, n, "");
    free(text);
    return line;
}

START_TEST(build_log_names_kernel_file_and_line)
{
    char dir[] = "/tmp/clnorm-build-log-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    unsigned long line = plant_errors(dir);
    setenv("CLNORM_KERNEL_DIR", dir, 1);
    setenv("CLNORM_CACHE", "0", 1);

    clnorm_context *ctx;
    CLNORM_OK(NULL, clnorm_context_create(getenv("CLNORM_TEST_DEVICE"), &ctx));
    clnorm_desc desc = {
        .kind = CLNORM_BATCH, .layout = CLNORM_NCHW, .dtype = CLNORM_F32, .n = 2, .c = 3, .d = 4,
        .groups = 0, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
    };
    clnorm_plan *plan = NULL;
    ck_assert_int_eq(clnorm_plan_create(ctx, &desc, &plan), CLNORM_ERROR_BUILD_FAILED);
    ck_assert_ptr_null(plan);

    const char *msg = clnorm_context_last_error(ctx);
    char stats_at[64];
    snprintf(stats_at, sizeof stats_at, "stats.cl:%lu:", line);
    ck_assert_msg(strstr(msg, "planted_in_stats") && strstr(msg, stats_at),
                  "the build log does not name %s: %s", stats_at, msg);
    ck_assert_msg(strstr(msg, "planted_in_apply") && strstr(msg, "apply.cl:1:"),
                  "the build log does not name apply.cl:1: %s", msg);
    /* Oclgrind's name for the whole source must not survive with a line number. */
    ck_assert_msg(!strstr(msg, "input.cl:"), "a location in the concatenation is left: %s", msg);
    clnorm_context_release(ctx);

    unsetenv("CLNORM_KERNEL_DIR");
    unsetenv("CLNORM_CACHE");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void)
{
    harness_ctx();
    Suite *s = suite_create("build_log");
    TCase *tc = tcase_create("build_log");
    tcase_set_timeout(tc, 0);
    tcase_add_test(tc, build_log_names_kernel_file_and_line);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
