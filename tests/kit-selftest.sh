#!/bin/sh
# tools/make-kit packs a kit that runs from anywhere: made into a temporary folder and moved, its
# programs start with the kit's own libraries (exit 77, skipped, where there is no OpenCL
# device), and its run script refuses to run without a results folder it can make.
set -eu
source_dir="$1"
build_dir="$2"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$source_dir/tools/make-kit" "$build_dir" "$work/made" 2>"$work/make.log" ||
    { cat "$work/make.log" >&2; exit 1; }
# It will not replace a folder that is not a kit.
mkdir "$work/other"
if "$source_dir/tools/make-kit" "$build_dir" "$work/other" 2>/dev/null; then
    echo "make-kit replaced a folder that is not a kit" >&2
    exit 1
fi
mv "$work/made" "$work/kit"
for f in run bin/clnorm-bench bin/clnorm-info bin/test_forward bin/test_backward bin/test_api \
    bin/test_cache lib/libOpenCL.so.1 kernels/stats.cl kernels/common.clh; do
    [ -e "$work/kit/$f" ] || { echo "kit lacks $f" >&2; exit 1; }
done
for args in "" "/proc/no/such/folder"; do
    if "$work/kit/run" $args >/dev/null 2>&1; then
        echo "run ${args:-without RESULTS} should fail" >&2
        exit 1
    fi
done
export LD_LIBRARY_PATH="$work/kit/lib"
"$work/kit/bin/clnorm-info" >"$work/info.txt" 2>&1 || { cat "$work/info.txt" >&2; exit 1; }
grep -q "^platform 0" "$work/info.txt" || exit 77
"$work/kit/bin/clnorm-bench" layer:forward-training:nchw:4x32x1 >/dev/null
