/*
 * check-normalize-image NORMALIZE-IMAGE DIR [CASE]: the test of examples/normalize-image.c.
 *
 * Writes test PNGs into DIR (8-bit RGB, 8-bit RGBA, 16-bit gray, 16-bit gray+alpha), runs
 * each recipe on each through the program, reads the outputs back and compares every value
 * with a float64 computation of the recipe; alpha must come back bit-exact. Then checks that
 * bad input fails with a message and a non-zero exit. CASE runs one image only (rgb8, rgba8,
 * gray16, gray-alpha16) or only the bad input (bad-input).
 * Exit 0: all passed; 1: a mismatch; 77: no OpenCL device (skipped).
 */
#include <CL/cl.h>
#include <png.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct image {
    png_uint_32 width, height;
    int channels, depth, alpha;
    double *v; /* every sample, interleaved */
} image;

static int failures;

static size_t samples(const image *im)
{
    return (size_t)im->width * im->height * (size_t)im->channels;
}

static int write_png(const char *path, const image *im)
{
    static const int types[] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    size_t rb = (size_t)im->width * (size_t)im->channels * (size_t)(im->depth / 8);
    unsigned char *row = malloc(rb);
    if (!f || !row || setjmp(png_jmpbuf(png)))
        return -1;
    png_init_io(png, f);
    png_set_IHDR(png, info, im->width, im->height, im->depth, types[im->channels],
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (png_uint_32 r = 0; r < im->height; ++r) {
        const double *v = im->v + (size_t)r * im->width * (size_t)im->channels;
        for (size_t i = 0; i < rb / (size_t)(im->depth / 8); ++i) {
            unsigned s = (unsigned)v[i];
            if (im->depth == 8)
                row[i] = (unsigned char)s;
            else /* PNG's order: big-endian */
                row[2 * i] = (unsigned char)(s >> 8), row[2 * i + 1] = (unsigned char)s;
        }
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    return fclose(f);
}

/* The file as stored, no transforms: what the recipe wrote, exactly. */
static int read_png(const char *path, image *im)
{
    FILE *f = fopen(path, "rb");
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    unsigned char *row = NULL;
    if (!f || setjmp(png_jmpbuf(png)))
        return -1;
    png_init_io(png, f);
    png_read_info(png, info);
    im->width = png_get_image_width(png, info);
    im->height = png_get_image_height(png, info);
    im->channels = png_get_channels(png, info);
    im->depth = png_get_bit_depth(png, info);
    im->alpha = (png_get_color_type(png, info) & PNG_COLOR_MASK_ALPHA) != 0;
    if (png_get_color_type(png, info) == PNG_COLOR_TYPE_PALETTE || im->depth < 8 ||
        png_get_interlace_type(png, info) != PNG_INTERLACE_NONE)
        return -1;
    size_t rb = png_get_rowbytes(png, info), per_row = rb / (size_t)(im->depth / 8);
    row = malloc(rb);
    im->v = malloc(samples(im) * sizeof *im->v);
    if (!row || !im->v)
        return -1;
    for (png_uint_32 r = 0; r < im->height; ++r) {
        png_read_row(png, row, NULL);
        for (size_t i = 0; i < per_row; ++i)
            im->v[r * per_row + i] =
                im->depth == 8 ? row[i] : (double)(row[2 * i] << 8 | row[2 * i + 1]);
    }
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(row);
    return fclose(f);
}

static uint64_t rng = 88172645463325252u;
static double uniform(void) /* xorshift64, [0, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* Channel c: around mean[c] with spread std[c] (a sum of uniforms), clamped; alpha uniform. */
static image make(png_uint_32 w, png_uint_32 h, int channels, int depth, int alpha,
                  const double *mean, const double *std)
{
    image im = {w, h, channels, depth, alpha, NULL};
    double top = depth == 8 ? 255 : 65535;
    im.v = malloc(samples(&im) * sizeof *im.v);
    for (size_t i = 0; i < samples(&im); ++i) {
        int c = (int)(i % (size_t)channels);
        double u = uniform() + uniform() + uniform() - 1.5, v;
        if (alpha && c == channels - 1)
            v = floor(uniform() * (top + 1));
        else
            v = fmin(top, fmax(0, round(mean[c] + 2 * std[c] * u)));
        im.v[i] = i == 0 ? 0 : i == 1 ? top : v; /* both ends present */
    }
    return im;
}

static int run(const char *prog, const char *recipe, const char *in, const char *out)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl(prog, prog, recipe, in, out, (char *)NULL);
        _exit(127);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

static void complain(const char *name, const char *what)
{
    fprintf(stderr, "FAIL %s: %s\n", name, what);
    ++failures;
}

/* Compares y with the recipe on x, in float64: autocontrast (per channel, alpha copied) or
 * standardize (over every colour value, alpha dropped, 16-bit 32768 + 4096 z). */
static void compare(const char *name, int contrast, const image *x, const image *y)
{
    int colours = x->channels - x->alpha;
    size_t count = (size_t)x->width * x->height, C = (size_t)x->channels;
    double top = contrast && x->depth == 8 ? 255 : 65535, range = x->depth == 8 ? 255 : 65535;
    const double eps = 1e-5;
    if (y->width != x->width || y->height != x->height ||
        y->channels != (contrast ? x->channels : colours) ||
        y->depth != (contrast ? x->depth : 16)) {
        complain(name, "wrong size, channels or depth");
        return;
    }
    double worst = 0, tol = 0.5 + 2e-6 * top; /* rounding, and float32 arithmetic */
    size_t inexact = 0;
    for (int g = 0; g < (contrast ? colours : 1); ++g) {
        int c0 = contrast ? g : 0, c1 = contrast ? g + 1 : colours;
        double sum = 0, sq = 0, n = (double)count * (c1 - c0);
        for (size_t p = 0; p < count; ++p)
            for (int c = c0; c < c1; ++c)
                sum += x->v[p * C + (size_t)c];
        double mean = sum / n;
        for (size_t p = 0; p < count; ++p)
            for (int c = c0; c < c1; ++c)
                sq += (x->v[p * C + (size_t)c] - mean) * (x->v[p * C + (size_t)c] - mean);
        double invstd = 1 / sqrt(sq / n + eps);
        double gamma = contrast ? range / 6 : 4096, beta = contrast ? range / 2 : 32768;
        for (size_t p = 0; p < count; ++p)
            for (int c = c0; c < c1; ++c) {
                double r = fmin(top, fmax(0, (x->v[p * C + (size_t)c] - mean) * invstd * gamma +
                                                 beta));
                double got = y->v[p * (size_t)y->channels + (size_t)c];
                worst = fmax(worst, fabs(got - r));
                inexact += got != nearbyint(r);
            }
    }
    if (contrast && x->alpha)
        for (size_t p = 0; p < count; ++p)
            if (y->v[p * C + C - 1] != x->v[p * C + C - 1]) {
                complain(name, "alpha changed");
                break;
            }
    printf("%-22s max |y - float64| = %.4f, %zu of %zu values off round-to-nearest\n", name,
           worst, inexact, count * (size_t)colours);
    if (worst > tol)
        complain(name, "differs from the float64 recipe");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: check-normalize-image NORMALIZE-IMAGE DIR [CASE]\n");
        return 2;
    }
    cl_platform_id platforms[16];
    cl_uint np = 0, nd = 0;
    if (clGetPlatformIDs(16, platforms, &np) != CL_SUCCESS)
        np = 0;
    for (cl_uint i = 0; i < np && i < 16 && nd == 0; ++i)
        if (clGetDeviceIDs(platforms[i], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS)
            nd = 0;
    if (nd == 0) {
        printf("no OpenCL device: skipped\n");
        return 77;
    }
    const double m3[] = {40, 120, 200, 0}, s3[] = {20, 50, 10, 0};
    const double m1[] = {30000, 0}, s1[] = {3000, 0};
    struct {
        const char *name;
        image im;
    } cases[] = {
        {"rgb8", make(97, 61, 3, 8, 0, m3, s3)},
        {"rgba8", make(53, 37, 4, 8, 1, m3, s3)},
        {"gray16", make(71, 43, 1, 16, 0, m1, s1)},
        {"gray-alpha16", make(29, 31, 2, 16, 1, m1, s1)},
    };
    const char *recipes[] = {"autocontrast", "standardize"};
    char in[4096], out[4096], name[64];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; ++k) {
        if (argc > 3 && strcmp(argv[3], cases[k].name))
            continue;
        snprintf(in, sizeof in, "%s/%s.png", argv[2], cases[k].name);
        if (write_png(in, &cases[k].im)) {
            fprintf(stderr, "cannot write %s\n", in);
            return 1;
        }
        for (int r = 0; r < 2; ++r) {
            image y = {0};
            snprintf(name, sizeof name, "%s %s", cases[k].name, recipes[r]);
            snprintf(out, sizeof out, "%s/%s-%s.png", argv[2], cases[k].name, recipes[r]);
            int rc = run(argv[1], recipes[r], in, out);
            if (rc != 0)
                complain(name, rc == 77 ? "skipped" : "the program failed");
            else if (read_png(out, &y))
                complain(name, "cannot read the output back");
            else
                compare(name, r == 0, &cases[k].im, &y);
            free(y.v);
        }
    }
    if (argc <= 3 || !strcmp(argv[3], "bad-input")) { /* a message and exit 1; usage: 2 */
        snprintf(in, sizeof in, "%s/not-a-png.png", argv[2]);
        snprintf(out, sizeof out, "%s/never-written.png", argv[2]);
        FILE *f = fopen(in, "w");
        if (f)
            fputs("this is text\n", f), fclose(f);
        if (run(argv[1], "autocontrast", in, out) != 1)
            complain("not-a-png", "expected exit 1");
        snprintf(in, sizeof in, "%s/truncated.png", argv[2]);
        static const char cut[] = "\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0"; /* IHDR cut short */
        if ((f = fopen(in, "wb")))
            fwrite(cut, 1, sizeof cut - 1, f), fclose(f);
        if (run(argv[1], "autocontrast", in, out) != 1)
            complain("truncated", "expected exit 1");
        snprintf(in, sizeof in, "%s/missing.png", argv[2]);
        if (run(argv[1], "standardize", in, out) != 1)
            complain("missing file", "expected exit 1");
        if (run(argv[1], "sharpen", in, out) != 2)
            complain("unknown recipe", "expected exit 2");
        if (access(out, F_OK) == 0)
            complain("bad input", "an output was written");
    }
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; ++k)
        free(cases[k].im.v);
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
