/*
 * mpi-bench: what synchronizing costs. Every rank holds n/size samples of a BATCH problem
 * (default the benchmark's ResNet shape 32x64x3136, channels first, float32) and times, in
 * alternating rounds, a TRAINING forward and backward done locally (clnorm_forward,
 * clnorm_backward) and synchronized (clnorm_mpi_forward, clnorm_mpi_backward), each waited for.
 * Rank 0 prints, per variant, the median over rounds of the slowest rank's time.
 *
 *   mpirun -np K mpi-bench [N C D [rounds]]
 */
#include <clnorm/clnorm_mpi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void finish(clnorm_context *ctx, clnorm_status s, cl_event ev)
{
    if (s != CLNORM_SUCCESS) {
        fprintf(stderr, "mpi-bench: %s\n", clnorm_context_last_error(ctx));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    clWaitForEvents(1, &ev);
    clReleaseEvent(ev);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    size_t N = 32, C = 64, D = 3136;
    int rounds = 9;
    if (argc >= 4) {
        N = strtoull(argv[1], NULL, 10);
        C = strtoull(argv[2], NULL, 10);
        D = strtoull(argv[3], NULL, 10);
    }
    if (argc >= 5)
        rounds = atoi(argv[4]);
    clnorm_context *ctx;
    if (clnorm_context_create(NULL, &ctx) != CLNORM_SUCCESS) {
        fprintf(stderr, "mpi-bench: %s\n", clnorm_context_last_error(NULL));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    size_t n = N / (size_t)size + ((size_t)rank < N % (size_t)size);
    clnorm_desc desc = {.kind = CLNORM_BATCH, .n = n, .c = C, .d = D, .eps = 1e-5f,
                        .momentum = 0.1f};
    clnorm_plan *plan;
    if (clnorm_plan_create(ctx, &desc, &plan) != CLNORM_SUCCESS) {
        fprintf(stderr, "mpi-bench: %s\n", clnorm_context_last_error(ctx));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    size_t elems = n * C * D;
    float *host = malloc(elems * sizeof(float) + 4);
    for (size_t i = 0; i < elems; ++i)
        host[i] = (float)((i * 2654435761u) % 1000) / 100.0f;
    cl_context cl = clnorm_context_cl(ctx);
    cl_int err;
    clnorm_buffers b = {0};
    cl_mem *roles[] = {&b.x, &b.y, &b.dy, &b.dx};
    for (int i = 0; i < 4; ++i)
        *roles[i] = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                   elems * sizeof(float) + 4, host, &err);
    float *ones = malloc(C * sizeof(float));
    for (size_t c = 0; c < C; ++c)
        ones[c] = 1.0f;
    cl_mem *params[] = {&b.gamma, &b.beta, &b.dgamma, &b.dbeta, &b.running_mean, &b.running_var,
                        &b.save_mean, &b.save_invstd};
    for (int i = 0; i < 8; ++i)
        *params[i] = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                    C * sizeof(float), ones, &err);
    double *times[2] = {malloc((size_t)rounds * sizeof(double)),
                        malloc((size_t)rounds * sizeof(double))};
    for (int round = -1; round < rounds; ++round) /* round -1: warm-up */
        for (int v = 0; v < 2; ++v) {
            int sync = (round + v) % 2 != 0; /* alternate which goes first */
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = now();
            cl_event ev;
            clnorm_status s =
                sync ? clnorm_mpi_forward(plan, MPI_COMM_WORLD, CLNORM_TRAINING, &b, 0, NULL, &ev)
                     : clnorm_forward(plan, CLNORM_TRAINING, &b, 0, NULL, &ev);
            finish(ctx, s, ev);
            s = sync ? clnorm_mpi_backward(plan, MPI_COMM_WORLD, CLNORM_TRAINING, &b, 0, NULL,
                                           &ev)
                     : clnorm_backward(plan, CLNORM_TRAINING, &b, 0, NULL, &ev);
            finish(ctx, s, ev);
            double t = now() - t0, slowest;
            MPI_Allreduce(&t, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            if (round >= 0)
                times[sync][round] = slowest;
        }
    if (rank == 0) {
        qsort(times[0], (size_t)rounds, sizeof(double), cmp);
        qsort(times[1], (size_t)rounds, sizeof(double), cmp);
        double local = times[0][rounds / 2], synced = times[1][rounds / 2];
        printf("%d ranks, BATCH %zux%zux%zu (%zu samples per rank), forward+backward, median of "
               "%d alternating rounds:\n  local %.3f ms, synchronized %.3f ms, ratio %.3f\n",
               size, N, C, D, N / (size_t)size, rounds, local * 1e3, synced * 1e3,
               synced / local);
    }
    for (int i = 0; i < 4; ++i)
        clReleaseMemObject(*roles[i]);
    for (int i = 0; i < 8; ++i)
        clReleaseMemObject(*params[i]);
    free(host);
    free(ones);
    free(times[0]);
    free(times[1]);
    clnorm_plan_release(plan);
    clnorm_context_release(ctx);
    MPI_Finalize();
    return 0;
}
