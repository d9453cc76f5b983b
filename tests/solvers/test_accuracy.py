"""Accuracy of every method against exact solutions and scipy at tight tolerance."""

import numpy as np
import pytest

import symode as so
from symode.solvers.tableaus import METHODS

import problems

FIXED_STEP = [m for m, tab in METHODS.items() if not tab.adaptive]
ADAPTIVE = [m for m, tab in METHODS.items() if tab.adaptive]


@pytest.mark.parametrize("method", FIXED_STEP)
def test_convergence_order(method):
    p = problems.oscillating_growth()              # exact y = e^(t/2) sin 5t
    hs = 2.0 ** -np.arange(5, 10)                  # smallest error stays above round-off
    t = np.array([0.0, 2.0])
    errs = [np.abs(so.solve(p.ode, p.y0, t, method=method, step_size=h).y[-1]
                   - p.exact(t)[-1]).max() for h in hs]
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - METHODS[method].order) < 0.2, f"{method}: order {slope:.2f}"


@pytest.mark.parametrize("method", FIXED_STEP)
def test_n_steps_equals_step_size(method):
    p = problems.linear_spiral()
    a = so.solve(p.ode, p.y0, p.t, method=method, n_steps=60)
    b = so.solve(p.ode, p.y0, p.t, method=method, step_size=0.1)
    np.testing.assert_allclose(a.y, b.y, rtol=1e-12, atol=1e-13)
    assert (a.stats.naccept == 60).all()


@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("make", [problems.oscillating_growth, problems.linear_spiral,
                                  problems.logistic])
def test_error_falls_with_tolerance(method, make):
    p = make()
    errors = []
    for tol in (1e-4, 1e-6, 1e-8, 1e-10):
        sol = so.solve(p.ode, p.y0, p.t, params=p.params, method=method, rtol=tol, atol=tol)
        exact = p.exact(p.t)
        err = np.max(np.abs(sol.y - exact) / (1 + np.abs(exact)))
        errors.append(err)
        # global error stays within a small factor of the (local) tolerance
        assert err < 30 * tol, f"{method} on {p.name}: error {err:.2e} at tol {tol:.0e}"
    assert errors[-1] < errors[0] / 100, f"{method}: errors {errors}"


@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("make", [problems.lorenz, problems.forced_van_der_pol,
                                  problems.oscillating_growth])
def test_agrees_with_scipy_dop853(method, make):
    p = make()
    rtol = 1e-8 if method == "bosh3" else 1e-10    # a 3rd-order method needs ~10^4 steps at 1e-10
    sol = so.solve(p.ode, p.y0, p.t, params=p.params, method=method, rtol=rtol, atol=rtol / 100)
    ref = problems.scipy_reference(p)
    scale = 1 + np.abs(ref)
    tol = 1e-4 if method == "bosh3" else 1e-7
    np.testing.assert_array_less(np.abs(sol.y - ref) / scale, tol)


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "dop853", "rk4"])
def test_backwards_in_time(method):
    p = problems.linear_spiral()
    t_back = p.t[::-1]
    y1 = p.exact(p.t)[-1]
    opts = dict(n_steps=400) if method == "rk4" else dict(rtol=1e-10, atol=1e-12)
    sol = so.solve(p.ode, y1, t_back, method=method, **opts)
    np.testing.assert_allclose(sol.y, p.exact(p.t)[::-1], atol=1e-7)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_dense_output_costs_no_steps(method):
    p = problems.lorenz(batch=3)
    few = so.solve(p.ode, p.y0, [0.0, 2.0], params=p.params, method=method, rtol=1e-8, atol=1e-10)
    t_many = np.linspace(0, 2, 401)
    many = so.solve(p.ode, p.y0, t_many, params=p.params, method=method, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(few.stats.naccept, many.stats.naccept)
    np.testing.assert_allclose(few.y[-1], many.y[-1], rtol=1e-12)
    ref = problems.scipy_reference(p, t=t_many)
    # the interpolant is as accurate as the steps (the lower-order interpolant of bosh3 too)
    assert np.max(np.abs(many.y - ref) / (1 + np.abs(ref))) < 3e-5
