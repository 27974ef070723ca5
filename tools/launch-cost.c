/*
 * launch-cost: what a small normalization costs when calls are pipelined (enqueued back to
 * back, one wait at the end), against a bare launch of an empty kernel on the same queue, and
 * how much of it is the host's (the time to enqueue alone).
 *
 *   launch-cost [--device SPEC] [PROBLEM...]   (forward problems, training or inference;
 *                                              default: LAYER 1x32x64, RMS 1x4096x1, LAYER
 *                                              8x2048x1; f32)
 *
 * Each call has gamma and beta, save_* in training, and BATCH's running statistics (updated in
 * training, normalized with in inference), as in a network. Every round times the bare launch,
 * then the row's calls, so that each ratio compares times measured side by side; a table row
 * gives the medians over ROUNDS rounds. A second reference row is an empty kernel with the
 * argument list of the fused row kernel (11 buffers, three of them NULL, and 9 scalars): the
 * driver's cost of the arguments alone, below which no call with them can go.
 */
#include <clnorm/clnorm.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "problem.h"

#define CALLS 2000
#define ROUNDS 7

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "launch-cost: %s: %s\n", what, detail);
    exit(1);
}

typedef void (*enqueue_fn)(void *user);

/* One round of CALLS calls: (enqueue time, total time) per call, in microseconds. */
static void round_of(enqueue_fn fn, void *user, cl_command_queue q, double *host_us,
                     double *total_us)
{
    clFinish(q);
    double t0 = now_s();
    for (int i = 0; i < CALLS; ++i)
        fn(user);
    double t1 = now_s();
    clFinish(q);
    double t2 = now_s();
    *host_us = (t1 - t0) / CALLS * 1e6;
    *total_us = (t2 - t0) / CALLS * 1e6;
}

typedef struct launch {
    cl_command_queue q;
    cl_kernel k;
} launch;

static void kernel_launch(void *user)
{
    launch *b = user;
    size_t one = 1;
    clEnqueueNDRangeKernel(b->q, b->k, 1, NULL, &one, &one, 0, NULL, NULL);
}

/* Medians over ROUNDS rounds, each the bare launch's round and then fn's: fn's enqueue and total
 * times, and its total over the bare launch's of the same round. */
static void measure(enqueue_fn fn, void *user, launch *bare, double *host_us, double *total_us,
                    double *ratio)
{
    double host[ROUNDS], total[ROUNDS], r[ROUNDS];
    round_of(fn, user, bare->q, &host[0], &total[0]); /* warm-up */
    for (int i = 0; i < ROUNDS; ++i) {
        double bh, bt;
        round_of(kernel_launch, bare, bare->q, &bh, &bt);
        round_of(fn, user, bare->q, &host[i], &total[i]);
        r[i] = total[i] / bt;
    }
    *host_us = median(host, ROUNDS);
    *total_us = median(total, ROUNDS);
    *ratio = median(r, ROUNDS);
}

typedef struct call {
    clnorm_plan *plan;
    clnorm_mode mode;
    clnorm_buffers bufs;
} call;

static void norm_call(void *user)
{
    call *c = user;
    clnorm_forward(c->plan, c->mode, &c->bufs, 0, NULL, NULL);
}

/* A buffer of count floats, each value. */
static cl_mem filled(clnorm_context *ctx, size_t count, float value)
{
    cl_int err;
    size_t bytes = count * sizeof(float);
    cl_mem m = clCreateBuffer(clnorm_context_cl(ctx), CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS)
        die("clCreateBuffer", "failed");
    clEnqueueFillBuffer(clnorm_context_queue(ctx), m, &value, sizeof value, 0, bytes, 0, NULL,
                        NULL);
    return m;
}

static void row(const char *name, double host, double total, double ratio)
{
    printf("| %-44s | %8.2f | %8.2f | %.2f |\n", name, host, total, ratio);
}

/* Sets the argument list of `floor_args` (see the top). */
static void set_floor_args(cl_kernel k, cl_mem m)
{
    cl_mem none = NULL;
    cl_ulong u = 1;
    cl_float f = 1.0f;
    cl_int i = 0;
    static const int buffers[] = {0, 2, 3, 4, 6, 7, 8, 9}, nulls[] = {1, 16, 17};
    for (size_t j = 0; j < COUNT(buffers); ++j)
        clSetKernelArg(k, (cl_uint)buffers[j], sizeof m, &m);
    for (size_t j = 0; j < COUNT(nulls); ++j)
        clSetKernelArg(k, (cl_uint)nulls[j], sizeof none, &none);
    for (cl_uint j = 10; j < 14; ++j)
        clSetKernelArg(k, j, sizeof u, &u);
    clSetKernelArg(k, 5, sizeof u, &u);
    clSetKernelArg(k, 14, sizeof f, &f);
    clSetKernelArg(k, 15, sizeof i, &i);
    clSetKernelArg(k, 18, sizeof i, &i);
    clSetKernelArg(k, 19, sizeof f, &f);
}

int main(int argc, char **argv)
{
    const char *device = NULL;
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "--device") == 0) {
        device = argv[2];
        first = 3;
    }
    static const char *const defaults[] = {"layer:forward-training:nchw:1x32x64",
                                           "rms:forward-training:nchw:1x4096x1",
                                           "layer:forward-training:nchw:8x2048x1"};
    clnorm_context *ctx;
    if (clnorm_context_create(device, &ctx) != CLNORM_SUCCESS)
        die("no device", clnorm_context_last_error(NULL));
    cl_command_queue q = clnorm_context_queue(ctx);
    const char *src =
        "__kernel void empty(__global float *p) { }\n"
        "__kernel void floor_args(__global float *a, __global float *b, __global float *c,\n"
        "    __global float *d, __global float *e, ulong f, __global float *g,\n"
        "    __global float *h, __global float *i, __global float *j, ulong k, ulong l,\n"
        "    ulong m, ulong n, float o, int p, __global float *q, __global float *r, int s,\n"
        "    float t) { }\n";
    cl_int err;
    cl_program prog = clCreateProgramWithSource(clnorm_context_cl(ctx), 1, &src, NULL, &err);
    if (err != CL_SUCCESS || clBuildProgram(prog, 0, NULL, "", NULL, NULL) != CL_SUCCESS)
        die("the empty kernels", "do not build");
    launch bare = {q, clCreateKernel(prog, "empty", &err)};
    launch floor = {q, clCreateKernel(prog, "floor_args", &err)};
    cl_mem dummy = filled(ctx, 16, 0.0f);
    clSetKernelArg(bare.k, 0, sizeof dummy, &dummy);
    set_floor_args(floor.k, dummy);
    printf("pipelined, %d calls a round, medians of %d rounds (us per call: enqueue alone / to "
           "completion; ÷ bare: per round)\n",
           CALLS, ROUNDS);
    printf("| %-44s | %8s | %8s | %s |\n|---|---|---|---|\n", "call", "enqueue", "total",
           "÷ bare launch");
    double host, total, ratio;
    measure(kernel_launch, &bare, &bare, &host, &total, &ratio);
    row("bare launch of an empty kernel", host, total, ratio);
    measure(kernel_launch, &floor, &bare, &host, &total, &ratio);
    row("empty kernel, the fused row kernel's arguments", host, total, ratio);
    int count = first < argc ? argc - first : (int)COUNT(defaults);
    for (int i = 0; i < count; ++i) {
        const char *text = first < argc ? argv[first + i] : defaults[i];
        problem p;
        char why[256];
        if (parse_problem(text, CLNORM_F32, &p, why, sizeof why))
            die(text, why);
        if (p.pass == PASS_BACKWARD)
            die(text, "launch-cost times forward calls");
        const clnorm_desc *d = &p.desc;
        call c;
        memset(&c, 0, sizeof c);
        c.mode = p.pass == PASS_INFERENCE ? CLNORM_INFERENCE : CLNORM_TRAINING;
        if (clnorm_plan_create(ctx, d, &c.plan) != CLNORM_SUCCESS)
            die(text, clnorm_context_last_error(ctx));
        size_t elements = d->n * d->c * d->d;
        c.bufs.x = filled(ctx, elements, 0.0f);
        c.bufs.y = filled(ctx, elements, 0.0f);
        /* every kind's parameters and statistics fit in these */
        c.bufs.gamma = filled(ctx, d->c * d->d, 1.0f);
        c.bufs.beta = filled(ctx, d->c * d->d, 0.0f);
        if (c.mode == CLNORM_TRAINING) {
            c.bufs.save_mean = filled(ctx, d->n * d->c, 0.0f);
            c.bufs.save_invstd = filled(ctx, d->n * d->c, 0.0f);
        }
        if (d->kind == CLNORM_BATCH) {
            c.bufs.running_mean = filled(ctx, d->c, 0.0f);
            c.bufs.running_var = filled(ctx, d->c, 1.0f);
        }
        if (clnorm_forward(c.plan, c.mode, &c.bufs, 0, NULL, NULL) != CLNORM_SUCCESS)
            die(text, clnorm_context_last_error(ctx));
        measure(norm_call, &c, &bare, &host, &total, &ratio);
        row(text, host, total, ratio);
        cl_mem *mems[] = {&c.bufs.x,         &c.bufs.y,           &c.bufs.gamma,
                          &c.bufs.beta,      &c.bufs.save_mean,   &c.bufs.save_invstd,
                          &c.bufs.running_mean, &c.bufs.running_var};
        clFinish(q);
        for (size_t j = 0; j < COUNT(mems); ++j)
            if (*mems[j])
                clReleaseMemObject(*mems[j]);
        clnorm_plan_release(c.plan);
    }
    clReleaseMemObject(dummy);
    clReleaseKernel(bare.k);
    clReleaseKernel(floor.k);
    clReleaseProgram(prog);
    clnorm_context_release(ctx);
    return 0;
}
