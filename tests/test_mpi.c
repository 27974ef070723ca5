/*
 * clnorm_mpi under mpirun -np 1..4: a batch split unevenly over the ranks (one of them empty
 * from 2 ranks on), normalized and differentiated with synchronized statistics, equals the
 * float64 reference of the whole batch; save_*, running statistics, dgamma and dbeta are the
 * same bits on every rank and in a second run; calls that cannot run fail on every rank.
 */
#include <clnorm/clnorm_mpi.h>

#include "harness.h"
#include "reference.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank, size, failures;

#define EXPECT(cond, ...)                                                                         \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "rank %d: %s:%d: ", rank, __FILE__, __LINE__);                        \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
            ++failures;                                                                           \
        }                                                                                         \
    } while (0)

/* Samples per rank: uneven, and rank 1 has none. */
static size_t rank_n(int r)
{
    static const size_t ns[] = {3, 0, 2, 1};
    return ns[r % 4];
}

static cl_mem buffer(const void *data, size_t bytes) { return harness_buffer(data, bytes + 4); }

/* Every rank's copy of bytes equals rank 0's. */
static int same_everywhere(const void *mine, size_t bytes)
{
    unsigned char *all = malloc(bytes * (size_t)size + 1);
    MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
    int same = 1;
    for (int r = 1; r < size; ++r)
        same &= memcmp(all, all + (size_t)r * bytes, bytes) == 0;
    free(all);
    return same;
}

typedef struct run {
    unsigned char *y, *dx;
    float *stats; /* save_mean, save_invstd, running_mean, running_var, dgamma, dbeta */
} run;

static void one_case(clnorm_layout layout, clnorm_dtype dtype, clnorm_mode mode, int running)
{
    clnorm_context *ctx = harness_ctx();
    const size_t C = 6, D = 15;
    size_t N = 0, n0 = 0;
    for (int r = 0; r < size; ++r) {
        if (r < rank)
            n0 += rank_n(r);
        N += rank_n(r);
    }
    clnorm_desc whole = {.kind = CLNORM_BATCH, .layout = layout, .dtype = dtype, .n = N, .c = C,
                         .d = D, .eps = 1e-5f, .momentum = 0.1f};
    clnorm_desc mine = whole;
    mine.n = rank_n(rank);
    char name[128];
    snprintf(name, sizeof name, "BATCH %s dtype %d %s%s, %d ranks", layout ? "NHWC" : "NCHW",
             (int)dtype, mode ? "INFERENCE" : "TRAINING", running ? " running" : "", size);
    size_t total = N * C * D, es = ref_storage_size(dtype), sample = C * D;
    float *xf = malloc(total * 4), *dyf = malloc(total * 4), *gamma = malloc(C * 4);
    float *beta = malloc(C * 4), *rm = malloc(C * 4), *rv = malloc(C * 4);
    unsigned char *xs = malloc(total * es), *dys = malloc(total * es);
    double *xd = malloc(total * 8), *dyd = malloc(total * 8), *wy = malloc(total * 8);
    double *wdx = malloc(total * 8), *mean = malloc(C * 8), *inv = malloc(C * 8);
    double *rmw = malloc(C * 8), *rvw = malloc(C * 8), *wdg = malloc(C * 8), *wdb = malloc(C * 8);
    double *scale = malloc(total * 8), *got = malloc(total * 8 + 8);
    harness_rng rng = {(uint64_t)(layout * 16 + dtype * 4 + mode * 2 + running + 1)};
    for (size_t i = 0; i < total; ++i) {
        xf[i] = (float)(5.0 + harness_normal(&rng));
        dyf[i] = (float)harness_normal(&rng);
    }
    for (size_t c = 0; c < C; ++c) {
        gamma[c] = (float)(0.5 + harness_uniform(&rng));
        beta[c] = (float)harness_normal(&rng);
        rm[c] = (float)(5.0 + 0.1 * harness_normal(&rng));
        rv[c] = (float)(0.5 + harness_uniform(&rng));
    }
    ref_store(dtype, xf, xs, total);
    ref_store(dtype, dyf, dys, total);
    ref_load(dtype, xs, xd, total);
    ref_load(dtype, dys, dyd, total);
    int constants = running && mode == CLNORM_INFERENCE;
    ref_inputs in = {xd, gamma, beta, running ? rm : NULL, running ? rv : NULL, dyd};
    ref_outputs fo = {wy, mean, inv, rmw, rvw, NULL, NULL, scale};
    if (ref_forward(&whole, mode, &in, &fo) != 0)
        EXPECT(0, "%s: the reference refuses it", name);
    ref_outputs bo = {wdx, NULL, NULL, NULL, NULL, wdg, wdb, NULL};
    /* backward in the forward's mode: INFERENCE with running statistics takes them as
     * constants; otherwise through the batch's statistics (TRAINING in the reference) */
    ref_backward(&whole, constants ? CLNORM_INFERENCE : CLNORM_TRAINING, &in, &bo);

    clnorm_plan *plan;
    plan = NULL; /* a failed plan still takes part (a NULL plan is refused everywhere) */
    EXPECT(clnorm_plan_create(ctx, &mine, &plan) == CLNORM_SUCCESS, "plan: %s", clnorm_context_last_error(ctx));
    size_t bytes = mine.n * sample * es;
    run runs[2];
    for (int k = 0; k < 2; ++k) {
        clnorm_buffers b = {0};
        b.x = buffer(xs + n0 * sample * es, bytes);
        b.dy = buffer(dys + n0 * sample * es, bytes);
        b.y = buffer(NULL, bytes);
        b.dx = buffer(NULL, bytes);
        b.gamma = buffer(gamma, C * 4);
        b.beta = buffer(beta, C * 4);
        b.dgamma = buffer(NULL, C * 4);
        b.dbeta = buffer(NULL, C * 4);
        b.save_mean = buffer(NULL, C * 4);
        b.save_invstd = buffer(NULL, C * 4);
        if (running) {
            b.running_mean = buffer(rm, C * 4);
            b.running_var = buffer(rv, C * 4);
        }
        cl_event ev;
        clnorm_status s = clnorm_mpi_forward(plan, MPI_COMM_WORLD, mode, &b, 0, NULL, &ev);
        EXPECT(s == CLNORM_SUCCESS, "%s: forward: %s", name, clnorm_context_last_error(ctx));
        if (s == CLNORM_SUCCESS) {
            clWaitForEvents(1, &ev);
            clReleaseEvent(ev);
        }
        /* save_* only where the statistics are the batch's */
        clnorm_buffers bb = b;
        if (constants)
            bb.save_mean = bb.save_invstd = NULL;
        s = clnorm_mpi_backward(plan, MPI_COMM_WORLD, mode, &bb, 0, NULL, &ev);
        EXPECT(s == CLNORM_SUCCESS, "%s: backward: %s", name, clnorm_context_last_error(ctx));
        if (s == CLNORM_SUCCESS) {
            clWaitForEvents(1, &ev);
            clReleaseEvent(ev);
        }
        run *r = &runs[k];
        r->y = malloc(bytes + 1);
        r->dx = malloc(bytes + 1);
        r->stats = calloc(6 * C, 4);
        harness_read(b.y, r->y, bytes);
        harness_read(b.dx, r->dx, bytes);
        cl_mem outs[] = {b.save_mean, b.save_invstd, b.running_mean, b.running_var, b.dgamma,
                         b.dbeta};
        for (int i = 0; i < 6; ++i)
            if (outs[i] && !(constants && i < 2))
                harness_read(outs[i], r->stats + i * C, C * 4);
        cl_mem all[] = {b.x, b.dy, b.y, b.dx, b.gamma, b.beta, b.dgamma, b.dbeta, b.save_mean,
                        b.save_invstd, b.running_mean, b.running_var};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
            if (all[i])
                clReleaseMemObject(all[i]);
    }
    run *r = &runs[0];
    EXPECT(memcmp(r->y, runs[1].y, bytes) == 0 && memcmp(r->dx, runs[1].dx, bytes) == 0 &&
               memcmp(r->stats, runs[1].stats, 6 * C * 4) == 0,
           "%s: a second run gave other bits", name);
    EXPECT(same_everywhere(r->stats, 6 * C * 4),
           "%s: save_*, running statistics, dgamma or dbeta differ between ranks", name);
    /* against the reference of the whole batch */
    ref_load(dtype, r->y, got, mine.n * sample);
    double u = ref_unit_roundoff(dtype);
    for (size_t i = 0; i < mine.n * sample; ++i) {
        size_t w = n0 * sample + i;
        double tol = 32 * ldexp(1, -23) * (fabs(xd[w]) + 9) * scale[w] + 2 * u * fabs(wy[w]) +
                     1e-6;
        if (fabs(got[i] - wy[w]) > tol) {
            EXPECT(0, "%s: y[%zu] = %.9g, want %.9g", name, w, got[i], wy[w]);
            break;
        }
    }
    ref_load(dtype, r->dx, got, mine.n * sample);
    double e = 0, den = 0;
    for (size_t i = 0; i < mine.n * sample; ++i) {
        size_t w = n0 * sample + i;
        e += (got[i] - wdx[w]) * (got[i] - wdx[w]);
        den += wdx[w] * wdx[w];
    }
    double dtol = dtype == CLNORM_F32 ? 1e-5 : dtype == CLNORM_F16 ? 2e-3 : 1.6e-2;
    EXPECT(mine.n == 0 || sqrt(e) <= dtol * sqrt(den), "%s: dx relative L2 error %.3g", name,
           sqrt(e / den));
    for (size_t c = 0; c < C; ++c) {
        const float *s = r->stats;
        if (!constants)
            EXPECT(fabs(s[c] - mean[c]) <= 1e-6 * (fabs(mean[c]) + 1) &&
                       fabs(s[C + c] - inv[c]) <= 2e-5 * inv[c],
                   "%s: save_* of channel %zu: %.9g %.9g, want %.9g %.9g", name, c, (double)s[c],
                   (double)s[C + c], mean[c], inv[c]);
        if (running) {
            double wm = mode == CLNORM_TRAINING ? rmw[c] : rm[c];
            double wv = mode == CLNORM_TRAINING ? rvw[c] : rv[c];
            EXPECT(fabs(s[2 * C + c] - wm) <= 1e-6 * (fabs(wm) + 1) &&
                       fabs(s[3 * C + c] - wv) <= 1e-4 * wv,
                   "%s: running statistics of channel %zu: %.9g %.9g, want %.9g %.9g", name, c,
                   (double)s[2 * C + c], (double)s[3 * C + c], wm, wv);
        }
        double gs = 1e-4 * (fabs(wdg[c]) + fabs(wdb[c]) + 1);
        EXPECT(fabs(s[4 * C + c] - wdg[c]) <= gs && fabs(s[5 * C + c] - wdb[c]) <= gs,
               "%s: dgamma, dbeta of channel %zu: %.9g %.9g, want %.9g %.9g", name, c,
               (double)s[4 * C + c], (double)s[5 * C + c], wdg[c], wdb[c]);
    }
    for (int k = 0; k < 2; ++k) {
        free(runs[k].y);
        free(runs[k].dx);
        free(runs[k].stats);
    }
    clnorm_plan_release(plan);
    free(xf); free(dyf); free(gamma); free(beta); free(rm); free(rv); free(xs); free(dys);
    free(xd); free(dyd); free(wy); free(wdx); free(mean); free(inv); free(rmw); free(rvw);
    free(wdg); free(wdb); free(scale); free(got);
}

/* Calls that cannot run return an error on every rank, and none of them waits forever. */
static void refusals(void)
{
    clnorm_context *ctx = harness_ctx();
    clnorm_desc d = {.kind = CLNORM_BATCH, .n = rank_n(rank), .c = 4, .d = 3, .eps = 1e-5f};
    size_t bytes = d.n * d.c * d.d * 4;
    clnorm_buffers b = {0};
    b.x = buffer(NULL, bytes);
    b.y = buffer(NULL, bytes);
    clnorm_plan *plan;
    plan = NULL; /* a failed plan still takes part (a NULL plan is refused everywhere) */
    EXPECT(clnorm_plan_create(ctx, &d, &plan) == CLNORM_SUCCESS, "plan: %s", clnorm_context_last_error(ctx));
    clnorm_status s = clnorm_mpi_forward(plan, MPI_COMM_NULL, CLNORM_TRAINING, &b, 0, NULL, NULL);
    EXPECT(s == CLNORM_ERROR_INVALID_ARGUMENT && strstr(clnorm_context_last_error(ctx), "comm"),
           "MPI_COMM_NULL: %s", clnorm_context_last_error(ctx));
    /* one rank's buffer missing (rank 0's, which has samples): that rank names it, the others
     * name the rank */
    clnorm_buffers bad = b;
    if (rank == 0)
        bad.y = NULL;
    s = clnorm_mpi_forward(plan, MPI_COMM_WORLD, CLNORM_TRAINING, &bad, 0, NULL, NULL);
    const char *want = rank == 0 ? "bufs.y" : "rank 0";
    EXPECT(s == CLNORM_ERROR_INVALID_ARGUMENT && strstr(clnorm_context_last_error(ctx), want),
           "a rank without y: %s: %s", clnorm_status_string(s), clnorm_context_last_error(ctx));
    if (size > 1) {
        /* two ranks refuse: rank 0 (no y) and the last (a NULL plan); each keeps its own
         * reason, the others name rank 0 */
        clnorm_plan *p = rank == size - 1 ? NULL : plan;
        s = clnorm_mpi_forward(p, MPI_COMM_WORLD, CLNORM_TRAINING, &bad, 0, NULL, NULL);
        want = rank == 0 ? "bufs.y" : rank == size - 1 ? "plan: NULL" : "rank 0";
        EXPECT(s == CLNORM_ERROR_INVALID_ARGUMENT &&
                   strstr(clnorm_context_last_error(rank == size - 1 ? NULL : ctx), want),
               "two ranks refusing: %s: %s", clnorm_status_string(s),
               clnorm_context_last_error(rank == size - 1 ? NULL : ctx));
        /* forward on rank 0, backward on the others */
        clnorm_buffers sb = b;
        sb.dy = b.x;
        sb.dx = b.y;
        cl_mem sm = buffer(NULL, d.c * 4), si = buffer(NULL, d.c * 4);
        sb.save_mean = sm;
        sb.save_invstd = si;
        s = rank == 0 ? clnorm_mpi_forward(plan, MPI_COMM_WORLD, CLNORM_TRAINING, &b, 0, NULL, NULL)
                      : clnorm_mpi_backward(plan, MPI_COMM_WORLD, CLNORM_TRAINING, &sb, 0, NULL,
                                            NULL);
        EXPECT(s == CLNORM_ERROR_INVALID_ARGUMENT &&
                   strstr(clnorm_context_last_error(ctx), "forward on one rank"),
               "forward against backward: %s: %s", clnorm_status_string(s),
               clnorm_context_last_error(ctx));
        clReleaseMemObject(sm);
        clReleaseMemObject(si);
    }
    clnorm_plan_release(plan);
    if (size > 1) { /* plans that differ in eps */
        d.eps = rank == 0 ? 1e-5f : 1e-3f;
        plan = NULL; /* a failed plan still takes part (a NULL plan is refused everywhere) */
    EXPECT(clnorm_plan_create(ctx, &d, &plan) == CLNORM_SUCCESS, "plan: %s", clnorm_context_last_error(ctx));
        s = clnorm_mpi_forward(plan, MPI_COMM_WORLD, CLNORM_TRAINING, &b, 0, NULL, NULL);
        EXPECT(s == CLNORM_ERROR_INVALID_ARGUMENT &&
                   strstr(clnorm_context_last_error(ctx), "desc.eps"),
               "eps differing: %s", clnorm_context_last_error(ctx));
        clnorm_plan_release(plan);
    }
    clReleaseMemObject(b.x);
    clReleaseMemObject(b.y);
}

/* LAYER normalizes per sample: its synchronized call is the local one, bit for bit. */
static void per_sample_kinds_are_local(void)
{
    clnorm_context *ctx = harness_ctx();
    clnorm_desc d = {.kind = CLNORM_LAYER, .n = rank_n(rank) + 1, .c = 6, .d = 15, .eps = 1e-5f};
    size_t n = d.n * d.c * d.d;
    float *x = malloc(n * 4), *y1 = malloc(n * 4), *y2 = malloc(n * 4);
    harness_rng rng = {99u + (uint64_t)rank};
    for (size_t i = 0; i < n; ++i)
        x[i] = (float)harness_normal(&rng);
    clnorm_plan *plan;
    plan = NULL; /* a failed plan still takes part (a NULL plan is refused everywhere) */
    EXPECT(clnorm_plan_create(ctx, &d, &plan) == CLNORM_SUCCESS, "plan: %s", clnorm_context_last_error(ctx));
    clnorm_buffers b = {0};
    b.x = buffer(x, n * 4);
    b.y = buffer(NULL, n * 4);
    EXPECT(clnorm_mpi_forward(plan, MPI_COMM_WORLD, CLNORM_TRAINING, &b, 0, NULL, NULL) ==
               CLNORM_SUCCESS,
           "LAYER: %s", clnorm_context_last_error(ctx));
    harness_read(b.y, y1, n * 4);
    EXPECT(clnorm_forward(plan, CLNORM_TRAINING, &b, 0, NULL, NULL) == CLNORM_SUCCESS, "LAYER: %s",
           clnorm_context_last_error(ctx));
    harness_read(b.y, y2, n * 4);
    EXPECT(memcmp(y1, y2, n * 4) == 0, "LAYER: the synchronized call differs from the local one");
    clReleaseMemObject(b.x);
    clReleaseMemObject(b.y);
    clnorm_plan_release(plan);
    free(x);
    free(y1);
    free(y2);
}

START_TEST(synchronized)
{
    for (int layout = 0; layout < 2; ++layout)
        for (int dtype = 0; dtype < 3; ++dtype) {
            one_case((clnorm_layout)layout, (clnorm_dtype)dtype, CLNORM_TRAINING, 1);
            one_case((clnorm_layout)layout, (clnorm_dtype)dtype, CLNORM_INFERENCE, 0);
            one_case((clnorm_layout)layout, (clnorm_dtype)dtype, CLNORM_INFERENCE, 1);
        }
    one_case(CLNORM_NCHW, CLNORM_F32, CLNORM_TRAINING, 0);
    refusals();
    per_sample_kinds_are_local();
}
END_TEST

int main(int argc, char **argv)
{
    /* Before MPI_Init: refused, and nothing else happens. */
    clnorm_context *ctx = harness_ctx();
    clnorm_desc d = {.kind = CLNORM_BATCH, .n = 2, .c = 4, .d = 3, .eps = 1e-5f};
    clnorm_plan *plan = NULL;
    clnorm_status made = clnorm_plan_create(ctx, &d, &plan);
    clnorm_buffers none = {0};
    clnorm_status s = clnorm_mpi_forward(plan, MPI_COMM_WORLD, CLNORM_TRAINING, &none, 0, NULL,
                                         NULL);
    char before[256];
    snprintf(before, sizeof before, "%s", clnorm_context_last_error(ctx));
    clnorm_plan_release(plan);
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    EXPECT(made == CLNORM_SUCCESS && s == CLNORM_ERROR_INVALID_ARGUMENT &&
               strstr(before, "not initialized"),
           "before MPI_Init: %s", before);
    /* A Check suite, run in this process (harness_run does not fork), for the harness's own
     * assertions; the expectations above and in the cases count failures without stopping,
     * so that every rank reaches every exchange. */
    Suite *suite = suite_create("mpi");
    TCase *tc = tcase_create("mpi");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, synchronized);
    suite_add_tcase(suite, tc);
    int rc = harness_run(suite);
    int local = failures || rc, any = 0;
    MPI_Allreduce(&local, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0)
        printf("test_mpi: %d ranks, %s\n", size, any ? "FAILED" : "all passed");
    MPI_Finalize();
    return any ? 1 : 0;
}
