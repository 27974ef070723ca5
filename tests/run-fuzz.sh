#!/bin/bash
# The API fuzzer (tests/fuzz/) for a bounded time: configures and builds its own copy of the
# library with clang (-fsanitize=fuzzer,address,undefined), then runs libFuzzer over the seed
# corpus kept in tests/fuzz/corpus/. New inputs go to a temporary folder, never into the
# repository; crashes are written to BUILD/artifacts/ (run `BUILD/fuzz_api FILE` to replay one).
#
#   tests/run-fuzz.sh [BUILD] [libFuzzer options...]   (BUILD defaults to build-fuzz)
#   tests/run-fuzz.sh --write-corpus [BUILD]          rewrite tests/fuzz/corpus/ from make_corpus.c
#
# Environment:
#   FUZZ_SECONDS=60               libFuzzer's -max_total_time
#   CLNORM_FUZZ_LEGALITY=1        the illegal-object generators (default on here; 0 turns them off)
#   CLNORM_FUZZ_COMPILE_SECONDS   compile budget (default half of FUZZ_SECONDS): past it, inputs
#                                 that need a program not built in this run are skipped
#   FUZZ_PRIVATE_CACHE=1          programs cached in BUILD/cache, not clnorm's and PoCL's default
#                                 caches (which the device tests fill)
#   CLNORM_FUZZ_FAILED_EVENTS=1   failed user events in wait lists (default off)
#   FUZZ_CC=clang                 the compiler
# Exits 77 (skipped) where clang, its libFuzzer runtime or an OpenCL device is missing.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)

write_corpus=0
if [ "${1:-}" = --write-corpus ]; then
    write_corpus=1
    shift
fi
build=${1:-$src/build-fuzz}
[ $# -gt 0 ] && shift
mkdir -p "$build"
build=$(cd "$build" && pwd)

cc=${FUZZ_CC:-clang}
if ! command -v "$cc" >/dev/null 2>&1; then
    echo "run-fuzz: no $cc, skipping" >&2
    exit 77
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '%s\n' 'int LLVMFuzzerTestOneInput(const char *d, long n);' \
    'int LLVMFuzzerTestOneInput(const char *d, long n) { return d && n < 0; }' >"$probe/probe.c"
if ! "$cc" -fsanitize=fuzzer,address,undefined "$probe/probe.c" -o "$probe/probe" \
    2>"$probe/log"; then
    echo "run-fuzz: $cc cannot link -fsanitize=fuzzer,address,undefined" \
         "(Debian: libclang-rt-14-dev), skipping" >&2
    cat "$probe/log" >&2
    exit 77
fi

generator=()
if [ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then
    generator=(-G Ninja)
fi
cmake -S "$src/tests/fuzz" -B "$build" "${generator[@]}" -DCMAKE_C_COMPILER="$cc" >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)"

if [ "$write_corpus" = 1 ]; then
    mkdir -p "$src/tests/fuzz/corpus"
    exec "$build/make_corpus" "$src/tests/fuzz/corpus"
fi

seconds=${FUZZ_SECONDS:-60}
export CLNORM_FUZZ_LEGALITY=${CLNORM_FUZZ_LEGALITY:-1}
export CLNORM_FUZZ_COMPILE_SECONDS=${CLNORM_FUZZ_COMPILE_SECONDS:-$((seconds / 2))}
# Compiled programs come from, and go to, clnorm's disk cache and PoCL's own: by default the
# ones every other test uses, so that a run after the device tests finds most programs built
# (the fuzzer's library is the same source, so the same cache keys). FUZZ_PRIVATE_CACHE=1
# keeps them in BUILD/cache instead.
if [ "${FUZZ_PRIVATE_CACHE:-0}" != 0 ]; then
    export CLNORM_CACHE_DIR=$build/cache/clnorm
    export POCL_CACHE_DIR=$build/cache/pocl
    mkdir -p "$CLNORM_CACHE_DIR" "$POCL_CACHE_DIR"
fi
mkdir -p "$build/artifacts"
# PoCL, its LLVM and the ICD loader keep allocations for the process's lifetime: the CI's
# suppressions, so that only leaks with clnorm's own frames fail the run (libFuzzer looks for
# leaks after every input that allocated more than it freed). The fast unwinder stops at
# LLVM's frames, which have no frame pointers, so an LLVM allocation shows only malloc and
# operator new: clnorm is C, and no allocation through libstdc++ is its own.
supp=$build/lsan.supp
{ cat "$src/.ci/lsan.supp"; echo "leak:libstdc++"; } >"$supp"
# PoCL's LLVM installs its own handlers for SIGABRT and SIGSEGV, which would end the process
# without a report or a reproducer: AddressSanitizer keeps those signals (allow_user_segv_handler=0)
# and reports abort() too, so that libFuzzer writes the input out.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:handle_abort=1:allow_user_segv_handler=0}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

new_corpus=$(mktemp -d)
trap 'rm -rf "$probe" "$new_corpus"' EXIT
echo "run-fuzz: ${seconds}s, legality generators ${CLNORM_FUZZ_LEGALITY}, compile budget" \
     "${CLNORM_FUZZ_COMPILE_SECONDS}s, program cache ${CLNORM_CACHE_DIR:-the default}" >&2
# -rss_limit_mb: PoCL's compiler under AddressSanitizer needs more than libFuzzer's 2 GB default.
status=0
"$build/fuzz_api" -max_total_time="$seconds" -max_len=64 -rss_limit_mb=4096 -timeout=120 \
    -report_slow_units=600 -print_final_stats=1 -artifact_prefix="$build/artifacts/" "$@" \
    "$new_corpus" "$src/tests/fuzz/corpus" || status=$?
if [ "$status" = 77 ]; then
    exit 77
fi
if [ "$status" != 0 ]; then
    echo "run-fuzz: the fuzzer failed ($status); reproducers in $build/artifacts/" >&2
fi
exit "$status"
