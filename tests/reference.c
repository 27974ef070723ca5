/*
 * Float64 reference: the definition of every kind written the plain way, element by element,
 * sharing nothing with the library's kernels. Statistics are two-pass in double.
 */
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t ref_offset(const clnorm_desc *p, size_t n, size_t c, size_t d)
{
    return p->layout == CLNORM_NCHW ? (n * p->c + c) * p->d + d : (n * p->d + d) * p->c + c;
}

size_t ref_group(const clnorm_desc *p, size_t n, size_t c, size_t d)
{
    (void)d;
    switch (p->kind) {
    case CLNORM_BATCH: return c;
    case CLNORM_LAYER:
    case CLNORM_RMS: return n;
    case CLNORM_INSTANCE: return n * p->c + c;
    case CLNORM_GROUP: return n * p->groups + c / (p->c / p->groups);
    }
    return 0;
}

size_t ref_param(const clnorm_desc *p, size_t n, size_t c, size_t d)
{
    (void)n;
    if (p->kind == CLNORM_LAYER || p->kind == CLNORM_RMS)
        return ref_offset(p, 0, c, d); /* one sample's elements, in the plan's layout */
    return c;
}

size_t ref_groups(const clnorm_desc *p)
{
    switch (p->kind) {
    case CLNORM_BATCH: return p->c;
    case CLNORM_LAYER:
    case CLNORM_RMS: return p->n;
    case CLNORM_INSTANCE: return p->n * p->c;
    case CLNORM_GROUP: return p->n * p->groups;
    }
    return 0;
}

size_t ref_params(const clnorm_desc *p)
{
    return p->kind == CLNORM_LAYER || p->kind == CLNORM_RMS ? p->c * p->d : p->c;
}

#define FOR_EACH(p)                                                                               \
    for (size_t n = 0; n < (p)->n; ++n)                                                           \
        for (size_t c = 0; c < (p)->c; ++c)                                                       \
            for (size_t d = 0; d < (p)->d; ++d)

/* Per group: count, mean and biased variance (RMS: mean of squares in var, mean 0). */
static void group_stats(const clnorm_desc *p, const double *x, double *count, double *mean,
                        double *var)
{
    size_t g = ref_groups(p);
    memset(count, 0, g * sizeof *count);
    memset(mean, 0, g * sizeof *mean);
    memset(var, 0, g * sizeof *var);
    FOR_EACH(p)
    {
        size_t k = ref_group(p, n, c, d);
        count[k] += 1;
        mean[k] += x[ref_offset(p, n, c, d)];
    }
    for (size_t k = 0; k < g; ++k)
        mean[k] /= count[k];
    FOR_EACH(p)
    {
        size_t k = ref_group(p, n, c, d);
        double v = x[ref_offset(p, n, c, d)];
        double dev = p->kind == CLNORM_RMS ? v : v - mean[k];
        var[k] += dev * dev;
    }
    for (size_t k = 0; k < g; ++k) {
        var[k] /= count[k];
        if (p->kind == CLNORM_RMS)
            mean[k] = 0;
    }
}

int ref_forward(const clnorm_desc *p, clnorm_mode mode, const ref_inputs *in, ref_outputs *out)
{
    size_t g = ref_groups(p);
    int use_running = in->running_mean && mode == CLNORM_INFERENCE;
    if (!use_running && ((p->kind == CLNORM_BATCH && p->n * p->d == 1) ||
                         (p->kind == CLNORM_INSTANCE && p->d == 1)))
        return -1;
    double *count = malloc(g * sizeof *count), *mean = malloc(g * sizeof *mean),
           *var = malloc(g * sizeof *var);
    group_stats(p, in->x, count, mean, var);
    if (use_running) { /* statistics per channel, whatever the groups */
        for (size_t k = 0; k < g; ++k) {
            size_t c = p->kind == CLNORM_BATCH ? k : k % p->c;
            mean[k] = in->running_mean[c];
            var[k] = in->running_var[c];
        }
    }
    if (out->mean && !use_running)
        for (size_t k = 0; k < g; ++k)
            out->mean[k] = mean[k];
    if (out->invstd && !use_running)
        for (size_t k = 0; k < g; ++k)
            out->invstd[k] = 1.0 / sqrt(var[k] + (double)p->eps);
    if (in->running_mean && out->running_mean) {
        double m = p->momentum;
        for (size_t c = 0; c < p->c; ++c) {
            out->running_mean[c] = in->running_mean[c];
            out->running_var[c] = in->running_var[c];
        }
        if (mode == CLNORM_TRAINING) {
            size_t per = p->kind == CLNORM_BATCH ? 1 : p->n;
            for (size_t c = 0; c < p->c; ++c) {
                double am = 0, av = 0;
                for (size_t s = 0; s < per; ++s) {
                    size_t k = p->kind == CLNORM_BATCH ? c : s * p->c + c;
                    am += mean[k];
                    av += var[k] * count[k] / (count[k] - 1);
                }
                out->running_mean[c] = (1 - m) * in->running_mean[c] + m * am / (double)per;
                out->running_var[c] = (1 - m) * in->running_var[c] + m * av / (double)per;
            }
        }
    }
    FOR_EACH(p)
    {
        size_t k = ref_group(p, n, c, d), i = ref_offset(p, n, c, d), j = ref_param(p, n, c, d);
        double inv = 1.0 / sqrt(var[k] + (double)p->eps);
        double gm = in->gamma ? in->gamma[j] : 1.0, bt = in->beta ? in->beta[j] : 0.0;
        out->y[i] = (in->x[i] - mean[k]) * inv * gm + bt;
        if (out->scale)
            out->scale[i] = fabs(inv * gm);
    }
    free(count);
    free(mean);
    free(var);
    return 0;
}

int ref_backward(const clnorm_desc *p, clnorm_mode mode, const ref_inputs *in, ref_outputs *out)
{
    size_t g = ref_groups(p), np = ref_params(p);
    int use_running = in->running_mean && mode == CLNORM_INFERENCE;
    if (!use_running && ((p->kind == CLNORM_BATCH && p->n * p->d == 1) ||
                         (p->kind == CLNORM_INSTANCE && p->d == 1)))
        return -1;
    double *count = malloc(g * sizeof *count), *mean = malloc(g * sizeof *mean),
           *var = malloc(g * sizeof *var), *sg = calloc(g, sizeof *sg),
           *sgx = calloc(g, sizeof *sgx);
    group_stats(p, in->x, count, mean, var);
    if (use_running) {
        for (size_t k = 0; k < g; ++k) {
            size_t c = p->kind == CLNORM_BATCH ? k : k % p->c;
            mean[k] = in->running_mean[c];
            var[k] = in->running_var[c];
        }
    }
    if (out->dgamma)
        memset(out->dgamma, 0, np * sizeof *out->dgamma);
    if (out->dbeta)
        memset(out->dbeta, 0, np * sizeof *out->dbeta);
    FOR_EACH(p)
    {
        size_t k = ref_group(p, n, c, d), i = ref_offset(p, n, c, d), j = ref_param(p, n, c, d);
        double inv = 1.0 / sqrt(var[k] + (double)p->eps);
        double xh = (in->x[i] - mean[k]) * inv;
        double gv = in->dy[i] * (in->gamma ? in->gamma[j] : 1.0);
        sg[k] += gv;
        sgx[k] += gv * xh;
        if (out->dgamma)
            out->dgamma[j] += in->dy[i] * xh;
        if (out->dbeta)
            out->dbeta[j] += in->dy[i];
    }
    if (out->y) {
        FOR_EACH(p)
        {
            size_t k = ref_group(p, n, c, d), i = ref_offset(p, n, c, d),
                   j = ref_param(p, n, c, d);
            double inv = 1.0 / sqrt(var[k] + (double)p->eps);
            double xh = (in->x[i] - mean[k]) * inv;
            double gv = in->dy[i] * (in->gamma ? in->gamma[j] : 1.0);
            double mg = p->kind == CLNORM_RMS ? 0.0 : sg[k] / count[k];
            double mgx = sgx[k] / count[k];
            if (use_running)
                out->y[i] = gv * inv;
            else
                out->y[i] = inv * (gv - mg - xh * mgx);
            if (out->scale) /* the terms dx is the difference of */
                out->scale[i] = use_running ? fabs(gv * inv)
                                            : inv * (fabs(gv) + fabs(mg) + fabs(xh * mgx));
        }
    }
    free(count);
    free(mean);
    free(var);
    free(sg);
    free(sgx);
    return 0;
}

#define REF_PI 3.14159265358979323846

double ref_activate(clnorm_activation act, double alpha, double z)
{
    switch (act) {
    case CLNORM_ACTIVATION_NONE: return z;
    case CLNORM_ACTIVATION_RELU: return z > 0 ? z : isnan(z) ? z : 0.0;
    case CLNORM_ACTIVATION_LEAKY_RELU: return z > 0 ? z : alpha * z;
    case CLNORM_ACTIVATION_SILU: return z / (1.0 + exp(-z));
    case CLNORM_ACTIVATION_GELU: return 0.5 * z * (1.0 + erf(z / sqrt(2.0)));
    case CLNORM_ACTIVATION_GELU_TANH:
        return 0.5 * z * (1.0 + tanh(sqrt(2.0 / REF_PI) * (z + 0.044715 * z * z * z)));
    }
    return NAN;
}

double ref_activate_grad(clnorm_activation act, double alpha, double z)
{
    switch (act) {
    case CLNORM_ACTIVATION_NONE: return 1.0;
    case CLNORM_ACTIVATION_RELU: return z > 0 ? 1.0 : 0.0;
    case CLNORM_ACTIVATION_LEAKY_RELU: return z > 0 ? 1.0 : alpha;
    case CLNORM_ACTIVATION_SILU: {
        double s = 1.0 / (1.0 + exp(-z));
        return s * (1.0 + z * (1.0 - s));
    }
    case CLNORM_ACTIVATION_GELU:
        return 0.5 * (1.0 + erf(z / sqrt(2.0))) + z * exp(-0.5 * z * z) / sqrt(2.0 * REF_PI);
    case CLNORM_ACTIVATION_GELU_TANH: {
        double k = sqrt(2.0 / REF_PI), t = tanh(k * (z + 0.044715 * z * z * z));
        return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * k * (1.0 + 3 * 0.044715 * z * z);
    }
    }
    return NAN;
}

/* h = x + skip (a copy of x without skip), malloc'd. */
static double *ref_h(const clnorm_desc *p, const double *x, const ref_epilogue *epi)
{
    size_t total = p->n * p->c * p->d;
    double *h = malloc((total ? total : 1) * sizeof *h);
    for (size_t i = 0; i < total; ++i)
        h[i] = x[i] + (epi->skip ? epi->skip[i] : 0.0);
    return h;
}

int ref_epilogue_forward(const clnorm_desc *p, clnorm_mode mode, const ref_inputs *in,
                         const ref_epilogue *epi, ref_outputs *out, double *h, double *z)
{
    size_t total = p->n * p->c * p->d;
    double *hv = ref_h(p, in->x, epi);
    ref_inputs hin = *in;
    hin.x = hv;
    int r = ref_forward(p, mode, &hin, out);
    for (size_t i = 0; r == 0 && i < total; ++i) {
        double zi = out->y[i] + (epi->residual ? epi->residual[i] : 0.0);
        if (z)
            z[i] = zi;
        if (h)
            h[i] = hv[i];
        out->y[i] = ref_activate(epi->activation, epi->alpha, zi);
    }
    free(hv);
    return r;
}

int ref_epilogue_backward(const clnorm_desc *p, clnorm_mode mode, const ref_inputs *in,
                          const ref_epilogue *epi, ref_outputs *out, double *dresidual)
{
    size_t total = p->n * p->c * p->d, n = total ? total : 1;
    double *hv = ref_h(p, in->x, epi), *z = malloc(n * sizeof *z), *dz = malloc(n * sizeof *dz);
    ref_inputs hin = *in;
    hin.x = hv;
    ref_outputs fo = {0};
    fo.y = z;
    int r = ref_forward(p, mode, &hin, &fo);
    for (size_t i = 0; r == 0 && i < total; ++i) {
        double zi = z[i] + (epi->residual ? epi->residual[i] : 0.0);
        dz[i] = in->dy[i] * ref_activate_grad(epi->activation, epi->alpha, zi);
        if (dresidual)
            dresidual[i] = dz[i];
    }
    hin.dy = dz;
    if (r == 0)
        r = ref_backward(p, mode, &hin, out);
    free(hv);
    free(z);
    free(dz);
    return r;
}

uint16_t ref_half_from_float(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) /* rounds to at least 65536: infinity */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) { /* subnormal half (or zero): scale by 2^24 and round */
        float af;
        memcpy(&af, &a, 4);
        double v = (double)af * 16777216.0; /* units of 2^-24 */
        double r = nearbyint(v);           /* default rounding: to nearest even */
        return (uint16_t)(sign | (uint32_t)r);
    }
    uint32_t mant = a + 0xc8000fffu + ((a >> 13) & 1u); /* rebias exponent (-112 << 23), round */
    return (uint16_t)(sign | (mant >> 13));
}

float ref_float_from_half(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    float f;
    if (e == 0) {
        f = (float)ldexp((double)m, -24);
        return sign ? -f : f;
    }
    uint32_t u = e == 31 ? sign | 0x7f800000u | (m << 13) : sign | ((e + 112) << 23) | (m << 13);
    memcpy(&f, &u, 4);
    return f;
}

uint16_t ref_bf16_from_float(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float ref_float_from_bf16(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

clnorm_dtype ref_y_storage(const clnorm_desc *d)
{
    return d->y_dtype == CLNORM_Y_AS_X ? d->dtype : (clnorm_dtype)(d->y_dtype - 1);
}

size_t ref_storage_size(clnorm_dtype t) { return t == CLNORM_F32 ? 4 : t == CLNORM_U8 ? 1 : 2; }

double ref_integer_most(clnorm_dtype t)
{
    return t == CLNORM_U8 ? 255.0 : t == CLNORM_U16 ? 65535.0 : 0.0;
}

double ref_round_sat(double v, double most)
{
    if (isnan(v) || v <= 0.0)
        return 0.0;
    if (v >= most)
        return most;
    double r = nearbyint(v); /* the default rounding mode: to nearest, ties to even */
    return r;
}

void ref_store(clnorm_dtype dtype, const float *in, void *out, size_t n)
{
    if (dtype == CLNORM_F32) {
        memcpy(out, in, n * sizeof(float));
        return;
    }
    if (dtype == CLNORM_U8) {
        uint8_t *o = out;
        for (size_t i = 0; i < n; ++i)
            o[i] = (uint8_t)ref_round_sat(in[i], 255.0);
        return;
    }
    uint16_t *o = out;
    for (size_t i = 0; i < n; ++i)
        o[i] = dtype == CLNORM_F16    ? ref_half_from_float(in[i])
               : dtype == CLNORM_BF16 ? ref_bf16_from_float(in[i])
                                      : (uint16_t)ref_round_sat(in[i], 65535.0);
}

void ref_load(clnorm_dtype dtype, const void *in, double *out, size_t n)
{
    if (dtype == CLNORM_F32) {
        const float *f = in;
        for (size_t i = 0; i < n; ++i)
            out[i] = f[i];
        return;
    }
    if (dtype == CLNORM_U8) {
        const uint8_t *b = in;
        for (size_t i = 0; i < n; ++i)
            out[i] = b[i];
        return;
    }
    const uint16_t *h = in;
    for (size_t i = 0; i < n; ++i)
        out[i] = dtype == CLNORM_F16    ? ref_float_from_half(h[i])
                 : dtype == CLNORM_BF16 ? ref_float_from_bf16(h[i])
                                        : (double)h[i];
}

double ref_unit_roundoff(clnorm_dtype dtype)
{
    /* integers: no relative rounding (ref_round_sat) */
    return dtype == CLNORM_F32    ? ldexp(1, -24)
           : dtype == CLNORM_F16  ? ldexp(1, -11)
           : dtype == CLNORM_BF16 ? ldexp(1, -8)
                                  : 0.0;
}
