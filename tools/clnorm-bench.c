/*
 * clnorm-bench: the project's benchmark (DESIGN.md section 8).
 *
 * Each problem is timed as the application sees it: wall clock from enqueue to clFinish, the
 * median of repeated calls after warm-up. Its yardstick is the library's own copy kernel moving
 * the same minimal bytes on the same device in the same run, so SOL = copy time / operation time
 * means the same thing on a loaded laptop and on an idle GPU. Every result is also checked
 * against the float64 reference of the tests: a fast wrong kernel shows up here as a failure,
 * not as a good number.
 *
 * It links the static library for two internals (src/internal.h): the copy kernel's program,
 * and a prepared plan's apply chunk and local size, so that the copy runs in the work layout
 * the plans choose for this device rather than in one this file would have to keep in step.
 */
#include "internal.h"
#include "reference.h"
#include "bench.h"
#include "problem.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_REPEAT 20
#define MIN_AUTO_REPEAT 5
#define AUTO_BUDGET_S 2.0 /* timed seconds per problem, when --repeat does not say */
#define WARMUP 2          /* untimed: PoCL compiles a kernel for its local size at first use */
#define SEED 0x9e3779b97f4a7c15ull
#define GRAD_TOL 1e-4 /* relative L2 error of float results of backward */



typedef enum row_status { ROW_OK, ROW_FAIL, ROW_UNSUPPORTED, ROW_ERROR } row_status;
static const char *const status_names[] = {"ok", "fail", "unsupported", "error"};

typedef struct result {
    row_status status;
    double bytes;            /* minimal bytes of the operation */
    double ms, copy_ms;      /* medians */
    double stream_ms;        /* the streaming copy's median (copy_stream) */
    double max_err, err_tol; /* largest absolute error; largest error / tolerance */
    double unfused_ms;       /* epilogues: the unfused sequence's median, 0 when none */
    int stream;              /* the plan stores y / dx with non-temporal stores */
    double other_ms;         /* --ab: the other plan's median, 0 when not timed */
    double other_diff;       /* --ab kernels=DIR: largest |difference| of its output from ours */
    int repeats;
    char message[1024]; /* why it failed, or where the largest error is */
} result;

/* The elementwise kernels of an unfused epilogue, per storage type (built at first use). */
typedef struct unfused_kernels {
    cl_program program;
    cl_kernel add, act, act_grad;
} unfused_kernels;

typedef struct bench {
    clnorm_context *ctx;
    cl_command_queue queue;
    cl_kernel copy, copy_stream;
    unfused_kernels unfused[3];
    char device[600];
    const char *device_type;
    int repeat; /* 0: choose per problem */
    int hot;    /* --hot: each timed call follows an untimed one of the same operation */
    /* --ab: also time the same call through another plan, alternating with it: the other
     * streaming-store choice (ab_stream), or kernels from the folder ab_kernels, built in
     * ab_ctx (a second context on the same queue, whose programs are its own) */
    int ab_stream;
    const char *ab_kernels;
    clnorm_tuning ab_tuning; /* --ab local=, block=, chunk=, fused=: the other plan's (0: ours) */
    clnorm_context *ab_ctx;
    int json;
    int progress_tty;
} bench;

static void usage(FILE *out)
{
    fputs("usage: clnorm-bench [--device SPEC] [--dtype f32|f16|bf16|u8|u16] [--repeat N] [--hot]\n"
          "                    [--ab WHAT] [--json] [PROBLEM...]\n"
          "\n"
          "Times clnorm's forward and backward calls against the device's own copy speed and\n"
          "checks every result against a float64 reference.\n"
          "\n"
          "  PROBLEM        kind:pass:layout:NxCxD[/G][:T[-Y]][:EPILOGUE]\n"
          "                 e.g. group:forward-training:nhwc:8x256x1024/32\n"
          "                      batch:forward-inference:nhwc:1x3x2073600:u8-f32\n"
          "                      batch:forward-training:nchw:32x64x3136:add-relu\n"
          "                   kind    batch layer instance group rms\n"
          "                   pass    forward-training forward-inference backward\n"
          "                   layout  nchw nhwc\n"
          "                   /G      groups, for group only (divides C)\n"
          "                   T-Y     storage of x and of y (f32 f16 bf16 u8 u16; Y: as x\n"
          "                           when absent); SOL counts x's and y's own bytes\n"
          "                   EPILOGUE  fused epilogue, parts joined by '-': skip (x + skip\n"
          "                           normalized, sum written), add (a residual added\n"
          "                           after), relu leaky_relu silu gelu gelu_tanh; SOL\n"
          "                           counts those tensors too, and the row also times the\n"
          "                           unfused sequence (separate elementwise kernels around\n"
          "                           the plain normalization), alternating with the fused\n"
          "                           call\n"
          "                 None: the default suite, every kind, pass and layout (--list).\n"
          "  --device SPEC  P:D, cpu, gpu, accelerator or part of \"platform / device\"\n"
          "                 (default: $CLNORM_DEVICE, else the first GPU, else the first device)\n"
          "  --dtype T      storage of x, y, dy, dx (default f32)\n"
          "  --repeat N     timed calls per problem, median reported (default 20, down to 5\n"
          "                 for problems slower than 0.1 s)\n"
          "  --ab WHAT      also time the same call through another plan, alternating with\n"
          "                 it; the row prints its time and the ratio. WHAT: stream (the\n"
          "                 other choice of non-temporal stores for y / dx, checked to give\n"
          "                 the same bits) or kernels=DIR (kernel sources from DIR, as\n"
          "                 CLNORM_KERNEL_DIR takes them; the row prints how far its output\n"
          "                 is from the checked one), or local=N, block=N, chunk=N, fused=N\n"
          "                 (that tuning value instead of the device's; fused: the longest\n"
          "                 group the one-pass CPU kernels take, in elements)\n"
          "  --hot          time each call right after an untimed call of the same operation\n"
          "                 (its data in cache as a network's previous layer leaves it), and\n"
          "                 each copy likewise; default: after the other copies and the\n"
          "                 operation, which move the problem's bytes through the caches\n"
          "  --json         one JSON object per problem and line instead of the table\n"
          "  --list         print the default suite and exit\n"
          "  --tune         measure launch parameters (statistics block, apply chunk,\n"
          "                 work-group size) on the PROBLEMs (default: four forward problems\n"
          "                 of 16+ MiB) and save the fastest for this device beside the binary\n"
          "                 cache, where every later plan on it finds them\n"
          "  --help         print this text and exit\n"
          "\n"
          "Columns: ms is the median wall time of one call, enqueue to clFinish; GB/s counts the\n"
          "minimal bytes (forward: x read and y written; backward: x and dy read, dx written);\n"
          "copy GB/s is the library's copy kernel moving the same bytes; SOL = copy time / time;\n"
          "SOL-nt = the same for a copy with non-temporal stores where the device compiler has\n"
          "them (its GB/s in the JSON as stream_copy_gbps; without them, the plain copy again);\n"
          "max_err is the largest absolute error against the reference and err/tol the largest\n"
          "error over its tolerance (backward: relative L2 errors of dx, dgamma and dbeta over\n"
          "theirs).\n"
          "\n"
          "Exit status: 0 when every result is within tolerance, 1 when one is not or a call\n"
          "failed (unsupported calls do not count), 2 for bad arguments.\n",
          out);
}

static _Noreturn void bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("clnorm-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\nTry 'clnorm-bench --help'.\n", stderr);
    va_end(ap);
    exit(2);
}

/* ---- data ------------------------------------------------------------------------------ */

typedef struct rng {
    uint64_t state;
    double spare;
    int has_spare;
} rng;

static uint64_t rng_next(rng *g) /* splitmix64 */
{
    uint64_t z = (g->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(rng *g) { return (double)(rng_next(g) >> 11) * 0x1p-53; }

static double rng_normal(rng *g) /* Box-Muller, both values used */
{
    if (g->has_spare) {
        g->has_spare = 0;
        return g->spare;
    }
    double u = 1.0 - rng_uniform(g), v = rng_uniform(g);
    double r = sqrt(-2.0 * log(u)), t = 6.283185307179586 * v;
    g->spare = r * sin(t);
    g->has_spare = 1;
    return r * cos(t);
}

/* total standard normal values in the dtype's storage (integers: spread over their range,
 * mean at mid-range and 6 standard deviations across it), generated a block at a time so that
 * no float copy of the whole tensor is needed. */
static void *random_tensor(clnorm_dtype dtype, size_t total, rng *g)
{
    size_t esize = clnorm_dtype_size(dtype);
    double most = ref_integer_most(dtype);
    unsigned char *out = malloc(total * esize);
    float block[4096];
    if (!out)
        return NULL;
    for (size_t i = 0; i < total; i += COUNT(block)) {
        size_t k = total - i < COUNT(block) ? total - i : COUNT(block);
        for (size_t j = 0; j < k; ++j)
            block[j] = (float)(most > 0 ? most / 2 + most / 6 * rng_normal(g) : rng_normal(g));
        ref_store(dtype, block, out + i * esize, k);
    }
    return out;
}

static double *to_double(clnorm_dtype dtype, const void *stored, size_t total)
{
    double *out = malloc((total ? total : 1) * sizeof *out);
    if (out)
        ref_load(dtype, stored, out, total);
    return out;
}

/* ---- device ---------------------------------------------------------------------------- */

static void set_message(result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_message(result *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
}

/* A copy of data, or (data NULL) bytes of 0xff, a NaN in every dtype, so that an element the
 * call forgets to write fails the check. */
static cl_mem make_buffer(const bench *B, const void *data, size_t bytes, const char *what,
                          result *r)
{
    cl_int err;
    cl_mem buf = clCreateBuffer(clnorm_context_cl(B->ctx),
                                CL_MEM_READ_WRITE | (data ? CL_MEM_COPY_HOST_PTR : 0), bytes,
                                (void *)data, &err);
    if (err != CL_SUCCESS) {
        set_message(r, "clCreateBuffer (%s, %zu bytes): %s", what, bytes,
                    clnorm_cl_error_name(err));
        return NULL;
    }
    if (!data) {
        unsigned char pattern = 0xff;
        err = clEnqueueFillBuffer(B->queue, buf, &pattern, 1, 0, bytes, 0, NULL, NULL);
        if (err == CL_SUCCESS)
            err = clFinish(B->queue);
        if (err != CL_SUCCESS) {
            set_message(r, "clEnqueueFillBuffer (%s): %s", what, clnorm_cl_error_name(err));
            clReleaseMemObject(buf);
            return NULL;
        }
    }
    return buf;
}

static int read_buffer(const bench *B, cl_mem buf, void *out, size_t bytes, const char *what,
                       result *r)
{
    cl_int err = clEnqueueReadBuffer(B->queue, buf, CL_TRUE, 0, bytes, out, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        set_message(r, "clEnqueueReadBuffer (%s): %s", what, clnorm_cl_error_name(err));
        return -1;
    }
    return 0;
}

static void release_buffers(clnorm_buffers *b)
{
    cl_mem *all[] = {&b->x,         &b->y,           &b->dy,           &b->dx,
                     &b->gamma,     &b->beta,        &b->dgamma,       &b->dbeta,
                     &b->save_mean, &b->save_invstd, &b->running_mean, &b->running_var,
                     &b->skip,      &b->sum,         &b->residual,     &b->dresidual};
    for (size_t i = 0; i < COUNT(all); ++i) {
        if (*all[i])
            clReleaseMemObject(*all[i]);
        *all[i] = NULL;
    }
}

/* ---- timing ---------------------------------------------------------------------------- */

typedef enum op_kind { OP_FORWARD, OP_BACKWARD, OP_COPY, OP_KERNEL } op_kind;

typedef struct op {
    op_kind kind;
    clnorm_plan *plan;
    clnorm_mode mode;
    const clnorm_buffers *bufs;
    size_t global, local; /* OP_COPY, OP_KERNEL */
    cl_kernel kernel;     /* OP_KERNEL, its arguments set */
    const struct op *next; /* enqueued after this one, before the wait: a sequence */
} op;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One call (or sequence of calls), waited for. */
static clnorm_status op_run(const bench *B, const op *first, result *r)
{
    clnorm_status s = CLNORM_SUCCESS;
    cl_int err = CL_SUCCESS;
    for (const op *o = first; o && !s && !err; o = o->next) {
        switch (o->kind) {
        case OP_FORWARD: s = clnorm_forward(o->plan, o->mode, o->bufs, 0, NULL, NULL); break;
        case OP_BACKWARD: s = clnorm_backward(o->plan, o->mode, o->bufs, 0, NULL, NULL); break;
        case OP_COPY:
        case OP_KERNEL:
            err = clEnqueueNDRangeKernel(B->queue, o->kind == OP_COPY ? B->copy : o->kernel, 1,
                                         NULL, &o->global, &o->local, 0, NULL, NULL);
            break;
        }
        if (s != CLNORM_SUCCESS)
            set_message(r, "%s: %s: %s",
                        o->kind == OP_FORWARD ? "clnorm_forward" : "clnorm_backward",
                        clnorm_status_string(s), clnorm_context_last_error(B->ctx));
        else if (err != CL_SUCCESS)
            set_message(r, "clEnqueueNDRangeKernel (%s): %s",
                        o->kind == OP_COPY ? "copy" : "an unfused epilogue's kernel",
                        clnorm_cl_error_name(err));
    }
    if (s)
        return s;
    if (err != CL_SUCCESS)
        return CLNORM_ERROR_OPENCL;
    err = clFinish(B->queue);
    if (err != CL_SUCCESS) {
        set_message(r, "clFinish: %s", clnorm_cl_error_name(err));
        return CLNORM_ERROR_OPENCL;
    }
    return CLNORM_SUCCESS;
}

/* One timed call of o (in ms); with --hot after an untimed one, so that it finds its data
 * where its own previous call left it. */
static clnorm_status timed_run(const bench *B, const op *o, double *ms, result *r)
{
    clnorm_status s;
    if (B->hot && (s = op_run(B, o, r)))
        return s;
    double t0 = now_s();
    s = op_run(B, o, r);
    *ms = (now_s() - t0) * 1e3;
    return s;
}

/* One round: o, then each of y[0..ny-1] (times[k] its time), timed alike. y[0] and y[1] are
 * the copies; each later one (the unfused sequence, the other plan) is followed by both again,
 * untimed, so that every timed call of the problem's own data, o's as well as theirs, comes
 * right after a copy: in cold mode, one coming right after another on the same buffers had
 * found the other's leftovers in cache (an A/B of a plan against itself, kernels alike,
 * measured 1.12-1.26 on BATCH 32x64x3136 training before). */
static clnorm_status op_round(const bench *B, const op *o, const op *y, int ny, double *o_ms,
                              double *times, result *r)
{
    double skip;
    clnorm_status s = timed_run(B, o, o_ms, r);
    for (int k = 0; k < ny && !s; ++k) {
        s = timed_run(B, &y[k], &times[k], r);
        for (int j = 0; k >= 2 && j < 2 && !s; ++j)
            s = timed_run(B, &y[j], &skip, r);
    }
    return s;
}

/* Median milliseconds of *repeats calls of o after WARMUP untimed ones, each followed by one
 * call of each yardstick (y[0..ny-1]), timed alike (op_round): they alternate, so that a
 * machine whose speed drifts (other work, clocks, caches) slows all the same. *repeats 0 means
 * choose from the warm-up's speed, so that a slow problem does not hold the suite up for
 * minutes. */
static clnorm_status op_time(const bench *B, const op *o, const op *y, int ny, int *repeats,
                             double *ms, double *y_ms, result *r)
{
    double last = 0, skip[4];
    clnorm_status s;
    for (int i = 0; i < WARMUP; ++i)
        if ((s = op_round(B, o, y, ny, &last, skip, r)))
            return s;
    last *= 1e-3;
    int n = *repeats;
    if (n == 0) {
        n = DEFAULT_REPEAT;
        if (last * n > AUTO_BUDGET_S)
            n = (int)(AUTO_BUDGET_S / last);
        if (n < MIN_AUTO_REPEAT)
            n = MIN_AUTO_REPEAT;
    }
    double *t = malloc((size_t)(1 + ny) * (size_t)n * sizeof *t);
    if (!t) {
        set_message(r, "out of host memory");
        return CLNORM_ERROR_OUT_OF_MEMORY;
    }
    s = CLNORM_SUCCESS;
    for (int i = 0; i < n && !s; ++i) {
        double times[4];
        s = op_round(B, o, y, ny, &t[i], times, r);
        for (int k = 0; k < ny && !s; ++k)
            t[(size_t)(k + 1) * (size_t)n + (size_t)i] = times[k];
    }
    if (!s) {
        *ms = median(t, n);
        for (int k = 0; k < ny; ++k)
            y_ms[k] = median(t + (size_t)(k + 1) * (size_t)n, n);
        *repeats = n;
    }
    free(t);
    return s;
}

/*
 * o timed against the speed of light: the copy kernel reading and writing bytes/2 each, one
 * work-item per chunk, with the chunk and local size a float32 plan of that many elements gets
 * for its apply pass.
 */
static clnorm_status time_against_copy(bench *B, const op *o, const op *u, const op *alt,
                                       double bytes, int *repeats, double *ms, double *copy_ms,
                                       double *stream_ms, double *u_ms, double *alt_ms,
                                       result *r)
{
    size_t floats = ((size_t)bytes / 2 + sizeof(float) - 1) / sizeof(float);
    clnorm_desc yard = {
        .kind = CLNORM_BATCH, .layout = CLNORM_NCHW, .dtype = CLNORM_F32, .n = 1, .c = 1,
        .d = floats, .groups = 0, .eps = EPS, .momentum = MOMENTUM, .y_dtype = CLNORM_Y_AS_X
    };
    clnorm_plan *plan = NULL;
    /* prepared, not built: only its apply shape is wanted */
    clnorm_status s = clnorm_plan_prepare(B->ctx, &yard, &plan);
    if (s) {
        set_message(r, "clnorm_plan_prepare (copy yardstick): %s: %s", clnorm_status_string(s),
                    clnorm_context_last_error(B->ctx));
        return s;
    }
    cl_ulong total = floats, chunk = plan->apply_chunk;
    size_t local = plan->apply_local; /* the copy runs in apply's exact launch shape */
    clnorm_plan_release(plan);
    size_t items = (floats + chunk - 1) / chunk;
    size_t global = (items + local - 1) / local * local;
    /* the yardsticks, the unfused sequence and the other plan when there are: timed in turn
     * with o */
    op ys[4] = {{.kind = OP_COPY, .global = global, .local = local},
                {.kind = OP_KERNEL, .kernel = B->copy_stream, .global = global, .local = local}};
    int ny = 2, iu = 0, ialt = 0;
    if (u) {
        iu = ny;
        ys[ny++] = *u;
    }
    if (alt) {
        ialt = ny;
        ys[ny++] = *alt;
    }

    cl_mem src = make_buffer(B, NULL, floats * sizeof(float), "copy source", r);
    cl_mem dst = src ? make_buffer(B, NULL, floats * sizeof(float), "copy destination", r) : NULL;
    if (!dst) {
        if (src)
            clReleaseMemObject(src);
        return CLNORM_ERROR_OPENCL;
    }
    cl_int err = CL_SUCCESS;
    cl_kernel kernels[2] = {B->copy, B->copy_stream};
    for (int k = 0; k < 2 && !err; ++k)
        if ((err = clSetKernelArg(kernels[k], 0, sizeof src, &src)) ||
            (err = clSetKernelArg(kernels[k], 1, sizeof dst, &dst)) ||
            (err = clSetKernelArg(kernels[k], 2, sizeof total, &total)) ||
            (err = clSetKernelArg(kernels[k], 3, sizeof chunk, &chunk)))
            break;
    if (err) {
        set_message(r, "clSetKernelArg (copy): %s", clnorm_cl_error_name(err));
        s = CLNORM_ERROR_OPENCL;
    } else {
        double y_ms[4];
        s = op_time(B, o, ys, ny, repeats, ms, y_ms, r);
        if (!s) {
            *copy_ms = y_ms[0];
            *stream_ms = y_ms[1];
            if (u)
                *u_ms = y_ms[iu];
            if (alt)
                *alt_ms = y_ms[ialt];
        }
    }
    clReleaseMemObject(src);
    clReleaseMemObject(dst);
    return s;
}

/* ---- checks ---------------------------------------------------------------------------- */

/*
 * Forward, element by element, with the tolerance of DESIGN.md section 7 as the tests use it:
 * 16 * 2^-23 * (max|x| of the group (or |running_mean|) + |x|) * |invstd * gamma|, plus the
 * storage type's rounding of y.
 */
static int check_forward(const clnorm_desc *d, int use_running, const float *running_mean,
                         const double *x, const double *got, const double *want,
                         const double *scale, result *r)
{
    clnorm_dtype yt = clnorm_y_storage(d);
    double most = ref_integer_most(yt);
    size_t groups = ref_groups(d);
    double *gmax = calloc(groups, sizeof *gmax);
    if (!gmax)
        return -1;
    for (size_t n = 0; n < d->n; ++n)
        for (size_t c = 0; c < d->c; ++c)
            for (size_t s = 0; s < d->d; ++s) {
                size_t g = ref_group(d, n, c, s);
                double v = fabs(x[ref_offset(d, n, c, s)]);
                if (v > gmax[g])
                    gmax[g] = v;
            }
    double factor = 16.0 * ldexp(1, -23), u = ref_unit_roundoff(yt) + ldexp(1, -23);
    double worst = 0, max_err = 0, worst_tol = 0;
    size_t worst_i = 0;
    for (size_t n = 0; n < d->n; ++n)
        for (size_t c = 0; c < d->c; ++c)
            for (size_t s = 0; s < d->d; ++s) {
                size_t i = ref_offset(d, n, c, s);
                double mag = use_running ? fabs(running_mean[c]) : gmax[ref_group(d, n, c, s)];
                double tol = factor * (mag + fabs(x[i])) * scale[i] + u * fabs(want[i]) + 1e-30;
                double err = fabs(got[i] - want[i]);
                if (isnan(want[i]))
                    continue; /* random normal data never gives one; nothing to compare */
                if (most > 0) {
                    /* integer y: the rounding and saturation of a value within tol of want */
                    double lo = ref_round_sat(want[i] - tol, most);
                    double hi = ref_round_sat(want[i] + tol, most);
                    err = got[i] < lo ? lo - got[i] : got[i] > hi ? got[i] - hi : 0;
                    tol = 0.5; /* err: whole steps beyond the allowed range; one fails */
                }
                if (isnan(err))
                    err = INFINITY;
                if (err > max_err)
                    max_err = err;
                if (err / tol > worst) {
                    worst = err / tol;
                    worst_i = i;
                    worst_tol = tol;
                }
            }
    r->max_err = max_err;
    r->err_tol = worst;
    if (worst > 0)
        set_message(r, "y[%zu] = %.9g, want %.9g (tolerance %.3g)", worst_i, got[worst_i],
                    want[worst_i], worst_tol);
    free(gmax);
    return 0;
}

/* ||got - want|| / ||want||; *max_abs gets the largest element difference. */
static double relative_l2(const double *got, const double *want, size_t count, double *max_abs)
{
    double num = 0, den = 0, m = 0;
    for (size_t i = 0; i < count; ++i) {
        double e = fabs(got[i] - want[i]);
        if (isnan(e))
            e = INFINITY;
        m = e > m ? e : m;
        num += e * e;
        den += want[i] * want[i];
    }
    if (max_abs)
        *max_abs = m;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static double *float_to_double(const float *in, size_t count)
{
    double *out = malloc((count ? count : 1) * sizeof *out);
    for (size_t i = 0; out && i < count; ++i)
        out[i] = in[i];
    return out;
}

/* ---- the unfused sequence of an epilogue ------------------------------------------------ */

/*
 * What an epilogue replaces, as a framework runs it: elementwise kernels in x's storage around
 * the plain normalization, in the copy kernel's chunked shape, on the library's loads, stores
 * and activations (common.clh). Forward: [sum = x + skip], the normalization of h into z,
 * [y = act(z + residual)]; backward: [dz = dy * act'(z), z kept from forward], the
 * normalization's backward of (h, dz); the adds' gradients cost nothing.
 */
static const char unfused_source[] =
    "__kernel void unfused_add(__global const store_t *a, __global const store_t *b,\n"
    "                          __global ystore_t *out, ulong total, ulong chunk)\n"
    "{\n"
    "    ulong i = get_global_id(0) * chunk;\n"
    "    if (i >= total) return;\n"
    "    ulong end = min(total, i + chunk);\n"
    "    for (; i + 8 <= end; i += 8) STORE8(LOAD8(a, i) + LOAD8(b, i), out, i);\n"
    "    for (; i < end; ++i) STORE1(LOAD1(a, i) + LOAD1(b, i), out, i);\n"
    "}\n"
    "__kernel void unfused_act(__global const store_t *z, __global const store_t *r,\n"
    "                          __global ystore_t *y, ulong total, ulong chunk, int act,\n"
    "                          float alpha)\n"
    "{\n"
    "    ulong i = get_global_id(0) * chunk;\n"
    "    if (i >= total) return;\n"
    "    ulong end = min(total, i + chunk);\n"
    "    for (; i + 8 <= end; i += 8)\n"
    "        STORE8(act8(LOAD8(z, i) + (r ? LOAD8(r, i) : (float8)0.0f), act, alpha), y, i);\n"
    "    for (; i < end; ++i)\n"
    "        STORE1(act1(LOAD1(z, i) + (r ? LOAD1(r, i) : 0.0f), act, alpha), y, i);\n"
    "}\n"
    "__kernel void unfused_act_grad(__global const store_t *dy, __global const store_t *z,\n"
    "                               __global ystore_t *dz, ulong total, ulong chunk, int act,\n"
    "                               float alpha)\n"
    "{\n"
    "    ulong i = get_global_id(0) * chunk;\n"
    "    if (i >= total) return;\n"
    "    ulong end = min(total, i + chunk);\n"
    "    for (; i + 8 <= end; i += 8) STORE8(LOAD8(dy, i) * dact8(LOAD8(z, i), act, alpha), dz, i);\n"
    "    for (; i < end; ++i) STORE1(LOAD1(dy, i) * dact1(LOAD1(z, i), act, alpha), dz, i);\n"
    "}\n";

/* The unfused kernels for x's storage dtype (built once per run). */
static const unfused_kernels *unfused_get(bench *B, clnorm_dtype dtype, result *r)
{
    unfused_kernels *u = &B->unfused[dtype];
    if (u->act_grad)
        return u;
    char *common = NULL, options[160];
    size_t size = 0;
    clnorm_status s = clnorm_kernel_source_read(B->ctx, "common.clh", &common, &size);
    if (s) {
        set_message(r, "the unfused kernels: %s", clnorm_context_last_error(B->ctx));
        return NULL;
    }
    const char *sources[] = {common, unfused_source};
    size_t sizes[] = {size, sizeof unfused_source - 1};
    cl_int err;
    u->program = clCreateProgramWithSource(clnorm_context_cl(B->ctx), 2, sources, sizes, &err);
    free(common);
    snprintf(options, sizeof options, "-cl-std=CL1.2 -DCLNORM_DTYPE=%d -DCLNORM_RT=8%s",
             (int)dtype,
             dtype == CLNORM_BF16 && B->ctx->info.little_endian ? " -DCLNORM_LITTLE_ENDIAN=1"
                                                                : "");
    if (err == CL_SUCCESS)
        err = clBuildProgram(u->program, 1, &B->ctx->device, options, NULL, NULL);
    if (err == CL_SUCCESS)
        u->add = clCreateKernel(u->program, "unfused_add", &err);
    if (err == CL_SUCCESS)
        u->act = clCreateKernel(u->program, "unfused_act", &err);
    if (err == CL_SUCCESS)
        u->act_grad = clCreateKernel(u->program, "unfused_act_grad", &err);
    if (err != CL_SUCCESS) {
        set_message(r, "building the unfused kernels: %s", clnorm_cl_error_name(err));
        return NULL;
    }
    return u;
}

static void unfused_release(bench *B)
{
    for (size_t i = 0; i < COUNT(B->unfused); ++i) {
        unfused_kernels *u = &B->unfused[i];
        cl_kernel k[] = {u->add, u->act, u->act_grad};
        for (size_t j = 0; j < COUNT(k); ++j)
            if (k[j])
                clReleaseKernel(k[j]);
        if (u->program)
            clReleaseProgram(u->program);
    }
}

/* An elementwise step of the sequence: kernel(a, b, out, total, chunk[, act, alpha]) over
 * total elements, in the copy kernel's (apply's) launch shape. */
static int unfused_step(const bench *B, op *o, cl_kernel kernel, cl_mem a, cl_mem b, cl_mem out,
                        const clnorm_plan *plan, const clnorm_desc *d, result *r)
{
    cl_ulong total = d->n * d->c * d->d, chunk = plan->apply_chunk;
    cl_int act = (cl_int)d->activation;
    size_t items = (total + chunk - 1) / chunk, local = plan->apply_local;
    cl_int err;
    if ((err = clSetKernelArg(kernel, 0, sizeof a, &a)) ||
        (err = clSetKernelArg(kernel, 1, sizeof b, &b)) ||
        (err = clSetKernelArg(kernel, 2, sizeof out, &out)) ||
        (err = clSetKernelArg(kernel, 3, sizeof total, &total)) ||
        (err = clSetKernelArg(kernel, 4, sizeof chunk, &chunk)) ||
        (kernel != B->unfused[d->dtype].add &&
         ((err = clSetKernelArg(kernel, 5, sizeof act, &act)) ||
          (err = clSetKernelArg(kernel, 6, sizeof d->activation_alpha, &d->activation_alpha))))) {
        set_message(r, "clSetKernelArg (unfused): %s", clnorm_cl_error_name(err));
        return -1;
    }
    *o = (op){.kind = OP_KERNEL, .kernel = kernel, .local = local,
              .global = (items + local - 1) / local * local};
    return 0;
}

/* The unfused sequence of one problem, on the fused call's buffers b. */
typedef struct unfused_seq {
    clnorm_plan *plan;   /* the plain normalization */
    clnorm_buffers bufs; /* its buffers */
    cl_mem h, z, dz;     /* what the sequence keeps between its kernels */
    op ops[3];
} unfused_seq;

static void unfused_free(unfused_seq *q)
{
    cl_mem mems[] = {q->h, q->z, q->dz};
    for (size_t i = 0; i < COUNT(mems); ++i)
        if (mems[i])
            clReleaseMemObject(mems[i]);
    clnorm_plan_release(q->plan);
}

/* Builds the sequence (and, for backward, runs forward's part once for the h and z it keeps);
 * returns its first op, or NULL with r->message set. */
static const op *unfused_make(bench *B, const problem *p, const clnorm_buffers *b,
                              clnorm_mode mode, unfused_seq *q, result *r)
{
    clnorm_desc d = p->desc;
    int backward = p->pass == PASS_BACKWARD, act = d.activation != CLNORM_ACTIVATION_NONE;
    size_t bytes = d.n * d.c * d.d * clnorm_dtype_size(d.dtype);
    const unfused_kernels *u = unfused_get(B, d.dtype, r);
    d.activation = CLNORM_ACTIVATION_NONE;
    clnorm_status s;
    if (!u)
        return NULL;
    if ((s = clnorm_plan_create(B->ctx, &d, &q->plan))) {
        set_message(r, "clnorm_plan_create (unfused): %s", clnorm_context_last_error(B->ctx));
        return NULL;
    }
    if ((p->skip && !(q->h = make_buffer(B, NULL, bytes, "h", r))) ||
        ((act || (p->add && !backward)) && !(q->z = make_buffer(B, NULL, bytes, "z", r))) ||
        (backward && act && !(q->dz = make_buffer(B, NULL, bytes, "dz", r))))
        return NULL;
    q->bufs = *b;
    q->bufs.skip = q->bufs.sum = q->bufs.residual = q->bufs.dresidual = NULL;
    q->bufs.x = p->skip ? q->h : b->x;
    const clnorm_desc *pd = &p->desc;
    int n = 0;
    if (!backward) {
        if (p->skip && unfused_step(B, &q->ops[n++], u->add, b->x, b->skip, q->h, q->plan, pd, r))
            return NULL;
        if (q->z)
            q->bufs.y = q->z;
        q->ops[n++] = (op){.kind = OP_FORWARD, .plan = q->plan, .mode = mode, .bufs = &q->bufs};
        if (q->z && unfused_step(B, &q->ops[n++], u->act, q->z, b->residual, b->y, q->plan, pd, r))
            return NULL;
    } else {
        /* what the unfused forward leaves for backward: h, and z with the residual added */
        op once;
        if (p->skip && (unfused_step(B, &once, u->add, b->x, b->skip, q->h, q->plan, pd, r) ||
                        op_run(B, &once, r)))
            return NULL;
        if (act) {
            clnorm_buffers f = {0};
            f.x = q->bufs.x;
            f.y = q->z;
            f.gamma = b->gamma;
            f.beta = b->beta;
            once = (op){.kind = OP_FORWARD, .plan = q->plan, .mode = CLNORM_TRAINING, .bufs = &f};
            if (op_run(B, &once, r) ||
                (p->add && (unfused_step(B, &once, u->add, q->z, b->residual, q->z, q->plan, pd, r) ||
                            op_run(B, &once, r))))
                return NULL;
            if (unfused_step(B, &q->ops[n++], u->act_grad, b->dy, q->z, q->dz, q->plan, pd, r))
                return NULL;
            q->bufs.dy = q->dz;
        }
        q->ops[n++] = (op){.kind = OP_BACKWARD, .plan = q->plan, .mode = mode, .bufs = &q->bufs};
    }
    for (int i = 0; i + 1 < n; ++i)
        q->ops[i].next = &q->ops[i + 1];
    return &q->ops[0];
}

/* ---- one problem ----------------------------------------------------------------------- */

/*
 * --ab: the other plan of problem p, run once on alt's buffers (those of the checked call) and
 * its output (out_bytes of `out`, whose checked bytes are `want`) compared: the streaming-store
 * choice must give the same bits; another kernel folder's largest difference is reported.
 */
static int ab_plan(bench *B, const problem *p, const clnorm_plan *plan, op *alt, cl_mem out,
                   const void *want, size_t out_bytes, clnorm_plan **alt_plan, result *r)
{
    const clnorm_desc *d = &p->desc;
    clnorm_context *ctx = B->ab_kernels ? B->ab_ctx : B->ctx;
    clnorm_tuning keep = ctx->tuning;
    const char *dir = getenv("CLNORM_KERNEL_DIR"); /* this plan's, put back after */
    char *dir_keep = dir ? strdup(dir) : NULL;
    if (B->ab_stream)
        ctx->tuning.stream_min = plan->stream ? 0 : 1;
    else if (B->ab_kernels)
        setenv("CLNORM_KERNEL_DIR", B->ab_kernels, 1);
    if (B->ab_tuning.local)
        ctx->tuning.local = B->ab_tuning.local;
    if (B->ab_tuning.block)
        ctx->tuning.block = B->ab_tuning.block;
    if (B->ab_tuning.chunk_max)
        ctx->tuning.chunk_max = B->ab_tuning.chunk_max;
    if (B->ab_tuning.fused_max)
        ctx->tuning.fused_max = B->ab_tuning.fused_max;
    /* created and run once with its kernels in place (backward builds its program then) */
    clnorm_status s = clnorm_plan_create(ctx, d, alt_plan);
    alt->plan = *alt_plan;
    unsigned char *again = s ? NULL : malloc(out_bytes ? out_bytes : 1);
    int ran = again && op_run(B, alt, r) == CLNORM_SUCCESS &&
              read_buffer(B, out, again, out_bytes, "the other plan's output", r) == 0;
    ctx->tuning = keep;
    if (B->ab_kernels && dir_keep)
        setenv("CLNORM_KERNEL_DIR", dir_keep, 1);
    else if (B->ab_kernels)
        unsetenv("CLNORM_KERNEL_DIR");
    free(dir_keep);
    if (s)
        set_message(r, "clnorm_plan_create (--ab): %s: %s", clnorm_status_string(s),
                    clnorm_context_last_error(ctx));
    else if (!again)
        set_message(r, "out of host memory");
    if (!ran) {
        free(again);
        return -1;
    }
    int same = memcmp(again, want, out_bytes) == 0;
    if (!same) {
        clnorm_dtype t = p->pass == PASS_BACKWARD ? d->dtype : clnorm_y_storage(d);
        size_t count = out_bytes / clnorm_dtype_size(t);
        double *got = to_double(t, again, count), *ref = to_double(t, want, count);
        int ok = got && ref;
        for (size_t i = 0; ok && i < count; ++i) {
            double diff = fabs(got[i] - ref[i]);
            if (!(diff <= r->other_diff))
                r->other_diff = diff; /* NaN where either is NaN */
        }
        free(got);
        free(ref);
        if (!ok) {
            set_message(r, "out of host memory");
            free(again);
            return -1;
        }
    }
    free(again);
    if (B->ab_stream && !same) {
        set_message(r, "--ab stream: the plan with streaming stores %s gives other bits",
                    plan->stream ? "off" : "on");
        r->status = ROW_FAIL;
        return -1;
    }
    return 0;
}

static void run_problem(bench *B, const problem *p, result *r)
{
    const clnorm_desc *d = &p->desc;
    size_t total = d->n * d->c * d->d, esize = clnorm_dtype_size(d->dtype);
    size_t bytes = total * esize, np = ref_params(d), groups = ref_groups(d);
    clnorm_dtype yt = clnorm_y_storage(d);
    size_t ybytes = total * clnorm_dtype_size(yt);
    double ymost = ref_integer_most(yt);
    int backward = p->pass == PASS_BACKWARD;
    int running = !backward && (d->kind == CLNORM_BATCH || d->kind == CLNORM_INSTANCE);
    int has_beta = d->kind != CLNORM_RMS; /* RMS norm is used without a bias */
    clnorm_mode mode = p->pass == PASS_INFERENCE ? CLNORM_INFERENCE : CLNORM_TRAINING;
    int epi = p->skip || p->add || d->activation, act = d->activation != CLNORM_ACTIVATION_NONE;
    memset(r, 0, sizeof *r);
    r->status = ROW_ERROR;
    r->bytes = backward ? (double)bytes * 3 : (double)bytes + (double)ybytes; /* x's and y's own */
    /* an epilogue's tensors: skip in and sum out (forward; backward reads sum, h, in place of
     * x); forward's residual in; backward's residual in where act' needs z, and dresidual out */
    r->bytes += (double)bytes * (backward ? p->add * (1 + act) : 2 * p->skip + p->add);

    if (bytes > B->ctx->info.max_alloc || (!backward && ybytes > B->ctx->info.max_alloc)) {
        /* before gigabytes of host data are made for it */
        set_message(r, "%s needs %zu bytes, the device allocates at most %llu per buffer",
                    bytes > B->ctx->info.max_alloc ? "x" : "y",
                    bytes > B->ctx->info.max_alloc ? bytes : ybytes,
                    (unsigned long long)B->ctx->info.max_alloc);
        return;
    }
    rng g = {SEED ^ (uint64_t)total, 0, 0};
    void *xs = random_tensor(d->dtype, total, &g);
    void *dys = backward ? random_tensor(d->dtype, total, &g) : NULL;
    void *skips = p->skip ? random_tensor(d->dtype, total, &g) : NULL;
    void *ress = p->add ? random_tensor(d->dtype, total, &g) : NULL;
    double *skd = NULL, *rsd = NULL, *hd = NULL, *want_dr = NULL, *got_dr = NULL;
    unfused_seq useq = {0};
    const op *unfused = NULL;
    void *outs = malloc(ybytes > bytes ? ybytes : bytes ? bytes : 1);
    float *gamma = malloc(np * sizeof *gamma), *beta = malloc(np * sizeof *beta);
    float *rm = malloc(d->c * sizeof *rm), *rv = malloc(d->c * sizeof *rv);
    float *dgamma = malloc(np * sizeof *dgamma), *dbeta = malloc(np * sizeof *dbeta);
    double *xd = NULL, *dyd = NULL, *got = NULL, *want = NULL, *scale = NULL;
    double *want_dg = NULL, *want_db = NULL, *got_dg = NULL, *got_db = NULL;
    clnorm_plan *plan = NULL, *alt_plan = NULL;
    clnorm_buffers b = {0};
    clnorm_status s;
    if (!xs || (backward && !dys) || (p->skip && !skips) || (p->add && !ress) || !outs ||
        !gamma || !beta || !rm || !rv || !dgamma || !dbeta) {
        set_message(r, "out of host memory");
        goto done;
    }
    /* an integer y: a spread of tens of steps around mid-range */
    double ps = ymost > 0 ? ymost / 8 : 1, po = ymost > 0 ? ymost / 2 : 0;
    for (size_t i = 0; i < np; ++i) {
        gamma[i] = (float)(ps * (0.5 + rng_uniform(&g)));
        beta[i] = (float)(po + ps * rng_normal(&g));
    }
    /* running statistics near the data's: integer x spreads over its range */
    double xmost = ref_integer_most(d->dtype);
    for (size_t c = 0; c < d->c; ++c) {
        rm[c] = (float)(xmost > 0 ? xmost / 2 + xmost / 60 * rng_normal(&g) : 0.1 * rng_normal(&g));
        rv[c] = (float)((xmost > 0 ? xmost * xmost / 36 : 1) * (0.5 + rng_uniform(&g)));
    }

    if ((s = clnorm_plan_create(B->ctx, d, &plan))) {
        set_message(r, "clnorm_plan_create: %s: %s", clnorm_status_string(s),
                    clnorm_context_last_error(B->ctx));
        if (s == CLNORM_ERROR_UNSUPPORTED)
            r->status = ROW_UNSUPPORTED;
        goto done;
    }
    if (!(b.x = make_buffer(B, xs, bytes, "x", r)) ||
        !(b.gamma = make_buffer(B, gamma, np * sizeof *gamma, "gamma", r)) ||
        (has_beta && !(b.beta = make_buffer(B, beta, np * sizeof *beta, "beta", r))))
        goto done;
    if ((p->skip && !(b.skip = make_buffer(B, skips, bytes, "skip", r))) ||
        (p->skip && !(b.sum = make_buffer(B, NULL, bytes, "sum", r))) ||
        (p->add && !(b.residual = make_buffer(B, ress, bytes, "residual", r))) ||
        (p->add && backward && !(b.dresidual = make_buffer(B, NULL, bytes, "dresidual", r))))
        goto done;
    if (running && (!(b.running_mean = make_buffer(B, rm, d->c * sizeof *rm, "running_mean", r)) ||
                    !(b.running_var = make_buffer(B, rv, d->c * sizeof *rv, "running_var", r))))
        goto done;
    /* Training saves the statistics for backward, as a framework's training step does. */
    if (mode == CLNORM_TRAINING &&
        (!(b.save_mean = make_buffer(B, NULL, groups * sizeof(float), "save_mean", r)) ||
         !(b.save_invstd = make_buffer(B, NULL, groups * sizeof(float), "save_invstd", r))))
        goto done;

    op o = {.kind = backward ? OP_BACKWARD : OP_FORWARD, .plan = plan, .mode = mode, .bufs = &b};
    if (!backward) {
        if (!(b.y = make_buffer(B, NULL, ybytes, "y", r)))
            goto done;
    } else {
        if (!(b.dy = make_buffer(B, dys, bytes, "dy", r)) ||
            !(b.dx = make_buffer(B, NULL, bytes, "dx", r)) ||
            !(b.dgamma = make_buffer(B, NULL, np * sizeof(float), "dgamma", r)) ||
            (has_beta && !(b.dbeta = make_buffer(B, NULL, np * sizeof(float), "dbeta", r))))
            goto done;
        /* The forward of the same x fills save_mean / save_invstd (y goes to dx, which
         * backward overwrites). */
        clnorm_buffers f = {0};
        f.x = b.x;
        f.y = b.dx;
        f.gamma = b.gamma;
        f.beta = b.beta;
        f.save_mean = b.save_mean;
        f.save_invstd = b.save_invstd;
        f.skip = b.skip;
        f.sum = b.sum; /* h, which backward reads */
        f.residual = b.residual;
        op fo = {.kind = OP_FORWARD, .plan = plan, .mode = CLNORM_TRAINING, .bufs = &f};
        if ((s = op_run(B, &fo, r))) {
            if (s == CLNORM_ERROR_UNSUPPORTED)
                r->status = ROW_UNSUPPORTED;
            goto done;
        }
    }

    /* The first call is checked; the timed ones repeat it. */
    if ((s = op_run(B, &o, r))) {
        if (s == CLNORM_ERROR_UNSUPPORTED)
            r->status = ROW_UNSUPPORTED;
        goto done;
    }
    if (read_buffer(B, backward ? b.dx : b.y, outs, backward ? bytes : ybytes,
                    backward ? "dx" : "y", r) ||
        (backward && read_buffer(B, b.dgamma, dgamma, np * sizeof *dgamma, "dgamma", r)) ||
        (backward && has_beta && read_buffer(B, b.dbeta, dbeta, np * sizeof *dbeta, "dbeta", r)))
        goto done;
    if (!(xd = to_double(d->dtype, xs, total)) ||
        !(got = to_double(backward ? d->dtype : yt, outs, total)) ||
        !(want = malloc((total ? total : 1) * sizeof *want)) ||
        !(hd = malloc((total ? total : 1) * sizeof *hd)) ||
        (p->skip && !(skd = to_double(d->dtype, skips, total))) ||
        (p->add && !(rsd = to_double(d->dtype, ress, total)))) {
        set_message(r, "out of host memory");
        goto done;
    }
    ref_epilogue re = {skd, rsd, d->activation, d->activation_alpha};
    if (!backward) {
        int use_running = running && mode == CLNORM_INFERENCE;
        ref_inputs in = {xd, gamma, has_beta ? beta : NULL, running ? rm : NULL,
                         running ? rv : NULL, NULL};
        if (!(scale = malloc((total ? total : 1) * sizeof *scale))) {
            set_message(r, "out of host memory");
            goto done;
        }
        ref_outputs out = {want, NULL, NULL, NULL, NULL, NULL, NULL, scale};
        if (ref_epilogue_forward(d, mode, &in, &re, &out, hd, NULL) != 0) {
            set_message(r, "the reference refuses this problem (statistics over one element)");
            goto done;
        }
        for (size_t i = 0; act && i < total; ++i)
            scale[i] *= 1.2; /* the activations' largest slope (leaky_relu's is 1) */
        if (check_forward(d, use_running, rm, hd, got, want, scale, r)) {
            set_message(r, "out of host memory");
            goto done;
        }
    } else {
        if (!(dyd = to_double(d->dtype, dys, total)) ||
            !(want_dg = malloc(np * sizeof *want_dg)) ||
            !(want_db = malloc(np * sizeof *want_db)) ||
            !(got_dg = float_to_double(dgamma, np)) || !(got_db = float_to_double(dbeta, np))) {
            set_message(r, "out of host memory");
            goto done;
        }
        ref_inputs in = {xd, gamma, has_beta ? beta : NULL, NULL, NULL, dyd};
        ref_outputs out = {want, NULL, NULL, NULL, NULL, want_dg, want_db, NULL};
        if (p->add && (!(want_dr = malloc(total * sizeof *want_dr)) ||
                       !(got_dr = malloc(total * sizeof *got_dr)))) {
            set_message(r, "out of host memory");
            goto done;
        }
        if (p->skip) { /* backward reads h from sum, as forward stored it */
            if (read_buffer(B, b.sum, outs, bytes, "sum", r))
                goto done;
            ref_load(d->dtype, outs, hd, total);
            in.x = hd;
            re.skip = NULL;
        }
        if (ref_epilogue_backward(d, CLNORM_TRAINING, &in, &re, &out, want_dr) != 0) {
            set_message(r, "the reference refuses this problem (statistics over one element)");
            goto done;
        }
        /* dx is stored in the dtype: its rounding, u per element, bounds the achievable error;
         * dgamma and dbeta are float whatever the dtype, but sum dy*act'(z), which the passes
         * read back in the dtype. */
        double u = ref_unit_roundoff(d->dtype);
        double dx_tol = fmax(GRAD_TOL, 4 * u), p_tol = act ? dx_tol : GRAD_TOL;
        double e_dx = relative_l2(got, want, total, &r->max_err);
        double e_dg = relative_l2(got_dg, want_dg, np, NULL);
        double e_db = has_beta ? relative_l2(got_db, want_db, np, NULL) : 0;
        double e_dr = 0;
        if (p->add) {
            if (read_buffer(B, b.dresidual, outs, bytes, "dresidual", r))
                goto done;
            ref_load(d->dtype, outs, got_dr, total);
            e_dr = relative_l2(got_dr, want_dr, total, NULL);
        }
        r->err_tol = fmax(fmax(e_dx, e_dr) / dx_tol, fmax(e_dg, e_db) / p_tol);
        if (isnan(r->err_tol))
            r->err_tol = INFINITY;
        set_message(r, "relative L2 error: dx %.3g, dresidual %.3g (tolerance %.3g), dgamma %.3g, "
                    "dbeta %.3g (tolerance %.3g)", e_dx, e_dr, dx_tol, e_dg, e_db, p_tol);
    }
    /* The reference's copies are large; the timing needs none of them. */
    free(xd);
    free(dyd);
    free(got);
    free(want);
    free(scale);
    xd = dyd = got = want = scale = NULL;

    free(hd);
    hd = NULL;

    /* An epilogue is timed against its unfused sequence too (y stored as x only). */
    if (epi && !d->y_dtype && !(unfused = unfused_make(B, p, &b, mode, &useq, r)))
        goto done;
    r->stream = plan->stream;
    op alt_op = o;
    int ab = B->ab_stream || B->ab_kernels || B->ab_tuning.local || B->ab_tuning.block ||
             B->ab_tuning.chunk_max || B->ab_tuning.fused_max;
    if (ab && ab_plan(B, p, plan, &alt_op, backward ? b.dx : b.y, outs, backward ? bytes : ybytes,
                      &alt_plan, r))
        goto done;
    r->repeats = B->repeat;
    if (time_against_copy(B, &o, unfused, ab ? &alt_op : NULL, r->bytes, &r->repeats,
                          &r->ms, &r->copy_ms, &r->stream_ms, &r->unfused_ms, &r->other_ms, r))
        goto done;
    r->status = r->err_tol <= 1.0 ? ROW_OK : ROW_FAIL;
done:
    unfused_free(&useq);
    release_buffers(&b);
    clnorm_plan_release(plan);
    clnorm_plan_release(alt_plan);
    void *heap[] = {xs,     dys,     outs,  gamma, beta,    rm,      rv,      dgamma,
                    dbeta,  xd,      dyd,   got,   want,    scale,   want_dg, want_db,
                    got_dg, got_db,  skips, ress,  skd,     rsd,     hd,      want_dr,
                    got_dr};
    for (size_t i = 0; i < COUNT(heap); ++i)
        free(heap[i]);
}

/* ---- output ---------------------------------------------------------------------------- */

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; ++s) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* JSON has no infinity or NaN: those become null. */
static void json_number(const char *key, double v, int have)
{
    printf(",\"%s\":", key);
    if (have && isfinite(v))
        printf("%.6g", v);
    else
        fputs("null", stdout);
}

static void print_json(const bench *B, const problem *p, const result *r)
{
    const clnorm_desc *d = &p->desc;
    int timed = r->status == ROW_OK || r->status == ROW_FAIL;
    fputs("{\"device\":", stdout);
    json_string(B->device);
    printf(",\"device_type\":\"%s\",\"compute_units\":%u", B->device_type,
           (unsigned)B->ctx->info.compute_units);
    printf(",\"kind\":\"%s\",\"pass\":\"%s\",\"layout\":\"%s\",\"dtype\":\"%s\"",
           kind_names[d->kind], pass_names[p->pass], layout_names[d->layout],
           dtype_names[d->dtype]);
    printf(",\"y_dtype\":\"%s\"", dtype_names[clnorm_y_storage(d)]);
    printf(",\"n\":%zu,\"c\":%zu,\"d\":%zu,\"groups\":%zu", d->n, d->c, d->d, d->groups);
    json_number("ms", r->ms, timed);
    json_number("gbps", r->bytes / (r->ms * 1e6), timed);
    json_number("copy_gbps", r->bytes / (r->copy_ms * 1e6), timed);
    json_number("sol", r->copy_ms / r->ms, timed);
    json_number("stream_copy_gbps", r->bytes / (r->stream_ms * 1e6), timed);
    json_number("sol_stream", r->stream_ms / r->ms, timed);
    printf(",\"hot\":%s,\"stream\":%s", B->hot ? "true" : "false", r->stream ? "true" : "false");
    json_number("ab_ms", r->other_ms, timed && r->other_ms > 0);
    json_number("ab_max_diff", r->other_diff, timed && r->other_ms > 0);
    json_number("unfused_ms", r->unfused_ms, timed && r->unfused_ms > 0);
    json_number("unfused_sol", r->copy_ms / r->unfused_ms, timed && r->unfused_ms > 0);
    json_number("max_err", r->max_err, timed);
    json_number("err_tol", r->err_tol, timed);
    printf(",\"repeats\":%d,\"bytes\":%.0f,\"status\":\"%s\"", r->repeats, r->bytes,
           status_names[r->status]);
    if (r->status == ROW_ERROR || r->status == ROW_UNSUPPORTED) {
        fputs(",\"error\":", stdout);
        json_string(r->message);
    }
    puts("}");
}

static void print_header(const bench *B, int width)
{
    printf("clnorm %s on %s (%s, %u compute units, %s kernel shapes)\n",
           clnorm_version_string(), B->device, B->device_type,
           (unsigned)B->ctx->info.compute_units,
           B->ctx->info.cls == CLNORM_CLASS_GPU ? "GPU" : "CPU");
    if (strstr(B->device, "Portable Computing Language"))
        printf("%s\n", pocl_threads_note());
    if (B->repeat)
        printf("ms: median of %d calls", B->repeat);
    else
        printf("ms: median of %d calls (down to %d for slow problems)", DEFAULT_REPEAT,
               MIN_AUTO_REPEAT);
    printf(", enqueue to clFinish, %s; SOL = copy time of the same bytes / time, SOL-nt\n"
           "the same for a copy with non-temporal stores; epilogues also time their unfused\n"
           "sequence (elementwise kernels around the plain normalization), alternating with the\n"
           "fused call and the copies\n\n",
           B->hot ? "hot (each after an untimed call of the same)" : "cold");
    printf("%-*s  %-5s %9s %8s %9s %6s %6s %10s %8s\n", width, "problem", "dtype", "ms", "GB/s",
           "copy GB/s", "SOL", "SOL-nt", "max_err", "err/tol");
}

static void print_row(const bench *B, const problem *p, const result *r, int width)
{
    char name[128];
    problem_name(p, name, sizeof name);
    printf("%-*s  %-5s ", width, name, dtype_names[p->desc.dtype]);
    if (r->status == ROW_UNSUPPORTED || r->status == ROW_ERROR) {
        puts(r->status == ROW_UNSUPPORTED ? "unsupported" : "error");
        return;
    }
    printf("%9.3f %8.2f %9.2f %6.2f %6.2f %10.2e %8.2f", r->ms, r->bytes / (r->ms * 1e6),
           r->bytes / (r->copy_ms * 1e6), r->copy_ms / r->ms, r->stream_ms / r->ms, r->max_err,
           r->err_tol);
    if (r->unfused_ms > 0)
        printf("  unfused %.3f ms, SOL %.2f: fused %.2fx faster", r->unfused_ms,
               r->copy_ms / r->unfused_ms, r->unfused_ms / r->ms);
    if (r->other_ms > 0 && B->ab_stream)
        printf("  streaming %s: %.3f ms (%.2fx)", r->stream ? "off" : "on", r->other_ms,
               r->other_ms / r->ms);
    else if (r->other_ms > 0)
        printf("  other plan: %.3f ms (%.2fx), differ by %.3g", r->other_ms,
               r->other_ms / r->ms, r->other_diff);
    puts(r->status == ROW_FAIL ? "  FAIL" : "");
}

static void progress(const bench *B, int i, int count, const problem *p)
{
    char name[128];
    problem_name(p, name, sizeof name);
    if (B->progress_tty)
        fprintf(stderr, "\r\033[K[%d/%d] %s %s ...", i + 1, count, name,
                dtype_names[p->desc.dtype]);
    else
        fprintf(stderr, "[%d/%d] %s %s ...\n", i + 1, count, name, dtype_names[p->desc.dtype]);
    fflush(stderr);
}

static void progress_clear(const bench *B)
{
    if (B->progress_tty) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
}

/* ---- main ------------------------------------------------------------------------------ */

/* Problems --tune times when given none: one of each reduction shape (columns, rows in cache,
 * a channels-last slab, blocked statistics), at the sizes the targets are measured on. */
static const char *const tune_suite[] = {
    "batch:forward-training:nchw:32x64x3136",
    "instance:forward-training:nhwc:32x64x3136",
    "layer:forward-training:nchw:4096x1024x1",
    "group:forward-training:nhwc:4x320x4096/32",
};

/* Sum of the median times of the problems with the context's current tuning; a failed or
 * wrong result makes a candidate unusable. */
static double tune_score(bench *B, const problem *problems, int count)
{
    double total = 0;
    for (int i = 0; i < count; ++i) {
        result r;
        run_problem(B, &problems[i], &r);
        if (r.status != ROW_OK)
            return INFINITY;
        total += r.ms;
    }
    return total;
}

/* Coordinate descent over each parameter's candidates, from the current values. */
static int tune(bench *B, const problem *problems, int count)
{
    clnorm_tuning *t = &B->ctx->tuning;
    int gpu = B->ctx->info.cls == CLNORM_CLASS_GPU;
    static const size_t blocks[] = {1024, 2048, 4096, 8192, 16384};
    static const size_t cpu_chunks[] = {4096, 8192, 16384, 32768, 65536};
    static const size_t gpu_chunks[] = {8, 16, 32};
    static const size_t cpu_locals[] = {1, 2, 4, 8, 16};
    static const size_t gpu_locals[] = {32, 64, 128, 256};
    struct {
        const char *name;
        size_t *value;
        const size_t *candidates;
        size_t count;
    } params[] = {
        {"block", &t->block, blocks, COUNT(blocks)},
        {"chunk", &t->chunk_max, gpu ? gpu_chunks : cpu_chunks,
         gpu ? COUNT(gpu_chunks) : COUNT(cpu_chunks)},
        {"local", &t->local, gpu ? gpu_locals : cpu_locals,
         gpu ? COUNT(gpu_locals) : COUNT(cpu_locals)},
    };
    double best = tune_score(B, problems, count);
    printf("tuning on %s: start block %zu chunk %zu local %zu: %.3f ms\n", B->device, t->block,
           t->chunk_max, t->local, best);
    if (!isfinite(best)) {
        fprintf(stderr, "clnorm-bench: the tuning problems fail with the current parameters\n");
        return 1;
    }
    for (size_t p = 0; p < COUNT(params); ++p) {
        size_t keep = *params[p].value;
        for (size_t c = 0; c < params[p].count; ++c) {
            size_t v = params[p].candidates[c];
            if (v == keep || (params[p].value == &t->local && v > B->ctx->info.max_work_group))
                continue;
            *params[p].value = v;
            double ms = tune_score(B, problems, count);
            printf("  %-5s %6zu: %.3f ms\n", params[p].name, v, ms);
            fflush(stdout);
            if (ms < best) {
                best = ms;
                keep = v;
            }
        }
        *params[p].value = keep;
    }
    char path[4300];
    clnorm_status s = clnorm_tuning_store(B->ctx, path, sizeof path);
    if (s) {
        fprintf(stderr, "clnorm-bench: %s\n", clnorm_context_last_error(B->ctx));
        return 1;
    }
    printf("best: block %zu chunk %zu local %zu: %.3f ms\nsaved to %s\n", t->block, t->chunk_max,
           t->local, best, path);
    return 0;
}

static const char *option_value(int argc, char **argv, int *i, const char *name)
{
    size_t len = strlen(name);
    const char *arg = argv[*i];
    if (strncmp(arg, name, len) != 0)
        return NULL;
    if (arg[len] == '=')
        return arg + len + 1;
    if (arg[len] != '\0')
        return NULL;
    if (*i + 1 >= argc)
        bad_usage("%s needs a value", name);
    return argv[++*i];
}

/* --ab's NAME=N: 1 and *out set where v is NAME= and a power of two in [least, most]. */
static int ab_tuning_value(const char *v, const char *name, size_t least, size_t most,
                           size_t *out)
{
    size_t len = strlen(name);
    if (strncmp(v, name, len) != 0)
        return 0;
    char *end;
    unsigned long n = strtoul(v + len, &end, 10);
    if (v[len] < '0' || v[len] > '9' || *end || n < least || n > most || (n & (n - 1)))
        bad_usage("--ab %s wants a power of two from %zu to %zu, got '%s'", name, least, most,
                  v + len);
    *out = n;
    return 1;
}

int main(int argc, char **argv)
{
    const char *device = NULL;
    clnorm_dtype dtype = CLNORM_F32;
    bench B = {0};
    int list = 0, tuning = 0, nargs = 0;
    /* Room for the arguments or the default suite, whichever is longer. */
    const char **args = calloc((size_t)argc + COUNT(default_suite), sizeof *args);
    if (!args)
        return 1;
    for (int i = 1; i < argc; ++i) {
        const char *v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            B.json = 1;
        } else if (strcmp(argv[i], "--hot") == 0) {
            B.hot = 1;
        } else if ((v = option_value(argc, argv, &i, "--ab"))) {
            if (strcmp(v, "stream") == 0)
                B.ab_stream = 1;
            else if (strncmp(v, "kernels=", 8) == 0 && v[8])
                B.ab_kernels = v + 8;
            else if (!ab_tuning_value(v, "local=", 1, 1024, &B.ab_tuning.local) &&
                     !ab_tuning_value(v, "block=", 256, 1 << 20, &B.ab_tuning.block) &&
                     !ab_tuning_value(v, "chunk=", 8, 1 << 22, &B.ab_tuning.chunk_max) &&
                     !ab_tuning_value(v, "fused=", 1, 1 << 24, &B.ab_tuning.fused_max))
                bad_usage("--ab wants stream, kernels=DIR, local=N, block=N, chunk=N or fused=N, "
                          "got '%s'",
                          v);
        } else if (strcmp(argv[i], "--list") == 0) {
            list = 1;
        } else if (strcmp(argv[i], "--tune") == 0) {
            tuning = 1;
        } else if ((v = option_value(argc, argv, &i, "--device"))) {
            device = v;
        } else if ((v = option_value(argc, argv, &i, "--dtype"))) {
            int t = lookup(v, dtype_names, COUNT(dtype_names));
            if (t < 0)
                bad_usage("unknown --dtype '%s' (f32, f16, bf16, u8, u16)", v);
            dtype = (clnorm_dtype)t;
        } else if ((v = option_value(argc, argv, &i, "--repeat"))) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*v < '0' || *v > '9' || *end || n < 1 || n > 1000000)
                bad_usage("--repeat wants a whole number from 1 to 1000000, got '%s'", v);
            B.repeat = (int)n;
        } else if (strcmp(argv[i], "--") == 0) {
            while (++i < argc)
                args[nargs++] = argv[i];
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            bad_usage("unknown option '%s'", argv[i]);
        } else {
            args[nargs++] = argv[i];
        }
    }
    if (list) {
        for (size_t i = 0; i < COUNT(default_suite); ++i)
            puts(default_suite[i]);
        return 0;
    }
    if (nargs == 0 && tuning)
        for (size_t i = 0; i < COUNT(tune_suite); ++i)
            args[nargs++] = tune_suite[i];
    if (nargs == 0)
        for (size_t i = 0; i < COUNT(default_suite); ++i)
            args[nargs++] = default_suite[i];
    problem *problems = calloc((size_t)nargs, sizeof *problems);
    if (!problems)
        return 1;
    int width = 7;
    for (int i = 0; i < nargs; ++i) {
        char err[300], name[128];
        if (parse_problem(args[i], dtype, &problems[i], err, sizeof err))
            bad_usage("problem '%s': %s", args[i], err);
        int len = (int)strlen(problem_name(&problems[i], name, sizeof name));
        width = len > width ? len : width;
    }

    clnorm_status s = clnorm_context_create(device, &B.ctx);
    if (s) {
        fprintf(stderr, "clnorm-bench: no device: %s: %s\n", clnorm_status_string(s),
                clnorm_context_last_error(NULL));
        return 1;
    }
    B.queue = clnorm_context_queue(B.ctx);
    const clnorm_device_info *info = &B.ctx->info;
    snprintf(B.device, sizeof B.device, "%s / %s", info->platform_name, info->device_name);
    B.device_type = (info->type & CL_DEVICE_TYPE_GPU)           ? "gpu"
                    : (info->type & CL_DEVICE_TYPE_CPU)         ? "cpu"
                    : (info->type & CL_DEVICE_TYPE_ACCELERATOR) ? "accelerator"
                                                                : "other";
    B.progress_tty = isatty(STDERR_FILENO);
    cl_program program;
    cl_int err;
    if ((s = clnorm_program_get(B.ctx, CLNORM_PROGRAM_COPY, CLNORM_COPY_OPTIONS, NULL, &program))) {
        fprintf(stderr, "clnorm-bench: building the copy kernel: %s: %s\n",
                clnorm_status_string(s), clnorm_context_last_error(B.ctx));
        clnorm_context_release(B.ctx);
        return 1;
    }
    B.copy = clCreateKernel(program, "copy", &err);
    if (err == CL_SUCCESS)
        B.copy_stream = clCreateKernel(program, "copy_stream", &err);
    if (err != CL_SUCCESS) {
        if (B.copy)
            clReleaseKernel(B.copy);
        fprintf(stderr, "clnorm-bench: clCreateKernel (copy): %s\n", clnorm_cl_error_name(err));
        clnorm_context_release(B.ctx);
        return 1;
    }

    if (tuning) {
        if (B.repeat == 0)
            B.repeat = 10;
        int rc = tune(&B, problems, nargs);
        clReleaseKernel(B.copy);
        clReleaseKernel(B.copy_stream);
        clnorm_context_release(B.ctx);
        free(problems);
        free(args);
        return rc;
    }
    if (B.ab_kernels && (s = clnorm_context_create_from_queue(B.queue, &B.ab_ctx))) {
        fprintf(stderr, "clnorm-bench: --ab kernels: a second context: %s: %s\n",
                clnorm_status_string(s), clnorm_context_last_error(NULL));
        clnorm_context_release(B.ctx);
        return 1;
    }
    if (!B.json)
        print_header(&B, width);
    fflush(stdout);
    int failed = 0, errors = 0, unsupported = 0;
    for (int i = 0; i < nargs; ++i) {
        result r;
        char name[128];
        progress(&B, i, nargs, &problems[i]);
        run_problem(&B, &problems[i], &r);
        progress_clear(&B);
        problem_name(&problems[i], name, sizeof name);
        if (r.status == ROW_ERROR) {
            fprintf(stderr, "clnorm-bench: %s %s: %s\n", name, dtype_names[dtype], r.message);
            errors++;
        } else if (r.status == ROW_FAIL) {
            fprintf(stderr, "clnorm-bench: %s %s: out of tolerance: %s\n", name,
                    dtype_names[dtype], r.message);
            failed++;
        } else if (r.status == ROW_UNSUPPORTED) {
            unsupported++;
        }
        if (B.json)
            print_json(&B, &problems[i], &r);
        else
            print_row(&B, &problems[i], &r, width);
        fflush(stdout);
    }
    if (failed || errors || unsupported)
        fprintf(stderr,
                "clnorm-bench: %d problems: %d out of tolerance, %d failed, %d unsupported\n",
                nargs, failed, errors, unsupported);
    clReleaseKernel(B.copy);
    clReleaseKernel(B.copy_stream);
    unfused_release(&B);
    clnorm_context_release(B.ab_ctx);
    clnorm_context_release(B.ctx);
    free(problems);
    free(args);
    return failed || errors ? 1 : 0;
}
