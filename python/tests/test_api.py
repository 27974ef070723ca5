"""Errors, the numpy convenience calls, shapes and layouts, bfloat16, and the C structs."""
import ctypes
import os
import shutil
import subprocess

import numpy as np
import pyopencl as cl
import pyopencl.array as cl_array
import pytest

import clnorm
from clnorm import _lib, _shapes
from conftest import REPO, load, store
from reference import Problem

SHAPE = (2, 4, 6, 5)


# --- errors ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def layer(context):
    plan = clnorm.Plan(context, "layer", shape=SHAPE)
    yield plan
    plan.close()


def test_too_small_buffer_names_the_field(layer, queue, cl_ctx):
    x = cl_array.to_device(queue, np.ones(SHAPE, np.float32))
    small = cl.Buffer(cl_ctx, cl.mem_flags.READ_WRITE, 16)
    with pytest.raises(clnorm.Error) as info:
        layer.forward(x, out=small)
    e = info.value
    assert e.status == clnorm.Status.INVALID_ARGUMENT and e.status.name == "INVALID_ARGUMENT"
    assert int(e.status) == 1
    assert e.function == "clnorm_forward"
    assert e.message == "bufs.y: holds 16 bytes, the problem needs 960"
    assert str(e) == ("clnorm_forward: INVALID_ARGUMENT (1): "
                      "bufs.y: holds 16 bytes, the problem needs 960")
    assert layer.context.last_error == e.message


def test_read_only_output_is_refused(layer, queue, cl_ctx):
    x = cl_array.to_device(queue, np.ones(SHAPE, np.float32))
    ro = cl.Buffer(cl_ctx, cl.mem_flags.READ_ONLY, x.nbytes)
    with pytest.raises(clnorm.InvalidArgumentError, match="bufs.y: created with CL_MEM_READ_ONLY"):
        layer.forward(x, out=ro)


def test_overlapping_output_is_refused(context, queue):
    plan = clnorm.Plan(context, "batch", shape=SHAPE)
    x = cl_array.to_device(queue, np.ones(SHAPE, np.float32))
    y = cl_array.empty_like(x)
    save_invstd = cl_array.empty(queue, 4, np.float32)
    with pytest.raises(clnorm.InvalidArgumentError,
                       match="bufs.save_mean: shares memory with bufs.x, and the call writes"):
        plan.forward(x, y, save_mean=_floats_view(x, 4), save_invstd=save_invstd)
    plan.close()


def _floats_view(a, count):
    """The first `count` floats of a's buffer, as a 1-D float32 array (no offset)."""
    return cl_array.Array(a.queue, (count,), np.float32, data=a.base_data)


def test_running_statistics_where_there_are_none(layer, queue):
    x = cl_array.to_device(queue, np.ones(SHAPE, np.float32))
    rm = cl_array.to_device(queue, np.zeros(4, np.float32))
    with pytest.raises(clnorm.InvalidArgumentError, match="has no running statistics"):
        layer.forward(x, cl_array.empty_like(x), running_mean=rm, running_var=rm)


def test_plan_errors_name_the_descriptor_field(context):
    with pytest.raises(clnorm.InvalidArgumentError) as info:
        clnorm.Plan(context, "group", shape=(2, 6, 4), groups=4)
    assert info.value.function == "clnorm_plan_create"
    assert "desc.groups: must divide c = 6, got 4" in str(info.value)
    with pytest.raises(clnorm.Error, match="desc.eps: must be finite and >= 0"):
        clnorm.Plan(context, "layer", shape=(2, 6), eps=-1.0)
    with pytest.raises(clnorm.Error, match=r"desc.momentum: must be in \[0, 1\]"):
        clnorm.Plan(context, "batch", shape=(2, 6), momentum=2.0)
    with pytest.raises(clnorm.Error, match="desc.c: must be at least 1"):
        clnorm.Plan(context, "layer", shape=(2, 0, 3))
    with pytest.raises(clnorm.Error, match="kind: 'sideways' is not one of"):
        clnorm.Plan(context, "sideways", shape=(2, 6))
    with pytest.raises(clnorm.Error, match="groups is required"):
        clnorm.Plan(context, "group", shape=(2, 6))


def test_no_device_lists_the_devices():
    with pytest.raises(clnorm.NoDeviceError) as info:
        clnorm.Context(device="no device is called this")
    e = info.value
    assert e.status == clnorm.Status.NO_DEVICE and e.function == "clnorm_context_create"
    assert 'no OpenCL device matches "no device is called this"' in e.message
    assert "devices:" in e.message


def test_binding_checks_before_the_call(layer, queue):
    x = cl_array.to_device(queue, np.ones(SHAPE, np.float32))
    y = cl_array.empty_like(x)
    g64 = cl_array.to_device(queue, np.ones(SHAPE[1:], np.float64))
    with pytest.raises(clnorm.InvalidArgumentError, match="gamma: an array of float64; the plan "
                                                          "needs float32"):
        layer.forward(x, y, gamma=g64)
    with pytest.raises(clnorm.InvalidArgumentError, match="gamma: 4 elements"):
        layer.forward(x, y, gamma=cl_array.to_device(queue, np.ones(4, np.float32)))
    with pytest.raises(clnorm.InvalidArgumentError,
                       match=r"y: shape \(4, 2, 6, 5\) is \(N, C, D\) = \(4, 2, 30\)"):
        layer.forward(x, cl_array.empty(queue, (4, 2, 6, 5), np.float32))
    with pytest.raises(TypeError, match="numpy array"):
        layer.forward(np.ones(SHAPE, np.float32), y)
    with pytest.raises(clnorm.InvalidArgumentError, match="neither C-contiguous nor"):
        layer.forward(x, _strided(queue))


def _strided(queue):
    """An array of the plan's element count with every other float: not contiguous."""
    big = cl_array.empty(queue, (2, 4, 6, 10), np.float32)
    return big[:, :, :, ::2]


def test_bfloat16_needs_uint16(context, queue):
    plan = clnorm.Plan(context, "layer", shape=SHAPE, dtype="bfloat16")
    x = cl_array.to_device(queue, np.ones(SHAPE, np.float32))
    with pytest.raises(clnorm.InvalidArgumentError, match="bfloat16 is stored as uint16"):
        plan.forward(x, cl_array.empty_like(x))
    with pytest.raises(clnorm.InvalidArgumentError, match="dtype='bfloat16'"):
        clnorm.Plan(context, "layer", like=np.ones(SHAPE, np.uint16))
    plan.close()


def test_closed_plan_refuses_calls(context, queue):
    plan = clnorm.Plan(context, "rms", shape=SHAPE)
    plan.close()
    plan.close()  # twice is fine
    x = cl_array.to_device(queue, np.ones(SHAPE, np.float32))
    with pytest.raises(clnorm.Error, match="closed"):
        plan.forward(x, x)


# --- shapes and layouts -------------------------------------------------------------------

def test_layout_from_shape_and_strides():
    f = np.zeros((2, 3, 4, 5), np.float32)
    assert _shapes.describe(f.shape, f.strides, 4)[:4] == ("nchw", 2, 3, 20)
    assert _shapes.describe(f.shape, f.strides, 4, "nhwc")[:4] == ("nhwc", 2, 5, 12)
    cl_ = np.zeros((2, 4, 5, 3), np.float32).transpose(0, 3, 1, 2)  # logical NCHW, NHWC memory
    assert _shapes.describe(cl_.shape, cl_.strides, 4) == ("nhwc", 2, 3, 20, True)
    with pytest.raises(clnorm.Error, match="channels-last"):
        _shapes.describe(cl_.shape, cl_.strides, 4, "nchw")
    nc = np.zeros((7, 3), np.float32)
    assert _shapes.describe(nc.shape, nc.strides, 4, "nhwc")[:4] == ("nhwc", 7, 3, 1)
    v = np.zeros((2, 3, 4, 5, 6), np.float32)  # 3-D spatial
    assert _shapes.describe(v.shape, v.strides, 4)[:4] == ("nchw", 2, 3, 120)
    with pytest.raises(clnorm.Error, match="at least 2"):
        _shapes.describe((5,), (4,), 4)


def test_plan_like_an_array(context, queue):
    logical = np.zeros((2, 4, 5, 3), np.float32).transpose(0, 3, 1, 2)  # (N, C, H, W) NHWC
    plan = clnorm.Plan(context, "instance", like=logical)
    assert (plan.layout, plan.n, plan.c, plan.d) == ("nhwc", 2, 3, 20)
    assert plan.shape == (2, 4, 5, 3)
    # A pyopencl array of the same logical shape and strides is taken as it is.
    dev = cl_array.to_device(queue, np.zeros((2, 4, 5, 3), np.float32)).transpose((0, 3, 1, 2))
    plan.forward(dev, cl_array.to_device(queue, np.zeros((2, 4, 5, 3), np.float32))).wait()
    plan.close()


# --- numpy ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def np_context(context):
    return context  # the session's: its programs are compiled already


def test_normalize_numpy(np_context, rng):
    x = rng.normal(2.0, 3.0, (3, 8, 5, 3)).astype(np.float32)
    g = rng.normal(1, 0.2, 8)
    y, mean, invstd = clnorm.normalize(x, "group", groups=4, gamma=g, return_stats=True,
                                       context=np_context)
    ref = Problem("group", "nchw", 3, 8, 15, 4).forward(x.astype(np.float64), g)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y.ravel(), ref["y"], rtol=0, atol=2e-5)
    np.testing.assert_allclose(mean.ravel(), ref["save_mean"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(invstd.ravel(), ref["save_invstd"], rtol=1e-5)
    assert mean.shape == (3, 4)


def test_normalize_default_device_float64_and_running_stats(rng):
    """No context: the default device (clnorm_context_create(NULL)); float64 runs as float32;
    running statistics are numpy arrays updated in place."""
    x = rng.normal(0, 1, (5, 3, 7))
    rm, rv = np.zeros(3), np.ones(3)
    y = clnorm.normalize(x, "batch", running_mean=rm, running_var=rv, momentum=0.5)
    ref = Problem("batch", "nchw", 5, 3, 7, momentum=0.5).forward(
        x.astype(np.float32).astype(np.float64), running=(np.zeros(3), np.ones(3)))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.ravel(), ref["y"], rtol=0, atol=2e-5)
    np.testing.assert_allclose(rm, ref["running"][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rv, ref["running"][1], rtol=1e-5)
    y_inf = clnorm.normalize(x, "batch", running_mean=rm, running_var=rv, training=False)
    want = (x - rm[:, None]) / np.sqrt(rv[:, None] + 1e-5)
    np.testing.assert_allclose(y_inf, want, rtol=0, atol=2e-5)
    assert isinstance(clnorm.default_context(), clnorm.Context)


def test_normalize_keeps_channels_last_strides(np_context, rng):
    mem = rng.normal(0, 1, (2, 5, 3, 6)).astype(np.float32)  # NHWC memory
    x = mem.transpose(0, 3, 1, 2)  # logical NCHW
    y = clnorm.normalize(x, "instance", context=np_context)
    assert y.shape == x.shape and y.strides == x.strides
    ref = Problem("instance", "nhwc", 2, 6, 15).forward(mem.astype(np.float64))["y"]
    np.testing.assert_allclose(np.ascontiguousarray(y.transpose(0, 2, 3, 1)).ravel(), ref,
                               rtol=0, atol=2e-5)
    # The same data as stated NHWC memory gives the same bits.
    y2 = clnorm.normalize(mem, "instance", layout="nhwc", context=np_context)
    assert np.array_equal(y2, y.transpose(0, 2, 3, 1))


def test_normalize_bfloat16_and_float16(np_context, rng):
    x = rng.normal(1, 2, (4, 6, 10)).astype(np.float32)
    bits = clnorm.normalize(x, "rms", dtype="bfloat16", context=np_context)
    assert bits.dtype == np.uint16
    stored = load(store(x, "bfloat16"), "bfloat16")
    ref = Problem("rms", "nchw", 4, 6, 10).forward(stored)["y"]
    np.testing.assert_allclose(clnorm.from_bfloat16(bits).ravel(), ref, rtol=2 ** -8, atol=1e-5)
    h = clnorm.normalize(x.astype(np.float16), "layer", context=np_context)
    assert h.dtype == np.float16
    ref = Problem("layer", "nchw", 4, 6, 10).forward(x.astype(np.float16).astype(np.float64))
    np.testing.assert_allclose(h.astype(np.float64).ravel(), ref["y"], rtol=2 ** -11, atol=1e-5)


def test_normalize_backward_numpy(np_context, rng):
    x = rng.normal(0.5, 1.5, (3, 8, 12)).astype(np.float32)
    dy = rng.normal(0, 1, x.shape).astype(np.float32)
    g = rng.normal(1, 0.3, (8, 12)).astype(np.float32)
    _, _, invstd = clnorm.normalize(x, "rms", gamma=g, return_stats=True, context=np_context)
    grads = clnorm.normalize_backward(x, dy, "rms", gamma=g, save_invstd=invstd,
                                      context=np_context)
    assert isinstance(grads, clnorm.Gradients)
    want = Problem("rms", "nchw", 3, 8, 12).backward(x.astype(np.float64),
                                                    dy.astype(np.float64), g)
    for got, ref, name in zip(grads, want, ("dx", "dgamma", "dbeta")):
        rel = np.linalg.norm(got.ravel() - ref) / np.linalg.norm(ref)
        assert rel < 1e-5, name
    assert grads.dgamma.shape == (8, 12)


def test_normalize_batch_of_nothing(np_context):
    y = clnorm.normalize(np.zeros((0, 4, 3), np.float32), "layer", context=np_context)
    assert y.shape == (0, 4, 3)


# --- bfloat16 -----------------------------------------------------------------------------

def test_bfloat16_rounds_to_nearest_even():
    one = 1.0
    ulp = 2.0 ** -7  # bfloat16 spacing at 1
    vals = np.array([one, one + ulp / 2, one + 3 * ulp / 2, one + ulp / 2 + 2 ** -20,
                     -(one + ulp / 2), np.finfo(np.float32).max, np.inf, -np.inf, 0.0, -0.0],
                    np.float32)
    bits = clnorm.to_bfloat16(vals)
    back = clnorm.from_bfloat16(bits)
    assert back[0] == 1.0
    assert back[1] == 1.0  # tie: to the even (1.0)
    assert back[2] == one + 2 * ulp  # tie: to the even (1 + 2 ulp)
    assert back[3] == one + ulp  # above the tie: up
    assert back[4] == -1.0
    assert np.isinf(back[5]) and back[6] == np.inf and back[7] == -np.inf
    assert bits[8] == 0 and bits[9] == 0x8000
    nan = clnorm.to_bfloat16(np.array([np.nan, -np.nan], np.float32))
    assert np.all(np.isnan(clnorm.from_bfloat16(nan)))
    assert nan[1] & 0x8000


def test_bfloat16_round_trip_is_exact():
    bits = np.arange(0, 0x10000, dtype=np.uint32).astype(np.uint16)
    f = clnorm.from_bfloat16(bits)
    ok = ~np.isnan(f)
    assert np.array_equal(clnorm.to_bfloat16(f)[ok], bits[ok])
    assert f.dtype == np.float32
    with pytest.raises(TypeError):
        clnorm.from_bfloat16(np.zeros(3, np.float32))


# --- the library ----------------------------------------------------------------------------

def test_version_and_library():
    assert clnorm.version().count(".") == 2
    if os.environ.get("CLNORM_LIBRARY"):
        assert clnorm.library_path() == os.environ["CLNORM_LIBRARY"]
    assert clnorm.status_string(clnorm.Status.SUCCESS)
    info = clnorm.cache_info()
    assert info.text.startswith("on: " if info.usable else "off: ")


def test_unknown_status_keeps_its_number():
    e = _lib.make_error(42, "from a newer library", "clnorm_forward")
    assert isinstance(e, clnorm.Error) and e.status == 42 and "(42)" in str(e)


def test_structs_go_in_zeroed_room():
    """Fields a newer minor release appends read as zero: "behaves as before"."""
    desc = _lib.Desc(kind=3, n=5, eps=0.5)
    ptr, room = _lib.padded(desc)
    assert ptr.contents.kind == 3 and ptr.contents.n == 5 and ptr.contents.eps == 0.5
    assert len(room) >= 512 and set(room.raw[ctypes.sizeof(desc):]) == {0}


def test_structs_match_the_header(tmp_path):
    """sizeof and offsetof of clnorm_desc and clnorm_buffers, from the C compiler, against
    the ctypes structures."""
    header = REPO / "include" / "clnorm" / "clnorm.h"
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not header.exists() or not cc:
        pytest.skip("needs the source tree's include/clnorm/clnorm.h and a C compiler")
    (tmp_path / "clnorm").mkdir()
    (tmp_path / "clnorm" / "version.h").write_text("")  # only the layout matters here
    lines = ['#include <clnorm/clnorm.h>', '#include <stddef.h>', '#include <stdio.h>',
             'int main(void) {']
    for struct, cls in (("clnorm_desc", _lib.Desc), ("clnorm_buffers", _lib.Buffers)):
        lines.append('printf("%s %%zu\\n", sizeof(%s));' % (struct, struct))
        for name, _ in cls._fields_:
            lines.append('printf("%s.%s %%zu\\n", offsetof(%s, %s));' % (struct, name, struct,
                                                                         name))
    lines += ["return 0;", "}"]
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    subprocess.run([cc, "-I", str(REPO / "include"), "-I", str(tmp_path), str(src), "-o",
                    str(exe)], check=True, capture_output=True)
    got = dict(line.split() for line in
               subprocess.run([str(exe)], check=True, capture_output=True, text=True)
               .stdout.splitlines())
    want = {"clnorm_desc": ctypes.sizeof(_lib.Desc),
            "clnorm_buffers": ctypes.sizeof(_lib.Buffers)}
    for struct, cls in (("clnorm_desc", _lib.Desc), ("clnorm_buffers", _lib.Buffers)):
        for name, _ in cls._fields_:
            want["%s.%s" % (struct, name)] = getattr(cls, name).offset
    assert {k: int(v) for k, v in got.items()} == want
