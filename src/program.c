/*
 * Building programs: once per context and option set in memory, once per machine on disk.
 *
 * Every kernel file is compiled into one program per variant (storage type, kind, layout,
 * device class), so a plan needs one build. Devices without a compiler (FPGAs) can only load
 * binaries; they find them in the same cache, by the same key, so shipping prebuilt binaries
 * is a matter of filling the cache folder.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const files[] = {"common.clh", "stats.cl", "apply.cl", "backward.cl",
                                    "copy.cl"};
#define NFILES (sizeof files / sizeof files[0])

/*
 * The concatenated source, each file introduced by a #line so logs name the right file. The
 * bytes depend only on the files, so the cache key (which holds them) is the same every time.
 * first_line[i] is the line of the concatenation on which file i's line 1 sits: drivers whose
 * diagnostics ignore #line (Oclgrind 21.10 prints "input.cl:<line of the concatenation>")
 * have their build logs mapped back with it (map_log).
 */
static clnorm_status read_sources(const clnorm_context *ctx, char **out, size_t *out_size,
                                  size_t first_line[NFILES])
{
    char *all = NULL;
    size_t size = 0, lines = 0;
    for (size_t i = 0; i < NFILES; ++i) {
        char *text = NULL;
        size_t n = 0;
        clnorm_status status = clnorm_kernel_source_read(ctx, files[i], &text, &n);
        if (status != CLNORM_SUCCESS) {
            free(all);
            return status;
        }
        char head[64];
        int hn = snprintf(head, sizeof head, "\n#line 1 \"%s\"\n", files[i]);
        char *grown = realloc(all, size + (size_t)hn + n + 1);
        if (!grown) {
            free(text);
            free(all);
            return clnorm_fail(ctx, CLNORM_ERROR_OUT_OF_MEMORY, "kernel source: out of memory");
        }
        all = grown;
        memcpy(all + size, head, (size_t)hn);
        memcpy(all + size + hn, text, n + 1);
        lines += 2; /* the head's two newlines */
        first_line[i] = lines + 1;
        for (size_t k = 0; k < n; ++k)
            lines += text[k] == '\n';
        size += (size_t)hn + n;
        free(text);
    }
    *out = all;
    *out_size = size;
    return CLNORM_SUCCESS;
}

static int is_kernel_file(const char *name, size_t len)
{
    for (size_t i = 0; i < NFILES; ++i)
        if (strlen(files[i]) == len && memcmp(files[i], name, len) == 0)
            return 1;
    return 0;
}

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-' || c == '<' || c == '>';
}

/*
 * A build log with every "NAME:LINE:" that counts lines of the concatenation rewritten as
 * "FILE:LINE" of the kernel file holding that line. NAME is the driver's name for the whole
 * source (Oclgrind's "input.cl"; "<source>" and the like elsewhere): a bare file name (with a
 * dot, or in angle brackets), not one of the kernel files (those locations already honour
 * #line, as PoCL's do) and not a header (a name ending in ".h", or one with a directory, such
 * as the driver's own opencl-c.h).
 * Returns NULL when out of memory.
 */
static char *map_log(const char *log, const size_t first_line[NFILES])
{
    size_t len = strlen(log);
    /* A rewrite turns NAME:LINE (3 bytes or more) into a file name, a colon and a line number:
     * 32 bytes at most. */
    size_t cap = len * 11 + 1, o = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (size_t i = 0; i < len;) {
        if (!is_name_char(log[i]) || (i > 0 && !strchr(" \t\n(\"'", log[i - 1]))) {
            out[o++] = log[i++];
            continue;
        }
        size_t end = i;
        while (end < len && is_name_char(log[end]))
            ++end;
        size_t name_len = end - i, d = end + 1;
        unsigned long long line = 0;
        if (end < len && log[end] == ':')
            while (d < len && log[d] >= '0' && log[d] <= '9' && line < 100000000ull)
                line = line * 10 + (unsigned long long)(log[d++] - '0');
        int header = name_len >= 2 && log[end - 2] == '.' && log[end - 1] == 'h';
        /* the compiler's own pseudo-file of predefined and -D macros */
        if (name_len == 10 && !memcmp(log + i, "<built-in>", 10))
            header = 1;
        int file_like = log[i] == '<' || memchr(log + i, '.', name_len) != NULL;
        if (line >= first_line[0] && d < len && log[d] == ':' && file_like && !header &&
            !is_kernel_file(log + i, name_len)) {
            size_t f = 0;
            while (f + 1 < NFILES && first_line[f + 1] <= line)
                ++f;
            o += (size_t)snprintf(out + o, cap - o, "%s:%llu", files[f],
                                  line - (unsigned long long)first_line[f] + 1);
            i = d;
        } else {
            /* Not a location: the whole name is copied, so no tail of it is taken for one. */
            memcpy(out + o, log + i, name_len);
            o += name_len;
            i = end;
        }
    }
    out[o] = '\0';
    return out;
}

/* Everything the compiled binary depends on, source included. */
static char *make_key(const clnorm_context *ctx, const char *options, const char *source,
                      size_t source_size, size_t *key_size)
{
    const clnorm_device_info *d = &ctx->info;
    char head[2048];
    int n = snprintf(head, sizeof head,
                     "clnorm %s\nplatform %s | %s\ndevice %s | %s | %s\noptions %s\nsource %zu\n",
                     CLNORM_VERSION_STRING, d->platform_name, d->platform_version,
                     d->device_name, d->device_vendor, d->driver_version, options, source_size);
    if (n < 0 || (size_t)n >= sizeof head)
        return NULL;
    char *key = malloc((size_t)n + source_size);
    if (!key)
        return NULL;
    memcpy(key, head, (size_t)n);
    memcpy(key + n, source, source_size);
    *key_size = (size_t)n + source_size;
    return key;
}

static clnorm_status build_failed(const clnorm_context *ctx, cl_program program, cl_int err,
                                  const char *options, const size_t first_line[NFILES])
{
    clnorm_status status =
        clnorm_fail(ctx, CLNORM_ERROR_BUILD_FAILED, "clBuildProgram: %s [%d] (options: %s)",
                    clnorm_cl_error_name(err), (int)err, options);
    size_t size = 0;
    if (clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &size) ==
            CL_SUCCESS &&
        size > 1) {
        char *log = malloc(size + 1);
        if (log && clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, size, log,
                                         NULL) == CL_SUCCESS) {
            log[size] = '\0';
            char *mapped = map_log(log, first_line);
            clnorm_error_append(ctx, "\nbuild log:\n");
            clnorm_error_append(ctx, mapped ? mapped : log);
            free(mapped);
        }
        free(log);
    }
    return status;
}

static cl_program from_binary(const clnorm_context *ctx, const unsigned char *binary, size_t size,
                              const char *options)
{
    cl_int err, binary_status;
    cl_program program = clCreateProgramWithBinary(ctx->cl, 1, &ctx->device, &size, &binary,
                                                   &binary_status, &err);
    if (err != CL_SUCCESS || binary_status != CL_SUCCESS) {
        if (program)
            clReleaseProgram(program);
        return NULL;
    }
    if (clBuildProgram(program, 1, &ctx->device, options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(program);
        return NULL;
    }
    return program;
}

static void store_binary(cl_program program, const char *key, size_t key_size)
{
    size_t size = 0;
    if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) !=
            CL_SUCCESS ||
        size == 0)
        return;
    unsigned char *binary = malloc(size);
    if (binary &&
        clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof binary, &binary, NULL) == CL_SUCCESS)
        clnorm_cache_store(key, key_size, binary, size);
    free(binary);
}

static clnorm_status build(clnorm_context *ctx, const char *options, cl_program *out)
{
    clnorm_status status = CLNORM_SUCCESS;
    char *source = NULL, *key = NULL;
    unsigned char *binary = NULL;
    size_t source_size = 0, key_size = 0, binary_size = 0, first_line[NFILES];
    cl_program program = NULL;

    status = read_sources(ctx, &source, &source_size, first_line);
    if (status != CLNORM_SUCCESS)
        goto fail;
    key = make_key(ctx, options, source, source_size, &key_size);
    if (!key) {
        status = clnorm_fail(ctx, CLNORM_ERROR_OUT_OF_MEMORY, "cache key: out of memory");
        goto fail;
    }
    binary = clnorm_cache_load(key, key_size, &binary_size);
    if (binary)
        program = from_binary(ctx, binary, binary_size, options);
    if (program) {
        ctx->loaded++;
    } else {
        if (!ctx->info.compiler_available) {
            status = clnorm_fail(ctx, CLNORM_ERROR_UNSUPPORTED,
                                 "device %s has no compiler and the binary cache holds no "
                                 "program for options \"%s\"",
                                 ctx->info.device_name, options);
            goto fail;
        }
        cl_int err;
        const char *text = source;
        program = clCreateProgramWithSource(ctx->cl, 1, &text, &source_size, &err);
        if (err != CL_SUCCESS) {
            status = clnorm_fail_cl(ctx, err, "clCreateProgramWithSource", "kernels");
            goto fail;
        }
        err = clBuildProgram(program, 1, &ctx->device, options, NULL, NULL);
        if (err != CL_SUCCESS) {
            status = build_failed(ctx, program, err, options, first_line);
            goto fail;
        }
        ctx->compiled++;
        store_binary(program, key, key_size);
    }
    *out = program;
    program = NULL;
fail:
    if (program)
        clReleaseProgram(program);
    free(binary);
    free(key);
    free(source);
    return status;
}

clnorm_status clnorm_program_get(clnorm_context *ctx, const char *options, cl_program *out)
{
    clnorm_status status = CLNORM_SUCCESS;
    pthread_mutex_lock(&ctx->lock);
    for (clnorm_program_entry *e = ctx->programs; e; e = e->next) {
        if (strcmp(e->options, options) == 0) {
            *out = e->program;
            goto done;
        }
    }
    clnorm_program_entry *e = calloc(1, sizeof *e);
    char *copy = malloc(strlen(options) + 1);
    if (!e || !copy) {
        free(e);
        free(copy);
        status = clnorm_fail(ctx, CLNORM_ERROR_OUT_OF_MEMORY, "program list: out of memory");
        goto done;
    }
    strcpy(copy, options);
    status = build(ctx, options, &e->program);
    if (status != CLNORM_SUCCESS) {
        free(e);
        free(copy);
        goto done;
    }
    e->options = copy;
    e->next = ctx->programs;
    ctx->programs = e;
    *out = e->program;
done:
    pthread_mutex_unlock(&ctx->lock);
    return status;
}
