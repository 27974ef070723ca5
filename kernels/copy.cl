/*
 * The speed-of-light reference: a plain copy in the same per-work-item chunks as apply, so
 * clnorm-bench compares each operation against the fastest this device moves the same bytes.
 */
__kernel void copy(__global const float *src, __global float *dst, ulong total, ulong chunk)
{
    ulong i = get_global_id(0) * chunk;
    if (i >= total)
        return;
    ulong end = min(total, i + chunk);
    for (; i + 8 <= end; i += 8)
        vstore8(vload8(0, src + i), 0, dst + i);
    for (; i < end; ++i)
        dst[i] = src[i];
}
