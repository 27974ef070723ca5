/*
 * A call's commands: enqueued behind a gate, committed all or none, and their events kept until
 * every one of them, and every event they wait for, has resolved.
 *
 * All or none. The first command waits on a user event, the gate, besides the caller's wait
 * list. The gate opens (CL_COMPLETE) only when every command of the call was enqueued; when an
 * enqueue fails part-way, it is set to an error instead, which terminates the commands already
 * enqueued before any of them ran. So a call that returns an error has written nothing, whatever
 * command the driver refused (DESIGN.md section 2).
 *
 * Events are held. PoCL (3.1 and others) aborts the process when the last reference to a pending
 * command's event goes while one of its dependencies is still pending and later fails: failure
 * propagation walks a freed event. Releasing the chain's events one by one, as each command is
 * enqueued, is exactly that. So each call's events, and the caller's wait events (retained), are
 * kept on the context and released only once all of them resolved (complete or failed). Those
 * records are reaped at every call on the context and when the context goes; a failed
 * dependency then makes `done` fail, and nothing crashes.
 *
 * A later command always waits on the one before, also on in-order queues: OpenCL leaves it to
 * the driver whether a failed command stops the next on an in-order queue, and the chain must
 * stop there.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Events kept until all resolved: the caller's wait list and the plan's previous call (both
 * retained), then the call's own. */
typedef struct clnorm_held {
    struct clnorm_held *next;
    cl_uint count;
    cl_event events[];
} clnorm_held;

static int resolved(cl_event event)
{
    cl_int status = CL_QUEUED;
    if (clGetEventInfo(event, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status, NULL) !=
        CL_SUCCESS)
        return 1; /* not an event we can ask about: nothing left to wait for */
    return status <= CL_COMPLETE;
}

static int held_resolved(const clnorm_held *h)
{
    /* A command completes only after its dependencies did: a complete last event settles it. */
    cl_int status = CL_QUEUED;
    if (clGetEventInfo(h->events[h->count - 1], CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status,
                       &status, NULL) == CL_SUCCESS &&
        status == CL_COMPLETE)
        return 1;
    for (cl_uint i = 0; i < h->count; ++i)
        if (!resolved(h->events[i]))
            return 0;
    return 1;
}

static void held_free(clnorm_held *h)
{
    for (cl_uint i = 0; i < h->count; ++i)
        clReleaseEvent(h->events[i]);
    free(h);
}

void clnorm_held_reap(clnorm_context *ctx, int all)
{
    /* Oldest first, stopping at the first record still pending: calls mostly resolve in the
     * order they were made, so a long pipeline of calls costs one look per call, not a scan. */
    clnorm_held *done = NULL, **tail = &done;
    pthread_mutex_lock(&ctx->held_lock);
    while (ctx->held && (all || held_resolved(ctx->held))) {
        clnorm_held *h = ctx->held;
        ctx->held = h->next;
        h->next = NULL;
        *tail = h;
        tail = &h->next;
    }
    if (!ctx->held)
        ctx->held_tail = &ctx->held;
    pthread_mutex_unlock(&ctx->held_lock);
    while (done) {
        clnorm_held *next = done->next;
        held_free(done);
        done = next;
    }
}

/* Keeps the caller's wait events and the call's own until all resolved. On failure to allocate
 * the record, waits for them instead: rare, and still never releases a pending event. */
static void hold(clnorm_chain *chain)
{
    clnorm_context *ctx = chain->plan->ctx;
    if (chain->steps == 0) { /* nothing enqueued: nothing waits on the caller's events */
        if (chain->prior)
            clReleaseEvent(chain->prior);
        return;
    }
    cl_uint count = chain->num_wait + (chain->prior != NULL) + (cl_uint)chain->steps;
    clnorm_held *h = malloc(sizeof *h + count * sizeof(cl_event));
    if (!h) {
        clWaitForEvents((cl_uint)chain->steps, chain->events);
        for (int i = 0; i < chain->steps; ++i)
            clReleaseEvent(chain->events[i]);
        if (chain->prior)
            clReleaseEvent(chain->prior);
        return;
    }
    h->count = 0;
    for (cl_uint i = 0; i < chain->num_wait; ++i) {
        clRetainEvent(chain->wait[i]);
        h->events[h->count++] = chain->wait[i];
    }
    if (chain->prior)
        h->events[h->count++] = chain->prior; /* retained by first_wait_list */
    for (int i = 0; i < chain->steps; ++i)
        h->events[h->count++] = chain->events[i];
    h->next = NULL;
    pthread_mutex_lock(&ctx->held_lock);
    *ctx->held_tail = h;
    ctx->held_tail = &h->next;
    pthread_mutex_unlock(&ctx->held_lock);
}

void clnorm_chain_begin(clnorm_chain *chain, clnorm_plan *plan, cl_uint num_wait,
                        const cl_event *wait)
{
    memset(chain, 0, sizeof *chain);
    chain->plan = plan;
    chain->num_wait = num_wait;
    chain->wait = wait;
    clnorm_held_reap(plan->ctx, 0);
}

/* n halved until it is at most `most` (>= 1): powers of two stay powers of two. */
size_t clnorm_halve_to(size_t n, size_t most)
{
    while (n > most)
        n /= 2;
    return n;
}

/* The first command's wait list: the caller's events, on an out-of-order queue the plan's
 * previous call (it shares this call's scratch) unless that has already resolved, and the gate. */
static clnorm_status first_wait_list(clnorm_chain *chain, cl_event **list, cl_uint *count)
{
    clnorm_plan *plan = chain->plan;
    clnorm_context *ctx = plan->ctx;
    cl_int err;
    chain->gate = clCreateUserEvent(ctx->cl, &err);
    if (err != CL_SUCCESS) {
        chain->gate = NULL;
        return clnorm_fail_cl(ctx, err, "clCreateUserEvent", "the call's gate");
    }
    if (plan->last && resolved(plan->last)) {
        clReleaseEvent(plan->last);
        plan->last = NULL;
    }
    size_t need = (size_t)chain->num_wait + 2;
    *list = malloc(need * sizeof **list);
    if (!*list)
        return clnorm_fail(ctx, CLNORM_ERROR_OUT_OF_MEMORY, "wait list: out of memory");
    cl_uint n = 0;
    for (cl_uint i = 0; i < chain->num_wait; ++i)
        (*list)[n++] = chain->wait[i];
    if (ctx->out_of_order && plan->last) {
        clRetainEvent(plan->last); /* chain_end may replace plan->last before hold() */
        (*list)[n++] = chain->prior = plan->last;
    }
    (*list)[n++] = chain->gate;
    *count = n;
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_chain_step(clnorm_chain *chain, cl_kernel kernel, const char *name,
                                size_t global, size_t local)
{
    clnorm_plan *plan = chain->plan;
    clnorm_context *ctx = plan->ctx;
    if (chain->steps == CLNORM_CHAIN_MAX)
        return clnorm_fail(ctx, CLNORM_ERROR_UNSUPPORTED, "%s: more than %d commands in one call",
                           name, CLNORM_CHAIN_MAX);
    cl_event *list = NULL, event = NULL;
    cl_uint count = 0;
    clnorm_status status;
    if (chain->steps == 0) {
        if ((status = first_wait_list(chain, &list, &count)))
            return status;
    } else {
        list = &chain->events[chain->steps - 1];
        count = 1;
    }
    /* A kernel may allow fewer work-items per group than the device does; the work-group
     * kernels' CLNORM_WG is chosen to fit theirs (clnorm_plan_create), so theirs never shrinks. */
    if (local > 1) {
        size_t most = 0;
        for (size_t i = 0; i < plan->nlimits && !most; ++i)
            if (plan->limits[i].kernel == kernel)
                most = plan->limits[i].most;
        local = clnorm_halve_to(local, most ? most : clnorm_kernel_max_local(ctx, kernel));
    }
    size_t global_size = (global + local - 1) / local * local;
    cl_int err = clEnqueueNDRangeKernel(ctx->queue, kernel, 1, NULL, &global_size, &local, count,
                                        list, &event);
    if (chain->steps == 0)
        free(list);
    if (err != CL_SUCCESS)
        return clnorm_fail_cl(ctx, err, "clEnqueueNDRangeKernel", name);
    chain->events[chain->steps++] = event;
    return CLNORM_SUCCESS;
}

/* The worst status among the caller's events: negative when one has already failed. */
static cl_int callers_failure(const clnorm_chain *chain)
{
    for (cl_uint i = 0; i < chain->num_wait; ++i) {
        cl_int status = CL_COMPLETE;
        if (clGetEventInfo(chain->wait[i], CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status,
                           &status, NULL) == CL_SUCCESS &&
            status < 0)
            return status;
    }
    return CL_COMPLETE;
}

clnorm_status clnorm_chain_end(clnorm_chain *chain, clnorm_status status, cl_event *done)
{
    clnorm_plan *plan = chain->plan;
    clnorm_context *ctx = plan->ctx;
    if (status == CLNORM_SUCCESS && chain->steps == 0 && (done || ctx->out_of_order)) {
        /* Nothing to run (n == 0): a marker still honours the caller's events, behind the
         * gate like any command. */
        cl_event *list = NULL, event = NULL;
        cl_uint count = 0;
        status = first_wait_list(chain, &list, &count);
        if (status == CLNORM_SUCCESS) {
            cl_int err = clEnqueueMarkerWithWaitList(ctx->queue, count, list, &event);
            if (err != CL_SUCCESS)
                status = clnorm_fail_cl(ctx, err, "clEnqueueMarkerWithWaitList", "n == 0");
            else
                chain->events[chain->steps++] = event;
        }
        free(list);
    }
    if (chain->gate) {
        /* Open the gate; or, after a failure, terminate what was enqueued before it ran. A
         * caller's event that failed before the gate opened fails it too: drivers (PoCL) leave
         * a command that waits on an event failed before it was enqueued queued forever. */
        cl_int gate = status == CLNORM_SUCCESS ? callers_failure(chain) : CL_INVALID_OPERATION;
        cl_int err = clSetUserEventStatus(chain->gate, gate);
        if (err != CL_SUCCESS && status == CLNORM_SUCCESS)
            status = clnorm_fail_cl(ctx, err, "clSetUserEventStatus", "the call's gate");
        clReleaseEvent(chain->gate);
        chain->gate = NULL;
    }
    cl_event last = chain->steps ? chain->events[chain->steps - 1] : NULL;
    if (status == CLNORM_SUCCESS && last) {
        /* Later calls on an out-of-order queue wait for this one: they share its scratch. A
         * failed call's commands never run, so the previous call stays the one to wait for. */
        if (ctx->out_of_order) {
            if (plan->last)
                clReleaseEvent(plan->last);
            clRetainEvent(last);
            plan->last = last;
        }
        if (done) {
            clRetainEvent(last);
            *done = last;
        }
    }
    hold(chain);
    chain->steps = 0;
    return status;
}
