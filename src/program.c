/*
 * Building programs: once per context, program and option set in memory; from a kernel
 * package, the binary cache or the device's compiler, in that order.
 *
 * A plan builds a forward program (statistics and apply: common.clh, stats.cl, apply.cl) and,
 * at its first backward call, a backward one (common.clh, backward.cl); clnorm-bench's copy
 * yardstick is a third, copy.cl alone. Devices without a compiler (FPGAs, or any device under
 * CLNORM_COMPILER=0) only load binaries: from packages (package.c) or the cache.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const files[] = {"common.clh", "stats.cl", "apply.cl", "backward.cl",
                                    "copy.cl"};
#define NFILES (sizeof files / sizeof files[0])
#define PARTS 3 /* most files in one program */

/* The files of each program, indices into files[], and a kernel every build of it holds (a
 * package binary without it is another program's). */
static const struct {
    const char *name;
    unsigned char count, file[PARTS];
    const char *kernel;
} programs[] = {
    [CLNORM_PROGRAM_FORWARD] = {"forward", 3, {0, 1, 2}, "stats_finalize"},
    [CLNORM_PROGRAM_BACKWARD] = {"backward", 2, {0, 3}, "bwd_apply"},
    [CLNORM_PROGRAM_COPY] = {"copy", 1, {4}, "copy"},
};

const char *clnorm_program_name(clnorm_program which) { return programs[which].name; }

int clnorm_program_from_name(const char *name, clnorm_program *out)
{
    for (size_t i = 0; i < sizeof programs / sizeof programs[0]; ++i)
        if (strcmp(programs[i].name, name) == 0) {
            *out = (clnorm_program)i;
            return 1;
        }
    return 0;
}

/*
 * The concatenated source, each file introduced by a #line so logs name the right file. The
 * bytes depend only on the files, so the cache key (which holds them) is the same every time.
 * first_line[k] is the line of the concatenation on which the program's k-th file's line 1
 * sits (k < PARTS): drivers whose
 * diagnostics ignore #line (Oclgrind 21.10 prints "input.cl:<line of the concatenation>")
 * have their build logs mapped back with it (map_log).
 */
static clnorm_status read_sources(const clnorm_context *ctx, clnorm_program which, char **out,
                                  size_t *out_size, size_t first_line[PARTS])
{
    char *all = NULL;
    size_t size = 0, lines = 0;
    for (size_t k = 0; k < programs[which].count; ++k) {
        size_t i = programs[which].file[k];
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
        first_line[k] = lines + 1;
        for (size_t j = 0; j < n; ++j)
            lines += text[j] == '\n';
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
static char *map_log(const char *log, clnorm_program which, const size_t first_line[PARTS])
{
    size_t parts = programs[which].count;
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
            while (f + 1 < parts && first_line[f + 1] <= line)
                ++f;
            o += (size_t)snprintf(out + o, cap - o, "%s:%llu", files[programs[which].file[f]],
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
                                  clnorm_program which, const char *options,
                                  const size_t first_line[PARTS])
{
    clnorm_status status = clnorm_fail(ctx, CLNORM_ERROR_BUILD_FAILED,
                                       "clBuildProgram: %s [%d] (program %s, options: %s)",
                                       clnorm_cl_error_name(err), (int)err,
                                       clnorm_program_name(which), options);
    size_t size = 0;
    if (clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &size) ==
            CL_SUCCESS &&
        size > 1) {
        char *log = malloc(size + 1);
        if (log && clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, size, log,
                                         NULL) == CL_SUCCESS) {
            log[size] = '\0';
            char *mapped = map_log(log, which, first_line);
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

/* A matching binary from the context's kernel packages, the first the driver accepts. */
static cl_program from_packages(clnorm_context *ctx, clnorm_program which, const char *options,
                                const char *source, size_t source_size,
                                clnorm_package_hint *hint)
{
    for (size_t skip = 0;; ++skip) {
        size_t size = 0;
        unsigned char *binary =
            clnorm_package_find(ctx, which, options, source, source_size, skip, &size, hint);
        if (!binary)
            return NULL;
        cl_program program = from_binary(ctx, binary, size, options);
        free(binary);
        if (program) {
            cl_int err;
            cl_kernel probe = clCreateKernel(program, programs[which].kernel, &err);
            if (probe) {
                clReleaseKernel(probe);
                return program;
            }
            clReleaseProgram(program);
        }
        if (!hint->skipped[0])
            snprintf(hint->skipped, sizeof hint->skipped, "%s: %s", hint->found,
                     program ? "not this program (its kernels differ)" : "refused by the driver");
    }
}

/* UNSUPPORTED for a program no package holds, on a device that compiles nothing: which it is,
 * and the clnorm-compile command that adds it. */
static clnorm_status missing(const clnorm_context *ctx, clnorm_program which, const char *options,
                             const char *problem, const clnorm_package_hint *hint)
{
    const clnorm_device_info *d = &ctx->info;
    const char *pkg = ctx->npackages ? ctx->packages[0] : "PACKAGE_DIR";
    clnorm_fail(ctx, CLNORM_ERROR_UNSUPPORTED,
                "device %s has no compiler%s and no kernel package%s holds program %s with "
                "options \"%s\"",
                d->device_name, d->compiler_forced_off ? " (CLNORM_COMPILER=0)" : "",
                ctx->npackages ? "" : " (none named: CLNORM_KERNEL_PACKAGE or "
                                      "clnorm_context_add_kernel_package)",
                clnorm_program_name(which), options);
    if (hint->skipped[0]) {
        clnorm_error_append(ctx, "; skipped ");
        clnorm_error_append(ctx, hint->skipped);
    }
    /* the command (the problem names the storage), its arguments shell-quoted */
    char *qpkg = clnorm_shell_quote(pkg), *qdev = clnorm_shell_quote(d->device_name);
    char *qcc = hint->compiler[0] ? clnorm_shell_quote(hint->compiler) : NULL;
    if (qpkg && qdev && (qcc || !hint->compiler[0])) {
        const char *p = problem ? problem : "copy";
        clnorm_error_append(ctx, "; add it with: ");
        if (!qcc && d->compiler_forced_off)
            clnorm_error_append(ctx, "CLNORM_COMPILER=1 ");
        clnorm_error_append(ctx, "clnorm-compile --out ");
        clnorm_error_append(ctx, qpkg);
        clnorm_error_append(ctx, " --device ");
        clnorm_error_append(ctx, qdev);
        if (qcc) {
            clnorm_error_append(ctx, " --compiler ");
            clnorm_error_append(ctx, qcc);
        } else if (!d->compiler_forced_off) {
            clnorm_error_append(ctx, " --emit");
        }
        clnorm_error_append(ctx, " ");
        clnorm_error_append(ctx, p);
        if (!qcc && !d->compiler_forced_off) {
            clnorm_error_append(ctx, ", then build the emitted source offline: "
                                     "clnorm-compile --out ");
            clnorm_error_append(ctx, qpkg);
            clnorm_error_append(ctx, " --compiler 'CMD'");
        }
    }
    free(qpkg);
    free(qdev);
    free(qcc);
    return CLNORM_ERROR_UNSUPPORTED;
}

static clnorm_status build(clnorm_context *ctx, clnorm_program which, const char *options,
                           const char *problem, cl_program *out)
{
    clnorm_status status = CLNORM_SUCCESS;
    char *source = NULL, *key = NULL;
    unsigned char *binary = NULL;
    size_t source_size = 0, key_size = 0, binary_size = 0, first_line[PARTS];
    cl_program program = NULL;
    clnorm_package_hint hint = {0};

    status = read_sources(ctx, which, &source, &source_size, first_line);
    if (status != CLNORM_SUCCESS)
        goto fail;
    program = from_packages(ctx, which, options, source, source_size, &hint);
    if (program) {
        ctx->from_package++;
        goto done;
    }
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
        goto done;
    }
    if (!ctx->info.compiler_available) {
        status = missing(ctx, which, options, problem, &hint);
        goto fail;
    }
    cl_int err;
    const char *text = source;
    program = clCreateProgramWithSource(ctx->cl, 1, &text, &source_size, &err);
    if (err != CL_SUCCESS) {
        status = clnorm_fail_cl(ctx, err, "clCreateProgramWithSource", clnorm_program_name(which));
        goto fail;
    }
    err = clBuildProgram(program, 1, &ctx->device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        status = build_failed(ctx, program, err, which, options, first_line);
        goto fail;
    }
    ctx->compiled++;
    store_binary(program, key, key_size);
done:
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

clnorm_status clnorm_program_source(const clnorm_context *ctx, clnorm_program which,
                                    char **source, size_t *size)
{
    size_t first_line[PARTS];
    return read_sources(ctx, which, source, size, first_line);
}

/* CLNORM_PROGRAM_LOG=FILE: a line per program a process builds, loads or lacks (no compiler),
 * "NAME<tab>OPTIONS<tab>PROBLEM", for clnorm-compile --from to package what an application
 * used. */
static void log_program(clnorm_program which, const char *options, const char *problem)
{
    const char *path = getenv("CLNORM_PROGRAM_LOG");
    if (!path || !*path)
        return;
    char line[1024];
    int n = snprintf(line, sizeof line, "%s\t%s\t%s\n", clnorm_program_name(which), options,
                     problem ? problem : "copy");
    if (n <= 0 || (size_t)n >= sizeof line)
        return;
    FILE *f = fopen(path, "a"); /* one write per line: lines of parallel processes stay whole */
    if (!f)
        return;
    setvbuf(f, NULL, _IOFBF, sizeof line);
    fwrite(line, 1, (size_t)n, f);
    fclose(f);
}

clnorm_status clnorm_program_get(clnorm_context *ctx, clnorm_program which, const char *options,
                                 const char *problem, cl_program *out)
{
    clnorm_status status = CLNORM_SUCCESS;
    pthread_mutex_lock(&ctx->lock);
    for (clnorm_program_entry *e = ctx->programs; e; e = e->next) {
        if (e->which == which && strcmp(e->options, options) == 0) {
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
    status = build(ctx, which, options, problem, &e->program);
    /* logged when found, and when a device without a compiler lacks it (what to package);
     * not when a compiler refused it (a work-group size the plan then does without) */
    if (status == CLNORM_SUCCESS || status == CLNORM_ERROR_UNSUPPORTED)
        log_program(which, options, problem);
    if (status != CLNORM_SUCCESS) {
        free(e);
        free(copy);
        goto done;
    }
    e->which = which;
    e->options = copy;
    e->next = ctx->programs;
    ctx->programs = e;
    *out = e->program;
done:
    pthread_mutex_unlock(&ctx->lock);
    return status;
}
