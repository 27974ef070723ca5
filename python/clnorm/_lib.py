"""The C library: where it is found, its structs and prototypes, and its statuses as errors.

Everything here mirrors include/clnorm/clnorm.h exactly: enums are C ints, sizes size_t,
eps and momentum float, handles and OpenCL objects pointers. The library is loaded on first
use, so that `import clnorm` works (bfloat16 helpers, docs) where it is not installed.
"""
import ctypes
import ctypes.util
import enum
import glob
import os
import shutil
import subprocess
import threading

# --- enums (values pinned by the header) -------------------------------------------------


class Status(enum.IntEnum):
    """clnorm_status: the name and number of a call's outcome."""

    SUCCESS = 0
    INVALID_ARGUMENT = 1
    UNSUPPORTED = 2
    OUT_OF_MEMORY = 3
    BUILD_FAILED = 4
    NO_DEVICE = 5
    OPENCL = 6


KINDS = {"batch": 0, "layer": 1, "instance": 2, "group": 3, "rms": 4}
LAYOUTS = {"nchw": 0, "nhwc": 1}
DTYPES = {"float32": 0, "float16": 1, "bfloat16": 2}
TRAINING, INFERENCE = 0, 1
SCRATCH = {"held": 0, "forward": 1, "backward": 2}


# --- errors -------------------------------------------------------------------------------


class Error(Exception):
    """A clnorm call that did not succeed.

    status:   a Status (name and number), or the plain int of a status this binding does not
              know yet
    message:  clnorm_context_last_error(): the field at fault, the OpenCL call and its error
              name, or the compiler's log
    function: the C function (or, for checks made here before calling it, the Python method)
    """

    def __init__(self, status, message, function=None):
        self.status = status
        self.message = message
        self.function = function
        name = status.name if isinstance(status, Status) else "status"
        head = "%s: " % function if function else ""
        super().__init__("%s%s (%d): %s" % (head, name, int(status), message))


class InvalidArgumentError(Error, ValueError):
    """CLNORM_ERROR_INVALID_ARGUMENT, from the library or from the binding's own checks."""


class UnsupportedError(Error):
    """CLNORM_ERROR_UNSUPPORTED: a valid request this device cannot run."""


class OutOfMemoryError(Error, MemoryError):
    """CLNORM_ERROR_OUT_OF_MEMORY."""


class BuildError(Error):
    """CLNORM_ERROR_BUILD_FAILED: the compiler's log is in .message."""


class NoDeviceError(Error):
    """CLNORM_ERROR_NO_DEVICE: .message lists the devices that exist."""


class OpenCLError(Error):
    """CLNORM_ERROR_OPENCL: any other OpenCL failure."""


class LibraryNotFound(OSError):
    """libclnorm could not be loaded."""


_ERRORS = {
    Status.INVALID_ARGUMENT: InvalidArgumentError,
    Status.UNSUPPORTED: UnsupportedError,
    Status.OUT_OF_MEMORY: OutOfMemoryError,
    Status.BUILD_FAILED: BuildError,
    Status.NO_DEVICE: NoDeviceError,
    Status.OPENCL: OpenCLError,
}


def make_error(status, message, function=None):
    try:
        status = Status(status)
    except ValueError:
        pass
    return _ERRORS.get(status, Error)(status, message, function)


def invalid(message, function=None):
    """A check made by the binding before the call: the library would refuse it too, or the
    binding cannot express it (an array offset OpenCL cannot make a sub-buffer at)."""
    return InvalidArgumentError(Status.INVALID_ARGUMENT, message, function)


# --- structs ------------------------------------------------------------------------------

_c_mem = ctypes.c_void_p


class Desc(ctypes.Structure):
    """clnorm_desc."""

    _fields_ = [
        ("kind", ctypes.c_int),
        ("layout", ctypes.c_int),
        ("dtype", ctypes.c_int),
        ("n", ctypes.c_size_t),
        ("c", ctypes.c_size_t),
        ("d", ctypes.c_size_t),
        ("groups", ctypes.c_size_t),
        ("eps", ctypes.c_float),
        ("momentum", ctypes.c_float),
        ("y_dtype", ctypes.c_int),  # 0: y stored as x
        ("activation", ctypes.c_int),  # since 0.3: clnorm_activation, 0: none
        ("activation_alpha", ctypes.c_float),
    ]


BUFFER_ROLES = (
    "x", "y", "dy", "dx",
    "gamma", "beta", "dgamma", "dbeta",
    "running_mean", "running_var",
    "save_mean", "save_invstd",
    "skip", "sum", "residual", "dresidual",  # since 0.3: the fused epilogue
)


class Buffers(ctypes.Structure):
    """clnorm_buffers."""

    _fields_ = [(name, _c_mem) for name in BUFFER_ROLES]


# A later minor release may append fields to clnorm_desc and clnorm_buffers (DESIGN.md 2),
# and promises that zero in them behaves as before. The structs are handed over inside
# zeroed room of this size, so a newer library reads zeros past the fields known here
# instead of whatever follows in memory.
_ROOM = 512


def padded(struct):
    """A pointer to a zeroed copy of struct with _ROOM bytes of room (kept alive by the
    returned buffer)."""
    room = ctypes.create_string_buffer(max(_ROOM, ctypes.sizeof(struct)))
    ctypes.memmove(room, ctypes.byref(struct), ctypes.sizeof(struct))
    return ctypes.cast(room, ctypes.POINTER(type(struct))), room


# --- loading ------------------------------------------------------------------------------

_lock = threading.Lock()
_lib = None
_path = None


def _pkg_config_candidates():
    exe = shutil.which("pkg-config")
    if not exe:
        return []
    try:
        libdir = subprocess.run([exe, "--variable=libdir", "clnorm"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return []
    if not libdir:
        return []
    names = [os.path.join(libdir, "libclnorm.so")]
    names += sorted(glob.glob(os.path.join(libdir, "libclnorm.so.*")), key=len)
    names += [os.path.join(libdir, "libclnorm.dylib"), os.path.join(libdir, "clnorm.dll")]
    return [n for n in names if os.path.exists(n)]


def _candidates():
    """(where it came from, name for ctypes.CDLL), in the documented order."""
    env = os.environ.get("CLNORM_LIBRARY")
    if env:
        return [("CLNORM_LIBRARY", env)]  # named explicitly: no silent fallback
    found = [("pkg-config clnorm", p) for p in _pkg_config_candidates()]
    name = ctypes.util.find_library("clnorm")
    if name:
        found.append(("ctypes.util.find_library", name))
    for name in ("libclnorm.so", "libclnorm.so.0.3", "libclnorm.dylib", "clnorm.dll"):
        found.append(("the default loader path", name))
    return found


def _prototype(lib):
    vp, c_int, size_t = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
    pp = ctypes.POINTER(ctypes.c_void_p)
    sigs = {
        "clnorm_context_create": (c_int, [ctypes.c_char_p, pp]),
        "clnorm_context_create_from_queue": (c_int, [vp, pp]),
        "clnorm_context_release": (None, [vp]),
        "clnorm_context_cl": (vp, [vp]),
        "clnorm_context_queue": (vp, [vp]),
        "clnorm_context_last_error": (ctypes.c_char_p, [vp]),
        "clnorm_plan_create": (c_int, [vp, ctypes.POINTER(Desc), pp]),
        "clnorm_plan_release": (None, [vp]),
        "clnorm_plan_stats_count": (size_t, [vp]),
        "clnorm_forward": (c_int, [vp, c_int, ctypes.POINTER(Buffers), ctypes.c_uint, pp, pp]),
        "clnorm_backward": (c_int, [vp, c_int, ctypes.POINTER(Buffers), ctypes.c_uint, pp, pp]),
        "clnorm_status_string": (ctypes.c_char_p, [c_int]),
        "clnorm_version_string": (ctypes.c_char_p, []),
        # Newer than the first header: present in this one, looked up softly all the same.
        "clnorm_plan_scratch_bytes": (size_t, [vp, c_int]),
        "clnorm_cache_info": (c_int, [ctypes.c_char_p, size_t]),
    }
    optional = {"clnorm_plan_scratch_bytes", "clnorm_cache_info"}
    for name, (restype, argtypes) in sigs.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            if name in optional:
                continue
            raise LibraryNotFound("%s lacks %s: not a clnorm library, or too old" %
                                  (lib._name, name)) from None
        fn.restype = restype
        fn.argtypes = argtypes


def load():
    """The loaded library (ctypes.CDLL); loads it on first use."""
    global _lib, _path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        for origin, name in _candidates():
            try:
                lib = ctypes.CDLL(name)
            except OSError as e:
                tried.append("%s (%s): %s" % (name, origin, e))
                continue
            _prototype(lib)
            _lib, _path = lib, name
            return lib
        raise LibraryNotFound(
            "libclnorm not found. Set CLNORM_LIBRARY to the shared library "
            "(e.g. build/libclnorm.so), or install clnorm where pkg-config or the loader finds "
            "it. Tried:\n  " + "\n  ".join(tried))


def path():
    """The name libclnorm was loaded by."""
    load()
    return _path


def text(ptr):
    return ptr.decode("utf-8", "replace") if ptr else ""


def last_error(ctx_handle):
    return text(load().clnorm_context_last_error(ctx_handle))


def check(status, ctx_handle, function):
    """Raises the Error of a non-success status, with the context's last error."""
    if status != Status.SUCCESS:
        raise make_error(status, last_error(ctx_handle), function)
