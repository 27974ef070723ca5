/* Kernels for the reproducers reuse_stale_shadow.c and sub_buffer_write.c: produce fills a
 * buffer with a constant, consume doubles what it reads. Run as those programs run them,
 * neither reads memory that was not written. */
__kernel void produce(__global float *p)
{
    p[get_global_id(0)] = 1.0f;
}

__kernel void consume(__global const float *p, __global float *q)
{
    size_t i = get_global_id(0);
    q[i] = 2.0f * p[i];
}
