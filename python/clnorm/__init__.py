"""clnorm: batch, layer, instance, group and RMS normalization on pyopencl arrays.

A thin ctypes binding of libclnorm (found through CLNORM_LIBRARY, else pkg-config's clnorm
libdir, else the loader's search path). Plans run on the application's pyopencl queue and
take its arrays and buffers; calls are asynchronous and return pyopencl events.

    import clnorm
    plan = clnorm.Plan(queue, "group", shape=(4, 64, 64, 320), layout="nhwc",
                       dtype="float16", groups=32, eps=1e-5)
    evt = plan.forward(x, out=y, gamma=g, beta=b, save_mean=m, save_invstd=s)

For numpy arrays, clnorm.normalize(x, "layer") runs on the default device.
"""
import collections

from . import _lib
from ._lib import (Status, Error, InvalidArgumentError, UnsupportedError, OutOfMemoryError,
                   BuildError, NoDeviceError, OpenCLError, LibraryNotFound)
from ._bfloat16 import to_bfloat16, from_bfloat16
from ._core import Context, Plan
from ._numpy import normalize, normalize_backward, default_context, Gradients

__version__ = "0.3.0"

__all__ = [
    "Plan", "Context", "normalize", "normalize_backward", "default_context", "Gradients",
    "to_bfloat16", "from_bfloat16", "version", "library_path", "status_string", "cache_info",
    "CacheInfo", "Status", "Error", "InvalidArgumentError", "UnsupportedError",
    "OutOfMemoryError", "BuildError", "NoDeviceError", "OpenCLError", "LibraryNotFound",
]

CacheInfo = collections.namedtuple("CacheInfo", "usable text")
CacheInfo.__doc__ = "clnorm_cache_info(): usable (bool) and 'on: DIR' or 'off: REASON'."


def version():
    """The C library's version (clnorm_version_string), e.g. "0.3.0"."""
    return _lib.text(_lib.load().clnorm_version_string())


def library_path():
    """The name the C library was loaded by."""
    return _lib.path()


def status_string(status):
    """clnorm_status_string: the static text of a status."""
    return _lib.text(_lib.load().clnorm_status_string(int(status)))


def cache_info():
    """Where the binary cache on disk is, or why it is off (clnorm_cache_info)."""
    import ctypes
    fn = getattr(_lib.load(), "clnorm_cache_info", None)
    if fn is None:
        raise NotImplementedError("this libclnorm has no clnorm_cache_info")
    buf = ctypes.create_string_buffer(4096)
    usable = fn(buf, len(buf))
    return CacheInfo(bool(usable), _lib.text(buf.value))
