#!/bin/sh
# Installs the built library into a temporary prefix, then builds and runs a program against
# it twice: through CMake's find_package(clnorm CONFIG) and through pkg-config.
set -eu
source_dir="$1"
build_dir="$2"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
libdir=$(ls -d "$work"/prefix/lib* | head -n 1)

cmake -S "$source_dir/tests/consumer" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/cmake" >/dev/null
status=0
"$work/cmake/consumer" || status=$?
[ $status -eq 0 ] || exit $status

PKG_CONFIG_PATH="$libdir/pkgconfig" cc -std=c11 "$source_dir/tests/consumer/main.c" \
    $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs clnorm) -lm -o "$work/pc"
LD_LIBRARY_PATH="$libdir" "$work/pc"
# Only the public API is exported from the shared library.
if nm -D --defined-only "$libdir/libclnorm.so" | awk '{print $3}' | grep -v '^clnorm_' |
    grep -v '^_' | grep -q .; then
    echo "symbols other than clnorm_* are exported:" >&2
    nm -D --defined-only "$libdir/libclnorm.so" | awk '{print $3}' | grep -v '^clnorm_' >&2
    exit 1
fi
