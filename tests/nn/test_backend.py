"""The array-module switch and the layers' CUDA kernels against their CPU loops.

Without a GPU, ``kernel_target("cuda")`` sends numpy arrays through the CUDA kernels, which run
in numba's simulator (set up by conftest); shapes stay small because the simulator runs one
Python thread per GPU thread. Tests marked ``cuda`` run the same layers on cupy arrays and need
``SYMODE_TEST_GPU=1`` on a machine with a GPU and cupy.
"""

import numba
import numpy as np
import pytest
import sympy as sp

from symode import backend, nn
from symode.backend import array_module, kernel_target
from symode.errors import CudaUnavailableError, SymodeError
from symode.nn import parallel


def _close(a, b, rtol=1e-12):
    """Equal to round-off (the kernels may sum in another order or contract to FMAs)."""
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, np.abs(b).max()))


def _cupy():
    """cupy on a real GPU, or skip saying why."""
    cp = pytest.importorskip("cupy", reason="cupy (the cuda extra) is not installed")
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:                       # no driver, no device
        pytest.skip(f"no usable GPU: {exc}")
    if count < 1:
        pytest.skip("no GPU")
    if numba.config.ENABLE_CUDASIM:
        pytest.skip("numba's CUDA simulator is on; run with SYMODE_TEST_GPU=1 on a GPU")
    return cp


# -- the switch -----------------------------------------------------------------------------------
def test_array_module_is_numpy_for_host_data():
    assert array_module(np.zeros(3)) is np
    assert array_module(np.zeros(3), 1.0, None, [1, 2]) is np
    assert array_module() is np
    assert backend.target(np) == "cpu"
    with kernel_target("cuda"):
        assert backend.target(np) == "cuda" and backend.dispatch(np.ones(2)) == (np, True)
    assert backend.target(np) == "cpu" and backend.forced_target() is None


def test_kernel_target_rejects_unknown_names():
    with pytest.raises(SymodeError, match="'cpu', 'cuda'"):
        with kernel_target("tpu"):
            pass


def test_to_device_without_cupy_names_the_extra():
    try:
        import cupy  # noqa: F401
        pytest.skip("cupy is installed")
    except ImportError:
        pass
    with pytest.raises(CudaUnavailableError, match=r"symode\[cuda\]"):
        backend.to_device(np.zeros(3))
    assert issubclass(CudaUnavailableError, SymodeError)


def test_to_numpy_passes_host_arrays():
    a = np.arange(3.0)
    assert backend.to_numpy(a) is a
    np.testing.assert_array_equal(backend.to_numpy([1.0, 2.0]), [1.0, 2.0])


def test_forced_target_runs_whole_batches(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_SLICE_BYTES", 1)
    x = np.zeros((8, 4))
    with parallel.num_threads(2):
        assert parallel.batch_slices(x) is not None
        with kernel_target("cuda"):
            assert parallel.batch_slices(x) is None


# -- layers: CUDA kernels against the CPU loops ----------------------------------------------
def _check_layer(layer, x, rng, t=0.3, rtol=1e-12):
    """forward, vjp_t and jvp (with θ̇) on the CUDA path equal the CPU path."""
    theta = layer.init(rng, x.dtype)
    theta = theta + (0.1 * rng.standard_normal(theta.shape)).astype(x.dtype)
    y, cache = layer.forward(theta, x, t)
    ybar = rng.standard_normal(y.shape).astype(x.dtype)
    xdot = rng.standard_normal(x.shape).astype(x.dtype)
    thetadot = rng.standard_normal(theta.shape).astype(x.dtype)
    xbar, thetabar, tbar = layer.vjp_t(theta, cache, ybar)
    ydot = layer.jvp(theta, cache, xdot, thetadot)
    with kernel_target("cuda"):
        y2, cache2 = layer.forward(theta, x, t)
        xbar2, thetabar2, tbar2 = layer.vjp_t(theta, cache2, ybar)
        ydot2 = layer.jvp(theta, cache2, xdot, thetadot)
    for cpu, gpu in [(y, y2), (xbar, xbar2), (thetabar, thetabar2), (ydot, ydot2)]:
        assert gpu.dtype == cpu.dtype and gpu.shape == cpu.shape
        _close(gpu, cpu, rtol)
    assert tbar2 == pytest.approx(tbar, rel=rtol, abs=rtol)


@pytest.mark.parametrize("layer", [
    nn.Conv2d(2, 3, 3, padding=1),
    nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0), bias=False),
    nn.ConcatConv2d(2, 3, 3, stride=2, padding=1),
    nn.ConcatConv2d(2, 2, 1),
], ids=repr)
def test_conv_cuda_kernels_match_cpu(layer, rng):
    _check_layer(layer, rng.standard_normal((2, 2, 5, 4)), rng)


def test_conv_float32_stays_float32(rng):
    _check_layer(nn.ConcatConv2d(2, 3, 3, padding=1),
                 rng.standard_normal((2, 2, 4, 4)).astype(np.float32), rng, rtol=1e-5)


@pytest.mark.parametrize("layer, shape", [
    (nn.GroupNorm(2, 4), (2, 4, 3, 3)),
    (nn.GroupNorm(1, 3, eps=1e-3), (3, 3)),
], ids=repr)
def test_group_norm_cuda_kernels_match_cpu(layer, shape, rng):
    _check_layer(layer, rng.standard_normal(shape), rng)


def _mish():
    u = sp.Symbol("u")
    return nn.activation(u * sp.tanh(sp.log(1 + sp.exp(u))), u, "mish")


@pytest.mark.parametrize("act", [nn.Sigmoid(), nn.Softplus(), nn.SiLU(), nn.ELU(0.5), _mish(),
                                 nn.ReLU(), nn.Tanh()], ids=repr)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_activation_cuda_kernels_match_cpu(act, dtype, rng):
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    x = (3 * rng.standard_normal((3, 2, 4))).astype(dtype)
    x[0, 0, :2] = 0.0                                   # kinks at 0 take their convention
    ybar, xdot = (rng.standard_normal(x.shape).astype(dtype) for _ in range(2))
    theta = np.zeros(0, dtype)
    y, cache = act.forward(theta, x)
    cpu = [y, act.vjp(theta, cache, ybar)[0], act.jvp(theta, cache, xdot),
           act.vjp_jvp(theta, cache, ybar, xdot)[0], act.derivative(x, 2)]
    with kernel_target("cuda"):
        y2, cache2 = act.forward(theta, x)
        gpu = [y2, act.vjp(theta, cache2, ybar)[0], act.jvp(theta, cache2, xdot),
               act.vjp_jvp(theta, cache2, ybar, xdot)[0], act.derivative(x, 2)]
    for a, b in zip(cpu, gpu):
        assert b.dtype == a.dtype and b.shape == a.shape
        _close(b, a, rtol)


def test_activation_cuda_source_prints_the_derived_expressions():
    act = nn.Sigmoid()
    text = act.source(1, target="cuda")
    assert "cuda.jit(device=True)" in text and "def vjp(x, g, out)" in text
    cpu = act.source(1)
    body = cpu[cpu.index("@JIT"):cpu.index("@_ufunc")]
    assert body in text                                 # the same scalar functions
    with pytest.raises(ValueError, match="target"):
        act.source(1, target="tpu")


def test_sequential_conv_net_cuda_path_matches_cpu(rng):
    net = nn.Sequential(nn.GroupNorm(2, 4), nn.ReLU(), nn.ConcatConv2d(4, 4, 3, padding=1),
                        nn.GroupNorm(2, 4), nn.Softplus(), nn.Conv2d(4, 2, 3, stride=2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3), nn.SiLU())
    _check_layer(net, rng.standard_normal((2, 4, 5, 5)), rng)


def test_ode_block_cuda_path_matches_cpu(rng):
    """The dense ODE-Net runs layer by layer with the CUDA activation kernels (the fused CPU
    network steps aside) and gives the CPU solve and gradient to round-off."""
    net = nn.Sequential(nn.ConcatLinear(2, 8), nn.Softplus(), nn.ConcatLinear(8, 2))
    block = nn.ODEBlock(net, t1=0.5, rtol=1e-3, atol=1e-4)
    theta = net.init(rng)
    x = rng.standard_normal((3, 2))
    ybar = rng.standard_normal((3, 2))
    assert block.dynamics.fused is not None and block.dynamics.fused.accepts(theta, x)
    y, cache = block.forward(theta, x)
    xbar, thetabar = block.vjp(theta, cache, ybar)
    with kernel_target("cuda"):
        assert not block.dynamics.fused.accepts(theta, x)
        y2, cache2 = block.forward(theta, x)
        xbar2, thetabar2 = block.vjp(theta, cache2, ybar)
    _close(y2, y, 1e-10)
    _close(xbar2, xbar, 1e-9)
    _close(thetabar2, thetabar, 1e-9)


# -- real GPU: cupy in, cupy out -------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("layer, shape", [
    (nn.ConcatConv2d(3, 4, 3, padding=1), (4, 3, 6, 6)),
    (nn.Conv2d(3, 4, 3, stride=2, padding=1), (4, 3, 7, 6)),
    (nn.GroupNorm(2, 4), (3, 4, 5, 5)),
    (nn.Softplus(), (3, 4, 5)),
    (nn.Sequential(nn.ConcatLinear(3, 16), nn.Tanh(), nn.ConcatSquashLinear(16, 4)), (5, 3)),
], ids=repr)
def test_layers_on_cupy_match_numpy(layer, shape, rng):
    cp = _cupy()
    x = rng.standard_normal(shape)
    theta = layer.init(rng)
    y, cache = layer.forward(theta, x, 0.3)
    ybar = rng.standard_normal(y.shape)
    xbar, thetabar, tbar = layer.vjp_t(theta, cache, ybar)
    yg, cg = layer.forward(cp.asarray(theta), cp.asarray(x), 0.3)
    xbar_g, thetabar_g, tbar_g = layer.vjp_t(cp.asarray(theta), cg, cp.asarray(ybar))
    assert isinstance(yg, cp.ndarray) and isinstance(xbar_g, cp.ndarray)
    for cpu, gpu in [(y, yg), (xbar, xbar_g), (thetabar, thetabar_g)]:
        _close(gpu.get(), cpu, 1e-10)
    assert tbar_g == pytest.approx(tbar, rel=1e-10, abs=1e-12)


@pytest.mark.cuda
def test_losses_and_optimizers_on_cupy_match_numpy(rng):
    cp = _cupy()
    logits, labels = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    loss, grad = nn.softmax_cross_entropy(logits, labels)
    loss_g, grad_g = nn.softmax_cross_entropy(cp.asarray(logits), cp.asarray(labels))
    assert isinstance(loss_g, float) and loss_g == pytest.approx(loss, rel=1e-12)
    _close(grad_g.get(), grad)
    opt = nn.Adam(lr=1e-2)
    theta = rng.standard_normal(5)
    new, _ = opt.step(theta, theta, opt.init(theta))
    new_g, state_g = opt.step(cp.asarray(theta), cp.asarray(theta), opt.init(cp.asarray(theta)))
    assert isinstance(state_g["exp_avg"], cp.ndarray)
    _close(new_g.get(), new)
