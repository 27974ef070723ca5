"""Every kind x layout x storage type, forward and backward, against the float64 reference.

Inputs are made in float64, stored in the plan's type, and the reference is computed from the
stored values, so only the library's own arithmetic and the rounding of its outputs count:
  outputs:   16 * 2^-23 * max|x| * max(invstd) * max|gamma| (float32 arithmetic, DESIGN.md 7)
             + 2^-23 * |y| (the final multiply-add) + half an ulp of the storage type * |y|
  statistics: 16 * 2^-23 * max|x| on the mean, 16 * 2^-23 * (max|x| * invstd)^2 relative on
             invstd and the running variance
  gradients: relative L2 norm within GRAD_F32 (float32) plus half an ulp of the storage type
"""
import numpy as np
import pyopencl as cl
import pyopencl.array as cl_array
import pytest

import clnorm
from conftest import (C, D, F32, GROUPS, HALF_ULP, N, SUBNORMAL, load, memory_shape, store)
from reference import HAS_RUNNING, KINDS, Problem

DTYPES = ("float32", "float16", "bfloat16")
LAYOUTS = ("nchw", "nhwc")
# float32 gradients: blocked sums of at most N*D = 45 (or C*D = 120) terms of products of
# three rounded factors, then a difference of such means: 64 ulps of float32.
GRAD_F32 = 64 * F32

CASES = [(k, lay, dt) for k in KINDS for lay in LAYOUTS for dt in DTYPES]
IDS = ["%s-%s-%s" % c for c in CASES]


def problem(plan):
    return Problem(plan.kind, plan.layout, plan.n, plan.c, plan.d, plan.groups, plan.eps,
                   plan.momentum)


def inputs(rng, plan, dtype):
    """Stored x, its float64 values, gamma and beta (float32 values)."""
    x = store(rng.normal(0.5, 2.0, size=plan.shape), dtype)
    gamma = rng.normal(1.0, 0.5, size=plan.param_shape).astype(np.float32)
    beta = rng.normal(0.0, 0.5, size=plan.param_shape).astype(np.float32)
    return x, load(x, dtype), gamma, beta


def output_tol(xmax, ref_y, invstd_max, gamma, dtype):
    """xmax: the largest |value| the normalization subtracts from or scales (max|x|, plus
    max|running_mean| in inference)."""
    g = 1.0 if gamma is None else float(np.max(np.abs(gamma)))
    arith = 16 * F32 * xmax * invstd_max * g
    return arith + (F32 + HALF_ULP[dtype]) * np.abs(ref_y) + SUBNORMAL[dtype]


def amax(a):
    return float(np.max(np.abs(a)))


def assert_close(got, want, tol, what):
    err = np.abs(np.asarray(got, np.float64).reshape(-1) - np.asarray(want).reshape(-1))
    tol = np.broadcast_to(tol, err.shape).reshape(-1) if np.ndim(tol) else tol
    bad = err > tol
    assert not np.any(bad), "%s: %d of %d beyond tolerance; worst %g (tol %g) at %d" % (
        what, int(bad.sum()), err.size, float(err.max()),
        float(np.max(np.broadcast_to(tol, err.shape))), int(np.argmax(err)))


def assert_rel_l2(got, want, tol, what):
    got = np.asarray(got, np.float64).reshape(-1)
    want = np.asarray(want, np.float64).reshape(-1)
    rel = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-300)
    assert rel <= tol, "%s: relative L2 error %g > %g" % (what, rel, tol)


def check_stats(ref, got_mean, got_invstd, x64, plan):
    xmax = amax(x64)
    inv_tol = 16 * F32 * (xmax * ref["invstd_max"]) ** 2
    assert_close(got_invstd, ref["save_invstd"], inv_tol * np.abs(ref["save_invstd"]) + 1e-30,
                 "save_invstd")
    if plan.kind != "rms":
        assert_close(got_mean, ref["save_mean"], 16 * F32 * xmax, "save_mean")


def dev(queue, a):
    return cl_array.to_device(queue, np.ascontiguousarray(a))


def sentinel(queue, shape, dtype=np.float32):
    """An array with every byte 0xff: NaN in float32, float16 and bfloat16 (uint16) alike,
    so whatever the call did not write shows."""
    dtype = np.dtype(dtype)
    nan = np.full(int(np.prod(shape)) * dtype.itemsize, 0xFF, np.uint8).view(dtype)
    return cl_array.to_device(queue, nan.reshape(shape))


@pytest.mark.parametrize("kind,layout,dtype", CASES, ids=IDS)
def test_forward_matches_reference(plans, queue, rng, kind, layout, dtype):
    plan = plans(kind, layout, dtype)
    assert plan.shape == memory_shape(layout) and (plan.n, plan.c, plan.d) == (N, C, D)
    ref_p = problem(plan)
    x, x64, gamma, beta = inputs(rng, plan, dtype)
    xd = dev(queue, x)
    yd = sentinel(queue, plan.shape, plan.storage)
    sm = sentinel(queue, plan.stats_shape)
    si = sentinel(queue, plan.stats_shape)
    running = None
    kw = {}
    if kind in HAS_RUNNING:
        running = (rng.normal(0, 1, C).astype(np.float32),
                   rng.uniform(0.5, 2, C).astype(np.float32))
        kw = dict(running_mean=dev(queue, running[0]), running_var=dev(queue, running[1]))

    # Training, with every optional role.
    evt = plan.forward(xd, out=yd, gamma=dev(queue, gamma), beta=dev(queue, beta),
                       save_mean=sm if kind != "rms" else None, save_invstd=si,
                       training=True, **kw)
    assert isinstance(evt, cl.Event)
    evt.wait()
    ref = ref_p.forward(x64, gamma, beta, running, training=True)
    assert_close(load(yd.get(), dtype), ref["y"],
                 output_tol(amax(x64), ref["y"], ref["invstd_max"], gamma, dtype), "y")
    check_stats(ref, sm.get(), si.get(), x64, plan)
    if kind == "rms":
        assert np.all(np.isnan(sm.get())), "RMS wrote save_mean"
    if running is not None:
        xmax = amax(x64)
        assert_close(kw["running_mean"].get(), ref["running"][0],
                     16 * F32 * xmax + F32 * np.abs(ref["running"][0]), "running_mean")
        assert_close(kw["running_var"].get(), ref["running"][1],
                     16 * F32 * (xmax * ref["invstd_max"]) ** 2 * np.abs(ref["running"][1]),
                     "running_var")

        # Inference: normalizes with the running statistics, writes no save_*.
        sm2, si2 = sentinel(queue, plan.stats_shape), sentinel(queue, plan.stats_shape)
        rm, rv = (r.get() for r in (kw["running_mean"], kw["running_var"]))
        plan.forward(xd, yd, gamma=dev(queue, gamma), beta=dev(queue, beta), save_mean=sm2,
                     save_invstd=si2, training=False, **kw).wait()
        ref = ref_p.forward(x64, gamma, beta, (rm, rv), training=False)
        inv_max = float(np.max(1 / np.sqrt(rv.astype(np.float64) + plan.eps)))
        assert_close(load(yd.get(), dtype), ref["y"],
                     output_tol(amax(x64) + amax(rm), ref["y"], inv_max, gamma, dtype),
                     "y (inference)")
        assert np.all(np.isnan(sm2.get())) and np.all(np.isnan(si2.get()))
        assert np.array_equal(kw["running_mean"].get(), rm), "inference changed running_mean"

    # No gamma, no beta: 1 and 0.
    plan.forward(xd, yd).wait()
    ref = ref_p.forward(x64)
    assert_close(load(yd.get(), dtype), ref["y"],
                 output_tol(amax(x64), ref["y"], ref["invstd_max"], None, dtype), "y (no gamma)")


@pytest.mark.parametrize("kind,layout,dtype", CASES, ids=IDS)
def test_backward_matches_reference(plans, queue, rng, kind, layout, dtype):
    plan = plans(kind, layout, dtype)
    ref_p = problem(plan)
    x, x64, gamma, _ = inputs(rng, plan, dtype)
    dy = store(rng.normal(0.0, 1.0, size=plan.shape), dtype)
    dy64 = load(dy, dtype)
    xd, dyd, gd = dev(queue, x), dev(queue, dy), dev(queue, gamma)
    sm = cl_array.empty(queue, plan.stats_shape, np.float32)
    si = cl_array.empty(queue, plan.stats_shape, np.float32)
    plan.forward(xd, cl_array.empty_like(xd), gamma=gd, save_mean=sm if kind != "rms" else None,
                 save_invstd=si)
    tol = GRAD_F32 + HALF_ULP[dtype]

    # Training, with forward's statistics.
    dx, dg, db = (sentinel(queue, plan.shape, plan.storage), sentinel(queue, plan.param_shape),
                  sentinel(queue, plan.param_shape))
    evt = plan.backward(xd, dyd, out=dx, gamma=gd, dgamma=dg, dbeta=db,
                        save_mean=sm if kind != "rms" else None, save_invstd=si)
    assert isinstance(evt, cl.Event)
    evt.wait()
    want_dx, want_dg, want_db = ref_p.backward(x64, dy64, gamma)
    assert_rel_l2(load(dx.get(), dtype), want_dx, tol, "dx")
    assert_rel_l2(dg.get(), want_dg, GRAD_F32, "dgamma")
    assert_rel_l2(db.get(), want_db, GRAD_F32, "dbeta")

    # Statistics recomputed from x, gradient into dy's own buffer (dx = dy, in place).
    dy_again = dev(queue, dy)
    plan.backward(xd, dy_again, out=dy_again, gamma=gd).wait()
    assert_rel_l2(load(dy_again.get(), dtype), want_dx, tol, "dx (recomputed, in place)")

    if kind in HAS_RUNNING:
        # Inference with running statistics: constants, dx = dy * gamma * invstd_running.
        rm = rng.normal(0, 1, C).astype(np.float32)
        rv = rng.uniform(0.5, 2, C).astype(np.float32)
        plan.backward(xd, dyd, out=dx, gamma=gd, dgamma=dg, dbeta=db,
                      running_mean=dev(queue, rm), running_var=dev(queue, rv),
                      training=False).wait()
        want_dx, want_dg, want_db = ref_p.backward(x64, dy64, gamma, (rm, rv), training=False)
        assert_rel_l2(load(dx.get(), dtype), want_dx, tol, "dx (inference)")
        assert_rel_l2(dg.get(), want_dg, GRAD_F32, "dgamma (inference)")
        assert_rel_l2(db.get(), want_db, GRAD_F32, "dbeta (inference)")


@pytest.mark.parametrize("kind", KINDS)
def test_plain_nc_data(context, queue, rng, kind):
    """(N, C) data: D = 1; both layouts are the same memory. INSTANCE statistics over one
    value are refused, as in PyTorch (DESIGN.md 1)."""
    shape = (6, 8)
    plan = clnorm.Plan(context, kind, shape=shape, groups=GROUPS if kind == "group" else None)
    assert (plan.n, plan.c, plan.d) == (6, 8, 1)
    x = rng.normal(0, 1, shape).astype(np.float32)
    y = cl_array.empty(queue, shape, np.float32)
    if kind == "instance":
        with pytest.raises(clnorm.InvalidArgumentError, match="desc.d: INSTANCE statistics"):
            plan.forward(dev(queue, x), y)
        plan.close()
        return
    plan.forward(dev(queue, x), y).wait()
    ref = problem(plan).forward(x.astype(np.float64))
    tol = output_tol(amax(x), ref["y"], ref["invstd_max"], None, "float32")
    assert_close(y.get(), ref["y"], tol, "y")
    plan.close()


def test_stats_count_and_shapes(plans):
    want = {"batch": (C,), "layer": (N,), "instance": (N, C), "group": (N, GROUPS),
            "rms": (N,)}
    for kind in KINDS:
        plan = plans(kind, "nhwc", "float32")
        assert plan.stats_shape == want[kind]
        assert plan.stats_count == int(np.prod(want[kind]))
        params = memory_shape("nhwc")[1:] if kind in ("layer", "rms") else (C,)
        assert plan.param_shape == params


def test_scratch_bytes(plans):
    plan = plans("group", "nchw", "float32")
    assert plan.scratch_bytes("forward") > 0
    assert plan.scratch_bytes("held") >= 0
    assert plan.scratch_bytes("backward") >= 0
    with pytest.raises(clnorm.Error, match="which"):
        plan.scratch_bytes("sideways")
