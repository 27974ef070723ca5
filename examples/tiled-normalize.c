/*
 * tiled-normalize: instance normalization of an image larger than one OpenCL buffer.
 *
 * A W x H image of C float channels, channels last, is cut into bands of rows, each small
 * enough for one buffer (CL_DEVICE_MAX_MEM_ALLOC_SIZE, or --max-alloc BYTES to pretend a
 * smaller device). Three steps normalize it as one call would:
 *   1. clnorm_moments on every band: (count, mean, M2) per channel;
 *   2. clnorm_moments_merge on the host, bands in order: the whole image's moments;
 *   3. clnorm_forward_with_moments on every band with the merged moments.
 * Every band stays on the device between steps 1 and 3, so the image must fit the device's
 * memory, only not one allocation; a larger image would upload each band again for step 3.
 * Where the whole image fits in one buffer, the program also normalizes it in one call and
 * compares: the largest difference is printed, and a difference beyond float rounding fails.
 *
 *   tiled-normalize [--max-alloc BYTES] [WIDTH HEIGHT CHANNELS]
 */
#include <clnorm/clnorm.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                                               \
    do {                                                                                          \
        clnorm_status s_ = (call);                                                                \
        if (s_ != CLNORM_SUCCESS) {                                                               \
            fprintf(stderr, "tiled-normalize: %s: %s\n", #call, clnorm_context_last_error(ctx)); \
            exit(1);                                                                              \
        }                                                                                         \
    } while (0)

static clnorm_context *ctx;

static cl_mem device_buffer(size_t bytes, const void *data)
{
    cl_int err;
    cl_mem m = clCreateBuffer(clnorm_context_cl(ctx),
                              CL_MEM_READ_WRITE | (data ? CL_MEM_COPY_HOST_PTR : 0), bytes,
                              (void *)data, &err);
    if (err != CL_SUCCESS) {
        fprintf(stderr, "tiled-normalize: clCreateBuffer of %zu bytes: %d\n", bytes, (int)err);
        exit(1);
    }
    return m;
}

static void read_buffer(cl_mem m, void *out, size_t bytes)
{
    if (clEnqueueReadBuffer(clnorm_context_queue(ctx), m, CL_TRUE, 0, bytes, out, 0, NULL,
                            NULL) != CL_SUCCESS) {
        fprintf(stderr, "tiled-normalize: clEnqueueReadBuffer failed\n");
        exit(1);
    }
}

/* The plan for a band of `rows` rows (bands are all alike but the last). */
static clnorm_plan *band_plan(size_t width, size_t channels, size_t rows)
{
    clnorm_desc desc = {.kind = CLNORM_INSTANCE, .layout = CLNORM_NHWC, .dtype = CLNORM_F32,
                        .n = 1, .c = channels, .d = rows * width, .eps = 1e-5f};
    clnorm_plan *plan;
    CHECK(clnorm_plan_create(ctx, &desc, &plan));
    return plan;
}

int main(int argc, char **argv)
{
    size_t width = 1024, height = 768, channels = 3, max_alloc = 0;
    int arg = 1;
    if (arg + 1 < argc && strcmp(argv[arg], "--max-alloc") == 0) {
        max_alloc = strtoull(argv[arg + 1], NULL, 10);
        arg += 2;
    }
    if (arg + 3 == argc) {
        width = strtoull(argv[arg], NULL, 10);
        height = strtoull(argv[arg + 1], NULL, 10);
        channels = strtoull(argv[arg + 2], NULL, 10);
    } else if (arg != argc) {
        fprintf(stderr, "usage: tiled-normalize [--max-alloc BYTES] [WIDTH HEIGHT CHANNELS]\n");
        return 2;
    }
    if (!width || !height || !channels) {
        fprintf(stderr, "tiled-normalize: the image needs a pixel and a channel\n");
        return 2;
    }
    if (clnorm_context_create(NULL, &ctx) != CLNORM_SUCCESS) {
        fprintf(stderr, "tiled-normalize: %s\n", clnorm_context_last_error(NULL));
        return 77; /* no device: skipped */
    }
    cl_device_id device;
    cl_ulong device_max = 0;
    clGetCommandQueueInfo(clnorm_context_queue(ctx), CL_QUEUE_DEVICE, sizeof device, &device,
                          NULL);
    clGetDeviceInfo(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof device_max, &device_max, NULL);
    if (!max_alloc || max_alloc > device_max)
        max_alloc = device_max;

    size_t row_bytes = width * channels * sizeof(float), bytes = row_bytes * height;
    size_t band_rows = max_alloc / row_bytes;
    if (band_rows == 0) {
        fprintf(stderr, "tiled-normalize: one row (%zu bytes) is over %zu bytes\n", row_bytes,
                max_alloc);
        return 1;
    }
    if (band_rows > height)
        band_rows = height;
    size_t bands = (height + band_rows - 1) / band_rows;

    /* An image with a different brightness and contrast per channel and a gradient. */
    float *image = malloc(bytes), *out = malloc(bytes);
    unsigned state = 12345;
    for (size_t y = 0; y < height; ++y)
        for (size_t x = 0; x < width; ++x)
            for (size_t c = 0; c < channels; ++c) {
                state = state * 1103515245u + 12345u;
                double noise = (double)(state >> 8) / (1 << 24) - 0.5;
                image[(y * width + x) * channels + c] =
                    (float)(100.0 * (double)(c + 1) + 20.0 * (double)y / (double)height +
                            (double)(c + 1) * noise);
            }

    /* 1. moments of every band */
    clnorm_plan *full = band_plan(width, channels, band_rows);
    size_t last_rows = height - (bands - 1) * band_rows;
    clnorm_plan *last = last_rows == band_rows ? full : band_plan(width, channels, last_rows);
    size_t groups = clnorm_plan_stats_count(full); /* = channels */
    float *sets = malloc(bands * groups * CLNORM_MOMENTS_FLOATS * sizeof(float));
    cl_mem moments = device_buffer(groups * CLNORM_MOMENTS_FLOATS * sizeof(float), NULL);
    cl_mem *tiles = malloc(bands * sizeof *tiles);
    for (size_t b = 0; b < bands; ++b) {
        size_t rows = b + 1 < bands ? band_rows : last_rows;
        tiles[b] = device_buffer(rows * row_bytes, image + b * band_rows * width * channels);
        CHECK(clnorm_moments(b + 1 < bands ? full : last, tiles[b], moments, 0, NULL, NULL));
        read_buffer(moments, sets + b * groups * CLNORM_MOMENTS_FLOATS,
                    groups * CLNORM_MOMENTS_FLOATS * sizeof(float));
    }
    /* 2. the whole image's moments */
    float *merged = malloc(groups * CLNORM_MOMENTS_FLOATS * sizeof(float));
    clnorm_moments_merge(sets, bands, groups, merged);
    if (clEnqueueWriteBuffer(clnorm_context_queue(ctx), moments, CL_TRUE, 0,
                             groups * CLNORM_MOMENTS_FLOATS * sizeof(float), merged, 0, NULL,
                             NULL) != CL_SUCCESS) {
        fprintf(stderr, "tiled-normalize: clEnqueueWriteBuffer failed\n");
        return 1;
    }
    /* 3. every band normalized with them, in place */
    for (size_t b = 0; b < bands; ++b) {
        size_t rows = b + 1 < bands ? band_rows : last_rows;
        clnorm_buffers bufs = {.x = tiles[b], .y = tiles[b]};
        CHECK(clnorm_forward_with_moments(b + 1 < bands ? full : last, CLNORM_TRAINING, moments,
                                          &bufs, 0, NULL, NULL));
        read_buffer(tiles[b], out + b * band_rows * width * channels, rows * row_bytes);
        clReleaseMemObject(tiles[b]);
    }
    printf("%zu x %zu x %zu floats (%.1f MiB) in %zu bands of up to %zu rows (%.1f MiB each)\n",
           width, height, channels, (double)bytes / 1048576.0, bands, band_rows,
           (double)(band_rows * row_bytes) / 1048576.0);
    for (size_t c = 0; c < groups; ++c)
        printf("channel %zu: mean %.6f, std %.6f over %.0f pixels\n", c,
               (double)merged[3 * c + 1],
               sqrt((double)merged[3 * c + 2] / (double)merged[3 * c]), (double)merged[3 * c]);

    int status = 0;
    if (bytes <= device_max) { /* one call fits: it must agree */
        clnorm_plan *one = band_plan(width, channels, height);
        cl_mem x = device_buffer(bytes, image);
        clnorm_buffers bufs = {.x = x, .y = x};
        CHECK(clnorm_forward(one, CLNORM_TRAINING, &bufs, 0, NULL, NULL));
        float *ref = malloc(bytes);
        read_buffer(x, ref, bytes);
        double worst = 0;
        for (size_t i = 0; i < bytes / sizeof(float); ++i) {
            double d = fabs((double)out[i] - (double)ref[i]);
            if (!(d <= worst)) /* NaN counts as worst */
                worst = d;
        }
        /* values of about unit size, from data of mean up to 100*C: float rounding of the
         * normalized value is a few 2^-24 * 100*C / std */
        double tol = 1e-4 * (double)channels;
        printf("one call: largest difference %.3g (tolerance %.3g)\n", worst, tol);
        status = worst <= tol ? 0 : 1;
        free(ref);
        clReleaseMemObject(x);
        clnorm_plan_release(one);
    }
    clReleaseMemObject(moments);
    if (last != full)
        clnorm_plan_release(last);
    clnorm_plan_release(full);
    clnorm_context_release(ctx);
    free(image);
    free(out);
    free(sets);
    free(merged);
    free(tiles);
    return status;
}
