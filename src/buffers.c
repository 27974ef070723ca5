/*
 * What a call may be handed (DESIGN.md section 2): every buffer a memory object of type buffer
 * (sub-buffers too) created in the plan's context, large enough, readable where the call reads
 * it and writable where it writes it; no output overlapping another role's bytes except the
 * in-place pairs (y = x, dx = dy); wait lists of non-NULL events of the plan's context.
 * All of it is checked before anything is enqueued, and the message names the field.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

clnorm_status clnorm_call_begin(clnorm_plan *plan, cl_uint num_wait, const cl_event *wait,
                                cl_event *done)
{
    if (done)
        *done = NULL;
    if (!plan)
        return clnorm_fail(NULL, CLNORM_ERROR_INVALID_ARGUMENT, "plan: NULL");
    const clnorm_context *ctx = plan->ctx;
    clnorm_error_clear(ctx);
    if (num_wait && !wait)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "wait: NULL with num_wait = %u",
                           num_wait);
    for (cl_uint i = 0; i < num_wait; ++i) {
        if (!wait[i])
            return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "wait[%u]: NULL event", i);
        cl_context owner = NULL;
        cl_int err = clGetEventInfo(wait[i], CL_EVENT_CONTEXT, sizeof owner, &owner, NULL);
        if (err != CL_SUCCESS)
            return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "wait[%u]: not an event (%s)",
                               i, clnorm_cl_error_name(err));
        if (owner != ctx->cl)
            return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                               "wait[%u]: an event of another cl_context than the plan's", i);
    }
    return CLNORM_SUCCESS;
}

static const char *type_name(cl_mem_object_type type)
{
    switch (type) {
    case CL_MEM_OBJECT_IMAGE2D: return "an image (CL_MEM_OBJECT_IMAGE2D)";
    case CL_MEM_OBJECT_IMAGE3D: return "an image (CL_MEM_OBJECT_IMAGE3D)";
#ifdef CL_MEM_OBJECT_IMAGE1D
    case CL_MEM_OBJECT_IMAGE1D: return "an image (CL_MEM_OBJECT_IMAGE1D)";
    case CL_MEM_OBJECT_IMAGE1D_BUFFER: return "an image (CL_MEM_OBJECT_IMAGE1D_BUFFER)";
    case CL_MEM_OBJECT_IMAGE1D_ARRAY: return "an image (CL_MEM_OBJECT_IMAGE1D_ARRAY)";
    case CL_MEM_OBJECT_IMAGE2D_ARRAY: return "an image (CL_MEM_OBJECT_IMAGE2D_ARRAY)";
#endif
    default: return "not a buffer";
    }
}

/* Where a role's bytes are: the buffer a sub-buffer is in (or the buffer itself), and offset. */
typedef struct place {
    cl_mem root;
    size_t offset;
} place;

/* One role's checks on its own: present, a buffer of this context, large enough, and flags that
 * allow what the call does with it. Fills *at for the overlap test. */
static clnorm_status check_role(const clnorm_context *ctx, const clnorm_role *r, place *at)
{
    if (!r->mem)
        return r->required ? clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                                         "%s: required, got NULL", r->field)
                           : CLNORM_SUCCESS;
    cl_mem_object_type type = 0;
    cl_context owner = NULL;
    cl_mem_flags flags = 0;
    size_t size = 0;
    cl_int err = clGetMemObjectInfo(r->mem, CL_MEM_TYPE, sizeof type, &type, NULL);
    if (err != CL_SUCCESS)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "%s: not a memory object (%s)",
                           r->field, clnorm_cl_error_name(err));
    if (type != CL_MEM_OBJECT_BUFFER)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "%s: %s; the call needs a buffer", r->field, type_name(type));
    if ((err = clGetMemObjectInfo(r->mem, CL_MEM_CONTEXT, sizeof owner, &owner, NULL)) ||
        (err = clGetMemObjectInfo(r->mem, CL_MEM_FLAGS, sizeof flags, &flags, NULL)) ||
        (err = clGetMemObjectInfo(r->mem, CL_MEM_SIZE, sizeof size, &size, NULL)) ||
        (err = clGetMemObjectInfo(r->mem, CL_MEM_ASSOCIATED_MEMOBJECT, sizeof at->root, &at->root,
                                  NULL)) ||
        (err = clGetMemObjectInfo(r->mem, CL_MEM_OFFSET, sizeof at->offset, &at->offset, NULL)))
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "%s: not a buffer (%s)",
                           r->field, clnorm_cl_error_name(err));
    if (owner != ctx->cl)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "%s: created in another cl_context than the plan's", r->field);
    if (size < r->bytes)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "%s: holds %zu bytes, the problem needs %zu", r->field, size, r->bytes);
    if ((r->access & CLNORM_WRITES) && (flags & CL_MEM_READ_ONLY))
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "%s: created with CL_MEM_READ_ONLY, but the call writes it", r->field);
    if ((r->access & CLNORM_READS) && (flags & CL_MEM_WRITE_ONLY))
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "%s: created with CL_MEM_WRITE_ONLY, but the call reads it", r->field);
    if (!at->root) {
        at->root = r->mem;
        at->offset = 0;
    }
    return CLNORM_SUCCESS;
}

/* Whether the space-separated list of fields names field. */
static int lists_field(const char *list, const char *field)
{
    size_t len = strlen(field);
    for (const char *p = list; p && *p; p += strcspn(p, " "), p += strspn(p, " "))
        if (strncmp(p, field, len) == 0 && (p[len] == ' ' || p[len] == '\0'))
            return 1;
    return 0;
}

clnorm_status clnorm_roles_check(const clnorm_context *ctx, const clnorm_role *roles,
                                 size_t count)
{
    place at[16] = {{0}};
    clnorm_status s;
    if (count > sizeof at / sizeof at[0])
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "bufs: too many roles");
    for (size_t i = 0; i < count; ++i)
        if ((s = check_role(ctx, &roles[i], &at[i])))
            return s;
    /* A written role may share bytes with no other, except its in-place partner, exactly. */
    for (size_t i = 0; i < count; ++i) {
        const clnorm_role *w = &roles[i];
        if (!w->mem || !(w->access & CLNORM_WRITES) || !w->bytes)
            continue;
        for (size_t j = 0; j < count; ++j) {
            const clnorm_role *o = &roles[j];
            if (j == i || !o->mem || !o->access || !o->bytes || at[j].root != at[i].root)
                continue;
            if (at[j].offset >= at[i].offset + w->bytes || at[i].offset >= at[j].offset + o->bytes)
                continue;
            int partners = lists_field(w->in_place, o->field) || lists_field(o->in_place, w->field);
            if (partners && at[j].offset == at[i].offset)
                continue;
            return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                               "%s: shares memory with %s, and the call writes %s%s", w->field,
                               o->field, w->field,
                               partners ? " (in place needs the same start)" : "");
        }
    }
    return CLNORM_SUCCESS;
}
