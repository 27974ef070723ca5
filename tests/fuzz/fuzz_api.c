/*
 * libFuzzer target for clnorm's public API: descriptors, buffer sizes, memory flags, memory
 * objects, contexts, modes and wait lists, decoded from the input (layout in fuzz_input.h).
 *
 * What it asserts, on every input (abort() on a violation, so libFuzzer keeps the input):
 *  - no crash, no sanitizer report;
 *  - the status is the one DESIGN.md section 2 implies: INVALID_ARGUMENT for a broken rule,
 *    SUCCESS for a valid call on these tiny shapes; where the contract leaves room (a wrong
 *    buffer in a role this call does not touch, a non-NULL wait list with num_wait = 0),
 *    either of the two;
 *  - a rejected call (plan or pass) left a message in last_error, set *done to NULL and
 *    changed no byte of any memory object it was given;
 *  - an accepted call wrote only what its pass writes (y, save_*, running statistics; dx,
 *    dgamma, dbeta), never past the problem's bytes (the tail of a larger buffer, a
 *    sub-buffer's parent), never its inputs, never a buffer of the other pass; and what it
 *    wrote matches the float64 reference of tests/reference.c within tolerances derived from
 *    the arithmetic, as in tests/forward_case.c (inputs whose statistics are too
 *    ill-conditioned to judge are redrawn, and after 16 draws only the bytes are checked).
 *
 * Contexts, plans and the OpenCL objects they need are made once: four clnorm contexts on
 * queues of one cl_context (in order and out of order, CPU and GPU kernel shapes through
 * CLNORM_DEVICE_CLASS), plus a second cl_context for foreign buffers and events. Plans are
 * kept in a fixed-size cache keyed by (context, descriptor), since each new program is a
 * compile; CLNORM_CACHE_DIR (and PoCL's POCL_CACHE_DIR) keep compiles across runs.
 *
 * Environment:
 *   CLNORM_FUZZ_LEGALITY=1     also generate what DESIGN.md section 2 calls illegal buffers and
 *                              wait lists, which must be rejected with INVALID_ARGUMENT: buffers
 *                              of another cl_context, CL_MEM_READ_ONLY outputs,
 *                              CL_MEM_WRITE_ONLY inputs, image objects, NULL wait-list entries,
 *                              events of another context. Off (the default), those input bytes
 *                              decode to legal choices, so one corpus serves both settings.
 *                              CLNORM_FUZZ_LEGALITY=2 generates them but accepts either status
 *                              for them: only crashes and writes by rejected calls count.
 *   CLNORM_FUZZ_FAILED_EVENTS=1 also put user events set to an error status in wait lists: the
 *                              call may succeed or be rejected, but must write nothing and
 *                              *done must fail. Off by default (an OpenCL runtime may take a
 *                              queue down after a failed event, which spoils later inputs).
 *   CLNORM_FUZZ_COMPILE_SECONDS=S  once plan creation has spent S seconds compiling, skip
 *                              inputs that need a program this run has not built yet (a cold
 *                              cache costs seconds per program; tests/run-fuzz.sh sets it).
 *   CLNORM_FUZZ_VERBOSE=1      print each decoded call and its status.
 * A machine without an OpenCL device exits 77 at start-up.
 */
#include "fuzz_input.h"
#include "reference.h"

#include <clnorm/clnorm.h>

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- value tables --------------------------------------------------------------------- */

static const float fz_eps[32] = {
    1e-5f, 0.0f,  1e-3f, 0.1f,  1.0f,  1e-5f, 1e-5f, 2.0f,   1e-40f, 1e-5f, 1e6f,
    -0.0f, 1e-5f, 1e-5f, 1e-2f, 1e-5f, 1e-5f, 1e-5f, 1e-30f, 1e-5f,  1e-5f, 1e-5f,
    1e-5f, 0.5f,  1e-5f, 1e-5f, 1e-4f, 1e-5f,
    -1e-5f, NAN, INFINITY, -INFINITY}; /* invalid from 28 */
static const float fz_momentum[32] = {
    0.1f, 0.0f, 1.0f, 0.5f, 0.9f, 0.1f, 0.01f, 0.1f, 0.3f, 0.1f, 0.1f, 0.1f,  -0.0f, 0.999f,
    0.1f, 0.1f, 0.1f, 0.1f, 0.2f, 0.1f, 0.1f,  0.1f, 0.1f, 0.7f, 0.1f, 0.1f,  0.1f,  0.1f,
    -0.1f, 1.0001f, NAN, INFINITY}; /* invalid from 28 */
static const size_t fz_huge[16] = {
    SIZE_MAX,          SIZE_MAX - 1,       (size_t)1 << 63,       (size_t)1 << 62,
    ((size_t)1 << 62) + 1, SIZE_MAX / 2,   SIZE_MAX / 3,          SIZE_MAX / 4 + 1,
    SIZE_MAX,          (size_t)3 << 62,    ((size_t)1 << 63) + 5, SIZE_MAX - 7,
    (size_t)1 << 62,   SIZE_MAX / 2 + 1,   SIZE_MAX - 1,          (size_t)1 << 63};
static const double fz_offset[4] = {0.0, 1.0, -3.0, 10.0};
static const float fz_alpha[8] = {0.01f, 0.2f, 0.0f, -0.5f, 1.5f, 1e-30f, NAN, INFINITY};
static const double fz_spread[4] = {1.0, 0.25, 4.0, 1.0};
static const unsigned char fz_pattern[8] = {0xa5, 0xff, 0x00, 0x7f, 0x5a, 0xc3, 0x80, 0x01};

static const char *const role_names[FZ_ROLE_COUNT] = {
    "x", "y", "dy", "dx", "gamma", "beta", "dgamma", "dbeta",
    "running_mean", "running_var", "save_mean", "save_invstd"};

/* ---- the process-wide OpenCL objects --------------------------------------------------- */

#define NCTX 4
#define PLAN_CACHE 192

static struct {
    cl_device_id device;
    cl_context cl, foreign;            /* the plans' context, and another one */
    cl_command_queue own, foreign_queue; /* ours, for fills and read-backs */
    cl_command_queue queues[NCTX];
    clnorm_context *ctx[NCTX];
    size_t align; /* sub-buffer origins, bytes */
    int images;
    int legality, failed_events, verbose;
} G;

static struct {
    int used, ci;
    clnorm_desc desc;
    clnorm_plan *plan;
} plans[PLAN_CACHE];
static unsigned plan_next;

/* CLNORM_FUZZ_COMPILE_SECONDS: once plan creation has spent this long in compiles, inputs that
 * need a program not yet built in this run are skipped, so that a run from a cold cache still
 * fuzzes for most of its time. */
static double compile_budget = -1, compile_spent;
/* What the run did, printed at exit: a fuzzer that rejects everything would still pass. */
static struct {
    unsigned long bad_desc, calls, accepted, rejected, judged, unjudged, skipped, compiles;
} tally;

static void print_stats(void)
{
    fprintf(stderr,
            "fuzz_api: %lu invalid descriptors, %lu calls: %lu accepted (%lu checked against the "
            "reference, %lu too ill-conditioned to judge), %lu rejected; %lu inputs skipped by "
            "the compile budget; %lu compiles, %.0f s\n",
            tally.bad_desc, tally.calls, tally.accepted, tally.judged, tally.unjudged,
            tally.rejected, tally.skipped, tally.compiles, compile_spent);
}
static unsigned seen_keys[1024], nseen;

static int env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

static void die_setup(const char *what, cl_int err)
{
    fprintf(stderr, "fuzz_api: setup: %s failed (%d)\n", what, (int)err);
    exit(1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    G.legality = env_flag("CLNORM_FUZZ_LEGALITY");
    if (G.legality && strcmp(getenv("CLNORM_FUZZ_LEGALITY"), "2") == 0)
        G.legality = 2;
    G.failed_events = env_flag("CLNORM_FUZZ_FAILED_EVENTS");
    G.verbose = env_flag("CLNORM_FUZZ_VERBOSE");
    const char *budget = getenv("CLNORM_FUZZ_COMPILE_SECONDS");
    if (budget && *budget)
        compile_budget = atof(budget);

    cl_platform_id platforms[16];
    cl_uint np = 0;
    cl_int err = clGetPlatformIDs(16, platforms, &np);
    if (err != CL_SUCCESS || np == 0) {
        fprintf(stderr, "fuzz_api: no OpenCL platform, skipping\n");
        exit(77);
    }
    if (np > 16)
        np = 16;
    G.device = NULL;
    for (cl_uint p = 0; p < np && !G.device; ++p) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 1, &G.device, &nd) != CL_SUCCESS)
            G.device = NULL;
    }
    if (!G.device) {
        fprintf(stderr, "fuzz_api: no OpenCL device, skipping\n");
        exit(77);
    }
    G.cl = clCreateContext(NULL, 1, &G.device, NULL, NULL, &err);
    if (err != CL_SUCCESS)
        die_setup("clCreateContext", err);
    G.foreign = clCreateContext(NULL, 1, &G.device, NULL, NULL, &err);
    if (err != CL_SUCCESS)
        die_setup("clCreateContext (foreign)", err);
    G.own = clCreateCommandQueue(G.cl, G.device, 0, &err);
    if (err != CL_SUCCESS)
        die_setup("clCreateCommandQueue", err);
    G.foreign_queue = clCreateCommandQueue(G.foreign, G.device, 0, &err);
    if (err != CL_SUCCESS)
        die_setup("clCreateCommandQueue (foreign)", err);

    cl_command_queue_properties props = 0;
    clGetDeviceInfo(G.device, CL_DEVICE_QUEUE_PROPERTIES, sizeof props, &props, NULL);
    int ooo = (props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) != 0;
    cl_uint align_bits = 0;
    clGetDeviceInfo(G.device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits, &align_bits, NULL);
    G.align = align_bits >= 8 ? align_bits / 8 : 128;
    cl_bool images = CL_FALSE;
    clGetDeviceInfo(G.device, CL_DEVICE_IMAGE_SUPPORT, sizeof images, &images, NULL);
    G.images = images == CL_TRUE;

    /* CLNORM_DEVICE_CLASS is read when a context is made: set it around the GPU-shape ones. */
    const char *saved = getenv("CLNORM_DEVICE_CLASS");
    char *saved_copy = saved ? strdup(saved) : NULL;
    for (int i = 0; i < NCTX; ++i) {
        int want_ooo = (i == FZ_CTX_OUT_OF_ORDER || i == FZ_CTX_GPU_SHAPES_OOO) && ooo;
        int gpu = i == FZ_CTX_GPU_SHAPES || i == FZ_CTX_GPU_SHAPES_OOO;
        G.queues[i] = clCreateCommandQueue(G.cl, G.device,
                                           want_ooo ? CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE : 0,
                                           &err);
        if (err != CL_SUCCESS)
            die_setup("clCreateCommandQueue (library)", err);
        setenv("CLNORM_DEVICE_CLASS", gpu ? "gpu" : "cpu", 1);
        clnorm_status st = clnorm_context_create_from_queue(G.queues[i], &G.ctx[i]);
        if (st != CLNORM_SUCCESS) {
            fprintf(stderr, "fuzz_api: clnorm_context_create_from_queue: %s: %s\n",
                    clnorm_status_string(st), clnorm_context_last_error(NULL));
            exit(1);
        }
    }
    if (saved_copy)
        setenv("CLNORM_DEVICE_CLASS", saved_copy, 1);
    else
        unsetenv("CLNORM_DEVICE_CLASS");
    free(saved_copy);
    atexit(print_stats);
    fprintf(stderr, "fuzz_api: legality generators %s, failed events %s\n",
            G.legality == 2 ? "on (either status)" : G.legality ? "on" : "off",
            G.failed_events ? "on" : "off");
    return 0;
}

/* ---- decoding ------------------------------------------------------------------------- */

typedef struct fcall {
    int backward, ci, no_done;
    clnorm_desc desc;
    clnorm_mode mode;
    unsigned roles, roles2;
    unsigned buf[FZ_ROLE_COUNT];
    unsigned wait, entry[4];
    uint64_t seed;
    unsigned fill;
} fcall;

static unsigned byte_at(const uint8_t *data, size_t size, size_t i)
{
    return i < size ? data[i] : 0;
}

static size_t dim(unsigned b, unsigned mod)
{
    return b >= FZ_HUGE ? fz_huge[b - FZ_HUGE] : b % mod;
}

/* An enum byte: below `slots - 1` (mod slots) one of the `count` values; else unknown ones,
 * past the last value or negative (fuzz_input.h). */
static int enum_value(unsigned b, unsigned slots, unsigned count)
{
    if (b % slots < slots - 1)
        return (int)(b % slots % count);
    return b & 0x10 ? -1 - (int)((b >> 5) & 3) : (int)count + (int)((b >> 5) & 7);
}

static void decode(const uint8_t *data, size_t size, fcall *f)
{
    memset(f, 0, sizeof *f);
    unsigned op = byte_at(data, size, FZ_OP);
    f->backward = op & 1;
    f->ci = (op >> 1) & 3;
    f->no_done = (op >> 3) & 1;
    /* memset first: the cache compares descriptors byte for byte, padding included */
    memset(&f->desc, 0, sizeof f->desc);
    f->desc.kind = (clnorm_kind)enum_value(byte_at(data, size, FZ_KIND), 16, 5);
    f->desc.layout = (clnorm_layout)enum_value(byte_at(data, size, FZ_LAYOUT), 8, 2);
    /* the floating-point types, and unknown values; integer storage (forward only, 1-byte
     * elements) is test_imaging's, so its values are stepped over */
    int dtype = enum_value(byte_at(data, size, FZ_DTYPE), 8, 3);
    f->desc.dtype = (clnorm_dtype)(dtype == CLNORM_U8 || dtype == CLNORM_U16 ? dtype + 2 : dtype);
    f->mode = (clnorm_mode)enum_value(byte_at(data, size, FZ_MODE), 8, 2);
    f->desc.n = dim(byte_at(data, size, FZ_N), 10);
    f->desc.c = dim(byte_at(data, size, FZ_C), 17);
    f->desc.d = dim(byte_at(data, size, FZ_D), 13);
    unsigned gb = byte_at(data, size, FZ_GROUPS);
    f->desc.groups = gb >= FZ_HUGE ? dim(gb, 17) : fz_groups(f->desc.c, gb);
    f->desc.eps = fz_eps[byte_at(data, size, FZ_EPS) % 32];
    f->desc.momentum = fz_momentum[byte_at(data, size, FZ_MOMENTUM) % 32];
    unsigned ab = byte_at(data, size, FZ_ACTIVATION);
    f->desc.activation = (clnorm_activation)enum_value(ab & 7, 8, 6);
    f->desc.activation_alpha = fz_alpha[(ab >> 3) & 7];
    f->roles = byte_at(data, size, FZ_ROLES);
    f->roles2 = byte_at(data, size, FZ_ROLES2);
    for (int r = 0; r < FZ_ROLE_COUNT; ++r)
        f->buf[r] = byte_at(data, size, FZ_BUF + (size_t)r);
    f->wait = byte_at(data, size, FZ_WAIT);
    for (int i = 0; i < 4; ++i)
        f->entry[i] = byte_at(data, size, FZ_WAIT_ENTRY + (size_t)i) % 8;
    for (int i = 0; i < 8; ++i)
        f->seed |= (uint64_t)byte_at(data, size, FZ_SEED + (size_t)i) << (8 * i);
    f->fill = byte_at(data, size, FZ_FILL);
}

/* ---- reporting ------------------------------------------------------------------------ */

static char call_text[2048];

static void describe(const fcall *f)
{
    const clnorm_desc *d = &f->desc;
    int n = snprintf(call_text, sizeof call_text,
                     "%s ctx=%d kind=%d layout=%d dtype=%d mode=%d n=%zu c=%zu d=%zu groups=%zu "
                     "eps=%g momentum=%g activation=%d alpha=%g roles=0x%02x roles2=0x%02x "
                     "done=%s wait=0x%02x entries=%u,%u,%u,%u seed=0x%016llx fill=0x%02x bufs=",
                     f->backward ? "backward" : "forward", f->ci, (int)d->kind, (int)d->layout,
                     (int)d->dtype, (int)f->mode, d->n, d->c, d->d, d->groups, (double)d->eps,
                     (double)d->momentum, (int)d->activation, (double)d->activation_alpha,
                     f->roles, f->roles2, f->no_done ? "NULL" : "&done",
                     f->wait, f->entry[0], f->entry[1], f->entry[2], f->entry[3],
                     (unsigned long long)f->seed, f->fill);
    for (int r = 0; r < FZ_ROLE_COUNT && n > 0 && (size_t)n < sizeof call_text; ++r)
        n += snprintf(call_text + n, sizeof call_text - (size_t)n, "%02x%s", f->buf[r],
                      r + 1 < FZ_ROLE_COUNT ? "," : "");
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "\nfuzz_api: VIOLATION: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nfuzz_api: call: %s\n", call_text);
    abort();
}

static void cl_check(cl_int err, const char *what)
{
    if (err != CL_SUCCESS) {
        fprintf(stderr, "fuzz_api: harness: %s failed (%d)\ncall: %s\n", what, (int)err,
                call_text);
        abort();
    }
}

/* ---- the descriptor ------------------------------------------------------------------- */

static int desc_valid(const clnorm_desc *d)
{
    if ((unsigned)d->kind > CLNORM_RMS || (unsigned)d->layout > CLNORM_NHWC ||
        (unsigned)d->dtype > CLNORM_BF16)
        return 0;
    if (d->c == 0 || d->d == 0)
        return 0;
    if (!isfinite(d->eps) || d->eps < 0.0f)
        return 0;
    if (!(d->momentum >= 0.0f && d->momentum <= 1.0f))
        return 0;
    if ((unsigned)d->activation > CLNORM_ACTIVATION_GELU_TANH || !isfinite(d->activation_alpha))
        return 0;
    if (d->kind == CLNORM_GROUP && (d->groups == 0 || d->c % d->groups != 0))
        return 0;
    size_t cd, ncd;
    if (__builtin_mul_overflow(d->c, d->d, &cd) || __builtin_mul_overflow(cd, d->n, &ncd) ||
        ncd > SIZE_MAX / 4)
        return 0;
    return 1;
}

static int desc_same(const clnorm_desc *a, const clnorm_desc *b)
{
    return memcmp(a, b, sizeof *a) == 0;
}

/* Which program a plan needs, as far as the options clnorm compiles with depend on the
 * descriptor of these small shapes (src/plan.c): device class, type, kind, apply mode and the
 * narrow channels-last width. Only for the compile budget: a wrong guess costs time, not
 * correctness. */
static unsigned program_key(int ci, const clnorm_desc *d)
{
    int gpu = ci == FZ_CTX_GPU_SHAPES || ci == FZ_CTX_GPU_SHAPES_OOO;
    int per_sample = d->kind == CLNORM_LAYER || d->kind == CLNORM_RMS;
    unsigned apply = per_sample ? 2 : d->layout == CLNORM_NHWC && d->d > 1 && d->c > 1 ? 1 : 0;
    unsigned narrow = !gpu && apply == 1 && d->c < 8 ? (unsigned)d->c : 0;
    return (unsigned)gpu | (unsigned)d->dtype << 1 | (unsigned)d->kind << 3 | apply << 6 |
           narrow << 8;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}


/* The cached plan for (ctx, desc), made on first use; NULL when the compile budget is spent. */
static clnorm_plan *plan_get(int ci, const clnorm_desc *d)
{
    for (unsigned i = 0; i < PLAN_CACHE; ++i)
        if (plans[i].used && plans[i].ci == ci && desc_same(&plans[i].desc, d))
            return plans[i].plan;
    unsigned key = program_key(ci, d);
    int seen = d->n == 0; /* no program */
    for (unsigned i = 0; i < nseen && !seen; ++i)
        seen = seen_keys[i] == key;
    if (!seen && compile_budget >= 0 && compile_spent >= compile_budget) {
        if (G.verbose)
            fprintf(stderr, "fuzz_api: compile budget spent: skipping %s\n", call_text);
        tally.skipped++;
        return NULL;
    }
    clnorm_context *ctx = G.ctx[ci];
    clnorm_plan *plan = (clnorm_plan *)&plan; /* must come back NULL on failure */
    double t0 = now();
    clnorm_status st = clnorm_plan_create(ctx, d, &plan);
    double took = now() - t0;
    if (took > 0.5) {
        compile_spent += took;
        tally.compiles++;
    }
    if (!seen && nseen < sizeof seen_keys / sizeof seen_keys[0])
        seen_keys[nseen++] = key;
    if (st != CLNORM_SUCCESS)
        fail("plan_create of a valid descriptor: %s: %s", clnorm_status_string(st),
             clnorm_context_last_error(ctx));
    if (!plan)
        fail("plan_create returned SUCCESS and a NULL plan");
    unsigned slot = plan_next++ % PLAN_CACHE;
    if (plans[slot].used)
        clnorm_plan_release(plans[slot].plan);
    plans[slot].used = 1;
    plans[slot].ci = ci;
    plans[slot].desc = *d;
    plans[slot].plan = plan;
    return plan;
}

static void check_invalid_plan(int ci, const clnorm_desc *d)
{
    clnorm_context *ctx = G.ctx[ci];
    clnorm_plan *plan = (clnorm_plan *)&plan;
    clnorm_status st = clnorm_plan_create(ctx, d, &plan);
    if (st != CLNORM_ERROR_INVALID_ARGUMENT)
        fail("plan_create of an invalid descriptor returned %s", clnorm_status_string(st));
    if (plan)
        fail("rejected plan_create left *out non-NULL");
    if (!*clnorm_context_last_error(ctx))
        fail("rejected plan_create left last_error empty");
    /* And a call on the plan that is not: rejected, the message kept for no context. (*done
     * is left alone there, as OpenCL leaves its event arguments on errors.) */
    clnorm_buffers b;
    memset(&b, 0, sizeof b);
    st = clnorm_forward(NULL, CLNORM_TRAINING, &b, 0, NULL, NULL);
    if (st != CLNORM_ERROR_INVALID_ARGUMENT || !*clnorm_context_last_error(NULL))
        fail("forward on a NULL plan: %s, last_error(NULL) \"%s\"", clnorm_status_string(st),
             clnorm_context_last_error(NULL));
}

/* ---- random data (tests/harness.c's splitmix64 and Box-Muller) ------------------------- */

typedef struct rng {
    uint64_t state;
} rng;

static double uniform(rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static double normal(rng *r)
{
    double u = uniform(r), v = uniform(r);
    return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

/* ---- one call ------------------------------------------------------------------------- */

enum { EXPECT_OK, EXPECT_EITHER, EXPECT_INVALID };

typedef struct role {
    int given;    /* a memory object goes into bufs */
    int alias;    /* the role whose object it is: itself, or x / dy in place */
    int used;     /* this call reads or writes it */
    int reads, writes; /* nominal direction in this pass */
    int written;  /* an accepted call overwrites its first `need` bytes */
    int bystander; /* the other pass's buffer: never touched */
    size_t need, esize;
    const void *data; /* initial contents (inputs), or NULL: the pattern */
    size_t data_bytes;
} role;

typedef struct store {
    cl_mem mem, parent; /* parent: a sub-buffer's */
    cl_command_queue q;
    int image, foreign, object;
    cl_mem_flags flags;
    size_t size, offset, total;
    unsigned char *before, *after;
    void *host;
} store;

typedef struct run {
    fcall f;
    clnorm_desc d;
    int valid_mode;
    size_t elements, params, groups, esize;
    int use_running, rms, per_sample;
    role roles[FZ_ROLE_COUNT];
    store stores[FZ_ROLE_COUNT];
    int expect;
    char reason[256];
    /* data */
    float *xf, *dyf, *gamma, *beta, *rm, *rv, *smean, *sinv;
    unsigned char *xs, *dys;
    double *xd, *dyd;
    int judge;
    int illegal; /* an object or event the contract forbids was generated */
} run;

static void expect(run *r, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void expect(run *r, int level, const char *fmt, ...)
{
    /* The strictest rule decides; its first reason is kept for the message. */
    if (level < r->expect || (level == r->expect && r->reason[0]))
        return;
    r->expect = level;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
}

/* CLNORM_FUZZ_LEGALITY=2: illegal objects and events are generated, but either status is
 * accepted for them (a run that looks only for crashes and for writes by rejected calls). */
static int legality_level(int level)
{
    return G.legality == 2 && level == EXPECT_INVALID ? EXPECT_EITHER : level;
}

static size_t mul_or_huge(size_t a, size_t b)
{
    size_t p;
    return __builtin_mul_overflow(a, b, &p) ? SIZE_MAX : p;
}

#define HUGE_BYTES ((size_t)1 << 20)

/* Which roles the call gets, what each needs and what the call does with it. */
static void plan_roles(run *r)
{
    const fcall *f = &r->f;
    const clnorm_desc *d = &r->d;
    role *ro = r->roles;
    for (int i = 0; i < FZ_ROLE_COUNT; ++i) {
        ro[i].alias = i;
        ro[i].esize = 4;
    }
    ro[FZ_X].esize = ro[FZ_Y].esize = ro[FZ_DY].esize = ro[FZ_DX].esize = r->esize;
    size_t data = mul_or_huge(r->elements, r->esize);
    size_t params = mul_or_huge(r->params, 4), stats = mul_or_huge(r->groups, 4);
    size_t chans = mul_or_huge(d->c, 4);
    size_t need[FZ_ROLE_COUNT] = {data, data, data, data, params, params, params, params,
                                  chans, chans, stats, stats};
    for (int i = 0; i < FZ_ROLE_COUNT; ++i)
        ro[i].need = need[i];

    int has_running_kind = d->kind == CLNORM_BATCH || d->kind == CLNORM_INSTANCE;
    int running = (f->roles & FZ_R_RUNNING) != 0;
    int save = (f->roles & FZ_R_SAVE) != 0;
    ro[FZ_X].given = !(f->roles2 & FZ_R2_NO_X);
    ro[FZ_GAMMA].given = (f->roles & FZ_R_GAMMA) != 0;
    ro[FZ_RUNNING_MEAN].given = running;
    ro[FZ_RUNNING_VAR].given = running && !(f->roles2 & FZ_R2_NO_RUNNING_VAR);
    ro[FZ_SAVE_MEAN].given = save && !(f->roles2 & FZ_R2_NO_SAVE_MEAN);
    ro[FZ_SAVE_INVSTD].given = save && !(f->roles2 & FZ_R2_NO_SAVE_INVSTD);
    int train = f->mode == CLNORM_TRAINING || !r->valid_mode;
    int some = r->elements > 0;
    r->use_running = running && f->mode == CLNORM_INFERENCE;
    if (!f->backward) {
        ro[FZ_Y].given = !(f->roles2 & FZ_R2_NO_Y);
        ro[FZ_BETA].given = (f->roles & FZ_R_BETA) != 0;
        if ((f->roles & FZ_R_IN_PLACE) && ro[FZ_X].given && ro[FZ_Y].given)
            ro[FZ_Y].alias = FZ_X;
        ro[FZ_X].reads = ro[FZ_GAMMA].reads = ro[FZ_BETA].reads = 1;
        ro[FZ_Y].writes = ro[FZ_SAVE_MEAN].writes = ro[FZ_SAVE_INVSTD].writes = 1;
        for (int i = FZ_RUNNING_MEAN; i <= FZ_RUNNING_VAR; ++i) {
            ro[i].reads = 1;
            ro[i].writes = train;
        }
        int fx[] = {FZ_X, FZ_Y, FZ_GAMMA, FZ_BETA};
        for (size_t i = 0; i < 4; ++i)
            ro[fx[i]].used = some;
        ro[FZ_RUNNING_MEAN].used = ro[FZ_RUNNING_VAR].used = some && has_running_kind;
        ro[FZ_SAVE_MEAN].used = some && !r->use_running && !r->rms;
        ro[FZ_SAVE_INVSTD].used = some && !r->use_running;
        ro[FZ_Y].written = some;
        ro[FZ_SAVE_MEAN].written = ro[FZ_SAVE_MEAN].used;
        ro[FZ_SAVE_INVSTD].written = ro[FZ_SAVE_INVSTD].used;
        ro[FZ_RUNNING_MEAN].written = ro[FZ_RUNNING_VAR].written =
            some && has_running_kind && f->mode == CLNORM_TRAINING;
        if (f->roles2 & FZ_R2_BYSTANDERS) {
            int by[] = {FZ_DY, FZ_DX, FZ_DGAMMA, FZ_DBETA};
            for (size_t i = 0; i < 4; ++i)
                ro[by[i]].given = ro[by[i]].bystander = 1;
        }
    } else {
        ro[FZ_DY].given = !(f->roles2 & FZ_R2_NO_Y);
        ro[FZ_DX].given = (f->roles & FZ_R_DX) != 0;
        ro[FZ_DGAMMA].given = (f->roles & FZ_R_DGAMMA) != 0;
        ro[FZ_DBETA].given = (f->roles & FZ_R_DBETA) != 0;
        if ((f->roles & FZ_R_IN_PLACE) && ro[FZ_DX].given && ro[FZ_DY].given)
            ro[FZ_DX].alias = FZ_DY;
        int outputs = ro[FZ_DX].given || ro[FZ_DGAMMA].given || ro[FZ_DBETA].given;
        int go = some && outputs;
        ro[FZ_X].reads = ro[FZ_DY].reads = ro[FZ_GAMMA].reads = 1;
        ro[FZ_RUNNING_MEAN].reads = ro[FZ_RUNNING_VAR].reads = 1;
        ro[FZ_SAVE_MEAN].reads = ro[FZ_SAVE_INVSTD].reads = 1;
        ro[FZ_DX].writes = ro[FZ_DGAMMA].writes = ro[FZ_DBETA].writes = 1;
        ro[FZ_X].used = ro[FZ_DY].used = ro[FZ_GAMMA].used = go;
        ro[FZ_RUNNING_MEAN].used = ro[FZ_RUNNING_VAR].used = go && r->use_running &&
                                                              has_running_kind;
        ro[FZ_SAVE_MEAN].used = go && !r->use_running && !r->rms;
        ro[FZ_SAVE_INVSTD].used = go && !r->use_running;
        for (int i = FZ_DX; i <= FZ_DBETA; ++i)
            if (i != FZ_BETA)
                ro[i].used = ro[i].written = go && ro[i].given;
        if (f->roles2 & FZ_R2_BYSTANDERS) {
            ro[FZ_Y].given = ro[FZ_Y].bystander = 1;
            ro[FZ_BETA].given = ro[FZ_BETA].bystander = 1;
        }
    }
    /* Roles too large to make (n == 0 over enormous c or d) stay NULL. */
    for (int i = 0; i < FZ_ROLE_COUNT; ++i)
        if (ro[i].given && ro[i].need > HUGE_BYTES)
            ro[i].given = 0;
    for (int i = 0; i < FZ_ROLE_COUNT; ++i) {
        ro[i].used &= ro[i].given;
        ro[i].written &= ro[i].given;
    }
    if (ro[FZ_Y].alias == FZ_X && !ro[FZ_X].given)
        ro[FZ_Y].alias = FZ_Y;
    if (ro[FZ_DX].alias == FZ_DY && !ro[FZ_DY].given)
        ro[FZ_DX].alias = FZ_DX;
}

/* The memory object's flags and kind for role i, as the input asks and the switches allow. */
static void choose_object(run *r, int i, cl_mem_flags *flags, int *object, int *host_ptr,
                          size_t *size)
{
    const role *ro = &r->roles[i];
    unsigned b = r->f.buf[i];
    int reads = ro->reads, writes = ro->writes;
    /* An object shared by two roles (in place) does both. */
    for (int j = 0; j < FZ_ROLE_COUNT; ++j)
        if (j != i && r->roles[j].given && r->roles[j].alias == i) {
            reads |= r->roles[j].reads;
            writes |= r->roles[j].writes;
        }
    int fl = FZ_B_FLAGS(b), obj = FZ_B_OBJECT(b);
    if (!G.legality) {
        if (fl == FZ_FLAGS_READ_ONLY || fl == FZ_FLAGS_WRITE_ONLY)
            fl = FZ_FLAGS_LEAST;
        if (obj == FZ_OBJ_FOREIGN)
            obj = FZ_OBJ_BUFFER;
        if (obj == FZ_OBJ_IMAGE)
            obj = FZ_OBJ_SUB_BUFFER;
    }
    if (obj == FZ_OBJ_IMAGE && !G.images)
        obj = FZ_OBJ_BUFFER;
    if (ro->bystander) {
        fl = FZ_FLAGS_RW;
        obj = FZ_OBJ_BUFFER;
    }
    switch (fl) {
    case FZ_FLAGS_LEAST:
        *flags = reads && writes ? CL_MEM_READ_WRITE
                 : reads         ? CL_MEM_READ_ONLY
                                 : CL_MEM_WRITE_ONLY;
        break;
    case FZ_FLAGS_READ_ONLY: *flags = CL_MEM_READ_ONLY; break;
    case FZ_FLAGS_WRITE_ONLY: *flags = CL_MEM_WRITE_ONLY; break;
    default: *flags = CL_MEM_READ_WRITE; break;
    }
    *object = obj;
    *host_ptr = (b & FZ_B_HOST_PTR) && obj != FZ_OBJ_IMAGE;
    size_t need = ro->need, s = need;
    switch (ro->bystander ? FZ_SIZE_EXACT : FZ_B_SIZE(b)) {
    case FZ_SIZE_PLUS4: s = need + 4; break;
    case FZ_SIZE_PLUS1: s = need + 1; break;
    case FZ_SIZE_PLUS64: s = need + 64; break;
    case FZ_SIZE_MINUS1: s = need > 1 ? need - 1 : 1; break;
    case FZ_SIZE_MINUS_ELEMENT: s = need > ro->esize ? need - ro->esize : 1; break;
    case FZ_SIZE_HALF: s = need / 2 ? need / 2 : 1; break;
    default: break;
    }
    *size = s ? s : 4; /* OpenCL has no empty buffers */

    /* What the contract says of it. */
    const char *name = role_names[i];
    int level = ro->used ? EXPECT_INVALID : EXPECT_EITHER;
    if (ro->bystander) {
        expect(r, EXPECT_EITHER, "bufs.%s given to the other pass", name);
        return;
    }
    if (*size < need)
        expect(r, r->elements > 0 ? level : EXPECT_EITHER, "bufs.%s holds %zu bytes of %zu",
               name, *size, need);
    int illegal = legality_level(level);
    r->illegal |= (reads && *flags == CL_MEM_WRITE_ONLY) ||
                  (writes && *flags == CL_MEM_READ_ONLY) || obj == FZ_OBJ_FOREIGN ||
                  obj == FZ_OBJ_IMAGE;
    if (reads && *flags == CL_MEM_WRITE_ONLY)
        expect(r, illegal, "bufs.%s is read but CL_MEM_WRITE_ONLY", name);
    if (writes && *flags == CL_MEM_READ_ONLY)
        expect(r, illegal, "bufs.%s is written but CL_MEM_READ_ONLY", name);
    if (obj == FZ_OBJ_FOREIGN)
        expect(r, illegal, "bufs.%s is of another cl_context", name);
    if (obj == FZ_OBJ_IMAGE)
        expect(r, illegal, "bufs.%s is an image", name);
}

static void make_store(run *r, int i)
{
    store *s = &r->stores[i];
    role *ro = &r->roles[i];
    int host_ptr;
    choose_object(r, i, &s->flags, &s->object, &host_ptr, &s->size);
    cl_int err;
    cl_context cl = s->object == FZ_OBJ_FOREIGN ? G.foreign : G.cl;
    s->foreign = s->object == FZ_OBJ_FOREIGN;
    s->q = s->foreign ? G.foreign_queue : G.own;
    s->offset = 0;
    s->total = s->size;
    if (s->object == FZ_OBJ_IMAGE) {
        cl_image_format fmt = {CL_R, CL_UNSIGNED_INT8};
        cl_image_desc idesc;
        memset(&idesc, 0, sizeof idesc);
        idesc.image_type = CL_MEM_OBJECT_IMAGE1D;
        idesc.image_width = s->size;
        s->mem = clCreateImage(G.cl, s->flags, &fmt, &idesc, NULL, &err);
        if (err == CL_SUCCESS) {
            s->image = 1;
        } else {
            s->object = FZ_OBJ_BUFFER; /* too wide for a 1D image here: a buffer instead */
            s->mem = NULL;
        }
    }
    if (!s->mem && s->object == FZ_OBJ_SUB_BUFFER) {
        s->offset = G.align;
        s->total = G.align + s->size + 64;
        if (host_ptr)
            s->host = aligned_alloc(4096, (s->total + 4095) / 4096 * 4096);
        s->parent = clCreateBuffer(cl, CL_MEM_READ_WRITE | (host_ptr ? CL_MEM_USE_HOST_PTR : 0),
                                   s->total, s->host, &err);
        cl_check(err, "clCreateBuffer (parent)");
        cl_buffer_region region = {s->offset, s->size};
        s->mem = clCreateSubBuffer(s->parent, s->flags, CL_BUFFER_CREATE_TYPE_REGION, &region,
                                   &err);
        cl_check(err, "clCreateSubBuffer");
    }
    if (!s->mem) {
        if (host_ptr)
            s->host = aligned_alloc(4096, (s->total + 4095) / 4096 * 4096);
        s->mem = clCreateBuffer(cl, s->flags | (host_ptr ? CL_MEM_USE_HOST_PTR : 0), s->size,
                                s->host, &err);
        cl_check(err, "clCreateBuffer");
    }
    s->before = malloc(s->total);
    s->after = malloc(s->total);
    memset(s->before, fz_pattern[FZ_F_PATTERN(r->f.fill)] ^ (unsigned char)(i * 0x11), s->total);
    if (ro->data) {
        size_t n = ro->data_bytes < s->size ? ro->data_bytes : s->size;
        memcpy(s->before + s->offset, ro->data, n);
    }
    if (s->image) {
        size_t origin[3] = {0, 0, 0}, region[3] = {s->size, 1, 1};
        err = clEnqueueWriteImage(s->q, s->mem, CL_TRUE, origin, region, 0, 0, s->before, 0,
                                  NULL, NULL);
    } else {
        err = clEnqueueWriteBuffer(s->q, s->parent ? s->parent : s->mem, CL_TRUE, 0, s->total,
                                   s->before, 0, NULL, NULL);
    }
    cl_check(err, "write");
}

static void read_store(store *s)
{
    cl_int err;
    if (s->image) {
        size_t origin[3] = {0, 0, 0}, region[3] = {s->size, 1, 1};
        err = clEnqueueReadImage(s->q, s->mem, CL_TRUE, origin, region, 0, 0, s->after, 0, NULL,
                                 NULL);
    } else {
        err = clEnqueueReadBuffer(s->q, s->parent ? s->parent : s->mem, CL_TRUE, 0, s->total,
                                  s->after, 0, NULL, NULL);
    }
    cl_check(err, "read");
}

static void free_store(store *s)
{
    if (s->mem)
        clReleaseMemObject(s->mem);
    if (s->parent)
        clReleaseMemObject(s->parent);
    free(s->host);
    free(s->before);
    free(s->after);
}

/* ---- inputs and the reference --------------------------------------------------------- */

/* Per statistics group: the largest |x| and 1/sqrt(var + eps) of the batch's own statistics.
 * Returns 0 when a group is too ill-conditioned for float arithmetic to be judged. */
static int conditioned(const run *r, const double *mean, const double *inv)
{
    const clnorm_desc *d = &r->d;
    double *gmax = calloc(r->groups + 1, sizeof *gmax);
    for (size_t n = 0; n < d->n; ++n)
        for (size_t c = 0; c < d->c; ++c)
            for (size_t s = 0; s < d->d; ++s) {
                size_t g = ref_group(d, n, c, s);
                double v = fabs(r->xd[ref_offset(d, n, c, s)]);
                if (v > gmax[g])
                    gmax[g] = v;
            }
    int ok = 1;
    for (size_t g = 0; g < r->groups && ok; ++g)
        ok = isfinite(inv[g]) && isfinite(mean[g]) && (gmax[g] + fabs(mean[g])) * inv[g] <= 1e3;
    free(gmax);
    return ok;
}

static void make_data(run *r)
{
    const clnorm_desc *d = &r->d;
    size_t E = r->elements, P = r->params, C = d->c, Gs = r->groups;
    r->xf = calloc(E + 1, sizeof(float));
    r->dyf = calloc(E + 1, sizeof(float));
    r->xs = calloc(E + 1, 4);
    r->dys = calloc(E + 1, 4);
    r->xd = calloc(E + 1, sizeof(double));
    r->dyd = calloc(E + 1, sizeof(double));
    r->gamma = calloc(P + 1, sizeof(float));
    r->beta = calloc(P + 1, sizeof(float));
    r->rm = calloc(C + 1, sizeof(float));
    r->rv = calloc(C + 1, sizeof(float));
    r->smean = calloc(Gs + 1, sizeof(float));
    r->sinv = calloc(Gs + 1, sizeof(float));
    double offset = fz_offset[FZ_F_OFFSET(r->f.fill)], spread = fz_spread[FZ_F_SPREAD(r->f.fill)];
    double *mean = calloc(Gs + 1, sizeof(double)), *inv = calloc(Gs + 1, sizeof(double));
    double *y = calloc(E + 1, sizeof(double));
    rng g = {r->f.seed};
    r->judge = 0;
    for (int attempt = 0; attempt < 16 && !r->judge; ++attempt) {
        /* Half the draws from the input's fill; then centred data, which a short group in a
         * coarse type (bf16 around 10 is spaced 1/16) needs to have any spread at all. */
        double o = attempt < 8 ? offset : 0.0, sp = attempt < 8 ? spread : 1.0;
        for (size_t i = 0; i < E; ++i) {
            r->xf[i] = (float)(o + sp * normal(&g));
            r->dyf[i] = (float)normal(&g);
        }
        ref_store(d->dtype, r->xf, r->xs, E);
        ref_load(d->dtype, r->xs, r->xd, E);
        if (!r->valid_mode || E == 0)
            break;
        /* The batch's own statistics: judged for every call that normalizes with them, and the
         * save_* a backward call is given. */
        ref_inputs in = {r->xd, NULL, NULL, NULL, NULL, NULL};
        ref_outputs out = {y, mean, inv, NULL, NULL, NULL, NULL, NULL};
        if (ref_forward(d, CLNORM_TRAINING, &in, &out) != 0) {
            r->judge = r->use_running; /* single elements: only running statistics work */
            break;
        }
        r->judge = r->use_running || conditioned(r, mean, inv);
    }
    for (size_t i = 0; i < P; ++i) {
        double gm = 0.5 + uniform(&g);
        r->gamma[i] = (float)((r->f.fill & FZ_F_SIGNED_GAMMA) && uniform(&g) < 0.5 ? -gm : gm);
        r->beta[i] = (float)normal(&g);
    }
    for (size_t c = 0; c < C; ++c) {
        r->rm[c] = (float)(offset + 0.1 * spread * normal(&g));
        r->rv[c] = (float)(spread * spread * (0.5 + uniform(&g)));
    }
    ref_store(d->dtype, r->dyf, r->dys, E);
    ref_load(d->dtype, r->dys, r->dyd, E);
    for (size_t k = 0; k < Gs; ++k) {
        r->smean[k] = (float)mean[k];
        r->sinv[k] = (float)inv[k];
    }
    free(mean);
    free(inv);
    free(y);

    role *ro = r->roles;
    ro[FZ_X].data = r->xs;
    ro[FZ_X].data_bytes = E * r->esize;
    ro[FZ_GAMMA].data = r->gamma;
    ro[FZ_GAMMA].data_bytes = P * 4;
    ro[FZ_RUNNING_MEAN].data = r->rm;
    ro[FZ_RUNNING_MEAN].data_bytes = C * 4;
    ro[FZ_RUNNING_VAR].data = r->rv;
    ro[FZ_RUNNING_VAR].data_bytes = C * 4;
    if (!r->f.backward) {
        ro[FZ_BETA].data = r->beta;
        ro[FZ_BETA].data_bytes = P * 4;
    } else {
        ro[FZ_DY].data = r->dys;
        ro[FZ_DY].data_bytes = E * r->esize;
        ro[FZ_SAVE_MEAN].data = r->smean;
        ro[FZ_SAVE_MEAN].data_bytes = Gs * 4;
        ro[FZ_SAVE_INVSTD].data = r->sinv;
        ro[FZ_SAVE_INVSTD].data_bytes = Gs * 4;
    }
}

/* The bytes a role's store held after the call, at the role's start. */
static const unsigned char *result_bytes(const run *r, int i)
{
    const store *s = &r->stores[r->roles[i].alias];
    return s->after + s->offset;
}

static float result_float(const run *r, int i, size_t k)
{
    float v;
    memcpy(&v, result_bytes(r, i) + 4 * k, 4);
    return v;
}

/* The rounding of a stored value too small for the type's relative precision: half a step of
 * f16's subnormals (2^-24 apart); float's, and so bf16's, are below 1e-30. */
static double tiny_step(clnorm_dtype dtype)
{
    return dtype == CLNORM_F16 ? ldexp(1, -25) : 1e-30;
}

static int close_enough(double got, double want, double tol)
{
    return isnan(want) ? isnan(got) : fabs(got - want) <= tol;
}

static void check_forward_values(const run *r)
{
    const clnorm_desc *d = &r->d;
    size_t E = r->elements, Gs = r->groups, C = d->c;
    const role *ro = r->roles;
    double *want = calloc(E + 1, sizeof(double)), *scale = calloc(E + 1, sizeof(double));
    double *wm = calloc(Gs + 1, sizeof(double)), *wi = calloc(Gs + 1, sizeof(double));
    double *wrm = calloc(C + 1, sizeof(double)), *wrv = calloc(C + 1, sizeof(double));
    double *got = calloc(E + 1, sizeof(double)), *gmax = calloc(Gs + 1, sizeof(double));
    int running = ro[FZ_RUNNING_MEAN].given;
    ref_inputs in = {r->xd, ro[FZ_GAMMA].given ? r->gamma : NULL,
                     ro[FZ_BETA].given ? r->beta : NULL, running ? r->rm : NULL,
                     running ? r->rv : NULL, NULL};
    ref_outputs out = {want, wm, wi, wrm, wrv, NULL, NULL, scale};
    if (ref_forward(d, r->f.mode, &in, &out) != 0)
        fail("accepted a call the reference refuses (own statistics over single elements)");
    ref_load(d->dtype, result_bytes(r, FZ_Y), got, E);
    for (size_t n = 0; n < d->n; ++n)
        for (size_t c = 0; c < d->c; ++c)
            for (size_t s = 0; s < d->d; ++s) {
                size_t g = ref_group(d, n, c, s);
                double v = fabs(r->xd[ref_offset(d, n, c, s)]);
                if (v > gmax[g])
                    gmax[g] = v;
            }
    /* DESIGN.md section 7: 16 * 2^-23 * max|x| * invstd * |gamma|, plus y's rounding. */
    double factor = 16 * ldexp(1, -23), u = ref_unit_roundoff(d->dtype), tiny = tiny_step(d->dtype);
    for (size_t n = 0; n < d->n; ++n)
        for (size_t c = 0; c < d->c; ++c)
            for (size_t s = 0; s < d->d; ++s) {
                size_t i = ref_offset(d, n, c, s), g = ref_group(d, n, c, s);
                double mag = r->use_running ? fabs(r->rm[c]) : gmax[g];
                double tol = factor * (mag + fabs(r->xd[i])) * scale[i] +
                             (u + ldexp(1, -23)) * fabs(want[i]) + tiny;
                if (!close_enough(got[i], want[i], tol))
                    fail("y[%zu] (n=%zu c=%zu d=%zu) = %.9g, want %.9g (tolerance %.3g)", i, n, c,
                         s, got[i], want[i], tol);
            }
    for (size_t g = 0; g < Gs && !r->use_running; ++g) {
        double kappa = (gmax[g] + fabs(wm[g])) * wi[g];
        if (ro[FZ_SAVE_MEAN].written) {
            double v = result_float(r, FZ_SAVE_MEAN, g), tol = 2 * factor * gmax[g] + 1e-30;
            if (!close_enough(v, wm[g], tol))
                fail("save_mean[%zu] = %.9g, want %.9g (tolerance %.3g)", g, v, wm[g], tol);
        }
        if (ro[FZ_SAVE_INVSTD].written) {
            double v = result_float(r, FZ_SAVE_INVSTD, g);
            double tol = factor * (64 + 8 * kappa) * fabs(wi[g]) + 1e-30;
            if (!close_enough(v, wi[g], tol))
                fail("save_invstd[%zu] = %.9g, want %.9g (tolerance %.3g)", g, v, wi[g], tol);
        }
    }
    if (ro[FZ_RUNNING_MEAN].written) {
        /* Per channel: the largest |x| and |x| * sqrt(var) of the groups feeding it. */
        double *cmax = calloc(C + 1, sizeof(double)), *cvar = calloc(C + 1, sizeof(double));
        for (size_t n = 0; n < d->n; ++n)
            for (size_t c = 0; c < d->c; ++c) {
                size_t g = ref_group(d, n, c, 0);
                if (gmax[g] > cmax[c])
                    cmax[c] = gmax[g];
                double a = gmax[g] / wi[g];
                if (a > cvar[c])
                    cvar[c] = a;
            }
        double m = d->momentum;
        for (size_t c = 0; c < C; ++c) {
            double vm = result_float(r, FZ_RUNNING_MEAN, c);
            double vv = result_float(r, FZ_RUNNING_VAR, c);
            double tm = factor * (64 * fabs(wrm[c]) + 32 * m * cmax[c]) + 1e-30;
            double tv = factor * (64 * fabs(wrv[c]) + 64 * m * cvar[c]) + 1e-30;
            if (!close_enough(vm, wrm[c], tm))
                fail("running_mean[%zu] = %.9g, want %.9g (tolerance %.3g)", c, vm, wrm[c], tm);
            if (!close_enough(vv, wrv[c], tv))
                fail("running_var[%zu] = %.9g, want %.9g (tolerance %.3g)", c, vv, wrv[c], tv);
        }
        free(cmax);
        free(cvar);
    }
    free(want);
    free(scale);
    free(wm);
    free(wi);
    free(wrm);
    free(wrv);
    free(got);
    free(gmax);
}

static void check_backward_values(const run *r)
{
    const clnorm_desc *d = &r->d;
    size_t E = r->elements, Gs = r->groups, P = r->params;
    const role *ro = r->roles;
    int gam = ro[FZ_GAMMA].given, running = ro[FZ_RUNNING_MEAN].given;
    double *want = calloc(E + 1, sizeof(double)), *scale = calloc(E + 1, sizeof(double));
    double *wdg = calloc(P + 1, sizeof(double)), *wdb = calloc(P + 1, sizeof(double));
    double *mean = calloc(Gs + 1, sizeof(double)), *inv = calloc(Gs + 1, sizeof(double));
    double *y = calloc(E + 1, sizeof(double)), *got = calloc(E + 1, sizeof(double));
    double *gmax = calloc(Gs + 1, sizeof(double)), *agv = calloc(Gs + 1, sizeof(double));
    double *axh = calloc(Gs + 1, sizeof(double)), *cnt = calloc(Gs + 1, sizeof(double));
    double *tdg = calloc(P + 1, sizeof(double)), *tdb = calloc(P + 1, sizeof(double));
    ref_inputs in = {r->xd, gam ? r->gamma : NULL, NULL, running ? r->rm : NULL,
                     running ? r->rv : NULL, r->dyd};
    ref_outputs fo = {y, mean, inv, NULL, NULL, NULL, NULL, NULL};
    if (!r->use_running && ref_forward(d, CLNORM_TRAINING, &in, &fo) != 0)
        fail("accepted a backward call the reference refuses");
    ref_outputs bo = {want, NULL, NULL, NULL, NULL, wdg, wdb, scale};
    if (ref_backward(d, r->f.mode, &in, &bo) != 0)
        fail("accepted a backward call the reference refuses");
    /* Per element: the statistics used, x-hat, and the magnitudes the float error scales by:
     * kappa = (max|x| + |mean|) * invstd (how much x - mean cancels), the group's mean
     * |dy * gamma| and largest |x-hat|. */
    for (size_t n = 0; n < d->n; ++n)
        for (size_t c = 0; c < d->c; ++c)
            for (size_t s = 0; s < d->d; ++s) {
                size_t g = ref_group(d, n, c, s), i = ref_offset(d, n, c, s);
                double v = fabs(r->xd[i]);
                if (v > gmax[g])
                    gmax[g] = v;
            }
    double eps32 = ldexp(1, -23), u = ref_unit_roundoff(d->dtype), tiny = tiny_step(d->dtype);
    for (int pass = 0; pass < 2; ++pass)
        for (size_t n = 0; n < d->n; ++n)
            for (size_t c = 0; c < d->c; ++c)
                for (size_t s = 0; s < d->d; ++s) {
                    size_t g = ref_group(d, n, c, s), i = ref_offset(d, n, c, s);
                    size_t j = ref_param(d, n, c, s);
                    double m = r->use_running ? r->rm[c] : mean[g];
                    double iv = r->use_running ? 1.0 / sqrt((double)r->rv[c] + (double)d->eps)
                                               : inv[g];
                    double xh = (r->xd[i] - m) * iv;
                    double gv = r->dyd[i] * (gam ? r->gamma[j] : 1.0);
                    /* At least 1: with a large eps the terms' own rounding is what is left. */
                    double kappa = fmax((gmax[g] + fabs(m)) * iv, 1.0);
                    if (pass == 0) {
                        agv[g] += fabs(gv);
                        cnt[g] += 1;
                        if (fabs(xh) > axh[g])
                            axh[g] = fabs(xh);
                        tdg[j] += fabs(r->dyd[i]) * (kappa + fabs(xh));
                        tdb[j] += fabs(r->dyd[i]);
                        continue;
                    }
                    double a = agv[g] / cnt[g];
                    double tol;
                    if (r->use_running)
                        tol = 8 * eps32 * fabs(gv * iv);
                    else
                        tol = 64 * eps32 * kappa * iv * (fabs(gv) + a * (1 + fabs(xh) + axh[g]));
                    scale[i] = tol + (u + eps32) * fabs(want[i]) + tiny;
                }
    if (ro[FZ_DX].written) {
        ref_load(d->dtype, result_bytes(r, FZ_DX), got, E);
        for (size_t i = 0; i < E; ++i)
            if (!close_enough(got[i], want[i], scale[i]))
                fail("dx[%zu] = %.9g, want %.9g (tolerance %.3g)", i, got[i], want[i], scale[i]);
    }
    for (size_t j = 0; j < P; ++j) {
        if (ro[FZ_DGAMMA].written) {
            double v = result_float(r, FZ_DGAMMA, j), tol = 64 * eps32 * tdg[j] + 1e-30;
            if (!close_enough(v, wdg[j], tol))
                fail("dgamma[%zu] = %.9g, want %.9g (tolerance %.3g)", j, v, wdg[j], tol);
        }
        if (ro[FZ_DBETA].written) {
            double v = result_float(r, FZ_DBETA, j), tol = 64 * eps32 * tdb[j] + 1e-30;
            if (!close_enough(v, wdb[j], tol))
                fail("dbeta[%zu] = %.9g, want %.9g (tolerance %.3g)", j, v, wdb[j], tol);
        }
    }
    free(want);
    free(scale);
    free(wdg);
    free(wdb);
    free(mean);
    free(inv);
    free(y);
    free(got);
    free(gmax);
    free(agv);
    free(axh);
    free(cnt);
    free(tdg);
    free(tdb);
}

/* ---- wait lists ----------------------------------------------------------------------- */

typedef struct waits {
    cl_event ev[8];
    int kind[8];
    cl_uint num;
    const cl_event *list;
    int failed;
} waits;

static void make_waits(run *r, waits *w, cl_command_queue lib_queue)
{
    memset(w, 0, sizeof *w);
    unsigned count = r->f.wait & 7, how = (r->f.wait >> 3) & 3;
    cl_int err;
    for (unsigned i = 0; i < count; ++i) {
        int k = (int)r->f.entry[i % 4];
        if (!G.legality && (k == FZ_E_NULL || k == FZ_E_FOREIGN))
            k = FZ_E_COMPLETE;
        if (!G.failed_events && k == FZ_E_FAILED)
            k = FZ_E_PENDING;
        w->kind[i] = k;
        switch (k) {
        case FZ_E_PENDING:
            w->ev[i] = clCreateUserEvent(G.cl, &err);
            cl_check(err, "clCreateUserEvent");
            break;
        case FZ_E_MARKER:
            cl_check(clEnqueueMarkerWithWaitList(lib_queue, 0, NULL, &w->ev[i]), "marker");
            break;
        case FZ_E_NULL:
            w->ev[i] = NULL;
            expect(r, legality_level(EXPECT_INVALID), "wait[%u] is NULL", i);
            r->illegal = 1;
            break;
        case FZ_E_FOREIGN:
            w->ev[i] = clCreateUserEvent(G.foreign, &err);
            cl_check(err, "clCreateUserEvent (foreign)");
            cl_check(clSetUserEventStatus(w->ev[i], CL_COMPLETE), "clSetUserEventStatus");
            expect(r, legality_level(EXPECT_INVALID), "wait[%u] is an event of another cl_context",
                   i);
            r->illegal = 1;
            break;
        case FZ_E_FAILED:
            w->ev[i] = clCreateUserEvent(G.cl, &err);
            cl_check(err, "clCreateUserEvent");
            cl_check(clSetUserEventStatus(w->ev[i], -1), "clSetUserEventStatus (failed)");
            w->failed = 1;
            expect(r, EXPECT_EITHER, "wait[%u] has failed", i);
            break;
        default:
            w->ev[i] = clCreateUserEvent(G.cl, &err);
            cl_check(err, "clCreateUserEvent");
            cl_check(clSetUserEventStatus(w->ev[i], CL_COMPLETE), "clSetUserEventStatus");
            break;
        }
    }
    w->num = count;
    w->list = count ? w->ev : NULL;
    if (how == FZ_W_NULL_LIST && count) {
        w->list = NULL;
        expect(r, EXPECT_INVALID, "wait = NULL with num_wait = %u", count);
    } else if (how == FZ_W_LIST_WITH_ZERO && !count) {
        w->list = w->ev;
        expect(r, EXPECT_EITHER, "wait non-NULL with num_wait = 0");
    }
}

static void release_waits(waits *w)
{
    for (int i = 0; i < 8; ++i)
        if (w->ev[i]) {
            if (w->kind[i] == FZ_E_PENDING)
                clSetUserEventStatus(w->ev[i], CL_COMPLETE);
            clReleaseEvent(w->ev[i]);
        }
}

/* ---- the call and its checks ---------------------------------------------------------- */

static void check_bytes(const run *r, int rejected)
{
    /* Every byte of every object we made is unchanged, except the first `need` bytes of the
     * roles an accepted call writes. */
    for (int i = 0; i < FZ_ROLE_COUNT; ++i) {
        const store *s = &r->stores[i];
        if (!s->mem)
            continue;
        size_t lo = 0, hi = 0; /* the writable range, in the store's bytes */
        const char *writer = NULL;
        for (int j = 0; j < FZ_ROLE_COUNT && !rejected; ++j)
            if (r->roles[j].given && r->roles[j].alias == i && r->roles[j].written) {
                lo = s->offset;
                hi = s->offset + r->roles[j].need;
                writer = role_names[j];
            }
        for (size_t k = 0; k < s->total; ++k) {
            if (k >= lo && k < hi)
                continue;
            if (s->before[k] != s->after[k]) {
                const char *where = k < s->offset              ? "before the sub-buffer"
                                    : k >= s->offset + s->size ? "after the sub-buffer"
                                    : writer ? "past the bytes the problem needs"
                                             : "in a buffer this call must not write";
                const char *kind = s->foreign ? "foreign"
                                   : s->image ? "image"
                                   : s->parent ? "sub-buffer"
                                               : "buffer";
                fail("%s call changed byte %zu of bufs.%s (%s): 0x%02x -> 0x%02x (%s)",
                     rejected ? "rejected" : "accepted", k, role_names[i], kind, s->before[k],
                     s->after[k], where);
            }
        }
    }
}

static void one_call(const fcall *f)
{
    run *r = calloc(1, sizeof *r);
    r->f = *f;
    r->d = f->desc;
    const clnorm_desc *d = &r->d;
    clnorm_plan *plan = plan_get(f->ci, d);
    if (!plan) {
        free(r);
        return;
    }
    clnorm_context *ctx = G.ctx[f->ci];
    cl_command_queue q = G.queues[f->ci];
    r->valid_mode = f->mode == CLNORM_TRAINING || f->mode == CLNORM_INFERENCE;
    r->elements = d->n * d->c * d->d;
    r->esize = d->dtype == CLNORM_F32 ? 4 : 2;
    r->rms = d->kind == CLNORM_RMS;
    r->per_sample = d->kind == CLNORM_LAYER || r->rms;
    r->params = r->per_sample ? mul_or_huge(d->c, d->d) : d->c;
    r->groups = d->kind == CLNORM_BATCH      ? d->c
                : d->kind == CLNORM_INSTANCE ? mul_or_huge(d->n, d->c)
                : d->kind == CLNORM_GROUP    ? d->n * d->groups
                                             : d->n;
    if (r->elements > 0 && clnorm_plan_stats_count(plan) != r->groups)
        fail("plan_stats_count = %zu, want %zu", clnorm_plan_stats_count(plan), r->groups);
    plan_roles(r);
    const int small = r->elements <= 4096 && r->params <= 4096 && r->groups <= 4096 &&
                      d->c <= 4096;
    if (small)
        make_data(r);

    /* The contract, rule by rule. */
    if (!r->valid_mode)
        expect(r, EXPECT_INVALID, "mode %d", (int)f->mode);
    int bufs_null = (f->roles2 & FZ_R2_NULL_BUFS) != 0;
    if (bufs_null)
        expect(r, EXPECT_INVALID, "bufs = NULL");
    role *ro = r->roles;
    int has_running_kind = d->kind == CLNORM_BATCH || d->kind == CLNORM_INSTANCE;
    if (!bufs_null) {
        if ((ro[FZ_RUNNING_MEAN].given || ro[FZ_RUNNING_VAR].given) && !has_running_kind)
            expect(r, EXPECT_INVALID, "running statistics for a kind without");
        if (ro[FZ_RUNNING_MEAN].given != ro[FZ_RUNNING_VAR].given)
            expect(r, EXPECT_INVALID, "one running statistic of two");
        if (f->backward && !r->rms && ro[FZ_SAVE_MEAN].given != ro[FZ_SAVE_INVSTD].given)
            expect(r, EXPECT_INVALID, "one save_* of two");
        if (r->elements > 0 && r->valid_mode && !r->use_running &&
            ((d->kind == CLNORM_BATCH && d->n * d->d == 1) ||
             (d->kind == CLNORM_INSTANCE && d->d == 1)))
            expect(r, EXPECT_INVALID, "own statistics over single elements");
        int need_a = FZ_X, need_b = f->backward ? FZ_DY : FZ_Y;
        if (r->elements > 0 && (!ro[need_a].given || !ro[need_b].given))
            expect(r, EXPECT_INVALID, "bufs.%s missing", ro[need_a].given ? role_names[need_b]
                                                                          : role_names[need_a]);
        for (int i = 0; i < FZ_ROLE_COUNT; ++i)
            if (ro[i].given && ro[i].alias == i)
                make_store(r, i);
    }
    waits w;
    make_waits(r, &w, q);

    clnorm_buffers b;
    memset(&b, 0, sizeof b);
    cl_mem *slot[FZ_ROLE_COUNT] = {&b.x,     &b.y,      &b.dy,     &b.dx,
                                   &b.gamma, &b.beta,   &b.dgamma, &b.dbeta,
                                   &b.running_mean, &b.running_var, &b.save_mean,
                                   &b.save_invstd};
    for (int i = 0; i < FZ_ROLE_COUNT && !bufs_null; ++i)
        if (ro[i].given)
            *slot[i] = r->stores[ro[i].alias].mem;

    if (G.verbose)
        fprintf(stderr, "fuzz_api: %s; expect %s (%s)\n", call_text,
                r->expect == EXPECT_OK ? "SUCCESS" : r->expect == EXPECT_EITHER ? "either"
                                                                                 : "INVALID",
                r->reason);
    cl_event done = (cl_event)&done;
    cl_event *donep = f->no_done ? NULL : &done;
    clnorm_status st = f->backward
                           ? clnorm_backward(plan, f->mode, bufs_null ? NULL : &b, w.num, w.list,
                                             donep)
                           : clnorm_forward(plan, f->mode, bufs_null ? NULL : &b, w.num, w.list,
                                            donep);
    if (G.verbose)
        fprintf(stderr, "fuzz_api:   -> %s %s\n", clnorm_status_string(st),
                st ? clnorm_context_last_error(ctx) : "");
    for (int i = 0; i < 8; ++i)
        if (w.ev[i] && w.kind[i] == FZ_E_PENDING)
            cl_check(clSetUserEventStatus(w.ev[i], CL_COMPLETE), "clSetUserEventStatus");
    if (st == CLNORM_SUCCESS && donep) {
        if (!done)
            fail("accepted call returned a NULL *done");
        cl_int dstatus = 0;
        clWaitForEvents(1, &done);
        cl_check(clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof dstatus,
                                &dstatus, NULL),
                 "clGetEventInfo");
        if (w.failed && dstatus >= 0)
            fail("a failed event in the wait list, and *done completed (%d)", (int)dstatus);
        if (!w.failed && dstatus != CL_COMPLETE)
            fail("*done of an accepted call ended with status %d", (int)dstatus);
        clReleaseEvent(done);
    }
    cl_check(clFinish(q), "clFinish");
    for (int i = 0; i < FZ_ROLE_COUNT; ++i)
        if (r->stores[i].mem)
            read_store(&r->stores[i]);

    if (st != CLNORM_SUCCESS && st != CLNORM_ERROR_INVALID_ARGUMENT &&
        !(G.legality == 2 && r->illegal))
        fail("status %s (%s); want %s (%s)", clnorm_status_string(st),
             clnorm_context_last_error(ctx),
             r->expect == EXPECT_OK ? "SUCCESS" : "INVALID_ARGUMENT", r->reason);
    if (st == CLNORM_SUCCESS && r->expect == EXPECT_INVALID) {
        /* What it did with what it should have refused, for the report. */
        char what[512] = "";
        size_t len = 0;
        for (int i = 0; i < FZ_ROLE_COUNT && len < sizeof what - 64; ++i) {
            const store *s = &r->stores[i];
            size_t changed = 0;
            for (size_t k = 0; s->mem && k < s->total; ++k)
                changed += s->before[k] != s->after[k];
            if (changed)
                len += (size_t)snprintf(what + len, sizeof what - len, " bufs.%s: %zu of %zu bytes",
                                        role_names[i], changed, s->total);
        }
        fail("accepted a call the contract rejects: %s; changed:%s", r->reason,
             len ? what : " nothing");
    }
    if (st != CLNORM_SUCCESS && r->expect == EXPECT_OK)
        fail("rejected a valid call: %s", clnorm_context_last_error(ctx));
    if (st != CLNORM_SUCCESS) {
        if (donep && done)
            fail("rejected call left *done non-NULL");
        if (!*clnorm_context_last_error(ctx))
            fail("rejected call left last_error empty");
    }
    check_bytes(r, st != CLNORM_SUCCESS || w.failed);
    tally.calls++;
    if (st == CLNORM_SUCCESS)
        tally.accepted++;
    else
        tally.rejected++;
    if (st == CLNORM_SUCCESS && !w.failed && r->elements > 0) {
        /* an activation's values are test_epilogue's and check-pytorch's to judge: here its
         * validation, and that accepted calls stay in bounds and write only their outputs */
        if (small && r->judge && !f->desc.activation && !(G.legality == 2 && r->illegal)) {
            tally.judged++;
            if (f->backward)
                check_backward_values(r);
            else
                check_forward_values(r);
        } else {
            tally.unjudged++;
        }
    }

    release_waits(&w);
    for (int i = 0; i < FZ_ROLE_COUNT; ++i)
        free_store(&r->stores[i]);
    free(r->xf);
    free(r->dyf);
    free(r->xs);
    free(r->dys);
    free(r->xd);
    free(r->dyd);
    free(r->gamma);
    free(r->beta);
    free(r->rm);
    free(r->rv);
    free(r->smean);
    free(r->sinv);
    free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fcall f;
    decode(data, size, &f);
    describe(&f);
    if (!desc_valid(&f.desc)) {
        if (G.verbose)
            fprintf(stderr, "fuzz_api: %s; invalid descriptor\n", call_text);
        check_invalid_plan(f.ci, &f.desc);
        tally.bad_desc++;
        return 0;
    }
    one_call(&f);
    return 0;
}
