/*
 * Merging statistics on the host (DESIGN.md section 10): moments by Chan's formula, backward's
 * sums by addition, always in the caller's order and in double precision, rounded once; the
 * same sets in the same order give the same bits on every machine that rounds IEEE doubles
 * to floats alike.
 */
#include "internal.h"

void clnorm_moments_merge(const float *sets, size_t k, size_t groups, float *out)
{
    if (!sets || !out)
        return;
    for (size_t g = 0; g < groups; ++g) {
        double n = 0.0, mean = 0.0, m2 = 0.0;
        for (size_t j = 0; j < k; ++j) {
            const float *m = sets + (j * groups + g) * CLNORM_MOMENTS_FLOATS;
            double nb = m[0];
            if (nb == 0.0) /* an empty part: nothing to add (its mean means nothing) */
                continue;
            double delta = (double)m[1] - mean, total = n + nb;
            mean += delta * (nb / total);
            m2 += (double)m[2] + delta * delta * (n * (nb / total));
            n = total;
        }
        /* out may be the first set: every input of group g was read above */
        out[CLNORM_MOMENTS_FLOATS * g] = (float)n;
        out[CLNORM_MOMENTS_FLOATS * g + 1] = (float)mean;
        out[CLNORM_MOMENTS_FLOATS * g + 2] = (float)m2;
    }
}

void clnorm_sums_merge(const float *sets, size_t k, size_t slices, float *out)
{
    if (!sets || !out)
        return;
    size_t count = slices * CLNORM_SUMS_FLOATS;
    for (size_t i = 0; i < count; ++i) {
        double s = 0.0;
        for (size_t j = 0; j < k; ++j)
            s += sets[j * count + i];
        out[i] = (float)s;
    }
}
