/*
 * What clnorm-bench and omp-ceiling share, so that both measure the same problems the same
 * way: the problem names (kind:pass:layout:NxCxD[/G]), the default suite, and medians.
 */
#ifndef CLNORM_TOOLS_BENCH_H
#define CLNORM_TOOLS_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

static const char *const kind_names[] = {"batch", "layer", "instance", "group", "rms"};
static const char *const pass_names[] = {"forward-training", "forward-inference", "backward"};
static const char *const layout_names[] = {"nchw", "nhwc"};

/*
 * Shapes users meet, at the sizes the performance targets are measured on (>= 16 MiB in f32)
 * for every kind, plus medium and small ones where launch overhead and layout matter. Layout is
 * left out where it changes nothing (D = 1), and not every pass is run on every shape, to keep
 * the suite to a few minutes on a 2-core CPU.
 */
static const char *const default_suite[] = {
    /* ResNet activations, 24.5 MiB */
    "batch:forward-training:nchw:32x64x3136",
    "batch:forward-training:nhwc:32x64x3136",
    "batch:forward-inference:nchw:32x64x3136",
    "batch:forward-inference:nhwc:32x64x3136",
    "batch:backward:nchw:32x64x3136",
    "batch:backward:nhwc:32x64x3136",
    "instance:forward-training:nchw:32x64x3136",
    "instance:forward-training:nhwc:32x64x3136",
    "instance:backward:nchw:32x64x3136",
    "instance:backward:nhwc:32x64x3136",
    "group:forward-training:nchw:32x64x3136/32",
    "group:forward-training:nhwc:32x64x3136/32",
    /* An HD image, 23.7 MiB: three long channels */
    "instance:forward-training:nchw:1x3x2073600",
    "instance:forward-training:nhwc:1x3x2073600",
    "instance:forward-inference:nchw:1x3x2073600",
    "instance:forward-inference:nhwc:1x3x2073600",
    "instance:backward:nchw:1x3x2073600",
    "instance:backward:nhwc:1x3x2073600",
    /* Diffusion U-Net group norm, 20 MiB */
    "group:forward-training:nchw:4x320x4096/32",
    "group:forward-training:nhwc:4x320x4096/32",
    "group:forward-inference:nchw:4x320x4096/32",
    "group:forward-inference:nhwc:4x320x4096/32",
    "group:backward:nchw:4x320x4096/32",
    "group:backward:nhwc:4x320x4096/32",
    /* Transformer rows, 16 MiB */
    "layer:forward-training:nchw:4096x1024x1",
    "layer:forward-inference:nchw:4096x1024x1",
    "layer:backward:nchw:4096x1024x1",
    "rms:forward-training:nchw:4096x1024x1",
    "rms:forward-inference:nchw:4096x1024x1",
    "rms:backward:nchw:4096x1024x1",
    /* ResNet, later stage, 8 MiB */
    "batch:forward-training:nchw:8x256x1024",
    "batch:forward-training:nhwc:8x256x1024",
    "batch:backward:nchw:8x256x1024",
    "batch:backward:nhwc:8x256x1024",
    "group:forward-training:nchw:8x256x1024/32",
    "group:forward-training:nhwc:8x256x1024/32",
    "group:backward:nchw:8x256x1024/32",
    "group:backward:nhwc:8x256x1024/32",
    "instance:forward-training:nchw:8x256x1024",
    "instance:forward-training:nhwc:8x256x1024",
    "layer:forward-training:nchw:8x256x1024",
    "layer:forward-training:nhwc:8x256x1024",
    "rms:forward-training:nchw:8x256x1024",
    "rms:forward-training:nhwc:8x256x1024",
    /* Small: launch overhead dominates */
    "batch:forward-training:nchw:1x32x64",
    "batch:forward-training:nhwc:1x32x64",
    "layer:forward-training:nchw:1x32x64",
    "instance:forward-training:nchw:1x32x64",
    "group:forward-training:nchw:1x32x64/8",
    "group:forward-training:nhwc:1x32x64/8",
    "rms:forward-training:nchw:1x32x64",
    "layer:backward:nchw:1x32x64",
    /* Imaging: an HD RGB frame of 8-bit pixels to float (ImageNet preprocessing, 5.9 MiB of x
     * and 23.7 MiB of y), a 4K 16-bit frame standardized whole */
    "batch:forward-inference:nhwc:1x3x2073600:u8-f32",
    "layer:forward-training:nchw:1x1x8294400:u16-f32",
};

/* The suite's first problems, of 16 MiB and more: those the performance targets are set on. */
#define SUITE_LARGE 30

/* Digits only (no sign, no spaces): strtoull alone would take "-1" and " 7". */
static inline int parse_size(const char **text, size_t *out)
{
    const char *s = *text;
    size_t v = 0;
    if (*s < '0' || *s > '9')
        return -1;
    for (; *s >= '0' && *s <= '9'; ++s) {
        size_t digit = (size_t)(*s - '0');
        if (v > (SIZE_MAX - digit) / 10)
            return -1;
        v = v * 10 + digit;
    }
    *text = s;
    *out = v;
    return 0;
}

static inline int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts t. */
static inline double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, compare_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/*
 * Whether PoCL's worker threads are pinned, for the tables' headers: PoCL starts as many
 * threads as cores and lets them migrate unless POCL_AFFINITY=1 pins thread k to core k. On the
 * 2-core VM that decided a cold call's time by up to 2x (README, "Pinned threads").
 */
static inline const char *pocl_threads_note(void)
{
    const char *a = getenv("POCL_AFFINITY");
    return a && a[0] == '1' ? "PoCL threads pinned (POCL_AFFINITY=1)"
                            : "PoCL threads not pinned (POCL_AFFINITY not 1)";
}

#endif
