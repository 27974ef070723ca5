/* The public API's contract on a device: device specs, the application's own queue, events,
 * rejected calls that write nothing, n == 0, and several threads on one plan. */
#include "harness.h"
#include "reference.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

START_TEST(device_specs)
{
    clnorm_context *ctx = NULL;
    ck_assert_int_eq(clnorm_context_create("0:0", &ctx), CLNORM_SUCCESS);
    char name[256] = "";
    cl_device_id dev;
    CL_OK(clGetCommandQueueInfo(clnorm_context_queue(ctx), CL_QUEUE_DEVICE, sizeof dev, &dev, NULL));
    CL_OK(clGetDeviceInfo(dev, CL_DEVICE_NAME, sizeof name, name, NULL));
    cl_device_type type;
    CL_OK(clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof type, &type, NULL));
    clnorm_context_release(ctx);

    /* A case-changed piece of the device name finds it. */
    char piece[8] = "";
    for (int i = 0; i < 6 && name[i]; ++i)
        piece[i] = (char)toupper((unsigned char)name[i]);
    ck_assert_int_eq(clnorm_context_create(piece, &ctx), CLNORM_SUCCESS);
    clnorm_context_release(ctx);
    const char *type_spec = type & CL_DEVICE_TYPE_GPU ? "GPU" : type & CL_DEVICE_TYPE_CPU ? "cpu" : "accelerator";
    ck_assert_int_eq(clnorm_context_create(type_spec, &ctx), CLNORM_SUCCESS);
    clnorm_context_release(ctx);

    /* No match: NO_DEVICE, NULL out, and the list of devices in the message. */
    ctx = (clnorm_context *)&ctx;
    ck_assert_int_eq(clnorm_context_create("no-such-device-anywhere", &ctx), CLNORM_ERROR_NO_DEVICE);
    ck_assert_ptr_null(ctx);
    const char *msg = clnorm_context_last_error(NULL);
    ck_assert_msg(strstr(msg, "no-such-device-anywhere") && strstr(msg, "0:0") &&
                      strstr(msg, name),
                  "message: %s", msg);
    ck_assert_int_eq(clnorm_context_create("97:3", &ctx), CLNORM_ERROR_NO_DEVICE);

    /* CLNORM_DEVICE is the default spec; an argument wins over it. */
    setenv("CLNORM_DEVICE", "no-such-device-anywhere", 1);
    ck_assert_int_eq(clnorm_context_create(NULL, &ctx), CLNORM_ERROR_NO_DEVICE);
    ck_assert_int_eq(clnorm_context_create("0:0", &ctx), CLNORM_SUCCESS);
    clnorm_context_release(ctx);
    unsetenv("CLNORM_DEVICE");
    ck_assert_int_eq(clnorm_context_create(NULL, NULL), CLNORM_ERROR_INVALID_ARGUMENT);
    clnorm_context_release(NULL);
    clnorm_plan_release(NULL);
    ck_assert_uint_eq(clnorm_plan_stats_count(NULL), 0);
}
END_TEST

/* BATCH NCHW 2x3x4 on x = 0..23, checked against the reference. */
static void run_small_batch(clnorm_context *ctx, cl_context cl)
{
    clnorm_desc desc = {
        .kind = CLNORM_BATCH, .layout = CLNORM_NCHW, .dtype = CLNORM_F32, .n = 2, .c = 3, .d = 4,
        .groups = 0, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
    };
    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &desc, &plan));
    float x[24], y[24];
    double xd[24], want[24];
    for (int i = 0; i < 24; ++i)
        xd[i] = x[i] = (float)i;
    cl_int err;
    cl_mem bx = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof x, x, &err);
    cl_mem by = clCreateBuffer(cl, CL_MEM_READ_WRITE, sizeof y, NULL, &err);
    clnorm_buffers b = {0};
    b.x = bx;
    b.y = by;
    cl_event done;
    CLNORM_OK(ctx, clnorm_forward(plan, CLNORM_TRAINING, &b, 0, NULL, &done));
    CL_OK(clWaitForEvents(1, &done));
    clReleaseEvent(done);
    CL_OK(clEnqueueReadBuffer(clnorm_context_queue(ctx), by, CL_TRUE, 0, sizeof y, y, 0, NULL,
                              NULL));
    ref_inputs in = {xd, NULL, NULL, NULL, NULL, NULL};
    ref_outputs out = {want, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    ref_forward(&desc, CLNORM_TRAINING, &in, &out);
    for (int i = 0; i < 24; ++i)
        ck_assert_float_eq_tol(y[i], (float)want[i], 1e-5f);
    clReleaseMemObject(bx);
    clReleaseMemObject(by);
    clnorm_plan_release(plan);
}

START_TEST(runs_on_the_applications_queue)
{
    /* The application's own objects, on the test device. */
    clnorm_context *probe = harness_ctx();
    cl_device_id dev;
    CL_OK(clGetCommandQueueInfo(clnorm_context_queue(probe), CL_QUEUE_DEVICE, sizeof dev, &dev, NULL));
    cl_int err;
    cl_context cl = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    CL_OK(err);
    cl_command_queue queue = clCreateCommandQueue(cl, dev, 0, &err);
    CL_OK(err);
    cl_uint refs_before = 0;
    CL_OK(clGetCommandQueueInfo(queue, CL_QUEUE_REFERENCE_COUNT, sizeof refs_before,
                                &refs_before, NULL));
    clnorm_context *ctx;
    CLNORM_OK(NULL, clnorm_context_create_from_queue(queue, &ctx));
    ck_assert_ptr_eq(clnorm_context_queue(ctx), queue);
    ck_assert_ptr_eq(clnorm_context_cl(ctx), cl);
    run_small_batch(ctx, cl);
    clnorm_context_release(ctx);
    /* Ours again, untouched: clnorm dropped exactly the references it took. The runtime may
     * hold one of its own a moment longer for finished commands, so wait for it to let go. */
    CL_OK(clFinish(queue));
    cl_uint refs = 0;
    for (int tries = 0; tries < 200; ++tries) {
        CL_OK(clGetCommandQueueInfo(queue, CL_QUEUE_REFERENCE_COUNT, sizeof refs, &refs, NULL));
        if (refs == refs_before)
            break;
        struct timespec ms = {0, 10 * 1000 * 1000};
        nanosleep(&ms, NULL);
    }
    ck_assert_uint_eq(refs, refs_before);

    /* Out of order, where the device offers it: commands must still chain. */
    cl_command_queue_properties props = 0;
    CL_OK(clGetDeviceInfo(dev, CL_DEVICE_QUEUE_PROPERTIES, sizeof props, &props, NULL));
    if (props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) {
        cl_command_queue ooo =
            clCreateCommandQueue(cl, dev, CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE, &err);
        CL_OK(err);
        CLNORM_OK(NULL, clnorm_context_create_from_queue(ooo, &ctx));
        for (int i = 0; i < 5; ++i)
            run_small_batch(ctx, cl);
        clnorm_context_release(ctx);
        clReleaseCommandQueue(ooo);
    }
    ck_assert_int_eq(clnorm_context_create_from_queue(NULL, &ctx), CLNORM_ERROR_INVALID_ARGUMENT);
    clReleaseCommandQueue(queue);
    clReleaseContext(cl);
}
END_TEST

START_TEST(waits_for_the_callers_events)
{
    clnorm_context *ctx = harness_ctx();
    clnorm_desc desc = {
        .kind = CLNORM_LAYER, .layout = CLNORM_NHWC, .dtype = CLNORM_F32, .n = 2, .c = 3, .d = 5,
        .groups = 0, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
    };
    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &desc, &plan));
    float x[30], y[30];
    for (int i = 0; i < 30; ++i)
        x[i] = (float)(i * i % 7);
    clnorm_buffers b = {0};
    b.x = harness_buffer(x, sizeof x);
    b.y = harness_buffer(NULL, sizeof y);
    cl_int err;
    cl_event gate = clCreateUserEvent(clnorm_context_cl(ctx), &err);
    CL_OK(err);
    cl_event done;
    CLNORM_OK(ctx, clnorm_forward(plan, CLNORM_TRAINING, &b, 1, &gate, &done));
    /* No clFlush: Oclgrind's flush blocks until the queue drains, which it never would. */
    cl_int state;
    CL_OK(clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof state, &state, NULL));
    ck_assert_int_ne(state, CL_COMPLETE);
    CL_OK(clSetUserEventStatus(gate, CL_COMPLETE));
    CL_OK(clWaitForEvents(1, &done));
    harness_read(b.y, y, sizeof y);
    ck_assert(fabsf(y[0]) < 3.0f && y[0] != 0.0f);
    clReleaseEvent(done);
    clReleaseEvent(gate);
    ck_assert_int_eq(clnorm_forward(plan, CLNORM_TRAINING, &b, 1, NULL, NULL),
                     CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(clnorm_context_last_error(ctx), "wait"));
    clReleaseMemObject(b.x);
    clReleaseMemObject(b.y);
    clnorm_plan_release(plan);
}
END_TEST

typedef struct bad_call {
    const char *field;
    clnorm_kind kind;
    clnorm_mode mode;
    int which; /* what to break, see break_buffers */
} bad_call;

enum { MISSING_X, MISSING_Y, SMALL_X, SMALL_Y, SMALL_GAMMA, SMALL_BETA, SMALL_SAVE_MEAN,
       SMALL_SAVE_INVSTD, SMALL_RUNNING, HALF_RUNNING, RUNNING_ON_LAYER, BAD_MODE,
       SINGLE_ELEMENT_BATCH, SINGLE_ELEMENT_INSTANCE, NULL_BUFS };

START_TEST(rejected_calls_name_the_field_and_write_nothing)
{
    static const bad_call calls[] = {
        {"bufs.x", CLNORM_BATCH, CLNORM_TRAINING, MISSING_X},
        {"bufs.y", CLNORM_BATCH, CLNORM_TRAINING, MISSING_Y},
        {"bufs.x", CLNORM_GROUP, CLNORM_TRAINING, SMALL_X},
        {"bufs.y", CLNORM_INSTANCE, CLNORM_TRAINING, SMALL_Y},
        {"bufs.gamma", CLNORM_LAYER, CLNORM_TRAINING, SMALL_GAMMA},
        {"bufs.beta", CLNORM_BATCH, CLNORM_TRAINING, SMALL_BETA},
        {"bufs.save_mean", CLNORM_GROUP, CLNORM_TRAINING, SMALL_SAVE_MEAN},
        {"bufs.save_invstd", CLNORM_RMS, CLNORM_TRAINING, SMALL_SAVE_INVSTD},
        {"bufs.running_var", CLNORM_BATCH, CLNORM_INFERENCE, SMALL_RUNNING},
        {"bufs.running_var", CLNORM_INSTANCE, CLNORM_TRAINING, HALF_RUNNING},
        {"bufs.running_mean", CLNORM_LAYER, CLNORM_TRAINING, RUNNING_ON_LAYER},
        {"mode", CLNORM_BATCH, (clnorm_mode)7, BAD_MODE},
        {"desc.n", CLNORM_BATCH, CLNORM_TRAINING, SINGLE_ELEMENT_BATCH},
        {"desc.d", CLNORM_INSTANCE, CLNORM_INFERENCE, SINGLE_ELEMENT_INSTANCE},
        {"bufs", CLNORM_BATCH, CLNORM_TRAINING, NULL_BUFS},
    };
    clnorm_context *ctx = harness_ctx();
    for (size_t k = 0; k < sizeof calls / sizeof calls[0]; ++k) {
        const bad_call *bc = &calls[k];
        size_t N = 2, C = 4, D = 6;
        if (bc->which == SINGLE_ELEMENT_BATCH)
            N = 1, D = 1;
        if (bc->which == SINGLE_ELEMENT_INSTANCE)
            D = 1;
        clnorm_desc desc = {
            .kind = bc->kind, .layout = CLNORM_NCHW, .dtype = CLNORM_F32, .n = N, .c = C, .d = D,
            .groups = 2, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
        };
        clnorm_plan *plan;
        CLNORM_OK(ctx, clnorm_plan_create(ctx, &desc, &plan));
        size_t total = N * C * D, params = bc->kind == CLNORM_LAYER || bc->kind == CLNORM_RMS ? C * D : C;
        size_t groups = clnorm_plan_stats_count(plan);
        float *fill = malloc(total * sizeof(float));
        for (size_t i = 0; i < total; ++i)
            fill[i] = 42.0f;
        clnorm_buffers b = {0};
        b.x = harness_buffer(fill, total * 4);
        b.y = harness_buffer(fill, total * 4);
        b.gamma = harness_buffer(fill, params * 4);
        b.beta = harness_buffer(fill, params * 4);
        b.save_mean = harness_buffer(fill, groups * 4);
        b.save_invstd = harness_buffer(fill, groups * 4);
        if (bc->kind == CLNORM_BATCH || bc->kind == CLNORM_INSTANCE) {
            b.running_mean = harness_buffer(fill, C * 4);
            b.running_var = harness_buffer(fill, C * 4);
        }
        cl_mem keep[8] = {b.x, b.y, b.gamma, b.beta, b.save_mean, b.save_invstd, b.running_mean,
                          b.running_var};
        cl_mem small = harness_buffer(fill, 4);
        switch (bc->which) {
        case MISSING_X: b.x = NULL; break;
        case MISSING_Y: b.y = NULL; break;
        case SMALL_X: b.x = small; break;
        case SMALL_Y: b.y = small; break;
        case SMALL_GAMMA: b.gamma = small; break;
        case SMALL_BETA: b.beta = small; break;
        case SMALL_SAVE_MEAN: b.save_mean = small; break;
        case SMALL_SAVE_INVSTD: b.save_invstd = small; break;
        case SMALL_RUNNING: b.running_var = small; break;
        case HALF_RUNNING: b.running_var = NULL; break;
        case RUNNING_ON_LAYER: b.running_mean = b.running_var = small; break;
        case SINGLE_ELEMENT_INSTANCE: b.running_mean = b.running_var = NULL; break;
        default: break;
        }
        cl_event done = (cl_event)fill;
        clnorm_status st = clnorm_forward(plan, bc->mode, bc->which == NULL_BUFS ? NULL : &b, 0,
                                          NULL, &done);
        ck_assert_msg(st == CLNORM_ERROR_INVALID_ARGUMENT, "case %zu: %s", k,
                      clnorm_status_string(st));
        ck_assert_ptr_null(done);
        const char *msg = clnorm_context_last_error(ctx);
        ck_assert_msg(strstr(msg, bc->field) != NULL, "case %zu: \"%s\" does not name %s", k, msg,
                      bc->field);
        harness_finish();
        for (int i = 0; i < 8; ++i) {
            if (!keep[i])
                continue;
            size_t bytes = 0;
            CL_OK(clGetMemObjectInfo(keep[i], CL_MEM_SIZE, sizeof bytes, &bytes, NULL));
            float *got = malloc(bytes);
            harness_read(keep[i], got, bytes);
            for (size_t j = 0; j < bytes / 4; ++j)
                ck_assert_msg(got[j] == 42.0f, "case %zu: buffer %d written", k, i);
            free(got);
            clReleaseMemObject(keep[i]);
        }
        clReleaseMemObject(small);
        free(fill);
        clnorm_plan_release(plan);
    }
    ck_assert_int_eq(clnorm_plan_create(NULL, NULL, NULL), CLNORM_ERROR_INVALID_ARGUMENT);
    clnorm_plan *plan = NULL;
    ck_assert_int_eq(clnorm_plan_create(ctx, NULL, &plan), CLNORM_ERROR_INVALID_ARGUMENT);
    ck_assert_ptr_null(plan);
    ck_assert_int_eq(clnorm_forward(NULL, CLNORM_TRAINING, NULL, 0, NULL, NULL),
                     CLNORM_ERROR_INVALID_ARGUMENT);
}
END_TEST

START_TEST(empty_batch_is_a_no_op)
{
    clnorm_context *ctx = harness_ctx();
    for (int kind = CLNORM_BATCH; kind <= CLNORM_RMS; ++kind) {
        clnorm_desc desc = {
            .kind = (clnorm_kind)kind, .layout = CLNORM_NHWC, .dtype = CLNORM_BF16, .n = 0, .c = 8,
            .d = 3, .groups = 4, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
        };
        clnorm_plan *plan;
        CLNORM_OK(ctx, clnorm_plan_create(ctx, &desc, &plan));
        clnorm_buffers b = {0};
        cl_event done = NULL;
        CLNORM_OK(ctx, clnorm_forward(plan, CLNORM_TRAINING, &b, 0, NULL, &done));
        ck_assert_ptr_nonnull(done); /* a marker, so callers can chain on it as usual */
        CL_OK(clWaitForEvents(1, &done));
        clReleaseEvent(done);
        CLNORM_OK(ctx, clnorm_forward(plan, CLNORM_INFERENCE, &b, 0, NULL, NULL));
        clnorm_plan_release(plan);
    }
}
END_TEST

typedef struct worker {
    clnorm_plan *plan;
    int id, failures;
} worker;

static void *hammer(void *arg)
{
    worker *w = arg;
    clnorm_context *ctx = harness_ctx();
    enum { N = 3, C = 5, D = 70 };
    float x[N * C * D], y[N * C * D];
    double xd[N * C * D], want[N * C * D];
    for (int i = 0; i < N * C * D; ++i)
        xd[i] = x[i] = (float)((i * (w->id + 3)) % 17) + (float)w->id;
    clnorm_desc desc = {
        .kind = CLNORM_GROUP, .layout = CLNORM_NHWC, .dtype = CLNORM_F32, .n = N, .c = C, .d = D,
        .groups = 5, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
    };
    ref_inputs in = {xd, NULL, NULL, NULL, NULL, NULL};
    ref_outputs out = {want, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    ref_forward(&desc, CLNORM_TRAINING, &in, &out);
    cl_int err;
    clnorm_buffers b = {0};
    b.x = clCreateBuffer(clnorm_context_cl(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof x,
                         x, &err);
    b.y = clCreateBuffer(clnorm_context_cl(ctx), CL_MEM_READ_WRITE, sizeof y, NULL, &err);
    for (int rep = 0; rep < 20; ++rep) {
        cl_event done;
        if (clnorm_forward(w->plan, CLNORM_TRAINING, &b, 0, NULL, &done) != CLNORM_SUCCESS) {
            w->failures++;
            continue;
        }
        clEnqueueReadBuffer(clnorm_context_queue(ctx), b.y, CL_TRUE, 0, sizeof y, y, 1, &done,
                            NULL);
        clReleaseEvent(done);
        for (int i = 0; i < N * C * D; ++i)
            if (fabs(y[i] - want[i]) > 1e-4)
                w->failures++;
    }
    clReleaseMemObject(b.x);
    clReleaseMemObject(b.y);
    return NULL;
}

START_TEST(threads_share_a_plan)
{
    clnorm_context *ctx = harness_ctx();
    clnorm_desc desc = {
        .kind = CLNORM_GROUP, .layout = CLNORM_NHWC, .dtype = CLNORM_F32, .n = 3, .c = 5, .d = 70,
        .groups = 5, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
    };
    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &desc, &plan));
    pthread_t threads[4];
    worker workers[4];
    for (int t = 0; t < 4; ++t) {
        workers[t] = (worker){plan, t, 0};
        ck_assert_int_eq(pthread_create(&threads[t], NULL, hammer, &workers[t]), 0);
    }
    for (int t = 0; t < 4; ++t) {
        pthread_join(threads[t], NULL);
        ck_assert_int_eq(workers[t].failures, 0);
    }
    clnorm_plan_release(plan);
}
END_TEST

START_TEST(plan_outlives_its_context_handle)
{
    clnorm_context *ctx;
    CLNORM_OK(NULL, clnorm_context_create(getenv("CLNORM_TEST_DEVICE"), &ctx));
    clnorm_desc desc = {
        .kind = CLNORM_RMS, .layout = CLNORM_NCHW, .dtype = CLNORM_F32, .n = 2, .c = 2, .d = 2,
        .groups = 0, .eps = 1e-5f, .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
    };
    clnorm_plan *plan;
    CLNORM_OK(ctx, clnorm_plan_create(ctx, &desc, &plan));
    cl_context cl = clnorm_context_cl(ctx);
    clRetainContext(cl);
    clnorm_context_release(ctx); /* the plan keeps it alive */
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    cl_int err;
    clnorm_buffers b = {0};
    b.x = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof x, x, &err);
    b.y = b.x;
    cl_event done;
    ck_assert_int_eq(clnorm_forward(plan, CLNORM_TRAINING, &b, 0, NULL, &done), CLNORM_SUCCESS);
    CL_OK(clWaitForEvents(1, &done));
    clReleaseEvent(done);
    clReleaseMemObject(b.x);
    clnorm_plan_release(plan);
    clReleaseContext(cl);
}
END_TEST

int main(void)
{
    harness_ctx();
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("api");
    tcase_set_timeout(tc, 0);
    tcase_add_test(tc, device_specs);
    tcase_add_test(tc, runs_on_the_applications_queue);
    tcase_add_test(tc, waits_for_the_callers_events);
    tcase_add_test(tc, rejected_calls_name_the_field_and_write_nothing);
    tcase_add_test(tc, empty_batch_is_a_no_op);
    /* Oclgrind runs one kernel at a time per process and asserts otherwise. */
    if (!harness_small())
        tcase_add_test(tc, threads_share_a_plan);
    tcase_add_test(tc, plan_outlives_its_context_handle);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
