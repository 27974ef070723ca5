/*
 * Kernel sources: the copies embedded at build time, or, when CLNORM_KERNEL_DIR is set, the
 * files of that folder (for working on kernels without rebuilding the library).
 */
#include "internal.h"
#include "kernels.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static clnorm_status read_file(const clnorm_context *ctx, const char *path, char **text,
                               size_t *size)
{
    errno = 0;
    *text = (char *)clnorm_file_read(path, size);
    if (*text)
        return CLNORM_SUCCESS;
    if (errno == ENOMEM)
        return clnorm_fail(ctx, CLNORM_ERROR_OUT_OF_MEMORY, "%s: out of memory", path);
    return clnorm_fail(ctx, CLNORM_ERROR_BUILD_FAILED, "CLNORM_KERNEL_DIR: cannot read %s: %s",
                       path, errno ? strerror(errno) : "read failed");
}

clnorm_status clnorm_kernel_source_read(const clnorm_context *ctx, const char *name, char **text,
                                        size_t *size)
{
    const char *dir = getenv("CLNORM_KERNEL_DIR");
    if (dir && *dir) {
        size_t n = strlen(dir) + strlen(name) + 2;
        char *path = malloc(n);
        if (!path)
            return clnorm_fail(ctx, CLNORM_ERROR_OUT_OF_MEMORY, "kernel path: out of memory");
        snprintf(path, n, "%s/%s", dir, name);
        clnorm_status status = read_file(ctx, path, text, size);
        free(path);
        return status;
    }
    for (const clnorm_kernel_source *k = clnorm_kernel_sources; k->name; ++k) {
        if (strcmp(k->name, name) == 0) {
            *text = malloc(k->size + 1);
            if (!*text)
                return clnorm_fail(ctx, CLNORM_ERROR_OUT_OF_MEMORY, "%s: out of memory", name);
            memcpy(*text, k->text, k->size + 1);
            *size = k->size;
            return CLNORM_SUCCESS;
        }
    }
    return clnorm_fail(ctx, CLNORM_ERROR_BUILD_FAILED, "kernel source %s is not embedded", name);
}
