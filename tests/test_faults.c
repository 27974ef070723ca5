/*
 * The contract under faults and misuse (DESIGN.md section 2): a failed dependency fails `done`
 * and writes nothing; buffers and events the kernels cannot legally use are refused with the
 * field named; an OpenCL call refused part-way through a call leaves every buffer as it was;
 * scratch is allocated by the pass that uses it, bounded, and refused with sizes when too large.
 *
 * Faults are injected by this executable's own definitions of the OpenCL entry points clnorm
 * calls while it enqueues (the library is linked statically into it, so its calls bind here);
 * each forwards to the ICD loader's, except the one chosen to fail.
 */
#define _GNU_SOURCE
#include "harness.h"
#include "reference.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the fault shim ------------------------------------------------------------------------ */

static int armed;    /* count (and maybe fail) the calls below */
static int counted;  /* calls seen since armed */
static int fault_at; /* fail the call with this number (1-based); 0: none */

static int fault_now(void) { return armed && ++counted == fault_at; }

static void *real(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (!f) {
        fprintf(stderr, "test_faults: %s not found behind the shim\n", name);
        abort();
    }
    return f;
}

cl_int clEnqueueNDRangeKernel(cl_command_queue q, cl_kernel k, cl_uint dims, const size_t *off,
                              const size_t *global, const size_t *local, cl_uint nw,
                              const cl_event *wait, cl_event *ev)
{
    static cl_int (*f)(cl_command_queue, cl_kernel, cl_uint, const size_t *, const size_t *,
                       const size_t *, cl_uint, const cl_event *, cl_event *);
    if (fault_now())
        return CL_OUT_OF_RESOURCES;
    if (!f)
        *(void **)&f = real("clEnqueueNDRangeKernel");
    return f(q, k, dims, off, global, local, nw, wait, ev);
}

cl_int clSetKernelArg(cl_kernel k, cl_uint index, size_t size, const void *value)
{
    static cl_int (*f)(cl_kernel, cl_uint, size_t, const void *);
    if (fault_now())
        return CL_OUT_OF_HOST_MEMORY;
    if (!f)
        *(void **)&f = real("clSetKernelArg");
    return f(k, index, size, value);
}

cl_event clCreateUserEvent(cl_context cl, cl_int *err)
{
    static cl_event (*f)(cl_context, cl_int *);
    if (fault_now()) {
        if (err)
            *err = CL_OUT_OF_HOST_MEMORY;
        return NULL;
    }
    if (!f)
        *(void **)&f = real("clCreateUserEvent");
    return f(cl, err);
}

cl_mem clCreateBuffer(cl_context cl, cl_mem_flags flags, size_t size, void *host, cl_int *err)
{
    static cl_mem (*f)(cl_context, cl_mem_flags, size_t, void *, cl_int *);
    if (fault_now()) {
        if (err)
            *err = CL_MEM_OBJECT_ALLOCATION_FAILURE;
        return NULL;
    }
    if (!f)
        *(void **)&f = real("clCreateBuffer");
    return f(cl, flags, size, host, err);
}

cl_int clEnqueueMarkerWithWaitList(cl_command_queue q, cl_uint nw, const cl_event *wait,
                                   cl_event *ev)
{
    static cl_int (*f)(cl_command_queue, cl_uint, const cl_event *, cl_event *);
    if (fault_now())
        return CL_OUT_OF_RESOURCES;
    if (!f)
        *(void **)&f = real("clEnqueueMarkerWithWaitList");
    return f(q, nw, wait, ev);
}

/* ---- call shapes and their buffers --------------------------------------------------------- */

typedef struct shape {
    const char *name;
    clnorm_kind kind;
    clnorm_layout layout;
    clnorm_dtype dtype;
    size_t n, c, d, groups;
    int backward;
    clnorm_mode mode;
    int running, save, params; /* running statistics; save_*; gamma and beta (dgamma, dbeta) */
} shape;

static const shape shapes[] = {
    {"batch forward, running", CLNORM_BATCH, CLNORM_NCHW, CLNORM_F32, 2, 3, 5, 0, 0,
     CLNORM_TRAINING, 1, 1, 1},
    {"batch nhwc forward f16", CLNORM_BATCH, CLNORM_NHWC, CLNORM_F16, 3, 4, 5, 0, 0,
     CLNORM_TRAINING, 0, 1, 1},
    {"batch inference, running", CLNORM_BATCH, CLNORM_NCHW, CLNORM_F32, 2, 3, 5, 0, 0,
     CLNORM_INFERENCE, 1, 0, 1},
    {"layer forward (rows)", CLNORM_LAYER, CLNORM_NCHW, CLNORM_F32, 8, 3, 4, 0, 0,
     CLNORM_TRAINING, 0, 1, 1},
    {"instance forward, running", CLNORM_INSTANCE, CLNORM_NCHW, CLNORM_F32, 4, 3, 6, 0, 0,
     CLNORM_TRAINING, 1, 1, 1},
    {"instance nhwc forward bf16", CLNORM_INSTANCE, CLNORM_NHWC, CLNORM_BF16, 2, 8, 6, 0, 0,
     CLNORM_TRAINING, 0, 1, 1},
    {"group nhwc forward", CLNORM_GROUP, CLNORM_NHWC, CLNORM_F32, 2, 8, 5, 2, 0, CLNORM_TRAINING,
     0, 1, 1},
    {"rms forward", CLNORM_RMS, CLNORM_NCHW, CLNORM_F32, 3, 2, 5, 0, 0, CLNORM_TRAINING, 0, 1, 1},
    {"empty batch", CLNORM_BATCH, CLNORM_NCHW, CLNORM_F32, 0, 3, 5, 0, 0, CLNORM_TRAINING, 1, 1,
     1},
    {"batch backward, saved", CLNORM_BATCH, CLNORM_NCHW, CLNORM_F32, 2, 3, 5, 0, 1,
     CLNORM_TRAINING, 0, 1, 1},
    {"batch nhwc backward, recomputed", CLNORM_BATCH, CLNORM_NHWC, CLNORM_F32, 3, 4, 5, 0, 1,
     CLNORM_TRAINING, 0, 0, 1},
    {"batch backward inference, running", CLNORM_BATCH, CLNORM_NCHW, CLNORM_F16, 2, 3, 5, 0, 1,
     CLNORM_INFERENCE, 1, 0, 1},
    {"layer backward, one block", CLNORM_LAYER, CLNORM_NCHW, CLNORM_F32, 2, 3, 4, 0, 1,
     CLNORM_TRAINING, 0, 1, 1},
    {"layer backward (rows)", CLNORM_LAYER, CLNORM_NHWC, CLNORM_F32, 16, 3, 4, 0, 1,
     CLNORM_TRAINING, 0, 1, 1},
    {"layer backward, many blocks", CLNORM_LAYER, CLNORM_NCHW, CLNORM_F32, 600, 2, 2, 0, 1,
     CLNORM_TRAINING, 0, 0, 1},
    {"group backward", CLNORM_GROUP, CLNORM_NCHW, CLNORM_F32, 4, 6, 5, 3, 1, CLNORM_TRAINING, 0,
     1, 1},
    {"instance nhwc backward", CLNORM_INSTANCE, CLNORM_NHWC, CLNORM_F32, 2, 8, 6, 0, 1,
     CLNORM_TRAINING, 0, 1, 1},
    {"rms backward, recomputed", CLNORM_RMS, CLNORM_NCHW, CLNORM_F32, 3, 2, 5, 0, 1,
     CLNORM_TRAINING, 0, 0, 1},
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

enum { X, Y, GAMMA, BETA, RMEAN, RVAR, SMEAN, SINVSTD, DY, DX, DGAMMA, DBETA, NROLES };

/* Every buffer of a call, with the bytes it starts from. */
typedef struct setup {
    clnorm_desc desc;
    clnorm_buffers b;
    cl_mem mem[NROLES];
    unsigned char *init[NROLES];
    size_t bytes[NROLES];
} setup;

static void role(setup *s, int r, size_t bytes, harness_rng *rng, int kind_of_fill)
{
    s->bytes[r] = bytes;
    s->init[r] = malloc(bytes ? bytes : 4);
    size_t n = bytes / 4;
    float *f = (float *)s->init[r];
    for (size_t i = 0; i < n; ++i) {
        double v = harness_normal(rng);
        f[i] = kind_of_fill == 0 ? 42.0f : kind_of_fill == 2 ? (float)(0.5 + v * v) : (float)v;
    }
    s->mem[r] = harness_buffer(s->init[r], bytes);
}

/* kind_of_fill: 0 a constant pattern (outputs), 1 normal values, 2 positive ones (variances). */
static void setup_make(setup *s, const shape *sh)
{
    memset(s, 0, sizeof *s);
    s->desc = (clnorm_desc){
        .kind = sh->kind, .layout = sh->layout, .dtype = sh->dtype, .n = sh->n, .c = sh->c,
        .d = sh->d, .groups = sh->groups, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
    };
    harness_rng rng = {0x5eed + sh->n * 131 + sh->c * 7 + sh->d};
    size_t elems = sh->n * sh->c * sh->d, size = sh->dtype == CLNORM_F32 ? 4 : 2;
    size_t data = elems * size;
    size_t params = (sh->kind == CLNORM_LAYER || sh->kind == CLNORM_RMS ? sh->c * sh->d : sh->c) * 4;
    size_t groups = sh->kind == CLNORM_BATCH      ? sh->c
                    : sh->kind == CLNORM_INSTANCE ? sh->n * sh->c
                    : sh->kind == CLNORM_GROUP    ? sh->n * sh->groups
                                                  : sh->n;
    /* x (and dy, a copy): normal values in the dtype's storage. */
    role(s, X, data, &rng, 1);
    if (sh->dtype != CLNORM_F32) {
        float *tmp = malloc(elems * 4 + 4);
        for (size_t i = 0; i < elems; ++i)
            tmp[i] = (float)harness_normal(&rng);
        ref_store(sh->dtype, tmp, s->init[X], elems);
        free(tmp);
        CL_OK(clEnqueueWriteBuffer(clnorm_context_queue(harness_ctx()), s->mem[X], CL_TRUE, 0,
                                   data ? data : 4, s->init[X], 0, NULL, NULL));
    }
    if (sh->params) {
        role(s, GAMMA, params, &rng, 1);
        role(s, BETA, params, &rng, 1);
    }
    if (sh->running) {
        role(s, RMEAN, sh->c * 4, &rng, 1);
        role(s, RVAR, sh->c * 4, &rng, 2);
    }
    if (sh->save) {
        role(s, SMEAN, groups * 4, &rng, 0);
        role(s, SINVSTD, groups * 4, &rng, 0);
    }
    if (sh->backward) {
        role(s, DY, data, &rng, 0);
        memcpy(s->init[DY], s->init[X], data ? data : 4); /* any finite values */
        CL_OK(clEnqueueWriteBuffer(clnorm_context_queue(harness_ctx()), s->mem[DY], CL_TRUE, 0,
                                   data ? data : 4, s->init[DY], 0, NULL, NULL));
        role(s, DX, data, &rng, 0);
        if (sh->params) {
            role(s, DGAMMA, params, &rng, 0);
            role(s, DBETA, params, &rng, 0);
        }
    }
    s->b.x = s->mem[X];
    s->b.y = sh->backward ? NULL : (role(s, Y, data, &rng, 0), s->mem[Y]);
    s->b.gamma = s->mem[GAMMA];
    s->b.beta = sh->backward ? NULL : s->mem[BETA];
    s->b.running_mean = s->mem[RMEAN];
    s->b.running_var = s->mem[RVAR];
    s->b.save_mean = s->mem[SMEAN];
    s->b.save_invstd = s->mem[SINVSTD];
    s->b.dy = s->mem[DY];
    s->b.dx = s->mem[DX];
    s->b.dgamma = s->mem[DGAMMA];
    s->b.dbeta = s->mem[DBETA];
}

static void setup_reset(setup *s)
{
    for (int r = 0; r < NROLES; ++r)
        if (s->mem[r])
            CL_OK(clEnqueueWriteBuffer(clnorm_context_queue(harness_ctx()), s->mem[r], CL_TRUE, 0,
                                       s->bytes[r] ? s->bytes[r] : 4, s->init[r], 0, NULL, NULL));
}

/* Every buffer's bytes now, one allocation per role (NULL where absent). */
static void setup_read(setup *s, unsigned char *out[NROLES])
{
    harness_finish();
    for (int r = 0; r < NROLES; ++r) {
        out[r] = NULL;
        if (!s->mem[r])
            continue;
        out[r] = malloc(s->bytes[r] ? s->bytes[r] : 4);
        harness_read(s->mem[r], out[r], s->bytes[r] ? s->bytes[r] : 4);
    }
}

static const char *const role_names[NROLES] = {"x",         "y",           "gamma", "beta",
                                              "running_mean", "running_var", "save_mean",
                                              "save_invstd",  "dy",          "dx",
                                              "dgamma",       "dbeta"};

/* Asserts every buffer holds `want` (NULL: its initial bytes). */
static void setup_expect(setup *s, unsigned char *const want[NROLES], const char *what)
{
    unsigned char *now[NROLES];
    setup_read(s, now);
    for (int r = 0; r < NROLES; ++r) {
        if (!s->mem[r])
            continue;
        const unsigned char *w = want ? want[r] : s->init[r];
        ck_assert_msg(memcmp(now[r], w, s->bytes[r]) == 0, "%s: bufs.%s changed", what,
                      role_names[r]);
        free(now[r]);
    }
}

static void setup_free(setup *s)
{
    for (int r = 0; r < NROLES; ++r) {
        if (s->mem[r])
            clReleaseMemObject(s->mem[r]);
        free(s->init[r]);
    }
}

static clnorm_status run(clnorm_plan *plan, const shape *sh, const clnorm_buffers *b,
                         cl_uint nw, const cl_event *wait, cl_event *done)
{
    return sh->backward ? clnorm_backward(plan, sh->mode, b, nw, wait, done)
                        : clnorm_forward(plan, sh->mode, b, nw, wait, done);
}

/* ---- an OpenCL failure part-way through a call ---------------------------------------------- */

START_TEST(refused_opencl_call_part_way_writes_nothing)
{
    clnorm_context *ctx = harness_ctx();
    const shape *sh = &shapes[_i];
    setup s;
    setup_make(&s, sh);

    /* A clean call from a fresh plan: the calls to fail, and the result a retry must give. */
    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &s.desc, &plan));
    cl_event done = NULL;
    armed = 1, counted = 0, fault_at = 0;
    clnorm_status st = run(plan, sh, &s.b, 0, NULL, &done);
    armed = 0;
    int calls = counted;
    CLNORM_OK(ctx, st);
    ck_assert_ptr_nonnull(done);
    CL_OK(clWaitForEvents(1, &done));
    clReleaseEvent(done);
    unsigned char *good[NROLES];
    setup_read(&s, good);
    clnorm_plan_release(plan);
    ck_assert_msg(calls > 0, "%s: no OpenCL call seen", sh->name);

    for (int k = 1; k <= calls; ++k) {
        setup_reset(&s);
        CLNORM_OK(ctx, clnorm_plan_create(ctx, &s.desc, &plan));
        done = (cl_event)&s;
        armed = 1, counted = 0, fault_at = k;
        st = run(plan, sh, &s.b, 0, NULL, &done);
        armed = 0, fault_at = 0;
        char what[160];
        snprintf(what, sizeof what, "%s, call %d of %d failed", sh->name, k, calls);
        ck_assert_msg(st != CLNORM_SUCCESS, "%s: returned success", what);
        ck_assert_msg(done == NULL, "%s: done not NULL", what);
        ck_assert_msg(*clnorm_context_last_error(ctx), "%s: no message", what);
        setup_expect(&s, NULL, what);
        /* The same plan again, with nothing failing: exactly the clean call's bits (the
         * running statistics took one momentum step, not two). */
        CLNORM_OK(ctx, run(plan, sh, &s.b, 0, NULL, NULL));
        snprintf(what, sizeof what, "%s, retry after call %d failed", sh->name, k);
        setup_expect(&s, good, what);
        clnorm_plan_release(plan);
    }
    for (int r = 0; r < NROLES; ++r)
        free(good[r]);
    setup_free(&s);
}
END_TEST

/* ---- failed dependencies --------------------------------------------------------------------- */

static void failed_dependency_on(clnorm_context *ctx, const shape *sh)
{
    cl_context cl = clnorm_context_cl(ctx);
    setup s;
    setup_make(&s, sh);
    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &s.desc, &plan));
    cl_event done = NULL;
    CLNORM_OK(ctx, run(plan, sh, &s.b, 0, NULL, &done));
    CL_OK(clWaitForEvents(1, &done)); /* ctx's queue may not be the harness's */
    clReleaseEvent(done);
    unsigned char *good[NROLES];
    setup_read(&s, good);

    /* 1: a dependency that fails after the call was enqueued. 2: one that had failed before.
     * 3: two dependencies, one failing first, the other later (PoCL walks both). */
    for (int variant = 1; variant <= 3; ++variant) {
        setup_reset(&s);
        cl_int err;
        cl_event ue[2] = {clCreateUserEvent(cl, &err), NULL};
        CL_OK(err);
        cl_uint nw = 1;
        if (variant == 2)
            CL_OK(clSetUserEventStatus(ue[0], -1));
        if (variant == 3) {
            ue[1] = clCreateUserEvent(cl, &err);
            CL_OK(err);
            nw = 2;
        }
        done = NULL;
        CLNORM_OK(ctx, run(plan, sh, &s.b, nw, ue, &done));
        ck_assert_ptr_nonnull(done);
        if (variant != 2)
            CL_OK(clSetUserEventStatus(ue[0], -1));
        /* The call's events may go before its dependencies resolve: clnorm holds its own. */
        if (variant == 3) {
            cl_event keep = done;
            clRetainEvent(keep);
            clReleaseEvent(done);
            done = keep;
        }
        cl_int state = CL_QUEUED;
        for (int tries = 0; tries < 1000 && state > CL_COMPLETE; ++tries) {
            CL_OK(clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof state, &state,
                                 NULL));
            if (state > CL_COMPLETE) {
                struct timespec ms = {0, 1000 * 1000};
                nanosleep(&ms, NULL);
            }
        }
        ck_assert_msg(state < 0, "%s, variant %d: done ended with %d, not an error", sh->name,
                      variant, (int)state);
        clReleaseEvent(done);
        if (variant == 3)
            CL_OK(clSetUserEventStatus(ue[1], -1));
        char what[128];
        snprintf(what, sizeof what, "%s, failed dependency (variant %d)", sh->name, variant);
        setup_expect(&s, NULL, what);
        for (int i = 0; i < 2; ++i)
            if (ue[i])
                clReleaseEvent(ue[i]);
        /* The plan goes on: the next call, with no dependency, gives the clean bits. */
        CLNORM_OK(ctx, run(plan, sh, &s.b, 0, NULL, &done));
        CL_OK(clWaitForEvents(1, &done));
        clReleaseEvent(done);
        snprintf(what, sizeof what, "%s, call after a failed dependency", sh->name);
        setup_expect(&s, good, what);
    }
    for (int r = 0; r < NROLES; ++r)
        free(good[r]);
    clnorm_plan_release(plan);
    setup_free(&s);
}

/* Whether the driver terminates commands that wait on a failed user event, as OpenCL says. A
 * driver that leaves them queued instead (Oclgrind 21.10: tests/oclgrind/failed_user_event.c)
 * never drains a queue behind one, so the checks that fail dependencies cannot run on it; the
 * probe runs on a queue of its own, left unreleased where it stays blocked. */
static int driver_terminates_waiters(void)
{
    clnorm_context *ctx = harness_ctx();
    cl_device_id dev;
    CL_OK(clGetCommandQueueInfo(clnorm_context_queue(ctx), CL_QUEUE_DEVICE, sizeof dev, &dev,
                                NULL));
    cl_int err;
    cl_command_queue probe = clCreateCommandQueue(clnorm_context_cl(ctx), dev, 0, &err);
    CL_OK(err);
    cl_event gate = clCreateUserEvent(clnorm_context_cl(ctx), &err), marker;
    CL_OK(err);
    CL_OK(clEnqueueMarkerWithWaitList(probe, 1, &gate, &marker));
    CL_OK(clSetUserEventStatus(gate, -1));
    cl_int state = CL_QUEUED;
    for (int tries = 0; tries < 200 && state > CL_COMPLETE; ++tries) {
        CL_OK(clGetEventInfo(marker, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof state, &state,
                             NULL));
        struct timespec ms = {0, 1000 * 1000};
        nanosleep(&ms, NULL);
    }
    if (state > CL_COMPLETE) {
        fprintf(stderr, "skipped: this driver leaves commands that wait on a failed event "
                        "queued (tests/oclgrind/failed_user_event.c)\n");
        return 0;
    }
    clReleaseEvent(marker);
    clReleaseEvent(gate);
    clReleaseCommandQueue(probe);
    return 1;
}

START_TEST(failed_dependency_fails_done_and_writes_nothing)
{
    if (!driver_terminates_waiters())
        return;
    static const int picks[] = {0, 3, 4, 8, 9, 10, 13};
    clnorm_context *ctx = harness_ctx();
    for (size_t i = 0; i < sizeof picks / sizeof picks[0]; ++i)
        failed_dependency_on(ctx, &shapes[picks[i]]);
}
END_TEST

START_TEST(failed_dependency_on_an_out_of_order_queue)
{
    if (!driver_terminates_waiters())
        return;
    clnorm_context *probe = harness_ctx();
    cl_device_id dev;
    CL_OK(clGetCommandQueueInfo(clnorm_context_queue(probe), CL_QUEUE_DEVICE, sizeof dev, &dev,
                                NULL));
    cl_command_queue_properties props = 0;
    CL_OK(clGetDeviceInfo(dev, CL_DEVICE_QUEUE_PROPERTIES, sizeof props, &props, NULL));
    if (!(props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE))
        return;
    cl_int err;
    cl_command_queue ooo = clCreateCommandQueue(clnorm_context_cl(probe), dev,
                                                CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE, &err);
    CL_OK(err);
    clnorm_context *ctx;
    CLNORM_OK(NULL, clnorm_context_create_from_queue(ooo, &ctx));
    /* Buffers are written through the harness's queue, in the same cl_context. */
    failed_dependency_on(ctx, &shapes[0]);
    failed_dependency_on(ctx, &shapes[10]);
    clnorm_context_release(ctx);
    clReleaseCommandQueue(ooo);
}
END_TEST

/* The plan and its context released while a call still waits, and the dependency failing
 * after: clnorm's events must outlive both (PoCL aborts otherwise). */
START_TEST(dependency_failing_after_plan_and_context_are_released)
{
    if (!driver_terminates_waiters())
        return;
    clnorm_context *ctx;
    CLNORM_OK(NULL, clnorm_context_create_from_queue(clnorm_context_queue(harness_ctx()), &ctx));
    const shape *sh = &shapes[0];
    setup s;
    setup_make(&s, sh);
    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &s.desc, &plan));
    cl_int err;
    cl_event ue = clCreateUserEvent(clnorm_context_cl(ctx), &err), done = NULL;
    CL_OK(err);
    CLNORM_OK(ctx, run(plan, sh, &s.b, 1, &ue, &done));
    clnorm_plan_release(plan);
    clnorm_context_release(ctx);
    CL_OK(clSetUserEventStatus(ue, -1));
    cl_int state = CL_QUEUED;
    for (int tries = 0; tries < 1000 && state > CL_COMPLETE; ++tries) {
        CL_OK(clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof state, &state,
                             NULL));
        struct timespec ms = {0, 1000 * 1000};
        nanosleep(&ms, NULL);
    }
    ck_assert_int_lt(state, 0);
    clReleaseEvent(done);
    clReleaseEvent(ue);
    setup_expect(&s, NULL, "released plan and context, failed dependency");
    /* A later call on another context reaps what the released one left. */
    clnorm_plan *again;
    CLNORM_OK(harness_ctx(), clnorm_plan_create(harness_ctx(), &s.desc, &again));
    CLNORM_OK(harness_ctx(), run(again, sh, &s.b, 0, NULL, NULL));
    harness_finish();
    clnorm_plan_release(again);
    setup_free(&s);
}
END_TEST

/* ---- buffers and events the kernels cannot use ----------------------------------------------- */

/* How a misuse case breaks the call: a role replaced by a buffer of another context, one with
 * the wrong flags, or an image; the same buffer as another role, or a sub-buffer overlapping
 * it; or a wait list with a NULL entry or another context's event. */
enum { OTHER_CONTEXT, READ_ONLY, WRITE_ONLY, IMAGE, SAME_AS, OVERLAPPING, NULL_EVENT,
       OTHER_CONTEXT_EVENT };

typedef struct misuse {
    int how, backward;
    int role, other;     /* the role broken, and for SAME_AS / OVERLAPPING the one it meets */
    const char *message; /* what last_error must say */
} misuse;

static cl_mem *slot(clnorm_buffers *b, int r)
{
    cl_mem *slots[NROLES] = {&b->x,           &b->y,         &b->gamma,     &b->beta,
                             &b->running_mean, &b->running_var, &b->save_mean, &b->save_invstd,
                             &b->dy,          &b->dx,        &b->dgamma,    &b->dbeta};
    return slots[r];
}

static cl_mem image_of(cl_context cl)
{
    cl_image_format fmt = {CL_R, CL_FLOAT};
    cl_image_desc desc;
    memset(&desc, 0, sizeof desc);
    desc.image_type = CL_MEM_OBJECT_IMAGE2D;
    desc.image_width = desc.image_height = 16;
    cl_int err;
    cl_mem m = clCreateImage(cl, CL_MEM_READ_WRITE, &fmt, &desc, NULL, &err);
    return err == CL_SUCCESS ? m : NULL;
}

START_TEST(unusable_buffers_and_events_are_refused)
{
    static const misuse cases[] = {
        {OTHER_CONTEXT, 0, X, 0, "bufs.x: created in another cl_context"},
        {OTHER_CONTEXT, 0, Y, 0, "bufs.y: created in another cl_context"},
        {OTHER_CONTEXT, 1, GAMMA, 0, "bufs.gamma: created in another cl_context"},
        {READ_ONLY, 0, Y, 0, "bufs.y: created with CL_MEM_READ_ONLY, but the call writes it"},
        {WRITE_ONLY, 0, X, 0, "bufs.x: created with CL_MEM_WRITE_ONLY, but the call reads it"},
        {IMAGE, 0, X, 0, "bufs.x: an image"},
        {IMAGE, 0, Y, 0, "bufs.y: an image"},
        {NULL_EVENT, 0, 0, 0, "wait[1]: NULL event"},
        {OTHER_CONTEXT_EVENT, 1, 0, 0, "wait[0]: an event of another cl_context"},
        {OVERLAPPING, 0, Y, X, "bufs.y: shares memory with bufs.x"},
        {SAME_AS, 0, SINVSTD, SMEAN, "bufs.save_mean: shares memory with bufs.save_invstd"},
        {READ_ONLY, 1, DX, 0, "bufs.dx: created with CL_MEM_READ_ONLY"},
        {SAME_AS, 1, DX, X, "bufs.dx: shares memory with bufs.x"},
        {SAME_AS, 1, DBETA, DGAMMA, "bufs.dgamma: shares memory with bufs.dbeta"},
        {READ_ONLY, 0, RMEAN, 0, "bufs.running_mean: created with CL_MEM_READ_ONLY"},
        {WRITE_ONLY, 1, SMEAN, 0, "bufs.save_mean: created with CL_MEM_WRITE_ONLY"},
    };
    clnorm_context *ctx = harness_ctx();
    cl_context cl = clnorm_context_cl(ctx);
    cl_device_id dev;
    CL_OK(clGetCommandQueueInfo(clnorm_context_queue(ctx), CL_QUEUE_DEVICE, sizeof dev, &dev,
                                NULL));
    cl_int err;
    cl_context other = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    CL_OK(err);
    cl_bool images = CL_FALSE;
    CL_OK(clGetDeviceInfo(dev, CL_DEVICE_IMAGE_SUPPORT, sizeof images, &images, NULL));

    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; ++k) {
        const misuse *m = &cases[k];
        if (m->how == IMAGE && !images)
            continue;
        /* BATCH training with running statistics and save_*: every role is in play. */
        shape sh = {"misuse", CLNORM_BATCH, CLNORM_NCHW, CLNORM_F32, 2, 4, 8, 0, m->backward,
                    CLNORM_TRAINING, 1, 1, 1};
        setup s;
        setup_make(&s, &sh);
        clnorm_plan *plan;
        CLNORM_OK(ctx, clnorm_plan_create(ctx, &s.desc, &plan));
        clnorm_buffers b = s.b;
        cl_mem made[2] = {NULL, NULL};
        cl_event events[2] = {NULL, NULL};
        cl_uint nw = 0;
        size_t bytes = s.bytes[m->role];
        switch (m->how) {
        case OTHER_CONTEXT:
        case READ_ONLY:
        case WRITE_ONLY: {
            cl_mem_flags flags = m->how == READ_ONLY    ? CL_MEM_READ_ONLY
                                 : m->how == WRITE_ONLY ? CL_MEM_WRITE_ONLY
                                                        : CL_MEM_READ_WRITE;
            made[0] = clCreateBuffer(m->how == OTHER_CONTEXT ? other : cl, flags, bytes, NULL,
                                     &err);
            CL_OK(err);
            break;
        }
        case IMAGE: made[0] = image_of(cl); break;
        case SAME_AS: *slot(&b, m->role) = *slot(&b, m->other); break;
        case OVERLAPPING: {
            /* both roles as sub-buffers of one buffer, the broken one 128 bytes into the other */
            made[1] = clCreateBuffer(cl, CL_MEM_READ_WRITE, 2 * bytes + 256, NULL, &err);
            CL_OK(err);
            cl_buffer_region first = {0, bytes}, second = {128, bytes};
            *slot(&b, m->other) = clCreateSubBuffer(made[1], 0, CL_BUFFER_CREATE_TYPE_REGION,
                                                    &first, &err);
            CL_OK(err);
            made[0] = clCreateSubBuffer(made[1], 0, CL_BUFFER_CREATE_TYPE_REGION, &second, &err);
            CL_OK(err);
            break;
        }
        case NULL_EVENT:
        case OTHER_CONTEXT_EVENT:
            events[0] = clCreateUserEvent(m->how == NULL_EVENT ? cl : other, &err);
            CL_OK(err);
            CL_OK(clSetUserEventStatus(events[0], CL_COMPLETE));
            nw = m->how == NULL_EVENT ? 2 : 1;
            break;
        }
        if (made[0])
            *slot(&b, m->role) = made[0];
        cl_event done = (cl_event)&s;
        clnorm_status st = run(plan, &sh, &b, nw, nw ? events : NULL, &done);
        ck_assert_msg(st == CLNORM_ERROR_INVALID_ARGUMENT, "case %zu: %s", k,
                      clnorm_status_string(st));
        ck_assert_ptr_null(done);
        const char *msg = clnorm_context_last_error(ctx);
        ck_assert_msg(strstr(msg, m->message) != NULL, "case %zu: \"%s\" does not say \"%s\"", k,
                      msg, m->message);
        char what[64];
        snprintf(what, sizeof what, "refused case %zu", k);
        setup_expect(&s, NULL, what);
        if (m->how == OVERLAPPING)
            clReleaseMemObject(*slot(&b, m->other));
        for (int i = 0; i < 2; ++i)
            if (made[i])
                clReleaseMemObject(made[i]);
        if (events[0])
            clReleaseEvent(events[0]);
        clnorm_plan_release(plan);
        setup_free(&s);
    }
    clReleaseContext(other);
}
END_TEST

/* Sub-buffers stay legal: side by side in one buffer, and in place, the same bits as plain
 * buffers give. */
START_TEST(sub_buffers_work_in_place_and_out_of_place)
{
    clnorm_context *ctx = harness_ctx();
    cl_context cl = clnorm_context_cl(ctx);
    shape sh = {"sub-buffers", CLNORM_GROUP, CLNORM_NHWC, CLNORM_F32, 2, 8, 5, 2, 0,
                CLNORM_TRAINING, 0, 0, 1};
    setup s;
    setup_make(&s, &sh);
    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &s.desc, &plan));
    CLNORM_OK(ctx, clnorm_forward(plan, CLNORM_TRAINING, &s.b, 0, NULL, NULL));
    size_t bytes = s.bytes[X];
    float *want = malloc(bytes), *got = malloc(bytes);
    harness_finish();
    harness_read(s.b.y, want, bytes);

    /* The device's sub-buffer alignment: offsets must be multiples of it. */
    cl_device_id dev;
    CL_OK(clGetCommandQueueInfo(clnorm_context_queue(ctx), CL_QUEUE_DEVICE, sizeof dev, &dev,
                                NULL));
    cl_uint align_bits = 0;
    CL_OK(clGetDeviceInfo(dev, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits, &align_bits,
                          NULL));
    size_t align = align_bits / 8 ? align_bits / 8 : 1;
    size_t stride = (bytes + align - 1) / align * align;
    cl_int err;
    cl_mem parent = clCreateBuffer(cl, CL_MEM_READ_WRITE, 2 * stride, NULL, &err);
    CL_OK(err);
    cl_buffer_region rx = {0, bytes}, ry = {stride, bytes};
    cl_mem sx = clCreateSubBuffer(parent, 0, CL_BUFFER_CREATE_TYPE_REGION, &rx, &err);
    CL_OK(err);
    cl_mem sy = clCreateSubBuffer(parent, 0, CL_BUFFER_CREATE_TYPE_REGION, &ry, &err);
    CL_OK(err);
    clnorm_buffers b = s.b;
    b.save_mean = b.save_invstd = NULL;
    b.x = sx, b.y = sy;
    /* Through the parent, whole: Oclgrind's uninitialized-value check loses track of a buffer
     * written in part (tests/oclgrind/sub_buffer_write.c). */
    unsigned char *whole = calloc(1, 2 * stride);
    memcpy(whole, s.init[X], bytes);
    CL_OK(clEnqueueWriteBuffer(clnorm_context_queue(ctx), parent, CL_TRUE, 0, 2 * stride, whole,
                               0, NULL, NULL));
    free(whole);
    CLNORM_OK(ctx, clnorm_forward(plan, CLNORM_TRAINING, &b, 0, NULL, NULL));
    harness_finish();
    harness_read(sy, got, bytes);
    ck_assert_mem_eq(got, want, bytes);
    b.y = sx; /* in place */
    CLNORM_OK(ctx, clnorm_forward(plan, CLNORM_TRAINING, &b, 0, NULL, NULL));
    harness_finish();
    harness_read(sx, got, bytes);
    ck_assert_mem_eq(got, want, bytes);
    clReleaseMemObject(sx);
    clReleaseMemObject(sy);
    clReleaseMemObject(parent);
    free(want);
    free(got);
    clnorm_plan_release(plan);
    setup_free(&s);
}
END_TEST

/* ---- scratch ---------------------------------------------------------------------------------- */

START_TEST(scratch_is_allocated_by_the_pass_that_uses_it)
{
    clnorm_context *ctx = harness_ctx();
    const shape *sh = &shapes[12]; /* layer backward */
    setup s;
    setup_make(&s, sh);
    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &s.desc, &plan));
    size_t fwd = clnorm_plan_scratch_bytes(plan, CLNORM_SCRATCH_FORWARD);
    size_t bwd = clnorm_plan_scratch_bytes(plan, CLNORM_SCRATCH_BACKWARD);
    ck_assert_uint_gt(fwd, 0);
    ck_assert_uint_gt(bwd, 0);
    ck_assert_uint_eq(clnorm_plan_scratch_bytes(plan, CLNORM_SCRATCH_HELD), 0);
    /* A backward from saved statistics takes its own scratch only... */
    CLNORM_OK(ctx, clnorm_backward(plan, CLNORM_TRAINING, &s.b, 0, NULL, NULL));
    ck_assert_uint_eq(clnorm_plan_scratch_bytes(plan, CLNORM_SCRATCH_HELD), bwd);
    /* ...and one that recomputes them forward's too. */
    clnorm_buffers b = s.b;
    b.save_mean = b.save_invstd = NULL;
    CLNORM_OK(ctx, clnorm_backward(plan, CLNORM_TRAINING, &b, 0, NULL, NULL));
    ck_assert_uint_eq(clnorm_plan_scratch_bytes(plan, CLNORM_SCRATCH_HELD), fwd + bwd);
    harness_finish();
    clnorm_plan_release(plan);
    setup_free(&s);
    ck_assert_uint_eq(clnorm_plan_scratch_bytes(NULL, CLNORM_SCRATCH_HELD), 0);
}
END_TEST

/* One sample of 2^29 half floats (1 GiB, under PoCL's 2 GiB largest allocation): backward's
 * parameter sums once needed 8 bytes of scratch per element, so the plan could not be made. */
START_TEST(scratch_of_one_huge_sample_is_bounded)
{
    clnorm_context *ctx = harness_ctx();
    static const clnorm_dtype dtypes[] = {CLNORM_F16, CLNORM_F32};
    for (int i = 0; i < 2; ++i) {
        size_t d = dtypes[i] == CLNORM_F16 ? (size_t)1 << 29 : (size_t)1 << 28;
        clnorm_desc desc = {
            .kind = CLNORM_LAYER, .layout = CLNORM_NCHW, .dtype = dtypes[i], .n = 1, .c = 1, .d = d,
            .groups = 0, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
        };
        clnorm_plan *plan;
        CLNORM_OK(ctx, clnorm_plan_create(ctx, &desc, &plan));
        ck_assert_uint_eq(clnorm_plan_scratch_bytes(plan, CLNORM_SCRATCH_HELD), 0);
        size_t x_bytes = d * (dtypes[i] == CLNORM_F16 ? 2 : 4);
        size_t fwd = clnorm_plan_scratch_bytes(plan, CLNORM_SCRATCH_FORWARD);
        size_t bwd = clnorm_plan_scratch_bytes(plan, CLNORM_SCRATCH_BACKWARD);
        ck_assert_msg(fwd <= x_bytes / 64 && bwd <= x_bytes / 64,
                      "scratch %zu + %zu bytes for a %zu-byte tensor", fwd, bwd, x_bytes);
        clnorm_plan_release(plan);
    }
}
END_TEST

/* Scratch past the device's largest allocation: UNSUPPORTED with the sizes, nothing written. */
START_TEST(scratch_past_the_largest_allocation_is_unsupported)
{
    setenv("CLNORM_MAX_ALLOC", "4096", 1);
    clnorm_context *ctx = NULL;
    clnorm_status st = clnorm_context_create(getenv("CLNORM_TEST_DEVICE"), &ctx);
    unsetenv("CLNORM_MAX_ALLOC");
    CLNORM_OK(NULL, st);
    /* BATCH over 1024 channels: 8 KiB of partials, a 12 KiB apply table. */
    clnorm_desc desc = {
        .kind = CLNORM_BATCH, .layout = CLNORM_NHWC, .dtype = CLNORM_F32, .n = 2, .c = 1024, .d = 1,
        .groups = 0, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
    };
    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &desc, &plan));
    size_t bytes = 2 * 1024 * 4;
    float *fill = malloc(bytes), *got = malloc(bytes);
    for (size_t i = 0; i < 2048; ++i)
        fill[i] = (float)i;
    cl_int err;
    clnorm_buffers b = {0};
    b.x = clCreateBuffer(clnorm_context_cl(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes,
                         fill, &err);
    CL_OK(err);
    b.y = clCreateBuffer(clnorm_context_cl(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes,
                         fill, &err);
    CL_OK(err);
    cl_event done = (cl_event)fill;
    ck_assert_int_eq(clnorm_forward(plan, CLNORM_TRAINING, &b, 0, NULL, &done),
                     CLNORM_ERROR_UNSUPPORTED);
    ck_assert_ptr_null(done);
    const char *msg = clnorm_context_last_error(ctx);
    ck_assert_msg(strstr(msg, "scratch: ") && strstr(msg, " bytes (") &&
                      strstr(msg, "over the device's largest allocation of 4096 bytes"),
                  "message: %s", msg);
    CL_OK(clEnqueueReadBuffer(clnorm_context_queue(ctx), b.y, CL_TRUE, 0, bytes, got, 0, NULL,
                              NULL));
    ck_assert_mem_eq(got, fill, bytes);
    ck_assert_uint_eq(clnorm_plan_scratch_bytes(plan, CLNORM_SCRATCH_HELD), 0);
    clReleaseMemObject(b.x);
    clReleaseMemObject(b.y);
    free(fill);
    free(got);
    clnorm_plan_release(plan);
    clnorm_context_release(ctx);
}
END_TEST

/* A call with no plan has no context: its message is where the header says, under NULL. */
START_TEST(failure_without_a_plan_is_read_under_null)
{
    cl_event done = (cl_event)&done;
    ck_assert_int_eq(clnorm_backward(NULL, CLNORM_TRAINING, NULL, 0, NULL, &done),
                     CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_ptr_null(done);
    ck_assert_ptr_nonnull(strstr(clnorm_context_last_error(NULL), "plan: NULL"));
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("faults");
    /* injected: every OpenCL call of every call shape failed in turn (too long for Oclgrind) */
    TCase *injected = tcase_create("injected");
    tcase_set_tags(injected, "injected");
    tcase_set_timeout(injected, 900);
    tcase_add_loop_test(injected, refused_opencl_call_part_way_writes_nothing, 0, (int)NSHAPES);
    suite_add_tcase(suite, injected);
    TCase *deps = tcase_create("dependencies");
    tcase_set_timeout(deps, 600);
    tcase_add_test(deps, failed_dependency_fails_done_and_writes_nothing);
    tcase_add_test(deps, dependency_failing_after_plan_and_context_are_released);
    suite_add_tcase(suite, deps);
    TCase *ooo = tcase_create("out_of_order");
    tcase_set_timeout(ooo, 600);
    tcase_add_test(ooo, failed_dependency_on_an_out_of_order_queue);
    suite_add_tcase(suite, ooo);
    TCase *refused = tcase_create("misuse");
    tcase_add_test(refused, unusable_buffers_and_events_are_refused);
    tcase_add_test(refused, sub_buffers_work_in_place_and_out_of_place);
    tcase_add_test(refused, failure_without_a_plan_is_read_under_null);
    suite_add_tcase(suite, refused);
    TCase *scratch = tcase_create("scratch");
    tcase_add_test(scratch, scratch_is_allocated_by_the_pass_that_uses_it);
    tcase_add_test(scratch, scratch_of_one_huge_sample_is_bounded);
    tcase_add_test(scratch, scratch_past_the_largest_allocation_is_unsupported);
    suite_add_tcase(suite, scratch);
    return harness_run(suite);
}
