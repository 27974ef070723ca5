/*
 * Oclgrind 21.10's uninitialized-value plugin crashes on optimized code (run with
 * reuse_stale_shadow.c, which only needs kernels named produce and consume; crash.sh does).
 *
 * At Oclgrind's default -Oz, LLVM 14 turns the sum of a float4's lanes below into
 * shufflevectors whose masks hold undef elements (<2, undef, undef, undef>). LLVM stores an
 * undef element as -1; the plugin's ShuffleVector case compares it with
 * llvm::Value::UndefValueVal (a value kind, not -1), so it takes -1 for a lane of the second
 * vector and copies shadow from before the start of that vector's: a segfault in memcpy inside
 * Uninitialized::instructionExecuted, as in clnorm's hsum4/hsum8. At -cl-opt-disable no such
 * mask is emitted. (Upstream fixed the comparison for LLVM 21 and later only.)
 */
__kernel void produce(__global float *p)
{
    p[get_global_id(0)] = 1.0f;
}

__kernel void consume(__global const float *p, __global float *q)
{
    size_t i = get_global_id(0);
    float4 v = vload4(0, p + (i & ~(size_t)3));
    q[i] = (v.s0 + v.s2) + (v.s1 + v.s3) - 2.0f;
}
