#!/bin/sh
# Shows that Oclgrind's uninitialized-value plugin still crashes on optimized kernels, and
# that the -cl-opt-disable run-oclgrind.sh uses for that pass still avoids it:
#   crash.sh KEEP_BUFFERS PROGRAM [ARG...]
# PROGRAM is a reproducer in this folder that prints "all results right". It must run clean
# with the data-race pass (default -Oz) and with the uninitialized-value pass at
# -cl-opt-disable, and crash in the uninitialized-value pass at -Oz. If an Oclgrind release
# stops crashing, this fails: the build option can then go.
set -u
here=$(cd "$(dirname "$0")" && pwd)
keep="$1"
shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$here/../run-oclgrind.sh" "$@" >"$work/races" 2>&1
status=$?
[ $status -eq 77 ] && exit 77
if [ $status -ne 0 ] || ! grep -q 'all results right' "$work/races"; then
    cat "$work/races"
    echo "the reproducer fails without the uninitialized-value plugin" >&2
    exit 1
fi
"$here/../run-oclgrind.sh" --uninitialized "$keep" "$@" >"$work/opt-disable" 2>&1
status=$?
if [ $status -ne 0 ] || ! grep -q 'all results right' "$work/opt-disable"; then
    cat "$work/opt-disable"
    echo "the reproducer fails in the uninitialized-value pass at -cl-opt-disable" >&2
    exit 1
fi
CLNORM_OCLGRIND_BUILD_OPTIONS='' "$here/../run-oclgrind.sh" --uninitialized "$keep" "$@" \
    >"$work/optimized" 2>&1
status=$?
if [ $status -lt 128 ] || grep -q 'all results right' "$work/optimized"; then
    cat "$work/optimized"
    echo "Oclgrind no longer crashes at -Oz (status $status): update run-oclgrind.sh" >&2
    exit 1
fi
echo "at -Oz the uninitialized-value plugin crashed (status $status); at -cl-opt-disable it ran"
