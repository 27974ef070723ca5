/* One forward problem checked end to end against the float64 reference. */
#ifndef CLNORM_TESTS_FORWARD_CASE_H
#define CLNORM_TESTS_FORWARD_CASE_H

#include <clnorm/clnorm.h>

#include <stddef.h>
#include <stdint.h>

typedef enum fill_kind {
    FILL_NORMAL,   /* offset + scale * N(0, 1) */
    FILL_EXACT,    /* pairs symmetric about a per-group mean: exact fp32 statistics */
    FILL_CONSTANT, /* every group constant */
    FILL_NAN       /* normal, with one NaN in group 0 */
} fill_kind;

typedef struct fcase {
    clnorm_desc desc;
    clnorm_mode mode;
    int gamma, beta, running, save; /* which optional buffers to pass */
    fill_kind fill;
    double offset, scale;
    uint64_t seed;
    double tol; /* the 16 of 16 * 2^-23 * max|x| * invstd * |gamma|; 0 means 16 */
    /* gamma = param_scale * U(0.5, 1.5), beta = param_offset + param_scale * N(0, 1); a
     * param_scale of 0 means 1 (integer outputs take a spread of tens around a level) */
    double param_scale, param_offset;
} fcase;

/* Fills host data for the case: x (elements floats), gamma, beta, running stats. */
void fcase_fill_x(const fcase *fc, float *x);

/* Runs the case on the device and checks y, save_mean, save_invstd and running statistics.
 * Fails the current Check test with a message naming the case on any mismatch. */
void fcase_check(const fcase *fc);

/* Describes the case in buf ("BATCH NHWC f16 TRAINING 2x6x15 ..."). */
const char *fcase_name(const fcase *fc, char *buf, size_t size);

#endif
