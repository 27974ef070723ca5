/*
 * clnorm_forward: validate every buffer, then enqueue statistics (partials, merge) and apply.
 * Nothing is enqueued unless everything checks out, so a rejected call writes nothing.
 */
#include "internal.h"

static clnorm_status check_forward(const clnorm_plan *plan, clnorm_mode mode,
                                   const clnorm_buffers *b, int *use_running)
{
    const clnorm_context *ctx = plan->ctx;
    const clnorm_desc *d = &plan->desc;
    clnorm_status s;
    if (mode != CLNORM_TRAINING && mode != CLNORM_INFERENCE)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "mode: unknown value %d",
                           (int)mode);
    if (!b)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "bufs: NULL");
    size_t bytes = plan->elements * clnorm_dtype_size(d->dtype);
    int per_sample = d->kind == CLNORM_LAYER || d->kind == CLNORM_RMS;
    size_t params = (per_sample ? d->c * d->d : d->c) * sizeof(float);
    size_t stats = plan->stats_count * sizeof(float);
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
    int data = plan->elements > 0; /* n == 0: nothing to read or write */
    if ((s = clnorm_buffer_check(ctx, b->x, bytes, data, "bufs.x")) ||
        (s = clnorm_buffer_check(ctx, b->y, bytes, data, "bufs.y")) ||
        (s = clnorm_buffer_check(ctx, b->gamma, params, 0, "bufs.gamma")) ||
        (s = clnorm_buffer_check(ctx, b->beta, params, 0, "bufs.beta")) ||
        (s = clnorm_buffer_check(ctx, b->running_mean, d->c * sizeof(float), 0,
                                 "bufs.running_mean")) ||
        (s = clnorm_buffer_check(ctx, b->running_var, d->c * sizeof(float), 0,
                                 "bufs.running_var")) ||
        (s = clnorm_buffer_check(ctx, b->save_mean, stats, 0, "bufs.save_mean")) ||
        (s = clnorm_buffer_check(ctx, b->save_invstd, stats, 0, "bufs.save_invstd")))
        return s;
    *use_running = b->running_mean && mode == CLNORM_INFERENCE;
    if (!*use_running && plan->elements > 0) {
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

/* Partials and merge: writes plan->stats and plan->table, save_* and running statistics. */
static clnorm_status enqueue_statistics(clnorm_plan *plan, clnorm_chain *chain,
                                        clnorm_mode mode, const clnorm_buffers *b)
{
    const clnorm_context *ctx = plan->ctx;
    const clnorm_desc *d = &plan->desc;
    const clnorm_view *v = &plan->view;
    const clnorm_blocking *bl = &plan->blocking;
    clnorm_status s;
    cl_ulong P = v->P, Q = v->Q, R = v->R, S = v->S;
    cl_ulong qb = bl->qb, sb = bl->sb, sblocks = bl->sblocks, nqb = bl->nqb, nblk = bl->nblk;
    if (bl->cols) {
        clnorm_karg args[] = {KARG(b->x), KARG(plan->partials), KARG(P), KARG(Q), KARG(R),
                              KARG(qb), KARG(nqb)};
        if ((s = clnorm_set_args(ctx, plan->partial_cols, "stats_partial_cols", args, 7)) ||
            (s = clnorm_chain_step(chain, plan->partial_cols, "stats_partial_cols",
                                   bl->work_items, plan->local_size)))
            return s;
    } else {
        clnorm_karg args[] = {KARG(b->x), KARG(plan->partials), KARG(P),       KARG(Q),
                              KARG(R),    KARG(S),              KARG(qb),      KARG(sb),
                              KARG(sblocks), KARG(nqb)};
        if ((s = clnorm_set_args(ctx, plan->partial_rows, "stats_partial_rows", args, 10)) ||
            (s = clnorm_chain_step(chain, plan->partial_rows, "stats_partial_rows",
                                   bl->work_items, plan->local_size)))
            return s;
    }

    /* INSTANCE with running statistics: one work-item per channel, over every sample, so that
     * the running update sees the whole batch. Otherwise one work-item per group. */
    int update = b->running_mean && mode == CLNORM_TRAINING;
    int per_channel = update && d->kind == CLNORM_INSTANCE;
    cl_ulong nitems = per_channel ? d->c : plan->stats_count;
    cl_ulong per_item = per_channel ? d->n : 1;
    cl_ulong item_stride = per_channel ? d->c : 0;
    cl_ulong members = v->members, T = plan->table_size, C = d->c, G = plan->stats_count;
    cl_ulong groups_per_sample = d->kind == CLNORM_GROUP ? d->groups : d->c;
    cl_ulong chans_per_group = d->kind == CLNORM_GROUP ? d->c / d->groups : 1;
    cl_int update_running = update;
    clnorm_karg args[] = {KARG(plan->partials),
                          KARG(plan->stats),
                          KARG(G),
                          KARG(plan->table),
                          KARG(T),
                          KARG(b->gamma),
                          KARG(b->beta),
                          KARG(b->save_mean),
                          KARG(b->save_invstd),
                          KARG(b->running_mean),
                          KARG(b->running_var),
                          KARG(nitems),
                          KARG(per_item),
                          KARG(item_stride),
                          KARG(nblk),
                          KARG(members),
                          KARG(Q),
                          KARG(S),
                          KARG(qb),
                          KARG(sb),
                          KARG(sblocks),
                          KARG(d->eps),
                          KARG(d->momentum),
                          KARG(update_running),
                          KARG(groups_per_sample),
                          KARG(chans_per_group),
                          KARG(C)};
    if ((s = clnorm_set_args(ctx, plan->finalize, "stats_finalize", args,
                             sizeof args / sizeof args[0])))
        return s;
    return clnorm_chain_step(chain, plan->finalize, "stats_finalize", nitems, plan->local_size);
}

static clnorm_status enqueue_running_table(clnorm_plan *plan, clnorm_chain *chain,
                                           const clnorm_buffers *b)
{
    cl_ulong C = plan->desc.c;
    clnorm_karg args[] = {KARG(b->running_mean), KARG(b->running_var), KARG(b->gamma),
                          KARG(b->beta),         KARG(plan->table),    KARG(C),
                          KARG(plan->desc.eps)};
    clnorm_status s = clnorm_set_args(plan->ctx, plan->from_running, "stats_from_running", args, 7);
    if (s)
        return s;
    return clnorm_chain_step(chain, plan->from_running, "stats_from_running", C,
                             plan->local_size);
}

static clnorm_status enqueue_apply(clnorm_plan *plan, clnorm_chain *chain,
                                   const clnorm_buffers *b, int use_running)
{
    const clnorm_desc *d = &plan->desc;
    /* With running statistics the table is per channel only, the same for every sample. */
    cl_ulong T = use_running ? d->c : plan->table_size;
    cl_ulong tstride = use_running || d->kind == CLNORM_BATCH ? 0 : d->c;
    cl_ulong total = plan->elements, rowlen = plan->apply_rowlen;
    cl_ulong rows = plan->apply_rows_per_sample, chunk = plan->apply_chunk;
    cl_ulong G = plan->stats_count;
    clnorm_karg args[] = {KARG(b->x),     KARG(b->y),    KARG(plan->table), KARG(T),
                          KARG(plan->stats), KARG(G),    KARG(b->gamma),  KARG(b->beta),
                          KARG(total),    KARG(rowlen),  KARG(rows),      KARG(tstride),
                          KARG(chunk)};
    clnorm_status s = clnorm_set_args(plan->ctx, plan->apply, "apply", args, 13);
    if (s)
        return s;
    size_t work = (plan->elements + plan->apply_chunk - 1) / plan->apply_chunk;
    return clnorm_chain_step(chain, plan->apply, "apply", work, plan->apply_local);
}

clnorm_status clnorm_forward(clnorm_plan *plan, clnorm_mode mode, const clnorm_buffers *bufs,
                             cl_uint num_wait, const cl_event *wait, cl_event *done)
{
    if (!plan)
        return clnorm_fail(NULL, CLNORM_ERROR_INVALID_ARGUMENT, "plan: NULL");
    clnorm_error_clear(plan->ctx);
    if (done)
        *done = NULL;
    if (num_wait && !wait)
        return clnorm_fail(plan->ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "wait: NULL with num_wait = %u", num_wait);
    int use_running = 0;
    clnorm_status s = check_forward(plan, mode, bufs, &use_running);
    if (s)
        return s;

    clnorm_chain chain;
    pthread_mutex_lock(&plan->lock);
    clnorm_chain_begin(&chain, plan, num_wait, wait);
    if (plan->elements > 0) {
        s = use_running ? enqueue_running_table(plan, &chain, bufs)
                        : enqueue_statistics(plan, &chain, mode, bufs);
        if (!s)
            s = enqueue_apply(plan, &chain, bufs, use_running);
    }
    s = clnorm_chain_end(&chain, s, done);
    pthread_mutex_unlock(&plan->lock);
    return s;
}
