/*
 * A call's commands: enqueued behind a gate, committed all or none, and their events kept until
 * every one of them, and every event they wait for, has resolved.
 *
 * All or none. The first command waits on a user event, the gate, besides the caller's wait
 * list. The gate opens (CL_COMPLETE) only when every command of the call was enqueued; when an
 * enqueue fails part-way, it is set to an error instead, which terminates the commands already
 * enqueued before any of them ran. So a call that returns an error has written nothing, whatever
 * command the driver refused (DESIGN.md section 2). A call of a single command with nothing to
 * wait for takes no gate (chain.single): its one enqueue either fails, leaving nothing, or
 * succeeds. That saves a user event's making, opening and release in the calls of small
 * problems, whose cost is mostly the host's.
 *
 * Events are held. PoCL (3.1 and others) aborts the process when the last reference to a pending
 * command's event goes while one of its dependencies is still pending and later fails: failure
 * propagation walks a freed event. Releasing the chain's events one by one, as each command is
 * enqueued, is exactly that. So each call's events, and the caller's wait events (retained), are
 * kept on the context and released only once all of them resolved (complete or failed). Those
 * records are reaped a few at a time at every call on the context; when the context goes, the
 * ones still pending move to a list of the process's, reaped by later calls on any context (a
 * record must outlive its context, and a pending one cannot be waited for: it may wait on a
 * user event the caller never sets). A failed dependency then makes `done` fail, and nothing
 * crashes.
 *
 * A later command always waits on the one before, also on in-order queues: OpenCL leaves it to
 * the driver whether a failed command stops the next on an in-order queue, and the chain must
 * stop there.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Looks at held records per call: enough to keep up with calls that resolve out of order
 * without scanning a long pipeline of pending ones at every call. */
#define REAP_LOOKS 4

/* One call's events, kept until all resolved: the first command's wait list (the caller's
 * events and the plan's previous call, retained, then the gate), then the call's commands. */
typedef struct clnorm_held {
    struct clnorm_held *next;
    cl_uint count;
    cl_event events[];
} clnorm_held;

/* The event's execution status; CL_COMPLETE for one the driver cannot tell about (nothing left
 * to wait for). */
static cl_int status_of(cl_event event)
{
    cl_int status = CL_COMPLETE;
    if (clGetEventInfo(event, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status, NULL) !=
        CL_SUCCESS)
        return CL_COMPLETE;
    return status;
}

static int resolved(cl_event event) { return status_of(event) <= CL_COMPLETE; }

/* last: the status of the record's last event */
static int held_resolved(const clnorm_held *h, cl_int last)
{
    /* A command completes only after its dependencies did: a complete last event settles it. */
    if (last == CL_COMPLETE)
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

/* Appends h to the list at *head (oldest first), whose last next pointer is *tail. */
static void list_push(clnorm_held **head, clnorm_held ***tail, clnorm_held *h)
{
    h->next = NULL;
    if (!*head)
        *tail = head;
    **tail = h;
    *tail = &h->next;
}

/* Records of released contexts still pending; the process's, not a context's (see the top). */
static pthread_mutex_t orphans_lock = PTHREAD_MUTEX_INITIALIZER;
static clnorm_held *orphans, **orphans_tail = &orphans;
static _Atomic int orphans_count;

static cl_int last_status(const clnorm_held *h) { return status_of(h->events[h->count - 1]); }

/* Up to REAP_LOOKS records from the front of *head: resolved ones onto *done, pending ones to
 * the back, so that one that stays pending does not keep the others. in_order: the records are
 * one in-order queue's calls, so while the front one's last command is still to run, so are
 * every later one's, and the look ends there (a pipeline of pending calls costs one query per
 * call, not REAP_LOOKS). */
static void look(clnorm_held **head, clnorm_held ***tail, clnorm_held **done, int *removed,
                 int in_order)
{
    for (int i = 0; i < REAP_LOOKS && *head; ++i) {
        clnorm_held *h = *head;
        cl_int last = last_status(h);
        if (in_order && last > CL_COMPLETE)
            break;
        *head = h->next;
        if (held_resolved(h, last)) {
            h->next = *done;
            *done = h;
            ++*removed;
        } else {
            list_push(head, tail, h);
        }
    }
    if (!*head)
        *tail = head;
}

void clnorm_held_reap(clnorm_context *ctx)
{
    clnorm_held *done = NULL;
    int removed = 0;
    pthread_mutex_lock(&ctx->held_lock);
    look(&ctx->held, &ctx->held_tail, &done, &removed, !ctx->out_of_order);
    pthread_mutex_unlock(&ctx->held_lock);
    if (atomic_load(&orphans_count) > 0) {
        int gone = 0;
        pthread_mutex_lock(&orphans_lock);
        look(&orphans, &orphans_tail, &done, &gone, 0);
        atomic_fetch_sub(&orphans_count, gone);
        pthread_mutex_unlock(&orphans_lock);
    }
    while (done) {
        clnorm_held *next = done->next;
        held_free(done);
        done = next;
    }
}

void clnorm_held_release(clnorm_context *ctx)
{
    pthread_mutex_lock(&ctx->held_lock);
    clnorm_held *h = ctx->held;
    ctx->held = NULL;
    ctx->held_tail = &ctx->held;
    pthread_mutex_unlock(&ctx->held_lock);
    while (h) {
        clnorm_held *next = h->next;
        if (held_resolved(h, last_status(h))) {
            held_free(h);
        } else {
            pthread_mutex_lock(&orphans_lock);
            list_push(&orphans, &orphans_tail, h);
            atomic_fetch_add(&orphans_count, 1);
            pthread_mutex_unlock(&orphans_lock);
        }
        h = next;
    }
}

void clnorm_chain_begin(clnorm_chain *chain, clnorm_plan *plan, cl_uint num_wait,
                        const cl_event *wait)
{
    memset(chain, 0, sizeof *chain);
    chain->plan = plan;
    chain->num_wait = num_wait;
    chain->wait = wait;
    clnorm_held_reap(plan->ctx);
}

/* n halved until it is at most `most` (>= 1): powers of two stay powers of two. */
size_t clnorm_halve_to(size_t n, size_t most)
{
    while (n > most)
        n /= 2;
    return n;
}

/* The call's record, its first entries the first command's wait list: the caller's events, on
 * an out-of-order queue the plan's previous call (it shares this call's scratch) unless that
 * has already resolved, and the gate (none for a single command that waits on nothing).
 * Allocated before anything is enqueued, so that running out of memory fails the call, not the
 * keeping of its events. */
static clnorm_status record_begin(clnorm_chain *chain)
{
    clnorm_plan *plan = chain->plan;
    clnorm_context *ctx = plan->ctx;
    size_t capacity = (size_t)chain->num_wait + 2 + CLNORM_CHAIN_MAX;
    clnorm_held *h = malloc(sizeof *h + capacity * sizeof(cl_event));
    if (!h)
        return clnorm_fail(ctx, CLNORM_ERROR_OUT_OF_MEMORY, "the call's events: out of memory");
    if (plan->last && resolved(plan->last)) {
        clReleaseEvent(plan->last);
        plan->last = NULL;
    }
    cl_event gate = NULL;
    if (!chain->single || chain->num_wait || (ctx->out_of_order && plan->last)) {
        cl_int err;
        gate = clCreateUserEvent(ctx->cl, &err);
        if (err != CL_SUCCESS) {
            free(h);
            return clnorm_fail_cl(ctx, err, "clCreateUserEvent", "the call's gate");
        }
    }
    h->count = 0;
    for (cl_uint i = 0; i < chain->num_wait; ++i) {
        clRetainEvent(chain->wait[i]);
        h->events[h->count++] = chain->wait[i];
    }
    if (ctx->out_of_order && plan->last) {
        clRetainEvent(plan->last);
        h->events[h->count++] = plan->last;
    }
    if (gate)
        h->events[h->count++] = gate;
    chain->gate = gate;
    chain->first = h->count;
    chain->record = h;
    return CLNORM_SUCCESS;
}

/* The newest event of the call (NULL before its first command). */
static cl_event newest(const clnorm_chain *chain)
{
    return chain->steps ? chain->record->events[chain->record->count - 1] : NULL;
}

/* Room for the call's next command, and the events it waits on: the record's first entries
 * for the first command, the one before for each later one. */
static clnorm_status next_command(clnorm_chain *chain, const char *name, const cl_event **list,
                                  cl_uint *count)
{
    clnorm_context *ctx = chain->plan->ctx;
    if (chain->steps == CLNORM_CHAIN_MAX)
        return clnorm_fail(ctx, CLNORM_ERROR_UNSUPPORTED, "%s: more than %d commands in one call",
                           name, CLNORM_CHAIN_MAX);
    clnorm_status status;
    if (!chain->record && (status = record_begin(chain)))
        return status;
    clnorm_held *h = chain->record;
    *count = chain->steps ? 1 : chain->first;
    *list = chain->steps ? &h->events[h->count - 1] : *count ? h->events : NULL;
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_chain_fill_zero(clnorm_chain *chain, cl_mem mem, size_t bytes,
                                     const char *name)
{
    const cl_event *list = NULL;
    cl_uint count = 0;
    clnorm_status status = next_command(chain, name, &list, &count);
    if (status)
        return status;
    const cl_float zero = 0.0f;
    cl_event event = NULL;
    cl_int err = clEnqueueFillBuffer(chain->plan->ctx->queue, mem, &zero, sizeof zero, 0, bytes,
                                     count, list, &event);
    if (err != CL_SUCCESS)
        return clnorm_fail_cl(chain->plan->ctx, err, "clEnqueueFillBuffer", name);
    chain->record->events[chain->record->count++] = event;
    chain->steps++;
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_chain_step(clnorm_chain *chain, cl_kernel kernel, const char *name,
                                size_t global, size_t local)
{
    clnorm_plan *plan = chain->plan;
    clnorm_context *ctx = plan->ctx;
    const cl_event *list = NULL;
    cl_uint count = 0;
    clnorm_status status = next_command(chain, name, &list, &count);
    if (status)
        return status;
    clnorm_held *h = chain->record;
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
    cl_event event = NULL;
    cl_int err = clEnqueueNDRangeKernel(ctx->queue, kernel, 1, NULL, &global_size, &local, count,
                                        list, &event);
    if (err != CL_SUCCESS)
        return clnorm_fail_cl(ctx, err, "clEnqueueNDRangeKernel", name);
    h->events[h->count++] = event;
    chain->steps++;
    return CLNORM_SUCCESS;
}

/* The worst status among the events the first command waits on besides the gate (the caller's
 * and the plan's previous call): negative when one has already failed. */
static cl_int failed_before(const clnorm_chain *chain)
{
    for (cl_uint i = 0; i + 1 < chain->first; ++i) {
        cl_int status = status_of(chain->record->events[i]);
        if (status < 0)
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
        if ((status = record_begin(chain)) == CLNORM_SUCCESS) {
            clnorm_held *h = chain->record;
            cl_event event = NULL;
            cl_int err = clEnqueueMarkerWithWaitList(
                ctx->queue, chain->first, chain->first ? h->events : NULL, &event);
            if (err != CL_SUCCESS) {
                status = clnorm_fail_cl(ctx, err, "clEnqueueMarkerWithWaitList", "n == 0");
            } else {
                h->events[h->count++] = event;
                chain->steps++;
            }
        }
    }
    if (chain->gate) {
        /* Open the gate; or, after a failure, terminate what was enqueued before it ran. An
         * event waited on that failed before the gate opened fails it too: drivers (PoCL) leave
         * a command that waits on an event failed before it was enqueued queued for ever. */
        cl_int gate = status == CLNORM_SUCCESS ? failed_before(chain) : CL_INVALID_OPERATION;
        cl_int err = clSetUserEventStatus(chain->gate, gate);
        if (err != CL_SUCCESS && status == CLNORM_SUCCESS)
            status = clnorm_fail_cl(ctx, err, "clSetUserEventStatus", "the call's gate");
    }
    cl_event last = newest(chain);
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
    clnorm_held *h = chain->record;
    if (h && chain->steps == 0) {
        held_free(h); /* nothing was enqueued: nothing waits on these */
    } else if (h) {
        pthread_mutex_lock(&ctx->held_lock);
        list_push(&ctx->held, &ctx->held_tail, h);
        pthread_mutex_unlock(&ctx->held_lock);
    }
    chain->record = NULL;
    chain->gate = NULL;
    chain->steps = 0;
    return status;
}
