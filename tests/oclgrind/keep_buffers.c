/*
 * LD_PRELOAD shim for the Oclgrind runs: a memory object's last release is skipped, so its
 * buffer lives until the process ends.
 *
 * Why: Oclgrind 21.10 gives a released buffer's number to the next buffer created, and its
 * uninitialized-value plugin never forgets the old buffer's shadow memory (it has no
 * memoryDeallocated hook, and kernelBegin only allocates a shadow for buffers it has not
 * seen). The new buffer inherits the old one's shadow and size: stores past the old size are
 * dropped, and what later kernels read there counts as uninitialized, however it was written.
 * reuse_stale_shadow.c reproduces that without clnorm. With every buffer kept no number is
 * reused, so each buffer gets a fresh, poisoned shadow of its own size on first use and the
 * plugin's reports mean what they say.
 *
 * Two entry points: clReleaseMemObject, which programs call, and _clReleaseMemObject, the name
 * under which Oclgrind's ICD library defines it. The second catches the releases Oclgrind
 * makes itself: a program may release a buffer that an enqueued command still holds, and then
 * the last release comes from Oclgrind when the command completes (reuse_stale_shadow.c
 * --release-early shows it); a sub-buffer's release releases its parent the same way. The
 * ICD library's own references to _clReleaseMemObject (its dispatch table among them) bind to
 * the preloaded definition first; the real one is then looked up in the ICD library itself.
 *
 * Only the release that would free the object is skipped; retains and earlier releases pass
 * through, so reference counts seen by the program are unchanged while it holds the object.
 * Tests run on small shapes, so the memory kept is small.
 */
#define _GNU_SOURCE
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

typedef cl_int(CL_API_CALL *release_fn)(cl_mem);
typedef cl_int(CL_API_CALL *info_fn)(cl_mem, cl_mem_info, size_t, void *, size_t *);

static void *must(void *f, const char *name)
{
    if (!f) {
        fprintf(stderr, "keep_buffers: %s not found\n", name);
        abort();
    }
    return f;
}

/* name as another loaded library defines it: Oclgrind's ICD, which the ICD loader opened with
 * RTLD_LOCAL, so that RTLD_NEXT does not see it. */
struct search {
    const char *name;
    const char *self; /* this library's file, skipped */
    void *found;
};

static int search_object(struct dl_phdr_info *object, size_t size, void *data)
{
    (void)size;
    struct search *s = data;
    Dl_info where;
    if (!object->dlpi_name || !object->dlpi_name[0] || strcmp(object->dlpi_name, s->self) == 0)
        return 0;
    void *lib = dlopen(object->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);
    if (!lib)
        return 0;
    void *f = dlsym(lib, s->name);
    /* A handle's lookup may answer from the library's dependencies: take only a definition
     * outside this library. */
    if (f && dladdr(f, &where) && where.dli_fname && strcmp(where.dli_fname, s->self) != 0)
        s->found = f;
    dlclose(lib);
    return s->found != NULL;
}

static const char marker; /* an address inside this library */

static void *elsewhere(const char *name)
{
    Dl_info self;
    if (!dladdr(&marker, &self) || !self.dli_fname)
        return NULL;
    struct search s = {name, self.dli_fname, NULL};
    dl_iterate_phdr(search_object, &s);
    return s.found;
}

static int last_reference(info_fn info, cl_mem mem)
{
    cl_uint refs = 0;
    return mem && info(mem, CL_MEM_REFERENCE_COUNT, sizeof refs, &refs, NULL) == CL_SUCCESS &&
           refs == 1;
}

static release_fn public_release, icd_release;
static info_fn icd_info;
static pthread_once_t public_once = PTHREAD_ONCE_INIT, icd_once = PTHREAD_ONCE_INIT;

static void find_public(void)
{
    *(void **)&public_release =
        must(dlsym(RTLD_NEXT, "clReleaseMemObject"), "clReleaseMemObject");
}

static void find_icd(void)
{
    *(void **)&icd_info = must(elsewhere("_clGetMemObjectInfo"), "_clGetMemObjectInfo");
    *(void **)&icd_release = must(elsewhere("_clReleaseMemObject"), "_clReleaseMemObject");
}

EXPORT CL_API_ENTRY cl_int CL_API_CALL clReleaseMemObject(cl_mem mem)
{
    pthread_once(&public_once, find_public);
    if (last_reference(clGetMemObjectInfo, mem))
        return CL_SUCCESS; /* kept, so its buffer number is never reused */
    return public_release(mem);
}

EXPORT CL_API_ENTRY cl_int CL_API_CALL _clReleaseMemObject(cl_mem mem);
EXPORT CL_API_ENTRY cl_int CL_API_CALL _clReleaseMemObject(cl_mem mem)
{
    pthread_once(&icd_once, find_icd);
    if (last_reference(icd_info, mem))
        return CL_SUCCESS;
    return icd_release(mem);
}
