/*
 * clnorm-compile: writes kernel packages (DESIGN.md section 5), folders of programs built ahead
 * of time that plans load before the binary cache and before compiling: the only way to run on
 * a device without a compiler (FPGAs), and a first run without a compile anywhere.
 *
 * The programs are those the plans for the given problems would build on the device, found by
 * the plan code itself (src/plan.c): with the device's compiler a real plan is made and its
 * programs are taken; with an offline compiler or --emit the plan is prepared without building
 * and its programs' options are taken. It links the static library for those internals.
 */
#include "internal.h"
#include "problem.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fputs("usage: clnorm-compile --out DIR [--device SPEC] [--dtype f32|f16|bf16|u8|u16|all]\n"
          "                      [--compiler 'CMD'] [--emit] [--from LOG] PROBLEM...\n"
          "       clnorm-compile --out DIR [--compiler 'CMD']\n"
          "\n"
          "Adds to the kernel package DIR every program the plans for the PROBLEMs build on the\n"
          "device (a package keeps what it holds). PROBLEM: kind:pass:layout:NxCxD[/G] as in\n"
          "clnorm-bench, pass forward-training, forward-inference, backward or all; `suite` for\n"
          "clnorm-bench's default suite and its copy yardstick; `copy` for the yardstick alone.\n"
          "\n"
          "  --out DIR        the package folder (created if missing)\n"
          "  --device SPEC    the device the programs are for, as for clnorm-bench (default:\n"
          "                   CLNORM_DEVICE, else the first GPU, else the first device)\n"
          "  --dtype T        storage type of the problems (default f32; all: f32, f16 and bf16);\n"
          "                   a PROBLEM's own :T[-Y] field (x's and y's storage) overrides it\n"
          "  --compiler CMD   build each program with an offline compiler, not the device's:\n"
          "                   CMD runs once per program with {source} and {output} replaced by\n"
          "                   paths (shell-quoted), {options} by the build options, e.g.\n"
          "                   'poclcc -b \"{options}\" -o {output} {source}' or\n"
          "                   'aoc {source} {options} -o {output}'\n"
          "  --emit           write sources, options and the manifest only, to build elsewhere\n"
          "  --from LOG       also the programs a CLNORM_PROGRAM_LOG file lists (an application\n"
          "                   run with CLNORM_PROGRAM_LOG=LOG records every program it used)\n"
          "\n"
          "With no PROBLEM or --from, no OpenCL device is needed: records the binaries copied\n"
          "into DIR by hand (plans load only recorded ones), and with --compiler builds every\n"
          "program DIR lists without a binary (the build machine's step after --emit); --device\n"
          "then picks the entries whose device name contains SPEC.\n"
          "Then point CLNORM_KERNEL_PACKAGE=DIR[:DIR...] (or clnorm_context_add_kernel_package)\n"
          "at the package. Exit status: 0 done, 1 a program failed, 2 bad usage.\n",
          out);
}

static void die_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "clnorm-compile: ");
    fprintf(stderr, fmt, arg);
    fputs("\nTry 'clnorm-compile --help'.\n", stderr);
    exit(2);
}

typedef struct job {
    clnorm_context *ctx;
    const char *dir, *command;
    clnorm_package_mode mode;
    struct seen {
        clnorm_program which;
        char options[256];
    } *seen;
    size_t nseen, built, kept, failed;
    int all_passes; /* expanding a PROBLEM of pass `all` */
} job;

static void print_line(const char *line, void *user)
{
    (void)user;
    printf("%s\n", line);
}

/* Adds one program, once per run. */
static int add(job *J, clnorm_program which, const char *options, const char *what)
{
    if (strlen(options) >= sizeof J->seen[0].options) {
        fprintf(stderr, "clnorm-compile: %s: options of %zu characters: not a clnorm program's\n",
                what, strlen(options));
        J->failed++;
        return -1;
    }
    for (size_t i = 0; i < J->nseen; ++i)
        if (J->seen[i].which == which && strcmp(J->seen[i].options, options) == 0)
            return 0;
    struct seen *grown = realloc(J->seen, (J->nseen + 1) * sizeof *grown);
    if (!grown) {
        fprintf(stderr, "clnorm-compile: out of memory\n");
        exit(1);
    }
    J->seen = grown;
    J->seen[J->nseen].which = which;
    snprintf(J->seen[J->nseen].options, sizeof J->seen[J->nseen].options, "%s", options);
    J->nseen++;
    char report[4096];
    clnorm_status s = clnorm_package_add(J->ctx, J->dir, which, options, J->mode, J->command,
                                         report, sizeof report);
    if (s) {
        fprintf(stderr, "clnorm-compile: %s (%s, for %s): %s: %s\n",
                clnorm_program_name(which), options, what, clnorm_status_string(s),
                clnorm_context_last_error(J->ctx));
        J->failed++;
        return -1;
    }
    printf("%-8s %-100s %s\n", clnorm_program_name(which), options, report);
    if (strncmp(report, "kept", 4) == 0)
        J->kept++;
    else
        J->built++;
    return 0;
}

/* The programs of one problem: by a real plan with the device's compiler, else by a plan
 * prepared without building. */
static void add_problem(job *J, const problem *p, const char *text)
{
    if (p->pass == PASS_BACKWARD && (clnorm_dtype_is_integer(p->desc.dtype) || p->desc.y_dtype)) {
        if (J->all_passes)
            return; /* `all`: the passes there are */
        fprintf(stderr, "clnorm-compile: %s: integer storage, or y stored otherwise than x, is "
                        "forward only\n", text);
        J->failed++;
        return;
    }
    clnorm_plan *plan = NULL;
    clnorm_status s = J->mode == CLNORM_PACKAGE_DEVICE
                          ? clnorm_plan_create(J->ctx, &p->desc, &plan)
                          : clnorm_plan_prepare(J->ctx, &p->desc, &plan);
    cl_program program;
    if (!s && J->mode == CLNORM_PACKAGE_DEVICE && p->pass == PASS_BACKWARD)
        s = clnorm_plan_backward_program(plan, &program);
    if (s) {
        fprintf(stderr, "clnorm-compile: %s (%s): %s: %s\n", text,
                dtype_names[p->desc.dtype], clnorm_status_string(s),
                clnorm_context_last_error(J->ctx));
        J->failed++;
        clnorm_plan_release(plan);
        return;
    }
    char options[256], what[300];
    snprintf(what, sizeof what, "%s %s", text, dtype_names[p->desc.dtype]);
    clnorm_plan_program_options(plan, CLNORM_PROGRAM_FORWARD, options, sizeof options);
    if (options[0])
        add(J, CLNORM_PROGRAM_FORWARD, options, what);
    if (p->pass == PASS_BACKWARD) {
        clnorm_plan_program_options(plan, CLNORM_PROGRAM_BACKWARD, options, sizeof options);
        if (options[0])
            add(J, CLNORM_PROGRAM_BACKWARD, options, what);
    }
    clnorm_plan_release(plan);
}

static void add_text(job *J, const char *text, int dtype_first, int dtype_last)
{
    if (strcmp(text, "copy") == 0) {
        add(J, CLNORM_PROGRAM_COPY, CLNORM_COPY_OPTIONS, "clnorm-bench's copy yardstick");
        return;
    }
    if (strcmp(text, "suite") == 0) {
        add(J, CLNORM_PROGRAM_COPY, CLNORM_COPY_OPTIONS, "clnorm-bench's copy yardstick");
        for (size_t i = 0; i < COUNT(default_suite); ++i)
            add_text(J, default_suite[i], dtype_first, dtype_last);
        return;
    }
    /* pass `all`: every pass; forward-training and backward name every program */
    char buf[256];
    const char *all = strstr(text, ":all:");
    if (all) {
        size_t head = (size_t)(all - text);
        J->all_passes = 1;
        for (int pass = 0; pass < 3; pass += 2) {
            snprintf(buf, sizeof buf, "%.*s:%s:%s", (int)head, text, pass_names[pass], all + 5);
            add_text(J, buf, dtype_first, dtype_last);
        }
        J->all_passes = 0;
        return;
    }
    for (int t = dtype_first; t <= dtype_last; ++t) {
        problem p;
        char err[256], why[600];
        if (parse_problem(text, (clnorm_dtype)t, &p, err, sizeof err)) {
            snprintf(why, sizeof why, "%s: %s", text, err);
            die_usage("%s", why);
        }
        add_problem(J, &p, text);
    }
}

/* The lines of a CLNORM_PROGRAM_LOG file: NAME<tab>OPTIONS<tab>PROBLEM. */
static void add_log(job *J, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die_usage("--from %s: cannot open it", path);
    char line[2048];
    unsigned long number = 0;
    while (fgets(line, sizeof line, f)) {
        ++number;
        char *tab1 = strchr(line, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
        clnorm_program which;
        if (!tab2) {
            fprintf(stderr, "clnorm-compile: %s:%lu: not a program log line\n", path, number);
            J->failed++;
            continue;
        }
        *tab1 = *tab2 = '\0';
        char *problem_text = tab2 + 1;
        problem_text[strcspn(problem_text, "\r\n")] = '\0';
        if (!clnorm_program_from_name(line, &which)) {
            fprintf(stderr, "clnorm-compile: %s:%lu: unknown program '%s'\n", path, number,
                    line);
            J->failed++;
            continue;
        }
        add(J, which, tab1 + 1, problem_text);
    }
    fclose(f);
}

static const char *value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc)
        die_usage("%s needs a value", argv[*i]);
    return argv[++*i];
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *device = NULL, *dtype = "f32", *command = NULL;
    const char **from = calloc((size_t)argc, sizeof *from);
    const char **texts = calloc((size_t)argc, sizeof *texts);
    int emit = 0, nfrom = 0, ntexts = 0;
    if (!from || !texts)
        return 1;
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--out")) {
            dir = value(argc, argv, &i);
        } else if (!strcmp(a, "--device")) {
            device = value(argc, argv, &i);
        } else if (!strcmp(a, "--dtype")) {
            dtype = value(argc, argv, &i);
        } else if (!strcmp(a, "--compiler")) {
            command = value(argc, argv, &i);
        } else if (!strcmp(a, "--emit")) {
            emit = 1;
        } else if (!strcmp(a, "--from")) {
            from[nfrom++] = value(argc, argv, &i);
        } else if (a[0] == '-' && a[1] == '-') {
            die_usage("unknown option %s", a);
        } else {
            texts[ntexts++] = a;
        }
    }
    if (!dir || !*dir)
        die_usage("%s", "--out DIR is required");
    if (emit && command)
        die_usage("%s", "--emit and --compiler exclude each other");
    if (command && (!strstr(command, "{source}") || !strstr(command, "{output}")))
        die_usage("--compiler '%s': the command must name {source} and {output}", command);
    if (command && (strlen(command) >= 1000 || strpbrk(command, "\r\n")))
        die_usage("--compiler '%s': one line of under 1000 characters, please", command);
    int first, last;
    if (!strcmp(dtype, "all")) {
        first = 0, last = 2;
    } else {
        first = lookup(dtype, dtype_names, COUNT(dtype_names));
        last = first;
        if (first < 0)
            die_usage("--dtype %s: want f32, f16, bf16, u8, u16 or all", dtype);
    }
    if (ntexts == 0 && nfrom == 0) {
        if (emit)
            die_usage("%s", "--emit needs a PROBLEM or --from LOG");
        clnorm_status s = clnorm_package_build_missing(dir, command, device, print_line, NULL);
        if (s) {
            fprintf(stderr, "clnorm-compile: %s: %s\n", clnorm_status_string(s),
                    clnorm_context_last_error(NULL));
            return 1;
        }
        return 0;
    }

    job J = {0};
    J.dir = dir;
    J.command = command;
    J.mode = emit ? CLNORM_PACKAGE_EMIT : command ? CLNORM_PACKAGE_COMMAND : CLNORM_PACKAGE_DEVICE;
    clnorm_status s = clnorm_context_create(device, &J.ctx);
    if (s) {
        fprintf(stderr, "clnorm-compile: no device: %s: %s\n", clnorm_status_string(s),
                clnorm_context_last_error(NULL));
        return 1;
    }
    const clnorm_device_info *info = &J.ctx->info;
    if (J.mode == CLNORM_PACKAGE_DEVICE && !info->compiler_available) {
        fprintf(stderr,
                "clnorm-compile: %s has no compiler%s: give --compiler 'CMD' (an offline "
                "compiler), or --emit to build the sources elsewhere\n",
                info->device_name, info->compiler_forced_off ? " (CLNORM_COMPILER=0)" : "");
        clnorm_context_release(J.ctx);
        return 1;
    }
    printf("package %s for %s / %s (driver %s)\n", dir, info->platform_name, info->device_name,
           info->driver_version);
    for (int i = 0; i < ntexts; ++i)
        add_text(&J, texts[i], first, last);
    for (int i = 0; i < nfrom; ++i)
        add_log(&J, from[i]);
    printf("%zu program%s: %zu %s, %zu kept, %zu failed\n", J.built + J.kept + J.failed,
           J.built + J.kept + J.failed == 1 ? "" : "s", J.built,
           J.mode == CLNORM_PACKAGE_EMIT ? "emitted" : "built", J.kept, J.failed);
    clnorm_context_release(J.ctx);
    free(J.seen);
    free(from);
    free(texts);
    return J.failed ? 1 : 0;
}
