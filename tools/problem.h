/*
 * The PROBLEM syntax clnorm-bench and clnorm-compile share:
 * kind:pass:layout:NxCxD[/G][:T[-Y]][:EPILOGUE], T the storage of x (else --dtype's), Y that of
 * y when it differs (u8 and u16 for pixels: batch:forward-inference:nhwc:1x3x2073600:u8-f32),
 * EPILOGUE a fused epilogue (DESIGN.md section 11) of '-'-joined parts: skip (h = x + skip
 * normalized, sum written), add (a residual added after), and at most one activation (relu,
 * leaky_relu (slope 0.01), silu, gelu, gelu_tanh): batch:forward-training:nchw:32x64x3136:add-relu.
 */
#ifndef CLNORM_TOOLS_PROBLEM_H
#define CLNORM_TOOLS_PROBLEM_H

#include <clnorm/clnorm.h>

#include <stdio.h>
#include <string.h>

#include "bench.h"

#define EPS 1e-5f
#define MOMENTUM 0.1f
#ifndef COUNT
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#endif

static const char *const dtype_names[] = {"f32", "f16", "bf16", "u8", "u16"};
/* clnorm_activation's values, as the EPILOGUE field names them ("none" is never written) */
static const char *const activation_names[] = {"none", "relu", "leaky_relu",
                                               "silu", "gelu", "gelu_tanh"};
#define LEAKY_SLOPE 0.01f

typedef enum bench_pass { PASS_TRAINING, PASS_INFERENCE, PASS_BACKWARD } bench_pass;

typedef struct problem {
    clnorm_desc desc; /* the activation in desc.activation */
    bench_pass pass;
    int skip, add; /* the epilogue's tensors: skip (and sum), residual */
} problem;

static inline int lookup(const char *name, const char *const *names, size_t count)
{
    for (size_t i = 0; i < count; ++i)
        if (strcmp(name, names[i]) == 0)
            return (int)i;
    return -1;
}

/* Parses an EPILOGUE field (in place) into p; on failure writes why into err. */
static inline int parse_epilogue(char *text, problem *p, char *err, size_t err_size)
{
    for (char *part = text; part;) {
        char *dash = strchr(part, '-');
        if (dash)
            *dash++ = '\0';
        int act = lookup(part, activation_names, COUNT(activation_names));
        if (strcmp(part, "skip") == 0 && !p->skip) {
            p->skip = 1;
        } else if (strcmp(part, "add") == 0 && !p->add) {
            p->add = 1;
        } else if (act > 0 && !p->desc.activation) {
            p->desc.activation = (clnorm_activation)act;
            p->desc.activation_alpha = act == CLNORM_ACTIVATION_LEAKY_RELU ? LEAKY_SLOPE : 0.0f;
        } else {
            snprintf(err, err_size,
                     "bad epilogue part '%s' (skip, add and one of relu, leaky_relu, silu, gelu, "
                     "gelu_tanh, each once, joined by '-')",
                     part);
            return -1;
        }
        part = dash;
    }
    return 0;
}

/* Parses kind:pass:layout:NxCxD[/G][:T[-Y]][:EPILOGUE]; on failure writes why into err. */
static inline int parse_problem(const char *text, clnorm_dtype dtype, problem *out, char *err,
                         size_t err_size)
{
    char buf[256];
    char *field[4];
    if (strlen(text) >= sizeof buf) {
        snprintf(err, err_size, "problem too long");
        return -1;
    }
    strcpy(buf, text);
    field[0] = buf;
    for (int i = 1; i < 4; ++i) {
        char *colon = strchr(field[i - 1], ':');
        if (!colon) {
            snprintf(err, err_size, "want kind:pass:layout:NxCxD[/G]");
            return -1;
        }
        *colon = '\0';
        field[i] = colon + 1;
    }
    int kind = lookup(field[0], kind_names, COUNT(kind_names));
    int pass = lookup(field[1], pass_names, COUNT(pass_names));
    int layout = lookup(field[2], layout_names, COUNT(layout_names));
    if (kind < 0) {
        snprintf(err, err_size, "unknown kind '%s' (batch, layer, instance, group, rms)",
                 field[0]);
        return -1;
    }
    if (pass < 0) {
        snprintf(err, err_size,
                 "unknown pass '%s' (forward-training, forward-inference, backward)", field[1]);
        return -1;
    }
    if (layout < 0) {
        snprintf(err, err_size, "unknown layout '%s' (nchw, nhwc)", field[2]);
        return -1;
    }
    /* an optional storage field after the shape, and an optional epilogue after that */
    clnorm_y_dtype y_dtype = CLNORM_Y_AS_X;
    char *storage = strchr(field[3], ':'), *epilogue = NULL;
    if (storage) {
        *storage++ = '\0';
        epilogue = strchr(storage, ':');
        if (epilogue) {
            *epilogue++ = '\0';
        } else {
            /* one field: the storage if it starts with a storage name, else the epilogue */
            size_t len = strcspn(storage, "-");
            int named = 0;
            for (size_t t = 0; t < COUNT(dtype_names); ++t)
                named |= strlen(dtype_names[t]) == len && !strncmp(storage, dtype_names[t], len);
            if (!named) {
                epilogue = storage;
                storage = NULL;
            }
        }
    }
    if (storage) {
        char *dash = strchr(storage, '-');
        if (dash)
            *dash++ = '\0';
        int xt = lookup(storage, dtype_names, COUNT(dtype_names));
        int yt = dash ? lookup(dash, dtype_names, COUNT(dtype_names)) : xt;
        if (xt < 0 || yt < 0) {
            snprintf(err, err_size, "unknown storage '%s%s%s' (T or T-Y of f32, f16, bf16, u8, u16)",
                     storage, dash ? "-" : "", dash ? dash : "");
            return -1;
        }
        dtype = (clnorm_dtype)xt;
        if (yt != xt)
            y_dtype = (clnorm_y_dtype)(yt + 1);
    }
    size_t n, c, d, groups = 0;
    const char *s = field[3];
    if (parse_size(&s, &n) || *s++ != 'x' || parse_size(&s, &c) || *s++ != 'x' ||
        parse_size(&s, &d) || (*s == '/' && (++s, parse_size(&s, &groups))) || *s) {
        snprintf(err, err_size, "bad shape '%s' (want NxCxD, or NxCxD/G for group)", field[3]);
        return -1;
    }
    if (n == 0 || c == 0 || d == 0) {
        snprintf(err, err_size, "shape '%s': N, C and D must be at least 1", field[3]);
        return -1;
    }
    if (kind == CLNORM_GROUP && (groups == 0 || c % groups != 0)) {
        snprintf(err, err_size, "shape '%s': group needs /G with G dividing C", field[3]);
        return -1;
    }
    if (kind != CLNORM_GROUP && groups != 0) {
        snprintf(err, err_size, "shape '%s': /G is for group only", field[3]);
        return -1;
    }
    if (n > SIZE_MAX / c || n * c > SIZE_MAX / d || n * c * d > SIZE_MAX / 16) {
        snprintf(err, err_size, "shape '%s': too large", field[3]);
        return -1;
    }
    memset(out, 0, sizeof *out);
    out->desc = (clnorm_desc){
        .kind = (clnorm_kind)kind, .layout = (clnorm_layout)layout, .dtype = dtype, .n = n, .c = c,
        .d = d, .groups = groups, .eps = EPS, .momentum = MOMENTUM, .y_dtype = y_dtype
    };
    out->pass = (bench_pass)pass;
    return epilogue ? parse_epilogue(epilogue, out, err, err_size) : 0;
}

static inline const char *problem_name(const problem *p, char *buf, size_t size)
{
    const clnorm_desc *d = &p->desc;
    int len = snprintf(buf, size, "%s:%s:%s:%zux%zux%zu", kind_names[d->kind],
                       pass_names[p->pass], layout_names[d->layout], d->n, d->c, d->d);
    if (d->kind == CLNORM_GROUP && len > 0 && (size_t)len < size)
        len += snprintf(buf + len, size - (size_t)len, "/%zu", d->groups);
    /* integer storage, or a y stored otherwise than x: named in the problem */
    if ((d->dtype >= CLNORM_U8 || d->y_dtype) && len > 0 && (size_t)len < size)
        len += snprintf(buf + len, size - (size_t)len, ":%s%s%s", dtype_names[d->dtype],
                        d->y_dtype ? "-" : "", d->y_dtype ? dtype_names[d->y_dtype - 1] : "");
    /* the epilogue, in the order the syntax lists its parts */
    const char *parts[] = {p->skip ? "skip" : NULL, p->add ? "add" : NULL,
                           d->activation ? activation_names[d->activation] : NULL};
    for (size_t i = 0, first = 1; i < COUNT(parts) && len > 0 && (size_t)len < size; ++i)
        if (parts[i]) {
            len += snprintf(buf + len, size - (size_t)len, "%s%s", first ? ":" : "-", parts[i]);
            first = 0;
        }
    return buf;
}

#endif
