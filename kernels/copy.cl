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

/*
 * The same copy with non-temporal stores where the device compiler offers them (clang's
 * __builtin_nontemporal_store: PoCL): a store that skips the read for ownership moves two bytes
 * of traffic per byte written instead of three, the machine's real limit for outputs that are
 * not read back soon. Elsewhere it is the plain copy.
 */
#if defined(__has_builtin)
#if __has_builtin(__builtin_nontemporal_store)
#define CLNORM_HAS_NT 1
#endif
#endif

__kernel void copy_stream(__global const float *src, __global float *dst, ulong total,
                          ulong chunk)
{
    ulong i = get_global_id(0) * chunk;
    if (i >= total)
        return;
    ulong end = min(total, i + chunk);
#ifdef CLNORM_HAS_NT
    /* Whole 64-byte lines, each by one store, from the first 64-byte boundary: PoCL's clang
     * made this loop's float8 stores 16-byte halves, and a copy storing lines in halves or
     * quarters measured 1.02-1.2x slower than by whole lines on the 2-core PoCL machine, which
     * would flatter every SOL-nt. */
    for (; i < end && (((ulong)(dst + i)) & 63); ++i)
        __builtin_nontemporal_store(src[i], dst + i);
    for (; i + 16 <= end; i += 16)
        __builtin_nontemporal_store(vload16(0, src + i), (__global float16 *)(dst + i));
    for (; i < end; ++i)
        __builtin_nontemporal_store(src[i], dst + i);
#else
    for (; i + 8 <= end; i += 8)
        vstore8(vload8(0, src + i), 0, dst + i);
    for (; i < end; ++i)
        dst[i] = src[i];
#endif
}
