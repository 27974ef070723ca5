/*
 * Contexts: choosing a device from a spec, or adopting an application's queue.
 *
 * A context owns (or holds a reference to) one OpenCL context, device and queue, and the
 * programs compiled for it. Plans keep a reference to their context, so releasing a context
 * before its plans is safe: it goes when the last plan goes.
 */
#include "internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic uint64_t next_serial = 1;

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

typedef struct device_entry {
    cl_platform_id platform;
    cl_device_id device;
    unsigned pi, di;
    cl_device_type type;
    char label[520]; /* "platform name / device name" */
} device_entry;

static size_t list_devices(device_entry *out, size_t max)
{
    cl_platform_id platforms[MAX_PLATFORMS];
    cl_uint np = 0;
    if (clGetPlatformIDs(MAX_PLATFORMS, platforms, &np) != CL_SUCCESS)
        return 0;
    size_t count = 0;
    for (cl_uint p = 0; p < np && p < MAX_PLATFORMS; ++p) {
        cl_device_id devices[MAX_DEVICES];
        cl_uint nd = 0;
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, MAX_DEVICES, devices, &nd) !=
            CL_SUCCESS)
            continue;
        char pname[256] = "";
        clGetPlatformInfo(platforms[p], CL_PLATFORM_NAME, sizeof pname - 1, pname, NULL);
        for (cl_uint d = 0; d < nd && d < MAX_DEVICES && count < max; ++d) {
            device_entry *e = &out[count++];
            char dname[256] = "";
            clGetDeviceInfo(devices[d], CL_DEVICE_NAME, sizeof dname - 1, dname, NULL);
            e->type = 0;
            clGetDeviceInfo(devices[d], CL_DEVICE_TYPE, sizeof e->type, &e->type, NULL);
            e->platform = platforms[p];
            e->device = devices[d];
            e->pi = p;
            e->di = d;
            snprintf(e->label, sizeof e->label, "%s / %s", pname, dname);
        }
    }
    return count;
}

static int contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; ++hay) {
        size_t i = 0;
        while (i < n && hay[i] &&
               tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            ++i;
        if (i == n)
            return 1;
    }
    return n == 0;
}

static int equal_nocase(const char *a, const char *b)
{
    for (; *a && *b; ++a, ++b)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
            return 0;
    return *a == *b;
}

static const char *type_name(cl_device_type type)
{
    if (type & CL_DEVICE_TYPE_GPU)
        return "GPU";
    if (type & CL_DEVICE_TYPE_CPU)
        return "CPU";
    if (type & CL_DEVICE_TYPE_ACCELERATOR)
        return "accelerator";
    return "other";
}

/* Index into list of the device the spec names, or -1. */
static long match_spec(const device_entry *list, size_t count, const char *spec)
{
    unsigned p, d;
    char tail;
    if (sscanf(spec, "%u:%u%c", &p, &d, &tail) == 2) {
        for (size_t i = 0; i < count; ++i)
            if (list[i].pi == p && list[i].di == d)
                return (long)i;
        return -1;
    }
    cl_device_type want = 0;
    if (equal_nocase(spec, "cpu"))
        want = CL_DEVICE_TYPE_CPU;
    else if (equal_nocase(spec, "gpu"))
        want = CL_DEVICE_TYPE_GPU;
    else if (equal_nocase(spec, "accelerator"))
        want = CL_DEVICE_TYPE_ACCELERATOR;
    for (size_t i = 0; i < count; ++i)
        if (want ? (list[i].type & want) != 0 : contains_nocase(list[i].label, spec))
            return (long)i;
    return -1;
}

/* A positive whole number from the environment; 0 where unset or not one. */
static size_t env_size(const char *name)
{
    const char *text = getenv(name);
    if (!text || !*text)
        return 0;
    char *end;
    unsigned long v = strtoul(text, &end, 10);
    return *end == '\0' ? (size_t)v : 0;
}

void clnorm_device_info_read(cl_platform_id platform, cl_device_id device,
                             clnorm_device_info *info)
{
    memset(info, 0, sizeof *info);
    clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof info->platform_name - 1,
                      info->platform_name, NULL);
    clGetPlatformInfo(platform, CL_PLATFORM_VERSION, sizeof info->platform_version - 1,
                      info->platform_version, NULL);
    clGetDeviceInfo(device, CL_DEVICE_NAME, sizeof info->device_name - 1, info->device_name,
                    NULL);
    clGetDeviceInfo(device, CL_DEVICE_VENDOR, sizeof info->device_vendor - 1,
                    info->device_vendor, NULL);
    clGetDeviceInfo(device, CL_DRIVER_VERSION, sizeof info->driver_version - 1,
                    info->driver_version, NULL);
    clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof info->type, &info->type, NULL);
    clGetDeviceInfo(device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof info->compute_units,
                    &info->compute_units, NULL);
    clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof info->max_work_group,
                    &info->max_work_group, NULL);
    clGetDeviceInfo(device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof info->local_mem, &info->local_mem,
                    NULL);
    clGetDeviceInfo(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof info->max_alloc,
                    &info->max_alloc, NULL);
    clGetDeviceInfo(device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof info->global_mem,
                    &info->global_mem, NULL);
    /* testing: the scratch limits on a device with less memory */
    size_t alloc_cap = env_size("CLNORM_MAX_ALLOC");
    if (alloc_cap && (info->max_alloc == 0 || alloc_cap < info->max_alloc))
        info->max_alloc = alloc_cap;
    clGetDeviceInfo(device, CL_DEVICE_COMPILER_AVAILABLE, sizeof info->compiler_available,
                    &info->compiler_available, NULL);
    /* CLNORM_COMPILER=0: a device without a compiler, to run the FPGA path (kernel packages
     * only) anywhere */
    const char *compiler = getenv("CLNORM_COMPILER");
    if (compiler && strcmp(compiler, "0") == 0 && info->compiler_available) {
        info->compiler_available = CL_FALSE;
        info->compiler_forced_off = 1;
    }
    clGetDeviceInfo(device, CL_DEVICE_ENDIAN_LITTLE, sizeof info->little_endian,
                    &info->little_endian, NULL);
    if (info->max_work_group == 0)
        info->max_work_group = 1;
    /* Lower ceilings than the device's, to run anywhere the paths of devices that allow small
     * work-groups (CLNORM_MAX_WORK_GROUP) or whose kernels allow less than the device does
     * (CLNORM_MAX_KERNEL_WORK_GROUP: what clnorm_kernel_max_local reports at most). */
    size_t cap = env_size("CLNORM_MAX_WORK_GROUP");
    if (cap && cap < info->max_work_group)
        info->max_work_group = cap;
    info->max_kernel_work_group = env_size("CLNORM_MAX_KERNEL_WORK_GROUP");
    /* GPUs get the many-work-items-per-row kernels; CPUs and everything else the
     * one-work-item-per-chunk ones. The variable exists to test either shape anywhere. */
    info->cls = (info->type & CL_DEVICE_TYPE_GPU) ? CLNORM_CLASS_GPU : CLNORM_CLASS_CPU;
    const char *force = getenv("CLNORM_DEVICE_CLASS");
    if (force && equal_nocase(force, "gpu"))
        info->cls = CLNORM_CLASS_GPU;
    else if (force && equal_nocase(force, "cpu"))
        info->cls = CLNORM_CLASS_CPU;
    info->prefetch = info->cls == CLNORM_CLASS_CPU &&
                     strstr(info->platform_name, "Portable Computing Language") != NULL;
}

static clnorm_context *context_new(void)
{
    clnorm_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    if (pthread_mutex_init(&ctx->lock, NULL) != 0) {
        free(ctx);
        return NULL;
    }
    if (pthread_mutex_init(&ctx->held_lock, NULL) != 0) {
        pthread_mutex_destroy(&ctx->lock);
        free(ctx);
        return NULL;
    }
    ctx->held_tail = &ctx->held;
    ctx->serial = atomic_fetch_add(&next_serial, 1);
    atomic_init(&ctx->refs, 1);
    return ctx;
}

static void context_free(clnorm_context *ctx)
{
    /* The last plan is gone, so no call is being made; commands may still wait. */
    clnorm_held_release(ctx);
    pthread_mutex_destroy(&ctx->held_lock);
    for (clnorm_program_entry *e = ctx->programs, *next; e; e = next) {
        next = e->next;
        clReleaseProgram(e->program);
        free(e->options);
        free(e);
    }
    for (size_t i = 0; i < ctx->npackages; ++i)
        free(ctx->packages[i]);
    free(ctx->packages);
    if (ctx->queue)
        clReleaseCommandQueue(ctx->queue);
    if (ctx->cl)
        clReleaseContext(ctx->cl);
    pthread_mutex_destroy(&ctx->lock);
    clnorm_error_forget(ctx);
    free(ctx);
}

clnorm_status clnorm_context_add_package_dir(clnorm_context *ctx, const char *dir)
{
    size_t n = strlen(dir);
    char *copy = malloc(n + 1);
    pthread_mutex_lock(&ctx->lock);
    char **grown = copy ? realloc(ctx->packages, (ctx->npackages + 1) * sizeof *grown) : NULL;
    if (grown) {
        memcpy(copy, dir, n + 1);
        ctx->packages = grown;
        ctx->packages[ctx->npackages++] = copy;
    }
    pthread_mutex_unlock(&ctx->lock);
    if (!grown) {
        free(copy);
        return clnorm_fail(ctx, CLNORM_ERROR_OUT_OF_MEMORY, "kernel package list: out of memory");
    }
    return CLNORM_SUCCESS;
}

/* What every new context reads from the environment: device facts, tuning, and the kernel
 * packages of CLNORM_KERNEL_PACKAGE (folders that do not exist are searched and hold nothing). */
static clnorm_status context_setup(clnorm_context *ctx)
{
    clnorm_device_info_read(ctx->platform, ctx->device, &ctx->info);
    clnorm_tuning_load(ctx);
    const char *list = getenv("CLNORM_KERNEL_PACKAGE");
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > 0) {
            char dir[4096];
            if (n >= sizeof dir)
                return clnorm_fail(NULL, CLNORM_ERROR_INVALID_ARGUMENT,
                                   "CLNORM_KERNEL_PACKAGE: a folder name of %zu bytes", n);
            memcpy(dir, p, n);
            dir[n] = '\0';
            if (clnorm_context_add_package_dir(ctx, dir))
                return clnorm_fail(NULL, CLNORM_ERROR_OUT_OF_MEMORY,
                                   "kernel package list: out of memory");
        }
        p = end ? end + 1 : p + n;
    }
    return CLNORM_SUCCESS;
}

clnorm_status clnorm_context_create(const char *device_spec, clnorm_context **out)
{
    clnorm_status status = CLNORM_SUCCESS;
    clnorm_context *ctx = NULL;
    device_entry *list = NULL;
    if (!out)
        return clnorm_fail(NULL, CLNORM_ERROR_INVALID_ARGUMENT, "out: NULL");
    *out = NULL;
    clnorm_error_clear(NULL);

    const char *spec = device_spec && *device_spec ? device_spec : getenv("CLNORM_DEVICE");
    list = calloc(MAX_PLATFORMS * MAX_DEVICES, sizeof *list);
    if (!list)
        return clnorm_fail(NULL, CLNORM_ERROR_OUT_OF_MEMORY, "device list: out of memory");
    size_t count = list_devices(list, MAX_PLATFORMS * MAX_DEVICES);
    long pick = -1;
    if (spec && *spec) {
        pick = match_spec(list, count, spec);
    } else {
        pick = match_spec(list, count, "gpu");
        if (pick < 0 && count > 0)
            pick = 0;
    }
    if (pick < 0) {
        status = clnorm_fail(NULL, CLNORM_ERROR_NO_DEVICE, "no OpenCL device matches \"%s\"; %s",
                             spec && *spec ? spec : "(default)",
                             count ? "devices:" : "no OpenCL devices were found");
        for (size_t i = 0; i < count; ++i) {
            char line[600];
            snprintf(line, sizeof line, "\n  %u:%u  %s  (%s)", list[i].pi, list[i].di,
                     list[i].label, type_name(list[i].type));
            clnorm_error_append(NULL, line);
        }
        goto fail;
    }

    ctx = context_new();
    if (!ctx) {
        status = clnorm_fail(NULL, CLNORM_ERROR_OUT_OF_MEMORY, "context: out of memory");
        goto fail;
    }
    const device_entry *e = &list[pick];
    ctx->platform = e->platform;
    ctx->device = e->device;
    if ((status = context_setup(ctx)))
        goto fail;
    cl_int err = CL_SUCCESS;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)e->platform, 0};
    ctx->cl = clCreateContext(props, 1, &e->device, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        status = clnorm_fail_cl(NULL, err, "clCreateContext", e->label);
        goto fail;
    }
    ctx->queue = clCreateCommandQueue(ctx->cl, e->device, 0, &err);
    if (err != CL_SUCCESS) {
        status = clnorm_fail_cl(NULL, err, "clCreateCommandQueue", e->label);
        goto fail;
    }
    *out = ctx;
    free(list);
    return CLNORM_SUCCESS;
fail:
    if (ctx)
        context_free(ctx);
    free(list);
    return status;
}

clnorm_status clnorm_context_create_from_queue(cl_command_queue queue, clnorm_context **out)
{
    clnorm_status status = CLNORM_SUCCESS;
    clnorm_context *ctx = NULL;
    if (!out)
        return clnorm_fail(NULL, CLNORM_ERROR_INVALID_ARGUMENT, "out: NULL");
    *out = NULL;
    clnorm_error_clear(NULL);
    if (!queue)
        return clnorm_fail(NULL, CLNORM_ERROR_INVALID_ARGUMENT, "queue: NULL");

    ctx = context_new();
    if (!ctx)
        return clnorm_fail(NULL, CLNORM_ERROR_OUT_OF_MEMORY, "context: out of memory");
    cl_command_queue_properties props = 0;
    cl_int err = clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof ctx->cl, &ctx->cl, NULL);
    if (err == CL_SUCCESS)
        err = clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof ctx->device, &ctx->device,
                                    NULL);
    if (err == CL_SUCCESS)
        err = clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof props, &props, NULL);
    if (err == CL_SUCCESS)
        err = clGetDeviceInfo(ctx->device, CL_DEVICE_PLATFORM, sizeof ctx->platform,
                              &ctx->platform, NULL);
    if (err != CL_SUCCESS) {
        ctx->cl = NULL; /* not retained yet */
        status = clnorm_fail_cl(NULL, err, "clGetCommandQueueInfo", "queue");
        goto fail;
    }
    /* Retain only after every query succeeded, so that failure releases nothing of theirs. */
    clRetainContext(ctx->cl);
    clRetainCommandQueue(queue);
    ctx->queue = queue;
    ctx->out_of_order = (props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) != 0;
    if ((status = context_setup(ctx)))
        goto fail;
    *out = ctx;
    return CLNORM_SUCCESS;
fail:
    context_free(ctx);
    return status;
}

void clnorm_context_release(clnorm_context *ctx)
{
    if (ctx && atomic_fetch_sub(&ctx->refs, 1) == 1)
        context_free(ctx);
}

cl_context clnorm_context_cl(const clnorm_context *ctx) { return ctx ? ctx->cl : NULL; }

cl_command_queue clnorm_context_queue(const clnorm_context *ctx)
{
    return ctx ? ctx->queue : NULL;
}
