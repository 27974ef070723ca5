/*
 * clnorm: batch, layer, instance, group and RMS normalization on any OpenCL device.
 *
 * Every problem is seen as (N, C, D): batch, channels, and the product of the spatial sizes.
 * A context holds a device and a queue (its own, or the application's); a plan is one
 * validated, compiled problem; forward and backward enqueue work on the context's queue and
 * return at once, following OpenCL's wait-list / event convention.
 *
 * Errors: every call returns a clnorm_status; the detail (the OpenCL call and error name, the
 * field at fault, the compiler's log) is in clnorm_context_last_error(), kept per context and
 * per thread. The library never prints and never exits.
 */
#ifndef CLNORM_CLNORM_H
#define CLNORM_CLNORM_H

#include <stddef.h>

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#ifdef __APPLE__
#include <OpenCL/cl.h>
#else
#include <CL/cl.h>
#endif

#include <clnorm/version.h>

#if defined(CLNORM_STATIC_DEFINE)
#define CLNORM_API
#elif defined(_WIN32)
#ifdef CLNORM_BUILDING
#define CLNORM_API __declspec(dllexport)
#else
#define CLNORM_API __declspec(dllimport)
#endif
#else
#define CLNORM_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Values are pinned: they never change between versions. */
typedef enum clnorm_status {
    CLNORM_SUCCESS = 0,
    CLNORM_ERROR_INVALID_ARGUMENT = 1, /* bad descriptor, missing or too-small buffer */
    CLNORM_ERROR_UNSUPPORTED = 2,      /* valid request this device cannot run */
    CLNORM_ERROR_OUT_OF_MEMORY = 3,
    CLNORM_ERROR_BUILD_FAILED = 4, /* kernel compile failed: the log is in last_error */
    CLNORM_ERROR_NO_DEVICE = 5,
    CLNORM_ERROR_OPENCL = 6 /* any other OpenCL failure */
} clnorm_status;

typedef enum clnorm_kind {
    CLNORM_BATCH,    /* statistics per channel, over N and D */
    CLNORM_LAYER,    /* statistics per sample, over C and D */
    CLNORM_INSTANCE, /* statistics per sample and channel, over D */
    CLNORM_GROUP,    /* statistics per sample and group of C/groups channels */
    CLNORM_RMS       /* root mean square per sample, over C and D; no mean subtracted */
} clnorm_kind;

typedef enum clnorm_layout {
    CLNORM_NCHW, /* [N][C][D] */
    CLNORM_NHWC  /* [N][D][C], channels last */
} clnorm_layout;

/*
 * Storage types. Arithmetic is float. Integer storage (imaging: 8- and 16-bit pixels) is
 * forward only: x in CLNORM_U8 or CLNORM_U16 is read as its integer value (0-255, 0-65535), and
 * clnorm_backward on such a plan returns CLNORM_ERROR_UNSUPPORTED.
 */
typedef enum clnorm_dtype {
    CLNORM_F32,
    CLNORM_F16,
    CLNORM_BF16,
    CLNORM_U8, /* unsigned 8-bit integers */
    CLNORM_U16 /* unsigned 16-bit integers */
} clnorm_dtype;

/*
 * Storage of y when it differs from x's (clnorm_desc.y_dtype). An integer y rounds to nearest
 * (ties to even) and saturates to its type's range: below 0 gives 0, above 255 (65535) gives
 * 255 (65535), NaN gives 0. Zero keeps y in x's storage, as in 0.1.
 */
typedef enum clnorm_y_dtype {
    CLNORM_Y_AS_X, /* y stored as x */
    CLNORM_Y_F32,
    CLNORM_Y_F16,
    CLNORM_Y_BF16,
    CLNORM_Y_U8,
    CLNORM_Y_U16
} clnorm_y_dtype;

typedef enum clnorm_mode { CLNORM_TRAINING, CLNORM_INFERENCE } clnorm_mode;

/*
 * Since 0.3: the activation of a fused epilogue, y = act(z) with z = gamma*hhat + beta +
 * residual (see clnorm_buffers.skip). GELU is the erf form; GELU_TANH PyTorch's
 * approximate='tanh'. Derivatives follow PyTorch: RELU'(0) = 0, LEAKY_RELU'(0) = alpha.
 */
typedef enum clnorm_activation {
    CLNORM_ACTIVATION_NONE,
    CLNORM_ACTIVATION_RELU,
    CLNORM_ACTIVATION_LEAKY_RELU, /* z < 0: activation_alpha * z */
    CLNORM_ACTIVATION_SILU,       /* z * sigmoid(z) */
    CLNORM_ACTIVATION_GELU,       /* z * Phi(z) */
    CLNORM_ACTIVATION_GELU_TANH   /* 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))) */
} clnorm_activation;

typedef struct clnorm_desc {
    clnorm_kind kind;
    clnorm_layout layout;
    clnorm_dtype dtype; /* storage of x, dy, dx, and of y unless y_dtype says otherwise;
                         * parameters and statistics are float */
    size_t n, c, d;     /* batch, channels, spatial size (product of spatial dims; 1 if none) */
    size_t groups;      /* CLNORM_GROUP only: divides c */
    float eps;          /* finite, >= 0: added to the variance inside the square root */
    float momentum;     /* in [0, 1]: running = (1 - momentum) * running + momentum * batch */
    /* Since 0.2 (the struct grew: rebuild against this header); zero keeps the 0.1 behaviour.
     * y's storage, when it is not x's: bufs.y may then not be bufs.x, and clnorm_backward
     * returns CLNORM_ERROR_UNSUPPORTED (forward only). */
    clnorm_y_dtype y_dtype;
    /* Since 0.3; zero keeps the 0.2 behaviour. The epilogue's activation, and its slope for
     * negative inputs (LEAKY_RELU; finite, whatever the activation). */
    clnorm_activation activation;
    float activation_alpha;
} clnorm_desc;

typedef struct clnorm_buffers { /* every tensor role, named once; unused ones stay NULL */
    cl_mem x, y, dy, dx;
    cl_mem gamma, beta, dgamma, dbeta;
    cl_mem running_mean, running_var;
    cl_mem save_mean, save_invstd;
    /*
     * Since 0.3: the fused epilogue. Each has x's shape, layout and storage (floating-point x
     * only: with u8/u16 x they are CLNORM_ERROR_UNSUPPORTED; the activation works there).
     * Forward: h = x + skip is normalized (x alone when skip is NULL), its statistics are the
     * saved and running ones, z = gamma*hhat + beta + residual, y = act(z), and sum (only with
     * skip) receives h. sum may be x or skip; y may be x.
     * Backward takes forward's x, skip, gamma, beta, residual (and save_*) and recomputes h and
     * z: dx is dh (also skip's gradient), dresidual = dy*act'(z) (dy without an activation).
     * Given to backward (with skip), sum is read as h in place of x + skip: one tensor less
     * to read, h rounded to x's storage as forward stored it.
     */
    cl_mem skip;      /* added before normalizing */
    cl_mem sum;       /* forward output with skip: h, the residual stream */
    cl_mem residual;  /* added after: y = act(gamma*hhat + beta + residual) */
    cl_mem dresidual; /* backward output: the gradient of residual */
} clnorm_buffers;

typedef struct clnorm_context clnorm_context; /* device, queue, compiled programs, last error */
typedef struct clnorm_plan clnorm_plan;       /* one validated, compiled problem */

/*
 * device_spec: "P:D" (platform and device index), "cpu", "gpu", "accelerator", or a
 * case-insensitive substring of "platform name / device name". NULL or "" means the
 * CLNORM_DEVICE environment variable, else the first GPU, else the first device.
 * No match: CLNORM_ERROR_NO_DEVICE, and clnorm_context_last_error(NULL) lists the devices.
 */
CLNORM_API clnorm_status clnorm_context_create(const char *device_spec, clnorm_context **out);

/* Runs on the application's queue (in-order or not); clnorm retains the queue, its context
 * and device, and releases only those references. */
CLNORM_API clnorm_status clnorm_context_create_from_queue(cl_command_queue queue,
                                                          clnorm_context **out);
CLNORM_API void clnorm_context_release(clnorm_context *ctx); /* NULL is fine */
CLNORM_API cl_context clnorm_context_cl(const clnorm_context *ctx);
CLNORM_API cl_command_queue clnorm_context_queue(const clnorm_context *ctx);

/* The message of the last failed call on ctx from this thread; "" when none. With ctx NULL:
 * the last failure on this thread of a call that had no context: clnorm_context_create*, and
 * any call given a NULL plan or context. */
CLNORM_API const char *clnorm_context_last_error(const clnorm_context *ctx);

/*
 * Kernel packages: folders of programs built ahead of time by clnorm-compile, with a manifest
 * naming each program's options, source hash, library version, device and driver. Plans take a
 * matching binary from a package before the binary cache and before compiling, on every device;
 * a binary whose library version, source hash or device differs, or that is corrupt or refused
 * by the driver, is skipped. On a device without a compiler (CL_DEVICE_COMPILER_AVAILABLE false,
 * or CLNORM_COMPILER=0) a program found nowhere makes plan creation (or the first backward
 * call) return CLNORM_ERROR_UNSUPPORTED, with the program, its options and the clnorm-compile
 * command that adds it in last_error.
 * A context searches the folders of CLNORM_KERNEL_PACKAGE=DIR[:DIR...], read when it is
 * created, then those added here, in order. dir must be a folder; a manifest in it, if there is
 * one yet, must be a package's (else CLNORM_ERROR_INVALID_ARGUMENT). Programs the context has
 * already loaded stay loaded.
 */
CLNORM_API clnorm_status clnorm_context_add_kernel_package(clnorm_context *ctx, const char *dir);

CLNORM_API clnorm_status clnorm_plan_create(clnorm_context *ctx, const clnorm_desc *desc,
                                            clnorm_plan **out);
CLNORM_API void clnorm_plan_release(clnorm_plan *plan); /* NULL is fine */
CLNORM_API size_t clnorm_plan_stats_count(const clnorm_plan *plan); /* C, N, N*C or N*G */

/*
 * Scratch: device memory a plan owns besides the caller's buffers. A pass's scratch is
 * allocated by the first call that runs the pass, never at plan creation, so a forward-only
 * plan holds no backward scratch. It is bounded:
 *   forward:  8 bytes per statistics block (blocks of at least 2048 elements on GPUs, the
 *             tuned block on CPUs) + 8 bytes per statistics group + 12 bytes per channel
 *             (BATCH) or per (n, c) (INSTANCE, GROUP), none for LAYER and RMS;
 *   backward: the same per block, and 16 bytes per channel (BATCH), per (n, c) (INSTANCE,
 *             GROUP) or per sample (LAYER, RMS); and for LAYER/RMS
 *             dgamma/dbeta 8 bytes per C*D element per 512 samples, none when n <= 512; CPU
 *             plans whose samples fit in cache add 8 bytes per C*D element for each of at
 *             most 8 work-items per compute unit. A backward that recomputes the statistics
 *             (no save_*) or uses running ones also allocates forward's; one with an
 *             activation and no bufs.dresidual adds a tensor of x's size (dy*act'(z)):
 *             CLNORM_SCRATCH_EPILOGUE, apart from CLNORM_SCRATCH_BACKWARD.
 * A pass whose scratch exceeds the device's largest allocation gives
 * CLNORM_ERROR_UNSUPPORTED, or over its memory CLNORM_ERROR_OUT_OF_MEMORY, with the sizes in
 * last_error; nothing is written. Plan creation never fails for scratch.
 */
typedef enum clnorm_scratch {
    CLNORM_SCRATCH_HELD,    /* bytes allocated by the plan so far */
    CLNORM_SCRATCH_FORWARD, /* bytes forward's passes use (allocated or not yet) */
    CLNORM_SCRATCH_BACKWARD, /* bytes backward's own passes use, besides forward's */
    /* bytes a backward with an activation and no bufs.dresidual adds for dy*act'(z), x's size
     * (0 without an activation) */
    CLNORM_SCRATCH_EPILOGUE
} clnorm_scratch;
CLNORM_API size_t clnorm_plan_scratch_bytes(const clnorm_plan *plan, clnorm_scratch which);

/*
 * forward and backward enqueue a call on the context's queue and return.
 *
 * Buffers: every non-NULL role a memory object of type buffer (sub-buffers are fine) created in
 * the plan's cl_context, at least as large as the problem needs; inputs not CL_MEM_WRITE_ONLY,
 * outputs not CL_MEM_READ_ONLY; no output sharing bytes with another role of the call, except
 * y = x (forward) and dx = dy (backward): the same buffer, or sub-buffers at the same start.
 * wait: num_wait non-NULL events of the plan's cl_context. Anything else is
 * CLNORM_ERROR_INVALID_ARGUMENT, with the field and the reason in last_error.
 *
 * A call that returns an error has enqueued nothing that runs and changed none of the caller's
 * buffers, also when OpenCL refuses a command part-way through (the call's commands wait on a
 * gate that opens only once all were enqueued); *done is then NULL.
 *
 * done (may be NULL): on success, the event of the call's last command, for the caller to
 * release. If an event of the wait list fails, done fails (a negative execution status) and
 * nothing is written. Its profiling times cover that last command only. clnorm holds its own
 * references to the call's events, and to those of the wait list, until all have resolved,
 * also past the release of the plan and the context. On an out-of-order queue a call also
 * waits for the plan's previous call (they share scratch), and fails if that one fails.
 *
 * Scratch is allocated by the first call of the pass that uses it (clnorm_plan_scratch_bytes).
 */
CLNORM_API clnorm_status clnorm_forward(clnorm_plan *plan, clnorm_mode mode,
                                        const clnorm_buffers *bufs, cl_uint num_wait,
                                        const cl_event *wait, cl_event *done);
CLNORM_API clnorm_status clnorm_backward(clnorm_plan *plan, clnorm_mode mode,
                                         const clnorm_buffers *bufs, cl_uint num_wait,
                                         const cl_event *wait, cl_event *done);

/*
 * Statistics as a result (since 0.3): the pieces of a normalization whose batch is split
 * between devices, processes (clnorm_mpi, or a framework's own collectives) or tiles of a
 * tensor larger than one buffer. Each call follows clnorm_forward's rules: asynchronous,
 * validated before anything is enqueued, nothing written on an error, wait / done as there.
 *
 * Moments: per statistics group (clnorm_plan_stats_count, in save_mean's order), three floats
 * (count, mean, M2), M2 the sum of squared deviations from the mean, computed by the same
 * blocked two-pass kernels as forward's statistics. A plan with n = 0 gives count 0.
 *
 *   clnorm_moments(plan, x, moments)   moments of x: CLNORM_MOMENTS_FLOATS floats per group
 *   clnorm_moments_merge               on the host: k sets merged in the given order
 *   clnorm_forward_with_moments        forward normalizing with the given (merged) moments
 *
 * Backward splits the same way. Sums: per slice, two floats (sum dy*w, sum dy*w*xhat), where
 * xhat = (x - mean)*invstd and a slice is a channel (BATCH), a (sample, channel) pair
 * (INSTANCE, GROUP: [n][c]) or a sample (LAYER, RMS, with w = gamma per element; otherwise w =
 * 1): clnorm_plan_sums_count slices.
 *
 *   clnorm_backward_sums(plan, bufs, sums)   needs x, dy, gamma (LAYER, RMS), and the
 *       statistics forward normalized with: save_mean and save_invstd (save_invstd for RMS),
 *       or in CLNORM_INFERENCE the running statistics
 *   clnorm_sums_merge                        on the host: k sets added in the given order
 *   clnorm_backward_with_sums(plan, sums, count, bufs)   dx, dgamma, dbeta from the merged
 *       sums, count the elements per statistics group over every part. For BATCH, INSTANCE
 *       and GROUP, dgamma and dbeta come from the sums (BATCH: the merged sums themselves);
 *       for LAYER and RMS, whose parameters are per element, they are this part's own sums.
 *
 * Epilogues: clnorm_forward_with_moments applies residual and activation as clnorm_forward
 * does, but takes no skip or sum (the moments are x's); the split backward takes no epilogue
 * (CLNORM_ERROR_UNSUPPORTED; clnorm_backward does).
 * Merged moments of count 0 or 1 give NaN variances (save_invstd, running_var): a layer
 * refuses them before (clnorm_mpi does).
 * Results are the same bits whenever the same inputs meet in the same order. A part with n = 0
 * still takes part: its moments and sums are zero, and with BATCH the with_* calls still write
 * save_*, running statistics, dgamma and dbeta (the first such call builds a program).
 */
#define CLNORM_MOMENTS_FLOATS 3 /* count, mean, M2 */
#define CLNORM_SUMS_FLOATS 2    /* sum dy*w, sum dy*w*xhat */

/* x: as forward's; moments: a buffer of CLNORM_MOMENTS_FLOATS * stats_count floats. */
CLNORM_API clnorm_status clnorm_moments(clnorm_plan *plan, cl_mem x, cl_mem moments,
                                        cl_uint num_wait, const cl_event *wait, cl_event *done);

/* sets: k sets of moments of `groups` groups each, one after another (as MPI_Allgather leaves
 * them); out (3 * groups floats, may be sets itself) receives, per group, the sets merged by
 * Chan's formula in the order 0, 1, ..., k-1, in double precision and rounded once. Sets of
 * count 0 are skipped. Deterministic: the same sets in the same order give the same bits. */
CLNORM_API void clnorm_moments_merge(const float *sets, size_t k, size_t groups, float *out);

/*
 * clnorm_forward, but normalizing with the moments given (3 floats per group, usually merged
 * over every part) instead of computing them: CLNORM_TRAINING updates running statistics
 * from them (the variance unbiased with their count); in both modes save_mean and save_invstd
 * receive the statistics they give. CLNORM_INFERENCE neither reads nor writes running
 * statistics (the moments take their place).
 */
CLNORM_API clnorm_status clnorm_forward_with_moments(clnorm_plan *plan, clnorm_mode mode,
                                                     cl_mem moments, const clnorm_buffers *bufs,
                                                     cl_uint num_wait, const cl_event *wait,
                                                     cl_event *done);

CLNORM_API size_t clnorm_plan_sums_count(const clnorm_plan *plan); /* C, N*C or N slices */

/* sums: a buffer of CLNORM_SUMS_FLOATS * clnorm_plan_sums_count floats. mode: as
 * clnorm_backward's (INFERENCE with running statistics takes them as the statistics). */
CLNORM_API clnorm_status clnorm_backward_sums(clnorm_plan *plan, clnorm_mode mode,
                                              const clnorm_buffers *bufs, cl_mem sums,
                                              cl_uint num_wait, const cl_event *wait,
                                              cl_event *done);

/* sets: k sets of `slices` sums (2 floats each), one after another; out (may be sets) gets
 * their sums in the order 0, 1, ..., k-1, in double precision and rounded once. */
CLNORM_API void clnorm_sums_merge(const float *sets, size_t k, size_t slices, float *out);

/* count: elements per statistics group over every part (BATCH: total N times D), at least
 * this plan's own. The statistics are save_* (or the running ones in INFERENCE), as for
 * clnorm_backward_sums. */
CLNORM_API clnorm_status clnorm_backward_with_sums(clnorm_plan *plan, clnorm_mode mode,
                                                   cl_mem sums, size_t count,
                                                   const clnorm_buffers *bufs, cl_uint num_wait,
                                                   const cl_event *wait, cl_event *done);

/*
 * What a call would refuse, enqueuing nothing: clnorm_forward's checks of mode and bufs
 * (given = 0) or clnorm_forward_with_moments' (given = 1); clnorm_backward's, or
 * clnorm_backward_with_sums' together with clnorm_backward_sums' (given = 1). For layers that
 * must know every part can run before they exchange (clnorm_mpi). The message is in last_error.
 * given = 1 also makes what the split calls will need (their programs and scratch, and for a
 * BATCH plan with n = 0 the program that writes its per-channel results), so that after a
 * successful check only an OpenCL failure can still refuse them.
 */
CLNORM_API clnorm_status clnorm_forward_check(clnorm_plan *plan, clnorm_mode mode,
                                              const clnorm_buffers *bufs, int given);
CLNORM_API clnorm_status clnorm_backward_check(clnorm_plan *plan, clnorm_mode mode,
                                               const clnorm_buffers *bufs, int given);

/* The plan's descriptor and context (for layers built on clnorm). */
CLNORM_API const clnorm_desc *clnorm_plan_desc(const clnorm_plan *plan);
CLNORM_API clnorm_context *clnorm_plan_context(const clnorm_plan *plan);

/* For layers built on clnorm: records message as ctx's last error on this thread (ctx NULL:
 * the thread's context-less one) and returns status. */
CLNORM_API clnorm_status clnorm_context_set_error(const clnorm_context *ctx,
                                                  clnorm_status status, const char *message);

/*
 * The binary cache on disk (CLNORM_CACHE_DIR, else $XDG_CACHE_HOME/clnorm, else
 * ~/.cache/clnorm; CLNORM_CACHE=0 turns it off). A cache that cannot be used is never an error,
 * programs are then compiled each time; this says why. Writes "on: DIR" or "off: REASON" into
 * text (size bytes, NUL-terminated, cut if short) and returns 1 when the cache is usable.
 * It creates the folder if it is missing, as the first compile would.
 */
CLNORM_API int clnorm_cache_info(char *text, size_t size);

CLNORM_API const char *clnorm_status_string(clnorm_status status);
CLNORM_API const char *clnorm_version_string(void);

#ifdef __cplusplus
}
#endif

#endif /* CLNORM_CLNORM_H */
