/*
 * Plans: validating a descriptor, mapping it onto the reduction view, choosing kernel shapes
 * and block sizes for the device, compiling, and owning the scratch buffers.
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Elements per statistics block, apply chunk lengths and work-group sizes come from the
 * context's tuning (src/tune.c): defaults per device class, or what clnorm-bench --tune saved. */
#define COLS 8 /* columns per work-item of the CPU column kernel (CLNORM_RT) */
/* Problems of up to this many bytes of x take the fused kernels whatever their number of rows
 * (issue of launch cost: a kernel launch is several microseconds, the whole problem a few). */
#define SMALL_BYTES (256 * 1024)
/* The same for a channels-last sample (a [D][C] slab), which one work-item reduces and applies. */
#define FUSED_MAX_SLAB 262144
/* GPUs reduce row blocks with a work-group each (the *_rows_wg kernels, CLNORM_WG): 256
 * work-items, a multiple of NVIDIA's 32-wide warps and AMD's 64-wide wavefronts, eight of them
 * an SM's 2048 threads, and an 8-level tree; devices, or work-group kernels, that allow less
 * take the largest power of two they allow, and below COOP_MIN_WG (a warp) the per-work-item
 * kernels. Blocks of up to 16K elements (64 per work-item: long enough to amortize the
 * tree and keep the merge short), halved while the problem has fewer than COOP_BLOCKS_PER_CU
 * blocks per compute unit, down to 2048 (8 per work-item), so that small problems still spread
 * over the device. Not from the tuning file, whose block is the per-work-item kernels'. */
#define COOP_WG 256
#define COOP_MIN_WG 32
#define COOP_MAX_BLOCK 16384
#define COOP_MIN_BLOCK 2048
#define COOP_BLOCKS_PER_CU 8

size_t clnorm_dtype_size(clnorm_dtype dtype)
{
    return dtype == CLNORM_F32 ? 4 : dtype == CLNORM_U8 ? 1 : 2;
}

clnorm_dtype clnorm_y_storage(const clnorm_desc *d)
{
    return d->y_dtype == CLNORM_Y_AS_X ? d->dtype : (clnorm_dtype)(d->y_dtype - 1);
}

int clnorm_dtype_is_integer(clnorm_dtype dtype)
{
    return dtype == CLNORM_U8 || dtype == CLNORM_U16;
}

const char *clnorm_kind_name(clnorm_kind kind)
{
    static const char *const names[] = {"BATCH", "LAYER", "INSTANCE", "GROUP", "RMS"};
    return (unsigned)kind < 5 ? names[kind] : "?";
}

clnorm_status clnorm_desc_check(const clnorm_context *ctx, const clnorm_desc *d)
{
    if (!d)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "desc: NULL");
    if ((unsigned)d->kind > CLNORM_RMS)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "desc.kind: unknown value %d",
                           (int)d->kind);
    if ((unsigned)d->layout > CLNORM_NHWC)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "desc.layout: unknown value %d",
                           (int)d->layout);
    if ((unsigned)d->dtype > CLNORM_U16)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "desc.dtype: unknown value %d",
                           (int)d->dtype);
    if ((unsigned)d->y_dtype > CLNORM_Y_U16)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "desc.y_dtype: unknown value %d",
                           (int)d->y_dtype);
    if ((unsigned)d->activation > CLNORM_ACTIVATION_GELU_TANH)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "desc.activation: unknown value %d", (int)d->activation);
    if (!isfinite(d->activation_alpha))
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "desc.activation_alpha: must be finite, got %g",
                           (double)d->activation_alpha);
    if (d->c == 0)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "desc.c: must be at least 1");
    if (d->d == 0)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "desc.d: must be at least 1 (1 for data without spatial dimensions)");
    if (!isfinite(d->eps) || d->eps < 0.0f)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "desc.eps: must be finite and >= 0, got %g", (double)d->eps);
    if (!(d->momentum >= 0.0f && d->momentum <= 1.0f))
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "desc.momentum: must be in [0, 1], got %g", (double)d->momentum);
    if (d->kind == CLNORM_GROUP && (d->groups == 0 || d->c % d->groups != 0))
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "desc.groups: must divide c = %zu, got %zu", d->c, d->groups);
    size_t cd = d->c * d->d;
    if (cd / d->c != d->d || (d->n && (cd * d->n) / d->n != cd) ||
        d->n * cd > SIZE_MAX / 4)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "desc: n*c*d = %zu*%zu*%zu overflows", d->n, d->c, d->d);
    return CLNORM_SUCCESS;
}

/* The [P][Q][R][S] view of DESIGN.md section 3, with channels-last GROUP reduced per channel
 * column and merged C/G columns at a time. */
static clnorm_view make_view(const clnorm_desc *d)
{
    size_t N = d->n, C = d->c, D = d->d, G = d->kind == CLNORM_GROUP ? d->groups : 1;
    clnorm_view v = {1, 1, 1, 1, 1};
    int nhwc = d->layout == CLNORM_NHWC && D > 1;
    switch (d->kind) {
    case CLNORM_BATCH:
        v = nhwc ? (clnorm_view){1, N * D, C, 1, 1} : (clnorm_view){1, N, C, D, 1};
        break;
    case CLNORM_LAYER:
    case CLNORM_RMS: v = (clnorm_view){N, 1, 1, C * D, 1}; break;
    case CLNORM_INSTANCE:
        v = nhwc ? (clnorm_view){N, D, C, 1, 1} : (clnorm_view){N * C, 1, 1, D, 1};
        break;
    case CLNORM_GROUP:
        v = nhwc ? (clnorm_view){N, D, C, 1, C / G} : (clnorm_view){N * G, 1, 1, (C / G) * D, 1};
        break;
    }
    return v;
}

/* Groups are columns of a [Q][R] matrix (S == 1): the column kernels; else the row kernels. */
static int column_shape(const clnorm_view *v) { return v->S == 1 && v->R > 1; }

static size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }
static size_t round_up(size_t a, size_t b) { return ceil_div(a, b) * b; }

/* cols: columns per work-item of the column kernel (CLNORM_RT); block: the tuned elements per
 * statistics block. A block small enough that its second sweep hits cache, large enough that
 * partials stay few. */
static clnorm_blocking make_blocking(const clnorm_view *v, size_t cols, size_t block)
{
    clnorm_blocking b = {0};
    /* Wide column tiles stream whole rows and read their second sweep from L2 well; longer
     * blocks keep the merge, one Chan step per block and group, short. */
    if (cols >= 32)
        block *= 2;
    if (column_shape(v)) {
        b.cols = 1;
        b.nqb = ceil_div(v->Q, block / cols);
        b.qb = ceil_div(v->Q, b.nqb);
        b.sb = 1;
        b.sblocks = 1;
        b.nblk = b.nqb;
        b.work_items = v->P * b.nqb * ceil_div(v->R, cols);
    } else {
        if (v->S >= block) {
            b.sblocks = ceil_div(v->S, block);
            b.sb = round_up(ceil_div(v->S, b.sblocks), 8);
            b.sblocks = ceil_div(v->S, b.sb);
            b.qb = 1;
        } else {
            b.sb = v->S;
            b.sblocks = 1;
            b.qb = block / v->S;
        }
        b.nqb = ceil_div(v->Q, b.qb);
        b.qb = ceil_div(v->Q, b.nqb);
        b.nblk = b.nqb * b.sblocks;
        b.work_items = v->P * v->R * b.nblk;
    }
    return b;
}

size_t clnorm_plan_items_local(const clnorm_plan *plan, size_t items)
{
    size_t cores = plan->ctx->info.compute_units ? plan->ctx->info.compute_units : 1;
    if (items < 4 * cores)
        return 0;
    size_t local = plan->local_size;
    while (local > 1 && items / local < 4 * cores)
        local /= 2;
    return local;
}

size_t clnorm_plan_row_items(const clnorm_plan *plan)
{
    return (plan->ctx->info.compute_units ? plan->ctx->info.compute_units : 1) * 8;
}

/* Row problems (every group one contiguous row: Q == 1, one partial column per group) on a CPU
 * take the fused kernel when a row fits in a core's cache and there are rows enough to keep
 * every core busy; so do channels-last INSTANCE and GROUP (S == 1, whole vectors of columns)
 * when a sample's slab fits. */
static void choose_fused(clnorm_plan *plan, int narrow)
{
    const clnorm_view *v = &plan->view;
    const clnorm_device_info *info = &plan->ctx->info;
    size_t items;
    plan->fused_block = 0;
    plan->fused_rows = 1;
    clnorm_kind kind = plan->desc.kind;
    if (info->cls != CLNORM_CLASS_CPU)
        return;
    size_t bytes = plan->elements * clnorm_dtype_size(plan->desc.dtype);
    if (kind == CLNORM_BATCH && bytes <= SMALL_BYTES) {
        /* small BATCH: a work-item per channel (channels-last: per eight, when C % 8 == 0) does
         * the whole call */
        size_t c = plan->desc.c;
        items = plan->apply_mode == 1 && c % 8 == 0 ? c / 8 : c;
        plan->fused_block = plan->ctx->tuning.block;
        plan->fused_channels = 1;
    } else if (v->Q == 1 && v->members == 1 &&
               (v->S <= plan->ctx->tuning.fused_max || bytes <= SMALL_BYTES)) {
        /* rows of at most tuning.fused_max elements: the apply sweep re-reads the row from
         * cache (longer rows take the blocked passes, which spread one row over every core) */
        items = plan->stats_count;
        plan->fused_block = plan->ctx->tuning.block;
        /* LAYER and RMS rows of one block, several to each of clnorm_plan_row_items: a
         * work-item reads its next row while it writes this one's y (norm_rows) */
        size_t want = clnorm_plan_row_items(plan);
        if (plan->apply_mode == 2 && v->S <= plan->fused_block && items >= 2 * want) {
            plan->fused_rows = ceil_div(items, want);
            items = ceil_div(items, plan->fused_rows);
        }
    } else if ((kind == CLNORM_INSTANCE || kind == CLNORM_GROUP) && v->S == 1 && v->R > 1 &&
               !narrow && (v->R % 8 == 0 || bytes <= SMALL_BYTES) &&
               v->Q * v->R <= FUSED_MAX_SLAB) {
        /* Small problems take it with a last tile of fewer than eight columns too (GROUP
         * 1x12x1024/4: 27-33 us a call, from 40-58 through the blocked passes). Not with
         * fewer than eight channels: one work-item's scalar columns took INSTANCE 1x3x4096
         * channels-last 47-51 us, where the narrow kernels' three launches take 34-41. */
        items = v->P;
        size_t block = plan->ctx->tuning.block;
        plan->fused_block = block / v->R < 16 ? 16 : block / v->R;
        plan->fused_slab = 1;
    } else {
        return;
    }
    plan->fused_items = items;
    plan->fused_local = clnorm_plan_items_local(plan, items);
    /* A small problem takes it even with too few rows for every core: one launch, where the
     * blocked passes take three, costs less than the cores it leaves idle. */
    if (!plan->fused_local && bytes <= SMALL_BYTES)
        plan->fused_local = 1;
    if (!plan->fused_local) {
        plan->fused_block = 0;
        plan->fused_slab = 0;
        plan->fused_channels = 0;
    }
}

static clnorm_status create_kernel(clnorm_plan *plan, cl_program program, const char *name,
                                   cl_kernel *out);

const char *clnorm_fused_name(const clnorm_plan *plan)
{
    if (plan->fused_channels)
        return plan->apply_mode == 1 ? "norm_cols" : "norm_channels";
    return plan->fused_slab ? "norm_slab" : "norm_rows";
}

size_t clnorm_kernel_max_local(const clnorm_context *ctx, cl_kernel kernel)
{
    size_t most = 0;
    if (clGetKernelWorkGroupInfo(kernel, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof most,
                                 &most, NULL) != CL_SUCCESS ||
        most == 0 || most > ctx->info.max_work_group)
        most = ctx->info.max_work_group;
    size_t cap = ctx->info.max_kernel_work_group;
    return cap && cap < most ? cap : most;
}

/* The largest power of two up to wg that the program's work-group kernel allows; 0 if it
 * cannot be created. */
static size_t coop_wg_allowed(const clnorm_context *ctx, cl_program program, const char *name,
                              size_t wg)
{
    cl_int err;
    cl_kernel k = clCreateKernel(program, name, &err);
    if (err != CL_SUCCESS)
        return 0;
    wg = clnorm_halve_to(wg, clnorm_kernel_max_local(ctx, k));
    clReleaseKernel(k);
    return wg;
}

/* Every -D a program of the plan is specialized by; wg: CLNORM_WG, 0 for none. Both passes'
 * programs take the same options. */
static void program_options(const clnorm_plan *plan, int backward, size_t wg, char *out,
                            size_t size)
{
    const clnorm_desc *d = &plan->desc;
    char wg_option[32] = "";
    if (wg)
        snprintf(wg_option, sizeof wg_option, " -DCLNORM_WG=%d", (int)wg);
    /* y's storage, where it is not x's (forward only: backward's dx is x's) */
    clnorm_dtype ytype = backward ? d->dtype : clnorm_y_storage(d);
    char y_option[32] = "";
    if (ytype != d->dtype)
        snprintf(y_option, sizeof y_option, " -DCLNORM_YTYPE=%d", (int)ytype);
    /* bf16 stores pair elements into uints on little-endian devices (common.clh) */
    const char *endian = (ytype == CLNORM_BF16 || d->dtype == CLNORM_BF16) &&
                                 plan->ctx->info.little_endian
                             ? " -DCLNORM_LITTLE_ENDIAN=1"
                             : "";
    snprintf(out, size,
             "-cl-std=CL1.2 -DCLNORM_DTYPE=%d%s -DCLNORM_APPLY=%d -DCLNORM_RT=%d"
             " -DCLNORM_NARROW=%d -DCLNORM_CT=%d%s%s%s%s",
             (int)d->dtype, y_option, plan->apply_mode,
             plan->ctx->info.cls == CLNORM_CLASS_GPU ? 1 : COLS, plan->narrow,
             (int)(backward ? plan->bwd_col_tile : plan->col_tile),
             wg_option, endian, plan->stream ? " -DCLNORM_STREAM=1" : "",
             plan->ctx->info.prefetch ? " -DCLNORM_PREFETCH=1" : "");
}

void clnorm_problem_text(const clnorm_desc *d, int backward, char *out, size_t size)
{
    static const char *const kinds[] = {"batch", "layer", "instance", "group", "rms"};
    int n = snprintf(out, size, "%s:%s:%s:%zux%zux%zu", kinds[d->kind],
                     backward ? "backward" : "forward-training",
                     d->layout == CLNORM_NHWC ? "nhwc" : "nchw", d->n, d->c, d->d);
    if (d->kind == CLNORM_GROUP && n > 0 && (size_t)n < size)
        n += snprintf(out + n, size - (size_t)n, "/%zu", d->groups);
    /* the storage field: x's, and y's where it differs */
    static const char *const types[] = {"f32", "f16", "bf16", "u8", "u16"};
    if (n > 0 && (size_t)n < size)
        snprintf(out + n, size - (size_t)n, ":%s%s%s", types[d->dtype], d->y_dtype ? "-" : "",
                 d->y_dtype ? types[clnorm_y_storage(d)] : "");
}

/*
 * The program of a pass, built for the plan's work-group size *wg (0: none) where its
 * work-group kernel `wg_kernel` allows it. A device may allow that kernel fewer work-items than
 * its maximum (registers, local memory): then the program is built again for the largest size
 * it allows, or, below COOP_MIN_WG or where the build with it fails, without it; *wg says which.
 */
static clnorm_status pass_program(clnorm_plan *plan, clnorm_program which,
                                  const char *wg_kernel, size_t *wg, cl_program *out)
{
    char options[256], problem[160];
    clnorm_problem_text(&plan->desc, which == CLNORM_PROGRAM_BACKWARD, problem, sizeof problem);
    for (;;) {
        program_options(plan, which == CLNORM_PROGRAM_BACKWARD, *wg, options, sizeof options);
        clnorm_status status = clnorm_program_get(plan->ctx, which, options, problem, out);
        if (status == CLNORM_ERROR_BUILD_FAILED && *wg) {
            /* a compiler may refuse the work-group kernels' required size outright */
            *wg = 0;
            clnorm_error_clear(plan->ctx);
            continue;
        }
        if (status != CLNORM_SUCCESS)
            return status;
        size_t allowed = *wg ? coop_wg_allowed(plan->ctx, *out, wg_kernel, *wg) : 0;
        if (allowed == *wg)
            return CLNORM_SUCCESS;
        *wg = allowed >= COOP_MIN_WG ? allowed : 0;
    }
}

clnorm_status clnorm_plan_backward_program(clnorm_plan *plan, cl_program *out)
{
    size_t wg = plan->bwd_wg;
    clnorm_status status =
        pass_program(plan, CLNORM_PROGRAM_BACKWARD, "bwd_partial_rows_wg", &wg, out);
    if (status == CLNORM_SUCCESS && wg != plan->bwd_wg) {
        plan->bwd_wg = wg; /* the backward blocking follows (clnorm_plan_backward_setup) */
        clnorm_plan_backward_setup(plan);
    }
    return status;
}

clnorm_blocking clnorm_plan_blocking(const clnorm_plan *plan, const clnorm_view *v, size_t cols,
                                     size_t wg)
{
    if (!wg || column_shape(v))
        return make_blocking(v, cols, plan->ctx->tuning.block);
    size_t cus = plan->ctx->info.compute_units ? plan->ctx->info.compute_units : 1;
    size_t block = COOP_MAX_BLOCK;
    clnorm_blocking b = make_blocking(v, cols, block);
    while (block / 2 >= COOP_MIN_BLOCK && v->P * v->R * b.nblk < COOP_BLOCKS_PER_CU * cus) {
        block /= 2;
        b = make_blocking(v, cols, block);
    }
    /* Groups shorter than a work-group (channels-first images of a few pixels) would leave
     * most of it idle: a work-item per block does better there. */
    if (v->Q * v->S / b.nblk < wg)
        return make_blocking(v, cols, plan->ctx->tuning.block);
    b.wg = wg;
    b.work_items = v->P * v->R * b.nblk * b.wg;
    return b;
}

clnorm_status clnorm_plan_kernel(clnorm_plan *plan, cl_program program, const char *name,
                                 cl_kernel *out)
{
    return create_kernel(plan, program, name, out);
}

static clnorm_status create_kernel(clnorm_plan *plan, cl_program program, const char *name,
                                   cl_kernel *out)
{
    cl_int err;
    *out = clCreateKernel(program, name, &err);
    if (err != CL_SUCCESS)
        return clnorm_fail_cl(plan->ctx, err, "clCreateKernel", name);
    size_t n = plan->nlimits;
    if (n < sizeof plan->limits / sizeof plan->limits[0]) {
        plan->limits[n].kernel = *out;
        plan->limits[n].most = clnorm_kernel_max_local(plan->ctx, *out);
        plan->nlimits = n + 1;
    }
    return CLNORM_SUCCESS;
}

static double mib(size_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

clnorm_status clnorm_plan_scratch_make(clnorm_plan *plan, const clnorm_scratch_need *need,
                                       size_t count)
{
    clnorm_context *ctx = plan->ctx;
    const clnorm_device_info *info = &ctx->info;
    cl_mem made[8] = {NULL};
    size_t total = 0;
    clnorm_status status = CLNORM_SUCCESS;
    if (count > sizeof made / sizeof made[0])
        return clnorm_fail(ctx, CLNORM_ERROR_UNSUPPORTED, "scratch: too many buffers");
    for (size_t i = 0; i < count; ++i) {
        if (*need[i].mem)
            continue;
        if (info->max_alloc && need[i].bytes > info->max_alloc)
            return clnorm_fail(ctx, CLNORM_ERROR_UNSUPPORTED,
                               "scratch: %s needs %zu bytes (%.1f MiB), over the device's largest "
                               "allocation of %llu bytes (%.1f MiB, CL_DEVICE_MAX_MEM_ALLOC_SIZE)",
                               need[i].what, need[i].bytes, mib(need[i].bytes),
                               (unsigned long long)info->max_alloc, mib(info->max_alloc));
        total += need[i].bytes;
    }
    if (info->global_mem && total > info->global_mem)
        return clnorm_fail(ctx, CLNORM_ERROR_OUT_OF_MEMORY,
                           "scratch: %zu bytes (%.1f MiB) needed, over the device's memory of %llu "
                           "bytes (%.1f MiB, CL_DEVICE_GLOBAL_MEM_SIZE)",
                           total, mib(total), (unsigned long long)info->global_mem,
                           mib(info->global_mem));
    for (size_t i = 0; i < count && !status; ++i) {
        if (*need[i].mem)
            continue;
        cl_int err;
        /* Zero-sized buffers are not allowed; a small one keeps the argument list uniform. */
        size_t bytes = need[i].bytes ? need[i].bytes : 16;
        made[i] = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
        if (err != CL_SUCCESS) {
            char what[160];
            snprintf(what, sizeof what, "%s of %zu bytes, %.1f MiB", need[i].what, bytes,
                     mib(bytes));
            status = clnorm_fail_cl(ctx, err, "clCreateBuffer", what);
            if (err == CL_INVALID_BUFFER_SIZE) /* more than this device can allocate */
                status = CLNORM_ERROR_UNSUPPORTED;
        }
    }
    /* All or none: a later call tries again from the same state. */
    for (size_t i = 0; i < count; ++i) {
        if (!made[i])
            continue;
        if (status) {
            clReleaseMemObject(made[i]);
        } else {
            *need[i].mem = made[i];
            plan->scratch_held += need[i].bytes;
        }
    }
    return status;
}

clnorm_status clnorm_plan_forward_scratch(clnorm_plan *plan)
{
    clnorm_scratch_need need[] = {
        {&plan->partials, plan->partials_bytes, "partial statistics"},
        {&plan->stats, plan->stats_bytes, "statistics"},
        {&plan->table, plan->table_bytes, "apply table"},
    };
    return clnorm_plan_scratch_make(plan, need, sizeof need / sizeof need[0]);
}

size_t clnorm_plan_epilogue_bytes(const clnorm_plan *plan)
{
    return plan->elements * clnorm_dtype_size(plan->desc.dtype);
}

size_t clnorm_plan_scratch_bytes(const clnorm_plan *plan, clnorm_scratch which)
{
    if (!plan)
        return 0;
    switch (which) {
    case CLNORM_SCRATCH_HELD: {
        pthread_mutex_lock((pthread_mutex_t *)&plan->lock);
        size_t held = plan->scratch_held;
        pthread_mutex_unlock((pthread_mutex_t *)&plan->lock);
        return held;
    }
    case CLNORM_SCRATCH_FORWARD:
        return plan->partials_bytes + plan->stats_bytes + plan->table_bytes;
    case CLNORM_SCRATCH_BACKWARD:
        return plan->bwd_partials_bytes + plan->coef_bytes + plan->param_partials_bytes +
               plan->bwd_row_partials_bytes;
    case CLNORM_SCRATCH_EPILOGUE:
        return plan->desc.activation ? clnorm_plan_epilogue_bytes(plan) : 0;
    }
    return 0;
}

void clnorm_plan_program_options(const clnorm_plan *plan, clnorm_program which, char *out,
                                 size_t size)
{
    if (plan->elements == 0)
        out[0] = '\0';
    else
        program_options(plan, which == CLNORM_PROGRAM_BACKWARD,
                        which == CLNORM_PROGRAM_BACKWARD ? plan->bwd_wg : plan->coop_wg, out, size);
}

static clnorm_status plan_make(clnorm_context *ctx, const clnorm_desc *desc, int build,
                               clnorm_plan **out);

clnorm_status clnorm_plan_create(clnorm_context *ctx, const clnorm_desc *desc, clnorm_plan **out)
{
    return plan_make(ctx, desc, 1, out);
}

clnorm_status clnorm_plan_prepare(clnorm_context *ctx, const clnorm_desc *desc,
                                  clnorm_plan **out)
{
    return plan_make(ctx, desc, 0, out);
}

static clnorm_status plan_make(clnorm_context *ctx, const clnorm_desc *desc, int build,
                               clnorm_plan **out)
{
    clnorm_status status;
    clnorm_plan *plan = NULL;
    if (!ctx)
        return clnorm_fail(NULL, CLNORM_ERROR_INVALID_ARGUMENT, "ctx: NULL");
    clnorm_error_clear(ctx);
    if (!out)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "out: NULL");
    *out = NULL;
    status = clnorm_desc_check(ctx, desc);
    if (status != CLNORM_SUCCESS)
        return status;

    plan = calloc(1, sizeof *plan);
    if (!plan)
        return clnorm_fail(ctx, CLNORM_ERROR_OUT_OF_MEMORY, "plan: out of memory");
    if (pthread_mutex_init(&plan->lock, NULL) != 0) {
        free(plan);
        return clnorm_fail(ctx, CLNORM_ERROR_OUT_OF_MEMORY, "plan: cannot create its lock");
    }
    atomic_fetch_add(&ctx->refs, 1);
    plan->ctx = ctx;
    plan->desc = *desc;
    const clnorm_desc *d = &plan->desc;
    const clnorm_device_info *info = &ctx->info;
    int gpu = info->cls == CLNORM_CLASS_GPU;
    plan->elements = d->n * d->c * d->d;
    plan->view = make_view(d);
    plan->stats_count = plan->view.P * plan->view.R / plan->view.members;
    int per_sample = d->kind == CLNORM_LAYER || d->kind == CLNORM_RMS;
    plan->table_size = per_sample ? 0 : d->kind == CLNORM_BATCH ? d->c : d->n * d->c;
    plan->local_size = ctx->tuning.local;
    if (plan->local_size > info->max_work_group)
        plan->local_size = info->max_work_group;
    size_t wg = clnorm_halve_to(COOP_WG, info->max_work_group);
    plan->coop_wg = gpu && wg >= COOP_MIN_WG ? wg : 0;

    /* One channel is the same in either layout: channels-first rows are long, not one element. */
    int apply_mode = per_sample ? 2 : (d->layout == CLNORM_NHWC && d->d > 1 && d->c > 1) ? 1 : 0;
    plan->apply_mode = apply_mode;
    plan->apply_rowlen = apply_mode == 2 ? d->c * d->d : apply_mode == 1 ? d->c : d->d;
    plan->apply_rows_per_sample = apply_mode == 2 ? 1 : apply_mode == 1 ? d->d : d->c;
    /* Channels-last with 2..7 channels on a CPU: rows of C elements would leave the vectors
     * idle, so statistics and apply read whole samples with lanes cycling through the channels
     * (CLNORM_NARROW), and the statistics blocks hold the tuned block of elements, not rows. */
    int narrow = !gpu && apply_mode == 1 && d->c < COLS ? (int)d->c : 0;
    if (narrow) {
        plan->apply_rowlen = d->c * d->d;
        plan->apply_rows_per_sample = 1;
    }
    plan->apply_local = gpu ? 256 : plan->local_size;
    if (plan->apply_local > info->max_work_group)
        plan->apply_local = info->max_work_group;
    size_t chunk_max = ctx->tuning.chunk_max;
    if (gpu) {
        plan->apply_chunk = chunk_max;
    } else {
        /* Enough chunks for every core to get several, each long enough to stream. */
        size_t want = ceil_div(plan->elements, (size_t)info->compute_units * 8 + 1);
        size_t least = chunk_max < 1024 ? chunk_max : 1024;
        plan->apply_chunk = round_up(want < least ? least : want > chunk_max ? chunk_max : want, 8);
        /* where one row's chunks are work-items enough for every core */
        plan->apply_across =
            apply_mode == 2 && d->n > 1 &&
            clnorm_plan_items_local(plan, ceil_div(plan->apply_rowlen, plan->apply_chunk)) != 0;
    }

    if (plan->elements == 0) { /* a valid no-op: nothing to compile or allocate */
        *out = plan;
        return CLNORM_SUCCESS;
    }
    size_t cols = gpu ? 1 : COLS;
    /* Column statistics: 64 or 32 columns (runs of whole cache lines, independent chains) per
     * work-item where R allows. Rows of up to 1024 columns measured: against 8-column tiles,
     * SOL 0.72-1.00 for 0.51-0.72 on GROUP 4x320x4096/32 channels-last forward, 0.89-1.04 for
     * 0.63-0.76 on BATCH 8x256x1024 channels-last backward. (Rows over 128 had taken 8-column
     * tiles since a comparison of separate processes, which on the VM measured where each
     * process's memory landed as much as the kernels.) The narrow path cuts blocks by its R
     * columns. */
    const clnorm_view *v = &plan->view;
    int wide = !gpu && v->S == 1 && v->R > 1 && v->R <= 1024;
    size_t ct = wide && v->R % 64 == 0 ? 64 : wide && v->R % 32 == 0 ? 32 : cols;
    plan->narrow = narrow;
    plan->col_tile = ct;
    plan->bwd_col_tile = ct;
    if (!gpu && d->activation && v->S == 1 && v->R > 1 && (v->R % 32 == 0))
        plan->bwd_col_tile = v->R % 64 == 0 ? 64 : 32;
    /* Non-temporal stores for outputs too large to be read back from cache (forward's y,
     * backward's dx in x's storage; the larger decides, one flag for both programs). */
    size_t xsize = clnorm_dtype_size(d->dtype), ysize = clnorm_dtype_size(clnorm_y_storage(d));
    size_t out_bytes = plan->elements * (xsize > ysize ? xsize : ysize);
    plan->stream = ctx->tuning.stream_min && out_bytes >= ctx->tuning.stream_min;

    /* Only GPU programs hold the work-group kernels (CLNORM_WG): CPUs never run them, and
     * compiling them cost a CPU program's first build time. The forward program is built now;
     * the backward one at the first backward call, for the size forward settled on. */
    plan->bwd_wg = plan->coop_wg;
    if (!build) {
        *out = plan;
        return CLNORM_SUCCESS;
    }
    cl_program program;
    if ((status = pass_program(plan, CLNORM_PROGRAM_FORWARD, "stats_partial_rows_wg",
                               &plan->coop_wg, &program)))
        goto fail;
    plan->bwd_wg = plan->coop_wg;
    plan->blocking = clnorm_plan_blocking(plan, v, narrow ? (size_t)narrow : ct, plan->coop_wg);
    choose_fused(plan, narrow);
    const char *rows_kernel = plan->blocking.wg ? "stats_partial_rows_wg" : "stats_partial_rows";
    if ((status = create_kernel(plan, program, rows_kernel, &plan->partial_rows)) ||
        (status = create_kernel(plan, program, "stats_partial_cols", &plan->partial_cols)) ||
        (status = create_kernel(plan, program, "stats_finalize", &plan->finalize)) ||
        (status = create_kernel(plan, program, "stats_from_running", &plan->from_running)) ||
        (status = create_kernel(plan, program, "apply", &plan->apply)) ||
        (plan->fused_block && (status = create_kernel(plan, program, clnorm_fused_name(plan),
                                                      &plan->fused))))
        goto fail;
    clnorm_plan_backward_setup(plan);
    /* Sizes only: the first call that needs them allocates (clnorm_plan_forward_scratch). */
    plan->partials_bytes = plan->view.P * plan->view.R * plan->blocking.nblk * 2 * sizeof(float);
    plan->stats_bytes = plan->stats_count * 2 * sizeof(float);
    plan->table_bytes = plan->table_size * 3 * sizeof(float);
    *out = plan;
    return CLNORM_SUCCESS;
fail:
    clnorm_plan_release(plan);
    return status;
}

void clnorm_plan_release(clnorm_plan *plan)
{
    if (!plan)
        return;
    cl_kernel kernels[] = {plan->partial_rows, plan->partial_cols, plan->finalize,
                           plan->from_running, plan->apply,        plan->fused};
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; ++i)
        if (kernels[i])
            clReleaseKernel(kernels[i]);
    cl_mem mems[] = {plan->partials, plan->stats, plan->table};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; ++i)
        if (mems[i])
            clReleaseMemObject(mems[i]);
    clnorm_plan_backward_release(plan);
    clnorm_plan_release(plan->zero_batch);
    if (plan->last)
        clReleaseEvent(plan->last);
    pthread_mutex_destroy(&plan->lock);
    clnorm_context_release(plan->ctx);
    free(plan);
}

size_t clnorm_plan_stats_count(const clnorm_plan *plan) { return plan ? plan->stats_count : 0; }

size_t clnorm_plan_sums_count(const clnorm_plan *plan)
{
    if (!plan)
        return 0;
    const clnorm_desc *d = &plan->desc;
    switch (d->kind) {
    case CLNORM_BATCH: return d->c;
    case CLNORM_LAYER:
    case CLNORM_RMS: return d->n;
    default: return d->n * d->c;
    }
}

const clnorm_desc *clnorm_plan_desc(const clnorm_plan *plan) { return plan ? &plan->desc : NULL; }

clnorm_context *clnorm_plan_context(const clnorm_plan *plan) { return plan ? plan->ctx : NULL; }

clnorm_status clnorm_plan_zero_batch(clnorm_plan *plan, clnorm_plan **out)
{
    if (!plan->zero_batch) {
        clnorm_desc d = plan->desc;
        d.n = 1; /* d kept: the program is then the one the other parts' plans use */
        clnorm_status s = plan_make(plan->ctx, &d, 1, &plan->zero_batch);
        if (s)
            return s;
    }
    *out = plan->zero_batch;
    return CLNORM_SUCCESS;
}

size_t clnorm_param_bytes(const clnorm_desc *d)
{
    int per_sample = d->kind == CLNORM_LAYER || d->kind == CLNORM_RMS;
    return (per_sample ? d->c * d->d : d->c) * sizeof(float);
}

clnorm_status clnorm_check_call(const clnorm_plan *plan, clnorm_mode mode,
                                const clnorm_buffers *b, int given, int *use_running)
{
    const clnorm_context *ctx = plan->ctx;
    const clnorm_desc *d = &plan->desc;
    if (mode != CLNORM_TRAINING && mode != CLNORM_INFERENCE)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "mode: unknown value %d",
                           (int)mode);
    if (!b)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "bufs: NULL");
    int has_running = d->kind == CLNORM_BATCH || d->kind == CLNORM_INSTANCE;
    if (!has_running && (b->running_mean || b->running_var))
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "bufs.%s: %s normalization has no running statistics",
                           b->running_mean ? "running_mean" : "running_var",
                           clnorm_kind_name(d->kind));
    if (!b->running_mean != !b->running_var)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "bufs.%s: required when bufs.%s is given",
                           b->running_mean ? "running_var" : "running_mean",
                           b->running_mean ? "running_mean" : "running_var");
    *use_running = !given && b->running_mean && mode == CLNORM_INFERENCE;
    if (!given && !*use_running && plan->elements > 0) {
        /* Own statistics over a single element have no variance (PyTorch refuses too). */
        if (d->kind == CLNORM_BATCH && d->n * d->d == 1)
            return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                               "desc.n: BATCH statistics over n*d = 1 value per channel; "
                               "need more than one, or running statistics in INFERENCE");
        if (d->kind == CLNORM_INSTANCE && d->d == 1)
            return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                               "desc.d: INSTANCE statistics over d = 1 value per (n, c); "
                               "need more than one, or running statistics in INFERENCE");
    }
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_epilogue_check(const clnorm_plan *plan, const clnorm_buffers *b,
                                    int backward)
{
    const clnorm_context *ctx = plan->ctx;
    const clnorm_desc *d = &plan->desc;
    if (b->sum && !b->skip)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "bufs.sum: given without bufs.skip (sum receives x + skip)");
    if (!backward && b->dresidual)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "bufs.dresidual: backward's output; forward does not write it");
    const char *field = b->skip       ? "skip"
                        : b->residual ? "residual"
                        : b->sum      ? "sum"
                                      : NULL;
    if (field && clnorm_dtype_is_integer(d->dtype))
        return clnorm_fail(ctx, CLNORM_ERROR_UNSUPPORTED,
                           "bufs.%s: epilogue tensors are stored as x, and integer storage (%s) "
                           "takes none (the activation works there)",
                           field, d->dtype == CLNORM_U8 ? "u8" : "u16");
    return CLNORM_SUCCESS;
}

int clnorm_epilogue_any(const clnorm_plan *plan, const clnorm_buffers *b)
{
    return b->skip || b->residual || b->sum || plan->desc.activation != CLNORM_ACTIVATION_NONE;
}

clnorm_status clnorm_set_args(const clnorm_context *ctx, cl_kernel kernel, const char *name,
                              const clnorm_karg *args, cl_uint count)
{
    for (cl_uint i = 0; i < count; ++i) {
        cl_int err = clSetKernelArg(kernel, i, args[i].size, args[i].value);
        if (err != CL_SUCCESS) {
            char what[128];
            snprintf(what, sizeof what, "%s, argument %u", name, i);
            return clnorm_fail_cl(ctx, err, "clSetKernelArg", what);
        }
    }
    return CLNORM_SUCCESS;
}
