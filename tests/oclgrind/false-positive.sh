#!/bin/sh
# Shows that an Oclgrind false positive is still there, and what keep_buffers does about it:
#   false-positive.sh KEEP_BUFFERS removed|kept KERNEL MESSAGE PROGRAM [ARG...]
# PROGRAM is a plain-OpenCL reproducer (this folder) that checks its own results and prints
# "all results right". Under run-oclgrind.sh's uninitialized-value pass without keep_buffers,
# Oclgrind must report MESSAGE in KERNEL while the results are right (so the report is false).
# With keep_buffers, "removed" requires that nothing is reported, "kept" that MESSAGE in KERNEL
# still is (a class tests must avoid). If an Oclgrind release changes either, this fails: the
# explanation in run-oclgrind.sh is then out of date.
set -u
here=$(cd "$(dirname "$0")" && pwd)
keep="$1" expect="$2" kernel="$3" message="$4"
shift 4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$here/../run-oclgrind.sh" --uninitialized none "$@" >"$work/bare" 2>&1
status=$?
[ $status -eq 77 ] && exit 77
if ! grep -q 'all results right' "$work/bare"; then
    cat "$work/bare"
    echo "the reproducer's results are wrong: the reports may be true" >&2
    exit 1
fi
if ! grep -F -A1 "$message" "$work/bare" | grep -q "Kernel: $kernel\$"; then
    cat "$work/bare"
    echo "Oclgrind no longer reports \"$message\" in $kernel here: update run-oclgrind.sh" >&2
    exit 1
fi
echo "without keep_buffers: $(grep -c -F "$message" "$work/bare") false reports of \"$message\" in $kernel"

"$here/../run-oclgrind.sh" --uninitialized "$keep" "$@" >"$work/kept" 2>&1
status=$?
if ! grep -q 'all results right' "$work/kept"; then
    cat "$work/kept"
    echo "with keep_buffers the reproducer's results are wrong" >&2
    exit 1
fi
if [ "$expect" = removed ]; then
    if [ $status -ne 0 ]; then
        cat "$work/kept"
        echo "with keep_buffers Oclgrind still reports (status $status)" >&2
        exit 1
    fi
    echo "with keep_buffers: none"
elif grep -F -A1 "$message" "$work/kept" | grep -q "Kernel: $kernel\$"; then
    echo "with keep_buffers: still $(grep -c -F "$message" "$work/kept")"
else
    cat "$work/kept"
    echo "keep_buffers now removes \"$message\" in $kernel: update run-oclgrind.sh" >&2
    exit 1
fi
