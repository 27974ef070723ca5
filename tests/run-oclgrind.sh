#!/bin/sh
# Runs a device test under the Oclgrind simulator on small shapes, with its out-of-bounds and
# data-race checks. Oclgrind reports problems on stderr but keeps the exit status at 0, so the
# output is scanned: any report fails the test.
#
# The uninitialized-value plugin stays off by default: in Debian's Oclgrind 21.10 it flags every
# value one kernel reads that an earlier kernel stored, even a constant, and it crashes on
# optimized float8 loops. CLNORM_OCLGRIND_UNINITIALIZED=1 switches it on (with -O0 kernels).
set -u
test_binary="$1"
lib=""
for candidate in $(dpkg -L oclgrind 2>/dev/null | grep 'icd\.so$') \
    /usr/lib/oclgrind/liboclgrind-rt-icd.so /usr/lib/x86_64-linux-gnu/liboclgrind-rt-icd.so; do
    if [ -f "$candidate" ]; then lib="$candidate"; break; fi
done
if [ -z "$lib" ]; then
    echo "Oclgrind's ICD library not found: skipping" >&2
    exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/vendors"
echo "$lib" >"$work/vendors/oclgrind.icd"

if [ "${CLNORM_OCLGRIND_UNINITIALIZED:-0}" = 1 ]; then
    export OCLGRIND_UNINITIALIZED=1 OCLGRIND_BUILD_OPTIONS=-O0
fi
OCL_ICD_VENDORS="$work/vendors" OCLGRIND_DATA_RACES=1 CLNORM_TEST_SMALL=1 CLNORM_CACHE_DIR="$work/cache" CLNORM_TEST_DEVICE= CLNORM_DEVICE= \
    "$test_binary" >"$work/log" 2>&1
status=$?
cat "$work/log"
if grep -Eq 'Invalid (read|write)|data race|[Uu]ninitiali[sz]ed|divergence|Oclgrind - |out of bounds|Unaligned' "$work/log"; then
    echo "Oclgrind reported errors (above)" >&2
    exit 1
fi
exit $status
