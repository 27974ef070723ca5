/*
 * Oclgrind false positive: a value written by one kernel is reported as uninitialized in the
 * next, because the buffer holding it took the number of a smaller buffer released earlier.
 *
 * Oclgrind (21.10, and its tree since) hands a released buffer's number to the next buffer
 * created. Its uninitialized-value plugin keeps shadow memory per buffer number, never drops it
 * when a buffer is released (no memoryDeallocated hook) and only allocates a shadow for a
 * kernel argument whose number it has not seen. The new, larger buffer therefore inherits the
 * old 16-byte shadow: produce's stores past byte 16 are dropped from it, and consume's loads
 * there read "poisoned" shadow, so its stores of q[4..15] are reported as "Uninitialized value
 * written to global memory" though every value is 2.0f. clnorm's tests create and release
 * buffers all the time, so nearly every kernel showed this.
 *
 * Prints "all results right" and exits 0 when they are (any report is then false); exits 1
 * otherwise.
 * Usage: reuse_stale_shadow KERNEL_FILE [--release-early]
 * KERNEL_FILE is produce_consume.cl. With --release-early the small buffer is released while
 * the kernel that uses it is still enqueued, so that Oclgrind itself makes the last release
 * when the kernel completes (keep_buffers.c must catch that one too).
 */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    int early = argc == 3 && strcmp(argv[2], "--release-early") == 0;
    if (argc != 2 && !early) {
        fprintf(stderr, "usage: %s produce_consume.cl [--release-early]\n", argv[0]);
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
    cl_kernel produce = clCreateKernel(program, "produce", &err);
    CHECK(err);
    cl_kernel consume = clCreateKernel(program, "consume", &err);
    CHECK(err);

    /* A 16-byte buffer, used by a kernel (so the plugin gives it a shadow), then released. */
    size_t four = 4, sixteen = 16;
    cl_mem small = clCreateBuffer(cl, CL_MEM_READ_WRITE, 4 * sizeof(float), NULL, &err);
    CHECK(err);
    CHECK(clSetKernelArg(produce, 0, sizeof small, &small));
    CHECK(clEnqueueNDRangeKernel(queue, produce, 1, NULL, &four, &four, 0, NULL, NULL));
    if (early) {
        CHECK(clReleaseMemObject(small));
        CHECK(clFinish(queue));
    } else {
        CHECK(clFinish(queue));
        CHECK(clReleaseMemObject(small));
    }

    /* A 64-byte buffer takes its number; every element is written before it is read. */
    cl_mem p = clCreateBuffer(cl, CL_MEM_READ_WRITE, 16 * sizeof(float), NULL, &err);
    CHECK(err);
    cl_mem q = clCreateBuffer(cl, CL_MEM_READ_WRITE, 16 * sizeof(float), NULL, &err);
    CHECK(err);
    CHECK(clSetKernelArg(produce, 0, sizeof p, &p));
    CHECK(clSetKernelArg(consume, 0, sizeof p, &p));
    CHECK(clSetKernelArg(consume, 1, sizeof q, &q));
    CHECK(clEnqueueNDRangeKernel(queue, produce, 1, NULL, &sixteen, &sixteen, 0, NULL, NULL));
    CHECK(clEnqueueNDRangeKernel(queue, consume, 1, NULL, &sixteen, &sixteen, 0, NULL, NULL));
    float out[16];
    CHECK(clEnqueueReadBuffer(queue, q, CL_TRUE, 0, sizeof out, out, 0, NULL, NULL));

    int wrong = 0;
    for (int i = 0; i < 16; ++i)
        wrong += out[i] != 2.0f;
    if (wrong)
        printf("%d of 16 results wrong\n", wrong);
    else
        printf("all results right\n");
    clReleaseMemObject(q);
    clReleaseMemObject(p);
    clReleaseKernel(consume);
    clReleaseKernel(produce);
    clReleaseProgram(program);
    clReleaseCommandQueue(queue);
    clReleaseContext(cl);
    return wrong ? 1 : 0;
}
