/*
 * Tuning parameters per device: defaults by device class, replaced by what `clnorm-bench
 * --tune` measured and saved beside the binary cache. The file is keyed like the cache (library
 * version, platform, device, driver), so an upgrade or another device never reads it; a file
 * that does not parse, or holds values out of range, is ignored.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FORMAT "clnorm-tune 2"
#define STREAM_MIN_CPU ((size_t)4 << 20)

static void defaults(clnorm_tuning *t, clnorm_device_class cls)
{
    /* Measured on PoCL (2-core x86): blocks of 4096 elements keep a block's second sweep in L1;
     * 16384-element apply chunks stream at copy speed. GPUs: 64-wide groups, 8-element chunks. */
    t->block = 4096;
    t->chunk_max = cls == CLNORM_CLASS_GPU ? 8 : 16384;
    t->local = cls == CLNORM_CLASS_GPU ? 64 : 8;
    /* CPUs: non-temporal stores from STREAM_MIN_CPU bytes of output (measured: see README,
     * "Streaming stores"); GPUs: not measured, off. */
    t->stream_min = cls == CLNORM_CLASS_GPU ? 0 : STREAM_MIN_CPU;
    /* 65536 elements: a core's share of its cache (L2 is 0.5-2 MiB per core on current x86) */
    t->fused_max = 65536;
    t->from_file = 0;
}

static int valid(const clnorm_tuning *t)
{
    int pow2 = (t->block & (t->block - 1)) == 0 && (t->local & (t->local - 1)) == 0 &&
               (t->chunk_max & 7) == 0;
    return pow2 && t->block >= 256 && t->block <= (1u << 20) && t->chunk_max >= 8 &&
           t->chunk_max <= (1u << 22) && t->local >= 1 && t->local <= 1024;
}

static int tune_path(const clnorm_context *ctx, char *out, size_t size)
{
    char dir[4096], key[2048];
    if (!clnorm_cache_dir(dir, sizeof dir))
        return 0;
    const clnorm_device_info *d = &ctx->info;
    int n = snprintf(key, sizeof key, "clnorm %s\nplatform %s | %s\ndevice %s | %s | %s\n",
                     CLNORM_VERSION_STRING, d->platform_name, d->platform_version,
                     d->device_name, d->device_vendor, d->driver_version);
    if (n < 0 || (size_t)n >= sizeof key)
        return 0;
    unsigned long long h =
        (unsigned long long)clnorm_hash64(key, (size_t)n, CLNORM_HASH_SEED ^ d->cls);
    n = snprintf(out, size, "%s/tune-%016llx.txt", dir, h);
    return n > 0 && (size_t)n < size;
}

/* CLNORM_STREAM_MIN: bytes (0: never), over the default or the file; for tests and A/B runs. */
static void stream_override(clnorm_tuning *t)
{
    const char *text = getenv("CLNORM_STREAM_MIN");
    if (!text || *text < '0' || *text > '9')
        return;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (*end == '\0')
        t->stream_min = (size_t)v;
}

/* The saved file's values over the defaults, where it is this format and valid. */
static void read_file(clnorm_context *ctx)
{
    char path[4200];
    if (!tune_path(ctx, path, sizeof path))
        return;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    clnorm_tuning t = ctx->tuning;
    char head[64] = "";
    unsigned long block, chunk, local, stream;
    if (fgets(head, sizeof head, f) && strncmp(head, FORMAT "\n", sizeof FORMAT) == 0 &&
        fscanf(f, "block %lu\nchunk %lu\nlocal %lu\nstream %lu\n", &block, &chunk, &local,
               &stream) == 4) {
        t.block = block;
        t.chunk_max = chunk;
        t.local = local;
        t.stream_min = stream;
        t.from_file = 1;
        if (valid(&t))
            ctx->tuning = t;
    }
    fclose(f);
}

void clnorm_tuning_load(clnorm_context *ctx)
{
    defaults(&ctx->tuning, ctx->info.cls);
    read_file(ctx);
    stream_override(&ctx->tuning);
}

clnorm_status clnorm_tuning_store(const clnorm_context *ctx, char *path, size_t size)
{
    if (!valid(&ctx->tuning))
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "tuning: values out of range");
    if (!tune_path(ctx, path, size))
        return clnorm_fail(ctx, CLNORM_ERROR_UNSUPPORTED,
                           "tuning: no cache folder (CLNORM_CACHE=0, or no HOME)");
    char dir[4096], tmp[4300];
    clnorm_cache_dir(dir, sizeof dir);
    if (!clnorm_make_dirs(dir))
        return clnorm_fail(ctx, CLNORM_ERROR_OPENCL, "tuning: cannot create %s: %s", dir,
                           strerror(errno));
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return clnorm_fail(ctx, CLNORM_ERROR_OPENCL, "tuning: cannot write %s: %s", tmp,
                           strerror(errno));
    int ok = fprintf(f, FORMAT "\nblock %lu\nchunk %lu\nlocal %lu\nstream %lu\n",
                     (unsigned long)ctx->tuning.block, (unsigned long)ctx->tuning.chunk_max,
                     (unsigned long)ctx->tuning.local,
                     (unsigned long)ctx->tuning.stream_min) > 0;
    ok = fflush(f) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return clnorm_fail(ctx, CLNORM_ERROR_OPENCL, "tuning: cannot write %s", path);
    }
    return CLNORM_SUCCESS;
}
