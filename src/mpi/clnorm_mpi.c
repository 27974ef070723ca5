/*
 * Synchronized batch normalization over MPI, on the public statistics primitives only.
 *
 * A call makes two exchanges, both MPI_Allgather of fixed-size records:
 *   1. every rank's descriptor, n, and whether its arguments pass the local checks (so that a
 *      refused rank, or one whose plan differs, fails the call everywhere instead of leaving
 *      the others waiting in the second exchange);
 *   2. every rank's moments (forward) or sums (backward), each with the status of computing
 *      them, merged on every rank in rank order by clnorm_moments_merge / clnorm_sums_merge.
 */
#include <clnorm/clnorm_mpi.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What every rank must agree on, and its own state; sent as bytes. */
typedef struct record {
    int32_t kind, layout, dtype, y_dtype, mode, running, status;
    int32_t backward; /* which call: clnorm_mpi_forward (0) or clnorm_mpi_backward (1) */
    uint64_t n, c, d, groups;
    uint32_t eps, momentum; /* the floats' bits: equal means the same bits */
    char message[200];      /* why a rank refused the call */
} record;

static clnorm_status fail(clnorm_context *ctx, clnorm_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static clnorm_status fail(clnorm_context *ctx, clnorm_status status, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return clnorm_context_set_error(ctx, status, text);
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* MPI usable and comm a communicator; *size receives its size. */
static clnorm_status check_comm(clnorm_context *ctx, MPI_Comm comm, int *size, int *rank)
{
    int up = 0, down = 0;
    MPI_Initialized(&up);
    MPI_Finalized(&down);
    if (!up || down)
        return fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "comm: MPI is %s",
                    down ? "finalized" : "not initialized (MPI_Init has not been called)");
    if (comm == MPI_COMM_NULL)
        return fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "comm: MPI_COMM_NULL");
    if (MPI_Comm_size(comm, size) != MPI_SUCCESS || MPI_Comm_rank(comm, rank) != MPI_SUCCESS)
        return fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "comm: not a communicator");
    return CLNORM_SUCCESS;
}

/* The first exchange. local: the status of this rank's own checks (plan NULL: a refusal of
 * its own). On success *total is the sum of every rank's n. records: room for size records. */
static clnorm_status agree(clnorm_plan *plan, MPI_Comm comm, int size, int rank,
                           clnorm_mode mode, const clnorm_buffers *bufs, int backward,
                           clnorm_status local, record *all, uint64_t *total)
{
    clnorm_context *ctx = clnorm_plan_context(plan);
    record mine;
    memset(&mine, 0, sizeof mine);
    if (plan) {
        const clnorm_desc *d = clnorm_plan_desc(plan);
        mine.kind = (int32_t)d->kind;
        mine.layout = (int32_t)d->layout;
        mine.dtype = (int32_t)d->dtype;
        mine.y_dtype = (int32_t)d->y_dtype;
        mine.n = d->n;
        mine.c = d->c;
        mine.d = d->d;
        mine.groups = d->kind == CLNORM_GROUP ? d->groups : 0;
        mine.eps = bits(d->eps);
        mine.momentum = bits(d->momentum);
    }
    mine.mode = (int32_t)mode;
    mine.running = bufs && bufs->running_mean != NULL;
    mine.backward = backward;
    mine.status = (int32_t)local;
    if (local)
        snprintf(mine.message, sizeof mine.message, "%s", clnorm_context_last_error(ctx));
    if (MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all, sizeof mine, MPI_BYTE, comm) !=
        MPI_SUCCESS)
        return local ? local
                     : fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "comm: MPI_Allgather failed");
    /* a rank refused by its own checks keeps its own status and message */
    if (local)
        return local;
    *total = 0;
    for (int r = 0; r < size; ++r) /* refusals first: a refused rank's record is not a plan's */
        if (all[r].status && r != rank)
            return fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "comm: rank %d refused the call: %s",
                        r, all[r].message);
    for (int r = 0; r < size; ++r) {
        const record *o = &all[r], *z = &all[0];
        const char *field = o->backward != z->backward ? "the call (forward on one rank, "
                                                         "backward on another)"
                            : o->kind != z->kind       ? "desc.kind"
                            : o->layout != z->layout   ? "desc.layout"
                            : o->dtype != z->dtype     ? "desc.dtype"
                            : o->y_dtype != z->y_dtype ? "desc.y_dtype"
                            : o->c != z->c             ? "desc.c"
                            : o->d != z->d             ? "desc.d"
                            : o->groups != z->groups   ? "desc.groups"
                            : o->eps != z->eps         ? "desc.eps"
                            : o->momentum != z->momentum ? "desc.momentum"
                            : o->mode != z->mode       ? "mode"
                            : o->running != z->running ? "bufs.running_mean"
                                                       : NULL;
        if (field)
            return fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                        "comm: rank %d's call differs from rank 0's in %s (every rank's plan "
                        "must agree on all but n)",
                        r, field);
        *total += o->n;
    }
    return CLNORM_SUCCESS;
}

/* The second exchange's memory, allocated before the first, so that a rank short of memory
 * says so there instead of missing the second. */
typedef struct exchange {
    size_t count;         /* floats per rank */
    float *sets;          /* every rank's floats, in rank order; then the merged ones */
    unsigned char *send, *all; /* records: a part_head, then count floats */
    record *records;      /* the first exchange's */
} exchange;

/* The head of a second exchange's record: its status, and why it failed. */
typedef struct part_head {
    int32_t status, pad;
    char message[200];
} part_head;
#define HEAD sizeof(part_head)

/* This rank's floats: in its record, after the head (a multiple of 4 bytes in). */
static float *mine(exchange *x) { return (float *)(void *)(x->send + HEAD); }

static int exchange_alloc(exchange *x, size_t count, int size)
{
    size_t bytes = HEAD + count * sizeof(float);
    x->count = count;
    x->sets = malloc(count * (size_t)size * sizeof(float) + 1);
    x->send = malloc(bytes);
    x->all = malloc(bytes * (size_t)size);
    return x->sets && x->send && x->all;
}

static void exchange_free(exchange *x)
{
    free(x->sets);
    free(x->send);
    free(x->all);
    free(x->records);
}

/* The second exchange: this rank's floats (mine(x), unless local failed), gathered from every
 * rank in rank order into x->sets. */
static clnorm_status gather(clnorm_context *ctx, MPI_Comm comm, int size, clnorm_status local,
                            exchange *x)
{
    size_t bytes = HEAD + x->count * sizeof(float);
    part_head head;
    memset(&head, 0, sizeof head);
    head.status = (int32_t)local;
    if (local) { /* no floats to send, and no unread bytes either */
        snprintf(head.message, sizeof head.message, "%s", clnorm_context_last_error(ctx));
        memset(mine(x), 0, x->count * sizeof(float));
    }
    memcpy(x->send, &head, sizeof head);
    if (MPI_Allgather(x->send, (int)bytes, MPI_BYTE, x->all, (int)bytes, MPI_BYTE, comm) !=
        MPI_SUCCESS)
        return local ? local : fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "comm: MPI_Allgather failed");
    for (int r = 0; r < size; ++r) {
        const unsigned char *theirs = x->all + (size_t)r * bytes;
        part_head th;
        memcpy(&th, theirs, sizeof th);
        if (th.status)
            return local ? local
                         : fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                                "comm: rank %d could not compute its part: %s: %.*s", r,
                                clnorm_status_string((clnorm_status)th.status),
                                (int)sizeof th.message, th.message);
        memcpy(x->sets + (size_t)r * x->count, theirs + HEAD, x->count * sizeof(float));
    }
    return local;
}

/* A small scratch buffer of the plan's context for the exchanged floats. */
static cl_mem scratch(clnorm_context *ctx, size_t count, clnorm_status *s)
{
    cl_int err;
    cl_mem m = clCreateBuffer(clnorm_context_cl(ctx), CL_MEM_READ_WRITE,
                              (count ? count : 1) * sizeof(float), NULL, &err);
    if (err != CL_SUCCESS) {
        int memory = err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY ||
                     err == CL_OUT_OF_RESOURCES;
        *s = fail(ctx, memory ? CLNORM_ERROR_OUT_OF_MEMORY : CLNORM_ERROR_OPENCL,
                  "clCreateBuffer: OpenCL error %d (the exchange's %zu floats)", (int)err, count);
    }
    return m;
}

/* Waits for ev (released) and reads count floats of m into host. */
static clnorm_status read_back(clnorm_context *ctx, cl_mem m, cl_event ev, float *host,
                               size_t count)
{
    cl_int err = clEnqueueReadBuffer(clnorm_context_queue(ctx), m, CL_TRUE, 0,
                                     count * sizeof(float), host, ev ? 1 : 0, ev ? &ev : NULL,
                                     NULL);
    if (ev)
        clReleaseEvent(ev);
    return err == CL_SUCCESS ? CLNORM_SUCCESS
                             : fail(ctx, CLNORM_ERROR_OPENCL,
                                    "clEnqueueReadBuffer: %d (the local moments or sums)",
                                    (int)err);
}

static clnorm_status write_merged(clnorm_context *ctx, cl_mem m, const float *host, size_t count)
{
    cl_int err = clEnqueueWriteBuffer(clnorm_context_queue(ctx), m, CL_TRUE, 0,
                                      count * sizeof(float), host, 0, NULL, NULL);
    return err == CL_SUCCESS ? CLNORM_SUCCESS
                             : fail(ctx, CLNORM_ERROR_OPENCL,
                                    "clEnqueueWriteBuffer: %d (the merged moments or sums)",
                                    (int)err);
}

/* Both calls: the comm, the plan, and the first exchange. *sync: BATCH with its own
 * statistics, which takes the second exchange; otherwise the call is the local one. */
static clnorm_status begin(clnorm_plan *plan, MPI_Comm comm, clnorm_mode mode,
                           const clnorm_buffers *bufs, int backward, int *size, int *rank,
                           int *sync, uint64_t *total, exchange *x)
{
    clnorm_context *ctx = clnorm_plan_context(plan);
    clnorm_status s = check_comm(ctx, comm, size, rank);
    if (s)
        return s;
    /* From here every rank takes part in the first exchange, whatever is wrong with its call:
     * a rank that returned early would leave the others waiting in it. Its record array is the
     * one allocation that comes first; without it this rank cannot take part. */
    x->records = malloc((size_t)*size * sizeof(record));
    if (!x->records)
        return fail(ctx, CLNORM_ERROR_OUT_OF_MEMORY, "clnorm_mpi: out of memory for %d records",
                    *size);
    clnorm_status local = CLNORM_SUCCESS;
    int constants = bufs && bufs->running_mean && mode == CLNORM_INFERENCE;
    const clnorm_desc *d = clnorm_plan_desc(plan);
    /* INFERENCE with running statistics: constants, no exchange (backward still sums dgamma
     * and dbeta over every rank) */
    *sync = d && d->kind == CLNORM_BATCH && (backward || !constants);
    if (!plan)
        local = clnorm_context_set_error(NULL, CLNORM_ERROR_INVALID_ARGUMENT, "plan: NULL");
    else
        local = backward ? clnorm_backward_check(plan, mode, bufs, *sync)
                         : clnorm_forward_check(plan, mode, bufs, *sync);
    size_t count = !plan      ? 0
                   : backward ? clnorm_plan_sums_count(plan) * CLNORM_SUMS_FLOATS
                              : clnorm_plan_stats_count(plan) * CLNORM_MOMENTS_FLOATS;
    if (!exchange_alloc(x, count, *size) && !local)
        local = fail(ctx, CLNORM_ERROR_OUT_OF_MEMORY, "clnorm_mpi: out of memory");
    if ((s = agree(plan, comm, *size, *rank, mode, bufs, backward, local, x->records, total)))
        return s;
    if (*sync && !constants && *total * d->d == 1)
        return fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                    "desc.n: BATCH statistics over 1 value per channel across every rank; need "
                    "more than one, or running statistics in INFERENCE");
    if (*total == 0)
        *sync = 0; /* nothing anywhere: the local call is the no-op it is */
    return CLNORM_SUCCESS;
}

/* forward and backward alike: the exchanges, the merge in rank order, then the call that
 * finishes with the merged moments (forward) or sums (backward). */
static clnorm_status synchronized(clnorm_plan *plan, MPI_Comm comm, clnorm_mode mode,
                                  const clnorm_buffers *bufs, int backward, cl_uint num_wait,
                                  const cl_event *wait, cl_event *done)
{
    if (done)
        *done = NULL;
    int size = 0, rank = 0, sync = 0;
    uint64_t total = 0;
    exchange x = {0};
    clnorm_status s = begin(plan, comm, mode, bufs, backward, &size, &rank, &sync, &total, &x);
    if (s || !sync) {
        exchange_free(&x);
        if (s)
            return s;
        return backward ? clnorm_backward(plan, mode, bufs, num_wait, wait, done)
                        : clnorm_forward(plan, mode, bufs, num_wait, wait, done);
    }
    clnorm_context *ctx = clnorm_plan_context(plan);
    clnorm_status local = CLNORM_SUCCESS;
    cl_mem m = scratch(ctx, x.count, &local);
    cl_event ev = NULL;
    if (!local)
        local = backward ? clnorm_backward_sums(plan, mode, bufs, m, num_wait, wait, &ev)
                         : clnorm_moments(plan, bufs->x, m, num_wait, wait, &ev);
    if (!local)
        local = read_back(ctx, m, ev, mine(&x), x.count);
    if (!(s = gather(ctx, comm, size, local, &x))) {
        if (backward)
            clnorm_sums_merge(x.sets, (size_t)size, x.count / CLNORM_SUMS_FLOATS, x.sets);
        else
            clnorm_moments_merge(x.sets, (size_t)size, x.count / CLNORM_MOMENTS_FLOATS,
                                 x.sets);
        /* backward's count per group: every rank's N*D */
        size_t per_group = (size_t)total * clnorm_plan_desc(plan)->d;
        if (!(s = write_merged(ctx, m, x.sets, x.count)))
            s = backward ? clnorm_backward_with_sums(plan, mode, m, per_group, bufs, 0, NULL, done)
                         : clnorm_forward_with_moments(plan, mode, m, bufs, 0, NULL, done);
    }
    if (m)
        clReleaseMemObject(m); /* kept by OpenCL until the commands using it complete */
    exchange_free(&x);
    return s;
}

clnorm_status clnorm_mpi_forward(clnorm_plan *plan, MPI_Comm comm, clnorm_mode mode,
                                 const clnorm_buffers *bufs, cl_uint num_wait,
                                 const cl_event *wait, cl_event *done)
{
    return synchronized(plan, comm, mode, bufs, 0, num_wait, wait, done);
}

clnorm_status clnorm_mpi_backward(clnorm_plan *plan, MPI_Comm comm, clnorm_mode mode,
                                  const clnorm_buffers *bufs, cl_uint num_wait,
                                  const cl_event *wait, cl_event *done)
{
    return synchronized(plan, comm, mode, bufs, 1, num_wait, wait, done);
}
