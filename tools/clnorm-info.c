/*
 * clnorm-info: the OpenCL platforms and devices clnorm can run on, with the properties that
 * decide how it runs there; with --build, compiles every kernel variant on each device and
 * reports the time and any compiler output.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int has_extension(cl_device_id dev, const char *name)
{
    size_t size = 0;
    if (clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, 0, NULL, &size) != CL_SUCCESS)
        return 0;
    char *ext = malloc(size + 1);
    int found = 0;
    if (ext && clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, size, ext, NULL) == CL_SUCCESS) {
        ext[size] = '\0';
        found = strstr(ext, name) != NULL;
    }
    free(ext);
    return found;
}

static void describe(cl_platform_id platform, cl_device_id dev, unsigned p, unsigned d)
{
    clnorm_device_info info;
    clnorm_device_info_read(platform, dev, &info);
    char clc[128] = "";
    clGetDeviceInfo(dev, CL_DEVICE_OPENCL_C_VERSION, sizeof clc - 1, clc, NULL);
    cl_ulong global = 0;
    clGetDeviceInfo(dev, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof global, &global, NULL);
    const char *type = info.type & CL_DEVICE_TYPE_GPU           ? "GPU"
                       : info.type & CL_DEVICE_TYPE_CPU         ? "CPU"
                       : info.type & CL_DEVICE_TYPE_ACCELERATOR ? "accelerator"
                                                                : "other";
    printf("  %u:%u  %s\n", p, d, info.device_name);
    printf("       type %s, vendor %s, driver %s\n", type, info.device_vendor,
           info.driver_version);
    printf("       compute units %u, max work-group %zu, local memory %llu KiB\n",
           info.compute_units, info.max_work_group, (unsigned long long)(info.local_mem >> 10));
    printf("       global memory %llu MiB, max allocation %llu MiB\n",
           (unsigned long long)(global >> 20), (unsigned long long)(info.max_alloc >> 20));
    printf("       compiler %s, fp16 %s, fp64 %s, %s\n", info.compiler_available ? "yes" : "no",
           has_extension(dev, "cl_khr_fp16") ? "yes" : "no",
           has_extension(dev, "cl_khr_fp64") ? "yes" : "no", clc);
    printf("       clnorm kernels: %s shape\n",
           info.cls == CLNORM_CLASS_GPU ? "GPU (many work-items per row)"
                                        : "CPU (one work-item per contiguous chunk)");
}

/* One plan per (storage type, kind, layout): every program variant this device can need. */
static int build_all(unsigned p, unsigned d)
{
    static const char *const kinds[] = {"batch", "layer", "instance", "group", "rms"};
    static const char *const dtypes[] = {"f32", "f16", "bf16"};
    char spec[32];
    snprintf(spec, sizeof spec, "%u:%u", p, d);
    clnorm_context *ctx;
    clnorm_status st = clnorm_context_create(spec, &ctx);
    if (st != CLNORM_SUCCESS) {
        printf("       cannot open: %s\n", clnorm_context_last_error(NULL));
        return 1;
    }
    int failures = 0;
    double total = 0;
    for (int dt = 0; dt < 3; ++dt)
        for (int k = 0; k < 5; ++k)
            for (int layout = 0; layout < 2; ++layout) {
                clnorm_desc desc = {
                    .kind = (clnorm_kind)k, .layout = (clnorm_layout)layout,
                    .dtype = (clnorm_dtype)dt, .n = 1, .c = 4, .d = 4, .groups = 2, .eps = 1e-5f,
                    .momentum = 0.1f, .y_dtype = CLNORM_Y_AS_X
                };
                unsigned long compiled = ctx->compiled, loaded = ctx->loaded;
                double t0 = now();
                clnorm_plan *plan = NULL;
                st = clnorm_plan_create(ctx, &desc, &plan);
                double t = now() - t0;
                total += t;
                const char *how = ctx->compiled > compiled ? "compiled"
                                  : ctx->loaded > loaded   ? "from disk cache"
                                                           : "already built";
                printf("       %-4s %-8s %s  %7.1f ms  %s\n", dtypes[dt], kinds[k],
                       layout ? "nhwc" : "nchw", 1e3 * t,
                       st == CLNORM_SUCCESS ? how : clnorm_status_string(st));
                if (st != CLNORM_SUCCESS) {
                    printf("%s\n", clnorm_context_last_error(ctx));
                    failures++;
                }
                clnorm_plan_release(plan);
            }
    printf("       total %.1f ms\n", 1e3 * total);
    clnorm_context_release(ctx);
    return failures;
}

int main(int argc, char **argv)
{
    int build = 0;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--build") == 0) {
            build = 1;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("clnorm %s\n", clnorm_version_string());
            return 0;
        } else {
            fprintf(stderr,
                    "usage: clnorm-info [--build] [--version]\n"
                    "  lists OpenCL devices as clnorm sees them; --build compiles every kernel\n"
                    "  variant on each device and reports times and compiler output\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    printf("clnorm %s\n", clnorm_version_string());
    cl_platform_id platforms[16];
    cl_uint np = 0;
    if (clGetPlatformIDs(16, platforms, &np) != CL_SUCCESS || np == 0) {
        printf("no OpenCL platforms\n");
        return 1;
    }
    int failures = 0;
    for (cl_uint p = 0; p < np && p < 16; ++p) {
        char name[256] = "", version[256] = "";
        clGetPlatformInfo(platforms[p], CL_PLATFORM_NAME, sizeof name - 1, name, NULL);
        clGetPlatformInfo(platforms[p], CL_PLATFORM_VERSION, sizeof version - 1, version, NULL);
        printf("platform %u: %s (%s)\n", p, name, version);
        cl_device_id devices[64];
        cl_uint nd = 0;
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 64, devices, &nd) != CL_SUCCESS)
            continue;
        for (cl_uint d = 0; d < nd && d < 64; ++d) {
            describe(platforms[p], devices[d], p, d);
            if (build)
                failures += build_all(p, d);
        }
    }
    char cache[4200];
    clnorm_cache_info(cache, sizeof cache);
    printf("binary cache: %s\n", cache);
    return failures ? 1 : 0;
}
