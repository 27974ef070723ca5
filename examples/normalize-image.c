/*
 * normalize-image: one clnorm recipe on a PNG, on the application's own OpenCL queue.
 *
 *   normalize-image [--device P:D] RECIPE IN.png OUT.png
 *
 *   autocontrast  INSTANCE per colour channel, u8 -> u8 or u16 -> u16 (the input's depth):
 *                 each channel gets mean = mid-range and std = range / 6. Alpha is copied
 *                 exactly (see below).
 *   standardize   LAYER over the whole frame's colour values, written as a 16-bit PNG of
 *                 32768 + 4096 * z. Alpha is dropped on reading: it is no colour value.
 *
 * Alpha: clnorm has no channel stride, so RGBA is normalized as c = 4 in its interleaved
 * layout (NHWC), the alpha channel with gamma = 0, and the alpha bytes of x are then copied
 * over y's on the device (clEnqueueCopyBufferRect, one pixel a row). y is thus the finished
 * image, alpha bit-exact, with no repacking of the pixels; the price is the alpha channel's
 * statistics, computed and unused.
 *
 * Any PNG is read: palette, 1/2/4-bit gray and tRNS are expanded to 8-bit channels by libpng.
 * The device: --device P:D (platform and device index), else the first GPU, else the first
 * device. Exit 0 on success, 1 on any error (with a message), 2 on bad usage.
 */
#include <clnorm/clnorm.h>
#include <png.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct image {
    png_uint_32 width, height;
    int channels, depth, alpha; /* depth 8 or 16; alpha: the last channel is alpha */
    unsigned char *pixels;      /* interleaved rows, 16-bit samples in host order */
} image;

static void fail(const char *what, const char *why)
{
    fprintf(stderr, "normalize-image: %s: %s\n", what, why);
    exit(1);
}

static void check_cl(cl_int err, const char *call)
{
    if (err != CL_SUCCESS) {
        fprintf(stderr, "normalize-image: %s: OpenCL error %d\n", call, (int)err);
        exit(1);
    }
}

static int little_endian(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

static size_t row_bytes(const image *im)
{
    return (size_t)im->width * (size_t)im->channels * (size_t)(im->depth / 8);
}

static image read_png(const char *path, int strip_alpha)
{
    image im = {0};
    FILE *f = fopen(path, "rb");
    unsigned char sig[8];
    if (!f)
        fail(path, "cannot open");
    if (fread(sig, 1, 8, f) != 8 || png_sig_cmp(sig, 0, 8))
        fail(path, "not a PNG file");
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info)
        fail(path, "out of memory");
    png_bytepp rows = NULL;
    if (setjmp(png_jmpbuf(png))) /* libpng has printed the reason */
        fail(path, "corrupt or unsupported PNG");
    png_init_io(png, f);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    png_set_palette_to_rgb(png);            /* palette: RGB */
    png_set_expand_gray_1_2_4_to_8(png);    /* low-bit gray: 8-bit */
    if (png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_tRNS_to_alpha(png);         /* a transparent colour: an alpha channel */
    if (strip_alpha)
        png_set_strip_alpha(png);
    if (little_endian())
        png_set_swap(png);                  /* PNG stores 16-bit samples big-endian */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    im.width = png_get_image_width(png, info);
    im.height = png_get_image_height(png, info);
    im.channels = png_get_channels(png, info);
    im.depth = png_get_bit_depth(png, info);
    im.alpha = (png_get_color_type(png, info) & PNG_COLOR_MASK_ALPHA) != 0;
    if (im.depth != 8 && im.depth != 16)
        fail(path, "unexpected bit depth after expansion");
    size_t rb = row_bytes(&im);
    if (rb != png_get_rowbytes(png, info) || rb == 0 || im.height > SIZE_MAX / 2 / rb)
        fail(path, "image too large");
    im.pixels = malloc(rb * im.height);
    rows = malloc(im.height * sizeof *rows);
    if (!im.pixels || !rows)
        fail(path, "out of memory");
    for (png_uint_32 r = 0; r < im.height; ++r)
        rows[r] = im.pixels + r * rb;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    fclose(f);
    return im;
}

static void write_png(const char *path, const image *im)
{
    static const int types[] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    FILE *f = fopen(path, "wb");
    if (!f)
        fail(path, "cannot create");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_bytepp rows = malloc(im->height * sizeof *rows);
    if (!info || !rows)
        fail(path, "out of memory");
    if (setjmp(png_jmpbuf(png)))
        fail(path, "cannot write PNG");
    png_init_io(png, f);
    png_set_IHDR(png, info, im->width, im->height, im->depth, types[im->channels],
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    if (little_endian())
        png_set_swap(png);
    for (png_uint_32 r = 0; r < im->height; ++r)
        rows[r] = im->pixels + r * row_bytes(im);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    if (fclose(f))
        fail(path, "cannot write");
}

/* --device P:D, else the first GPU, else the first device of the first platform with one. */
static cl_device_id pick_device(const char *spec)
{
    cl_platform_id platforms[16];
    cl_uint np = 0, nd = 0;
    cl_device_id dev = NULL;
    if (clGetPlatformIDs(16, platforms, &np) != CL_SUCCESS || np == 0)
        fail("OpenCL", "no platform found (is an ICD installed?)");
    np = np < 16 ? np : 16;
    if (spec) {
        unsigned p, d;
        cl_device_id devs[64];
        char end;
        if (sscanf(spec, "%u:%u%c", &p, &d, &end) != 2)
            fail(spec, "--device wants P:D, platform and device index");
        if (p >= np || clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 64, devs, &nd) ||
            d >= nd || d >= 64)
            fail(spec, "no such OpenCL device");
        return devs[d];
    }
    for (cl_uint i = 0; i < np && !dev; ++i)
        if (clGetDeviceIDs(platforms[i], CL_DEVICE_TYPE_GPU, 1, &dev, NULL) != CL_SUCCESS)
            dev = NULL;
    for (cl_uint i = 0; i < np && !dev; ++i)
        if (clGetDeviceIDs(platforms[i], CL_DEVICE_TYPE_ALL, 1, &dev, NULL) != CL_SUCCESS)
            dev = NULL;
    if (!dev)
        fail("OpenCL", "no device found");
    return dev;
}

static void check_clnorm(clnorm_status s, const clnorm_context *ctx, const char *call)
{
    if (s != CLNORM_SUCCESS) {
        fprintf(stderr, "normalize-image: %s: %s: %s\n", call, clnorm_status_string(s),
                clnorm_context_last_error(ctx));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    const char *spec = NULL;
    if (argc == 6 && !strcmp(argv[1], "--device")) {
        spec = argv[2];
        argv += 2;
        argc -= 2;
    }
    int contrast = argc == 4 && !strcmp(argv[1], "autocontrast");
    if (argc != 4 || (!contrast && strcmp(argv[1], "standardize"))) {
        fprintf(stderr, "usage: normalize-image [--device P:D] autocontrast|standardize "
                        "IN.png OUT.png\n");
        return 2;
    }
    image in = read_png(argv[2], !contrast);
    image out = in;
    out.depth = contrast ? in.depth : 16;
    size_t count = (size_t)in.width * in.height, values = count * (size_t)in.channels;
    size_t in_bytes = values * (size_t)(in.depth / 8), out_bytes = values * 2;
    if (!(out.pixels = malloc(out_bytes)))
        fail(argv[2], "out of memory");

    /* The application's own OpenCL objects: clnorm only enqueues on them. */
    cl_int err;
    cl_device_id dev = pick_device(spec);
    cl_context cl = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    check_cl(err, "clCreateContext");
    cl_command_queue queue = clCreateCommandQueue(cl, dev, 0, &err);
    check_cl(err, "clCreateCommandQueue");
    cl_mem x = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, in_bytes, in.pixels,
                              &err);
    check_cl(err, "clCreateBuffer(x)");
    cl_mem y = clCreateBuffer(cl, CL_MEM_READ_WRITE, contrast ? in_bytes : out_bytes, NULL, &err);
    check_cl(err, "clCreateBuffer(y)");

    /* autocontrast: gamma and beta per channel (INSTANCE); standardize: per value (LAYER). */
    double range = in.depth == 8 ? 255.0 : 65535.0;
    size_t params = contrast ? (size_t)in.channels : values;
    cl_mem gamma = clCreateBuffer(cl, CL_MEM_READ_ONLY, params * sizeof(float), NULL, &err);
    check_cl(err, "clCreateBuffer(gamma)");
    cl_mem beta = clCreateBuffer(cl, CL_MEM_READ_ONLY, params * sizeof(float), NULL, &err);
    check_cl(err, "clCreateBuffer(beta)");
    if (contrast) {
        float g[4], b[4];
        for (int c = 0; c < in.channels; ++c) {
            int is_alpha = in.alpha && c == in.channels - 1;
            g[c] = is_alpha ? 0.0f : (float)(range / 6); /* std of the output */
            b[c] = is_alpha ? 0.0f : (float)(range / 2); /* mean of the output */
        }
        check_cl(clEnqueueWriteBuffer(queue, gamma, CL_TRUE, 0, sizeof g[0] * params, g, 0, NULL,
                                      NULL), "clEnqueueWriteBuffer(gamma)");
        check_cl(clEnqueueWriteBuffer(queue, beta, CL_TRUE, 0, sizeof b[0] * params, b, 0, NULL,
                                      NULL), "clEnqueueWriteBuffer(beta)");
    } else {
        const float g = 4096.0f, b = 32768.0f; /* y = 32768 + 4096 * z */
        check_cl(clEnqueueFillBuffer(queue, gamma, &g, sizeof g, 0, params * sizeof g, 0, NULL,
                                     NULL), "clEnqueueFillBuffer(gamma)");
        check_cl(clEnqueueFillBuffer(queue, beta, &b, sizeof b, 0, params * sizeof b, 0, NULL,
                                     NULL), "clEnqueueFillBuffer(beta)");
    }

    clnorm_context *ctx = NULL;
    clnorm_plan *plan = NULL;
    clnorm_desc desc = {
        .kind = contrast ? CLNORM_INSTANCE : CLNORM_LAYER,
        .layout = CLNORM_NHWC, /* interleaved pixels: [N][D][C] */
        .dtype = in.depth == 8 ? CLNORM_U8 : CLNORM_U16,
        .n = 1, .c = (size_t)in.channels, .d = count,
        .eps = 1e-5f,
        .y_dtype = contrast ? CLNORM_Y_AS_X : CLNORM_Y_U16,
    };
    clnorm_buffers bufs = {.x = x, .y = y, .gamma = gamma, .beta = beta};
    cl_event done = NULL;
    check_clnorm(clnorm_context_create_from_queue(queue, &ctx), NULL,
                 "clnorm_context_create_from_queue");
    check_clnorm(clnorm_plan_create(ctx, &desc, &plan), ctx, "clnorm_plan_create");
    /* No running statistics: TRAINING normalizes with the image's own statistics. */
    check_clnorm(clnorm_forward(plan, CLNORM_TRAINING, &bufs, 0, NULL, &done), ctx,
                 "clnorm_forward");
    if (contrast && in.alpha) { /* alpha of x over alpha of y: one sample a row, pixel pitch */
        size_t sample = (size_t)in.depth / 8, pixel = sample * (size_t)in.channels;
        size_t origin[3] = {pixel - sample, 0, 0}, region[3] = {sample, count, 1};
        cl_event copied;
        check_cl(clEnqueueCopyBufferRect(queue, x, y, origin, origin, region, pixel, 0, pixel, 0,
                                         1, &done, &copied), "clEnqueueCopyBufferRect(alpha)");
        clReleaseEvent(done);
        done = copied;
    }
    check_cl(clEnqueueReadBuffer(queue, y, CL_TRUE, 0, contrast ? in_bytes : out_bytes,
                                 out.pixels, 1, &done, NULL), "clEnqueueReadBuffer(y)");
    clReleaseEvent(done);
    write_png(argv[3], &out);

    clnorm_plan_release(plan);
    clnorm_context_release(ctx); /* clnorm's references only: the queue is still ours */
    clReleaseMemObject(beta);
    clReleaseMemObject(gamma);
    clReleaseMemObject(y);
    clReleaseMemObject(x);
    clReleaseCommandQueue(queue);
    clReleaseContext(cl);
    free(out.pixels);
    free(in.pixels);
    return 0;
}
