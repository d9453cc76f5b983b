"""The kernel engine on CUDA (numba's simulator in the default suite) against the CPU engine."""

import numpy as np
import pytest
import sympy as sp

import symode as so
from symode.errors import CudaUnavailableError, SymodeError

from problems import forced_van_der_pol, hub_mechanism, lorenz, robertson_ode

ADAPTIVE = ["bosh3", "dopri5", "tsit5", "dop853"]


@pytest.fixture(scope="module")
def lorenz_case():
    p = lorenz(batch=5, t1=0.5)
    return p


def _close(a, b, rtol=1e-12):
    """Equal to round-off: the GPU contracts a*b + c into fused multiply-adds where the CPU
    may not, and adaptive step choices carry such last-bit differences forward."""
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("method", ADAPTIVE + ["rk4"])
def test_forward_matches_cpu(lorenz_case, method):
    p = lorenz_case
    kw = {"step_size": 0.05} if method == "rk4" else {"rtol": 1e-6, "atol": 1e-8}
    t = np.linspace(0, 0.5, 4)
    cpu = so.solve(p.ode, p.y0, t, params=p.params, method=method, **kw)
    gpu = so.solve(p.ode, p.y0, t, params=p.params, method=method, device="cuda", **kw)
    assert gpu.device == "cuda" and isinstance(gpu.y, np.ndarray)
    _close(gpu.y, cpu.y)
    for name in ("nfev", "naccept", "nreject"):
        np.testing.assert_array_equal(getattr(gpu.stats, name), getattr(cpu.stats, name))


def test_per_trajectory_times_params_and_backwards():
    p = forced_van_der_pol(batch=3)
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0, 1.5, size=(3, 5)), axis=1)
    t[1] = t[1][::-1]                          # one trajectory integrated backwards
    prm = np.asarray(p.params, dtype=float)
    prm = np.broadcast_to(prm, (3, prm.size)) * rng.uniform(0.8, 1.2, size=(3, 1))
    cpu = so.solve(p.ode, p.y0, t, params=prm, rtol=1e-8, atol=1e-10)
    gpu = so.solve(p.ode, p.y0, t, params=prm, rtol=1e-8, atol=1e-10, device="cuda")
    _close(gpu.y, cpu.y)


@pytest.mark.parametrize("adjoint", ["backsolve", "checkpoint", "discrete"])
def test_gradients_match_cpu(lorenz_case, adjoint):
    p = lorenz_case
    t = np.array([0.0, 0.2, 0.5])
    w = np.random.default_rng(1).normal(size=(3, p.y0.shape[0], 3))
    opts = dict(params=p.params, rtol=1e-7, atol=1e-9, adjoint=adjoint)
    sol_c, back_c = so.solve_vjp(p.ode, p.y0, t, **opts)
    sol_g, back_g = so.solve_vjp(p.ode, p.y0, t, device="cuda", **opts)
    gc, gg = back_c(w), back_g(w)
    _close(sol_g.y, sol_c.y)
    for name in ("y0", "params", "t"):
        _close(getattr(gg, name), getattr(gc, name), rtol=1e-9)
    np.testing.assert_array_equal(gg.stats.nfev, gc.stats.nfev)


def test_seminorm_on_gpu(lorenz_case):
    p = lorenz_case
    t = np.array([0.0, 0.5])
    w = np.ones((2, p.y0.shape[0], 3))
    res = []
    for device in ("cpu", "cuda"):
        _, back = so.solve_vjp(p.ode, p.y0, t, params=p.params, seminorm=True, device=device)
        res.append(back(w))
    _close(res[1].params, res[0].params, rtol=1e-9)


def test_fixed_step_adjoint_on_gpu():
    p = forced_van_der_pol(batch=2)
    t = np.linspace(0, 1, 3)
    w = np.ones((3, 2, p.y0.shape[1]))
    res = []
    for device in ("cpu", "cuda"):
        _, back = so.solve_vjp(p.ode, p.y0, t, params=p.params, method="rk4", n_steps=20,
                               adjoint="checkpoint", device=device)
        res.append(back(w))
    _close(res[1].y0, res[0].y0, rtol=1e-9)


@pytest.mark.parametrize("method", ["rk4", "bosh3", "dop853"])
def test_discrete_adjoint_on_gpu(method):
    """Fixed steps, Hermite and extra-stage dense output; per-trajectory times and
    parameters, one trajectory integrated backwards."""
    p = forced_van_der_pol(batch=3)
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0, 1.0, size=(3, 4)), axis=1)
    t[1] = t[1][::-1]
    prm = np.broadcast_to(np.asarray(p.params, float), (3, len(p.params))) * [[0.9], [1.0], [1.1]]
    w = rng.normal(size=(4, 3, p.y0.shape[1]))
    kw = {"step_size": 0.05} if method == "rk4" else {"rtol": 1e-6, "atol": 1e-8}
    res = []
    for device in ("cpu", "cuda"):
        _, back = so.solve_vjp(p.ode, p.y0, t, params=prm, method=method, adjoint="discrete",
                               device=device, **kw)
        res.append(back(w))
    for name in ("y0", "params", "t"):
        _close(getattr(res[1], name), getattr(res[0], name), rtol=1e-9)
    np.testing.assert_array_equal(res[1].stats.nfev, res[0].stats.nfev)


@pytest.mark.parametrize("method, steps", [("rodas4", dict(rtol=1e-6, atol=1e-10)),
                                           ("rodas4", dict(step_size=2e-4)),
                                           ("rodas5p", dict(rtol=1e-6, atol=1e-10))])
def test_rosenbrock_matches_cpu(method, steps):
    """The stiff integrator on the GPU: per-trajectory rate constants and times, adaptive and
    fixed steps, the same steps and results as the CPU."""
    ode = robertson_ode()
    k = np.array([[0.04, 3e7, 1e4], [0.08, 3e7, 1e4], [0.02, 1e7, 3e4]])
    t = np.array([[0.0, 1e-4, 1e-3], [0.0, 5e-4, 1e-3], [1e-3, 1.5e-3, 3e-3]])
    y0 = np.array([[1.0, 0.0, 0.0], [0.9, 1e-5, 0.1], [0.5, 1e-5, 0.5]])
    cpu = so.solve(ode, y0, t, params=k, method=method, **steps)
    gpu = so.solve(ode, y0, t, params=k, method=method, device="cuda", **steps)
    assert gpu.device == "cuda"
    _close(gpu.y, cpu.y)
    for name in ("nfev", "naccept", "nreject"):
        np.testing.assert_array_equal(getattr(gpu.stats, name), getattr(cpu.stats, name))


@pytest.mark.parametrize("method", ["rodas4", "rodas5p"])
def test_rosenbrock_gradient_matches_cpu(method):
    ode = robertson_ode()
    k = np.array([[0.04, 3e7, 1e4], [0.08, 3e7, 1e4]])
    t = np.array([0.0, 1e-4, 1e-3])
    w = np.random.default_rng(2).normal(size=(3, 2, 3))
    res = []
    for device in ("cpu", "cuda"):
        _, back = so.solve_vjp(ode, np.tile([1.0, 0.0, 0.0], (2, 1)), t, params=k,
                               method=method, rtol=1e-6, atol=1e-10, device=device)
        res.append(back(w))
    for name in ("y0", "params", "t"):
        _close(getattr(res[1], name), getattr(res[0], name), rtol=1e-9)
    np.testing.assert_array_equal(res[1].stats.nfev, res[0].stats.nfev)


def test_sparse_lu_rosenbrock_and_gradient_match_cpu():
    """A system whose step LU is the sparse one (index lists in constant arrays on the GPU):
    the same steps, results and gradients as the CPU."""
    ode = hub_mechanism()
    y0 = np.linspace(0.1, 1.0, 9)[None, :] * [[1.0], [0.6]]
    p = np.array([[300.0, 2.0, 50.0], [100.0, 5.0, 20.0]])
    t = np.array([0.0, 0.02, 0.05])
    w = np.random.default_rng(3).normal(size=(3, 2, 9))
    res = []
    for device in ("cpu", "cuda"):
        sol, back = so.solve_vjp(ode, y0, t, params=p, method="rodas5p", rtol=1e-6, atol=1e-9,
                                 device=device)
        res.append((sol, back(w)))
    _close(res[1][0].y, res[0][0].y)
    np.testing.assert_array_equal(res[1][0].stats.naccept, res[0][0].stats.naccept)
    for name in ("y0", "params", "t"):
        _close(getattr(res[1][1], name), getattr(res[0][1], name), rtol=1e-9)


def test_failures_are_reported_from_the_gpu():
    x = sp.Symbol("x")
    blowup = so.ODE([x], [x**2])
    with pytest.raises(so.errors.StepSizeUnderflowError, match="trajectory 1"):
        so.solve(blowup, np.array([[0.1], [2.0]]), [0.0, 1.0], device="cuda")
    with pytest.raises(so.errors.MaxStepsError):
        so.solve(blowup, np.array([[0.9]]), [0.0, 1.0], max_steps=3, device="cuda")


def test_bad_device_and_unsupported_combinations(lorenz_case):
    p = lorenz_case
    with pytest.raises(SymodeError, match="'cpu' or 'cuda'"):
        so.solve(p.ode, p.y0, [0, 1], params=p.params, device="tpu")
    with pytest.raises(SymodeError, match="symbolic"):
        so.solve(lambda t, y, th: -y, p.y0, [0, 1], device="cuda")


def test_no_gpu_is_a_clear_error(monkeypatch, lorenz_case):
    from numba import cuda

    monkeypatch.setattr(cuda, "is_available", lambda: False)
    p = lorenz_case
    with pytest.raises(CudaUnavailableError, match=r"symode\[cuda\]"):
        so.solve(p.ode, p.y0, [0, 1], params=p.params, device="cuda")


def test_cupy_in_cupy_out(lorenz_case):
    cupy = pytest.importorskip("cupy", reason="cupy (the cuda extra) is not installed")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception:
        pytest.skip("no GPU for cupy")
    p = lorenz_case
    sol = so.solve(p.ode, cupy.asarray(p.y0), [0.0, 0.5], params=p.params, device="cuda")
    assert isinstance(sol.y, cupy.ndarray)
    cpu = so.solve(p.ode, p.y0, [0.0, 0.5], params=p.params)
    _close(cupy.asnumpy(sol.y), cpu.y)


@pytest.mark.parametrize("adjoint", ["backsolve", "checkpoint", "discrete"])
def test_cupy_in_cupy_out_on_the_stand_in(monkeypatch, lorenz_case, adjoint):
    """With cupy arrays in (the host-memory stand-in of tests/fake_cupy.py), the kernels read
    them in place and the solution and every gradient come back as cupy arrays, equal to the
    numpy run; a stray host conversion of a cupy array would raise here."""
    import fake_cupy

    cp = fake_cupy.install(monkeypatch)
    p = lorenz_case
    t = np.array([0.0, 0.2, 0.5])
    w = np.random.default_rng(2).normal(size=(3, p.y0.shape[0], 3))
    opts = dict(params=p.params, rtol=1e-7, atol=1e-9, adjoint=adjoint)
    sol_c, back_c = so.solve_vjp(p.ode, p.y0, t, **opts)
    sol_g, back_g = so.solve_vjp(p.ode, cp.asarray(p.y0), t, device="cuda", **opts)
    gc, gg = back_c(w), back_g(cp.asarray(w))
    for got, want in [(sol_g.y, sol_c.y)] + [(getattr(gg, n), getattr(gc, n))
                                             for n in ("y0", "params", "t")]:
        assert isinstance(got, cp.ndarray)
        _close(got.get(), want, rtol=1e-9)
    sol = so.solve(p.ode, cp.asarray(p.y0), t, params=p.params, rtol=1e-7, atol=1e-9,
                   device="cuda")
    assert isinstance(sol.y, cp.ndarray)
    _close(sol.y.get(), sol_c.y)


def test_builtin_numba_cuda_target_is_a_clear_error(monkeypatch, lorenz_case):
    """numba's deprecated built-in CUDA target cannot compile the kernels: the error names
    numba-cuda instead of failing inside the compiler."""
    import numba
    from numba import cuda

    monkeypatch.setattr(numba.config, "ENABLE_CUDASIM", 0)
    monkeypatch.setattr(cuda, "implementation", "Built-in", raising=False)
    p = lorenz_case
    with pytest.raises(CudaUnavailableError, match="numba-cuda"):
        so.solve(p.ode, p.y0, [0, 1], params=p.params, device="cuda")
