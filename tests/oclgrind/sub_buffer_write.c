/*
 * Oclgrind false positive: a host write to one sub-buffer, then a kernel given another
 * sub-buffer of the same buffer, and the written values read as uninitialized.
 *
 * Oclgrind 21.10's uninitialized-value plugin handles a host write (hostMemoryStore) by
 * reallocating the whole buffer's shadow memory at the size of the write. Writing sub-buffer a
 * (the first half of the buffer) leaves a shadow as long as a. When a kernel then gets
 * sub-buffer b (the second half), kernelBegin finds b's address outside that shadow, takes it
 * for a buffer never seen, and allocates a new shadow for the whole buffer, poisoned: a's
 * values no longer count as written. consume(a, b) then stores 2 * a[i] = 2.0f, and (nearly)
 * every store is reported as "Uninitialized value written to global memory". A host write at
 * an offset other than 0, a clEnqueueFillBuffer, or a write map of part of a buffer leave a
 * short or garbage shadow the same way. keep_buffers.c cannot help; tests avoid it by writing
 * a buffer whole from the host (through the parent, not a sub-buffer).
 *
 * Prints "all results right" and exits 0 when they are (any report is then false); exits 1
 * otherwise. Usage: sub_buffer_write KERNEL_FILE (produce_consume.cl)
 */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include <stdio.h>
#include <stdlib.h>

#define CHECK(call)                                                                               \
    do {                                                                                          \
        cl_int err_ = (call);                                                                     \
        if (err_ != CL_SUCCESS) {                                                                 \
            fprintf(stderr, "%s: %d\n", #call, (int)err_);                                        \
            exit(1);                                                                              \
        }                                                                                         \
    } while (0)

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0) {
        perror(path);
        exit(1);
    }
    long n = ftell(f);
    rewind(f);
    char *text = malloc((size_t)n + 1);
    if (!text || fread(text, 1, (size_t)n, f) != (size_t)n)
        exit(1);
    text[n] = '\0';
    fclose(f);
    return text;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s produce_consume.cl\n", argv[0]);
        return 2;
    }
    cl_platform_id platform;
    cl_device_id device;
    cl_int err;
    CHECK(clGetPlatformIDs(1, &platform, NULL));
    CHECK(clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 1, &device, NULL));
    cl_context cl = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    CHECK(err);
    cl_command_queue queue = clCreateCommandQueue(cl, device, 0, &err);
    CHECK(err);
    const char *source = read_text(argv[1]);
    cl_program program = clCreateProgramWithSource(cl, 1, &source, NULL, &err);
    CHECK(err);
    CHECK(clBuildProgram(program, 1, &device, "", NULL, NULL));
    cl_kernel consume = clCreateKernel(program, "consume", &err);
    CHECK(err);

    /* Two halves of one buffer, each as long as the device's sub-buffer alignment allows. */
    cl_uint align_bits = 0;
    CHECK(clGetDeviceInfo(device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits, &align_bits,
                          NULL));
    size_t n = 16, half = n * sizeof(float), align = align_bits / 8 ? align_bits / 8 : 1;
    half = (half + align - 1) / align * align;
    cl_mem whole = clCreateBuffer(cl, CL_MEM_READ_WRITE, 2 * half, NULL, &err);
    CHECK(err);
    cl_buffer_region ra = {0, n * sizeof(float)}, rb = {half, n * sizeof(float)};
    cl_mem a = clCreateSubBuffer(whole, 0, CL_BUFFER_CREATE_TYPE_REGION, &ra, &err);
    CHECK(err);
    cl_mem b = clCreateSubBuffer(whole, 0, CL_BUFFER_CREATE_TYPE_REGION, &rb, &err);
    CHECK(err);

    float in[16], out[16];
    for (size_t i = 0; i < n; ++i)
        in[i] = 1.0f;
    CHECK(clEnqueueWriteBuffer(queue, a, CL_TRUE, 0, sizeof in, in, 0, NULL, NULL));
    CHECK(clSetKernelArg(consume, 0, sizeof a, &a));
    CHECK(clSetKernelArg(consume, 1, sizeof b, &b));
    CHECK(clEnqueueNDRangeKernel(queue, consume, 1, NULL, &n, &n, 0, NULL, NULL));
    CHECK(clEnqueueReadBuffer(queue, b, CL_TRUE, 0, sizeof out, out, 0, NULL, NULL));

    int wrong = 0;
    for (size_t i = 0; i < n; ++i)
        wrong += out[i] != 2.0f;
    if (wrong)
        printf("%d of 16 results wrong\n", wrong);
    else
        printf("all results right\n");
    clReleaseMemObject(b);
    clReleaseMemObject(a);
    clReleaseMemObject(whole);
    clReleaseKernel(consume);
    clReleaseProgram(program);
    clReleaseCommandQueue(queue);
    clReleaseContext(cl);
    return wrong ? 1 : 0;
}
