/* The registry of kernel sources embedded at build time (see cmake/embed_kernels.cmake). */
#ifndef CLNORM_KERNELS_H
#define CLNORM_KERNELS_H

#include <stddef.h>

typedef struct clnorm_kernel_source {
    const char *name; /* file name in kernels/, e.g. "stats.cl" */
    const char *text; /* NUL-terminated */
    size_t size;      /* bytes, without the NUL */
} clnorm_kernel_source;

/* Terminated by an entry whose name is NULL. */
extern const clnorm_kernel_source clnorm_kernel_sources[];

#endif
