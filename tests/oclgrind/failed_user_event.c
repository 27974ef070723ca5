/*
 * OpenCL (1.1 and later) says of clSetUserEventStatus: "A negative integer value causes all
 * enqueued commands that wait on this user event to be terminated." Oclgrind 21.10 leaves them
 * queued for ever instead, so a queue behind such a command never drains and its event never
 * fails. clnorm relies on the rule for failed dependencies and for calls refused part-way
 * (src/chain.c); tests/test_faults.c skips those checks on a driver that breaks it.
 *
 * Plain OpenCL, no clnorm: a kernel waits on a user event that is then failed. Prints the
 * kernel's status; exits 0 while the driver leaves it queued (the behaviour this documents),
 * 1 once it terminates it: then test_faults' skip on this driver can go.
 */
#define _POSIX_C_SOURCE 200809L
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include <stdio.h>
#include <time.h>

static const char *source = "__kernel void k(__global float *a) { a[get_global_id(0)] = 1.0f; }";

int main(void)
{
    cl_platform_id platform;
    cl_device_id device;
    cl_int err;
    if (clGetPlatformIDs(1, &platform, NULL) != CL_SUCCESS ||
        clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 1, &device, NULL) != CL_SUCCESS) {
        fprintf(stderr, "no OpenCL device\n");
        return 77;
    }
    cl_context cl = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    cl_command_queue queue = clCreateCommandQueue(cl, device, 0, &err);
    cl_program program = clCreateProgramWithSource(cl, 1, &source, NULL, &err);
    if (clBuildProgram(program, 1, &device, "", NULL, NULL) != CL_SUCCESS) {
        fprintf(stderr, "build failed\n");
        return 1;
    }
    cl_kernel kernel = clCreateKernel(program, "k", &err);
    cl_mem a = clCreateBuffer(cl, CL_MEM_READ_WRITE, 64, NULL, &err);
    clSetKernelArg(kernel, 0, sizeof a, &a);
    cl_event gate = clCreateUserEvent(cl, &err), done;
    size_t global = 16;
    clEnqueueNDRangeKernel(queue, kernel, 1, NULL, &global, &global, 1, &gate, &done);
    clSetUserEventStatus(gate, -1);
    cl_int status = CL_QUEUED;
    for (int tries = 0; tries < 200 && status > CL_COMPLETE; ++tries) {
        clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status, NULL);
        struct timespec ms = {0, 1000 * 1000};
        nanosleep(&ms, NULL);
    }
    printf("kernel waiting on a failed user event: status %d (%s)\n", (int)status,
           status < 0 ? "terminated, as OpenCL says" : "left queued: the driver breaks the rule");
    /* Nothing is released: on a driver that keeps the command, releasing could wait for ever. */
    return status < 0 ? 1 : 0;
}
