"""What Plan calls take: arrays at offsets (sub-buffers), plain buffers, events and wait lists."""
import time

import numpy as np
import pyopencl as cl
import pyopencl.array as cl_array
import pytest

import clnorm
from reference import Problem

SHAPE = (2, 4, 6, 5)  # NCHW: N=2, C=4, D=30; 240 floats


def _ref(x, kind="layer"):
    n, c = x.shape[:2]
    return Problem(kind, "nchw", n, c, x[0, 0].size).forward(x.astype(np.float64))["y"] \
        .reshape(x.shape)


@pytest.fixture(scope="module")
def layer(context):
    plan = clnorm.Plan(context, "layer", shape=SHAPE)
    yield plan
    plan.close()


@pytest.fixture
def x(rng):
    return rng.normal(3.0, 1.5, SHAPE).astype(np.float32)


def test_aligned_offsets_are_sub_buffers(layer, queue, context, x):
    align = context.base_addr_align // 4  # in floats
    size = x.size
    big = cl_array.to_device(queue, np.full(4 * align + 2 * size, np.nan, np.float32))
    xa = big[align:align + size].reshape(SHAPE)
    start = (align + size + align - 1) // align * align
    ya = big[start:start + size].reshape(SHAPE)
    assert xa.offset and ya.offset and xa.base_data is ya.base_data
    xa.set(x)
    layer.forward(xa, out=ya).wait()
    np.testing.assert_allclose(ya.get(), _ref(x), rtol=0, atol=1e-5)
    whole = big.get()
    assert np.all(np.isnan(whole[:align])), "wrote before x"
    assert np.all(np.isnan(whole[align + size:start])), "wrote between x and y"
    assert np.all(np.isnan(whole[start + size:])), "wrote after y"
    # In place on an offset array: y = x, one sub-buffer for both.
    layer.forward(xa, out=xa).wait()
    np.testing.assert_allclose(xa.get(), _ref(x), rtol=0, atol=1e-5)


def test_unaligned_offset_raises_and_explains(layer, queue, context, x):
    big = cl_array.to_device(queue, np.zeros(x.size + 1, np.float32))
    xa = big[1:].reshape(SHAPE)  # 4 bytes in
    y = cl_array.empty(queue, SHAPE, np.float32)
    with pytest.raises(clnorm.Error) as info:
        layer.forward(xa, out=y)
    e = info.value
    assert isinstance(e, clnorm.InvalidArgumentError) and isinstance(e, ValueError)
    assert e.status == clnorm.Status.INVALID_ARGUMENT
    assert "x: the array starts 4 bytes into its buffer" in str(e)
    assert "CL_DEVICE_MEM_BASE_ADDR_ALIGN" in str(e)
    assert "%d bytes" % context.base_addr_align in str(e)


def test_pooled_arrays_at_offsets(layer, queue, context, x):
    """pyopencl's memory pool hands out PooledBuffers: sub-buffers are made of what they hold."""
    import pyopencl.tools as cl_tools
    pool = cl_tools.MemoryPool(cl_tools.ImmediateAllocator(queue))
    align = context.base_addr_align // 4
    big = cl_array.to_device(queue, np.zeros(align + x.size, np.float32), allocator=pool)
    xa = big[align:].reshape(SHAPE)
    xa.set(x)
    y = cl_array.empty(queue, SHAPE, np.float32, allocator=pool)
    layer.forward(xa, out=y).wait()
    np.testing.assert_allclose(y.get(), _ref(x), rtol=0, atol=1e-5)


def test_offset_parameters(context, queue, rng, x):
    """gamma and beta at an aligned offset of one buffer; BATCH needs C of each."""
    plan = clnorm.Plan(context, "batch", like=x)
    align = context.base_addr_align // 4
    g = rng.normal(1, 0.3, 4).astype(np.float32)
    b = rng.normal(0, 0.3, 4).astype(np.float32)
    params = cl_array.to_device(queue, np.concatenate([g, np.zeros(align - 4, np.float32), b]))
    y = cl_array.empty(queue, SHAPE, np.float32)
    plan.forward(cl_array.to_device(queue, x), y, gamma=params[:4], beta=params[align:]).wait()
    want = Problem("batch", "nchw", 2, 4, 30).forward(x.astype(np.float64), g, b)["y"]
    np.testing.assert_allclose(y.get().ravel(), want, rtol=0, atol=2e-5)
    plan.close()


def test_plain_buffers(layer, queue, cl_ctx, x):
    mf = cl.mem_flags
    xb = cl.Buffer(cl_ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=x)
    yb = cl.Buffer(cl_ctx, mf.WRITE_ONLY, x.nbytes)
    evt = layer.forward(xb, out=yb)
    y = np.empty_like(x)
    cl.enqueue_copy(queue, y, yb, wait_for=[evt])
    np.testing.assert_allclose(y, _ref(x), rtol=0, atol=1e-5)


def test_event_is_the_callers(layer, queue, x):
    xa = cl_array.to_device(queue, x)
    y = cl_array.empty_like(xa)
    evt = layer.forward(xa, y)
    assert isinstance(evt, cl.Event)
    evt.wait()
    assert evt.command_execution_status == cl.command_execution_status.COMPLETE
    # from_int_ptr(retain=False): ours is the reference clnorm handed over, beside its own.
    assert evt.get_info(cl.event_info.REFERENCE_COUNT) >= 1
    assert evt in y.events  # pyopencl's y.get() waits for it
    del evt  # releasing it early is fine: clnorm holds its own


@pytest.fixture
def gated_queue(cl_ctx):
    """A queue of its own, so that a test that fails while its gate is shut blocks nothing."""
    return cl.CommandQueue(cl_ctx)


def test_wait_list_gates_the_call(gated_queue, queue, cl_ctx, x):
    plan = clnorm.Plan(gated_queue, "layer", shape=SHAPE)
    xa = cl_array.to_device(gated_queue, x)
    nan = np.full(SHAPE, np.nan, np.float32)
    y = cl_array.to_device(gated_queue, nan)
    gated_queue.finish()
    gate = cl.UserEvent(cl_ctx)
    try:
        evt = plan.forward(xa, out=y, wait_for=[gate])
        time.sleep(0.2)  # time for a call that did not wait to run
        assert evt.command_execution_status > cl.command_execution_status.COMPLETE
        seen = np.empty_like(nan)
        cl.enqueue_copy(queue, seen, y.base_data)  # another queue: no ordering with the call
        assert np.all(np.isnan(seen)), "y was written before the gate opened"
    finally:
        gate.set_status(cl.command_execution_status.COMPLETE)
    evt.wait()
    np.testing.assert_allclose(y.get(), _ref(x), rtol=0, atol=1e-5)
    plan.close()


def test_failed_dependency_fails_the_call_and_writes_nothing(gated_queue, cl_ctx, x):
    plan = clnorm.Plan(gated_queue, "layer", shape=SHAPE)
    xa = cl_array.to_device(gated_queue, x)
    y = cl_array.to_device(gated_queue, np.full(SHAPE, np.nan, np.float32))
    gated_queue.finish()
    gate = cl.UserEvent(cl_ctx)
    evt = plan.forward(xa, out=y, wait_for=[gate])
    y.events.clear()  # y.get() below must not wait on the failed call
    gate.set_status(-1)
    with pytest.raises(cl.Error):
        evt.wait()
    assert evt.command_execution_status < 0
    assert np.all(np.isnan(y.get())), "a call whose dependency failed wrote y"
    # The plan goes on working.
    plan.forward(xa, out=y).wait()
    np.testing.assert_allclose(y.get(), _ref(x), rtol=0, atol=1e-5)
    plan.close()


def test_calls_chain_through_events_on_an_out_of_order_queue(cl_ctx, device, x):
    try:
        q = cl.CommandQueue(cl_ctx, device,
                            cl.command_queue_properties.OUT_OF_ORDER_EXEC_MODE_ENABLE)
    except cl.Error as e:
        pytest.skip("no out-of-order queue on this device: %s" % e)
    # Two plans: calls on one plan are ordered by clnorm itself (they share its scratch).
    one, two = clnorm.Plan(q, "layer", shape=SHAPE), clnorm.Plan(q, "layer", shape=SHAPE)
    xa = cl_array.to_device(q, x)
    q.finish()
    y, z = cl_array.empty_like(xa), cl_array.empty_like(xa)
    first = one.forward(xa, out=y)
    y.events.clear()  # the explicit wait list alone orders the second call
    second = two.forward(y, out=z, wait_for=[first])
    second.wait()
    np.testing.assert_allclose(z.get(), _ref(_ref(x).astype(np.float32)), rtol=0, atol=2e-5)
    one.close()
    two.close()


def test_event_of_another_context_is_refused(layer, queue, device, x):
    other = cl.Context([device])
    foreign = cl.UserEvent(other)
    xa = cl_array.to_device(queue, x)
    with pytest.raises(clnorm.InvalidArgumentError, match=r"wait\[0\]: an event of another"):
        layer.forward(xa, cl_array.empty_like(xa), wait_for=[foreign])
    foreign.set_status(cl.command_execution_status.COMPLETE)


def test_array_events_are_waited_for(layer, queue, x):
    """An input array's pending events (pyopencl's convention) join the wait list."""
    xa = cl_array.to_device(queue, x)
    gate = cl.UserEvent(queue.context)
    xa.add_event(gate)
    y = cl_array.empty_like(xa)
    try:
        evt = layer.forward(xa, y)
        time.sleep(0.05)
        assert evt.command_execution_status > cl.command_execution_status.COMPLETE
    finally:
        gate.set_status(cl.command_execution_status.COMPLETE)
    xa.events.clear()
    evt.wait()
    np.testing.assert_allclose(y.get(), _ref(x), rtol=0, atol=1e-5)
