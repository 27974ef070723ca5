/* A program outside the project: finds the installed clnorm and runs one batch norm forward. */
#include <clnorm/clnorm.h>

#include <math.h>
#include <stdio.h>

int main(void)
{
    clnorm_context *ctx;
    clnorm_status st = clnorm_context_create(NULL, &ctx);
    if (st == CLNORM_ERROR_NO_DEVICE)
        return 77;
    if (st != CLNORM_SUCCESS) {
        fprintf(stderr, "%s\n", clnorm_context_last_error(NULL));
        return 1;
    }
    clnorm_desc desc = {CLNORM_BATCH, CLNORM_NCHW, CLNORM_F32, 2, 1, 2, 0, 0.0f, 0.1f};
    clnorm_plan *plan;
    float x[4] = {1, 3, 5, 7}, y[4];
    cl_int err;
    clnorm_buffers b = {0};
    if (clnorm_plan_create(ctx, &desc, &plan) != CLNORM_SUCCESS) {
        fprintf(stderr, "%s\n", clnorm_context_last_error(ctx));
        return 1;
    }
    b.x = clCreateBuffer(clnorm_context_cl(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                         sizeof x, x, &err);
    b.y = clCreateBuffer(clnorm_context_cl(ctx), CL_MEM_READ_WRITE, sizeof y, NULL, &err);
    if (clnorm_forward(plan, CLNORM_TRAINING, &b, 0, NULL, NULL) != CLNORM_SUCCESS ||
        clEnqueueReadBuffer(clnorm_context_queue(ctx), b.y, CL_TRUE, 0, sizeof y, y, 0, NULL,
                            NULL) != CL_SUCCESS) {
        fprintf(stderr, "%s\n", clnorm_context_last_error(ctx));
        return 1;
    }
    /* mean 4, variance 5 */
    for (int i = 0; i < 4; ++i)
        if (fabsf(y[i] - (x[i] - 4.0f) / sqrtf(5.0f)) > 1e-5f)
            return 1;
    printf("clnorm %s: batch norm forward ok\n", clnorm_version_string());
    clReleaseMemObject(b.x);
    clReleaseMemObject(b.y);
    clnorm_plan_release(plan);
    clnorm_context_release(ctx);
    return 0;
}
