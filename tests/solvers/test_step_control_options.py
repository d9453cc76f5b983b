"""The error_norm and controller options of so.solve and so.solve_vjp."""

import numpy as np
import pytest

import symode as so
from problems import linear_spiral
from symode.errors import SymodeError


def _scaled_batch(p):
    """The spiral batch with one trajectory 100× larger: per-trajectory and whole-batch error
    norms then differ."""
    y0 = p.y0.copy()
    y0[0] *= 100.0
    return y0


def test_batch_norm_takes_no_more_steps_and_stays_accurate():
    p = linear_spiral(batch=6)
    y0 = _scaled_batch(p)
    runs = {norm: so.solve(p.ode, y0, p.t, rtol=1e-6, atol=1e-8, error_norm=norm,
                           engine="array") for norm in ("trajectory", "batch")}
    assert runs["batch"].stats.nfev[0] < runs["trajectory"].stats.nfev[0]
    assert runs["batch"].engine == "array"
    ref = so.solve(p.ode, y0, p.t, method="dop853", rtol=1e-12, atol=1e-14).y
    err = np.abs(runs["batch"].y - ref).max(axis=(0, 2)) / np.abs(ref).max(axis=(0, 2))
    assert err.max() < 1e-4


def test_batch_norm_runs_a_symbolic_system_in_the_array_engine():
    p = linear_spiral(batch=3)
    sol = so.solve(p.ode, p.y0, p.t, error_norm="batch")
    assert sol.engine == "array"
    np.testing.assert_allclose(sol.y, p.exact(p.t), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kwargs, match", [
    (dict(error_norm="max"), "error_norm must be one of"),
    (dict(error_norm="batch", engine="kernel"), "array engine"),
    (dict(controller="PI"), "PIController"),
])
def test_bad_step_control_options_are_named(kwargs, match):
    p = linear_spiral(batch=2)
    with pytest.raises(SymodeError, match=match):
        so.solve(p.ode, p.y0, p.t, **kwargs)


@pytest.mark.parametrize("engine", ["kernel", "array"])
def test_the_i_controller_is_used_and_accurate(engine):
    """beta = 0 (the classical I controller) steps differently from the PI default, and both
    meet the tolerance."""
    p = linear_spiral(batch=3)
    t = np.linspace(0, 20, 3)
    pi = so.solve(p.ode, p.y0, t, rtol=1e-6, atol=1e-9, engine=engine)
    i = so.solve(p.ode, p.y0, t, rtol=1e-6, atol=1e-9, engine=engine,
                 controller=so.PIController(beta=0.0))
    assert not np.array_equal(pi.stats.nfev, i.stats.nfev)
    for sol in (pi, i):
        np.testing.assert_allclose(sol.y, p.exact(t), rtol=1e-4, atol=1e-6)


def test_solve_vjp_passes_the_options_to_the_forward_solve():
    p = linear_spiral(batch=4)
    y0 = _scaled_batch(p)
    opts = dict(rtol=1e-6, atol=1e-8, error_norm="batch", controller=so.PIController(beta=0.0))
    sol, pullback = so.solve_vjp(p.ode, y0, p.t, adjoint="checkpoint", **opts)
    plain = so.solve(p.ode, y0, p.t, **opts)
    np.testing.assert_array_equal(sol.y, plain.y)
    g = pullback(np.ones_like(sol.y))
    assert g.y0.shape == y0.shape


@pytest.mark.parametrize("engine", ["kernel", "array"])
def test_a_first_step_from_hairers_estimate_may_grow_past_factor_max(engine):
    """dz/dt = -z/100: Hairer's first step has an error far below the tolerance. The default
    lets the next step grow by more than factor_max (one step fewer here); Hairer's own bound
    (first_factor_max = factor_max) does not; both are accurate, and a given first step keeps
    the ordinary bound."""
    import sympy as sp

    z = sp.Symbol("z")
    ode = so.ODE([z], [-z / 100])
    y0, t = np.array([[1.0], [2.0]]), np.array([0.0, 100.0])
    opts = dict(rtol=1e-6, atol=1e-9, engine=engine)
    free = so.solve(ode, y0, t, **opts)
    bounded = so.solve(ode, y0, t, controller=so.PIController(first_factor_max=10.0), **opts)
    assert (free.stats.naccept < bounded.stats.naccept).all()
    for sol in (free, bounded):
        np.testing.assert_allclose(sol.y[-1], y0 * np.exp(-1.0), rtol=1e-6)
    h0 = 0.06
    given = so.solve(ode, y0, t, first_step=h0, **opts)
    given_bounded = so.solve(ode, y0, t, first_step=h0,
                             controller=so.PIController(first_factor_max=10.0), **opts)
    np.testing.assert_array_equal(given.stats.nfev, given_bounded.stats.nfev)


def test_controller_factor_bounds():
    ctl = so.PIController()
    tiny = 1e-12                                      # the PI factor alone would be ~100
    assert ctl.scalar_factor(tiny, 1e-4, 4, True, False) == ctl.factor_max
    assert ctl.factor_max < ctl.scalar_factor(tiny, 1e-4, 4, True, False, first=True) < 1e4
    assert ctl.scalar_factor(tiny, 1e-4, 4, True, True, first=True) == 1.0   # after a reject
    np.testing.assert_allclose(ctl.factor([tiny, tiny], 1e-4, 4, True, False, [True, False]),
                               [ctl.scalar_factor(tiny, 1e-4, 4, True, False, first=True),
                                ctl.factor_max])
    with pytest.raises(ValueError, match="first_factor_max"):
        so.PIController(first_factor_max=5.0)
