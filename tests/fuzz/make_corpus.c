/*
 * Writes the API fuzzer's seed corpus (tests/fuzz/corpus/) in the layout of fuzz_input.h:
 * every kind, pass, layout and storage type on small shapes, the kernels' special paths
 * (narrow channels-last, slabs, many rows, GPU shapes, out-of-order queues), and one seed per
 * rule of the contract that a call can break. Seeds for the illegal objects and wait lists
 * decode to legal ones unless CLNORM_FUZZ_LEGALITY=1.
 *
 *   make_corpus DIR     (tests/run-fuzz.sh --write-corpus runs it on tests/fuzz/corpus)
 */
#include "fuzz_input.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char cur[FZ_INPUT_SIZE];
static const char *dir;
static int written;

enum { FWD = 0, BWD = 1 };
enum { BATCH, LAYER, INSTANCE, GROUP, RMS };
enum { NCHW, NHWC };
enum { F32, F16, BF16 };
enum { TRAIN, INFER };

static void start(int pass, int ctx, int kind, int layout, int dtype, int mode, int n, int c,
                  int d, int groups)
{
    memset(cur, 0, sizeof cur);
    cur[FZ_OP] = (unsigned char)(pass | ctx << 1);
    cur[FZ_KIND] = (unsigned char)kind;
    cur[FZ_LAYOUT] = (unsigned char)layout;
    cur[FZ_DTYPE] = (unsigned char)dtype;
    cur[FZ_MODE] = (unsigned char)mode;
    cur[FZ_N] = (unsigned char)n;
    cur[FZ_C] = (unsigned char)c;
    cur[FZ_D] = (unsigned char)d;
    cur[FZ_GROUPS] = (unsigned char)fz_groups_byte((size_t)c, (size_t)groups);
    cur[FZ_SEED] = (unsigned char)(written + 1);
    cur[FZ_FILL] = (unsigned char)(written % 7); /* offsets and spreads vary between seeds */
}

static void emit(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(cur, 1, sizeof cur, f) != sizeof cur || fclose(f) != 0) {
        fprintf(stderr, "make_corpus: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    written++;
}

static void buf(int role, int spec) { cur[FZ_BUF + role] = (unsigned char)spec; }

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR\n");
        return 2;
    }
    dir = argv[1];

    /* ---- valid forward calls, one per kind x layout, types and optional buffers varied -- */
    start(FWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_ROLES] = FZ_R_GAMMA | FZ_R_BETA | FZ_R_RUNNING | FZ_R_SAVE;
    emit("fwd-batch-nchw-f32-train-running");
    start(FWD, FZ_CTX_IN_ORDER, BATCH, NHWC, F16, INFER, 3, 5, 2, 0);
    cur[FZ_ROLES] = FZ_R_RUNNING | FZ_R_SAVE;
    emit("fwd-batch-nhwc-f16-infer-running");
    start(FWD, FZ_CTX_IN_ORDER, LAYER, NCHW, BF16, TRAIN, 2, 3, 5, 0);
    cur[FZ_ROLES] = FZ_R_GAMMA | FZ_R_BETA | FZ_R_SAVE;
    emit("fwd-layer-nchw-bf16");
    start(FWD, FZ_CTX_IN_ORDER, LAYER, NHWC, F32, TRAIN, 9, 4, 3, 0);
    cur[FZ_ROLES] = FZ_R_IN_PLACE | FZ_R_GAMMA;
    emit("fwd-layer-nhwc-f32-in-place-rows");
    start(FWD, FZ_CTX_IN_ORDER, INSTANCE, NCHW, F32, TRAIN, 2, 3, 6, 0);
    cur[FZ_ROLES] = FZ_R_RUNNING | FZ_R_SAVE;
    emit("fwd-instance-nchw-f32-running");
    start(FWD, FZ_CTX_IN_ORDER, INSTANCE, NHWC, F16, INFER, 2, 8, 4, 0);
    cur[FZ_ROLES] = FZ_R_GAMMA | FZ_R_BETA;
    emit("fwd-instance-nhwc-f16-slab");
    start(FWD, FZ_CTX_IN_ORDER, GROUP, NCHW, BF16, TRAIN, 2, 6, 3, 3);
    cur[FZ_ROLES] = FZ_R_GAMMA | FZ_R_SAVE;
    emit("fwd-group-nchw-bf16");
    start(FWD, FZ_CTX_IN_ORDER, GROUP, NHWC, F32, TRAIN, 3, 4, 5, 2);
    emit("fwd-group-nhwc-f32-narrow");
    start(FWD, FZ_CTX_IN_ORDER, RMS, NCHW, F16, TRAIN, 4, 2, 7, 0);
    cur[FZ_ROLES] = FZ_R_GAMMA | FZ_R_BETA | FZ_R_SAVE;
    emit("fwd-rms-nchw-f16");
    start(FWD, FZ_CTX_IN_ORDER, RMS, NHWC, F32, INFER, 1, 16, 1, 0);
    cur[FZ_ROLES] = FZ_R_SAVE;
    emit("fwd-rms-nhwc-f32-one-sample");
    start(FWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, TRAIN, 0, 4, 3, 0);
    cur[FZ_ROLES] = FZ_R_RUNNING;
    emit("fwd-batch-empty-no-op");
    start(FWD, FZ_CTX_OUT_OF_ORDER, BATCH, NCHW, F32, TRAIN, 4, 3, 2, 0);
    cur[FZ_ROLES] = FZ_R_RUNNING | FZ_R_SAVE;
    cur[FZ_WAIT] = 3;
    cur[FZ_WAIT_ENTRY] = FZ_E_COMPLETE;
    cur[FZ_WAIT_ENTRY + 1] = FZ_E_PENDING;
    cur[FZ_WAIT_ENTRY + 2] = FZ_E_MARKER;
    emit("fwd-batch-out-of-order-waits");
    start(FWD, FZ_CTX_GPU_SHAPES, LAYER, NCHW, F32, TRAIN, 2, 8, 9, 0);
    cur[FZ_ROLES] = FZ_R_GAMMA | FZ_R_BETA | FZ_R_SAVE;
    emit("fwd-layer-gpu-shapes");
    start(FWD, FZ_CTX_GPU_SHAPES_OOO, INSTANCE, NHWC, F32, INFER, 3, 5, 4, 0);
    cur[FZ_ROLES] = FZ_R_RUNNING;
    cur[FZ_OP] |= 8; /* done = NULL */
    emit("fwd-instance-gpu-shapes-ooo-no-done");

    start(FWD, FZ_CTX_OUT_OF_ORDER, INSTANCE, NHWC, F16, INFER, 7, 8, 10, 0);
    cur[FZ_EPS] = 10; /* 1e6: y of about 1e-3 x, f16 subnormals (a tolerance once missed them) */
    cur[FZ_FILL] = 0;
    emit("fwd-instance-nhwc-f16-subnormal-y");

    /* ---- valid backward calls ----------------------------------------------------------- */
    start(BWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_ROLES] = FZ_R_GAMMA | FZ_R_DX | FZ_R_DGAMMA | FZ_R_DBETA | FZ_R_SAVE;
    emit("bwd-batch-nchw-f32-save");
    start(BWD, FZ_CTX_IN_ORDER, BATCH, NHWC, BF16, INFER, 3, 4, 2, 0);
    cur[FZ_ROLES] = FZ_R_RUNNING | FZ_R_DX;
    emit("bwd-batch-nhwc-bf16-infer-running");
    start(BWD, FZ_CTX_IN_ORDER, LAYER, NCHW, F16, TRAIN, 9, 2, 3, 0);
    cur[FZ_ROLES] = FZ_R_DX | FZ_R_DGAMMA | FZ_R_DBETA;
    emit("bwd-layer-nchw-f16-rows");
    start(BWD, FZ_CTX_IN_ORDER, LAYER, NHWC, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_ROLES] = FZ_R_GAMMA | FZ_R_DX | FZ_R_IN_PLACE;
    emit("bwd-layer-nhwc-f32-in-place");
    start(BWD, FZ_CTX_IN_ORDER, INSTANCE, NCHW, F32, TRAIN, 3, 4, 5, 0);
    cur[FZ_ROLES] = FZ_R_DX;
    emit("bwd-instance-nchw-f32-groups");
    start(BWD, FZ_CTX_IN_ORDER, INSTANCE, NHWC, F16, TRAIN, 2, 8, 3, 0);
    cur[FZ_ROLES] = FZ_R_DX | FZ_R_DGAMMA | FZ_R_GAMMA;
    emit("bwd-instance-nhwc-f16-slab");
    start(BWD, FZ_CTX_IN_ORDER, GROUP, NCHW, F32, TRAIN, 2, 6, 4, 2);
    cur[FZ_ROLES] = FZ_R_DX | FZ_R_DGAMMA | FZ_R_DBETA | FZ_R_SAVE;
    emit("bwd-group-nchw-f32-save");
    start(BWD, FZ_CTX_IN_ORDER, GROUP, NHWC, BF16, TRAIN, 3, 8, 2, 4);
    cur[FZ_ROLES] = FZ_R_DX;
    emit("bwd-group-nhwc-bf16");
    start(BWD, FZ_CTX_IN_ORDER, RMS, NCHW, F32, TRAIN, 2, 5, 3, 0);
    cur[FZ_ROLES] = FZ_R_DX | FZ_R_DGAMMA | FZ_R_SAVE;
    emit("bwd-rms-nchw-f32-save");
    start(BWD, FZ_CTX_IN_ORDER, RMS, NHWC, F16, TRAIN, 4, 3, 1, 0);
    cur[FZ_ROLES] = FZ_R_GAMMA | FZ_R_DX | FZ_R_DBETA;
    emit("bwd-rms-nhwc-f16");
    start(BWD, FZ_CTX_GPU_SHAPES, BATCH, NCHW, F32, TRAIN, 3, 4, 5, 0);
    cur[FZ_ROLES] = FZ_R_DX | FZ_R_DGAMMA | FZ_R_DBETA;
    emit("bwd-batch-gpu-shapes");
    start(BWD, FZ_CTX_IN_ORDER, INSTANCE, NCHW, F32, TRAIN, 2, 3, 4, 0);
    emit("bwd-no-outputs");

    /* ---- valid objects: larger, sub-buffers, host memory, least access ------------------ */
    start(FWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, TRAIN, 2, 3, 5, 0);
    cur[FZ_ROLES] = FZ_R_GAMMA | FZ_R_BETA | FZ_R_RUNNING | FZ_R_SAVE;
    buf(FZ_X, FZ_B(FZ_SIZE_PLUS64, FZ_FLAGS_LEAST, FZ_OBJ_SUB_BUFFER));
    buf(FZ_Y, FZ_B(FZ_SIZE_PLUS1, FZ_FLAGS_LEAST, FZ_OBJ_BUFFER) | FZ_B_HOST_PTR);
    buf(FZ_GAMMA, FZ_B(FZ_SIZE_PLUS4, FZ_FLAGS_LEAST, FZ_OBJ_SUB_BUFFER) | FZ_B_HOST_PTR);
    buf(FZ_SAVE_MEAN, FZ_B(FZ_SIZE_PLUS4, FZ_FLAGS_LEAST, FZ_OBJ_SUB_BUFFER));
    buf(FZ_RUNNING_VAR, FZ_B(FZ_SIZE_PLUS64, FZ_FLAGS_RW, FZ_OBJ_SUB_BUFFER));
    emit("fwd-objects-larger-sub-host");
    start(BWD, FZ_CTX_IN_ORDER, GROUP, NCHW, F16, TRAIN, 2, 4, 3, 2);
    cur[FZ_ROLES] = FZ_R_GAMMA | FZ_R_DX | FZ_R_DGAMMA | FZ_R_DBETA | FZ_R_SAVE;
    buf(FZ_DY, FZ_B(FZ_SIZE_PLUS1, FZ_FLAGS_LEAST, FZ_OBJ_SUB_BUFFER));
    buf(FZ_DX, FZ_B(FZ_SIZE_PLUS64, FZ_FLAGS_LEAST, FZ_OBJ_SUB_BUFFER) | FZ_B_HOST_PTR);
    buf(FZ_DGAMMA, FZ_B(FZ_SIZE_PLUS4, FZ_FLAGS_LEAST, FZ_OBJ_BUFFER) | FZ_B_HOST_PTR);
    buf(FZ_SAVE_INVSTD, FZ_B(FZ_SIZE_PLUS4, FZ_FLAGS_LEAST, FZ_OBJ_SUB_BUFFER));
    emit("bwd-objects-larger-sub-host");
    start(FWD, FZ_CTX_IN_ORDER, INSTANCE, NCHW, F32, TRAIN, 2, 4, 3, 0);
    cur[FZ_ROLES2] = FZ_R2_BYSTANDERS;
    emit("fwd-bystanders");
    start(BWD, FZ_CTX_IN_ORDER, LAYER, NCHW, F32, TRAIN, 2, 4, 3, 0);
    cur[FZ_ROLES] = FZ_R_DX;
    cur[FZ_ROLES2] = FZ_R2_BYSTANDERS;
    emit("bwd-bystanders");

    /* ---- invalid descriptors ------------------------------------------------------------ */
    start(FWD, FZ_CTX_IN_ORDER, FZ_KIND_UNKNOWN, NCHW, F32, TRAIN, 2, 3, 4, 0);
    emit("bad-desc-kind");
    start(FWD, FZ_CTX_IN_ORDER, BATCH, FZ_ENUM_UNKNOWN | FZ_NEGATIVE, F32, TRAIN, 2, 3, 4, 0);
    emit("bad-desc-layout");
    start(FWD, FZ_CTX_IN_ORDER, LAYER, NCHW, FZ_ENUM_UNKNOWN, TRAIN, 2, 3, 4, 0);
    emit("bad-desc-dtype");
    start(FWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, TRAIN, 2, 0, 4, 0);
    emit("bad-desc-c-zero");
    start(BWD, FZ_CTX_IN_ORDER, LAYER, NCHW, F32, TRAIN, 2, 3, 0, 0);
    emit("bad-desc-d-zero");
    start(FWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_EPS] = FZ_EPS_NEGATIVE;
    emit("bad-desc-eps-negative");
    start(FWD, FZ_CTX_IN_ORDER, INSTANCE, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_EPS] = FZ_EPS_NAN;
    emit("bad-desc-eps-nan");
    start(FWD, FZ_CTX_IN_ORDER, RMS, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_EPS] = FZ_EPS_INF;
    emit("bad-desc-eps-inf");
    start(FWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_MOMENTUM] = FZ_MOMENTUM_NEGATIVE;
    emit("bad-desc-momentum-negative");
    start(FWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_MOMENTUM] = FZ_MOMENTUM_NAN;
    emit("bad-desc-momentum-nan");
    start(FWD, FZ_CTX_IN_ORDER, GROUP, NCHW, F32, TRAIN, 2, 6, 4, 0);
    emit("bad-desc-groups-zero");
    start(FWD, FZ_CTX_IN_ORDER, GROUP, NHWC, F32, TRAIN, 2, 6, 4, 4);
    emit("bad-desc-groups-not-dividing");
    start(FWD, FZ_CTX_IN_ORDER, LAYER, NCHW, F32, TRAIN, FZ_HUGE, 3, 4, 0);
    emit("bad-desc-n-overflows");
    start(FWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, TRAIN, 0, FZ_HUGE + 3, 1, 0);
    emit("desc-empty-batch-huge-c");

    /* ---- calls that break a rule -------------------------------------------------------- */
    start(FWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, FZ_ENUM_UNKNOWN, 2, 3, 4, 0);
    emit("bad-call-mode");
    start(BWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, FZ_ENUM_UNKNOWN | FZ_NEGATIVE, 2, 3, 4, 0);
    cur[FZ_ROLES] = FZ_R_DX;
    emit("bad-call-mode-backward");
    start(FWD, FZ_CTX_IN_ORDER, LAYER, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_ROLES2] = FZ_R2_NO_X;
    emit("bad-call-no-x");
    start(BWD, FZ_CTX_IN_ORDER, LAYER, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_ROLES] = FZ_R_DX;
    cur[FZ_ROLES2] = FZ_R2_NO_Y;
    emit("bad-call-no-dy");
    start(FWD, FZ_CTX_IN_ORDER, INSTANCE, NCHW, F16, TRAIN, 2, 3, 4, 0);
    buf(FZ_Y, FZ_B(FZ_SIZE_MINUS1, 0, 0));
    emit("bad-call-y-one-byte-short");
    start(FWD, FZ_CTX_IN_ORDER, LAYER, NHWC, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_ROLES] = FZ_R_GAMMA;
    buf(FZ_GAMMA, FZ_B(FZ_SIZE_MINUS_ELEMENT, 0, 0));
    emit("bad-call-gamma-one-short");
    start(BWD, FZ_CTX_IN_ORDER, GROUP, NCHW, F32, TRAIN, 2, 4, 3, 2);
    cur[FZ_ROLES] = FZ_R_DX | FZ_R_DGAMMA;
    buf(FZ_DGAMMA, FZ_B(FZ_SIZE_HALF, 0, 0));
    emit("bad-call-dgamma-half");
    start(FWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_ROLES] = FZ_R_SAVE;
    buf(FZ_SAVE_INVSTD, FZ_B(FZ_SIZE_MINUS_ELEMENT, 0, 0));
    emit("bad-call-save-invstd-short");
    start(FWD, FZ_CTX_IN_ORDER, LAYER, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_ROLES] = FZ_R_RUNNING;
    emit("bad-call-running-on-layer");
    start(FWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_ROLES] = FZ_R_RUNNING;
    cur[FZ_ROLES2] = FZ_R2_NO_RUNNING_VAR;
    emit("bad-call-half-running");
    start(FWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, TRAIN, 1, 3, 1, 0);
    emit("bad-call-batch-single-element");
    start(BWD, FZ_CTX_IN_ORDER, INSTANCE, NHWC, F32, INFER, 2, 3, 1, 0);
    cur[FZ_ROLES] = FZ_R_DX;
    emit("bad-call-instance-single-element");
    start(FWD, FZ_CTX_IN_ORDER, INSTANCE, NHWC, F32, INFER, 2, 3, 1, 0);
    cur[FZ_ROLES] = FZ_R_RUNNING;
    emit("call-instance-single-element-running");
    start(BWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_ROLES] = FZ_R_SAVE | FZ_R_DX;
    cur[FZ_ROLES2] = FZ_R2_NO_SAVE_INVSTD;
    emit("bad-call-half-save");
    start(FWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_ROLES2] = FZ_R2_NULL_BUFS;
    emit("bad-call-bufs-null");
    start(FWD, FZ_CTX_IN_ORDER, RMS, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_WAIT] = 2 | FZ_W_NULL_LIST << 3;
    emit("bad-call-wait-null");
    start(FWD, FZ_CTX_IN_ORDER, RMS, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_WAIT] = FZ_W_LIST_WITH_ZERO << 3;
    emit("call-wait-list-with-zero");

    /* ---- illegal objects and events (legal unless CLNORM_FUZZ_LEGALITY=1) --------------- */
    start(FWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, TRAIN, 2, 3, 4, 0);
    buf(FZ_Y, FZ_B(0, 0, FZ_OBJ_FOREIGN));
    emit("illegal-y-foreign-context");
    start(BWD, FZ_CTX_IN_ORDER, LAYER, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_ROLES] = FZ_R_DX | FZ_R_GAMMA;
    buf(FZ_GAMMA, FZ_B(0, 0, FZ_OBJ_FOREIGN));
    emit("illegal-gamma-foreign-context");
    start(FWD, FZ_CTX_IN_ORDER, INSTANCE, NCHW, F32, TRAIN, 2, 3, 4, 0);
    buf(FZ_Y, FZ_B(0, FZ_FLAGS_READ_ONLY, 0));
    emit("illegal-y-read-only");
    start(FWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_ROLES] = FZ_R_RUNNING;
    buf(FZ_RUNNING_MEAN, FZ_B(0, FZ_FLAGS_READ_ONLY, 0));
    emit("illegal-running-read-only-in-training");
    start(BWD, FZ_CTX_IN_ORDER, GROUP, NCHW, F32, TRAIN, 2, 4, 3, 2);
    cur[FZ_ROLES] = FZ_R_DX;
    buf(FZ_X, FZ_B(0, FZ_FLAGS_WRITE_ONLY, 0));
    emit("illegal-x-write-only");
    start(BWD, FZ_CTX_IN_ORDER, RMS, NCHW, F32, TRAIN, 2, 4, 3, 0);
    cur[FZ_ROLES] = FZ_R_DX | FZ_R_DGAMMA;
    buf(FZ_DGAMMA, FZ_B(0, FZ_FLAGS_READ_ONLY, 0));
    emit("illegal-dgamma-read-only");
    start(FWD, FZ_CTX_IN_ORDER, LAYER, NCHW, F32, TRAIN, 2, 3, 4, 0);
    buf(FZ_X, FZ_B(0, 0, FZ_OBJ_IMAGE));
    emit("illegal-x-image");
    start(BWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_ROLES] = FZ_R_DX | FZ_R_DBETA;
    buf(FZ_DBETA, FZ_B(0, 0, FZ_OBJ_IMAGE));
    emit("illegal-dbeta-image");
    start(FWD, FZ_CTX_IN_ORDER, BATCH, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_WAIT] = 2;
    cur[FZ_WAIT_ENTRY] = FZ_E_COMPLETE;
    cur[FZ_WAIT_ENTRY + 1] = FZ_E_NULL;
    emit("illegal-wait-null-entry");
    start(BWD, FZ_CTX_IN_ORDER, LAYER, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_ROLES] = FZ_R_DX;
    cur[FZ_WAIT] = 1;
    cur[FZ_WAIT_ENTRY] = FZ_E_FOREIGN;
    emit("illegal-wait-foreign-event");
    start(FWD, FZ_CTX_IN_ORDER, INSTANCE, NCHW, F32, TRAIN, 2, 3, 4, 0);
    cur[FZ_WAIT] = 1;
    cur[FZ_WAIT_ENTRY] = FZ_E_FAILED;
    emit("wait-failed-event");

    printf("make_corpus: %d seeds in %s\n", written, dir);
    return 0;
}
