#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static clnorm_context *shared_ctx;

clnorm_context *harness_ctx(void)
{
    if (!shared_ctx) {
        clnorm_status st = clnorm_context_create(getenv("CLNORM_TEST_DEVICE"), &shared_ctx);
        if (st == CLNORM_ERROR_NO_DEVICE) {
            fprintf(stderr, "no OpenCL device, skipping: %s\n", clnorm_context_last_error(NULL));
            exit(77);
        }
        if (st != CLNORM_SUCCESS) {
            fprintf(stderr, "clnorm_context_create: %s: %s\n", clnorm_status_string(st),
                    clnorm_context_last_error(NULL));
            exit(1);
        }
    }
    return shared_ctx;
}

int harness_small(void)
{
    const char *s = getenv("CLNORM_TEST_SMALL");
    return s && strcmp(s, "0") != 0;
}

cl_mem harness_buffer(const void *data, size_t bytes)
{
    clnorm_context *ctx = harness_ctx();
    cl_int err;
    cl_mem buf = clCreateBuffer(clnorm_context_cl(ctx), CL_MEM_READ_WRITE, bytes ? bytes : 4,
                                NULL, &err);
    ck_assert_msg(err == CL_SUCCESS, "clCreateBuffer(%zu): %d", bytes, (int)err);
    void *zeros = NULL;
    if (!data)
        data = zeros = calloc(1, bytes ? bytes : 4);
    err = clEnqueueWriteBuffer(clnorm_context_queue(ctx), buf, CL_TRUE, 0, bytes ? bytes : 4, data,
                               0, NULL, NULL);
    free(zeros);
    ck_assert_msg(err == CL_SUCCESS, "clEnqueueWriteBuffer: %d", (int)err);
    return buf;
}

void harness_read(cl_mem buf, void *out, size_t bytes)
{
    cl_int err = clEnqueueReadBuffer(clnorm_context_queue(harness_ctx()), buf, CL_TRUE, 0, bytes,
                                     out, 0, NULL, NULL);
    ck_assert_msg(err == CL_SUCCESS, "clEnqueueReadBuffer: %d", (int)err);
}

void harness_finish(void) { clFinish(clnorm_context_queue(harness_ctx())); }

double harness_uniform(harness_rng *rng)
{
    /* splitmix64 */
    uint64_t z = (rng->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

double harness_normal(harness_rng *rng)
{
    double u = harness_uniform(rng), v = harness_uniform(rng);
    return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

int harness_run(Suite *suite)
{
    SRunner *runner = srunner_create(suite);
    srunner_set_fork_status(runner, CK_NOFORK);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    if (shared_ctx)
        clnorm_context_release(shared_ctx);
    shared_ctx = NULL;
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
