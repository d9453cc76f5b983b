"""Gradients of stiff (rodas4, rodas5p) solves: the discrete adjoint through the Rosenbrock steps.

With fixed steps the solve is a smooth function of y0, θ and the saved times, so the adjoint
must equal central finite differences to near round-off. With adaptive steps it is checked
against gradients computed without symode's adjoint: the exact solution of a stiff linear
system, finite differences of scipy's Radau at tight tolerance, and the continuous identity
dL/dt_j = dL/dy_j · f(t_j, y_j).
"""

import numpy as np
import pytest
import sympy as sp
from scipy.integrate import solve_ivp
from scipy.linalg import expm

import symode as so
from symode.errors import SymodeError
from symode.solvers.rosenbrock_tableaus import ROSENBROCK_METHODS

from checks import central_differences
from problems import hub_mechanism
from problems import robertson_ode as robertson

STIFF = list(ROSENBROCK_METHODS)


def forced_van_der_pol():
    """Mildly stiff, nonlinear and forced: ∂f/∂t and ∂²f/∂t² are not zero."""
    x, v, mu, w, t = sp.symbols("x v mu omega t")
    return so.ODE([x, v], [v, mu * (1 - x ** 2) * v - x + sp.sin(w * t)], params=[mu, w], t=t)


@pytest.mark.parametrize("method", STIFF)
@pytest.mark.parametrize("steps", [dict(step_size=0.07), dict(n_steps=3),
                                   dict(step_size=0.0041)])
def test_fixed_steps_gradient_equals_finite_differences(steps, method):
    """Two trajectories with their own parameters and time grids (one running backwards);
    step_size=0.0041 takes more steps than the first recording holds, so it is retried. (No
    interval is a whole number of steps, so the perturbed times keep the step counts.)"""
    ode = forced_van_der_pol()
    y0 = np.array([[2.0, 0.0], [0.5, -1.0]])
    t = np.array([[0.1, 0.3, 0.35, 1.0], [1.5, 1.2, 0.4, 0.0]])
    p = np.array([[10.0, 2.0], [5.0, 3.0]])
    c = np.random.default_rng(0).normal(size=(4, 2, 2))
    opts = dict(method=method, **steps)

    def loss(y0_, t_, p_):
        return np.sum(c * so.solve(ode, y0_, t_, params=p_, **opts).y)

    sol, pullback = so.solve_vjp(ode, y0, t, params=p, **opts)
    g = pullback(c)
    assert g.y0.shape == y0.shape and g.params.shape == p.shape and g.t.shape == t.shape
    if "step_size" in steps and steps["step_size"] < 0.01:
        assert sol.stats.naccept.max() > 256
    np.testing.assert_allclose(g.y0, central_differences(lambda v: loss(v, t, p), y0),
                               rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(g.params, central_differences(lambda v: loss(y0, t, v), p),
                               rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(g.t, central_differences(lambda v: loss(y0, v, p), t),
                               rtol=1e-7, atol=1e-8)


def _stiff_chain(D=6):
    """A nonlinear, stiff reaction-diffusion chain: a tridiagonal Jacobian, banded LU."""
    z = sp.symbols(f"z0:{D}")
    k, d = sp.symbols("k d")
    rhs = [d * ((z[i - 1] if i else 1.0) - 2 * z[i] + (z[i + 1] if i < D - 1 else 0.0))
           - k * z[i] ** 2 + sp.sin(z[i]) for i in range(D)]
    return so.ODE(list(z), rhs, params=[k, d])


@pytest.mark.parametrize("system, params, step, sparse", [
    (_stiff_chain, [[30.0, 400.0], [10.0, 200.0]], 0.013, False),
    (hub_mechanism, [[300.0, 2.0, 50.0], [100.0, 5.0, 20.0]], 0.011, True),
])
def test_structured_system_gradient_equals_finite_differences(system, params, step, sparse):
    """Fixed steps of rodas5p on two stiff nonlinear systems whose step LU keeps to the
    Jacobian's structure: a chain of 6 states (banded LU, J̄ within the band) and a hub
    mechanism of 9 states (one radical reacting with every species: an arrow pattern, so the
    sparse LU, hub last). dL/dy0 and dL/dθ for two trajectories against central differences."""
    from symode.solvers.lu_plan import lu_plan

    ode = system()
    assert lu_plan(so.SymbolicDynamics(ode)).sparse == sparse
    y0 = np.linspace(0.2, 1.0, ode.dim)[None, :] * [[1.0], [0.7]]
    t = np.array([0.0, 0.05, 0.3])
    p = np.array(params)
    c = np.random.default_rng(4).normal(size=(3, 2, ode.dim))
    opts = dict(method="rodas5p", step_size=step)

    def loss(y0_, p_):
        return np.sum(c * so.solve(ode, y0_, t, params=p_, **opts).y)

    _, pullback = so.solve_vjp(ode, y0, t, params=p, **opts)
    g = pullback(c)
    np.testing.assert_allclose(g.y0, central_differences(lambda v: loss(v, p), y0), rtol=1e-7,
                               atol=1e-8)
    np.testing.assert_allclose(g.params, central_differences(lambda v: loss(y0, v), p),
                               rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("method", STIFF)
def test_stiff_linear_system_exact_gradient(method):
    """y' = A y with eigenvalues -1 and -1e4: dL/dy0 = Σ_j expm(Aᵀ (t_j - t_0)) c_j exactly,
    for trajectories on their own grids."""
    z1, z2 = sp.symbols("z1 z2")
    A = np.array([[-1.0, 1.0], [0.0, -1e4]])
    ode = so.ODE([z1, z2], [A[0, 0] * z1 + A[0, 1] * z2, A[1, 1] * z2])
    grids = np.array([[0.0, 1e-4, 0.1, 1.0], [1.0, 1.5, 2.0, 3.0]])
    y0 = np.array([[1.0, 1.0], [2.0, -1.0]])
    c = np.random.default_rng(1).normal(size=(4, 2, 2))
    _, pullback = so.solve_vjp(ode, y0, grids, method=method, rtol=1e-9, atol=1e-12)
    g = pullback(c)
    for b in range(2):
        exact = sum(expm(A.T * (tt - grids[b, 0])) @ c[j, b] for j, tt in enumerate(grids[b]))
        np.testing.assert_allclose(g.y0[b], exact, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method", STIFF)
def test_robertson_rate_constant_gradient_matches_radau(method):
    """dL/dk of the stiff chemistry problem, against central differences of scipy's Radau at
    rtol 1e-12 (a relative step in each rate constant, which span 11 decades)."""
    ode = robertson()
    t = np.array([0.0, 0.1, 1.0, 10.0, 40.0])
    k = np.array([0.04, 3e7, 1e4])
    c = np.random.default_rng(2).normal(size=(5, 3))
    c[:, 1] *= 1e4                       # y2 is ~1e-5 of the others: weigh it alike

    def radau_loss(kk):
        y = solve_ivp(lambda tt, y: [-kk[0] * y[0] + kk[2] * y[1] * y[2],
                                     kk[0] * y[0] - kk[1] * y[1] ** 2 - kk[2] * y[1] * y[2],
                                     kk[1] * y[1] ** 2],
                      (0.0, t[-1]), [1.0, 0.0, 0.0], method="Radau", t_eval=t, rtol=1e-12,
                      atol=1e-16).y.T
        return np.sum(c * y)

    _, pullback = so.solve_vjp(ode, [1.0, 0.0, 0.0], t, params=k, method=method, rtol=1e-10,
                               atol=1e-14)
    g = pullback(c)
    scaled = central_differences(lambda s: radau_loss(k * np.exp(s)), np.zeros(3), eps=1e-5)
    np.testing.assert_allclose(g.params * k, scaled, rtol=1e-5, atol=1e-8 * np.abs(scaled).max())


@pytest.mark.parametrize("method", STIFF)
def test_adaptive_time_gradients_match_the_continuous_identity(method):
    """For j ≥ 1, dL/dt_j = c_j · f(t_j, y_j); and dL/dt_0 = -(dL/dy0 - c_0) · f(t_0, y_0)."""
    ode = forced_van_der_pol()
    t = np.array([0.0, 0.5, 1.3, 2.0])
    p = np.array([20.0, 3.0])
    c = np.random.default_rng(3).normal(size=(4, 2))
    sol, pullback = so.solve_vjp(ode, [2.0, 0.0], t, params=p, method=method, rtol=1e-10,
                                 atol=1e-12)
    g = pullback(c)
    f = so.SymbolicDynamics(ode).f(t, sol.y, np.tile(p, (4, 1)))
    expected = np.einsum("ti,ti->t", c, f)
    expected[0] = -np.dot(g.y0 - c[0], f[0])
    np.testing.assert_allclose(g.t, expected, rtol=1e-6, atol=1e-8)


def test_adjoint_source_shows_the_second_derivatives():
    text = so.source(robertson(), "adjoint", method="rodas4")
    assert "def jac_vjp_into(t, y, p, Jb, ftb, g):" in text and "w2_1 = Jbf[7]" in text
    assert "def lu_solve_t(" in text and "def adjoint_one(" in text


def test_clear_errors():
    ode = robertson()
    p = [0.04, 3e7, 1e4]
    for adjoint in ("backsolve", "checkpoint"):
        with pytest.raises(SymodeError, match="adjoint='discrete'"):
            so.solve_vjp(ode, [1.0, 0, 0], [0.0, 1.0], params=p, method="rodas4",
                         adjoint=adjoint)
    with pytest.raises(SymodeError, match="first_step"):
        so.solve(ode, [1.0, 0, 0], [0.0, 1.0], params=p, method="rodas4", step_size=0.1,
                 first_step=0.01)
