"""Shared fixtures: one pyopencl context and queue, one plan per problem, for the session.

The library is the one CLNORM_LIBRARY names (python/run-tests.sh sets it to the build's), and
the package the one on PYTHONPATH (python/). Without an OpenCL device the device tests skip.
"""
import os
import pathlib
import sys

import numpy as np
import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # reference.py

import clnorm  # noqa: E402

try:
    import pyopencl as cl
except ImportError:  # pragma: no cover - run-tests.sh exits 77 before this
    cl = None

REPO = HERE.parents[1]

# Test shapes: small, odd, with channels that groups divide. Memory order per layout.
N, C, SPATIAL, GROUPS = 3, 8, (5, 3), 4
D = int(np.prod(SPATIAL))


def memory_shape(layout, n=N, c=C, spatial=SPATIAL):
    return (n, c) + tuple(spatial) if layout == "nchw" else (n,) + tuple(spatial) + (c,)


def storage_of(dtype):
    return {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}[dtype]


def store(values, dtype):
    """float values -> the storage array (what the device holds)."""
    if dtype == "bfloat16":
        return clnorm.to_bfloat16(values)
    return np.asarray(values, dtype=storage_of(dtype))


def load(stored, dtype):
    """The storage array -> float64 values (exactly what was stored)."""
    if dtype == "bfloat16":
        return clnorm.from_bfloat16(stored).astype(np.float64)
    return np.asarray(stored, dtype=np.float64)


# Half an ulp, relative, of each storage type's rounding (round to nearest even); the
# smallest absolute error a float16 subnormal result may carry.
HALF_ULP = {"float32": 0.0, "float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}
SUBNORMAL = {"float32": 0.0, "float16": 2.0 ** -25, "bfloat16": 0.0}
F32 = 2.0 ** -23


def _device_or_skip():
    if cl is None:
        pytest.skip("pyopencl is not installed")
    try:
        platforms = cl.get_platforms()
    except cl.Error as e:
        pytest.skip("no OpenCL platform: %s" % e)
    for p in platforms:
        try:
            devices = p.get_devices()
        except cl.Error:
            continue
        if devices:
            return devices[0]
    pytest.skip("no OpenCL device")


@pytest.fixture(scope="session")
def device():
    return _device_or_skip()


@pytest.fixture(scope="session")
def cl_ctx(device):
    return cl.Context([device])


@pytest.fixture(scope="session")
def queue(cl_ctx):
    return cl.CommandQueue(cl_ctx)


@pytest.fixture(scope="session")
def context(queue):
    """The clnorm context on the session's queue, kept for the session so that its compiled
    programs are reused by every plan."""
    ctx = clnorm.Context.for_queue(queue)
    yield ctx


@pytest.fixture(scope="session")
def plans(context):
    """plans(kind, layout, dtype) -> a Plan of the test shape, made once per session."""
    made = {}

    def get(kind, layout, dtype, **kw):
        key = (kind, layout, dtype, tuple(sorted(kw.items())))
        if key not in made:
            shape = kw.pop("shape", memory_shape(layout))
            made[key] = clnorm.Plan(context, kind, shape=shape, layout=layout, dtype=dtype,
                                    groups=GROUPS if kind == "group" else None, **kw)
        return made[key]

    yield get
    for p in made.values():
        p.close()


@pytest.fixture
def rng():
    return np.random.default_rng(20261201)


def library_dir():
    lib = os.environ.get("CLNORM_LIBRARY")
    return pathlib.Path(lib).resolve().parent if lib else None
