/* Float64 reference implementations and storage conversions, for tests and clnorm-bench. */
#ifndef CLNORM_TESTS_REFERENCE_H
#define CLNORM_TESTS_REFERENCE_H

#include <clnorm/clnorm.h>

#include <stddef.h>
#include <stdint.h>

/* Where element (n, c, d) lives in memory for the descriptor's layout. */
size_t ref_offset(const clnorm_desc *desc, size_t n, size_t c, size_t d);
/* Which statistics group (index into save_*) element (n, c, d) belongs to. */
size_t ref_group(const clnorm_desc *desc, size_t n, size_t c, size_t d);
/* Index into gamma / beta of element (n, c, d). */
size_t ref_param(const clnorm_desc *desc, size_t n, size_t c, size_t d);
size_t ref_groups(const clnorm_desc *desc);
size_t ref_params(const clnorm_desc *desc); /* elements of gamma / beta */

typedef struct ref_inputs {
    const double *x;                     /* as stored (already rounded to the dtype) */
    const float *gamma, *beta;           /* NULL: 1 and 0 */
    const float *running_mean, *running_var; /* NULL: none */
    const double *dy;                    /* backward only */
} ref_inputs;

typedef struct ref_outputs {
    double *y;                           /* or dx for backward */
    double *mean, *invstd;               /* per group (RMS: mean unused, invstd = invrms) */
    double *running_mean, *running_var;  /* updated copies (C each), when running given */
    double *dgamma, *dbeta;              /* backward: ref_params each */
    double *scale; /* per element, for tolerances: forward |invstd * gamma|; backward the
                      magnitude of the terms whose difference is dx */
} ref_outputs;

/* Forward in float64 with the semantics of DESIGN.md section 1. Returns 0, or -1 when the
 * request is invalid (own statistics over a single element). */
int ref_forward(const clnorm_desc *desc, clnorm_mode mode, const ref_inputs *in,
                ref_outputs *out);

/* Backward in float64: dx (into out->y), dgamma, dbeta. TRAINING differentiates through the
 * batch statistics; INFERENCE with running statistics treats them as constants. */
int ref_backward(const clnorm_desc *desc, clnorm_mode mode, const ref_inputs *in,
                 ref_outputs *out);

/* Epilogues (DESIGN.md section 11): h = x + skip is normalized, z = gamma*hhat + beta +
 * residual, y = act(z). */
typedef struct ref_epilogue {
    const double *skip, *residual; /* NULL: none */
    clnorm_activation activation;
    double alpha; /* LEAKY_RELU's slope */
} ref_epilogue;
double ref_activate(clnorm_activation act, double alpha, double z);
double ref_activate_grad(clnorm_activation act, double alpha, double z); /* ReLU'(0) = 0 */
/* ref_forward of h = in->x + skip, then the epilogue: out->y = act(z); h (may be NULL)
 * receives h and z (may be NULL) z. out->scale stays the normalization's |invstd*gamma|. */
int ref_epilogue_forward(const clnorm_desc *desc, clnorm_mode mode, const ref_inputs *in,
                         const ref_epilogue *epi, ref_outputs *out, double *h, double *z);
/* Backward through the epilogue: dz = dy*act'(z) into dresidual (may be NULL), then
 * ref_backward of (h, dz): dx = dh into out->y, dgamma, dbeta. */
int ref_epilogue_backward(const clnorm_desc *desc, clnorm_mode mode, const ref_inputs *in,
                          const ref_epilogue *epi, ref_outputs *out, double *dresidual);

/* Storage conversions with round-to-nearest-even, as the kernels store. */
uint16_t ref_half_from_float(float f);
float ref_float_from_half(uint16_t h);
uint16_t ref_bf16_from_float(float f);
float ref_float_from_bf16(uint16_t b);
/* y's storage (x's unless desc.y_dtype says), an element's bytes, and the largest value of an
 * integer storage (0 for the floating-point ones). */
clnorm_dtype ref_y_storage(const clnorm_desc *desc);
size_t ref_storage_size(clnorm_dtype dtype);
double ref_integer_most(clnorm_dtype dtype);
/* v rounded to the nearest integer (ties to even) and saturated to [0, most]; NaN gives 0: what
 * an integer y holds. */
double ref_round_sat(double v, double most);
/* Converts n floats into the dtype's storage (out holds n * size) and back; integers as
 * ref_round_sat. */
void ref_store(clnorm_dtype dtype, const float *in, void *out, size_t n);
void ref_load(clnorm_dtype dtype, const void *in, double *out, size_t n);
/* Relative rounding of the storage type: 2^-24, 2^-11 or 2^-8. */
double ref_unit_roundoff(clnorm_dtype dtype);

#endif
