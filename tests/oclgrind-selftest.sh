#!/bin/sh
# Proves the Oclgrind scan can fail: runs a device test with apply passes that touch one
# element past the tensor, and succeeds only if run-oclgrind.sh reports it.
set -u
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here"/../kernels/* "$work"/
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
