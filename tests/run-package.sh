#!/bin/bash
# A device suite on kernel packages alone, as on a device without a compiler (an FPGA):
#
#   tests/run-package.sh BINDIR LOG SUITE [NAME=VALUE...]
#
# LOG lists the programs SUITE built in its device run (CLNORM_PROGRAM_LOG; the device tests
# record it, and are this test's fixture). This
#  1. packages those programs with PoCL's offline compiler: clnorm-compile --from LOG
#     --compiler 'poclcc ...';
#  2. runs SUITE (with the NAME=VALUE environment of its device run) with CLNORM_COMPILER=0,
#     CLNORM_CACHE=0 and CLNORM_KERNEL_PACKAGE naming BINDIR/package-suite (clnorm-bench's
#     default suite in every storage type, which the package_suite test builds) before the
#     suite's own package, so that both are searched.
# Exits 77 (skipped) where poclcc or an OpenCL device is missing.
set -euo pipefail
bin=$1
log=$2
suite=$3
shift 3
poclcc='poclcc -b "{options}" -o {output} {source}'
command -v poclcc > /dev/null || { echo "poclcc not found (Debian: libpocl-dev)"; exit 77; }
[ -f "$bin/package-suite/manifest" ] || { echo "$bin/package-suite: run package_suite first"; exit 1; }
[ -s "$log" ] || { echo "$log: no program log; run $(basename "$suite")'s device test first"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

env "$@" "$bin/clnorm-compile" --out "$work/package" --compiler "$poclcc" --from "$log" \
    > "$work/compile.txt" || { cat "$work/compile.txt"; exit 1; }
tail -n 1 "$work/compile.txt"
env "$@" CLNORM_COMPILER=0 CLNORM_CACHE=0 \
    CLNORM_KERNEL_PACKAGE="$bin/package-suite:$work/package" "$suite"
