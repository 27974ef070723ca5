/*
 * compare-onednn: clnorm against oneDNN (Debian's libdnnl-dev, the fastest CPU peer), side by
 * side in one process, on the problems oneDNN has: BATCH forward training, forward inference
 * and backward in both layouts, LAYER forward and backward (float32).
 *
 * Both libraries run the same problem with the same threads (oneDNN's OpenMP threads = the
 * OpenCL CPU device's compute units) and the same cache state: before every timed call of
 * either, 64 MiB are written (cold, the default; --hot: an untimed call of the same operation
 * by the same library, as in a network where x was just written, and as clnorm-bench --hot
 * times). Calls alternate, oneDNN then clnorm, so drift slows both alike; each reports the
 * median of its calls. (Hot once meant no preparation at all, so that each library's timed
 * call found the caches as the other's call on the same memory had left them.)
 *
 * Each library's preparation starts once every other thread of the process is asleep. oneDNN's
 * OpenMP threads spin for milliseconds after a call (libgomp's default wait policy) where
 * PoCL's sleep at once, so a clnorm call that followed oneDNN's shared the two cores with a
 * spinner: hot LAYER 4096x1024 forward took 1.19-1.23 ms that way and 0.69-0.71 ms after the
 * wait, as alone in clnorm-bench, while oneDNN's own time did not move (2-core PoCL machine).
 *
 * Both read and write the same memory: x, y, dy, dx, gamma and beta are page-aligned
 * allocations that oneDNN takes as its memory objects' handles and clnorm as its buffers'
 * (CL_MEM_USE_HOST_PTR, which PoCL uses in place). On the 2-core VM this was written on, the
 * speed of memory depends on where an allocation lands, by up to 2x (a copy between two
 * buffers ran at 13 GB/s, the same copy between two others allocated next at 25 GB/s, again
 * and again): with separate allocations a ratio measured that as much as the libraries.
 *
 * What each pass runs, as clnorm-bench does:
 *   forward-training   BATCH: clnorm with running statistics and save_*, oneDNN
 *                      forward_training with scale and shift (it returns mean and variance;
 *                      it keeps no running statistics). LAYER: the same without running ones.
 *   forward-inference  BATCH: clnorm and oneDNN with the running (global) statistics.
 *                      LAYER: its own statistics, as in training (oneDNN forward_inference).
 *   backward           dx, dgamma and dbeta from save_* (oneDNN: mean and variance).
 *
 *   compare-onednn [--hot] [--repeat N] [PROBLEM...]   (PROBLEM as clnorm-bench's; f32 only)
 */
#include <clnorm/clnorm.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "problem.h"

#define EVICT_BYTES (64u << 20)
#define WARMUP 2

static const char *const default_problems[] = {
    "batch:forward-training:nchw:32x64x3136",  "batch:forward-training:nhwc:32x64x3136",
    "batch:forward-inference:nchw:32x64x3136", "batch:forward-inference:nhwc:32x64x3136",
    "batch:backward:nchw:32x64x3136",          "batch:backward:nhwc:32x64x3136",
    "layer:forward-training:nchw:4096x1024x1", "layer:backward:nchw:4096x1024x1",
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void die(const char *what)
{
    fprintf(stderr, "compare-onednn: %s\n", what);
    exit(1);
}

#define DNNL(call)                                                                                \
    do {                                                                                          \
        dnnl_status_t st_ = (call);                                                               \
        if (st_ != dnnl_success) {                                                                \
            fprintf(stderr, "compare-onednn: %s: oneDNN status %d\n", #call, (int)st_);           \
            exit(1);                                                                              \
        }                                                                                         \
    } while (0)

/* One oneDNN primitive with its arguments, ready to execute; data[k]: args[k]'s memory. */
typedef struct onednn_op {
    dnnl_primitive_t prim;
    dnnl_exec_arg_t args[12];
    void *data[12];
    int nargs;
} onednn_op;

static void memory(onednn_op *o, dnnl_engine_t eng, const dnnl_memory_desc_t *md, int arg,
                   float fill)
{
    size_t bytes = dnnl_memory_desc_get_size(md), page = 4096;
    float *p = aligned_alloc(page, (bytes + page - 1) / page * page);
    if (!p)
        die("out of memory");
    for (size_t i = 0; i < bytes / sizeof(float); ++i)
        p[i] = fill + (float)(i % 97) * 0.01f;
    dnnl_memory_t m;
    DNNL(dnnl_memory_create(&m, md, eng, p));
    o->data[o->nargs] = p;
    o->args[o->nargs].arg = arg;
    o->args[o->nargs++].memory = m;
}

/* The memory of oneDNN's argument arg (every one the problems use is made above). */
static void *arg_data(const onednn_op *o, int arg)
{
    for (int k = 0; k < o->nargs; ++k)
        if (o->args[k].arg == arg)
            return o->data[k];
    die("an argument oneDNN was not given");
    return NULL;
}

static void onednn_make(const problem *p, dnnl_engine_t eng, onednn_op *o)
{
    const clnorm_desc *d = &p->desc;
    memset(o, 0, sizeof *o);
    int layer = d->kind == CLNORM_LAYER;
    dnnl_memory_desc_t data, stat, param;
    if (layer) { /* (N, C*D) normalized over its last size */
        dnnl_dims_t dims = {(dnnl_dim_t)d->n, (dnnl_dim_t)(d->c * d->d)};
        dnnl_dims_t sdims = {(dnnl_dim_t)d->n};
        dnnl_dims_t pdims = {(dnnl_dim_t)(d->c * d->d)};
        DNNL(dnnl_memory_desc_init_by_tag(&data, 2, dims, dnnl_f32, dnnl_ab));
        DNNL(dnnl_memory_desc_init_by_tag(&stat, 1, sdims, dnnl_f32, dnnl_a));
        DNNL(dnnl_memory_desc_init_by_tag(&param, 1, pdims, dnnl_f32, dnnl_a));
    } else { /* (N, C, D, 1) in either layout */
        dnnl_dims_t dims = {(dnnl_dim_t)d->n, (dnnl_dim_t)d->c, (dnnl_dim_t)d->d, 1};
        dnnl_dims_t cdims = {(dnnl_dim_t)d->c};
        DNNL(dnnl_memory_desc_init_by_tag(&data, 4, dims, dnnl_f32,
                                          d->layout == CLNORM_NHWC ? dnnl_nhwc : dnnl_nchw));
        DNNL(dnnl_memory_desc_init_by_tag(&stat, 1, cdims, dnnl_f32, dnnl_a));
        param = stat;
    }
    unsigned flags = dnnl_use_scale | dnnl_use_shift;
    if (!layer && p->pass == PASS_INFERENCE)
        flags |= dnnl_use_global_stats;
    dnnl_prop_kind_t fwd_kind = p->pass == PASS_INFERENCE ? dnnl_forward_inference
                                                          : dnnl_forward_training;
    dnnl_primitive_desc_t fwd_pd, pd;
    if (layer) {
        dnnl_layer_normalization_desc_t od;
        DNNL(dnnl_layer_normalization_forward_desc_init(&od, fwd_kind, &data, &stat, d->eps,
                                                        flags));
        DNNL(dnnl_primitive_desc_create(&fwd_pd, &od, NULL, eng, NULL));
    } else {
        dnnl_batch_normalization_desc_t od;
        DNNL(dnnl_batch_normalization_forward_desc_init(&od, fwd_kind, &data, d->eps, flags));
        DNNL(dnnl_primitive_desc_create(&fwd_pd, &od, NULL, eng, NULL));
    }
    pd = fwd_pd;
    if (p->pass == PASS_BACKWARD) {
        if (layer) {
            dnnl_layer_normalization_desc_t od;
            DNNL(dnnl_layer_normalization_backward_desc_init(&od, dnnl_backward, &data, &data,
                                                             &stat, d->eps, flags));
            DNNL(dnnl_primitive_desc_create(&pd, &od, NULL, eng, fwd_pd));
        } else {
            dnnl_batch_normalization_desc_t od;
            DNNL(dnnl_batch_normalization_backward_desc_init(&od, dnnl_backward, &data, &data,
                                                             d->eps, flags));
            DNNL(dnnl_primitive_desc_create(&pd, &od, NULL, eng, fwd_pd));
        }
    }
    DNNL(dnnl_primitive_create(&o->prim, pd));
    memory(o, eng, &data, DNNL_ARG_SRC, 1.0f);
    memory(o, eng, &param, DNNL_ARG_SCALE, 1.0f);
    memory(o, eng, &param, DNNL_ARG_SHIFT, 0.0f);
    memory(o, eng, &stat, DNNL_ARG_MEAN, 1.0f);
    memory(o, eng, &stat, DNNL_ARG_VARIANCE, 1.0f);
    if (p->pass == PASS_BACKWARD) {
        memory(o, eng, &data, DNNL_ARG_DIFF_DST, 0.5f);
        memory(o, eng, &data, DNNL_ARG_DIFF_SRC, 0.0f);
        memory(o, eng, &param, DNNL_ARG_DIFF_SCALE, 0.0f);
        memory(o, eng, &param, DNNL_ARG_DIFF_SHIFT, 0.0f);
    } else {
        memory(o, eng, &data, DNNL_ARG_DST, 0.0f);
    }
    if (pd != fwd_pd)
        dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_desc_destroy(fwd_pd);
}

static void onednn_free(onednn_op *o)
{
    for (int k = 0; k < o->nargs; ++k) {
        dnnl_memory_destroy(o->args[k].memory);
        free(o->data[k]);
    }
    dnnl_primitive_destroy(o->prim);
}

/* The same problem for clnorm, its tensors and parameters in oneDNN's memory, the rest (running
 * statistics, save_*, which oneDNN's arguments do not match) in buffers of its own. */
typedef struct clnorm_op {
    clnorm_plan *plan;
    clnorm_mode mode;
    clnorm_buffers b;
    int backward;
} clnorm_op;

static cl_mem cl_buffer(clnorm_context *ctx, size_t bytes, float fill)
{
    float *host = malloc(bytes);
    if (!host)
        die("out of memory");
    for (size_t i = 0; i < bytes / sizeof(float); ++i)
        host[i] = fill + (float)(i % 97) * 0.01f;
    cl_int err;
    cl_mem m = clCreateBuffer(clnorm_context_cl(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                              bytes, host, &err);
    free(host);
    if (err != CL_SUCCESS)
        die("clCreateBuffer failed");
    return m;
}

/* clnorm's buffer over memory oneDNN also uses (the device's own: PoCL uses it in place) */
static cl_mem cl_shared(clnorm_context *ctx, const onednn_op *od, int arg, size_t bytes)
{
    cl_int err;
    cl_mem m = clCreateBuffer(clnorm_context_cl(ctx), CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR,
                              bytes, arg_data(od, arg), &err);
    if (err != CL_SUCCESS)
        die("clCreateBuffer (CL_MEM_USE_HOST_PTR) failed");
    return m;
}

static void clnorm_make(clnorm_context *ctx, const problem *p, const onednn_op *od,
                        clnorm_op *o)
{
    const clnorm_desc *d = &p->desc;
    memset(o, 0, sizeof *o);
    if (clnorm_plan_create(ctx, d, &o->plan) != CLNORM_SUCCESS)
        die(clnorm_context_last_error(ctx));
    size_t bytes = d->n * d->c * d->d * sizeof(float);
    size_t params = (d->kind == CLNORM_LAYER ? d->c * d->d : d->c) * sizeof(float);
    size_t stats = clnorm_plan_stats_count(o->plan) * sizeof(float);
    o->mode = p->pass == PASS_INFERENCE ? CLNORM_INFERENCE : CLNORM_TRAINING;
    o->backward = p->pass == PASS_BACKWARD;
    clnorm_buffers *b = &o->b;
    b->x = cl_shared(ctx, od, DNNL_ARG_SRC, bytes);
    b->gamma = cl_shared(ctx, od, DNNL_ARG_SCALE, params);
    b->beta = cl_shared(ctx, od, DNNL_ARG_SHIFT, params);
    if (d->kind == CLNORM_BATCH && !o->backward) {
        b->running_mean = cl_buffer(ctx, d->c * sizeof(float), 1.0f);
        b->running_var = cl_buffer(ctx, d->c * sizeof(float), 1.0f);
    }
    if (o->mode == CLNORM_TRAINING) {
        b->save_mean = cl_buffer(ctx, stats, 1.0f);
        b->save_invstd = cl_buffer(ctx, stats, 1.0f);
    }
    if (o->backward) {
        b->dy = cl_shared(ctx, od, DNNL_ARG_DIFF_DST, bytes);
        b->dx = cl_shared(ctx, od, DNNL_ARG_DIFF_SRC, bytes);
        b->dgamma = cl_shared(ctx, od, DNNL_ARG_DIFF_SCALE, params);
        b->dbeta = cl_shared(ctx, od, DNNL_ARG_DIFF_SHIFT, params);
    } else {
        b->y = cl_shared(ctx, od, DNNL_ARG_DST, bytes);
    }
}

static void clnorm_run(clnorm_context *ctx, const clnorm_op *o)
{
    cl_event done;
    clnorm_status s = o->backward ? clnorm_backward(o->plan, o->mode, &o->b, 0, NULL, &done)
                                  : clnorm_forward(o->plan, o->mode, &o->b, 0, NULL, &done);
    if (s != CLNORM_SUCCESS)
        die(clnorm_context_last_error(ctx));
    clWaitForEvents(1, &done);
    clReleaseEvent(done);
}

static void clnorm_free(clnorm_op *o)
{
    cl_mem mems[] = {o->b.x,      o->b.y,         o->b.dy,        o->b.dx,
                     o->b.gamma,  o->b.beta,      o->b.dgamma,    o->b.dbeta,
                     o->b.running_mean, o->b.running_var, o->b.save_mean, o->b.save_invstd};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; ++i)
        if (mems[i])
            clReleaseMemObject(mems[i]);
    clnorm_plan_release(o->plan);
}

static void onednn_run(const onednn_op *od, dnnl_stream_t stream)
{
    DNNL(dnnl_primitive_execute(od->prim, stream, od->nargs, od->args));
    DNNL(dnnl_stream_wait(stream));
}

/* How many of the process's threads other than the caller are running (state R in
 * /proc/self/task); -1 where that cannot be read. */
static int others_running(void)
{
    DIR *dir = opendir("/proc/self/task");
    if (!dir)
        return -1;
    char link[64] = "";
    ssize_t n = readlink("/proc/thread-self", link, sizeof link - 1); /* "pid/task/tid" */
    const char *self = n > 0 ? strrchr(link, '/') : NULL;
    long self_tid = self ? atol(self + 1) : -1;
    if (self_tid < 0) { /* the caller would count itself */
        closedir(dir);
        return -1;
    }
    int running = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        if (e->d_name[0] == '.' || atol(e->d_name) == self_tid)
            continue;
        char path[300], text[512];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t len = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[len] = '\0';
        const char *end = strrchr(text, ')'); /* the name may hold spaces and parentheses */
        if (end && end[1] == ' ' && end[2] == 'R')
            ++running;
    }
    closedir(dir);
    return running;
}

static int quiesce_timeouts; /* waits that ended at the limit, reported at the end */

/* Waits, polling, until every other thread is asleep (at most 0.2 s): the previous call's
 * spinning threads off the cores before the next library's preparation. */
static void quiesce(void)
{
    double t0 = now_s();
    int running;
    while ((running = others_running()) > 0 && now_s() - t0 < 0.2)
        ;
    if (running > 0)
        ++quiesce_timeouts;
}

static unsigned char *evict_buf;

static void evict(void)
{
    /* written, not read: every line ends up modified in this core's caches, as a producer's
     * output would leave them */
    memset(evict_buf, (int)(now_s() * 1e3) & 0xff, EVICT_BYTES);
}

int main(int argc, char **argv)
{
    int hot = 0, repeat = 20, first = 1;
    for (; first < argc && argv[first][0] == '-'; ++first) {
        if (strcmp(argv[first], "--hot") == 0) {
            hot = 1;
        } else if (strcmp(argv[first], "--repeat") == 0 && first + 1 < argc) {
            repeat = atoi(argv[++first]);
        } else {
            fprintf(stderr, "usage: compare-onednn [--hot] [--repeat N] [PROBLEM...]\n");
            return 2;
        }
    }
    if (repeat < 1)
        repeat = 1;
    clnorm_context *ctx;
    if (clnorm_context_create("cpu", &ctx) != CLNORM_SUCCESS)
        die(clnorm_context_last_error(NULL));
    cl_device_id dev;
    cl_uint units = 1;
    clGetCommandQueueInfo(clnorm_context_queue(ctx), CL_QUEUE_DEVICE, sizeof dev, &dev, NULL);
    clGetDeviceInfo(dev, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
    omp_set_num_threads((int)units);
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    DNNL(dnnl_engine_create(&eng, dnnl_cpu, 0));
    DNNL(dnnl_stream_create(&stream, eng, dnnl_stream_default_flags));
    evict_buf = malloc(EVICT_BYTES);
    if (!evict_buf)
        die("out of memory");
    const dnnl_version_t *v = dnnl_version();
    const char *bind = getenv("OMP_PROC_BIND"), *places = getenv("OMP_PLACES");
    cl_platform_id platform = NULL;
    char platform_name[256] = "";
    clGetDeviceInfo(dev, CL_DEVICE_PLATFORM, sizeof platform, &platform, NULL);
    if (platform)
        clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof platform_name - 1, platform_name,
                          NULL);
    int pocl = strstr(platform_name, "Portable Computing Language") != NULL;
    printf("oneDNN %d.%d.%d (%d OpenMP threads, OMP_PROC_BIND=%s, OMP_PLACES=%s) against clnorm "
           "%s on %u compute units%s%s%s, %s caches, median of %d alternating calls each\n\n",
           v->major, v->minor, v->patch, (int)units, bind ? bind : "unset",
           places ? places : "unset", clnorm_version_string(), units, pocl ? " (" : "",
           pocl ? pocl_threads_note() : "", pocl ? ")" : "",
           hot ? "hot (an untimed call before each)" : "cold (64 MiB written before each call)",
           repeat);
    printf("| problem | oneDNN ms | clnorm ms | oneDNN ÷ clnorm |\n|---|---|---|---|\n");
    int nproblems = first < argc ? argc - first : (int)COUNT(default_problems);
    double *t = malloc(2 * (size_t)repeat * sizeof *t);
    for (int i = 0; i < nproblems; ++i) {
        const char *text = first < argc ? argv[first + i] : default_problems[i];
        problem p;
        char err[256];
        if (parse_problem(text, CLNORM_F32, &p, err, sizeof err))
            die(err);
        if (!(p.desc.kind == CLNORM_BATCH || p.desc.kind == CLNORM_LAYER) ||
            p.desc.dtype != CLNORM_F32 || (p.desc.kind == CLNORM_LAYER && p.desc.d != 1 &&
                                           p.desc.layout != CLNORM_NCHW)) {
            printf("| %s | (oneDNN has no such problem here) | | |\n", text);
            continue;
        }
        onednn_op od;
        clnorm_op co;
        onednn_make(&p, eng, &od);
        clnorm_make(ctx, &p, &od, &co);
        for (int k = -WARMUP; k < repeat; ++k) {
            quiesce();
            if (hot)
                onednn_run(&od, stream);
            else
                evict();
            double t0 = now_s();
            onednn_run(&od, stream);
            double t1 = now_s();
            quiesce();
            if (hot)
                clnorm_run(ctx, &co);
            else
                evict();
            double t2 = now_s();
            clnorm_run(ctx, &co);
            double t3 = now_s();
            if (k >= 0) {
                t[k] = (t1 - t0) * 1e3;
                t[repeat + k] = (t3 - t2) * 1e3;
            }
        }
        qsort(t, (size_t)repeat, sizeof *t, cmp_double);
        qsort(t + repeat, (size_t)repeat, sizeof *t, cmp_double);
        double a = t[repeat / 2], b = t[repeat + repeat / 2];
        printf("| %s | %.3f | %.3f | %.2f |\n", text, a, b, a / b);
        fflush(stdout);
        clnorm_free(&co); /* before the memory under its buffers goes */
        onednn_free(&od);
    }
    if (quiesce_timeouts)
        fprintf(stderr,
                "compare-onednn: %d waits for the other threads to sleep ended at 0.2 s (a "
                "thread that never sleeps, e.g. OMP_WAIT_POLICY=active): those calls ran beside "
                "it\n",
                quiesce_timeouts);
    free(t);
    free(evict_buf);
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(eng);
    clnorm_context_release(ctx);
    return 0;
}
