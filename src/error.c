/*
 * Status strings and the last error, kept per context and per thread.
 *
 * Each thread has a few slots, one per context it used recently (NULL stands for calls made
 * before a context exists). A slot is matched by the context's address and serial number, so a
 * context at a freed and reused address never inherits an old message. Messages are heap
 * strings, freed by a thread-exit destructor.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 8

typedef struct slot {
    const clnorm_context *ctx;
    uint64_t serial; /* ctx->serial: tells a reused address from the context it replaced */
    char *msg;
    size_t len, cap;
    unsigned long age;
} slot;

typedef struct thread_errors {
    slot slots[SLOTS];
    unsigned long clock;
} thread_errors;

static _Thread_local thread_errors *tls;
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_free(void *p)
{
    thread_errors *te = p;
    for (int i = 0; i < SLOTS; ++i)
        free(te->slots[i].msg);
    free(te);
}

static void tls_init(void) { (void)pthread_key_create(&tls_key, tls_free); }

static thread_errors *errors(void)
{
    if (!tls) {
        pthread_once(&tls_once, tls_init);
        tls = calloc(1, sizeof *tls);
        if (tls)
            (void)pthread_setspecific(tls_key, tls);
    }
    return tls;
}

/* The slot for ctx; with create, the least recently used one is taken over. */
static slot *find(const clnorm_context *ctx, int create)
{
    thread_errors *te = errors();
    if (!te)
        return NULL;
    uint64_t serial = ctx ? ctx->serial : 0;
    slot *oldest = &te->slots[0];
    for (int i = 0; i < SLOTS; ++i) {
        slot *s = &te->slots[i];
        if (s->ctx == ctx && s->serial == serial && s->msg) {
            s->age = ++te->clock;
            return s;
        }
        if (s->age < oldest->age)
            oldest = s;
    }
    if (!create)
        return NULL;
    oldest->ctx = ctx;
    oldest->serial = serial;
    oldest->len = 0;
    if (oldest->msg)
        oldest->msg[0] = '\0';
    oldest->age = ++te->clock;
    return oldest;
}

static void append(slot *s, const char *text, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *msg = realloc(s->msg, cap);
        if (!msg)
            return; /* keep what fits: a message must never cost the caller its status */
        s->msg = msg;
        s->cap = cap;
    }
    memcpy(s->msg + s->len, text, n);
    s->len += n;
    s->msg[s->len] = '\0';
}

static void vrecord(const clnorm_context *ctx, const char *fmt, va_list ap)
{
    slot *s = find(ctx, 1);
    if (!s)
        return;
    char buf[1024];
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    if (n < 0)
        return;
    s->len = 0;
    append(s, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

clnorm_status clnorm_fail(const clnorm_context *ctx, clnorm_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vrecord(ctx, fmt, ap);
    va_end(ap);
    return status;
}

clnorm_status clnorm_fail_cl(const clnorm_context *ctx, cl_int err, const char *call,
                             const char *what)
{
    clnorm_status status = CLNORM_ERROR_OPENCL;
    if (err == CL_OUT_OF_HOST_MEMORY || err == CL_MEM_OBJECT_ALLOCATION_FAILURE ||
        err == CL_OUT_OF_RESOURCES)
        status = CLNORM_ERROR_OUT_OF_MEMORY;
    return clnorm_fail(ctx, status, "%s: %s [%d] (%s)", call, clnorm_cl_error_name(err), (int)err,
                       what);
}

void clnorm_error_append(const clnorm_context *ctx, const char *text)
{
    slot *s = find(ctx, 1);
    if (s)
        append(s, text, strlen(text));
}

void clnorm_error_clear(const clnorm_context *ctx)
{
    slot *s = find(ctx, 0);
    if (s) {
        s->len = 0;
        s->msg[0] = '\0';
    }
}

void clnorm_error_forget(const clnorm_context *ctx)
{
    slot *s = find(ctx, 0);
    if (s) {
        s->ctx = NULL;
        s->len = 0;
        s->msg[0] = '\0';
        s->age = 0;
    }
}

const char *clnorm_context_last_error(const clnorm_context *ctx)
{
    slot *s = find(ctx, 0);
    return s && s->msg ? s->msg : "";
}

const char *clnorm_status_string(clnorm_status status)
{
    switch (status) {
    case CLNORM_SUCCESS: return "success";
    case CLNORM_ERROR_INVALID_ARGUMENT: return "invalid argument";
    case CLNORM_ERROR_UNSUPPORTED: return "unsupported on this device";
    case CLNORM_ERROR_OUT_OF_MEMORY: return "out of memory";
    case CLNORM_ERROR_BUILD_FAILED: return "kernel build failed";
    case CLNORM_ERROR_NO_DEVICE: return "no matching OpenCL device";
    case CLNORM_ERROR_OPENCL: return "OpenCL error";
    }
    return "unknown status";
}

const char *clnorm_version_string(void) { return CLNORM_VERSION_STRING; }

const char *clnorm_cl_error_name(cl_int err)
{
    switch (err) {
#define NAME(e) \
    case e: return #e;
        NAME(CL_SUCCESS)
        NAME(CL_DEVICE_NOT_FOUND)
        NAME(CL_DEVICE_NOT_AVAILABLE)
        NAME(CL_COMPILER_NOT_AVAILABLE)
        NAME(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        NAME(CL_OUT_OF_RESOURCES)
        NAME(CL_OUT_OF_HOST_MEMORY)
        NAME(CL_PROFILING_INFO_NOT_AVAILABLE)
        NAME(CL_MEM_COPY_OVERLAP)
        NAME(CL_IMAGE_FORMAT_MISMATCH)
        NAME(CL_IMAGE_FORMAT_NOT_SUPPORTED)
        NAME(CL_BUILD_PROGRAM_FAILURE)
        NAME(CL_MAP_FAILURE)
        NAME(CL_MISALIGNED_SUB_BUFFER_OFFSET)
        NAME(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        NAME(CL_COMPILE_PROGRAM_FAILURE)
        NAME(CL_LINKER_NOT_AVAILABLE)
        NAME(CL_LINK_PROGRAM_FAILURE)
        NAME(CL_DEVICE_PARTITION_FAILED)
        NAME(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
        NAME(CL_INVALID_VALUE)
        NAME(CL_INVALID_DEVICE_TYPE)
        NAME(CL_INVALID_PLATFORM)
        NAME(CL_INVALID_DEVICE)
        NAME(CL_INVALID_CONTEXT)
        NAME(CL_INVALID_QUEUE_PROPERTIES)
        NAME(CL_INVALID_COMMAND_QUEUE)
        NAME(CL_INVALID_HOST_PTR)
        NAME(CL_INVALID_MEM_OBJECT)
        NAME(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
        NAME(CL_INVALID_IMAGE_SIZE)
        NAME(CL_INVALID_SAMPLER)
        NAME(CL_INVALID_BINARY)
        NAME(CL_INVALID_BUILD_OPTIONS)
        NAME(CL_INVALID_PROGRAM)
        NAME(CL_INVALID_PROGRAM_EXECUTABLE)
        NAME(CL_INVALID_KERNEL_NAME)
        NAME(CL_INVALID_KERNEL_DEFINITION)
        NAME(CL_INVALID_KERNEL)
        NAME(CL_INVALID_ARG_INDEX)
        NAME(CL_INVALID_ARG_VALUE)
        NAME(CL_INVALID_ARG_SIZE)
        NAME(CL_INVALID_KERNEL_ARGS)
        NAME(CL_INVALID_WORK_DIMENSION)
        NAME(CL_INVALID_WORK_GROUP_SIZE)
        NAME(CL_INVALID_WORK_ITEM_SIZE)
        NAME(CL_INVALID_GLOBAL_OFFSET)
        NAME(CL_INVALID_EVENT_WAIT_LIST)
        NAME(CL_INVALID_EVENT)
        NAME(CL_INVALID_OPERATION)
        NAME(CL_INVALID_GL_OBJECT)
        NAME(CL_INVALID_BUFFER_SIZE)
        NAME(CL_INVALID_MIP_LEVEL)
        NAME(CL_INVALID_GLOBAL_WORK_SIZE)
        NAME(CL_INVALID_PROPERTY)
        NAME(CL_INVALID_IMAGE_DESCRIPTOR)
        NAME(CL_INVALID_COMPILER_OPTIONS)
        NAME(CL_INVALID_LINKER_OPTIONS)
        NAME(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef NAME
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    }
    return "CL_UNKNOWN_ERROR";
}

clnorm_status clnorm_context_set_error(const clnorm_context *ctx, clnorm_status status,
                                       const char *message)
{
    return clnorm_fail(ctx, status, "%s", message ? message : "");
}
