"""Context and Plan over pyopencl: the application's queue and buffers, clnorm's kernels."""
import ctypes
import threading
import weakref

import numpy as np
import pyopencl as cl
import pyopencl.array as cl_array

from . import _lib
from . import _shapes

# Roles per pass, and what each holds: "data" (the plan's storage type, N*C*D elements),
# "param" (float, C or C*D), "running" (float, C), "stats" (float, stats_count).
_ROLE_KIND = {
    "x": "data", "y": "data", "dy": "data", "dx": "data",
    "gamma": "param", "beta": "param", "dgamma": "param", "dbeta": "param",
    "running_mean": "running", "running_var": "running",
    "save_mean": "stats", "save_invstd": "stats",
}
_FORWARD_OUT = ("y", "running_mean", "running_var", "save_mean", "save_invstd")
_BACKWARD_OUT = ("dx", "dgamma", "dbeta")


class Context:
    """A clnorm context: a device, a queue, and the programs compiled for it.

    Context(queue)            runs on a pyopencl CommandQueue: clnorm enqueues there, and
                              takes buffers and events of its cl.Context
    Context(device=spec)      clnorm picks the device (clnorm_context_create: "P:D", "cpu",
                              "gpu", part of a name; None: CLNORM_DEVICE, else the first GPU,
                              else the first device) and makes its own cl.Context and queue;
                              .cl_context and .queue are pyopencl objects for them

    Contexts made from the same queue by Plan(queue, ...) are shared (Context.for_queue).
    """

    _by_queue = weakref.WeakValueDictionary()
    _by_queue_lock = threading.Lock()

    def __init__(self, queue=None, device=None):
        lib = _lib.load()
        handle = ctypes.c_void_p()
        if queue is not None:
            if device is not None:
                raise _lib.invalid("Context: give a queue or a device, not both")
            if not isinstance(queue, cl.CommandQueue):
                raise TypeError("Context: queue must be a pyopencl.CommandQueue, not %s" %
                                type(queue).__name__)
            status = lib.clnorm_context_create_from_queue(ctypes.c_void_p(queue.int_ptr),
                                                          ctypes.byref(handle))
            _lib.check(status, None, "clnorm_context_create_from_queue")
            self._handle = handle.value
            self.queue = queue
            self.cl_context = queue.context
        else:
            spec = None if device is None else str(device).encode()
            status = lib.clnorm_context_create(spec, ctypes.byref(handle))
            _lib.check(status, None, "clnorm_context_create")
            self._handle = handle.value
            # pyopencl objects that hold their own references to clnorm's cl_context and queue.
            self.cl_context = cl.Context.from_int_ptr(lib.clnorm_context_cl(self._handle),
                                                      retain=True)
            self.queue = cl.CommandQueue.from_int_ptr(lib.clnorm_context_queue(self._handle),
                                                      retain=True)
        self.device = self.queue.device
        self._plans = {}  # normalize()'s plans, by description
        self._plans_lock = threading.Lock()

    @classmethod
    def for_queue(cls, queue):
        """The Context of a queue, shared by every plan made from it while one is alive."""
        with cls._by_queue_lock:
            ctx = cls._by_queue.get(queue.int_ptr)
            if ctx is None:
                ctx = cls(queue)
                cls._by_queue[queue.int_ptr] = ctx
            return ctx

    @property
    def last_error(self):
        """clnorm_context_last_error: the last failure on this context from this thread."""
        return _lib.last_error(self._handle)

    @property
    def base_addr_align(self):
        """CL_DEVICE_MEM_BASE_ADDR_ALIGN in bytes: where a sub-buffer may start."""
        return max(1, self.device.mem_base_addr_align // 8)

    def close(self):
        """Drops this object's reference to the C context (plans keep their own): plans of
        normalize() first, after their work has finished."""
        with self._plans_lock:
            plans, self._plans = list(self._plans.values()), {}
        for plan in plans:
            plan.close()
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            _lib.load().clnorm_context_release(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # No waiting in a finalizer: the plans go as their own references do, and the C library
        # keeps every pending call's events past the release of plans and contexts.
        try:
            handle, self._handle = getattr(self, "_handle", None), None
            self._plans = {}
            if handle:
                _lib.load().clnorm_context_release(handle)
        except Exception:  # interpreter shutdown: modules may be gone
            pass

    def __repr__(self):
        return "<clnorm.Context on %r>" % (self.device.name,)

    def _cached_plan(self, key, make):
        with self._plans_lock:
            plan = self._plans.get(key)
            if plan is None:
                if len(self._plans) >= 64:  # keep the newest; plans are cheap to remake
                    # dropped, not closed: another thread may be inside a call on it
                    self._plans.pop(next(iter(self._plans)))
                plan = self._plans[key] = make()
            return plan


def _as_context(queue_or_context):
    if isinstance(queue_or_context, Context):
        return queue_or_context
    if isinstance(queue_or_context, cl.CommandQueue):
        return Context.for_queue(queue_or_context)
    raise TypeError("a pyopencl.CommandQueue or a clnorm.Context, not %s" %
                    type(queue_or_context).__name__)


def _root(buf):
    """(root buffer as cl.Buffer, offset of buf in it) for a buffer or sub-buffer."""
    parent = buf.get_info(cl.mem_info.ASSOCIATED_MEMOBJECT)
    if parent is None:
        if not isinstance(buf, cl.Buffer):  # a PooledBuffer: a plain cl_mem underneath
            buf = cl.Buffer.from_int_ptr(buf.int_ptr, retain=True)
        return buf, 0
    return _root(parent)[0], buf.get_info(cl.mem_info.OFFSET)


class Plan:
    """One validated, compiled problem (clnorm_plan) on a queue's context.

    Plan(queue, kind, shape=..., layout=None, dtype="float32", groups=None, eps=1e-5,
         momentum=0.1)
    Plan(queue, kind, like=array, ...)

    queue:  a pyopencl CommandQueue (its Context is shared by plans of the same queue), or a
            clnorm.Context
    kind:   "batch", "layer", "instance", "group" or "rms"
    shape:  numpy-style, in memory order of the layout: (N, C, *spatial) for "nchw" (the
            default), (N, *spatial, C) for "nhwc"; (N, C) for plain data
    like:   an array (numpy or pyopencl) to take shape, dtype and layout from; a C-contiguous
            one is read as above, one with channels-last strides on (N, C, *spatial) is "nhwc"
    dtype:  "float32", "float16" or "bfloat16" (stored as uint16: to_bfloat16/from_bfloat16)
    groups: GROUP only, divides C

    The plan compiles its kernels (or loads them from clnorm's cache) when it is made.
    """

    def __init__(self, queue, kind, shape=None, layout=None, dtype=None, groups=None,
                 eps=1e-5, momentum=0.1, like=None):
        self.context = _as_context(queue)
        self.kind = _shapes.kind_name(kind)
        if like is not None:
            if shape is not None:
                raise _lib.invalid("Plan: give shape or like, not both")
            dt = _shapes.dtype_name(dtype, like.dtype)
            lay, n, c, d, cl_strided = _shapes.describe(like.shape, like.strides,
                                                        like.dtype.itemsize, layout, "like")
            spatial = tuple(like.shape[2:]) if (cl_strided or lay == "nchw") else \
                tuple(like.shape[1:-1])
        elif shape is not None:
            dt = _shapes.dtype_name(dtype)
            lay, n, c, d, spatial = _shapes.plan_shape(shape, layout)
        else:
            raise _lib.invalid("Plan: shape (or like=array) is required")
        if self.kind == "group":
            if groups is None:
                raise _lib.invalid("Plan: groups is required for GROUP normalization")
        elif groups not in (None, 0):
            raise _lib.invalid("Plan: groups is for GROUP normalization only")
        self.layout, self.dtype, self.n, self.c, self.d = lay, dt, n, c, d
        self.spatial = spatial
        self.groups = int(groups or 0)
        self.eps, self.momentum = float(eps), float(momentum)
        self.shape = _shapes.memory_shape(lay, n, c, spatial)
        self.storage = _shapes.storage(dt)

        self._desc = _lib.Desc(kind=_lib.KINDS[self.kind], layout=_lib.LAYOUTS[lay],
                               dtype=_lib.DTYPES[dt], n=n, c=c, d=d, groups=self.groups,
                               eps=self.eps, momentum=self.momentum)
        lib = _lib.load()
        handle = ctypes.c_void_p()
        desc, _room = _lib.padded(self._desc)
        status = lib.clnorm_plan_create(ctypes.c_void_p(self.context._handle), desc,
                                        ctypes.byref(handle))
        _lib.check(status, self.context._handle, "clnorm_plan_create")
        self._handle = handle.value
        self._lib = lib
        self._pending = []  # (event, objects the call was handed), until the event resolves
        self._lock = threading.Lock()  # guards _pending
        self._call_lock = threading.Lock()  # a call in progress, against close()

    # --- what the plan needs -------------------------------------------------------------

    @property
    def stats_count(self):
        """clnorm_plan_stats_count: floats in save_mean / save_invstd (C, N, N*C or N*G)."""
        return int(self._lib.clnorm_plan_stats_count(self._handle))

    @property
    def stats_shape(self):
        """The shape of save_mean / save_invstd: (C,), (N,), (N, C) or (N, groups)."""
        return {"batch": (self.c,), "layer": (self.n,), "rms": (self.n,),
                "instance": (self.n, self.c), "group": (self.n, self.groups)}[self.kind]

    @property
    def param_shape(self):
        """The shape of gamma, beta, dgamma, dbeta: (C,), or for LAYER and RMS one sample in
        the plan's layout (shape[1:])."""
        if self.kind in ("layer", "rms"):
            return self.shape[1:]
        return (self.c,)

    @property
    def running_shape(self):
        """The shape of running_mean / running_var (BATCH, INSTANCE): (C,)."""
        return (self.c,)

    def scratch_bytes(self, which="held"):
        """clnorm_plan_scratch_bytes: "held" (allocated so far), "forward", or "backward"."""
        fn = getattr(self._lib, "clnorm_plan_scratch_bytes", None)
        if fn is None:
            raise NotImplementedError("this libclnorm has no clnorm_plan_scratch_bytes")
        if which not in _lib.SCRATCH:
            raise _lib.invalid("scratch_bytes: which is one of %s" % ", ".join(_lib.SCRATCH))
        return int(fn(self._handle, _lib.SCRATCH[which]))

    def __repr__(self):
        g = ", groups=%d" % self.groups if self.kind == "group" else ""
        return "<clnorm.Plan %s %s %s %s%s>" % (self.kind, self.layout, self.dtype,
                                                self.shape, g)

    # --- calls ---------------------------------------------------------------------------

    def forward(self, x, out, *, gamma=None, beta=None, running_mean=None, running_var=None,
                save_mean=None, save_invstd=None, training=True, wait_for=None):
        """Enqueues y = normalize(x) on the context's queue; returns its pyopencl.Event.

        out (y) may be x (in place). With running_mean/running_var (BATCH, INSTANCE):
        training normalizes with the batch's statistics and updates the running ones
        (unbiased variance, momentum); training=False normalizes with them. save_mean and
        save_invstd receive the per-group statistics (RMS: save_invstd = 1/rms).
        """
        tensors = dict(x=x, y=out, gamma=gamma, beta=beta, running_mean=running_mean,
                       running_var=running_var, save_mean=save_mean, save_invstd=save_invstd)
        return self._call("clnorm_forward", self._lib.clnorm_forward, training, tensors,
                          _FORWARD_OUT, wait_for)

    def backward(self, x, dy, out=None, *, gamma=None, dgamma=None, dbeta=None,
                 save_mean=None, save_invstd=None, running_mean=None, running_var=None,
                 training=True, wait_for=None):
        """Enqueues the gradients of forward; returns its pyopencl.Event.

        out (dx, may be dy), dgamma and dbeta are each optional and overwritten. save_mean
        and save_invstd are forward's (recomputed from x when not given). training=False with
        running statistics treats them as constants.
        """
        tensors = dict(x=x, dy=dy, dx=out, gamma=gamma, dgamma=dgamma, dbeta=dbeta,
                       save_mean=save_mean, save_invstd=save_invstd,
                       running_mean=running_mean, running_var=running_var)
        return self._call("clnorm_backward", self._lib.clnorm_backward, training, tensors,
                          _BACKWARD_OUT, wait_for)

    def finish(self):
        """Waits until every call made through this object has resolved."""
        with self._lock:
            pending, self._pending = self._pending, []
        for event, _ in pending:
            try:
                event.wait()
            except cl.Error:
                pass  # a failed call: resolved all the same

    def close(self):
        """Releases the plan once its calls have resolved (clnorm_plan_release)."""
        if not getattr(self, "_handle", None):
            return
        self.finish()
        with self._call_lock:  # not while another thread is inside a call on it
            handle, self._handle = self._handle, None
        if handle:
            self._lib.clnorm_plan_release(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # Safe with calls pending: the C library keeps their events until they resolve.
        try:
            handle, self._handle = getattr(self, "_handle", None), None
            if handle:
                self._lib.clnorm_plan_release(handle)
        except Exception:  # interpreter shutdown: modules may be gone
            pass

    # --- inside ----------------------------------------------------------------------------

    def _reap(self):
        with self._lock:
            keep = []
            for entry in self._pending:
                try:
                    status = entry[0].command_execution_status
                    resolved = status <= cl.command_execution_status.COMPLETE
                except cl.Error:
                    resolved = True
                if not resolved:
                    keep.append(entry)
            self._pending = keep

    def _expect(self, role):
        kind = _ROLE_KIND[role]
        if kind == "data":
            return self.storage, self.n * self.c * self.d
        if kind == "param":
            return np.dtype(np.float32), _shapes.prod(self.param_shape)
        if kind == "running":
            return np.dtype(np.float32), self.c
        return np.dtype(np.float32), self.stats_count

    def _check_array(self, role, a, function):
        dtype, count = self._expect(role)
        if a.dtype != dtype:
            extra = " (bfloat16 is stored as uint16: clnorm.to_bfloat16)" \
                if self.dtype == "bfloat16" and _ROLE_KIND[role] == "data" else ""
            raise _lib.invalid("%s: an array of %s; the plan needs %s%s" %
                               (role, a.dtype, dtype, extra), function)
        if a.size != count:
            raise _lib.invalid("%s: %d elements (shape %s); the plan needs %d" %
                               (role, a.size, a.shape, count), function)
        if _ROLE_KIND[role] == "data" and a.ndim > 1:
            lay, n, c, d, _ = _shapes.describe(a.shape, a.strides, a.dtype.itemsize,
                                               self.layout, role)
            if (lay, n, c, d) != (self.layout, self.n, self.c, self.d):
                raise _lib.invalid("%s: shape %s is (N, C, D) = (%d, %d, %d) as %s; the plan is"
                                   " (%d, %d, %d) as %s" % (role, a.shape, n, c, d, lay,
                                                           self.n, self.c, self.d,
                                                           self.layout), function)
        elif not _shapes._c_contiguous(a.shape, a.strides, a.dtype.itemsize):
            raise _lib.invalid("%s: not contiguous (strides %s)" % (role, a.strides), function)

    def _mem(self, role, a, keep, subs, function):
        """The cl_mem for one role; an array at an offset becomes a sub-buffer."""
        if a is None:
            return None
        if isinstance(a, cl_array.Array):
            self._check_array(role, a, function)
            if a.size == 0 or a.base_data is None:
                return None
            keep.append(a)
            if not a.offset:
                return a.base_data.int_ptr
            root, base = _root(a.base_data)
            origin, size = base + a.offset, a.nbytes
            align = self.context.base_addr_align
            if origin % align:
                raise _lib.invalid(
                    "%s: the array starts %d bytes into its buffer. clnorm takes whole cl_mem "
                    "buffers, so an array at an offset is passed as a sub-buffer, and OpenCL "
                    "lets a sub-buffer start only at a multiple of CL_DEVICE_MEM_BASE_ADDR_ALIGN"
                    " (%d bytes on %s). Copy it (a.copy()) or slice at an aligned offset." %
                    (role, origin, align, self.context.device.name.strip()), function)
            key = (root.int_ptr, origin, size)
            sub = subs.get(key)  # the same region twice (in place) is one sub-buffer
            if sub is None:
                sub = subs[key] = root.get_sub_region(origin, size)
                keep.append(sub)
            return sub.int_ptr
        if isinstance(a, cl.MemoryObjectHolder):
            keep.append(a)
            return a.int_ptr
        if isinstance(a, np.ndarray):
            raise TypeError("%s: a numpy array; Plan calls take pyopencl arrays or buffers "
                            "(clnorm.normalize takes numpy arrays)" % role)
        raise TypeError("%s: a pyopencl.array.Array or pyopencl.Buffer, not %s" %
                        (role, type(a).__name__))

    def _call(self, function, fn, training, tensors, outputs, wait_for):
        with self._call_lock:  # close() waits for a call in progress
            return self._call_locked(function, fn, training, tensors, outputs, wait_for)

    def _call_locked(self, function, fn, training, tensors, outputs, wait_for):
        handle = self._handle
        if not handle:
            raise _lib.invalid("the plan was closed", function)
        self._reap()
        keep, subs = [], {}
        bufs = _lib.Buffers()
        for role, a in tensors.items():
            setattr(bufs, role, self._mem(role, a, keep, subs, function))

        if isinstance(wait_for, cl.Event):
            wait_for = [wait_for]
        events, seen = [], set()
        for e in list(wait_for or ()) + [e for a in tensors.values()
                                         if isinstance(a, cl_array.Array) for e in a.events]:
            if not isinstance(e, cl.Event):
                raise TypeError("wait_for: pyopencl events, not %s" % type(e).__name__)
            if e.int_ptr not in seen:
                seen.add(e.int_ptr)
                events.append(e)
        wait = (ctypes.c_void_p * len(events))(*[e.int_ptr for e in events]) if events else None
        done = ctypes.c_void_p()
        mode = _lib.TRAINING if training else _lib.INFERENCE
        bufs_p, _room = _lib.padded(bufs)
        status = fn(handle, mode, bufs_p, len(events), wait, ctypes.byref(done))
        _lib.check(status, self.context._handle, function)
        if not done.value:  # the header promises an event on success; never trust a NULL
            raise _lib.make_error(_lib.Status.OPENCL, "returned success without an event",
                                  function)
        # The caller owns `done` (clnorm returned a reference for it): no retain.
        event = cl.Event.from_int_ptr(done.value, retain=False)
        keep.extend(events)
        with self._lock:
            self._pending.append((event, keep))
        for role in outputs:
            a = tensors.get(role)
            if isinstance(a, cl_array.Array):
                a.add_event(event)
        return event
