/*
 * launch-cost: what a small normalization costs when calls are pipelined (enqueued back to
 * back, one wait at the end), against a bare launch of an empty kernel on the same queue, and
 * how much of it is the host's (the time to enqueue alone).
 *
 *   launch-cost [--device SPEC] [PROBLEM...]   (forward-training problems; default: LAYER
 *                                              1x32x64, RMS 1x4096x1, LAYER 8x2048x1; f32)
 */
#include <clnorm/clnorm.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "problem.h"

#define CALLS 2000

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

static double median5(double *v) /* sorts v */
{
    for (int i = 1; i < 5; ++i)
        for (int j = i; j > 0 && v[j] < v[j - 1]; --j) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v[2];
}

/* Median over 5 rounds of (enqueue time, total time) per call, in microseconds. */
typedef void (*enqueue_fn)(void *user);

static void measure(enqueue_fn fn, void *user, cl_command_queue q, double *host_us,
                    double *total_us)
{
    double host[5], total[5];
    for (int round = 0; round < 5; ++round) {
        clFinish(q);
        double t0 = now_s();
        for (int i = 0; i < CALLS; ++i)
            fn(user);
        double t1 = now_s();
        clFinish(q);
        double t2 = now_s();
        host[round] = (t1 - t0) / CALLS * 1e6;
        total[round] = (t2 - t0) / CALLS * 1e6;
    }
    *host_us = median5(host);
    *total_us = median5(total);
}

typedef struct bare {
    cl_command_queue q;
    cl_kernel k;
} bare;

static void bare_launch(void *user)
{
    bare *b = user;
    size_t one = 1;
    clEnqueueNDRangeKernel(b->q, b->k, 1, NULL, &one, &one, 0, NULL, NULL);
}

typedef struct call {
    clnorm_plan *plan;
    clnorm_buffers bufs;
} call;

static void norm_call(void *user)
{
    call *c = user;
    clnorm_forward(c->plan, CLNORM_TRAINING, &c->bufs, 0, NULL, NULL);
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
    const char *src = "__kernel void empty(__global float *p) { }";
    cl_int err;
    cl_program prog = clCreateProgramWithSource(clnorm_context_cl(ctx), 1, &src, NULL, &err);
    if (err != CL_SUCCESS || clBuildProgram(prog, 0, NULL, "", NULL, NULL) != CL_SUCCESS)
        die("the empty kernel", "does not build");
    bare b = {q, clCreateKernel(prog, "empty", &err)};
    cl_mem dummy = clCreateBuffer(clnorm_context_cl(ctx), CL_MEM_READ_WRITE, 64, NULL, &err);
    clSetKernelArg(b.k, 0, sizeof dummy, &dummy);
    double bare_host, bare_total;
    measure(bare_launch, &b, q, &bare_host, &bare_total);
    printf("pipelined, %d calls, median of 5 rounds (us per call: enqueue alone / to completion)\n",
           CALLS);
    printf("| %-40s | %8s | %8s | %s |\n|---|---|---|---|\n", "call", "enqueue", "total",
           "÷ bare launch");
    printf("| %-40s | %8.2f | %8.2f | 1.00 |\n", "bare launch of an empty kernel", bare_host,
           bare_total);
    int count = first < argc ? argc - first : (int)COUNT(defaults);
    for (int i = 0; i < count; ++i) {
        const char *text = first < argc ? argv[first + i] : defaults[i];
        problem p;
        char why[256];
        if (parse_problem(text, CLNORM_F32, &p, why, sizeof why))
            die(text, why);
        call c;
        memset(&c, 0, sizeof c);
        if (clnorm_plan_create(ctx, &p.desc, &c.plan) != CLNORM_SUCCESS)
            die(text, clnorm_context_last_error(ctx));
        size_t bytes = p.desc.n * p.desc.c * p.desc.d * sizeof(float);
        c.bufs.x = clCreateBuffer(clnorm_context_cl(ctx), CL_MEM_READ_WRITE, bytes, NULL, &err);
        c.bufs.y = clCreateBuffer(clnorm_context_cl(ctx), CL_MEM_READ_WRITE, bytes, NULL, &err);
        float zero = 0.0f;
        clEnqueueFillBuffer(q, c.bufs.x, &zero, sizeof zero, 0, bytes, 0, NULL, NULL);
        if (clnorm_forward(c.plan, CLNORM_TRAINING, &c.bufs, 0, NULL, NULL) != CLNORM_SUCCESS)
            die(text, clnorm_context_last_error(ctx));
        double host, total;
        measure(norm_call, &c, q, &host, &total);
        printf("| %-40s | %8.2f | %8.2f | %.2f |\n", text, host, total, total / bare_total);
        clReleaseMemObject(c.bufs.x);
        clReleaseMemObject(c.bufs.y);
        clnorm_plan_release(c.plan);
    }
    clReleaseMemObject(dummy);
    clReleaseKernel(b.k);
    clReleaseProgram(prog);
    clnorm_context_release(ctx);
    return 0;
}
