/*
 * The byte layout of one input of the API fuzzer, shared by the target (fuzz_api.c) and the
 * seed writer (make_corpus.c). Every byte has a fixed place, so that libFuzzer's mutations
 * change one decision at a time; a short input reads as if padded with zeros, and zeros mean
 * "the plain, valid choice" wherever one exists.
 */
#ifndef CLNORM_TESTS_FUZZ_INPUT_H
#define CLNORM_TESTS_FUZZ_INPUT_H

enum {
    FZ_OP,       /* bit 0 backward; bits 1-2 context (FZ_CTX_*); bit 3 done = NULL */
    FZ_KIND,     /* % 16 < 15: kind % 5; else an unknown value (fz_unknown) */
    FZ_LAYOUT,   /* % 8 < 7: layout % 2; else unknown */
    FZ_DTYPE,    /* % 8 < 7: type % 3; else unknown */
    FZ_MODE,     /* % 8 < 7: mode % 2; else unknown */
    FZ_N,        /* < FZ_HUGE: % 10; else fz_huge[byte - FZ_HUGE] */
    FZ_C,        /* < FZ_HUGE: % 17 (0 is invalid) */
    FZ_D,        /* < FZ_HUGE: % 13 (0 is invalid) */
    FZ_GROUPS,   /* < 0x80: a divisor of c (fz_groups); < FZ_HUGE: % 17; else huge */
    FZ_EPS,      /* % 32: index into fz_eps (the last four are invalid) */
    FZ_MOMENTUM, /* % 32: index into fz_momentum (the last four are invalid) */
    FZ_ROLES,    /* FZ_R_*: which optional buffers are given */
    FZ_ROLES2,   /* FZ_R2_*: required buffers dropped, half pairs, bystanders */
    FZ_BUF,      /* FZ_ROLE_COUNT bytes, one per role in clnorm_buffers order: FZ_B_* */
    FZ_WAIT = FZ_BUF + 12, /* bits 0-2 num_wait; bits 3-4 FZ_W_* */
    FZ_WAIT_ENTRY,         /* 4 bytes, % 8: FZ_E_* (entry i uses byte i % 4) */
    FZ_SEED = FZ_WAIT_ENTRY + 4, /* 8 bytes, little-endian: the data's random seed */
    FZ_FILL = FZ_SEED + 8,       /* bits 0-1 offset, 2-3 spread, 4 signed gamma, 5-7 pattern */
    /* since 0.3 (inputs without it read 0: no activation): bits 0-2 % 8 < 7: activation % 6,
     * else unknown; bits 3-5: index into fz_alpha (the last two are not finite) */
    FZ_ACTIVATION,
    FZ_INPUT_SIZE
};

enum { FZ_CTX_IN_ORDER, FZ_CTX_OUT_OF_ORDER, FZ_CTX_GPU_SHAPES, FZ_CTX_GPU_SHAPES_OOO };

/* Dimension bytes at or above FZ_HUGE pick values so large that n*c*d overflows (or, with
 * n == 0, a no-op plan over enormous c or d). */
#define FZ_HUGE 240

#include <stddef.h>

/* The groups byte: below 0x80 the (b % k)-th of the k divisors of c, so that most GROUP inputs
 * are valid; from 0x80 the raw value (b % 17), which may not divide c. */
static inline size_t fz_groups(size_t c, unsigned b)
{
    if (b >= 0x80 || c == 0 || c > 64)
        return b % 17;
    size_t k = 0;
    for (size_t g = 1; g <= c; ++g)
        k += c % g == 0;
    size_t want = b % k;
    for (size_t g = 1; g <= c; ++g)
        if (c % g == 0 && want-- == 0)
            return g;
    return 1;
}

/* The byte that fz_groups decodes to g for c. */
static inline unsigned fz_groups_byte(size_t c, size_t g)
{
    for (unsigned b = 0; b < 0x80; ++b)
        if (fz_groups(c, b) == g)
            return b;
    return 0x80 | (unsigned)(g % 17);
}

/* Roles in clnorm_buffers order. */
enum {
    FZ_X, FZ_Y, FZ_DY, FZ_DX, FZ_GAMMA, FZ_BETA, FZ_DGAMMA, FZ_DBETA,
    FZ_RUNNING_MEAN, FZ_RUNNING_VAR, FZ_SAVE_MEAN, FZ_SAVE_INVSTD, FZ_ROLE_COUNT
};

/* FZ_ROLES */
#define FZ_R_GAMMA 0x01
#define FZ_R_BETA 0x02    /* forward */
#define FZ_R_RUNNING 0x04 /* both running statistics */
#define FZ_R_SAVE 0x08    /* both save_* */
#define FZ_R_DX 0x10      /* backward */
#define FZ_R_DGAMMA 0x20  /* backward */
#define FZ_R_DBETA 0x40   /* backward */
#define FZ_R_IN_PLACE 0x80 /* forward y = x; backward dx = dy */

/* FZ_ROLES2 */
#define FZ_R2_NO_X 0x01
#define FZ_R2_NO_Y 0x02          /* forward y, backward dy */
#define FZ_R2_NO_RUNNING_VAR 0x04
#define FZ_R2_NO_SAVE_MEAN 0x08
#define FZ_R2_NO_SAVE_INVSTD 0x10
#define FZ_R2_BYSTANDERS 0x20    /* the other pass's buffers given too: never to be written */
#define FZ_R2_NULL_BUFS 0x40     /* bufs = NULL */

/* FZ_BUF bytes: bits 0-2 size, bits 3-4 flags, bits 5-6 object, bit 7 CL_MEM_USE_HOST_PTR. */
enum { FZ_SIZE_EXACT, FZ_SIZE_EXACT2, FZ_SIZE_PLUS4, FZ_SIZE_PLUS1, FZ_SIZE_PLUS64,
       FZ_SIZE_MINUS1, FZ_SIZE_MINUS_ELEMENT, FZ_SIZE_HALF };
#define FZ_B_SIZE(b) ((b) & 7)
enum { FZ_FLAGS_RW, FZ_FLAGS_LEAST, FZ_FLAGS_READ_ONLY, FZ_FLAGS_WRITE_ONLY };
#define FZ_B_FLAGS(b) (((b) >> 3) & 3)
enum { FZ_OBJ_BUFFER, FZ_OBJ_SUB_BUFFER, FZ_OBJ_FOREIGN, FZ_OBJ_IMAGE };
#define FZ_B_OBJECT(b) (((b) >> 5) & 3)
#define FZ_B_HOST_PTR 0x80
#define FZ_B(size, flags, object) ((size) | (flags) << 3 | (object) << 5)

/* FZ_WAIT bits 3-4 */
enum { FZ_W_LIST, FZ_W_NULL_LIST, FZ_W_LIST_WITH_ZERO, FZ_W_LIST2 };

/* FZ_WAIT_ENTRY bytes % 8 */
enum { FZ_E_COMPLETE, FZ_E_PENDING, FZ_E_MARKER, FZ_E_COMPLETE2, FZ_E_NULL, FZ_E_FOREIGN,
       FZ_E_FAILED, FZ_E_COMPLETE3 };

/* FZ_FILL */
#define FZ_F_OFFSET(b) ((b) & 3)          /* fz_offset */
#define FZ_F_SPREAD(b) (((b) >> 2) & 3)   /* fz_spread */
#define FZ_F_SIGNED_GAMMA 0x10
#define FZ_F_PATTERN(b) (((b) >> 5) & 7)  /* fz_pattern */

/* Enum bytes: FZ_UNKNOWN is the first value past the enum's last; FZ_UNKNOWN | 0x10 is -1. */
#define FZ_KIND_UNKNOWN 15
#define FZ_ENUM_UNKNOWN 7 /* layout, type, mode */
#define FZ_NEGATIVE 0x10

#define FZ_EPS_DEFAULT 0     /* 1e-5 */
#define FZ_EPS_ZERO 1
#define FZ_EPS_NEGATIVE 28
#define FZ_EPS_NAN 29
#define FZ_EPS_INF 30
#define FZ_MOMENTUM_DEFAULT 0 /* 0.1 */
#define FZ_MOMENTUM_NEGATIVE 28
#define FZ_MOMENTUM_ABOVE_ONE 29
#define FZ_MOMENTUM_NAN 30

#endif
