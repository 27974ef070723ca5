/*
 * clnorm_backward: dx, dgamma and dbeta (see kernels/backward.cl for the passes).
 *
 * TRAINING (and INFERENCE without running statistics) differentiates through the batch's own
 * statistics, taken from save_mean/save_invstd when given, else recomputed by forward's
 * statistics passes. INFERENCE with running statistics treats them as constants.
 */
#include "internal.h"

#include <stdlib.h>

#define PARAM_BLOCK_ROWS 512 /* samples one work-item sums for LAYER/RMS dgamma/dbeta */
/* The fused LAYER/RMS backward on CPUs needs work-items for every core. Its rows, and the
 * channels-first groups of bwd_groups, stay in a core's cache between the sums and dx while
 * they are at most tuning.fused_max elements (the forward row kernel's limit). */
/* Channels-first BATCH takes bwd_groups from segments (D) of this many elements: at 49 and 64
 * it took 1.1-1.6x the blocked passes' time, at 98 the same, from 128 up 0.57-0.97x (in-process
 * A/B, clnorm-bench --ab fused=1). */
#define BATCH_MIN_SEGMENT 128

static int per_sample(const clnorm_desc *d)
{
    return d->kind == CLNORM_LAYER || d->kind == CLNORM_RMS;
}

void clnorm_plan_backward_setup(clnorm_plan *plan)
{
    const clnorm_desc *d = &plan->desc;
    int gpu = plan->ctx->info.cls == CLNORM_CLASS_GPU;
    size_t cols = gpu ? 1 : 8;
    clnorm_view v = plan->view;
    if (d->kind == CLNORM_GROUP && !(d->layout == CLNORM_NHWC && d->d > 1))
        v = (clnorm_view){d->n * d->c, 1, 1, d->d, d->c / d->groups}; /* a slice per (n, c) */
    /* Column slices are forward's columns: the same tiles (CLNORM_CT, or the narrow path's
     * whole runs of C < 8 columns) read whole rows of x and dy. */
    if (!gpu && v.S == 1 && v.R > 1)
        cols = plan->narrow ? (size_t)plan->narrow : plan->bwd_col_tile;
    plan->bwd_view = v;
    plan->bwd_blocking = clnorm_plan_blocking(plan, &v, cols, plan->bwd_wg);
    plan->coef_size = per_sample(d) ? d->n : plan->table_size;
    /* Sizes only: the first backward allocates (clnorm_plan_backward_scratch). */
    plan->bwd_partials_bytes = v.P * v.R * plan->bwd_blocking.nblk * 2 * sizeof(float);
    plan->coef_bytes = plan->coef_size * 4 * sizeof(float);
    size_t L = d->c * d->d, cores = plan->ctx->info.compute_units;
    size_t fused_max = plan->ctx->tuning.fused_max;
    if (cores == 0)
        cores = 1;
    if (per_sample(d) && !gpu && L <= fused_max && d->n >= 4 * cores) {
        size_t want = clnorm_plan_row_items(plan);
        plan->bwd_rows_per_item = (d->n + want - 1) / want;
        plan->bwd_row_items = (d->n + plan->bwd_rows_per_item - 1) / plan->bwd_rows_per_item;
        plan->bwd_row_partials_bytes = plan->bwd_row_items * 2 * L * sizeof(float);
    }
    /* A channels-first group in cache: cpg channels of D (INSTANCE, GROUP), or one channel of
     * n segments of D (BATCH). */
    size_t cpg = d->kind == CLNORM_GROUP ? d->c / d->groups : 1;
    int chans_first = v.Q == 1 && v.R == 1 && v.S > 1;
    int batch_first = d->kind == CLNORM_BATCH && v.P == 1 && v.S >= BATCH_MIN_SEGMENT;
    int sliced = (d->kind == CLNORM_INSTANCE || d->kind == CLNORM_GROUP) && chans_first;
    size_t group_elems = batch_first ? d->n * d->d : cpg * d->d;
    size_t groups_local = clnorm_plan_items_local(plan, plan->stats_count);
    if (!gpu && (batch_first || sliced) && group_elems <= fused_max && groups_local)
        plan->bwd_groups_local = groups_local;
    if (per_sample(d)) {
        clnorm_view pv = {1, d->n, L, 1, 1};
        plan->param_blocking = clnorm_plan_blocking(plan, &pv, cols, plan->bwd_wg);
        plan->param_blocking.nqb = (d->n + PARAM_BLOCK_ROWS - 1) / PARAM_BLOCK_ROWS;
        plan->param_blocking.qb = PARAM_BLOCK_ROWS;
        plan->param_blocking.work_items = plan->param_blocking.nqb * ((L + cols - 1) / cols);
        /* One block of samples writes dgamma and dbeta itself: no partials (n = 1 with a
         * 2 GiB sample would otherwise need 8 bytes of scratch per element). */
        if (plan->param_blocking.nqb > 1)
            plan->param_partials_bytes = L * plan->param_blocking.nqb * 2 * sizeof(float);
    }
}

/* Backward's program and kernels, at the plan's first backward call (plan lock held). */
static clnorm_status backward_kernels(clnorm_plan *plan)
{
    if (plan->bwd_apply)
        return CLNORM_SUCCESS;
    cl_program program;
    clnorm_status s = clnorm_plan_backward_program(plan, &program);
    if (s)
        return s;
    const char *rows_kernel = plan->bwd_blocking.wg ? "bwd_partial_rows_wg" : "bwd_partial_rows";
    struct {
        const char *name;
        cl_kernel *out;
        int wanted;
    } kernels[] = {
        {rows_kernel, &plan->bwd_partial_rows, 1},
        {"bwd_partial_cols", &plan->bwd_partial_cols, 1},
        {"bwd_finalize", &plan->bwd_finalize, 1},
        {"bwd_param_partial", &plan->bwd_param_partial, 1},
        {"bwd_param_finalize", &plan->bwd_param_finalize, 1},
        {"bwd_running_stats", &plan->bwd_running_stats, 1},
        {"bwd_rows", &plan->bwd_rows, plan->bwd_rows_per_item != 0},
        {"bwd_rows_param_finalize", &plan->bwd_rows_param_finalize, plan->bwd_rows_per_item != 0},
        /* its column tiles are whole vectors: not the small forward's slabs of other widths */
        {"bwd_slab", &plan->bwd_slab, plan->fused_slab && plan->view.R % 8 == 0},
        {"bwd_groups", &plan->bwd_groups, plan->bwd_groups_local != 0},
        {"bwd_epilogue", &plan->bwd_epilogue, 1},
        {"bwd_slice_sums", &plan->bwd_slice_sums, 1},
        {"bwd_apply", &plan->bwd_apply, 1}, /* last: its presence says all are made */
    };
    size_t nlimits = plan->nlimits;
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0] && !s; ++i)
        if (kernels[i].wanted)
            s = clnorm_plan_kernel(plan, program, kernels[i].name, kernels[i].out);
    if (s) { /* all or none: the next call tries again */
        plan->nlimits = nlimits;
        for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; ++i)
            if (*kernels[i].out) {
                clReleaseKernel(*kernels[i].out);
                *kernels[i].out = NULL;
            }
    }
    return s;
}

clnorm_status clnorm_plan_backward_scratch(clnorm_plan *plan)
{
    clnorm_scratch_need need[] = {
        {&plan->bwd_partials, plan->bwd_partials_bytes, "backward partial sums"},
        {&plan->coef, plan->coef_bytes, "backward coefficients"},
        {&plan->param_partials, plan->param_partials_bytes, "parameter partial sums"},
        {&plan->bwd_row_partials, plan->bwd_row_partials_bytes, "row parameter partials"},
    };
    /* Row parameter partials exist only where the one-pass row kernel does. */
    return clnorm_plan_scratch_make(plan, need, plan->bwd_rows_per_item ? 4 : 3);
}

void clnorm_plan_backward_release(clnorm_plan *plan)
{
    cl_kernel kernels[] = {plan->bwd_partial_rows,   plan->bwd_partial_cols,
                           plan->bwd_finalize,       plan->bwd_param_partial,
                           plan->bwd_param_finalize, plan->bwd_running_stats,
                           plan->bwd_apply,          plan->bwd_rows,
                           plan->bwd_rows_param_finalize, plan->bwd_slab,
                           plan->bwd_groups,         plan->bwd_epilogue,
                           plan->bwd_slice_sums};
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; ++i)
        if (kernels[i])
            clReleaseKernel(kernels[i]);
    cl_mem mems[] = {plan->bwd_partials, plan->coef, plan->param_partials,
                     plan->bwd_row_partials, plan->epi_dz};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; ++i)
        if (mems[i])
            clReleaseMemObject(mems[i]);
}

/* Where a call takes its statistics from. */
typedef struct stats_source {
    cl_mem mean, invstd;
    cl_ulong moff, ioff;
    int use_running; /* constants: INFERENCE with running statistics */
    int own;         /* in plan->stats: the running ones, or recomputed from x */
} stats_source;

/* Which call checks its buffers: the statistics are recomputed when save_* is absent only in
 * clnorm_backward; the split calls take them as given. extra: the call's own argument (the
 * sums), checked with the rest for overlaps. */
typedef enum backward_call { WHOLE, SUMS, WITH_SUMS } backward_call;

static clnorm_status check_backward(const clnorm_plan *plan, clnorm_mode mode,
                                    const clnorm_buffers *b, backward_call call,
                                    const clnorm_role *extra, stats_source *src)
{
    const clnorm_context *ctx = plan->ctx;
    const clnorm_desc *d = &plan->desc;
    clnorm_status s;
    if ((s = clnorm_check_call(plan, mode, b, call != WHOLE, &src->use_running)) ||
        (s = clnorm_epilogue_check(plan, b, 1)))
        return s;
    src->use_running = b->running_mean && mode == CLNORM_INFERENCE;
    if (call != WHOLE && clnorm_epilogue_any(plan, b))
        return clnorm_fail(ctx, CLNORM_ERROR_UNSUPPORTED,
                           "%s: the split backward (clnorm_backward_sums, "
                           "clnorm_backward_with_sums) takes no epilogue; clnorm_backward does",
                           d->activation != CLNORM_ACTIVATION_NONE ? "desc.activation"
                           : b->skip                               ? "bufs.skip"
                           : b->residual                           ? "bufs.residual"
                                                                   : "bufs.sum");
    size_t bytes = plan->elements * clnorm_dtype_size(d->dtype);
    size_t params = clnorm_param_bytes(d);
    size_t stats = plan->stats_count * sizeof(float);
    int data = plan->elements > 0;
    int rms = d->kind == CLNORM_RMS, act = d->activation != CLNORM_ACTIVATION_NONE;
    if (!rms && !b->save_mean != !b->save_invstd)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "bufs.%s: required when bufs.%s is given (both or neither)",
                           b->save_mean ? "save_invstd" : "save_mean",
                           b->save_mean ? "save_mean" : "save_invstd");
    if (call != WHOLE && !src->use_running && !b->save_invstd)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "bufs.save_invstd: required%s: the statistics forward normalized "
                           "with (or, in CLNORM_INFERENCE, running statistics)",
                           rms ? "" : " with bufs.save_mean");
    /* Statistics: the running ones as constants, else save_* when given (RMS has no mean). */
    int R = CLNORM_READS, W = CLNORM_WRITES;
    int out = call == SUMS ? 0 : W; /* the sums call writes none of the outputs */
    int saved = src->use_running ? 0 : R;
    size_t running = d->c * sizeof(float);
    clnorm_role roles[] = {
        {"bufs.x", b->x, bytes, data, R, NULL},
        {"bufs.dy", b->dy, bytes, data, R, NULL},
        {"bufs.dx", b->dx, bytes, 0, out, "bufs.dy"},
        {"bufs.gamma", b->gamma, params, 0, R, NULL},
        {"bufs.dgamma", b->dgamma, params, 0, out, NULL},
        {"bufs.dbeta", b->dbeta, params, 0, out, NULL},
        {"bufs.running_mean", b->running_mean, running, 0, src->use_running ? R : 0, NULL},
        {"bufs.running_var", b->running_var, running, 0, src->use_running ? R : 0, NULL},
        {"bufs.save_mean", b->save_mean, stats, 0, rms ? 0 : saved, NULL}, /* RMS: unused */
        {"bufs.save_invstd", b->save_invstd, stats, 0, saved, NULL},
        /* the epilogue: z = gamma*hhat + beta + residual is recomputed where act' needs it */
        {"bufs.skip", b->skip, bytes, 0, R, NULL},
        {"bufs.residual", b->residual, bytes, 0, act ? R : 0, NULL},
        {"bufs.beta", b->beta, params, 0, act ? R : 0, NULL},
        {"bufs.dresidual", b->dresidual, bytes, 0, W, NULL},
        {"bufs.sum", b->sum, bytes, 0, R, NULL},
        extra ? *extra : (clnorm_role){"", NULL, 0, 0, 0, NULL},
    };
    if ((s = clnorm_roles_check(ctx, roles, sizeof roles / sizeof roles[0])))
        return s;
    if (!src->use_running && b->save_invstd) {
        /* RMS: NULL, the kernels' sign that there is no mean (a save_mean given is unused) */
        src->mean = rms ? NULL : b->save_mean;
        src->invstd = b->save_invstd;
        src->moff = src->ioff = 0;
    } else {
        src->own = 1; /* plan->stats is allocated by the call (clnorm_plan_forward_scratch) */
        src->moff = 0;
        src->ioff = plan->stats_count;
    }
    return CLNORM_SUCCESS;
}

static clnorm_status enqueue_finalize(clnorm_plan *plan, clnorm_chain *chain,
                                      const clnorm_buffers *b, const stats_source *src,
                                      cl_mem part, cl_ulong nblk, float count);

/* The group's own element count, for the finalize of sums over this plan's elements alone. */
static float own_count(const clnorm_plan *plan)
{
    return (float)(plan->elements / plan->stats_count);
}

/* Whether the sums pass can form the epilogue's gradient itself (and write it for the passes
 * after): the per-work-item row and column kernels, but the narrow column path. */
static int sums_take_epilogue(const clnorm_plan *plan)
{
    const clnorm_blocking *bl = &plan->bwd_blocking;
    return bl->cols ? !plan->narrow : !bl->wg;
}

/* The partial sums per block of every slice, into plan->bwd_partials; with act nonzero, of
 * dy*act'(z) (sums_take_epilogue), written to dzo when given. */
static clnorm_status enqueue_partials(clnorm_plan *plan, clnorm_chain *chain,
                                      const clnorm_buffers *b, const stats_source *src,
                                      cl_int act, cl_mem dzo)
{
    const clnorm_context *ctx = plan->ctx;
    const clnorm_desc *d = &plan->desc;
    const clnorm_view *v = &plan->bwd_view;
    const clnorm_blocking *bl = &plan->bwd_blocking;
    cl_ulong P = v->P, Q = v->Q, R = v->R, S = v->S, members = v->members, C = d->c;
    cl_ulong qb = bl->qb, sb = bl->sb, sblocks = bl->sblocks, nqb = bl->nqb;
    clnorm_status s;
    if (bl->cols) {
        clnorm_karg args[] = {KARG(b->x),       KARG(b->skip),   KARG(b->dy),
                              KARG(plan->bwd_partials), KARG(src->mean), KARG(src->moff),
                              KARG(src->invstd), KARG(src->ioff), KARG(P),
                              KARG(Q),          KARG(R),         KARG(qb),
                              KARG(nqb),        KARG(members),   KARG(b->gamma),
                              KARG(b->beta),    KARG(b->residual), KARG(dzo),
                              KARG(act),        KARG(d->activation_alpha)};
        if ((s = clnorm_set_args(ctx, plan->bwd_partial_cols, "bwd_partial_cols", args, 20)) ||
            (s = clnorm_chain_step(chain, plan->bwd_partial_cols, "bwd_partial_cols",
                                   bl->work_items, plan->local_size)))
            return s;
    } else {
        clnorm_karg args[] = {KARG(b->x), KARG(b->skip),      KARG(b->dy),      KARG(plan->bwd_partials),
                              KARG(src->mean), KARG(src->moff),  KARG(src->invstd),
                              KARG(src->ioff), KARG(b->gamma),   KARG(P),
                              KARG(Q),         KARG(R),          KARG(S),
                              KARG(qb),        KARG(sb),         KARG(sblocks),
                              KARG(nqb),       KARG(members),    KARG(b->beta),
                              KARG(b->residual), KARG(dzo),      KARG(act),
                              KARG(d->activation_alpha), KARG(C)};
        /* the work-group kernel takes no epilogue (its calls form it in bwd_epilogue) */
        const char *name = bl->wg ? "bwd_partial_rows_wg" : "bwd_partial_rows";
        if ((s = clnorm_set_args(ctx, plan->bwd_partial_rows, name, args, bl->wg ? 18 : 24)) ||
            (s = clnorm_chain_step(chain, plan->bwd_partial_rows, name, bl->work_items,
                                   bl->wg ? bl->wg : plan->local_size)))
            return s;
    }
    return CLNORM_SUCCESS;
}

/* The sums pass (enqueue_partials) and their merge into dgamma, dbeta and dx's coefficients. */
static clnorm_status enqueue_sums(clnorm_plan *plan, clnorm_chain *chain,
                                  const clnorm_buffers *b, const stats_source *src, cl_int act,
                                  cl_mem dzo)
{
    clnorm_status s = enqueue_partials(plan, chain, b, src, act, dzo);
    return s ? s
             : enqueue_finalize(plan, chain, b, src, plan->bwd_partials, plan->bwd_blocking.nblk,
                                own_count(plan));
}

/* Channels-last INSTANCE and GROUP samples in cache: sums and dx in one pass per sample, then
 * dgamma and dbeta from its single partial per slice. */
static clnorm_status enqueue_slab(clnorm_plan *plan, clnorm_chain *chain,
                                  const clnorm_buffers *b, const stats_source *src)
{
    const clnorm_view *v = &plan->bwd_view;
    cl_ulong T = plan->coef_size, P = v->P, Q = v->Q, R = v->R, members = v->members;
    cl_ulong qb = plan->fused_block;
    clnorm_karg args[] = {KARG(b->x), KARG(b->skip),      KARG(b->dy),         KARG(b->dx),
                          KARG(plan->bwd_partials), KARG(src->mean), KARG(src->moff),
                          KARG(src->invstd), KARG(src->ioff),   KARG(b->gamma),
                          KARG(plan->coef), KARG(T),            KARG(P),
                          KARG(Q),         KARG(R),             KARG(qb),
                          KARG(members)};
    clnorm_status s;
    if ((s = clnorm_set_args(plan->ctx, plan->bwd_slab, "bwd_slab", args, 17)) ||
        (s = clnorm_chain_step(chain, plan->bwd_slab, "bwd_slab", P, plan->fused_local)))
        return s;
    return b->dgamma || b->dbeta
               ? enqueue_finalize(plan, chain, b, src, plan->bwd_partials, 1, own_count(plan))
               : CLNORM_SUCCESS;
}

/* Channels-first groups in cache (INSTANCE, GROUP, BATCH): sums and dx in one pass per group,
 * then dgamma and dbeta from its single partial per slice. */
static clnorm_status enqueue_groups(clnorm_plan *plan, clnorm_chain *chain,
                                    const clnorm_buffers *b, const stats_source *src)
{
    const clnorm_desc *d = &plan->desc;
    cl_ulong G = plan->stats_count, C = d->c, D = d->d, block = plan->ctx->tuning.block;
    cl_ulong cpg = d->kind == CLNORM_GROUP ? d->c / d->groups : 1;
    int batch = d->kind == CLNORM_BATCH; /* a channel's samples are its segments */
    cl_ulong nseg = batch ? d->n : 1, segstride = batch ? C * D : 0;
    clnorm_karg args[] = {KARG(b->x), KARG(b->skip),          KARG(b->dy),       KARG(b->dx),
                          KARG(plan->bwd_partials), KARG(src->mean), KARG(src->moff),
                          KARG(src->invstd),   KARG(src->ioff),   KARG(b->gamma),
                          KARG(G),             KARG(C),           KARG(cpg),
                          KARG(D),             KARG(nseg),        KARG(segstride),
                          KARG(block)};
    clnorm_status s;
    if ((s = clnorm_set_args(plan->ctx, plan->bwd_groups, "bwd_groups", args, 17)) ||
        (s = clnorm_chain_step(chain, plan->bwd_groups, "bwd_groups", G,
                               plan->bwd_groups_local)))
        return s;
    return b->dgamma || b->dbeta
               ? enqueue_finalize(plan, chain, b, src, plan->bwd_partials, 1, own_count(plan))
               : CLNORM_SUCCESS;
}

/* dgamma, dbeta and the coefficients of dx from the slices' nblk partials each in part, with
 * count elements per statistics group. */
static clnorm_status enqueue_finalize(clnorm_plan *plan, clnorm_chain *chain,
                                      const clnorm_buffers *b, const stats_source *src,
                                      cl_mem part, cl_ulong nblk, float count)
{
    const clnorm_desc *d = &plan->desc;
    cl_ulong T = plan->coef_size, C = d->c;
    cl_ulong cpg = d->kind == CLNORM_GROUP ? d->c / d->groups : 1;
    cl_ulong nitems = per_sample(d) ? d->n : d->c / cpg;
    cl_ulong nsamples = d->kind == CLNORM_BATCH ? 1 : d->n;
    cl_ulong tstride = d->kind == CLNORM_BATCH ? 0 : d->c;
    cl_int constant_stats = src->use_running;
    clnorm_karg args[] = {KARG(part),               KARG(nblk),      KARG(src->mean),
                          KARG(src->moff),          KARG(src->invstd), KARG(src->ioff),
                          KARG(b->gamma),           KARG(plan->coef), KARG(T),
                          KARG(b->dgamma),          KARG(b->dbeta),  KARG(nitems),
                          KARG(nsamples),           KARG(cpg),       KARG(C),
                          KARG(tstride),            KARG(count),     KARG(constant_stats)};
    clnorm_status s = clnorm_set_args(plan->ctx, plan->bwd_finalize, "bwd_finalize", args, 18);
    if (s)
        return s;
    return clnorm_chain_step(chain, plan->bwd_finalize, "bwd_finalize", nitems, plan->local_size);
}

static clnorm_status enqueue_param_sums(clnorm_plan *plan, clnorm_chain *chain,
                                        const clnorm_buffers *b, const stats_source *src)
{
    const clnorm_context *ctx = plan->ctx;
    const clnorm_blocking *pb = &plan->param_blocking;
    cl_ulong N = plan->desc.n, L = plan->desc.c * plan->desc.d, qb = pb->qb, nqb = pb->nqb;
    clnorm_status s;
    /* A single block of samples sums into dgamma and dbeta directly (part NULL). */
    cl_mem part = nqb > 1 ? plan->param_partials : NULL;
    clnorm_karg args[] = {KARG(b->x), KARG(b->skip),      KARG(b->dy),     KARG(part),     KARG(src->mean),
                          KARG(src->moff), KARG(src->invstd), KARG(src->ioff), KARG(N),
                          KARG(L),         KARG(qb),        KARG(nqb),      KARG(b->dgamma),
                          KARG(b->dbeta)};
    if ((s = clnorm_set_args(ctx, plan->bwd_param_partial, "bwd_param_partial", args, 14)) ||
        (s = clnorm_chain_step(chain, plan->bwd_param_partial, "bwd_param_partial",
                               pb->work_items, plan->local_size)))
        return s;
    if (nqb == 1)
        return CLNORM_SUCCESS;
    clnorm_karg fin[] = {KARG(plan->param_partials), KARG(nqb), KARG(L), KARG(b->dgamma),
                         KARG(b->dbeta)};
    if ((s = clnorm_set_args(ctx, plan->bwd_param_finalize, "bwd_param_finalize", fin, 5)))
        return s;
    return clnorm_chain_step(chain, plan->bwd_param_finalize, "bwd_param_finalize", L,
                             plan->local_size);
}

static clnorm_status enqueue_rows(clnorm_plan *plan, clnorm_chain *chain,
                                  const clnorm_buffers *b, const stats_source *src)
{
    const clnorm_context *ctx = plan->ctx;
    cl_ulong N = plan->desc.n, L = plan->desc.c * plan->desc.d;
    cl_ulong rows = plan->bwd_rows_per_item, items = plan->bwd_row_items;
    cl_ulong block = ctx->tuning.block;
    cl_int want_dx = b->dx != NULL, want_params = b->dgamma || b->dbeta;
    clnorm_status s;
    clnorm_karg args[] = {KARG(b->x), KARG(b->skip),        KARG(b->dy),     KARG(b->dx),
                          KARG(src->mean),   KARG(src->moff), KARG(src->invstd),
                          KARG(src->ioff),   KARG(b->gamma),  KARG(plan->bwd_row_partials),
                          KARG(N),           KARG(L),         KARG(rows),
                          KARG(block),       KARG(want_dx),   KARG(want_params)};
    if ((s = clnorm_set_args(ctx, plan->bwd_rows, "bwd_rows", args, 16)) ||
        (s = clnorm_chain_step(chain, plan->bwd_rows, "bwd_rows", items, 1)))
        return s;
    if (!want_params)
        return CLNORM_SUCCESS;
    clnorm_karg fin[] = {KARG(plan->bwd_row_partials), KARG(items), KARG(L), KARG(b->dgamma),
                         KARG(b->dbeta)};
    if ((s = clnorm_set_args(ctx, plan->bwd_rows_param_finalize, "bwd_rows_param_finalize", fin,
                             5)))
        return s;
    return clnorm_chain_step(chain, plan->bwd_rows_param_finalize, "bwd_rows_param_finalize", L,
                             plan->local_size);
}

static clnorm_status enqueue_running_stats(clnorm_plan *plan, clnorm_chain *chain,
                                           const clnorm_buffers *b)
{
    cl_ulong G = plan->stats_count, C = plan->desc.c;
    clnorm_karg args[] = {KARG(b->running_mean), KARG(b->running_var), KARG(plan->stats),
                          KARG(G),               KARG(C),              KARG(plan->desc.eps)};
    clnorm_status s =
        clnorm_set_args(plan->ctx, plan->bwd_running_stats, "bwd_running_stats", args, 6);
    if (s)
        return s;
    return clnorm_chain_step(chain, plan->bwd_running_stats, "bwd_running_stats", G,
                             plan->local_size);
}

/* dx; with act nonzero, of dy*act'(z) recomputed (EPI_IN_APPLY). */
static clnorm_status enqueue_dx(clnorm_plan *plan, clnorm_chain *chain, const clnorm_buffers *b,
                                cl_int act)
{
    const clnorm_desc *d = &plan->desc;
    cl_ulong T = plan->coef_size, tstride = d->kind == CLNORM_BATCH ? 0 : d->c;
    /* Rows as apply walks them (a narrow channels-last row is a whole sample). */
    cl_ulong total = plan->elements, rowlen = plan->apply_rowlen;
    cl_ulong rows = plan->apply_rows_per_sample, chunk = plan->apply_chunk;
    clnorm_karg args[] = {KARG(b->x), KARG(b->skip),   KARG(b->dy),     KARG(b->dx),   KARG(plan->coef),
                          KARG(T),      KARG(b->gamma),  KARG(total),   KARG(rowlen),
                          KARG(rows),   KARG(tstride),   KARG(chunk),
                          KARG(b->beta), KARG(b->residual), KARG(act),
                          KARG(d->activation_alpha)};
    clnorm_status s = clnorm_set_args(plan->ctx, plan->bwd_apply, "bwd_apply", args, 16);
    if (s)
        return s;
    size_t work = (plan->elements + plan->apply_chunk - 1) / plan->apply_chunk;
    return clnorm_chain_step(chain, plan->bwd_apply, "bwd_apply", work, plan->apply_local);
}

/*
 * Where a call with an activation forms dy*act'(z), which every pass reads in place of dy:
 *   EPI_FIRST     bwd_epilogue, before the passes, into dresidual or scratch (the one-pass CPU
 *                 kernels, the work-group row kernel and the narrow column path);
 *   EPI_IN_SUMS   the sums pass, reading x, residual and dy once for both, writes it (into
 *                 dresidual or scratch) for the passes after;
 *   EPI_IN_APPLY  the sums pass and bwd_apply each recompute it, nothing stored: for ReLU
 *                 and leaky ReLU, where no dresidual is asked for and no LAYER/RMS
 *                 parameter pass reads it.
 */
typedef enum epilogue_route { EPI_NONE, EPI_FIRST, EPI_IN_SUMS, EPI_IN_APPLY } epilogue_route;

static epilogue_route epi_route(const clnorm_plan *plan, const clnorm_buffers *b,
                                const stats_source *src)
{
    if (plan->desc.activation == CLNORM_ACTIVATION_NONE)
        return EPI_NONE;
    int one_pass = plan->bwd_rows_per_item ||
                   ((plan->bwd_slab || plan->bwd_groups) && b->dx && !src->use_running);
    if (one_pass || !sums_take_epilogue(plan))
        return EPI_FIRST;
    /* recomputing pays for the cheap activations only: exp, erf and tanh cost more than
     * storing the gradient and reading it back */
    int cheap = plan->desc.activation <= CLNORM_ACTIVATION_LEAKY_RELU;
    return b->dresidual || per_sample(&plan->desc) || plan->narrow || !cheap ? EPI_IN_SUMS
                                                                             : EPI_IN_APPLY;
}

/* An epilogue's gradient dz = dy*act'(z) into dz, from the statistics in src. */
static clnorm_status enqueue_epilogue(clnorm_plan *plan, clnorm_chain *chain,
                                      const clnorm_buffers *b, const stats_source *src, cl_mem dz)
{
    const clnorm_desc *d = &plan->desc;
    cl_ulong total = plan->elements, rowlen = plan->apply_rowlen;
    cl_ulong rows = plan->apply_rows_per_sample, chunk = plan->apply_chunk, C = d->c;
    cl_ulong nc = d->kind == CLNORM_BATCH ? 0 : d->c; /* (n*nc + c) / cpg: the group */
    cl_ulong cpg = d->kind == CLNORM_GROUP ? d->c / d->groups : 1;
    cl_int act = (cl_int)d->activation;
    clnorm_karg args[] = {KARG(b->x),      KARG(b->skip),       KARG(b->residual),
                          KARG(b->dy),     KARG(dz),            KARG(src->mean),
                          KARG(src->moff), KARG(src->invstd),   KARG(src->ioff),
                          KARG(b->gamma),  KARG(b->beta),       KARG(total),
                          KARG(rowlen),    KARG(rows),          KARG(chunk),
                          KARG(C),         KARG(nc),            KARG(cpg),
                          KARG(act),       KARG(d->activation_alpha)};
    clnorm_status s = clnorm_set_args(plan->ctx, plan->bwd_epilogue, "bwd_epilogue", args,
                                      sizeof args / sizeof args[0]);
    if (s)
        return s;
    size_t work = (plan->elements + plan->apply_chunk - 1) / plan->apply_chunk;
    return clnorm_chain_step(chain, plan->bwd_epilogue, "bwd_epilogue", work, plan->apply_local);
}

/* The statistics (from running ones, or recomputed when save_* is absent), the epilogue's
 * gradient, then the passes (which read it as their dy). */
static clnorm_status enqueue_backward(clnorm_plan *plan, clnorm_chain *chain,
                                      const clnorm_buffers *bufs, const stats_source *src)
{
    clnorm_status s = CLNORM_SUCCESS;
    clnorm_buffers eb = *bufs;
    const clnorm_buffers *b = &eb;
    if (bufs->sum) { /* h as forward stored it, in place of x + skip */
        eb.x = bufs->sum;
        eb.skip = NULL;
    }
    if (src->use_running)
        s = enqueue_running_stats(plan, chain, b);
    else if (src->own)
        s = clnorm_forward_statistics(plan, chain, b->x, b->skip);
    if (s)
        return s;
    cl_int act = (cl_int)plan->desc.activation;
    cl_mem dz = bufs->dresidual ? bufs->dresidual : plan->epi_dz;
    epilogue_route route = epi_route(plan, bufs, src);
    int in_sums = route == EPI_IN_SUMS || route == EPI_IN_APPLY;
    if (route == EPI_FIRST || (!act && bufs->dresidual)) { /* without act, dresidual is dy */
        if ((s = enqueue_epilogue(plan, chain, b, src, dz)))
            return s;
        if (act)
            eb.dy = dz;
        if (!bufs->dx && !bufs->dgamma && !bufs->dbeta)
            return CLNORM_SUCCESS;
    }
    if (plan->bwd_rows_per_item)
        return enqueue_rows(plan, chain, b, src);
    if (plan->bwd_slab && b->dx && !src->use_running)
        return enqueue_slab(plan, chain, b, src);
    if (plan->bwd_groups && b->dx && !src->use_running)
        return enqueue_groups(plan, chain, b, src);
    int rows = per_sample(&plan->desc);
    if ((b->dx || !rows || in_sums) &&
        (s = enqueue_sums(plan, chain, b, src, in_sums ? act : 0,
                          route == EPI_IN_SUMS ? dz : NULL)))
        return s;
    if (route == EPI_IN_SUMS)
        eb.dy = dz;
    if (rows && (b->dgamma || b->dbeta) && (s = enqueue_param_sums(plan, chain, b, src)))
        return s;
    return b->dx ? enqueue_dx(plan, chain, b, route == EPI_IN_APPLY ? act : 0) : CLNORM_SUCCESS;
}

/* Backward is floating-point, with y stored as x: dy and dx take x's storage. */
static clnorm_status check_storage(const clnorm_plan *plan)
{
    if (clnorm_dtype_is_integer(plan->desc.dtype))
        return clnorm_fail(plan->ctx, CLNORM_ERROR_UNSUPPORTED,
                           "desc.dtype: integer storage (%s) is for forward only; backward takes "
                           "f32, f16 or bf16",
                           plan->desc.dtype == CLNORM_U8 ? "u8" : "u16");
    if (plan->desc.y_dtype != CLNORM_Y_AS_X)
        return clnorm_fail(plan->ctx, CLNORM_ERROR_UNSUPPORTED,
                           "desc.y_dtype: backward takes plans whose y is stored as x (dy and dx "
                           "are in x's storage); this plan's y_dtype is %d",
                           (int)plan->desc.y_dtype);
    return CLNORM_SUCCESS;
}

/* Scratch for a call on plan k (the plan itself, or its zero_batch), and the statistics in
 * k's own buffer when they are not save_*: the running ones, or recomputed from x. */
static clnorm_status prepare(clnorm_plan *k, clnorm_chain *chain, const clnorm_buffers *b,
                             stats_source *src)
{
    clnorm_status s;
    if (src->own && (s = clnorm_plan_forward_scratch(k)))
        return s;
    if ((s = clnorm_plan_backward_scratch(k)))
        return s;
    if (!src->own)
        return CLNORM_SUCCESS;
    src->invstd = k->stats;
    src->mean = k->desc.kind == CLNORM_RMS ? NULL : k->stats;
    return src->use_running ? enqueue_running_stats(k, chain, b)
                            : clnorm_forward_statistics(k, chain, b->x, NULL);
}

clnorm_status clnorm_backward(clnorm_plan *plan, clnorm_mode mode, const clnorm_buffers *bufs,
                              cl_uint num_wait, const cl_event *wait, cl_event *done)
{
    clnorm_status s = clnorm_call_begin(plan, num_wait, wait, done);
    if (s || (s = check_storage(plan)))
        return s;
    stats_source src = {0};
    if ((s = check_backward(plan, mode, bufs, WHOLE, NULL, &src)))
        return s;

    clnorm_chain chain;
    pthread_mutex_lock(&plan->lock);
    int work = plan->elements > 0 &&
               (bufs->dx || bufs->dgamma || bufs->dbeta || bufs->dresidual);
    if (work && (s = backward_kernels(plan))) {
        pthread_mutex_unlock(&plan->lock);
        return s;
    }
    clnorm_chain_begin(&chain, plan, num_wait, wait);
    if (work) {
        if (src.own)
            s = clnorm_plan_forward_scratch(plan);
        epilogue_route route = epi_route(plan, bufs, &src);
        if (!s && (route == EPI_FIRST || route == EPI_IN_SUMS) && !bufs->dresidual) {
            clnorm_scratch_need dz = {&plan->epi_dz, clnorm_plan_epilogue_bytes(plan),
                                      "epilogue gradient"};
            s = clnorm_plan_scratch_make(plan, &dz, 1);
        }
        if (!s && !(s = clnorm_plan_backward_scratch(plan))) {
            if (src.own) {
                src.invstd = plan->stats;
                src.mean = plan->desc.kind == CLNORM_RMS ? NULL : plan->stats;
            }
            s = enqueue_backward(plan, &chain, bufs, &src);
        }
    }
    s = clnorm_chain_end(&chain, s, done);
    pthread_mutex_unlock(&plan->lock);
    return s;
}

/* ---- the split backward: sums out, merged sums in ------------------------------------- */

clnorm_status clnorm_backward_check(clnorm_plan *plan, clnorm_mode mode,
                                    const clnorm_buffers *bufs, int given)
{
    clnorm_status s = clnorm_call_begin(plan, 0, NULL, NULL);
    stats_source src = {0};
    if (s || (s = check_storage(plan)) ||
        (s = check_backward(plan, mode, bufs, given ? WITH_SUMS : WHOLE, NULL, &src)) || !given)
        return s;
    /* What the split calls will need, made now: the backward program and scratch (forward's
     * too, for running statistics), and for BATCH with n = 0 the plan that writes dgamma and
     * dbeta. */
    pthread_mutex_lock(&plan->lock);
    clnorm_plan *k = plan;
    if (plan->elements == 0 && plan->desc.kind == CLNORM_BATCH)
        s = clnorm_plan_zero_batch(plan, &k);
    if (!s && (k != plan || plan->elements > 0) && !(s = backward_kernels(k)) &&
        !(s = clnorm_plan_backward_scratch(k)) && src.own)
        s = clnorm_plan_forward_scratch(k);
    pthread_mutex_unlock(&plan->lock);
    return s;
}

static clnorm_role sums_role(const clnorm_plan *plan, cl_mem sums, int access)
{
    return (clnorm_role){"sums", sums,
                         clnorm_plan_sums_count(plan) * CLNORM_SUMS_FLOATS * sizeof(float), 1,
                         access, NULL};
}

clnorm_status clnorm_backward_sums(clnorm_plan *plan, clnorm_mode mode,
                                   const clnorm_buffers *bufs, cl_mem sums, cl_uint num_wait,
                                   const cl_event *wait, cl_event *done)
{
    clnorm_status s = clnorm_call_begin(plan, num_wait, wait, done);
    stats_source src = {0};
    if (s)
        return s;
    clnorm_role out = sums_role(plan, sums, CLNORM_WRITES);
    if ((s = check_storage(plan)) ||
        (s = check_backward(plan, mode, bufs, SUMS, &out, &src)))
        return s;
    size_t bytes = out.bytes;
    clnorm_chain chain;
    pthread_mutex_lock(&plan->lock);
    if (plan->elements > 0 && (s = backward_kernels(plan))) {
        pthread_mutex_unlock(&plan->lock);
        return s;
    }
    clnorm_chain_begin(&chain, plan, num_wait, wait);
    if (plan->elements > 0) {
        if (!(s = prepare(plan, &chain, bufs, &src)) &&
            !(s = enqueue_partials(plan, &chain, bufs, &src, 0, NULL))) {
            const clnorm_view *v = &plan->bwd_view;
            cl_ulong nblk = plan->bwd_blocking.nblk, nslices = v->P * v->R;
            clnorm_karg args[] = {KARG(plan->bwd_partials), KARG(nblk), KARG(nslices),
                                  KARG(sums)};
            if (!(s = clnorm_set_args(plan->ctx, plan->bwd_slice_sums, "bwd_slice_sums", args,
                                      4)))
                s = clnorm_chain_step(&chain, plan->bwd_slice_sums, "bwd_slice_sums", nslices,
                                      plan->local_size);
        }
    } else if (bytes) { /* BATCH with n = 0: C slices of nothing */
        s = clnorm_chain_fill_zero(&chain, sums, bytes, "sums");
    }
    s = clnorm_chain_end(&chain, s, done);
    pthread_mutex_unlock(&plan->lock);
    return s;
}

clnorm_status clnorm_backward_with_sums(clnorm_plan *plan, clnorm_mode mode, cl_mem sums,
                                        size_t count, const clnorm_buffers *bufs,
                                        cl_uint num_wait, const cl_event *wait, cl_event *done)
{
    clnorm_status s = clnorm_call_begin(plan, num_wait, wait, done);
    stats_source src = {0};
    if (s)
        return s;
    clnorm_role given = sums_role(plan, sums, CLNORM_READS);
    if ((s = check_storage(plan)) ||
        (s = check_backward(plan, mode, bufs, WITH_SUMS, &given, &src)))
        return s;
    size_t own = plan->stats_count ? plan->elements / plan->stats_count : 0;
    if (count < own || count == 0)
        return clnorm_fail(plan->ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "count: %zu elements per statistics group over every part, fewer than "
                           "this plan's own %zu%s",
                           count, own, own ? "" : " (and never 0)");
    const clnorm_desc *d = &plan->desc;
    int params = bufs->dgamma || bufs->dbeta;
    /* n = 0: only BATCH has anything to write (dgamma and dbeta, the merged sums) */
    int per_channel = plan->elements == 0 && d->kind == CLNORM_BATCH && params;
    int work = plan->elements > 0 && (bufs->dx || params);
    clnorm_chain chain;
    pthread_mutex_lock(&plan->lock);
    clnorm_plan *k = plan; /* whose kernels and scratch run the passes */
    if (per_channel)
        s = clnorm_plan_zero_batch(plan, &k);
    if (!s && (work || per_channel))
        s = backward_kernels(k);
    if (s) {
        pthread_mutex_unlock(&plan->lock);
        return s;
    }
    clnorm_chain_begin(&chain, plan, num_wait, wait);
    if ((work || per_channel) && !(s = prepare(k, &chain, bufs, &src))) {
        int rows = per_sample(d);
        if (bufs->dx || !rows)
            s = enqueue_finalize(k, &chain, bufs, &src, sums, 1, (float)count);
        if (!s && rows && params && work)
            s = enqueue_param_sums(plan, &chain, bufs, &src);
        if (!s && bufs->dx && work)
            s = enqueue_dx(plan, &chain, bufs, 0);
    }
    s = clnorm_chain_end(&chain, s, done);
    pthread_mutex_unlock(&plan->lock);
    return s;
}
