"""AdjointSystem: blocks, printing, as_ode(), backsolved gradients against finite differences."""

import numpy as np
import pytest
import sympy as sp
from scipy.integrate import solve_ivp

from symode.symbolic import ODE, AdjointSystem

x, y, z, sigma, rho, beta, t = sp.symbols("x y z sigma rho beta t")


def lorenz():
    return ODE([x, y, z], [sigma * (y - x), x * (rho - z) - y, x * y - beta * z],
               params=[sigma, rho, beta])


def forced_oscillator():
    mu, amp, omega = sp.symbols("mu amp omega")
    return ODE([x, y], [y, mu * (1 - x**2) * y - x + amp * sp.sin(omega * t)],
               params=[mu, amp, omega])


def test_blocks_and_equations():
    ode = lorenz()
    adj = ode.adjoint()
    assert isinstance(adj, AdjointSystem)
    assert adj.z == (x, y, z) and adj.a == ode.adjoint_symbols == sp.symbols("a_x a_y a_z")
    assert adj.a_theta == sp.symbols("a_sigma a_rho a_beta") and adj.a_t == sp.Symbol("a_t")
    assert adj.states == (*adj.z, *adj.a, *adj.a_theta, adj.a_t)
    assert adj.params == ode.params and adj.t == ode.t and adj.dim == 10
    assert adj.rhs[:3] == ode.rhs
    assert adj.rhs[3:6] == tuple(-e for e in ode.vjp.z)
    assert adj.rhs[6:9] == tuple(-e for e in ode.vjp.theta)
    assert adj.rhs[9] == -ode.vjp.t == 0
    a_x, a_y, a_z = adj.a
    assert sp.expand(adj.rhs[3] - (a_x * sigma - a_y * (rho - z) - a_z * y)) == 0


def test_as_ode():
    ode = forced_oscillator()
    adj = ode.adjoint()
    aug = adj.as_ode()
    assert isinstance(aug, ODE) and aug is adj.as_ode()
    assert aug.dim == 2 * ode.dim + ode.n_params + 1
    assert aug.states == adj.states and aug.rhs == adj.rhs
    assert aug.params == ode.params and aug.t == ode.t
    assert aug.time_derivative.shape == (aug.dim, 1)  # it is a full ODE: derivations work


def test_str_pretty_latex():
    adj = lorenz().adjoint()
    text = str(adj)
    header = text.splitlines()[0]
    for part in ("z = (x, y, z)", "a = dL/dz = (a_x, a_y, a_z)",
                 "a_θ = dL/dθ = (a_sigma, a_rho, a_beta)", "a_t = dL/dt"):
        assert part in header
    for s, e in zip(adj.states, adj.rhs):
        assert f"d{'' if len(s.name) == 1 else ' '}{s.name}/dt = {e}" in text
    assert "d a_x/dt = a_x*sigma - a_y*(rho - z) - a_z*y" in text
    assert len(text.splitlines()) == 1 + adj.dim
    tex = adj.latex()
    assert tex.count(r"\frac") == adj.dim and r"\frac{d a_{x}}{d t} &= " in tex
    assert adj._repr_latex_() == f"$${tex}$$"
    pretty = adj.pretty()
    assert pretty.startswith(header) and pretty.count("──") == adj.dim
    assert "AdjointSystem(dim=3, n_params=3: 10 equations" in repr(adj)


def test_names_avoid_clashes():
    a_x, a_k, tau, k = sp.symbols("a_x a_k tau k")
    ode = ODE([x, a_x], [a_k * a_x, -k * x], params=[k, a_k], t=tau)
    adj = ode.adjoint()
    names = [s.name for s in adj.states]
    assert names == ["x", "a_x", "a__x", "a_a_x", "a__k", "a_a_k", "a_tau"]
    assert len(set(names)) == len(names)
    assert "a_t = dL/dtau = a_tau" in str(adj)


def test_no_params():
    ode = ODE([x], [-x * sp.cos(t)])
    adj = ode.adjoint()
    assert adj.a_theta == () and adj.dim == 3
    a_x = adj.a[0]
    assert adj.rhs == (-x * sp.cos(t), a_x * sp.cos(t), -a_x * x * sp.sin(t))
    assert "dL/dθ" not in str(adj)


def test_not_an_ode():
    with pytest.raises(TypeError, match="needs a symode ODE"):
        AdjointSystem([x])


def _solve(fun, t0, t1, y0):
    sol = solve_ivp(fun, (t0, t1), y0, method="DOP853", rtol=1e-12, atol=1e-13)
    assert sol.success
    return sol.y[:, -1]


def test_backsolve_gradients_match_finite_differences():
    """Integrating the augmented system backwards gives dL/dz0, dL/dθ, dL/dt0 of L = g·z(t1)."""
    ode = forced_oscillator()
    aug = ode.adjoint().as_ode()
    args = (ode.t, list(ode.states), list(ode.params))
    f = sp.lambdify(args, list(ode.rhs), "numpy")
    f_aug = sp.lambdify((aug.t, list(aug.states), list(aug.params)), list(aug.rhs), "numpy")
    rng = np.random.default_rng(7)
    z0, theta, g = rng.standard_normal(2), np.array([0.8, 0.5, 1.3]), rng.standard_normal(2)
    t0, t1 = 0.3, 1.4

    def loss(z0, theta, t0):
        return g @ _solve(lambda s, zz: f(s, zz, theta), t0, t1, z0)

    z1 = _solve(lambda s, zz: f(s, zz, theta), t0, t1, z0)
    start = np.concatenate([z1, g, np.zeros(3), [-g @ np.asarray(f(t1, z1, theta))]])
    end = _solve(lambda s, w: f_aug(s, w, theta), t1, t0, start)
    dz0, dtheta, dt0 = end[2:4], end[4:7], end[7]
    np.testing.assert_allclose(end[:2], z0, atol=1e-8)  # z came back to its start
    eps = 1e-6
    fd_z = [(loss(z0 + eps * e, theta, t0) - loss(z0 - eps * e, theta, t0)) / (2 * eps)
            for e in np.eye(2)]
    fd_th = [(loss(z0, theta + eps * e, t0) - loss(z0, theta - eps * e, t0)) / (2 * eps)
             for e in np.eye(3)]
    fd_t0 = (loss(z0, theta, t0 + eps) - loss(z0, theta, t0 - eps)) / (2 * eps)
    np.testing.assert_allclose(dz0, fd_z, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dtheta, fd_th, rtol=1e-6, atol=1e-8)
    assert dt0 == pytest.approx(fd_t0, rel=1e-6, abs=1e-8)
