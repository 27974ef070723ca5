/*
 * Kernel packages: read-only folders of programs built ahead of time, for devices without a
 * compiler (FPGAs) and to spare a first run's compile anywhere.
 *
 * A package is a folder holding `manifest` and the files it names. The manifest is text: a
 * "clnorm-package 1" line, then one block per program,
 *
 *   [program]
 *   name = forward                       forward, backward or copy (program.c)
 *   options = -cl-std=CL1.2 -DCLNORM_DTYPE=0 ...
 *   source = forward-<source hash>.cl   the self-contained source the options build
 *   source_hash = <16 hex digits>        FNV-1a of the source bytes
 *   source_bytes = <n>
 *   library = 0.2.0                      clnorm's version
 *   platform = / device = / vendor = / driver =    what it was built for
 *   binary = forward-<entry hash>.bin    absent from the folder until built (--emit)
 *   binary_hash = / binary_bytes =       set when clnorm-compile built or found the binary
 *   built_with = device | the offline compiler's command
 *
 * Lines are "key = value", a value running to the end of its line (CRLF ends are taken);
 * readers ignore keys they do not know, and clnorm-compile rewrites only the keys above.
 * A plan takes an entry whose name, options,
 * source hash, library version, platform, device and vendor all equal its own; the driver
 * version is recorded but not required (the driver itself refuses a binary it cannot run, and
 * such a binary is skipped). Only a binary whose size and hash are the manifest's is handed to
 * the driver: one that differs, or that the manifest does not record (copied in by hand and
 * not yet recorded by clnorm-compile), is skipped.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANIFEST "manifest"
#define MAGIC_LINE "clnorm-package 1"

typedef struct entry {
    char name[16], options[512], source[96], source_hash[24], library[32];
    char platform[256], device[256], vendor[256], driver[256];
    char binary[160], binary_hash[24], built_with[1024];
    unsigned long long source_bytes, binary_bytes;
} entry;

static const struct {
    const char *key;
    size_t offset, size;
} text_fields[] = {
#define FIELD(f) {#f, offsetof(entry, f), sizeof(((entry *)0)->f)}
    FIELD(name),     FIELD(options), FIELD(source), FIELD(source_hash), FIELD(library),
    FIELD(platform), FIELD(device),  FIELD(vendor), FIELD(driver),      FIELD(binary),
    FIELD(binary_hash), FIELD(built_with),
#undef FIELD
};

static void set_text(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src);
}

static void hash_hex(const void *data, size_t size, char out[24])
{
    snprintf(out, 24, "%016llx",
             (unsigned long long)clnorm_hash64(data, size, CLNORM_HASH_SEED));
}

/* The manifest's entries; 0 with *count = 0 for a folder without one. Returns -1 on a manifest
 * that is not one (the wrong first line), or out of memory. */
static int read_manifest(const char *dir, entry **out, size_t *count)
{
    char path[4200];
    *out = NULL;
    *count = 0;
    snprintf(path, sizeof path, "%s/" MANIFEST, dir);
    size_t size;
    char *text = (char *)clnorm_file_read(path, &size);
    if (!text)
        return 0;
    entry *list = NULL;
    size_t n = 0;
    int status = 0, first = 1;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r')
            line[--len] = '\0';
        if (first) {
            first = 0;
            if (strcmp(line, MAGIC_LINE) != 0) {
                status = -1;
                break;
            }
            continue;
        }
        if (len == 0 || line[0] == '#')
            continue;
        if (strcmp(line, "[program]") == 0) {
            entry *grown = realloc(list, (n + 1) * sizeof *list);
            if (!grown) {
                status = -1;
                break;
            }
            list = grown;
            memset(&list[n++], 0, sizeof *list);
            continue;
        }
        char *eq = strstr(line, " = ");
        if (!eq || n == 0)
            continue; /* not a field of a block: ignored */
        *eq = '\0';
        const char *value = eq + 3;
        entry *e = &list[n - 1];
        if (strcmp(line, "source_bytes") == 0)
            e->source_bytes = strtoull(value, NULL, 10);
        else if (strcmp(line, "binary_bytes") == 0)
            e->binary_bytes = strtoull(value, NULL, 10);
        for (size_t i = 0; i < sizeof text_fields / sizeof text_fields[0]; ++i)
            if (strcmp(line, text_fields[i].key) == 0)
                set_text((char *)e + text_fields[i].offset, text_fields[i].size, value);
    }
    free(text);
    if (status != 0) {
        free(list);
        return -1;
    }
    *out = list;
    *count = n;
    return 0;
}

static int write_manifest(const char *dir, const entry *list, size_t count)
{
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/" MANIFEST, dir);
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return 0;
    fprintf(f, MAGIC_LINE "\n# clnorm kernel package, written by clnorm-compile: one block per "
               "program\n");
    for (size_t i = 0; i < count; ++i) {
        const entry *e = &list[i];
        fprintf(f, "\n[program]\n");
        for (size_t k = 0; k < sizeof text_fields / sizeof text_fields[0]; ++k) {
            const char *v = (const char *)e + text_fields[k].offset;
            if (*v)
                fprintf(f, "%s = %s\n", text_fields[k].key, v);
            if (strcmp(text_fields[k].key, "source_hash") == 0)
                fprintf(f, "source_bytes = %llu\n", e->source_bytes);
            if (strcmp(text_fields[k].key, "binary_hash") == 0 && e->binary_hash[0])
                fprintf(f, "binary_bytes = %llu\n", e->binary_bytes);
        }
    }
    int ok = fflush(f) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return 0;
    }
    return 1;
}

/* The entry a plan on ctx's device would look for. */
static void describe(const clnorm_context *ctx, clnorm_program which, const char *options,
                     const char *source, size_t source_size, entry *e)
{
    const clnorm_device_info *d = &ctx->info;
    memset(e, 0, sizeof *e);
    set_text(e->name, sizeof e->name, clnorm_program_name(which));
    set_text(e->options, sizeof e->options, options);
    hash_hex(source, source_size, e->source_hash);
    e->source_bytes = source_size;
    set_text(e->library, sizeof e->library, CLNORM_VERSION_STRING);
    set_text(e->platform, sizeof e->platform, d->platform_name);
    set_text(e->device, sizeof e->device, d->device_name);
    set_text(e->vendor, sizeof e->vendor, d->device_vendor);
    set_text(e->driver, sizeof e->driver, d->driver_version);
    snprintf(e->source, sizeof e->source, "%s-%s.cl", e->name, e->source_hash);
    /* the binary's name: a hash of everything the entry is matched on */
    char id[2048], h[24];
    int n = snprintf(id, sizeof id, "%s\n%s\n%s\n%s\n%s\n%s\n%s", e->name, e->options,
                     e->source_hash, e->library, e->platform, e->device, e->vendor);
    hash_hex(id, n > 0 ? (size_t)n : 0, h);
    snprintf(e->binary, sizeof e->binary, "%s-%s.bin", e->name, h);
}

static int same_program(const entry *a, const entry *b)
{
    return !strcmp(a->name, b->name) && !strcmp(a->options, b->options) &&
           !strcmp(a->source_hash, b->source_hash) && a->source_bytes == b->source_bytes &&
           !strcmp(a->library, b->library) && !strcmp(a->platform, b->platform) &&
           !strcmp(a->device, b->device) && !strcmp(a->vendor, b->vendor);
}

/* A binary file of the package that checks out against its entry; NULL otherwise, with why. */
static unsigned char *entry_binary(const char *dir, const entry *e, size_t *size,
                                   const char **why)
{
    char path[4400];
    if (!e->binary[0] || strchr(e->binary, '/')) {
        *why = "no binary named";
        return NULL;
    }
    snprintf(path, sizeof path, "%s/%s", dir, e->binary);
    unsigned char *bin = clnorm_file_read(path, size);
    if (!bin) {
        *why = "binary missing (emitted, not yet built)";
        return NULL;
    }
    /* A driver handed a damaged binary may crash (PoCL 3.1 does on a truncated one), so only
     * the bytes clnorm-compile recorded are handed over. */
    char h[24];
    hash_hex(bin, *size, h);
    if (!e->binary_hash[0]) {
        free(bin);
        *why = "binary not recorded in the manifest (put there by hand? `clnorm-compile --out "
               "DIR` records the binaries a folder holds)";
        return NULL;
    }
    if (strcmp(h, e->binary_hash) != 0 || *size != e->binary_bytes) {
        free(bin);
        *why = "binary corrupt (its size or hash differs from the manifest's)";
        return NULL;
    }
    return bin;
}

clnorm_status clnorm_context_add_kernel_package(clnorm_context *ctx, const char *dir)
{
    if (!ctx)
        return clnorm_fail(NULL, CLNORM_ERROR_INVALID_ARGUMENT, "ctx: NULL");
    clnorm_error_clear(ctx);
    if (!dir || !*dir)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "dir: NULL or empty");
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "dir: %s: not a folder (%s)", dir,
                           stat(dir, &st) != 0 ? strerror(errno) : "a file");
    entry *list;
    size_t count;
    if (read_manifest(dir, &list, &count) != 0)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "dir: %s/" MANIFEST " is not a clnorm package manifest (its first "
                           "line must be \"" MAGIC_LINE "\")",
                           dir);
    free(list);
    return clnorm_context_add_package_dir(ctx, dir);
}

unsigned char *clnorm_package_find(clnorm_context *ctx, clnorm_program which,
                                   const char *options, const char *source, size_t source_size,
                                   size_t skip, size_t *binary_size, clnorm_package_hint *hint)
{
    entry want;
    describe(ctx, which, options, source, source_size, &want);
    size_t seen = 0;
    for (size_t p = 0; p < ctx->npackages; ++p) {
        const char *dir = ctx->packages[p];
        entry *list;
        size_t count;
        if (read_manifest(dir, &list, &count) != 0) {
            if (hint && !hint->skipped[0])
                snprintf(hint->skipped, sizeof hint->skipped, "%s: not a package manifest",
                         dir);
            continue;
        }
        for (size_t i = 0; i < count; ++i) {
            const entry *e = &list[i];
            int same_device = !strcmp(e->platform, want.platform) &&
                              !strcmp(e->device, want.device) && !strcmp(e->vendor, want.vendor);
            if (hint && same_device && e->built_with[0] && strcmp(e->built_with, "device") &&
                !hint->compiler[0])
                set_text(hint->compiler, sizeof hint->compiler, e->built_with);
            if (!same_program(e, &want))
                continue;
            const char *why = NULL;
            unsigned char *bin = entry_binary(dir, e, binary_size, &why);
            if (bin && seen++ < skip) { /* handed over before, and refused */
                free(bin);
                continue;
            }
            if (bin) {
                if (hint)
                    snprintf(hint->found, sizeof hint->found, "%s/%s", dir, e->binary);
                free(list);
                return bin;
            }
            if (hint && !hint->skipped[0])
                snprintf(hint->skipped, sizeof hint->skipped, "%s/%s: %s", dir, e->binary, why);
        }
        free(list);
    }
    return NULL;
}

/* ---- writing packages (clnorm-compile) ------------------------------------------------- */

static int write_file(const char *path, const void *data, size_t size)
{
    char tmp[4500];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return 0;
    int ok = fwrite(data, 1, size, f) == size;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return 0;
    }
    return 1;
}

char *clnorm_shell_quote(const char *text)
{
    size_t n = 3;
    for (const char *c = text; *c; ++c)
        n += *c == '\'' ? 4 : 1;
    char *out = malloc(n);
    if (!out)
        return NULL;
    char *o = out;
    *o++ = '\'';
    for (const char *c = text; *c; ++c) {
        if (*c == '\'') {
            memcpy(o, "'\\''", 4);
            o += 4;
        } else {
            *o++ = *c;
        }
    }
    *o++ = '\'';
    *o = '\0';
    return out;
}

/* cmd with {source} and {output} replaced by the paths, shell-quoted, and {options} by the
 * options as they are (they hold no quotes); NULL when out of memory. */
static char *expand(const char *cmd, const char *source_path, const char *options,
                    const char *output_path)
{
    char *source = clnorm_shell_quote(source_path), *output = clnorm_shell_quote(output_path);
    if (!source || !output) {
        free(source);
        free(output);
        return NULL;
    }
    size_t cap = strlen(cmd) + 1, n = 0;
    for (const char *c = cmd; *c; ++c)
        if (*c == '{')
            cap += strlen(source) + strlen(options) + strlen(output);
    char *out = malloc(cap);
    if (!out) {
        free(source);
        free(output);
        return NULL;
    }
    for (const char *c = cmd; *c;) {
        const char *with = NULL;
        size_t skip = 0;
        if (!strncmp(c, "{source}", 8))
            with = source, skip = 8;
        else if (!strncmp(c, "{options}", 9))
            with = options, skip = 9;
        else if (!strncmp(c, "{output}", 8))
            with = output, skip = 8;
        if (with) {
            memcpy(out + n, with, strlen(with));
            n += strlen(with);
            c += skip;
        } else {
            out[n++] = *c++;
        }
    }
    out[n] = '\0';
    free(source);
    free(output);
    return out;
}

/* Runs the offline compiler for e: its source to its binary. Its output goes to report on
 * failure. Returns 1 when the binary was written. */
static int run_compiler(const char *dir, const entry *e, const char *command, char *report,
                        size_t report_size)
{
    char source[4400], output[4400];
    snprintf(source, sizeof source, "%s/%s", dir, e->source);
    snprintf(output, sizeof output, "%s/%s", dir, e->binary);
    remove(output);
    char *cmd = expand(command, source, e->options, output);
    if (!cmd) {
        snprintf(report, report_size, "out of memory");
        return 0;
    }
    /* the whole command's output, of every part of it, into the report */
    size_t room = strlen(cmd) + 16;
    char *full = malloc(room);
    FILE *p = full ? (snprintf(full, room, "{ %s\n} 2>&1", cmd), popen(full, "r")) : NULL;
    size_t used = (size_t)snprintf(report, report_size, "%s\n", cmd);
    if (used >= report_size)
        used = report_size - 1;
    int rc = -1;
    if (p) {
        char buf[512];
        size_t got;
        while ((got = fread(buf, 1, sizeof buf, p)) > 0) {
            size_t take = got < report_size - 1 - used ? got : report_size - 1 - used;
            memcpy(report + used, buf, take);
            used += take;
        }
        report[used] = '\0';
        rc = pclose(p);
    }
    free(full);
    free(cmd);
    struct stat st;
    if (rc != 0 || stat(output, &st) != 0 || st.st_size == 0) {
        remove(output); /* no half-written binary is left to be taken for a built one */
        size_t len = strlen(report);
        snprintf(report + len, report_size - len, "%s",
                 rc != 0 ? "(the command failed)" : "(the command wrote no binary)");
        return 0;
    }
    return 1;
}

/* Fills the entry's binary_hash and binary_bytes from its file. */
static int seal(const char *dir, entry *e)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, e->binary);
    size_t size;
    unsigned char *bin = clnorm_file_read(path, &size);
    if (!bin || size == 0) {
        free(bin);
        return 0;
    }
    hash_hex(bin, size, e->binary_hash);
    e->binary_bytes = size;
    free(bin);
    return 1;
}

clnorm_status clnorm_package_add(clnorm_context *ctx, const char *dir, clnorm_program which,
                                 const char *options, clnorm_package_mode mode,
                                 const char *command, char *report, size_t report_size)
{
    clnorm_status status = CLNORM_SUCCESS;
    char *source = NULL;
    size_t source_size = 0;
    entry *list = NULL, want;
    size_t count = 0;
    report[0] = '\0';
    if (!clnorm_make_dirs(dir))
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "--out %s: cannot create it (%s)",
                           dir, strerror(errno));
    if (read_manifest(dir, &list, &count) != 0)
        return clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                           "--out %s: its " MANIFEST " is not a clnorm package manifest", dir);
    if ((status = clnorm_program_source(ctx, which, &source, &source_size)))
        goto done;
    describe(ctx, which, options, source, source_size, &want);
    size_t at = count;
    for (size_t i = 0; i < count; ++i)
        if (same_program(&list[i], &want))
            at = i;
    if (at < count) {
        size_t size;
        const char *why;
        unsigned char *bin = entry_binary(dir, &list[at], &size, &why);
        free(bin);
        if (bin || mode == CLNORM_PACKAGE_EMIT) {
            snprintf(report, report_size, "kept %s", list[at].binary);
            free(list); /* what the package holds stays, and its manifest is not rewritten */
            free(source);
            return CLNORM_SUCCESS;
        }
    } else {
        entry *grown = realloc(list, (count + 1) * sizeof *list);
        if (!grown) {
            status = clnorm_fail(ctx, CLNORM_ERROR_OUT_OF_MEMORY, "manifest: out of memory");
            goto done;
        }
        list = grown;
        list[count++] = want;
    }
    entry *e = &list[at];
    /* (re)built: this library's names, and the driver it is built with now */
    set_text(e->source, sizeof e->source, want.source);
    set_text(e->binary, sizeof e->binary, want.binary);
    set_text(e->driver, sizeof e->driver, want.driver);
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, e->source);
    if (!write_file(path, source, source_size)) {
        status = clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "--out: cannot write %s (%s)",
                             path, strerror(errno));
        goto done;
    }
    e->binary_hash[0] = '\0';
    e->built_with[0] = '\0';
    if (mode == CLNORM_PACKAGE_DEVICE) {
        cl_program program;
        unsigned char *bin = NULL;
        size_t size = 0;
        if ((status = clnorm_program_get(ctx, which, options, NULL, &program)))
            goto done;
        if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) !=
                CL_SUCCESS ||
            size == 0 || !(bin = malloc(size)) ||
            clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) !=
                CL_SUCCESS) {
            free(bin);
            status = clnorm_fail(ctx, CLNORM_ERROR_UNSUPPORTED,
                                 "the device's driver gives no binary for program %s", e->name);
            goto done;
        }
        snprintf(path, sizeof path, "%s/%s", dir, e->binary);
        int ok = write_file(path, bin, size);
        free(bin);
        if (!ok) {
            status = clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT,
                                 "--out: cannot write %s (%s)", path, strerror(errno));
            goto done;
        }
        set_text(e->built_with, sizeof e->built_with, "device");
    } else if (mode == CLNORM_PACKAGE_COMMAND) {
        if (!run_compiler(dir, e, command, report, report_size)) {
            status = clnorm_fail(ctx, CLNORM_ERROR_BUILD_FAILED,
                                 "--compiler: building %s failed:\n", e->binary);
            clnorm_error_append(ctx, report);
            report[0] = '\0';
            goto done;
        }
        set_text(e->built_with, sizeof e->built_with, command);
    }
    if (mode != CLNORM_PACKAGE_EMIT && !seal(dir, e)) {
        status = clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "--out: cannot read back %s",
                             e->binary);
        goto done;
    }
    snprintf(report, report_size, "%s %s", mode == CLNORM_PACKAGE_EMIT ? "emitted" : "built",
             mode == CLNORM_PACKAGE_EMIT ? e->source : e->binary);
done:
    if (!status && !write_manifest(dir, list, count))
        status = clnorm_fail(ctx, CLNORM_ERROR_INVALID_ARGUMENT, "--out: cannot write %s/" MANIFEST,
                             dir);
    free(list);
    free(source);
    return status;
}

clnorm_status clnorm_package_build_missing(const char *dir, const char *command,
                                           const char *device,
                                           void (*report)(const char *line, void *user),
                                           void *user)
{
    entry *list;
    size_t count;
    if (read_manifest(dir, &list, &count) != 0)
        return clnorm_fail(NULL, CLNORM_ERROR_INVALID_ARGUMENT,
                           "--out %s: its " MANIFEST " is not a clnorm package manifest", dir);
    if (count == 0) {
        free(list);
        return clnorm_fail(NULL, CLNORM_ERROR_INVALID_ARGUMENT,
                           "--out %s: no manifest, or one listing no programs", dir);
    }
    clnorm_status status = CLNORM_SUCCESS;
    size_t missing = 0;
    char *out = malloc(65536);
    for (size_t i = 0; out && i < count && !status; ++i) {
        entry *e = &list[i];
        size_t size;
        const char *why;
        unsigned char *bin = entry_binary(dir, e, &size, &why);
        free(bin);
        if (bin || strchr(e->source, '/') || strchr(e->binary, '/') ||
            (device && !strstr(e->device, device)))
            continue;
        char line[1200];
        if (!command && !e->binary_hash[0] && seal(dir, e)) { /* copied in: recorded as it is */
            snprintf(line, sizeof line, "recorded %s (%s for %s)", e->binary, e->name,
                     e->device);
            if (report)
                report(line, user);
            continue;
        }
        if (!command) {
            snprintf(line, sizeof line, "missing %s (%s for %s): build %s with \"%s\"", e->binary,
                     e->name, e->device, e->source, e->options);
            missing++;
            if (report)
                report(line, user);
            continue;
        }
        e->binary_hash[0] = '\0';
        if (!run_compiler(dir, e, command, out, 65536)) {
            status = clnorm_fail(NULL, CLNORM_ERROR_BUILD_FAILED,
                                 "--compiler: building %s failed:\n", e->binary);
            clnorm_error_append(NULL, out);
        } else if (!seal(dir, e)) {
            status = clnorm_fail(NULL, CLNORM_ERROR_INVALID_ARGUMENT,
                                 "--out: cannot read back %s", e->binary);
        } else {
            set_text(e->built_with, sizeof e->built_with, command);
            snprintf(line, sizeof line, "built %s (%s for %s)", e->binary, e->name, e->device);
            if (report)
                report(line, user);
        }
    }
    if (!out)
        status = clnorm_fail(NULL, CLNORM_ERROR_OUT_OF_MEMORY, "out of memory");
    if (!write_manifest(dir, list, count) && !status)
        status = clnorm_fail(NULL, CLNORM_ERROR_INVALID_ARGUMENT,
                             "--out: cannot write %s/" MANIFEST, dir);
    if (!status && missing)
        status = clnorm_fail(NULL, CLNORM_ERROR_UNSUPPORTED,
                             "%zu program%s of %s still without a binary (give --compiler)",
                             missing, missing == 1 ? "" : "s", dir);
    free(out);
    free(list);
    return status;
}
