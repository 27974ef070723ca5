/*
 * clnorm-run: runs ONE normalization problem, forward or backward, from raw float32 files, on
 * the public API only. It exists for independent checks (tools/check-pytorch), which write the
 * inputs, run this program, and compare its outputs with another implementation.
 *
 *   clnorm-run --kind batch|layer|instance|group|rms --layout nchw|nhwc --dtype f32|f16|bf16
 *              --mode training|inference --n N --c C --d D [--groups G] [--eps E]
 *              [--momentum M] [--activation NAME] [--alpha A] [--device SPEC] --dir DIR
 *              [--backward]
 *
 * Inputs, read from DIR when present (raw little-endian float32, element order of the layout):
 *   x.f32, dy.f32 (backward), gamma.f32, beta.f32, running_mean.f32, running_var.f32,
 *   save_mean.f32 and save_invstd.f32 (backward only: passed when both exist), and a fused
 *   epilogue's skip.f32 and residual.f32 (--activation: none, relu, leaky_relu, silu, gelu,
 *   gelu_tanh; --alpha: leaky_relu's slope).
 * x, dy, skip and residual are converted to the storage type here (f16: IEEE half, bf16: the
 * top 16 bits of the float, both rounding to nearest even), and the values the device sees are
 * written back as x_stored.f32, dy_stored.f32, skip_stored.f32 and residual_stored.f32.
 * Outputs, as float32: forward y.f32, out_save_mean.f32, out_save_invstd.f32 and, when running
 * statistics were given, running_mean_out.f32 and running_var_out.f32; backward dx.f32,
 * dgamma.f32 and dbeta.f32 (dbeta only when beta.f32 exists or the kind is not RMS); with skip,
 * forward's sum.f32 (h = x + skip); with residual, backward's dresidual.f32.
 *
 * Exit status: 0 on success, 1 when clnorm returns an error (its status string and last error
 * on stderr), 2 on a usage or file error.
 */
#include <clnorm/clnorm.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void)
{
    fprintf(stderr,
            "usage: clnorm-run --kind batch|layer|instance|group|rms --layout nchw|nhwc\n"
            "                  --dtype f32|f16|bf16 --mode training|inference --n N --c C --d D\n"
            "                  [--groups G] [--eps E] [--momentum M] [--activation NAME]\n"
            "                  [--alpha A] [--device SPEC] --dir DIR [--backward]\n");
    exit(2);
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "clnorm-run: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(2);
}

/* ---- storage conversions (independent of the library's and the tests' code) ---- */

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* IEEE binary16, round to nearest even, overflow to infinity, subnormals kept. */
static uint16_t half_from_float(float f)
{
    uint32_t u = bits_of(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t exp = (u >> 23) & 0xffu, man = u & 0x7fffffu;
    if (exp == 0xffu) /* inf or NaN (NaN keeps a quiet bit) */
        return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0u));
    int e = (int)exp - 127 + 15;
    if (e >= 0x1f)
        return (uint16_t)(sign | 0x7c00u);
    uint32_t m;
    int shift;
    if (e <= 0) { /* subnormal half (or zero) */
        if (e < -10)
            return sign; /* below half the smallest subnormal: rounds to zero */
        m = man | 0x800000u;
        shift = 14 - e; /* 13 + (1 - e) */
        e = 0;
    } else {
        m = man;
        shift = 13;
    }
    uint32_t kept = m >> shift, rest = m & ((1u << shift) - 1u), halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (kept & 1u)))
        ++kept; /* may carry into the exponent: that is the right result */
    return (uint16_t)(sign | (((uint32_t)e << 10) + kept));
}

static float float_from_half(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f)
        return float_of(sign | 0x7f800000u | (man << 13));
    if (exp == 0) /* zero or subnormal: man * 2^-24, exact in float */
        return (sign ? -1.0f : 1.0f) * ldexpf((float)man, -24);
    return float_of(sign | ((exp - 15 + 127) << 23) | (man << 13));
}

static uint16_t bf16_from_float(float f)
{
    uint32_t u = bits_of(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN stays NaN */
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float float_from_bf16(uint16_t b) { return float_of((uint32_t)b << 16); }

/* ---- files ---- */

static char path_buf[4096];

static const char *path_in(const char *dir, const char *name)
{
    int len = snprintf(path_buf, sizeof path_buf, "%s/%s", dir, name);
    if (len < 0 || (size_t)len >= sizeof path_buf)
        die("path too long", name);
    return path_buf;
}

/* Reads DIR/name when it exists: NULL when it does not; exactly count floats or a failure. */
static float *read_floats(const char *dir, const char *name, size_t count)
{
    const char *path = path_in(dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT)
            return NULL;
        die(path, strerror(errno));
    }
    float *v = malloc((count ? count : 1) * sizeof *v);
    if (!v)
        die("out of memory", NULL);
    size_t got = fread(v, sizeof *v, count, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != count || extra) {
        char msg[128];
        snprintf(msg, sizeof msg, "expected exactly %zu float32 values", count);
        die(path, msg);
    }
    return v;
}

static void write_floats(const char *dir, const char *name, const float *v, size_t count)
{
    const char *path = path_in(dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        die(path, strerror(errno));
    if (fwrite(v, sizeof *v, count, f) != count || fclose(f) != 0)
        die(path, "write failed");
}

/* ---- storage of x, y, dy, dx ---- */

static size_t elem_size(clnorm_dtype t) { return t == CLNORM_F32 ? 4 : 2; }

/* Converts to storage in place of `bytes`, and rounds `v` to the stored values. */
static void *to_storage(clnorm_dtype t, float *v, size_t count)
{
    void *bytes = malloc((count ? count : 1) * elem_size(t));
    if (!bytes)
        die("out of memory", NULL);
    for (size_t i = 0; i < count; ++i) {
        if (t == CLNORM_F32) {
            ((float *)bytes)[i] = v[i];
        } else if (t == CLNORM_F16) {
            uint16_t h = half_from_float(v[i]);
            ((uint16_t *)bytes)[i] = h;
            v[i] = float_from_half(h);
        } else {
            uint16_t b = bf16_from_float(v[i]);
            ((uint16_t *)bytes)[i] = b;
            v[i] = float_from_bf16(b);
        }
    }
    return bytes;
}

static float *from_storage(clnorm_dtype t, const void *bytes, size_t count)
{
    float *v = malloc((count ? count : 1) * sizeof *v);
    if (!v)
        die("out of memory", NULL);
    for (size_t i = 0; i < count; ++i)
        v[i] = t == CLNORM_F32   ? ((const float *)bytes)[i]
               : t == CLNORM_F16 ? float_from_half(((const uint16_t *)bytes)[i])
                                 : float_from_bf16(((const uint16_t *)bytes)[i]);
    return v;
}

/* ---- OpenCL buffers ---- */

static cl_context g_cl;
static cl_command_queue g_queue;

static cl_mem buffer(const void *host, size_t bytes)
{
    cl_int err;
    /* Never zero-sized: OpenCL rejects that. Outputs start as a NaN pattern (0xff bytes). */
    size_t size = bytes ? bytes : 4;
    cl_mem m = clCreateBuffer(g_cl, CL_MEM_READ_WRITE, size, NULL, &err);
    if (err != CL_SUCCESS)
        die("clCreateBuffer failed", NULL);
    if (host && bytes) {
        err = clEnqueueWriteBuffer(g_queue, m, CL_TRUE, 0, bytes, host, 0, NULL, NULL);
    } else {
        unsigned char pattern = 0xff;
        err = clEnqueueFillBuffer(g_queue, m, &pattern, 1, 0, size, 0, NULL, NULL);
        if (err == CL_SUCCESS)
            err = clFinish(g_queue);
    }
    if (err != CL_SUCCESS)
        die("writing a buffer failed", NULL);
    return m;
}

static cl_mem float_buffer(const float *host, size_t count)
{
    return buffer(host, count * sizeof(float));
}

static void read_buffer(cl_mem m, void *host, size_t bytes)
{
    if (bytes && clEnqueueReadBuffer(g_queue, m, CL_TRUE, 0, bytes, host, 0, NULL, NULL) !=
                     CL_SUCCESS)
        die("clEnqueueReadBuffer failed", NULL);
}

static void save_float_buffer(const char *dir, const char *name, cl_mem m, size_t count)
{
    float *v = malloc((count ? count : 1) * sizeof *v);
    if (!v)
        die("out of memory", NULL);
    read_buffer(m, v, count * sizeof *v);
    write_floats(dir, name, v, count);
    free(v);
}

static void save_tensor(const char *dir, const char *name, cl_mem m, clnorm_dtype t,
                        size_t count)
{
    void *bytes = malloc((count ? count : 1) * elem_size(t));
    if (!bytes)
        die("out of memory", NULL);
    read_buffer(m, bytes, count * elem_size(t));
    float *v = from_storage(t, bytes, count);
    write_floats(dir, name, v, count);
    free(v);
    free(bytes);
}

/* ---- arguments ---- */

static int pick(const char *arg, const char *const *names, int count)
{
    for (int i = 0; i < count; ++i)
        if (strcmp(arg, names[i]) == 0)
            return i;
    fprintf(stderr, "clnorm-run: unknown value '%s'\n", arg);
    usage();
    return -1;
}

static size_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        die("not a size", s);
    return (size_t)v;
}

static float parse_float(const char *s)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end)
        die("not a number", s);
    return v;
}

int main(int argc, char **argv)
{
    static const char *const kinds[] = {"batch", "layer", "instance", "group", "rms"};
    static const char *const layouts[] = {"nchw", "nhwc"};
    static const char *const dtypes[] = {"f32", "f16", "bf16"};
    static const char *const modes[] = {"training", "inference"};
    static const char *const activations[] = {"none", "relu", "leaky_relu",
                                              "silu", "gelu", "gelu_tanh"};
    clnorm_desc desc = {.eps = 1e-5f, .momentum = 0.1f};
    int kind = -1, layout = -1, dtype = -1, mode = -1, backward = 0, have_n = 0, have_c = 0,
        have_d = 0;
    const char *dir = NULL, *device = NULL;

    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        if (strcmp(a, "--backward") == 0) {
            backward = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            usage();
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(a, "--kind") == 0)
            kind = pick(v, kinds, 5);
        else if (strcmp(a, "--layout") == 0)
            layout = pick(v, layouts, 2);
        else if (strcmp(a, "--dtype") == 0)
            dtype = pick(v, dtypes, 3);
        else if (strcmp(a, "--mode") == 0)
            mode = pick(v, modes, 2);
        else if (strcmp(a, "--n") == 0)
            desc.n = parse_size(v), have_n = 1;
        else if (strcmp(a, "--c") == 0)
            desc.c = parse_size(v), have_c = 1;
        else if (strcmp(a, "--d") == 0)
            desc.d = parse_size(v), have_d = 1;
        else if (strcmp(a, "--groups") == 0)
            desc.groups = parse_size(v);
        else if (strcmp(a, "--eps") == 0)
            desc.eps = parse_float(v);
        else if (strcmp(a, "--momentum") == 0)
            desc.momentum = parse_float(v);
        else if (strcmp(a, "--activation") == 0)
            desc.activation = (clnorm_activation)pick(v, activations, 6);
        else if (strcmp(a, "--alpha") == 0)
            desc.activation_alpha = parse_float(v);
        else if (strcmp(a, "--device") == 0)
            device = v;
        else if (strcmp(a, "--dir") == 0)
            dir = v;
        else {
            fprintf(stderr, "clnorm-run: unknown option '%s'\n", a);
            usage();
        }
    }
    if (kind < 0 || layout < 0 || dtype < 0 || mode < 0 || !have_n || !have_c || !have_d || !dir)
        usage();
    desc.kind = (clnorm_kind)kind;
    desc.layout = (clnorm_layout)layout;
    desc.dtype = (clnorm_dtype)dtype;
    clnorm_mode cmode = (clnorm_mode)mode;

    /* Sizes of each role: the library's own validation judges the descriptor. */
    size_t total = desc.n * desc.c * desc.d;
    int per_sample = desc.kind == CLNORM_LAYER || desc.kind == CLNORM_RMS;
    size_t nparams = per_sample ? desc.c * desc.d : desc.c;
    size_t nstats = desc.kind == CLNORM_BATCH      ? desc.c
                    : per_sample                   ? desc.n
                    : desc.kind == CLNORM_INSTANCE ? desc.n * desc.c
                                                   : desc.n * desc.groups;

    float *x = read_floats(dir, "x.f32", total);
    if (!x)
        die("missing input", path_in(dir, "x.f32"));
    float *dy = backward ? read_floats(dir, "dy.f32", total) : NULL;
    if (backward && !dy)
        die("missing input", path_in(dir, "dy.f32"));
    float *gamma = read_floats(dir, "gamma.f32", nparams);
    float *beta = read_floats(dir, "beta.f32", nparams);
    float *rmean = read_floats(dir, "running_mean.f32", desc.c);
    float *rvar = read_floats(dir, "running_var.f32", desc.c);
    float *smean = backward ? read_floats(dir, "save_mean.f32", nstats) : NULL;
    float *sinv = backward ? read_floats(dir, "save_invstd.f32", nstats) : NULL;
    float *skip = read_floats(dir, "skip.f32", total);
    float *res = read_floats(dir, "residual.f32", total);

    void *xs = to_storage(desc.dtype, x, total);
    write_floats(dir, "x_stored.f32", x, total);
    void *dys = NULL;
    if (dy) {
        dys = to_storage(desc.dtype, dy, total);
        write_floats(dir, "dy_stored.f32", dy, total);
    }
    void *skips = NULL, *ress = NULL;
    if (skip) {
        skips = to_storage(desc.dtype, skip, total);
        write_floats(dir, "skip_stored.f32", skip, total);
    }
    if (res) {
        ress = to_storage(desc.dtype, res, total);
        write_floats(dir, "residual_stored.f32", res, total);
    }

    clnorm_context *ctx = NULL;
    clnorm_status st = clnorm_context_create(device, &ctx);
    if (st != CLNORM_SUCCESS) {
        fprintf(stderr, "clnorm-run: clnorm_context_create: %s: %s\n", clnorm_status_string(st),
                clnorm_context_last_error(NULL));
        return 1;
    }
    g_cl = clnorm_context_cl(ctx);
    g_queue = clnorm_context_queue(ctx);

    clnorm_plan *plan = NULL;
    st = clnorm_plan_create(ctx, &desc, &plan);
    if (st != CLNORM_SUCCESS) {
        fprintf(stderr, "clnorm-run: clnorm_plan_create: %s: %s\n", clnorm_status_string(st),
                clnorm_context_last_error(ctx));
        clnorm_context_release(ctx);
        return 1;
    }
    if (clnorm_plan_stats_count(plan) != nstats) {
        fprintf(stderr, "clnorm-run: clnorm_plan_stats_count = %zu, expected %zu\n",
                clnorm_plan_stats_count(plan), nstats);
        return 2;
    }

    size_t es = elem_size(desc.dtype);
    clnorm_buffers b = {0};
    b.x = buffer(xs, total * es);
    if (gamma)
        b.gamma = float_buffer(gamma, nparams);
    if (beta)
        b.beta = float_buffer(beta, nparams);
    if (rmean)
        b.running_mean = float_buffer(rmean, desc.c);
    if (rvar)
        b.running_var = float_buffer(rvar, desc.c);
    if (skips)
        b.skip = buffer(skips, total * es);
    if (ress)
        b.residual = buffer(ress, total * es);

    cl_event done = NULL;
    if (!backward) {
        b.y = buffer(NULL, total * es);
        b.save_mean = buffer(NULL, nstats * sizeof(float));
        b.save_invstd = buffer(NULL, nstats * sizeof(float));
        if (skips)
            b.sum = buffer(NULL, total * es);
        st = clnorm_forward(plan, cmode, &b, 0, NULL, &done);
    } else {
        b.dy = buffer(dys, total * es);
        b.dx = buffer(NULL, total * es);
        b.dgamma = buffer(NULL, nparams * sizeof(float));
        b.dbeta = buffer(NULL, nparams * sizeof(float));
        if (ress)
            b.dresidual = buffer(NULL, total * es);
        if (smean && sinv) {
            b.save_mean = float_buffer(smean, nstats);
            b.save_invstd = float_buffer(sinv, nstats);
        }
        st = clnorm_backward(plan, cmode, &b, 0, NULL, &done);
    }
    if (st != CLNORM_SUCCESS) {
        fprintf(stderr, "clnorm-run: clnorm_%s: %s: %s\n", backward ? "backward" : "forward",
                clnorm_status_string(st), clnorm_context_last_error(ctx));
        return 1;
    }
    if (done) {
        if (clWaitForEvents(1, &done) != CL_SUCCESS)
            die("clWaitForEvents failed", NULL);
        clReleaseEvent(done);
    }
    if (clFinish(g_queue) != CL_SUCCESS)
        die("clFinish failed", NULL);

    if (!backward) {
        save_tensor(dir, "y.f32", b.y, desc.dtype, total);
        save_float_buffer(dir, "out_save_mean.f32", b.save_mean, nstats);
        save_float_buffer(dir, "out_save_invstd.f32", b.save_invstd, nstats);
        if (rmean)
            save_float_buffer(dir, "running_mean_out.f32", b.running_mean, desc.c);
        if (rvar)
            save_float_buffer(dir, "running_var_out.f32", b.running_var, desc.c);
        if (b.sum)
            save_tensor(dir, "sum.f32", b.sum, desc.dtype, total);
    } else {
        save_tensor(dir, "dx.f32", b.dx, desc.dtype, total);
        save_float_buffer(dir, "dgamma.f32", b.dgamma, nparams);
        save_float_buffer(dir, "dbeta.f32", b.dbeta, nparams);
        if (b.dresidual)
            save_tensor(dir, "dresidual.f32", b.dresidual, desc.dtype, total);
    }

    cl_mem mems[] = {b.x,      b.y,          b.dy,           b.dx,          b.gamma,
                     b.beta,   b.dgamma,     b.dbeta,        b.running_mean, b.running_var,
                     b.save_mean, b.save_invstd, b.skip,     b.sum,         b.residual,
                     b.dresidual};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; ++i)
        if (mems[i])
            clReleaseMemObject(mems[i]);
    clnorm_plan_release(plan);
    clnorm_context_release(ctx);
    free(x), free(dy), free(gamma), free(beta), free(rmean), free(rvar), free(smean), free(sinv);
    free(xs), free(dys), free(skip), free(res), free(skips), free(ress);
    return 0;
}
