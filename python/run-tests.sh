#!/bin/sh
# The Python package's pytest suite against a built libclnorm, for ctest (label `python`).
#   python/run-tests.sh BUILD/libclnorm.so [pytest arguments...]
# Runs from the repository root whatever the working directory. Exit 77 (ctest: skipped) when
# no Python with pyopencl, numpy and pytest is found, or OpenCL has no device.
# $PYTHON picks the interpreter; else the first of python3 on PATH and /usr/bin/python3 that
# has those modules (a pyenv or conda python3 ahead of Debian's may lack Debian's packages).
set -u
lib=${1:?usage: run-tests.sh path/to/libclnorm.so [pytest args]}
shift
here=$(cd "$(dirname "$0")" && pwd)
case $lib in /*) ;; *) lib=$(pwd)/$lib ;; esac
[ -e "$lib" ] || { echo "run-tests.sh: $lib: no such library" >&2; exit 1; }

probe='import numpy, pyopencl, pytest'
py=""
for candidate in ${PYTHON:-} python3 /usr/bin/python3; do
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c "$probe" >/dev/null 2>&1; then
        py=$candidate
        break
    fi
done
if [ -z "$py" ]; then
    echo "run-tests.sh: skipped: no python3 with numpy, pyopencl and pytest" \
        "(Debian: apt-get install python3-numpy python3-pyopencl python3-pytest)" >&2
    exit 77
fi

devices=$("$py" -c '
import pyopencl as cl
n = 0
try:
    for p in cl.get_platforms():
        try:
            n += len(p.get_devices())
        except cl.Error:
            pass
except cl.Error:
    pass
print(n)' 2>/dev/null)
if [ "${devices:-0}" -eq 0 ]; then
    echo "run-tests.sh: skipped: pyopencl finds no OpenCL device" >&2
    exit 77
fi

cd "$here/.." || exit 1
export CLNORM_LIBRARY="$lib"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
# No .pytest_cache in the source tree; no plugins but pytest's own.
export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
exec "$py" -m pytest -q -p no:cacheprovider "$@" python/tests
