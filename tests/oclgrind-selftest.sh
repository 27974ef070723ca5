#!/bin/sh
# Proves the Oclgrind scan can fail.
#
#   oclgrind-selftest.sh TEST
#       runs a device test with apply passes that touch one element past the tensor, and
#       succeeds only if run-oclgrind.sh reports the write.
#   oclgrind-selftest.sh --uninitialized KEEP_BUFFERS TEST
#       runs a device test that makes a BATCH forward plan (test_api: fast) with stats_finalize
#       merging into a mean that starts uninitialized, and succeeds only if run-oclgrind.sh's
#       uninitialized-value pass, with keep_buffers preloaded, reports the stored mean at its
#       line of stats.cl. So the shim hides nothing real, and the quotes are right.
set -u
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here"/../kernels/* "$work"/
if [ "${1:-}" = --uninitialized ]; then
    sed -i 's/float n = 0.0f, mean = 0.0f, m2 = 0.0f;/float n = 0.0f, mean, m2 = 0.0f;/' \
        "$work/stats.cl"
    grep -q 'float n = 0.0f, mean, m2 = 0.0f;' "$work/stats.cl" ||
        { echo "could not plant the bug" >&2; exit 1; }
    CLNORM_KERNEL_DIR="$work" "$here/run-oclgrind.sh" --uninitialized "$2" "$3" >"$work/log" 2>&1
    status=$?
    [ $status -eq 77 ] && exit 77
    # The report must name the line that stores the mean, and quote it from stats.cl (not
    # from the concatenated program).
    if [ $status -ne 0 ] &&
        grep -A1 '^Uninitialized value written to global memory' "$work/log" |
        grep -q 'Kernel: stats_finalize' &&
        grep -A1 'At line [0-9]* (column [0-9]*) of stats.cl:' "$work/log" |
        grep -q 'stats\[gi\] = mean;'; then
        echo "the planted uninitialized value was reported, at its line of stats.cl"
        exit 0
    fi
    head -n 60 "$work/log"
    echo "the planted uninitialized value went unnoticed" >&2
    exit 1
fi
sed -i 's/w->end = min(total, w->i + chunk);/w->end = min(total + 1, w->i + chunk);/' "$work/common.clh"
grep -q 'min(total + 1' "$work/common.clh" || { echo "could not plant the bug" >&2; exit 1; }
CLNORM_KERNEL_DIR="$work" "$here/run-oclgrind.sh" "$1" >"$work/log" 2>&1
status=$?
[ $status -eq 77 ] && exit 77
if [ $status -ne 0 ] && grep -q 'Invalid write' "$work/log"; then
    echo "the planted out-of-bounds write was reported"
    exit 0
fi
echo "the planted out-of-bounds write went unnoticed" >&2
exit 1
