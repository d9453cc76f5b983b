"""so.fit_parameters against scipy's curve_fit and against known parameters."""

import numpy as np
import pytest
from scipy.optimize import curve_fit

import symode as so
from symode.errors import ShapeError, SymodeError

DECAY = so.ODE.from_strings({"x": "-k*x"}, params=["k"])
LV = so.ODE.from_strings({"x": "a*x - b*x*y", "y": "d*x*y - g*y"}, params=["a", "b", "d", "g"])
LV_TRUE = np.array([1.5, 1.0, 1.0, 3.0])


def noisy_decay(seed=0):
    t = np.linspace(0, 2, 21)
    y = 2 * np.exp(-1.3 * t)[:, None] + 0.02 * np.random.default_rng(seed).normal(size=(21, 1))
    return t, y


def test_decay_matches_curve_fit_with_its_standard_errors():
    """Parameter and initial state fitted together; curve_fit on the exact solution a e^{-kt}
    is the independent reference for both the estimate and its covariance."""
    t, y = noisy_decay()
    fit = so.fit_parameters(DECAY, t, y, [1.0], y0=[1.0], fit_y0=True, positive=True)
    popt, pcov = curve_fit(lambda tt, k, a: a * np.exp(-k * tt), t, y[:, 0], p0=[1, 1])
    assert fit.success
    np.testing.assert_allclose([fit.params[0], fit.y0[0]], popt, rtol=1e-6)
    np.testing.assert_allclose(fit.stderr, np.sqrt(np.diag(pcov)), rtol=0.02)
    np.testing.assert_allclose(fit.residuals[:, 0], fit.sol.y[:, 0, 0] - y[:, 0])
    assert fit.loss == pytest.approx(0.5 * np.sum(fit.residuals ** 2))


def test_lotka_volterra_from_two_experiments_with_missing_data():
    """Noise-free data of two experiments; the predator is never observed in the second and
    a few prey values are missing: the four rates come back from a start 20-30 % off."""
    t = np.linspace(0, 8, 41)
    y0 = np.array([[1.0, 1.0], [2.0, 0.5]])
    obs = so.solve(LV, y0, t, params=LV_TRUE, rtol=1e-11, atol=1e-12).y.copy()
    obs[1:, 1, 1] = np.nan
    obs[[5, 17, 30], 0, 0] = np.nan
    seen = []
    fit = so.fit_parameters(LV, t, obs, [1.2, 0.8, 1.3, 2.4], y0=y0, positive=True,
                            callback=lambda p, loss: seen.append(loss))
    np.testing.assert_allclose(fit.params, LV_TRUE, rtol=1e-5)
    assert fit.loss < 1e-10 and np.isnan(fit.residuals[1:, 1, 1]).all()
    assert len(seen) == fit.nit and seen[-1] == pytest.approx(fit.loss, abs=1e-12)
    assert np.isnan(fit.cov).sum() == 0 and fit.cov.shape == (4, 4)


def test_zero_weight_equals_missing():
    t, y = noisy_decay(1)
    y2 = np.concatenate([y, np.random.default_rng(2).normal(size=(21, 1))], axis=1)
    two = so.ODE.from_strings({"x": "-k*x", "u": "-u"}, params=["k"])
    masked = y2.copy()
    masked[1:, 1] = np.nan
    a = so.fit_parameters(two, t, y2, [1.0], weights=[1.0, 0.0])
    b = so.fit_parameters(two, t, masked, [1.0])
    assert a.params[0] == pytest.approx(b.params[0], rel=1e-9)
    assert a.params[0] == pytest.approx(so.fit_parameters(DECAY, t, y, [1.0]).params[0],
                                        rel=1e-9)


def test_stiff_method_takes_the_discrete_adjoint():
    """Robertson's three rate constants, eleven decades apart, from noise-free data."""
    rob = so.ODE.from_strings({"a": "-k1*a + k3*b*c", "b": "k1*a - k3*b*c - k2*b^2",
                               "c": "k2*b^2"}, params=["k1", "k2", "k3"])
    true = np.array([0.04, 3e7, 1e4])
    t = np.concatenate([[0.0], np.logspace(-3, 2, 12)])
    obs = so.solve(rob, [1.0, 0.0, 0.0], t, params=true, method="rodas5p", rtol=1e-11,
                   atol=1e-14).y
    # b stays below 4e-5: weigh it up so that its misfit counts as much as a's and c's
    fit = so.fit_parameters(rob, t, obs, true * [1.3, 0.8, 1.2], positive=True,
                            weights=[1.0, 1e10, 1.0], method="rodas5p", rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(fit.params, true, rtol=1e-4)


def test_bounds_hold():
    t, y = noisy_decay()
    fit = so.fit_parameters(DECAY, t, y, [0.5], bounds=[(0.1, 1.0)])
    assert fit.params[0] == pytest.approx(1.0)


def test_network_dynamics_in_the_array_engine():
    """Any Dynamics with a VJP: dz/dt = -θ z written by hand."""
    def f(t, z, theta):
        return -theta[0] * z

    def vjp(t, z, theta, a):
        return -theta[0] * a, np.array([-np.sum(a * z)]), np.zeros(len(z))

    dyn = so.FunctionDynamics(f, vjp=vjp)
    t = np.linspace(0, 1, 11)
    y = np.exp(-0.7 * t)[:, None]
    fit = so.fit_parameters(dyn, t, y, [0.2])
    assert fit.params[0] == pytest.approx(0.7, rel=1e-5)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(y_obs=np.zeros((4, 1, 1, 1))), ShapeError, "y_obs must have shape"),
    (dict(t=np.linspace(0, 1, 3)), ShapeError, "t has shape"),
    (dict(y_obs=np.full((4, 1), np.nan)), SymodeError, "no finite entry"),
    (dict(y_obs=np.vstack([[np.nan], np.ones((3, 1))])), SymodeError, "first time are incomplete"),
    (dict(params0=[-1.0], positive=True), SymodeError, "params0 > 0"),
    (dict(positive=True, bounds=[(0, 2)]), SymodeError, "not both"),
    (dict(bounds=[(0, 1), (0, 1)]), ShapeError, "2 pairs for 1 parameters"),
    (dict(weights=[-1.0]), SymodeError, "weights must be finite and >= 0"),
    (dict(y0=[1.0, 2.0]), ShapeError, "y0 must have shape"),
])
def test_bad_input(kwargs, error, match):
    args = dict(t=np.linspace(0, 1, 4), y_obs=np.ones((4, 1)), params0=[1.0])
    args.update(kwargs)
    with pytest.raises(error, match=match):
        so.fit_parameters(DECAY, **args)
