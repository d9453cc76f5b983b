"""cupy arrays in, cupy arrays out: layers, losses, optimizers and the array engine on the
stand-in cupy of ``tests/fake_cupy.py``.

The fake keeps its data in host memory but refuses, as cupy does, every implicit conversion to
numpy and every mix with a host array; the layers' CUDA kernels run on it in numba's simulator.
Each test runs the same work on numpy arrays and on fake cupy arrays and checks that every
result is a fake array equal to the numpy one (to round-off: the CUDA kernels and the CPU loops
may sum in another order). Shapes are tiny: the simulator runs one Python thread per GPU thread.
"""

import numpy as np
import pytest
import fake_cupy as fake

from symode import backend, nn
from symode.errors import NonFiniteError
from symode.solvers import array_engine as ae
from symode.solvers.controllers import PIController
from symode.solvers.tableaus import get_tableau


@pytest.fixture
def fake_cupy(monkeypatch):
    """The stand-in cupy, in ``sys.modules`` for one test."""
    return fake.install(monkeypatch)


def _check(gpu, cpu, cp, rtol=1e-12):
    """``gpu`` (nested tuples/lists of arrays and floats) is all fake cupy and equals ``cpu``."""
    if isinstance(cpu, (tuple, list)):
        assert len(gpu) == len(cpu)
        for g, c in zip(gpu, cpu):
            _check(g, c, cp, rtol)
    elif isinstance(cpu, np.ndarray):
        assert isinstance(gpu, cp.ndarray), f"got {type(gpu).__name__}, not a cupy array"
        assert gpu.shape == cpu.shape and gpu.dtype == cpu.dtype
        scale = max(1.0, float(np.abs(cpu).max(initial=0.0)))
        np.testing.assert_allclose(gpu.get(), cpu, rtol=rtol, atol=rtol * scale)
    else:
        assert not isinstance(gpu, cp.ndarray) and gpu == pytest.approx(cpu, rel=rtol, abs=rtol)


def _run(layer, theta, x, ybar, xdot, thetadot, t=0.3):
    """forward, vjp_t and jvp of ``layer`` (the cache left out: it is checked through them)."""
    y, cache = layer.forward(theta, x, t)
    out = [y, layer.vjp_t(theta, cache, ybar)]
    if xdot is not None:
        out.append(layer.jvp(theta, cache, xdot, thetadot))
    return out


def _check_layer(cp, layer, shape, rng, jvp=True, dtype=np.float64, rtol=1e-12):
    x = rng.standard_normal(shape).astype(dtype)
    theta = (layer.init(rng, dtype) + 0.1 * rng.standard_normal(layer.n_params)).astype(dtype)
    y, _ = layer.forward(theta, x, 0.3)
    ybar = rng.standard_normal(y.shape).astype(dtype)
    xdot = rng.standard_normal(shape).astype(dtype) if jvp else None
    thetadot = rng.standard_normal(theta.shape).astype(dtype) if jvp else None
    cpu = _run(layer, theta, x, ybar, xdot, thetadot)
    dev = [None if a is None else cp.asarray(a) for a in (theta, x, ybar, xdot, thetadot)]
    _check(_run(layer, *dev), cpu, cp, rtol)


@pytest.mark.parametrize("layer, shape", [
    (nn.Linear(3, 2), (4, 3)),
    (nn.ConcatLinear(3, 2, bias=False), (4, 3)),
    (nn.ConcatSquashLinear(3, 2), (4, 3)),
    (nn.Conv2d(2, 2, 3, stride=2, padding=1), (2, 2, 4, 3)),
    (nn.ConcatConv2d(2, 2, 3, padding=1), (2, 2, 3, 3)),
    (nn.GroupNorm(2, 4), (2, 4, 2, 2)),
    (nn.Residual(nn.Linear(3, 3)), (2, 3)),
], ids=repr)
def test_layers_keep_cupy_arrays(fake_cupy, layer, shape, rng):
    _check_layer(fake_cupy, layer, shape, rng)


@pytest.mark.parametrize("act", [nn.Softplus(), nn.Sigmoid(), nn.ReLU(), nn.Tanh(),
                                 nn.ELU(0.5)], ids=repr)
def test_activations_keep_cupy_arrays(fake_cupy, act, rng):
    cp = fake_cupy
    _check_layer(cp, act, (2, 3), rng)
    x, ybar, xdot = (rng.standard_normal((2, 3)) for _ in range(3))
    theta = np.zeros(0)
    _, cache = act.forward(theta, x)
    _, cache_g = act.forward(cp.asarray(theta), cp.asarray(x))
    _check([act.vjp_jvp(cp.asarray(theta), cache_g, cp.asarray(ybar), cp.asarray(xdot))[0],
            act.derivative(cp.asarray(x), 2)],
           [act.vjp_jvp(theta, cache, ybar, xdot)[0], act.derivative(x, 2)], cp)


def test_float32_stays_float32_on_cupy(fake_cupy, rng):
    _check_layer(fake_cupy, nn.ConcatSquashLinear(3, 2), (4, 3), rng, dtype=np.float32,
                 rtol=1e-5)


def test_sequential_keeps_cupy_arrays(fake_cupy, rng):
    net = nn.Sequential(nn.ConcatConv2d(2, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.SiLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.ConcatSquashLinear(4, 3),
                        nn.Tanh(), nn.Linear(3, 2))
    _check_layer(fake_cupy, net, (2, 2, 3, 3), rng)


def test_loss_keeps_cupy_gradients(fake_cupy, rng):
    cp = fake_cupy
    logits, labels = rng.standard_normal((5, 3)), rng.integers(0, 3, 5)
    loss, grad = nn.softmax_cross_entropy(logits, labels)
    loss_g, grad_g = nn.softmax_cross_entropy(cp.asarray(logits), cp.asarray(labels))
    assert isinstance(loss_g, float)
    _check((loss_g, grad_g), (loss, grad), cp)
    acc = nn.accuracy(cp.asarray(logits), cp.asarray(labels))
    assert isinstance(acc, float) and acc == nn.accuracy(logits, labels)


def test_other_losses_keep_cupy_gradients(fake_cupy, rng):
    cp = fake_cupy
    a, b, c = (rng.standard_normal((4, 3)) for _ in range(3))
    for fn, args in [(nn.mse, (a, b)), (nn.gaussian_nll, (a, b, c)),
                     (nn.kl_diag_gaussians, (a, b, c, a))]:
        loss, grads = fn(*args)
        loss_g, grads_g = fn(*(cp.asarray(v) for v in args))
        assert isinstance(loss_g, float)
        _check((loss_g, grads_g), (loss, grads), cp)


def test_non_finite_errors_on_cupy(fake_cupy, rng):
    """The error messages read their numbers back explicitly (no host conversion)."""
    cp = fake_cupy
    logits = rng.standard_normal((3, 2))
    logits[1, 0] = np.nan
    with pytest.raises(NonFiniteError):
        nn.softmax_cross_entropy(cp.asarray(logits), cp.asarray([0, 1, 1]))
    grad = np.array([1.0, np.inf, 0.0])
    with pytest.raises(NonFiniteError, match="index 1"):
        nn.Adam().step(cp.zeros(3), cp.asarray(grad), nn.Adam().init(cp.zeros(3)))
    with pytest.raises(NonFiniteError):
        nn.clip_grad_norm(cp.asarray(grad), 1.0)


def test_stand_in_has_only_cupys_names(fake_cupy):
    """The stand-in refuses what cupy 14.2 lacks, so code that passes here asks cupy for no
    numpy-only function or array method (errstate, vecdot, ndarray.resize, ...)."""
    a = fake_cupy.zeros(3)
    assert float(fake_cupy.einsum("i,i->", a, a)) == 0.0 and a.ravel().shape == (3,)
    for name in ("errstate", "vecdot", "nanpercentile"):
        assert hasattr(np, name)
        with pytest.raises(AttributeError, match=name):
            getattr(fake_cupy, name)
    with pytest.raises(AttributeError, match="resize"):
        a.resize(4)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)


def test_to_device_and_back(fake_cupy):
    x = np.arange(3.0)
    d = backend.to_device(x)
    assert isinstance(d, fake_cupy.ndarray) and backend.array_module(d) is fake_cupy
    assert backend.asarray(d) is d and backend.target(fake_cupy) == "cuda"
    h = backend.to_numpy(d)
    assert type(h) is np.ndarray and np.array_equal(h, x)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(d)


def test_clip_grad_norm_and_saving_on_cupy(fake_cupy, rng, tmp_path):
    cp = fake_cupy
    g = 3 * rng.standard_normal(6)
    clipped, norm = nn.clip_grad_norm(g, 1.0)
    clipped_g, norm_g = nn.clip_grad_norm(cp.asarray(g), 1.0)
    _check((clipped_g, norm_g), (clipped, norm), cp)
    net = nn.Linear(2, 2)
    theta = net.init(rng)
    nn.save_params(tmp_path / "p.npz", net, cp.asarray(theta))
    np.testing.assert_array_equal(nn.load_params(tmp_path / "p.npz", net).theta, theta)


@pytest.mark.parametrize("opt", [nn.SGD(lr=0.1, momentum=0.9), nn.Adam(lr=1e-2),
                                 nn.AdamW(lr=1e-2), nn.RMSprop(lr=1e-2)], ids=repr)
def test_optimizers_keep_cupy_state(fake_cupy, opt, rng):
    cp = fake_cupy
    theta = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(2)]
    ref, state = theta, opt.init(theta)
    dev, state_g = cp.asarray(theta), opt.init(cp.asarray(theta))
    for g in grads:
        ref, state = opt.step(ref, g, state)
        dev, state_g = opt.step(dev, cp.asarray(g), state_g)
        _check(dev, ref, cp)
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            _check(state_g[key], value, cp)


@pytest.mark.parametrize("method", ["dopri5", "tsit5"])
def test_array_engine_keeps_a_cupy_state(fake_cupy, method, rng):
    cp = fake_cupy
    a = rng.standard_normal((3, 4))
    y0 = rng.standard_normal((3, 4))
    tgrid = np.array([[0.0, 0.13, 0.4], [0.0, 0.25, 0.4], [0.0, 0.4, 0.4]])

    def solve(fun, y):
        return ae.integrate_arrays(fun, get_tableau(method), y, tgrid, rtol=1e-6, atol=1e-8,
                                   controller=PIController())

    ref = solve(lambda t, y: np.sin(y) * a - (1 + t) * y, y0)
    a_g = cp.asarray(a)
    res = solve(lambda t, y: cp.sin(y) * a_g - (1 + t) * y, cp.asarray(y0))
    assert (res.nfev, res.naccept, res.nreject) == (ref.nfev, ref.naccept, ref.nreject)
    _check(res.y, ref.y, cp, 1e-13)


@pytest.mark.parametrize("adjoint", ["checkpoint", "backsolve", "discrete"])
def test_ode_block_keeps_cupy_arrays(fake_cupy, adjoint, rng):
    """A solve as a layer: the state, the adjoint and the parameter gradient stay cupy."""
    cp = fake_cupy
    net = nn.Sequential(nn.ConcatSquashLinear(2, 4), nn.Tanh(), nn.ConcatSquashLinear(4, 2))
    block = nn.ODEBlock(net, t1=0.5, method="dopri5", rtol=1e-5, atol=1e-7, adjoint=adjoint)
    theta = net.init(rng)
    x, ybar = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    y, cache = block.forward(theta, x)
    cpu = [y, block.vjp(theta, cache, ybar)]
    nfe = block.nfe_forward, block.nfe_backward
    theta_g = cp.asarray(theta)
    y_g, cache_g = block.forward(theta_g, cp.asarray(x))
    _check([y_g, block.vjp(theta_g, cache_g, cp.asarray(ybar))], cpu, cp, 1e-9)
    assert (block.nfe_forward, block.nfe_backward) == nfe


def test_conv_ode_block_keeps_cupy_arrays(fake_cupy, rng):
    """Image states: the convolution and group-norm kernels inside the solve and its adjoint."""
    cp = fake_cupy
    net = nn.Sequential(nn.GroupNorm(1, 2), nn.ConcatConv2d(2, 2, 3, padding=1), nn.Tanh())
    block = nn.ODEBlock(net, t1=0.2, method="rk4", n_steps=2, adjoint="checkpoint")
    theta = net.init(rng)
    x, ybar = rng.standard_normal((1, 2, 2, 2)), rng.standard_normal((1, 2, 2, 2))
    y, cache = block.forward(theta, x)
    cpu = [y, block.vjp(theta, cache, ybar)]
    theta_g = cp.asarray(theta)
    y_g, cache_g = block.forward(theta_g, cp.asarray(x))
    _check([y_g, block.vjp(theta_g, cache_g, cp.asarray(ybar))], cpu, cp, 1e-9)


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_cnf_keeps_cupy_arrays(fake_cupy, trace, rng):
    """A flow's log-density and its gradients (second derivatives included) stay cupy."""
    from symode.models import CNF, concat_squash_mlp

    cp = fake_cupy
    net = concat_squash_mlp(2, (4,))
    flow = CNF(net, t1=0.5, train_t1=True, trace=trace, rtol=1e-6, atol=1e-6, seed=0)
    theta = flow.init(rng)
    x, ybar = rng.standard_normal((3, 2)), rng.standard_normal(3)
    eps = flow.draw_eps(x.shape)
    logp, cache = flow.forward(theta, x, eps=eps)
    cpu = [logp, flow.vjp(theta, cache, ybar)]
    theta_g = cp.asarray(theta)
    eps_g = None if eps is None else cp.asarray(eps)
    logp_g, cache_g = flow.forward(theta_g, cp.asarray(x), eps=eps_g)
    _check([logp_g, flow.vjp(theta_g, cache_g, cp.asarray(ybar))], cpu, cp, 1e-9)
