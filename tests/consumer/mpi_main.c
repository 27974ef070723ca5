/* A program outside the project: finds the installed clnorm_mpi and runs one synchronized
 * batch norm forward over the ranks it is started on: rank r holds the values r+1 and r+3
 * of one channel, so the batch's mean is (size+3)/2 on every rank. */
#include <clnorm/clnorm_mpi.h>

#include <math.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    clnorm_context *ctx;
    clnorm_status st = clnorm_context_create(NULL, &ctx);
    if (st != CLNORM_SUCCESS) {
        fprintf(stderr, "%s\n", clnorm_context_last_error(NULL));
        MPI_Abort(MPI_COMM_WORLD, st == CLNORM_ERROR_NO_DEVICE ? 77 : 1);
    }
    clnorm_desc desc = {.kind = CLNORM_BATCH, .n = 2, .c = 1, .d = 1, .momentum = 0.1f};
    clnorm_plan *plan;
    float x[2] = {(float)rank + 1, (float)rank + 3}, y[2], mean;
    cl_int err;
    clnorm_buffers b = {0};
    if (clnorm_plan_create(ctx, &desc, &plan) != CLNORM_SUCCESS) {
        fprintf(stderr, "%s\n", clnorm_context_last_error(ctx));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    b.x = clCreateBuffer(clnorm_context_cl(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                         sizeof x, x, &err);
    b.y = clCreateBuffer(clnorm_context_cl(ctx), CL_MEM_READ_WRITE, sizeof y, NULL, &err);
    b.save_mean = clCreateBuffer(clnorm_context_cl(ctx), CL_MEM_READ_WRITE, sizeof mean, NULL,
                                 &err);
    if (clnorm_mpi_forward(plan, MPI_COMM_WORLD, CLNORM_TRAINING, &b, 0, NULL, NULL) !=
            CLNORM_SUCCESS ||
        clEnqueueReadBuffer(clnorm_context_queue(ctx), b.save_mean, CL_TRUE, 0, sizeof mean,
                            &mean, 0, NULL, NULL) != CL_SUCCESS) {
        fprintf(stderr, "%s\n", clnorm_context_last_error(ctx));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int ok = fabsf(mean - (float)(size + 3) / 2.0f) <= 1e-6f;
    if (rank == 0 && ok)
        printf("clnorm %s: synchronized batch norm over %d ranks ok\n", clnorm_version_string(),
               size);
    clReleaseMemObject(b.x);
    clReleaseMemObject(b.y);
    clReleaseMemObject(b.save_mean);
    clnorm_plan_release(plan);
    clnorm_context_release(ctx);
    MPI_Finalize();
    return ok ? 0 : 1;
}
