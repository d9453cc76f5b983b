"""Every kind of CUDA kernel symode generates compiles for a real GPU (sm_90), not only in
numba's simulator. Skips, saying why, where numba-cuda, NVVM or NVRTC is missing."""

import numpy as np
import pytest
import sympy as sp

import symode as so
from symode import nn
from symode.backend import kernel_target

import ptx
from problems import forced_van_der_pol, hub_mechanism, lorenz, robertson_ode


@pytest.fixture(scope="module")
def toolchain():
    why = ptx.probe()
    if why:
        pytest.skip(f"cannot compile CUDA kernels to PTX here ({why})")


def _many_functions():
    """Every kind of function the printers emit, in the integrator and in its derivatives."""
    x, y, a = sp.symbols("x y a")
    f = [sp.sin(a * y) * sp.exp(-x**2) + sp.tanh(y) - sp.sqrt(1 + x**2) + sp.Abs(x) ** 1.5,
         sp.log(1 + y**2) * sp.cos(x) - sp.atan2(y, 1 + x**2) + sp.erf(x) + sp.Max(x, 0)
         + sp.Heaviside(y) * sp.floor(x) - x**-3 * sp.exp(-1 / x**2)]
    return so.ODE([x, y], f, params=[a])


def _launch_everything():
    """Run one of each kind of kernel in the simulator, on tiny problems."""
    p = lorenz(batch=2, t1=0.1)
    t = np.linspace(0, 0.1, 3)
    w = np.ones((3, 2, 3))
    for method in ("rk4", "bosh3", "dopri5", "dop853"):   # the others share these templates
        kw = {} if so.METHODS[method].adaptive else {"n_steps": 2}
        so.solve(p.ode, p.y0, t, params=p.params, method=method, device="cuda", **kw)
    for adjoint in ("backsolve", "checkpoint", "discrete"):
        for method, kw in [("dopri5", {}), ("dop853", {}), ("rk4", {"n_steps": 2})]:
            _, back = so.solve_vjp(p.ode, p.y0, t, params=p.params, method=method,
                                   adjoint=adjoint, device="cuda", **kw)
            back(w)
    _, back = so.solve_vjp(p.ode, p.y0, t, params=p.params, seminorm=True, device="cuda")
    back(w)
    vdp = forced_van_der_pol(batch=2)
    _, back = so.solve_vjp(vdp.ode, vdp.y0, t, params=vdp.params, device="cuda")
    back(np.ones((3, 2, 2)))
    odd = _many_functions()
    _, back = so.solve_vjp(odd, np.array([[0.5, 0.3]]), t, params=[1.3], device="cuda")
    back(np.ones((3, 1, 2)))
    rob, k = robertson_ode(), np.array([0.04, 3e7, 1e4])
    y0 = np.array([[1.0, 0.0, 0.0]])
    _, back = so.solve_vjp(rob, y0, [0.0, 1e-4], params=k, method="rodas5p", device="cuda")
    back(np.ones((2, 1, 3)))
    hub = hub_mechanism(6)                                # the sparse LU
    _, back = so.solve_vjp(hub, np.full((1, 6), 0.5), [0.0, 1e-3], params=[30.0, 1.0, 5.0],
                           method="rodas5p", device="cuda")
    back(np.ones((2, 1, 6)))


def _layer_kernels(rng):
    """The layers' kernels, through the CUDA path, in double and single precision."""
    net = nn.Sequential(nn.GroupNorm(2, 4), nn.ReLU(), nn.ConcatConv2d(4, 4, 3, padding=1),
                        nn.Softplus(), nn.Conv2d(4, 2, 3, stride=2), nn.SiLU(), nn.Tanh(),
                        nn.Sigmoid(), nn.ELU(0.5))
    for dtype in (np.float64, np.float32):
        x = rng.standard_normal((2, 4, 5, 5)).astype(dtype)
        theta = net.init(rng, dtype)
        with kernel_target("cuda"):
            y, cache = net.forward(theta, x, 0.3)
            net.vjp_t(theta, cache, np.ones_like(y))
            net.jvp(theta, cache, np.ones_like(x), np.ones_like(theta))
            act = nn.Softplus()
            y, cache = act.forward(theta[:0], x)
            act.vjp_jvp(theta[:0], cache, x, x)
            act.derivative(x, 2)


def test_every_kernel_compiles_for_the_gpu(toolchain, rng, tmp_path):
    with ptx.recording() as records:
        _launch_everything()
        _layer_kernels(rng)
    assert len(records) >= 20
    results = ptx.compile_recorded(records, tmp_path)
    assert len(results) == len(records)
    failed = [f"{r['kernel']}: {r['error']}" for r in results if r["error"]]
    assert not failed, "\n\n".join(failed)
