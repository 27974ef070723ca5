/* Declarations shared between the library's source files; nothing here is public. */
#ifndef CLNORM_INTERNAL_H
#define CLNORM_INTERNAL_H

#include <clnorm/clnorm.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>

/* ---- errors (error.c) ---------------------------------------------------------------- */

/* Records a message for (ctx, this thread) and returns status. ctx may be NULL. */
clnorm_status clnorm_fail(const clnorm_context *ctx, clnorm_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An OpenCL failure: "<call>: <CL_ERROR_NAME> (<what>)"; memory errors map to OUT_OF_MEMORY. */
clnorm_status clnorm_fail_cl(const clnorm_context *ctx, cl_int err, const char *call,
                             const char *what);
/* Appends text to this thread's message for ctx (for long build logs). */
void clnorm_error_append(const clnorm_context *ctx, const char *text);
void clnorm_error_clear(const clnorm_context *ctx);
void clnorm_error_forget(const clnorm_context *ctx); /* at context release */
const char *clnorm_cl_error_name(cl_int err);

/* ---- context (context.c) ------------------------------------------------------------- */

typedef enum clnorm_device_class { CLNORM_CLASS_CPU, CLNORM_CLASS_GPU } clnorm_device_class;

typedef struct clnorm_device_info {
    char platform_name[256], platform_version[256];
    char device_name[256], device_vendor[256], driver_version[256];
    cl_device_type type;
    clnorm_device_class cls; /* which kernel shapes to use */
    cl_uint compute_units;
    size_t max_work_group;
    size_t max_kernel_work_group; /* testing: a ceiling on every kernel's, 0 for none */
    cl_ulong local_mem, max_alloc, global_mem; /* max_alloc: CLNORM_MAX_ALLOC may lower it */
    cl_bool compiler_available, little_endian;
    int compiler_forced_off; /* CLNORM_COMPILER=0 cleared compiler_available */
    /* the CPU kernels' software prefetch (CLNORM_PREFETCH, common.clh): PoCL's CPU devices,
     * where it was measured; Oclgrind's interpreter has no llvm.prefetch */
    int prefetch;
} clnorm_device_info;

/* Launch parameters a device is tuned by (tune.c): defaults per device class, or what
 * `clnorm-bench --tune` measured and saved. */
typedef struct clnorm_tuning {
    size_t block;     /* elements per block of the statistics passes */
    size_t chunk_max; /* longest chunk of elements one apply work-item takes */
    size_t local;     /* work-group size of the per-work-item kernels */
    /* Smallest final output (y, dx) in bytes that plans store with non-temporal stores
     * (CLNORM_STREAM, common.clh): outputs this large are not read back from cache. 0: never. */
    size_t stream_min;
    /* Longest group (elements) that the one-pass CPU kernels (norm_rows, bwd_rows, bwd_groups)
     * take, re-reading it from a core's cache; longer ones take the blocked passes. Not in the
     * tune file: clnorm-bench --ab fused=N compares another value. */
    size_t fused_max;
    int from_file;
} clnorm_tuning;

/* The programs plans build (program.c): forward (statistics and apply), backward, and
 * clnorm-bench's copy yardstick. */
typedef enum clnorm_program {
    CLNORM_PROGRAM_FORWARD,
    CLNORM_PROGRAM_BACKWARD,
    CLNORM_PROGRAM_COPY
} clnorm_program;

typedef struct clnorm_program_entry {
    struct clnorm_program_entry *next;
    clnorm_program which;
    char *options;
    cl_program program;
} clnorm_program_entry;

struct clnorm_context {
    uint64_t serial;     /* unique per process, for the last-error slots */
    _Atomic long refs;   /* the application's reference and one per plan */
    cl_platform_id platform;
    cl_device_id device;
    cl_context cl;
    cl_command_queue queue;
    int out_of_order; /* queue executes out of order: our commands chain with events */
    clnorm_device_info info;
    clnorm_tuning tuning;
    pthread_mutex_t lock; /* guards programs, packages and the counters below */
    clnorm_program_entry *programs;
    /* programs built from source / loaded from the binary cache / from a kernel package */
    unsigned long compiled, loaded, from_package;
    char **packages; /* kernel package folders, searched in order (package.c) */
    size_t npackages;
    pthread_mutex_t held_lock;      /* guards held and held_tail */
    struct clnorm_held *held;       /* calls' events not yet all resolved, oldest first */
    struct clnorm_held **held_tail; /* where the next record goes (chain.c) */
};

/* Fills info for a device; the class honours CLNORM_DEVICE_CLASS=cpu|gpu (for testing the
 * other kernel shapes on any device). */
void clnorm_device_info_read(cl_platform_id platform, cl_device_id device,
                             clnorm_device_info *info);

/* ---- programs and the binary cache (program.c, cache.c) ---------------------------- */

/* The program `which` built with these options, once per context: from a kernel package, the
 * binary cache, or the device's compiler. problem: the clnorm-compile PROBLEM that needs it
 * (kind:pass:layout:NxCxD[/G]), for the message when no package holds it on a device without a
 * compiler; NULL for the copy program. The context keeps ownership. */
clnorm_status clnorm_program_get(clnorm_context *ctx, clnorm_program which, const char *options,
                                 const char *problem, cl_program *out);
const char *clnorm_program_name(clnorm_program which); /* "forward", "backward", "copy" */
#define CLNORM_COPY_OPTIONS "-cl-std=CL1.2" /* the copy program's: copy.cl needs no -D */
int clnorm_program_from_name(const char *name, clnorm_program *out); /* 0: no such program */
/* The self-contained source a program is built from (malloc'd), as packages store it. */
clnorm_status clnorm_program_source(const clnorm_context *ctx, clnorm_program which,
                                    char **source, size_t *size);

/* ---- kernel packages (package.c) ------------------------------------------------------ */

/* What a package search saw, for the message when nothing matched. */
typedef struct clnorm_package_hint {
    char found[4400];    /* the binary returned last */
    char skipped[4600];  /* the first entry skipped, and why */
    char compiler[1024]; /* the offline compiler command entries for this device were built with */
} clnorm_package_hint;
/* The binary of the (skip+1)-th entry of the context's packages that matches the program on its
 * device and checks out; NULL when there is none. */
unsigned char *clnorm_package_find(clnorm_context *ctx, clnorm_program which,
                                   const char *options, const char *source, size_t source_size,
                                   size_t skip, size_t *binary_size, clnorm_package_hint *hint);
/* text in single quotes for a POSIX shell (malloc'd; NULL when out of memory). */
char *clnorm_shell_quote(const char *text);
/* Appends a folder to the context's package list (context.c); no checks. */
clnorm_status clnorm_context_add_package_dir(clnorm_context *ctx, const char *dir);

typedef enum clnorm_package_mode {
    CLNORM_PACKAGE_DEVICE,  /* built by the device's own compiler */
    CLNORM_PACKAGE_COMMAND, /* built by an offline compiler command */
    CLNORM_PACKAGE_EMIT     /* source and manifest entry only */
} clnorm_package_mode;
/* clnorm-compile: adds the program to the package folder dir for ctx's device, keeping an entry
 * that is already there with its binary. report receives a line saying what was done. */
clnorm_status clnorm_package_add(clnorm_context *ctx, const char *dir, clnorm_program which,
                                 const char *options, clnorm_package_mode mode,
                                 const char *command, char *report, size_t report_size);
/* clnorm-compile without problems (no device needed): records the binaries of dir's entries
 * that are present but not recorded (copied in by hand) when command is NULL, else builds
 * with command every entry that has no recorded binary. report (may be NULL) is called with a
 * line per entry; entries left without a binary make it return UNSUPPORTED. device (NULL: all):
 * only the entries whose device name contains it. */
clnorm_status clnorm_package_build_missing(const char *dir, const char *command,
                                           const char *device,
                                           void (*report)(const char *line, void *user),
                                           void *user);
/* One kernel source by file name, from CLNORM_KERNEL_DIR when set, else the embedded copy.
 * *text is malloc'd. */
clnorm_status clnorm_kernel_source_read(const clnorm_context *ctx, const char *name, char **text,
                                        size_t *size);

uint64_t clnorm_hash64(const void *data, size_t size, uint64_t seed);
/* The whole file, NUL-terminated past *size (malloc'd); NULL when it cannot be read. */
unsigned char *clnorm_file_read(const char *path, size_t *size);
/* mkdir -p; returns 0 when a folder cannot be made. */
int clnorm_make_dirs(const char *path);
/* The epilogue gradient's scratch (dy*act'(z), x's size), where backward needs one (plan.c). */
size_t clnorm_plan_epilogue_bytes(const clnorm_plan *plan);

/* The fused forward kernel's name: norm_rows, norm_slab, norm_channels or norm_cols (plan.c). */
const char *clnorm_fused_name(const clnorm_plan *plan);

/* Fills ctx->tuning: defaults for the device class, or the saved file (tune.c). */
void clnorm_tuning_load(clnorm_context *ctx);
/* Saves ctx->tuning for this device beside the binary cache; path receives the file name. */
clnorm_status clnorm_tuning_store(const clnorm_context *ctx, char *path, size_t size);
#define CLNORM_HASH_SEED 0xcbf29ce484222325ull

/* Returns a malloc'd binary for key, or NULL (no cache, miss, or an unusable file). */
unsigned char *clnorm_cache_load(const char *key, size_t key_size, size_t *binary_size);
/* Best effort: a failure to write is never an error. */
void clnorm_cache_store(const char *key, size_t key_size, const unsigned char *binary,
                        size_t binary_size);
/* The cache folder (CLNORM_CACHE_DIR, $XDG_CACHE_HOME/clnorm, ~/.cache/clnorm), or 0 when
 * CLNORM_CACHE=0 or no folder can be named. */
int clnorm_cache_dir(char *out, size_t size);

/* ---- plans (plan.c, forward.c, backward.c) ------------------------------------------ */

/* The reduction view of DESIGN.md section 3: groups are (p, r), reduced over (q, s). */
typedef struct clnorm_view {
    size_t P, Q, R, S;
    size_t members; /* partial columns merged into one group (channels-last GROUP: C/G) */
} clnorm_view;

/* How the statistics pass cuts a group: blocks of qb x sb, sblocks per segment. */
typedef struct clnorm_blocking {
    int cols; /* column kernel (S == 1) instead of the row kernel */
    size_t qb, sb, sblocks, nqb, nblk;
    size_t work_items; /* of the partial kernel */
    /* Rows on GPUs: the cooperative row kernel's work-group size (CLNORM_WG), one work-group
     * per block, so work_items = blocks * wg; 0: one work-item per block. */
    size_t wg;
} clnorm_blocking;

struct clnorm_plan {
    clnorm_context *ctx;
    clnorm_desc desc;
    size_t elements;    /* N*C*D */
    size_t stats_count; /* groups */
    size_t table_size;  /* per (sample, channel) entries of the apply table; 0 for LAYER/RMS */
    clnorm_view view;
    clnorm_blocking blocking;
    size_t apply_chunk, apply_rowlen, apply_rows_per_sample;
    size_t apply_local; /* work-group size of apply (and of the copy kernel it is measured by) */
    /* LAYER and RMS rows on CPUs long enough to give every core chunks of one position range:
     * apply walks each range across the samples (gamma and beta read once) */
    int apply_across;
    size_t local_size; /* of the per-work-item kernels */
    size_t coop_wg;    /* CLNORM_WG on GPUs (rows reduced a work-group per block), else 0 */
    size_t bwd_wg;     /* the same for the backward program (its kernel may allow less) */
    cl_kernel partial_rows, partial_cols, finalize, from_running, apply;
    /* Forward of row problems whose row fits in cache (CPU): statistics and apply in one kernel
     * (norm_rows), fused_rows rows of view.S elements per work-item, in blocks of fused_block;
     * NULL when the plan takes the separate passes. */
    cl_kernel fused;
    /* fused_items: its work-items (rows, samples or channel tiles); fused_rows: norm_rows'
     * rows per work-item (several for LAYER and RMS rows of one block, which it pipelines) */
    size_t fused_block, fused_local, fused_items, fused_rows;
    /* fused_slab: the kernel is norm_slab (channels-last INSTANCE and GROUP: one work-item per
     * sample, blocks of fused_block rows) */
    int fused_slab;
    /* fused_channels: the kernel is norm_channels or norm_cols (small BATCH, channels-first or
     * channels-last: one work-item per channel, or per eight channels-last ones, running
     * statistics read or updated in the kernel, one launch in every mode) */
    int fused_channels;
    /* Each of its kernels' most work-items per group (clnorm_kernel_max_local), read when the
     * kernel is created, so that launches need not ask the driver. */
    struct {
        cl_kernel kernel;
        size_t most;
    } limits[24];
    size_t nlimits;
    /* Scratch, owned by the plan and allocated by the first call that needs it; the sizes are
     * set at creation. scratch_held: bytes allocated so far. */
    cl_mem partials, stats, table;
    size_t partials_bytes, stats_bytes, table_bytes;
    size_t scratch_held;
    /* Backward: its reduction view has one slice per channel of a group (GROUP channels-first
     * differs from forward); LAYER/RMS add column sums over samples for dgamma/dbeta. */
    clnorm_view bwd_view;
    clnorm_blocking bwd_blocking, param_blocking;
    size_t coef_size; /* entries of each of the 4 coefficient arrays */
    int apply_mode;   /* CLNORM_APPLY: 0 channels-first rows, 1 channels-last, 2 per sample */
    /* The program's column shapes: CLNORM_NARROW (channels-last C < 8 on CPUs, else 0) and
     * CLNORM_CT (columns per work-item of the column kernels, forward and backward). */
    int narrow;
    size_t col_tile;
    int stream; /* CLNORM_STREAM: y and dx by non-temporal stores (tuning.stream_min) */
    /* The backward program's CLNORM_CT: col_tile, but 64 (or 32) where a plan with an
     * activation has columns that allow it (its sums pass writes dy*act'(z), and runs of
     * eight columns wrote it a 32-byte piece per row). */
    size_t bwd_col_tile;
    cl_kernel bwd_partial_rows, bwd_partial_cols, bwd_finalize, bwd_param_partial,
        bwd_param_finalize, bwd_running_stats, bwd_apply;
    cl_mem bwd_partials, coef, param_partials;
    size_t bwd_partials_bytes, coef_bytes, param_partials_bytes, bwd_row_partials_bytes;
    /* LAYER/RMS rows that fit in cache on CPUs: one pass per row (bwd_rows), its parameter
     * partials per work-item summed by bwd_rows_param_finalize. rows_per_item 0: not used. */
    size_t bwd_rows_per_item, bwd_row_items;
    cl_kernel bwd_rows, bwd_rows_param_finalize;
    /* Channels-last INSTANCE and GROUP samples in cache (CPU, where forward takes norm_slab):
     * sums and dx in one pass per sample; NULL otherwise. */
    cl_kernel bwd_slab;
    /* Channels-first INSTANCE, GROUP and BATCH groups in cache (CPU): sums and dx in one pass
     * per statistics group, bwd_groups_local work-items per work-group; NULL otherwise. */
    cl_kernel bwd_groups;
    size_t bwd_groups_local;
    cl_kernel bwd_slice_sums; /* clnorm_backward_sums: each slice's partials summed */
    cl_mem bwd_row_partials;
    /* BATCH with n = 0 has no program of its own; the with_* calls that write per-channel
     * results (save_*, running statistics, dgamma, dbeta) run this plan's kernels (the same
     * descriptor with n = 1), made by their first call or by a check with given = 1. */
    struct clnorm_plan *zero_batch;
    /* Epilogues with an activation: dy*act'(z) before the passes (bwd_epilogue), into the
     * caller's dresidual or, without one, epi_dz (x's size, allocated at the first such call). */
    cl_kernel bwd_epilogue;
    cl_mem epi_dz;
    pthread_mutex_t lock;          /* kernel arguments, scratch and last event */
    cl_event last;                 /* last command of the previous call (out-of-order queues) */
};

/* Plan building blocks, for backward.c: blocking of a view (cols: columns per work-item of
 * the column kernels; with wg, row views get the work-group kernels' blocks), a kernel
 * from the plan's program, a scratch buffer. */
clnorm_blocking clnorm_plan_blocking(const clnorm_plan *plan, const clnorm_view *v, size_t cols,
                                     size_t wg);
/* The clnorm-compile PROBLEM of a descriptor: kind:pass:layout:NxCxD[/G]:T[-Y], the pass
 * forward-training (the forward program serves inference too) or backward, T and Y the
 * storage of x and (where it differs) y. */
void clnorm_problem_text(const clnorm_desc *d, int backward, char *out, size_t size);
/* A plan prepared as clnorm_plan_create makes it, but with no program built and no kernels:
 * for clnorm-compile to read the options of its programs. Only release it. */
clnorm_status clnorm_plan_prepare(clnorm_context *ctx, const clnorm_desc *desc,
                                  clnorm_plan **out);
/* The options the plan's program `which` is (or would be) built with; "" for none (n = 0). */
void clnorm_plan_program_options(const clnorm_plan *plan, clnorm_program which, char *out,
                                 size_t size);
/* The backward program, built at the first backward call; may lower plan->bwd_wg and redo
 * clnorm_plan_backward_setup. */
clnorm_status clnorm_plan_backward_program(clnorm_plan *plan, cl_program *out);
/* Work-group size for a CPU kernel of `items` work-items that each take a whole cache-sized
 * group: 0 when there are fewer than four per core, else the tuned size, halved until
 * work-groups still number four per core. */
size_t clnorm_plan_items_local(const clnorm_plan *plan, size_t items);
/* Work-items of the CPU row kernels that take several rows each (norm_rows pipelined,
 * bwd_rows): eight a core, enough to even out the cores' shares. */
size_t clnorm_plan_row_items(const clnorm_plan *plan);
clnorm_status clnorm_plan_kernel(clnorm_plan *plan, cl_program program, const char *name,
                                 cl_kernel *out);
/* Scratch buffers a pass needs: those not made yet are allocated, all or none, after checking
 * them against the device's largest allocation and memory (UNSUPPORTED, OUT_OF_MEMORY with the
 * sizes named). Called with the plan's lock held. */
typedef struct clnorm_scratch_need {
    cl_mem *mem;
    size_t bytes;
    const char *what;
} clnorm_scratch_need;
clnorm_status clnorm_plan_scratch_make(clnorm_plan *plan, const clnorm_scratch_need *need,
                                       size_t count);
/* Forward's statistics scratch (partials, statistics, apply table); backward's own. */
clnorm_status clnorm_plan_forward_scratch(clnorm_plan *plan);
clnorm_status clnorm_plan_backward_scratch(clnorm_plan *plan);
/* Backward's shapes and the sizes of its scratch, at plan creation (backward.c); its kernels
 * come with its program at the first backward call. release accepts a partly built plan. */
void clnorm_plan_backward_setup(clnorm_plan *plan);
void clnorm_plan_backward_release(clnorm_plan *plan);

size_t clnorm_dtype_size(clnorm_dtype dtype);
clnorm_dtype clnorm_y_storage(const clnorm_desc *desc); /* y's: x's unless y_dtype says */
int clnorm_dtype_is_integer(clnorm_dtype dtype);
const char *clnorm_kind_name(clnorm_kind kind); /* "BATCH", ... */
/* Validates the descriptor; the message names the field. */
clnorm_status clnorm_desc_check(const clnorm_context *ctx, const clnorm_desc *desc);

/* The start of every forward/backward call (buffers.c): plan present, last error cleared, *done
 * NULL, a wait list that matches its count, of non-NULL events of the plan's context. */
clnorm_status clnorm_call_begin(clnorm_plan *plan, cl_uint num_wait, const cl_event *wait,
                                cl_event *done);
/* Bytes of gamma, beta, dgamma or dbeta: C floats, or C*D for LAYER and RMS. */
size_t clnorm_param_bytes(const clnorm_desc *desc);
/* What forward and backward check alike: the mode, bufs, running statistics (allowed for the
 * kind, both or neither), and no own statistics over single elements. Sets *use_running:
 * INFERENCE with running statistics. The buffers themselves: clnorm_roles_check. */
/* given: the statistics come with the call (moments or sums), so running ones are never
 * the statistics, and a group of one element is no error. */
clnorm_status clnorm_check_call(const clnorm_plan *plan, clnorm_mode mode,
                                const clnorm_buffers *b, int given, int *use_running);
/* plan->zero_batch, made when missing (plan lock held). */
clnorm_status clnorm_plan_zero_batch(clnorm_plan *plan, clnorm_plan **out);

/* The epilogue's own rules (DESIGN.md section 11): sum only with skip (backward reads it as h),
 * dresidual only in backward, none of skip, residual or sum with integer x. */
clnorm_status clnorm_epilogue_check(const clnorm_plan *plan, const clnorm_buffers *b,
                                    int backward);
/* Whether a call has an epilogue: one of its buffers, or an activation. */
int clnorm_epilogue_any(const clnorm_plan *plan, const clnorm_buffers *b);

/* One buffer a call is handed (buffers.c). */
enum { CLNORM_READS = 1, CLNORM_WRITES = 2 }; /* access: 0 for a role this call never touches */
typedef struct clnorm_role {
    const char *field; /* "bufs.y" */
    cl_mem mem;
    size_t bytes; /* what the call touches, from offset 0 */
    int required;
    int access;
    const char *in_place; /* the fields this one may be exactly, space-separated (y: "bufs.x"),
                           * or NULL */
} clnorm_role;
/* Every role present where required, a buffer of the plan's context, large enough, with flags
 * that allow its access, and no written role sharing bytes with another but its in-place one. */
clnorm_status clnorm_roles_check(const clnorm_context *ctx, const clnorm_role *roles,
                                 size_t count);

/*
 * A call's sequence of kernels (chain.c): the first waits for the caller's events, the gate (a
 * user event opened by clnorm_chain_end only when every command was enqueued) and, on an
 * out-of-order queue, the plan's previous call, which shares its scratch; each later one waits
 * for the one before. The plan's lock must be held from clnorm_chain_begin to clnorm_chain_end.
 */
#define CLNORM_CHAIN_MAX 12
typedef struct clnorm_chain {
    clnorm_plan *plan;
    cl_uint num_wait;
    const cl_event *wait;
    struct clnorm_held *record; /* the call's events, made at its first command */
    cl_event gate;              /* in the record */
    cl_uint first;              /* the record's entries the first command waits on */
    int steps;
    /* The caller enqueues one command: with nothing to wait for, it needs no gate (a failed
     * enqueue leaves nothing enqueued). Set after clnorm_chain_begin. */
    int single;
} clnorm_chain;

/* Also reaps the context's held events that have resolved. */
void clnorm_chain_begin(clnorm_chain *chain, clnorm_plan *plan, cl_uint num_wait,
                        const cl_event *wait);
/* The most work-items per group the kernel allows on the context's device (and under
 * CLNORM_MAX_WORK_GROUP). */
size_t clnorm_kernel_max_local(const clnorm_context *ctx, cl_kernel kernel);
/* Enqueues kernel over global work-items, rounded up to a multiple of local (which shrinks, by
 * halves, to what the kernel allows). */
clnorm_status clnorm_chain_step(clnorm_chain *chain, cl_kernel kernel, const char *name,
                                size_t global, size_t local);
/* Enqueues a fill of the first bytes of mem with zeros (a multiple of 4), in the chain. */
clnorm_status clnorm_chain_fill_zero(clnorm_chain *chain, cl_mem mem, size_t bytes,
                                     const char *name);
/* Opens the gate on success, or terminates the enqueued commands on failure; hands the last
 * command's event to *done (a marker when there was none) on success. The call's events stay
 * held on the context until they and the caller's events have all resolved. */
clnorm_status clnorm_chain_end(clnorm_chain *chain, clnorm_status status, cl_event *done);
/* Releases a few held records whose events all resolved (each call does). */
void clnorm_held_reap(clnorm_context *ctx);
/* At context release: the resolved records go, the pending ones outlive the context. */
void clnorm_held_release(clnorm_context *ctx);
/* n halved until it is at most `most` (>= 1): powers of two stay powers of two. */
size_t clnorm_halve_to(size_t n, size_t most);

/* One kernel argument: KARG(variable) takes its size and address. */
typedef struct clnorm_karg {
    size_t size;
    const void *value;
} clnorm_karg;
#define KARG(v) {sizeof(v), &(v)}

/* Sets a kernel's arguments in order; reports the first failure with the kernel's name. */
clnorm_status clnorm_set_args(const clnorm_context *ctx, cl_kernel kernel, const char *name,
                              const clnorm_karg *args, cl_uint count);


/* Forward's statistics passes on h = x + skip (skip may be NULL) alone, into plan->stats (for a
 * backward without save_*). */
clnorm_status clnorm_forward_statistics(clnorm_plan *plan, clnorm_chain *chain, cl_mem x,
                                        cl_mem skip);

#endif
