"""normalize / normalize_backward: numpy in, numpy out, on the default device."""
import collections
import threading

import numpy as np
import pyopencl.array as cl_array

from . import _lib
from . import _shapes
from ._core import Context, Plan

_default = None
_default_lock = threading.Lock()

Gradients = collections.namedtuple("Gradients", "dx dgamma dbeta")
Gradients.__doc__ = "What normalize_backward returns: dx (like x), dgamma and dbeta (float32)."


def default_context():
    """The Context normalize() runs on when given none: clnorm_context_create(NULL), i.e.
    CLNORM_DEVICE, else the first GPU, else the first device. Made on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Context()
        return _default


def _storage_input(x, dtype, layout, what):
    """x as a numpy array in plan storage, and how to read it: (array in memory order,
    dtype name, layout, channels_last_strided, logical shape)."""
    x = np.asarray(x)
    if dtype is None and x.dtype in (np.float64, np.float32, np.float16):
        name = "float32" if x.dtype == np.float64 else _shapes.dtype_name(None, x.dtype)
    else:
        name = _shapes.dtype_name(dtype, x.dtype)
    want = _shapes.storage(name)
    if x.dtype != want:
        if name == "bfloat16":
            if x.dtype.kind != "f":
                raise _lib.invalid("%s: bfloat16 from %s; give floats or uint16 bits" %
                                   (what, x.dtype))
            from ._bfloat16 import to_bfloat16
            x = np.ascontiguousarray(x)
            x = to_bfloat16(x).reshape(x.shape)
        else:
            x = x.astype(want)
    try:
        lay, n, c, d, strided = _shapes.describe(x.shape, x.strides, x.dtype.itemsize, layout,
                                                 what)
    except _lib.InvalidArgumentError:
        x = np.ascontiguousarray(x)  # numpy may copy: read as memory order of the layout
        lay, n, c, d, strided = _shapes.describe(x.shape, x.strides, x.dtype.itemsize, layout,
                                                 what)
    mem = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if strided else np.ascontiguousarray(x)
    return mem, name, lay, strided


def _floats(a, shape, what):
    if a is None:
        return None
    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.size != _shapes.prod(shape):
        raise _lib.invalid("%s: %d values; the problem needs %d (shape %s)" %
                           (what, a.size, _shapes.prod(shape), shape))
    return a


def _plan(ctx, kind, mem, name, lay, groups, eps, momentum):
    kind = _shapes.kind_name(kind)
    key = (kind, lay, name, mem.shape, int(groups or 0), float(eps), float(momentum))
    return ctx._cached_plan(key, lambda: Plan(ctx, kind, shape=mem.shape, layout=lay,
                                              dtype=name, groups=groups, eps=eps,
                                              momentum=momentum))


def _back(mem, strided):
    """A result in memory order back to the caller's logical shape."""
    return np.moveaxis(mem, -1, 1) if strided else mem


def _write_back(target, values, what):
    if target is None:
        return
    if not isinstance(target, np.ndarray) or not target.flags.writeable:
        raise _lib.invalid("%s: running statistics are updated in place: a writable numpy "
                           "array" % what)
    target[...] = values.reshape(target.shape)


def normalize(x, kind, *, groups=None, layout=None, dtype=None, eps=1e-5, momentum=0.1,
              gamma=None, beta=None, running_mean=None, running_var=None, training=True,
              return_stats=False, context=None):
    """Normalizes a numpy array on an OpenCL device and returns the result as numpy.

    x:       (N, C, *spatial) or (N, *spatial, C) (layout="nhwc"), or (N, C); channels-last
             strides on (N, C, ...) are read as "nhwc" and the result keeps them
    dtype:   storage: x's (float32, float16; float64 is computed as float32), or "bfloat16"
             (x as uint16 bits, or floats to round); the result has the storage dtype
             (bfloat16: uint16 bits, clnorm.from_bfloat16)
    running_mean, running_var: float numpy arrays of C values (BATCH, INSTANCE), updated in
             place when training, used to normalize when not
    return_stats: also return (save_mean, save_invstd) as float32 arrays (stats_shape)
    context: a clnorm.Context; default: default_context()
    """
    ctx = context or default_context()
    mem, name, lay, strided = _storage_input(x, dtype, layout, "x")
    plan = _plan(ctx, kind, mem, name, lay, groups, eps, momentum)
    q = ctx.queue
    g = _floats(gamma, plan.param_shape, "gamma")
    b = _floats(beta, plan.param_shape, "beta")
    rm = _floats(running_mean, plan.running_shape, "running_mean")
    rv = _floats(running_var, plan.running_shape, "running_var")
    use_running = rm is not None and not training
    want_stats = return_stats and not use_running

    dev = lambda a: None if a is None else cl_array.to_device(q, a)  # noqa: E731
    xd = dev(mem)
    yd = cl_array.empty_like(xd)
    drm, drv = dev(rm), dev(rv)
    sm = cl_array.empty(q, plan.stats_shape, np.float32) if want_stats else None
    si = cl_array.empty(q, plan.stats_shape, np.float32) if want_stats else None
    if mem.size:
        plan.forward(xd, yd, gamma=dev(g), beta=dev(b), running_mean=drm, running_var=drv,
                     save_mean=sm if plan.kind != "rms" else None, save_invstd=si,
                     training=training)
        y = yd.get()
    else:
        y = np.empty_like(mem)
    if rm is not None and training and mem.size:
        _write_back(running_mean, drm.get(), "running_mean")
        _write_back(running_var, drv.get(), "running_var")
    y = _back(y, strided)
    if not return_stats:
        return y
    if not want_stats or not mem.size:
        return y, None, None
    mean = sm.get() if plan.kind != "rms" else None
    return y, mean, si.get()


def normalize_backward(x, dy, kind, *, groups=None, layout=None, dtype=None, eps=1e-5,
                       gamma=None, save_mean=None, save_invstd=None, running_mean=None,
                       running_var=None, training=True, context=None):
    """The gradients of normalize(x, kind, ...) for an upstream gradient dy (numpy).

    Returns Gradients(dx, dgamma, dbeta): dx like x (storage dtype), dgamma and dbeta
    float32 of the plan's param_shape. save_mean/save_invstd (from normalize(...,
    return_stats=True)) are recomputed when not given; training=False with running
    statistics treats them as constants.
    """
    ctx = context or default_context()
    mem, name, lay, strided = _storage_input(x, dtype, layout, "x")
    dmem, _, _, dstrided = _storage_input(dy, name, lay, "dy")
    if dmem.shape != mem.shape or dstrided != strided:
        raise _lib.invalid("dy: shape %s; x has %s" % (np.shape(dy), np.shape(x)))
    plan = _plan(ctx, kind, mem, name, lay, groups, eps, 0.1)
    q = ctx.queue
    g = _floats(gamma, plan.param_shape, "gamma")
    sm = _floats(save_mean, plan.stats_shape, "save_mean")
    si = _floats(save_invstd, plan.stats_shape, "save_invstd")
    rm = _floats(running_mean, plan.running_shape, "running_mean")
    rv = _floats(running_var, plan.running_shape, "running_var")
    if plan.kind == "rms":
        sm = None
    dev = lambda a: None if a is None else cl_array.to_device(q, a)  # noqa: E731
    dgamma = cl_array.empty(q, plan.param_shape, np.float32)
    dbeta = cl_array.empty(q, plan.param_shape, np.float32)
    if not mem.size:
        return Gradients(_back(np.empty_like(mem), strided), np.zeros(plan.param_shape,
                         np.float32), np.zeros(plan.param_shape, np.float32))
    x_, dy_ = dev(mem), dev(dmem)
    dx_ = cl_array.empty_like(x_)
    plan.backward(x_, dy_, dx_, gamma=dev(g), dgamma=dgamma, dbeta=dbeta, save_mean=dev(sm),
                  save_invstd=dev(si), running_mean=dev(rm), running_var=dev(rv),
                  training=training)
    return Gradients(_back(dx_.get(), strided), dgamma.get(), dbeta.get())
