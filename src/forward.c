/*
 * clnorm_forward: validate every buffer, then enqueue statistics (partials, merge) and apply.
 * Nothing is enqueued unless everything checks out, so a rejected call writes nothing.
 */
#include "internal.h"

/* given: the statistics come with the call (clnorm_forward_with_moments), never from the
 * running ones, which only TRAINING touches, to update them. */
static clnorm_status check_forward(const clnorm_plan *plan, clnorm_mode mode,
                                   const clnorm_buffers *b, int given, const clnorm_role *extra,
                                   int *use_running)
{
    const clnorm_desc *d = &plan->desc;
    clnorm_status s;
    if ((s = clnorm_check_call(plan, mode, b, given, use_running)) ||
        (s = clnorm_epilogue_check(plan, b, 0)))
        return s;
    /* moments come from clnorm_moments of x: h = x + skip has none to match them */
    if (given && (b->skip || b->sum))
        return clnorm_fail(plan->ctx, CLNORM_ERROR_UNSUPPORTED,
                           "bufs.%s: clnorm_forward_with_moments normalizes x with the moments "
                           "given and takes no skip (add it first); residual and activation "
                           "apply as in clnorm_forward",
                           b->skip ? "skip" : "sum");
    size_t bytes = plan->elements * clnorm_dtype_size(d->dtype);
    size_t ybytes = plan->elements * clnorm_dtype_size(clnorm_y_storage(d));
    /* y in place of x only when it is stored the same way */
    const char *y_in_place = clnorm_y_storage(d) == d->dtype ? "bufs.x" : NULL;
    size_t stats = plan->stats_count * sizeof(float), params = clnorm_param_bytes(d);
    size_t running = d->c * sizeof(float);
    int data = plan->elements > 0; /* n == 0: nothing to read or write */
    int R = CLNORM_READS, W = CLNORM_WRITES;
    int run = *use_running ? R : mode == CLNORM_TRAINING ? R | W : 0;
    clnorm_role roles[] = {
        {"bufs.x", b->x, bytes, data, R, NULL},
        {"bufs.y", b->y, ybytes, data, W, y_in_place},
        {"bufs.gamma", b->gamma, params, 0, R, NULL},
        {"bufs.beta", b->beta, params, 0, R, NULL},
        {"bufs.running_mean", b->running_mean, running, 0, run, NULL},
        {"bufs.running_var", b->running_var, running, 0, run, NULL},
        /* RMS has no mean to save */
        {"bufs.save_mean", b->save_mean, stats, 0,
         *use_running || d->kind == CLNORM_RMS ? 0 : W, NULL},
        {"bufs.save_invstd", b->save_invstd, stats, 0, *use_running ? 0 : W, NULL},
        {"bufs.skip", b->skip, bytes, 0, R, NULL},
        {"bufs.residual", b->residual, bytes, 0, R, NULL},
        {"bufs.sum", b->sum, bytes, 0, W, "bufs.x bufs.skip"},
        /* the call's own argument (the moments given), checked with the rest for overlaps */
        extra ? *extra : (clnorm_role){"", NULL, 0, 0, 0, NULL},
    };
    return clnorm_roles_check(plan->ctx, roles, sizeof roles / sizeof roles[0]);
}

/* The merge of the partials, cut in blocks of qb x sb, nblk per group (sblocks per segment). */
/* moments_in: the groups' moments are given instead; moments_out: they are the result. */
static clnorm_status enqueue_finalize(clnorm_plan *plan, clnorm_chain *chain, clnorm_mode mode,
                                      const clnorm_buffers *b, cl_ulong nblk, cl_ulong qb,
                                      cl_ulong sb, cl_ulong sblocks, cl_mem moments_in,
                                      cl_mem moments_out)
{
    const clnorm_context *ctx = plan->ctx;
    const clnorm_desc *d = &plan->desc;
    const clnorm_view *v = &plan->view;
    clnorm_status s;
    cl_ulong Q = v->Q, S = v->S;
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
    cl_int update_running = update, rms = d->kind == CLNORM_RMS;
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
                          KARG(C),
                          KARG(rms),
                          KARG(moments_in),
                          KARG(moments_out)};
    if ((s = clnorm_set_args(ctx, plan->finalize, "stats_finalize", args,
                             sizeof args / sizeof args[0])))
        return s;
    return clnorm_chain_step(chain, plan->finalize, "stats_finalize", nitems, plan->local_size);
}

/* Partials and merge: writes plan->stats and plan->table, save_* and running statistics; or,
 * with moments_out, the moments alone. */
static clnorm_status enqueue_statistics(clnorm_plan *plan, clnorm_chain *chain,
                                        clnorm_mode mode, const clnorm_buffers *b,
                                        cl_mem moments_out)
{
    const clnorm_context *ctx = plan->ctx;
    const clnorm_view *v = &plan->view;
    const clnorm_blocking *bl = &plan->blocking;
    clnorm_status s;
    cl_ulong P = v->P, Q = v->Q, R = v->R, S = v->S;
    cl_ulong qb = bl->qb, sb = bl->sb, sblocks = bl->sblocks, nqb = bl->nqb;
    if (bl->cols) {
        clnorm_karg args[] = {KARG(b->x), KARG(b->skip), KARG(plan->partials), KARG(P),
                              KARG(Q),    KARG(R),       KARG(qb),             KARG(nqb)};
        if ((s = clnorm_set_args(ctx, plan->partial_cols, "stats_partial_cols", args, 8)) ||
            (s = clnorm_chain_step(chain, plan->partial_cols, "stats_partial_cols",
                                   bl->work_items, plan->local_size)))
            return s;
    } else {
        clnorm_karg args[] = {KARG(b->x), KARG(b->skip), KARG(plan->partials), KARG(P),
                              KARG(Q),    KARG(R),       KARG(S),              KARG(qb),
                              KARG(sb),   KARG(sblocks), KARG(nqb)};
        const char *name = bl->wg ? "stats_partial_rows_wg" : "stats_partial_rows";
        if ((s = clnorm_set_args(ctx, plan->partial_rows, name, args, 11)) ||
            (s = clnorm_chain_step(chain, plan->partial_rows, name, bl->work_items,
                                   bl->wg ? bl->wg : plan->local_size)))
            return s;
    }
    return enqueue_finalize(plan, chain, mode, b, bl->nblk, bl->qb, bl->sb, bl->sblocks, NULL,
                            moments_out);
}

/* Problems whose groups fit in cache: statistics and y in one kernel, and the merge only when
 * running statistics need the whole batch (the kernel leaves each group's (mean, M2) as its
 * single partial, a block of Q x S). */
static clnorm_status enqueue_fused(clnorm_plan *plan, clnorm_chain *chain, clnorm_mode mode,
                                   const clnorm_buffers *b, int use_running)
{
    const clnorm_desc *d = &plan->desc;
    cl_ulong G = plan->stats_count, Q = plan->view.Q, R = plan->view.R, S = plan->view.S;
    cl_ulong block = plan->fused_block;
    cl_ulong nseg = d->kind == CLNORM_GROUP ? d->c / d->groups : 1;
    cl_ulong gps = d->kind == CLNORM_GROUP ? d->groups : d->c;
    cl_ulong P = plan->view.P, T = plan->table_size, members = plan->view.members;
    cl_ulong rows = plan->fused_rows;
    cl_int rms = d->kind == CLNORM_RMS, act = (cl_int)d->activation;
    const char *name = clnorm_fused_name(plan);
    clnorm_status s;
    /* The partials only for the merge that updates the running statistics (norm_channels and
     * norm_cols update them themselves); plan->stats, which nothing reads after this call, not
     * at all: fewer buffers make a cheaper launch. Without the merge, the call is one launch. */
    int merge = !plan->fused_channels && b->running_mean && mode == CLNORM_TRAINING;
    chain->single = !merge;
    if (plan->fused_channels) {
        /* the running statistics: normalized with (INFERENCE) or updated (TRAINING) here */
        cl_ulong N = d->n, C = d->c, D = d->d;
        cl_int from_running = use_running, update = mode == CLNORM_TRAINING && b->running_mean;
        clnorm_karg args[] = {KARG(b->x),           KARG(b->skip),         KARG(b->y),
                              KARG(b->gamma),       KARG(b->beta),         KARG(b->save_mean),
                              KARG(b->save_invstd), KARG(b->running_mean), KARG(b->running_var),
                              KARG(N),              KARG(C),               KARG(D),
                              KARG(block),          KARG(d->eps),          KARG(d->momentum),
                              KARG(from_running),   KARG(update),          KARG(b->residual),
                              KARG(b->sum),         KARG(act),
                              KARG(d->activation_alpha)};
        if ((s = clnorm_set_args(plan->ctx, plan->fused, name, args, 21)))
            return s;
        return clnorm_chain_step(chain, plan->fused, name, plan->fused_items, plan->fused_local);
    }
    cl_mem part = merge ? plan->partials : NULL, none = NULL;
    if (plan->fused_slab) {
        clnorm_karg args[] = {KARG(b->x),           KARG(b->skip),      KARG(b->y),
                              KARG(part),           KARG(none),         KARG(G),
                              KARG(plan->table),    KARG(T),            KARG(b->gamma),
                              KARG(b->beta),        KARG(b->save_mean), KARG(b->save_invstd),
                              KARG(P),              KARG(Q),            KARG(R),
                              KARG(block),          KARG(members),      KARG(d->eps),
                              KARG(b->residual),    KARG(b->sum),       KARG(act),
                              KARG(d->activation_alpha)};
        s = clnorm_set_args(plan->ctx, plan->fused, name, args, 22);
    } else {
        clnorm_karg args[] = {KARG(b->x),         KARG(b->skip),        KARG(b->y),
                              KARG(part),         KARG(none),           KARG(G),
                              KARG(b->gamma),     KARG(b->beta),        KARG(b->save_mean),
                              KARG(b->save_invstd), KARG(S),            KARG(block),
                              KARG(nseg),         KARG(gps),            KARG(d->eps),
                              KARG(rms),          KARG(b->residual),    KARG(b->sum),
                              KARG(act),          KARG(d->activation_alpha), KARG(rows)};
        s = clnorm_set_args(plan->ctx, plan->fused, name, args, 21);
    }
    if (s ||
        (s = clnorm_chain_step(chain, plan->fused, name, plan->fused_items, plan->fused_local)))
        return s;
    if (merge)
        return enqueue_finalize(plan, chain, mode, b, 1, Q, S, 1, NULL, NULL);
    return CLNORM_SUCCESS;
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
    cl_int act = (cl_int)d->activation;
    clnorm_karg args[] = {KARG(b->x),        KARG(b->skip),    KARG(b->y),
                          KARG(plan->table), KARG(T),          KARG(plan->stats),
                          KARG(G),           KARG(b->gamma),   KARG(b->beta),
                          KARG(total),       KARG(rowlen),     KARG(rows),
                          KARG(tstride),     KARG(chunk),      KARG(b->residual),
                          KARG(b->sum),      KARG(act),        KARG(d->activation_alpha),
                          KARG(plan->apply_across)};
    clnorm_status s = clnorm_set_args(plan->ctx, plan->apply, "apply", args, 19);
    if (s)
        return s;
    size_t span = plan->apply_across ? plan->apply_rowlen : plan->elements;
    size_t work = (span + plan->apply_chunk - 1) / plan->apply_chunk;
    return clnorm_chain_step(chain, plan->apply, "apply", work, plan->apply_local);
}

clnorm_status clnorm_forward(clnorm_plan *plan, clnorm_mode mode, const clnorm_buffers *bufs,
                             cl_uint num_wait, const cl_event *wait, cl_event *done)
{
    clnorm_status s = clnorm_call_begin(plan, num_wait, wait, done);
    if (s)
        return s;
    int use_running = 0;
    s = check_forward(plan, mode, bufs, 0, NULL, &use_running);
    if (s)
        return s;

    clnorm_chain chain;
    pthread_mutex_lock(&plan->lock);
    clnorm_chain_begin(&chain, plan, num_wait, wait);
    if (plan->elements > 0 && !(s = clnorm_plan_forward_scratch(plan))) {
        if (plan->fused && (!use_running || plan->fused_channels)) {
            s = enqueue_fused(plan, &chain, mode, bufs, use_running);
        } else {
            s = use_running ? enqueue_running_table(plan, &chain, bufs)
                            : enqueue_statistics(plan, &chain, mode, bufs, NULL);
            if (!s)
                s = enqueue_apply(plan, &chain, bufs, use_running);
        }
    }
    s = clnorm_chain_end(&chain, s, done);
    pthread_mutex_unlock(&plan->lock);
    return s;
}

clnorm_status clnorm_forward_statistics(clnorm_plan *plan, clnorm_chain *chain, cl_mem x,
                                        cl_mem skip)
{
    clnorm_buffers b = {0};
    b.x = x;
    b.skip = skip;
    return enqueue_statistics(plan, chain, CLNORM_TRAINING, &b, NULL);
}

/* ---- statistics as a result ------------------------------------------------------------ */

clnorm_status clnorm_forward_check(clnorm_plan *plan, clnorm_mode mode,
                                   const clnorm_buffers *bufs, int given)
{
    clnorm_status s = clnorm_call_begin(plan, 0, NULL, NULL);
    int use_running = 0;
    if (s || (s = check_forward(plan, mode, bufs, given != 0, NULL, &use_running)) || !given)
        return s;
    /* What clnorm_forward_with_moments will need, made now: its scratch, and for BATCH with
     * n = 0 the plan whose kernels write the per-channel results. */
    pthread_mutex_lock(&plan->lock);
    clnorm_plan *k = plan;
    if (plan->elements == 0 && plan->desc.kind == CLNORM_BATCH)
        s = clnorm_plan_zero_batch(plan, &k);
    if (!s && (k != plan || plan->elements > 0))
        s = clnorm_plan_forward_scratch(k);
    pthread_mutex_unlock(&plan->lock);
    return s;
}

static clnorm_role moments_role(const clnorm_plan *plan, cl_mem moments, int access)
{
    return (clnorm_role){"moments", moments,
                         plan->stats_count * CLNORM_MOMENTS_FLOATS * sizeof(float), 1, access,
                         NULL};
}

clnorm_status clnorm_moments(clnorm_plan *plan, cl_mem x, cl_mem moments, cl_uint num_wait,
                             const cl_event *wait, cl_event *done)
{
    clnorm_status s = clnorm_call_begin(plan, num_wait, wait, done);
    if (s)
        return s;
    size_t bytes = plan->elements * clnorm_dtype_size(plan->desc.dtype);
    clnorm_role roles[] = {
        {"x", x, bytes, plan->elements > 0, CLNORM_READS, NULL},
        moments_role(plan, moments, CLNORM_WRITES),
    };
    size_t mbytes = roles[1].bytes;
    if ((s = clnorm_roles_check(plan->ctx, roles, 2)))
        return s;
    clnorm_buffers b = {0};
    b.x = x;
    clnorm_chain chain;
    pthread_mutex_lock(&plan->lock);
    clnorm_chain_begin(&chain, plan, num_wait, wait);
    if (plan->elements > 0) {
        if (!(s = clnorm_plan_forward_scratch(plan)))
            s = enqueue_statistics(plan, &chain, CLNORM_TRAINING, &b, moments);
    } else if (mbytes) { /* BATCH with n = 0: C groups of nothing */
        s = clnorm_chain_fill_zero(&chain, moments, mbytes, "moments");
    }
    s = clnorm_chain_end(&chain, s, done);
    pthread_mutex_unlock(&plan->lock);
    return s;
}

clnorm_status clnorm_forward_with_moments(clnorm_plan *plan, clnorm_mode mode, cl_mem moments,
                                          const clnorm_buffers *bufs, cl_uint num_wait,
                                          const cl_event *wait, cl_event *done)
{
    clnorm_status s = clnorm_call_begin(plan, num_wait, wait, done);
    if (s)
        return s;
    int use_running = 0;
    clnorm_role given = moments_role(plan, moments, CLNORM_READS);
    if ((s = check_forward(plan, mode, bufs, 1, &given, &use_running)))
        return s;
    const clnorm_desc *d = &plan->desc;
    int update = mode == CLNORM_TRAINING && bufs->running_mean;
    /* n = 0: only BATCH has anything to write (save_* and running statistics per channel) */
    int per_channel = plan->elements == 0 && d->kind == CLNORM_BATCH &&
                      (update || bufs->save_mean || bufs->save_invstd);
    clnorm_chain chain;
    pthread_mutex_lock(&plan->lock);
    clnorm_plan *k = plan; /* whose kernels and scratch run the passes */
    if (per_channel && (s = clnorm_plan_zero_batch(plan, &k))) {
        pthread_mutex_unlock(&plan->lock);
        return s;
    }
    clnorm_chain_begin(&chain, plan, num_wait, wait);
    if ((plan->elements > 0 || per_channel) && !(s = clnorm_plan_forward_scratch(k))) {
        s = enqueue_finalize(k, &chain, mode, bufs, 1, 1, 1, 1, moments, NULL);
        if (!s && plan->elements > 0)
            s = enqueue_apply(plan, &chain, bufs, 0);
    }
    s = clnorm_chain_end(&chain, s, done);
    pthread_mutex_unlock(&plan->lock);
    return s;
}
