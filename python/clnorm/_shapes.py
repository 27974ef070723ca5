"""numpy-style shapes, strides and dtypes to clnorm's (N, C, D), layout and storage type.

An array's shape is read one of two ways:
  - C-contiguous: the shape is in memory order of the layout, (N, C, *spatial) for "nchw" and
    (N, *spatial, C) for "nhwc"; with no layout given, "nchw".
  - channels-last strides on a logical (N, C, *spatial) shape (what a transpose of an
    (N, *spatial, C) array, or PyTorch's channels_last, gives): "nhwc", C = shape[1].
(N, C) is the same memory in both layouts. D is the product of the spatial sizes (1 if none).
"""
import numpy as np

from . import _lib

_STORAGE = {
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(np.uint16),  # bfloat16 bits, see to_bfloat16 / from_bfloat16
}
_ALIASES = {"f32": "float32", "fp32": "float32", "float": "float32", "f16": "float16",
            "fp16": "float16", "half": "float16", "bf16": "bfloat16"}


def prod(values):
    p = 1
    for v in values:
        p *= int(v)
    return p


def kind_name(kind):
    k = str(kind).lower()
    if k not in _lib.KINDS:
        raise _lib.invalid("kind: %r is not one of %s" % (kind, ", ".join(_lib.KINDS)))
    return k


def layout_name(layout):
    if layout is None:
        return None
    lay = str(layout).lower()
    if lay not in _lib.LAYOUTS:
        raise _lib.invalid("layout: %r is not one of nchw, nhwc" % (layout,))
    return lay


def dtype_name(dtype, array_dtype=None):
    """The storage name for a stated dtype, else the array's ("bfloat16" must be stated:
    a uint16 array is only its bits)."""
    if dtype is None:
        if array_dtype is None:
            return "float32"
        dt = np.dtype(array_dtype)
        if dt == np.float32:
            return "float32"
        if dt == np.float16:
            return "float16"
        if dt == np.uint16:
            raise _lib.invalid("dtype: a uint16 array is taken as bfloat16 only when "
                               "dtype='bfloat16' is given")
        raise _lib.invalid("dtype: arrays of %s are not a clnorm storage type (float32, float16,"
                           " or bfloat16 bits in uint16)" % dt)
    if isinstance(dtype, str):
        name = _ALIASES.get(dtype.lower(), dtype.lower())
        if name in _STORAGE:
            return name
    else:
        dt = np.dtype(dtype)
        if dt == np.float32:
            return "float32"
        if dt == np.float16:
            return "float16"
    raise _lib.invalid("dtype: %r is not float32, float16 or bfloat16" % (dtype,))


def storage(dtype_name_):
    return _STORAGE[dtype_name_]


def _c_contiguous(shape, strides, itemsize):
    if 0 in shape:
        return True  # no elements: any strides
    expect = itemsize
    for size, stride in zip(reversed(shape), reversed(strides)):
        if size != 1 and stride != expect:
            return False
        expect *= size
    return True


def _channels_last(shape, strides, itemsize):
    if len(shape) < 3:
        return False
    perm = [0] + list(range(2, len(shape))) + [1]
    return _c_contiguous([shape[i] for i in perm], [strides[i] for i in perm], itemsize)


def describe(shape, strides, itemsize, layout=None, what="x"):
    """(layout, n, c, d, channels_last_strided) for an array; raises clnorm.Error."""
    shape = tuple(int(s) for s in shape)
    layout = layout_name(layout)
    if len(shape) < 2:
        raise _lib.invalid("%s: shape %s; clnorm needs (N, C, ...) or (N, ..., C), at least 2 "
                           "dimensions" % (what, shape))
    if strides is None or _c_contiguous(shape, strides, itemsize):
        lay = layout or "nchw"
        n = shape[0]
        if lay == "nchw" or len(shape) == 2:
            c, d = shape[1], prod(shape[2:])
        else:
            c, d = shape[-1], prod(shape[1:-1])
        return lay, n, c, d, False
    if _channels_last(shape, strides, itemsize):
        if layout == "nchw":
            raise _lib.invalid("%s: its strides are channels-last (NHWC memory), but layout "
                               "'nchw' was asked for" % what)
        return "nhwc", shape[0], shape[1], prod(shape[2:]), True
    raise _lib.invalid("%s: shape %s with strides %s is neither C-contiguous nor channels-last;"
                       " make it contiguous first" % (what, shape, tuple(strides)))


def memory_shape(layout, n, c, spatial):
    """The C-contiguous shape of a tensor in a layout."""
    spatial = tuple(spatial)
    return (n, c) + spatial if layout == "nchw" else (n,) + spatial + (c,)


def plan_shape(shape, layout):
    """(layout, n, c, d, spatial) from a shape given in memory order of the layout."""
    shape = tuple(int(s) for s in shape)
    lay, n, c, d, _ = describe(shape, None, 1, layout, what="shape")
    spatial = shape[2:] if lay == "nchw" else shape[1:-1]
    return lay, n, c, d, tuple(spatial)
