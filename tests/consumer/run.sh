#!/bin/sh
# Installs the built library into a temporary prefix, then builds and runs a program against
# it twice: through CMake's find_package(clnorm CONFIG) and through pkg-config; where clnorm_mpi
# was built, a synchronized batch norm on 2 ranks too, through clnorm::clnorm_mpi and through
# pkg-config clnorm-mpi.
set -eu
source_dir="$1"
build_dir="$2"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
libdir=$(ls -d "$work"/prefix/lib* | head -n 1)

mpi=OFF
[ -e "$libdir/libclnorm_mpi.so" ] && mpi=ON
cmake -S "$source_dir/tests/consumer" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$work/prefix" \
    -DWITH_MPI=$mpi >/dev/null
cmake --build "$work/cmake" >/dev/null
status=0
"$work/cmake/consumer" || status=$?
[ $status -eq 0 ] || exit $status
if [ $mpi = ON ]; then
    # Open MPI: as root, and two ranks on whatever cores there are
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export OMPI_MCA_rmaps_base_oversubscribe=1
    mpiexec -n 2 "$work/cmake/consumer_mpi"
    PKG_CONFIG_PATH="$libdir/pkgconfig" cc -std=c11 "$source_dir/tests/consumer/mpi_main.c" \
        $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs clnorm-mpi) -lm \
        -o "$work/pc-mpi"
    LD_LIBRARY_PATH="$libdir" mpiexec -n 2 -x LD_LIBRARY_PATH "$work/pc-mpi"
fi

PKG_CONFIG_PATH="$libdir/pkgconfig" cc -std=c11 "$source_dir/tests/consumer/main.c" \
    $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs clnorm) -lm -o "$work/pc"
LD_LIBRARY_PATH="$libdir" "$work/pc"
# Only the public API is exported from the shared library.
for lib in "$libdir"/libclnorm.so "$libdir"/libclnorm_mpi.so; do
[ -e "$lib" ] || continue
if nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^clnorm_' |
    grep -v '^_' | grep -q .; then
    echo "symbols other than clnorm_* are exported:" >&2
    nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^clnorm_' >&2
    exit 1
fi
done
