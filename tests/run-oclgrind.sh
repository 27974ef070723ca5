#!/bin/sh
# Runs a device test under the Oclgrind simulator on small shapes and fails on any report.
# Oclgrind reports problems on stderr but keeps the exit status at 0, so the output is scanned.
#
#   run-oclgrind.sh TEST [ARG...]
#       out-of-bounds and data-race checks, on kernels as Oclgrind builds them by default (-Oz).
#   run-oclgrind.sh --uninitialized KEEP_BUFFERS TEST [ARG...]
#       out-of-bounds and uninitialized-value checks. KEEP_BUFFERS is oclgrind/keep_buffers.c
#       built as a shared library, preloaded into the test; "none" runs without it, to show the
#       plugin's own false positives (oclgrind/false-positive.sh does).
#
# The uninitialized-value pass differs from the other in three ways:
#  - kernels are built with -cl-opt-disable ($CLNORM_OCLGRIND_BUILD_OPTIONS where set): on
#    Oclgrind's default -Oz code (and at -O1, -O2) the plugin segfaults, in memcpy inside
#    Uninitialized::instructionExecuted, on shufflevectors with undef mask elements such as
#    hsum4's. oclgrind/undef_shuffle_crash.cl reproduces it (ctest
#    oclgrind_crash_undef_shuffle). -O0 gives Oclgrind the same program as -cl-opt-disable
#    (identical IR with OCLGRIND_DUMP_SPIR=1); -cl-opt-disable is the OpenCL spelling.
#  - keep_buffers is preloaded, so that no buffer number is reused: otherwise a new buffer
#    inherits a released one's shadow memory and values written by one kernel read as
#    uninitialized in the next. oclgrind/reuse_stale_shadow.c reproduces that without clnorm
#    (ctest oclgrind_false_positive_stale_shadow). Without the shim, clnorm's tests got some
#    300000 such reports, in nearly every kernel; with it, none.
#  - the data-race check is off: with every buffer kept, its reset of every live buffer's
#    access records after each kernel doubles the run time and takes 2 GB. Races are checked
#    in the other pass.
#
# A second false positive keep_buffers cannot remove: a host write to part of a buffer (a
# sub-buffer, an offset, clEnqueueFillBuffer, a write map) reallocates the buffer's whole
# shadow at the size written (hostMemoryStore), and values kernels then read from it count as
# uninitialized. oclgrind/sub_buffer_write.c reproduces it (ctest
# oclgrind_false_positive_sub_buffer_write). The library makes no host writes; tests write
# their buffers whole from the host (through the parent buffer, for sub-buffers).
#
# No report is ignored. The false-positive classes are avoided at their cause rather than
# filtered: the first hits every kernel and every kind of report ("Uninitialized value written
# to global memory", "Controlflow depends on uninitialized value"), the second the apply
# kernels, so an ignore rule by kernel and message would switch the check off where it
# matters. An ignore rule added here must match one kernel and one exact message, and name the
# reproducer under tests/oclgrind/ that shows the message without clnorm.
#
# Oclgrind quotes, after "At line N of FILE:", line N of the program source it was given: the
# concatenation of the kernel files. N and FILE honour the #line before each file, the quote
# does not, so it is replaced here by line N of FILE (from CLNORM_KERNEL_DIR, else kernels/).
set -u
here=$(cd "$(dirname "$0")" && pwd)
uninitialized=0
keep=none
if [ "${1:-}" = --uninitialized ]; then
    uninitialized=1
    keep="$2"
    shift 2
fi
test_binary="$1"
shift
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

preload=""
if [ $uninitialized = 1 ]; then
    export OCLGRIND_UNINITIALIZED=1 OCLGRIND_DATA_RACES=0
    export OCLGRIND_BUILD_OPTIONS="${CLNORM_OCLGRIND_BUILD_OPTIONS--cl-opt-disable}"
    if [ "$keep" != none ]; then
        if [ ! -f "$keep" ]; then
            echo "keep_buffers library $keep not found" >&2
            exit 1
        fi
        # Under AddressSanitizer its runtime must come first.
        asan=$(ldd "$test_binary" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*libasan[^ ]*\).*/\1/p' | head -n 1)
        preload="${asan:+$asan }$keep"
    fi
else
    export OCLGRIND_DATA_RACES=1
    unset OCLGRIND_UNINITIALIZED
fi
# Every report printed, not the first 1000, so that a log shows every class.
export OCLGRIND_MAX_ERRORS=1000000000

LD_PRELOAD="${preload}${LD_PRELOAD:+ $LD_PRELOAD}" OCL_ICD_VENDORS="$work/vendors" \
    CLNORM_TEST_SMALL=1 CLNORM_CACHE_DIR="$work/cache" CLNORM_TEST_DEVICE='' CLNORM_DEVICE='' \
    "$test_binary" "$@" >"$work/log" 2>&1
status=$?
awk -v kernels="${CLNORM_KERNEL_DIR:-$here/../kernels}" '
    function load(file,    line, k) {
        loaded[file] = 1
        k = 0
        while ((getline line < (kernels "/" file)) > 0)
            text[file, ++k] = line
        close(kernels "/" file)
    }
    quoting && /^\t  / {
        print "\t  " quote
        quoting = 0
        next
    }
    {
        quoting = 0
        print
    }
    /^\tAt line [0-9]+ \(column [0-9]+\) of [^ \/]+:$/ {
        split($0, w, " ")
        file = substr(w[7], 1, length(w[7]) - 1)
        if (!(file in loaded))
            load(file)
        if ((file, w[3] + 0) in text) {
            quote = text[file, w[3] + 0]
            sub(/^[ \t]+/, "", quote)
            quoting = 1
        }
    }
' "$work/log"
if grep -Eq 'Invalid (read|write)|data race|[Uu]ninitiali[sz]ed|divergence|Oclgrind - |out of bounds|Unaligned' "$work/log"; then
    echo "Oclgrind reported errors (above)" >&2
    exit 1
fi
exit $status
