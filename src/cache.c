/*
 * The binary cache on disk: compiled programs keyed by everything that went into them.
 *
 * A file is  magic "CLNORMBC" | u32 format | u64 key size | key | u64 binary size | binary |
 * u64 hash of the binary  (little-endian host order: the file is only for this machine). The key
 * holds the library version, platform, device, driver, build options and the exact source; it
 * is stored whole and compared, so a hash collision cannot load a foreign binary. The name is a
 * hash of the key. Files are written to a temporary name, flushed and renamed, so readers see a
 * whole file or none; any file that does not check out is ignored and rebuilt. Failing to read
 * or write the cache is never an error: the program is simply compiled.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char magic[8] = {'C', 'L', 'N', 'O', 'R', 'M', 'B', 'C'};
#define FORMAT 1u

uint64_t clnorm_hash64(const void *data, size_t size, uint64_t seed)
{
    /* FNV-1a: names files and checks contents; the key comparison guards identity. */
    const unsigned char *p = data;
    uint64_t h = seed;
    for (size_t i = 0; i < size; ++i) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

int clnorm_cache_dir(char *out, size_t size)
{
    const char *off = getenv("CLNORM_CACHE");
    if (off && strcmp(off, "0") == 0)
        return 0;
    const char *dir = getenv("CLNORM_CACHE_DIR");
    int n;
    if (dir && *dir) {
        n = snprintf(out, size, "%s", dir);
    } else if ((dir = getenv("XDG_CACHE_HOME")) && *dir) {
        n = snprintf(out, size, "%s/clnorm", dir);
    } else if ((dir = getenv("HOME")) && *dir) {
        n = snprintf(out, size, "%s/.cache/clnorm", dir);
    } else {
        return 0;
    }
    return n > 0 && (size_t)n < size;
}

int clnorm_cache_info(char *text, size_t size)
{
    char dir[4096];
    const char *off = getenv("CLNORM_CACHE");
    int usable = 0;
    if (off && strcmp(off, "0") == 0) {
        snprintf(text, size, "off: CLNORM_CACHE=0");
    } else if (!clnorm_cache_dir(dir, sizeof dir)) {
        snprintf(text, size, "off: no folder (CLNORM_CACHE_DIR, XDG_CACHE_HOME and HOME unset)");
    } else if (!clnorm_make_dirs(dir)) {
        snprintf(text, size, "off: %s: cannot create it (%s)", dir, strerror(errno));
    } else if (access(dir, W_OK | X_OK) != 0) {
        snprintf(text, size, "off: %s: not writable (%s)", dir, strerror(errno));
    } else {
        snprintf(text, size, "on: %s", dir);
        usable = 1;
    }
    return usable;
}

static int file_path(const char *key, size_t key_size, char *out, size_t size)
{
    char dir[4096];
    if (!clnorm_cache_dir(dir, sizeof dir))
        return 0;
    unsigned long long h = (unsigned long long)clnorm_hash64(key, key_size, CLNORM_HASH_SEED);
    int n = snprintf(out, size, "%s/%016llx.bin", dir, h);
    return n > 0 && (size_t)n < size;
}

int clnorm_make_dirs(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return 0;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; ++i) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return 0;
            buf[i] = c;
        }
    }
    return 1;
}

unsigned char *clnorm_file_read(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *buf = NULL;
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        len = ftell(f);
    if (len >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)len + 1)) &&
        fread(buf, 1, (size_t)len, f) == (size_t)len) {
        buf[len] = '\0';
        *size = (size_t)len;
    } else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static int take(const unsigned char **p, const unsigned char *end, void *out, size_t n)
{
    if ((size_t)(end - *p) < n)
        return 0;
    memcpy(out, *p, n);
    *p += n;
    return 1;
}

unsigned char *clnorm_cache_load(const char *key, size_t key_size, size_t *binary_size)
{
    char path[4200];
    unsigned char *file = NULL, *binary = NULL;
    size_t len = 0;
    if (!file_path(key, key_size, path, sizeof path) || !(file = clnorm_file_read(path, &len)))
        return NULL;

    const unsigned char *p = file, *end = file + len;
    char m[8];
    uint32_t format;
    uint64_t ks, bs, check;
    if (!take(&p, end, m, 8) || memcmp(m, magic, 8) != 0 || !take(&p, end, &format, 4) ||
        format != FORMAT || !take(&p, end, &ks, 8) || ks != key_size ||
        (size_t)(end - p) < key_size || memcmp(p, key, key_size) != 0)
        goto done;
    p += key_size;
    if (!take(&p, end, &bs, 8) || bs == 0 || (uint64_t)(end - p) != bs + 8)
        goto done;
    memcpy(&check, p + bs, 8);
    if (check != clnorm_hash64(p, (size_t)bs, CLNORM_HASH_SEED))
        goto done;
    binary = malloc((size_t)bs);
    if (binary) {
        memcpy(binary, p, (size_t)bs);
        *binary_size = (size_t)bs;
    }
done:
    free(file);
    return binary;
}

void clnorm_cache_store(const char *key, size_t key_size, const unsigned char *binary,
                        size_t binary_size)
{
    char path[4200], dir[4096], tmp[4300];
    if (!file_path(key, key_size, path, sizeof path) || !clnorm_cache_dir(dir, sizeof dir) ||
        !clnorm_make_dirs(dir))
        return;
    static _Atomic unsigned counter;
    snprintf(tmp, sizeof tmp, "%s.%ld.%u.tmp", path, (long)getpid(),
             atomic_fetch_add(&counter, 1));
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return;
    uint32_t format = FORMAT;
    uint64_t ks = key_size, bs = binary_size;
    uint64_t check = clnorm_hash64(binary, binary_size, CLNORM_HASH_SEED);
    int ok = fwrite(magic, 8, 1, f) == 1 && fwrite(&format, 4, 1, f) == 1 &&
             fwrite(&ks, 8, 1, f) == 1 && fwrite(key, key_size, 1, f) == 1 &&
             fwrite(&bs, 8, 1, f) == 1 && fwrite(binary, binary_size, 1, f) == 1 &&
             fwrite(&check, 8, 1, f) == 1;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0)
        remove(tmp);
}
