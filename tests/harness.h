/* What every device test needs: a context, buffers, fills and a Check runner. */
#ifndef CLNORM_TESTS_HARNESS_H
#define CLNORM_TESTS_HARNESS_H

#include <clnorm/clnorm.h>

#include <check.h>
#include <stddef.h>
#include <stdint.h>

/* The shared context, on CLNORM_TEST_DEVICE (else the library's default device). A machine
 * with no OpenCL device exits with 77, which CTest reports as skipped. */
clnorm_context *harness_ctx(void);
/* Nonzero under CLNORM_TEST_SMALL=1 (the Oclgrind runs): tests shrink their shapes. */
int harness_small(void);

cl_mem harness_buffer(const void *data, size_t bytes); /* a copy of data (NULL: zeros) */
void harness_read(cl_mem buf, void *out, size_t bytes);
void harness_finish(void);

/* Random fills, reproducible from the seed. */
typedef struct harness_rng {
    uint64_t state;
} harness_rng;
double harness_uniform(harness_rng *rng); /* [0, 1) */
double harness_normal(harness_rng *rng);

/* Runs the suite without forking (OpenCL runtimes do not survive fork) and returns the exit
 * status for main. */
int harness_run(Suite *suite);

#define CL_OK(call)                                                                              \
    do {                                                                                          \
        cl_int err_ = (call);                                                                     \
        ck_assert_msg(err_ == CL_SUCCESS, "%s failed: %d", #call, (int)err_);                     \
    } while (0)

#define CLNORM_OK(ctx, call)                                                                      \
    do {                                                                                          \
        clnorm_status st_ = (call);                                                               \
        ck_assert_msg(st_ == CLNORM_SUCCESS, "%s: %s: %s", #call, clnorm_status_string(st_),      \
                      clnorm_context_last_error(ctx));                                            \
    } while (0)

#endif
