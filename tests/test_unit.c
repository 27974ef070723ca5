/* Unit tests that need no OpenCL device: status strings, descriptor validation, the last-error
 * slots, the kernel registry, and the binary cache's file handling. */
#include "harness.h"
#include "internal.h"
#include "kernels.h"
#include "reference.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

START_TEST(status_strings_are_static_and_distinct)
{
    const char *seen[7];
    for (int s = 0; s <= CLNORM_ERROR_OPENCL; ++s) {
        seen[s] = clnorm_status_string((clnorm_status)s);
        ck_assert_ptr_nonnull(seen[s]);
        ck_assert_int_gt((int)strlen(seen[s]), 0);
        for (int t = 0; t < s; ++t)
            ck_assert_str_ne(seen[s], seen[t]);
    }
    ck_assert_str_eq(clnorm_status_string((clnorm_status)99), "unknown status");
    ck_assert_int_eq(CLNORM_SUCCESS, 0);
    ck_assert_int_eq(CLNORM_ERROR_INVALID_ARGUMENT, 1);
    ck_assert_int_eq(CLNORM_ERROR_UNSUPPORTED, 2);
    ck_assert_int_eq(CLNORM_ERROR_OUT_OF_MEMORY, 3);
    ck_assert_int_eq(CLNORM_ERROR_BUILD_FAILED, 4);
    ck_assert_int_eq(CLNORM_ERROR_NO_DEVICE, 5);
    ck_assert_int_eq(CLNORM_ERROR_OPENCL, 6);
}
END_TEST

START_TEST(version_string_matches_macros)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", CLNORM_VERSION_MAJOR, CLNORM_VERSION_MINOR,
             CLNORM_VERSION_PATCH);
    ck_assert_str_eq(clnorm_version_string(), want);
    ck_assert_str_eq(CLNORM_VERSION_STRING, want);
}
END_TEST

START_TEST(cl_error_names)
{
    ck_assert_str_eq(clnorm_cl_error_name(CL_INVALID_WORK_GROUP_SIZE), "CL_INVALID_WORK_GROUP_SIZE");
    ck_assert_str_eq(clnorm_cl_error_name(CL_OUT_OF_RESOURCES), "CL_OUT_OF_RESOURCES");
    ck_assert_str_eq(clnorm_cl_error_name(-12345), "CL_UNKNOWN_ERROR");
    ck_assert_int_eq(clnorm_fail_cl(NULL, CL_MEM_OBJECT_ALLOCATION_FAILURE, "clCreateBuffer", "x"),
                     CLNORM_ERROR_OUT_OF_MEMORY);
    ck_assert_ptr_nonnull(strstr(clnorm_context_last_error(NULL),
                                 "clCreateBuffer: CL_MEM_OBJECT_ALLOCATION_FAILURE"));
    ck_assert_int_eq(clnorm_fail_cl(NULL, CL_INVALID_KERNEL_ARGS, "clEnqueueNDRangeKernel", "apply"),
                     CLNORM_ERROR_OPENCL);
}
END_TEST

static clnorm_desc good(void)
{
    clnorm_desc d = {
        .kind = CLNORM_GROUP, .layout = CLNORM_NHWC, .dtype = CLNORM_F16, .n = 2, .c = 6, .d = 10,
        .groups = 3, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
    };
    return d;
}

/* The check fails with INVALID_ARGUMENT and a message naming field. */
static void rejects(const clnorm_desc *d, const char *field)
{
    ck_assert_int_eq(clnorm_desc_check(NULL, d), CLNORM_ERROR_INVALID_ARGUMENT);
    const char *msg = clnorm_context_last_error(NULL);
    ck_assert_msg(strstr(msg, field) != NULL, "message \"%s\" does not name %s", msg, field);
}

START_TEST(descriptor_validation_names_the_field)
{
    clnorm_desc d = good();
    ck_assert_int_eq(clnorm_desc_check(NULL, &d), CLNORM_SUCCESS);
    d.n = 0; /* a valid no-op */
    ck_assert_int_eq(clnorm_desc_check(NULL, &d), CLNORM_SUCCESS);
    d.eps = 0.0f;
    ck_assert_int_eq(clnorm_desc_check(NULL, &d), CLNORM_SUCCESS);

    rejects(NULL, "desc");
    d = good(), d.kind = (clnorm_kind)5, rejects(&d, "desc.kind");
    d = good(), d.kind = (clnorm_kind)-1, rejects(&d, "desc.kind");
    d = good(), d.layout = (clnorm_layout)2, rejects(&d, "desc.layout");
    d = good(), d.dtype = (clnorm_dtype)5, rejects(&d, "desc.dtype");
    d = good(), d.y_dtype = (clnorm_y_dtype)6, rejects(&d, "desc.y_dtype");
    d = good(), d.c = 0, rejects(&d, "desc.c");
    d = good(), d.d = 0, rejects(&d, "desc.d");
    d = good(), d.eps = -1e-5f, rejects(&d, "desc.eps");
    d = good(), d.eps = NAN, rejects(&d, "desc.eps");
    d = good(), d.eps = INFINITY, rejects(&d, "desc.eps");
    d = good(), d.momentum = -0.1f, rejects(&d, "desc.momentum");
    d = good(), d.momentum = 1.5f, rejects(&d, "desc.momentum");
    d = good(), d.momentum = NAN, rejects(&d, "desc.momentum");
    d = good(), d.groups = 0, rejects(&d, "desc.groups");
    d = good(), d.groups = 4, rejects(&d, "desc.groups");
    d = good(), d.kind = CLNORM_LAYER, d.n = (size_t)1 << 40, d.c = (size_t)1 << 20;
    rejects(&d, "overflows");
    /* groups only matters for GROUP. */
    d = good(), d.kind = CLNORM_LAYER, d.groups = 0;
    ck_assert_int_eq(clnorm_desc_check(NULL, &d), CLNORM_SUCCESS);
}
END_TEST

static void *other_thread(void *arg)
{
    (void)arg;
    clnorm_fail(NULL, CLNORM_ERROR_INVALID_ARGUMENT, "from the other thread");
    return strstr(clnorm_context_last_error(NULL), "other thread") ? (void *)1 : NULL;
}

START_TEST(last_error_is_per_thread)
{
    clnorm_fail(NULL, CLNORM_ERROR_INVALID_ARGUMENT, "from the main thread");
    pthread_t t;
    void *ok = NULL;
    ck_assert_int_eq(pthread_create(&t, NULL, other_thread, NULL), 0);
    ck_assert_int_eq(pthread_join(t, &ok), 0);
    ck_assert_ptr_nonnull(ok);
    ck_assert_str_eq(clnorm_context_last_error(NULL), "from the main thread");
    clnorm_error_clear(NULL);
    ck_assert_str_eq(clnorm_context_last_error(NULL), "");
}
END_TEST

START_TEST(long_messages_are_kept_whole)
{
    clnorm_fail(NULL, CLNORM_ERROR_BUILD_FAILED, "build failed");
    char chunk[1001];
    memset(chunk, 'x', 1000);
    chunk[1000] = '\0';
    for (int i = 0; i < 50; ++i)
        clnorm_error_append(NULL, chunk);
    ck_assert_uint_eq(strlen(clnorm_context_last_error(NULL)), strlen("build failed") + 50000);
}
END_TEST

START_TEST(every_kernel_file_is_embedded)
{
    const char *want[] = {"common.clh", "stats.cl", "apply.cl", "backward.cl", "copy.cl"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; ++i) {
        const clnorm_kernel_source *k = clnorm_kernel_sources;
        while (k->name && strcmp(k->name, want[i]) != 0)
            ++k;
        ck_assert_msg(k->name != NULL, "%s is not embedded", want[i]);
        ck_assert_uint_eq(strlen(k->text), k->size);
    }
    /* Byte for byte the file in the source tree. */
    FILE *f = fopen(CLNORM_SOURCE_DIR "/kernels/stats.cl", "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n);
    ck_assert_int_eq((long)fread(text, 1, (size_t)n, f), n);
    fclose(f);
    char *embedded = NULL;
    size_t size = 0;
    unsetenv("CLNORM_KERNEL_DIR");
    ck_assert_int_eq(clnorm_kernel_source_read(NULL, "stats.cl", &embedded, &size), CLNORM_SUCCESS);
    ck_assert_uint_eq(size, (size_t)n);
    ck_assert_int_eq(memcmp(text, embedded, size), 0);
    free(text);
    free(embedded);
}
END_TEST

static char cache_dir[256];

static void use_temp_cache(void)
{
    snprintf(cache_dir, sizeof cache_dir, "/tmp/clnorm-unit-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(cache_dir));
    setenv("CLNORM_CACHE_DIR", cache_dir, 1);
    unsetenv("CLNORM_CACHE");
}

static char *only_file(void)
{
    static char path[512];
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s/*.bin 2>/dev/null | head -n 1", cache_dir);
    FILE *p = popen(cmd, "r");
    path[0] = '\0';
    if (p && fgets(path, sizeof path, p))
        path[strcspn(path, "\n")] = '\0';
    if (p)
        pclose(p);
    return path;
}

START_TEST(cache_round_trip)
{
    use_temp_cache();
    const char key[] = "key: platform, device, options, source";
    const unsigned char bin[] = {1, 2, 3, 4, 5, 250};
    size_t size = 0;
    ck_assert_ptr_null(clnorm_cache_load(key, sizeof key, &size));
    clnorm_cache_store(key, sizeof key, bin, sizeof bin);
    unsigned char *got = clnorm_cache_load(key, sizeof key, &size);
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(size, sizeof bin);
    ck_assert_int_eq(memcmp(got, bin, size), 0);
    free(got);
    /* A different key (the same hash file name cannot be forced, but a longer key must not
     * match a stored shorter one) misses. */
    const char other[] = "key: platform, device, options, source!";
    ck_assert_ptr_null(clnorm_cache_load(other, sizeof other, &size));
}
END_TEST

START_TEST(cache_ignores_corrupt_and_truncated_files)
{
    use_temp_cache();
    const char key[] = "some key";
    unsigned char bin[300];
    for (size_t i = 0; i < sizeof bin; ++i)
        bin[i] = (unsigned char)i;
    size_t size = 0;
    clnorm_cache_store(key, sizeof key, bin, sizeof bin);
    char *path = only_file();
    ck_assert_int_gt((int)strlen(path), 0);
    /* Flip a byte of the binary: the checksum rejects it. */
    FILE *f = fopen(path, "r+b");
    fseek(f, -20, SEEK_END);
    fputc(0xAA, f);
    fclose(f);
    ck_assert_ptr_null(clnorm_cache_load(key, sizeof key, &size));
    /* Truncated. */
    clnorm_cache_store(key, sizeof key, bin, sizeof bin);
    ck_assert_int_eq(truncate(path, 40), 0);
    ck_assert_ptr_null(clnorm_cache_load(key, sizeof key, &size));
    /* Empty, and garbage. */
    ck_assert_int_eq(truncate(path, 0), 0);
    ck_assert_ptr_null(clnorm_cache_load(key, sizeof key, &size));
    f = fopen(path, "wb");
    fputs("not a cache file at all, just some text that is long enough", f);
    fclose(f);
    ck_assert_ptr_null(clnorm_cache_load(key, sizeof key, &size));
    /* And a rewrite makes it good again. */
    clnorm_cache_store(key, sizeof key, bin, sizeof bin);
    unsigned char *got = clnorm_cache_load(key, sizeof key, &size);
    ck_assert_ptr_nonnull(got);
    free(got);
}
END_TEST

START_TEST(cache_folder_is_created_or_skipped)
{
    use_temp_cache();
    char nested[400];
    snprintf(nested, sizeof nested, "%s/a/b/c", cache_dir);
    setenv("CLNORM_CACHE_DIR", nested, 1);
    const char key[] = "k";
    const unsigned char bin[] = {9};
    size_t size;
    clnorm_cache_store(key, sizeof key, bin, sizeof bin);
    unsigned char *got = clnorm_cache_load(key, sizeof key, &size);
    ck_assert_ptr_nonnull(got);
    free(got);
    /* A folder that cannot exist (below a regular file): nothing stored, nothing fails. */
    snprintf(nested, sizeof nested, "%s/file", cache_dir);
    FILE *f = fopen(nested, "w");
    fclose(f);
    strcat(nested, "/sub");
    setenv("CLNORM_CACHE_DIR", nested, 1);
    clnorm_cache_store(key, sizeof key, bin, sizeof bin);
    ck_assert_ptr_null(clnorm_cache_load(key, sizeof key, &size));
    /* ...and an application can ask why. */
    char why[600];
    ck_assert_int_eq(clnorm_cache_info(why, sizeof why), 0);
    ck_assert_msg(strstr(why, "off: ") == why && strstr(why, nested) &&
                      strstr(why, "cannot create it (Not a directory)"),
                  "%s", why);
    setenv("CLNORM_CACHE_DIR", cache_dir, 1);
    ck_assert_int_eq(clnorm_cache_info(why, sizeof why), 1);
    ck_assert_str_eq(why + 4, cache_dir);
    /* CLNORM_CACHE=0: no folder at all. */
    setenv("CLNORM_CACHE", "0", 1);
    char dir[64];
    ck_assert_int_eq(clnorm_cache_dir(dir, sizeof dir), 0);
    ck_assert_int_eq(clnorm_cache_info(why, sizeof why), 0);
    ck_assert_str_eq(why, "off: CLNORM_CACHE=0");
    unsetenv("CLNORM_CACHE");
    /* The documented fallbacks. */
    unsetenv("CLNORM_CACHE_DIR");
    setenv("XDG_CACHE_HOME", "/xdg", 1);
    ck_assert_int_eq(clnorm_cache_dir(dir, sizeof dir), 1);
    ck_assert_str_eq(dir, "/xdg/clnorm");
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/home/someone", 1);
    ck_assert_int_eq(clnorm_cache_dir(dir, sizeof dir), 1);
    ck_assert_str_eq(dir, "/home/someone/.cache/clnorm");
}
END_TEST

START_TEST(reference_storage_conversions_round_to_nearest_even)
{
    ck_assert_uint_eq(ref_half_from_float(1.0f), 0x3c00);
    ck_assert_uint_eq(ref_half_from_float(-2.0f), 0xc000);
    ck_assert_uint_eq(ref_half_from_float(65504.0f), 0x7bff);
    ck_assert_uint_eq(ref_half_from_float(65520.0f), 0x7c00);
    ck_assert_uint_eq(ref_half_from_float(1.0f + 0x1p-11f), 0x3c00);            /* tie: even */
    ck_assert_uint_eq(ref_half_from_float(1.0f + 3 * 0x1p-11f), 0x3c02);        /* tie: even */
    ck_assert_uint_eq(ref_half_from_float(0x1p-24f), 0x0001);                   /* subnormal */
    ck_assert(isnan(ref_float_from_half(ref_half_from_float(NAN))));
    ck_assert_uint_eq(ref_bf16_from_float(1.0f), 0x3f80);
    ck_assert_uint_eq(ref_bf16_from_float(1.0f + 0x1p-8f), 0x3f80);              /* tie: even */
    ck_assert_uint_eq(ref_bf16_from_float(1.0f + 3 * 0x1p-8f), 0x3f82);
    ck_assert(isnan(ref_float_from_bf16(ref_bf16_from_float(NAN))));
    ck_assert_float_eq(ref_float_from_half(0x3555), 0.333251953125f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("unit");
    TCase *tc = tcase_create("unit");
    tcase_add_test(tc, status_strings_are_static_and_distinct);
    tcase_add_test(tc, version_string_matches_macros);
    tcase_add_test(tc, cl_error_names);
    tcase_add_test(tc, descriptor_validation_names_the_field);
    tcase_add_test(tc, last_error_is_per_thread);
    tcase_add_test(tc, long_messages_are_kept_whole);
    tcase_add_test(tc, every_kernel_file_is_embedded);
    tcase_add_test(tc, cache_round_trip);
    tcase_add_test(tc, cache_ignores_corrupt_and_truncated_files);
    tcase_add_test(tc, cache_folder_is_created_or_skipped);
    tcase_add_test(tc, reference_storage_conversions_round_to_nearest_even);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
