"""Activations: first and second derivatives against central differences, the numpy paths of
ReLU and Tanh against the derived, compiled ones, and user expressions."""

import numpy as np
import pytest
import sympy as sp

from checks import check_module, check_second_derivatives
from symode import nn

x_ = sp.Symbol("x")
ACTIVATIONS = {
    "sigmoid": nn.Sigmoid, "softplus": nn.Softplus, "silu": nn.SiLU, "elu": lambda: nn.ELU(0.5),
    "relu": nn.ReLU, "tanh": nn.Tanh,
    "softsign": lambda: nn.activation(x_ / (1 + sp.Abs(x_)), x_, "softsign"),
    "mish": lambda: nn.activation(x_ * sp.tanh(sp.log(1 + sp.exp(x_))), x_, "mish"),
}


def _away_from_kinks(rng, shape):
    """Inputs at least 0.1 from 0, where ReLU, ELU and softsign have kinks."""
    x = rng.uniform(0.1, 3.0, shape)
    return x * rng.choice([-1.0, 1.0], shape)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_derivatives_match_finite_differences(name, rng):
    act = ACTIVATIONS[name]()
    x = _away_from_kinks(rng, (4, 3))
    check_module(act, x, rng)
    check_second_derivatives(act, x, rng)


@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_numpy_paths_match_the_derived_derivatives(name, rng):
    act = ACTIVATIONS[name]()
    x = _away_from_kinks(rng, (5, 4))
    ybar, xdot = rng.standard_normal((2, 5, 4))
    theta = np.zeros(0)
    y, cache = act.forward(theta, x)
    np.testing.assert_allclose(y, act.value(x), rtol=1e-14)
    np.testing.assert_allclose(act.vjp(theta, cache, ybar)[0], ybar * act.derivative(x, 1),
                               rtol=1e-13)
    np.testing.assert_allclose(act.vjp_jvp(theta, cache, ybar, xdot)[0],
                               ybar * xdot * act.derivative(x, 2), rtol=1e-13, atol=1e-15)


def test_second_derivative_of_a_user_expression_is_derived(rng):
    act = nn.activation(x_**3 - 2 * x_, x_, "cubic")
    x = rng.standard_normal((3, 2))
    ybar, xdot = rng.standard_normal((2, 3, 2))
    xbar, thetabar, tbar = act.vjp_jvp(np.zeros(0), act.forward(np.zeros(0), x)[1], ybar, xdot)
    np.testing.assert_allclose(xbar, ybar * xdot * 6 * x, rtol=1e-14)
    assert thetabar.shape == (0,) and tbar == 0.0


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "silu", "elu", "softsign", "mish"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forward_gives_value_and_slope_of_the_separate_functions(name, dtype, rng):
    """``forward`` runs the joint ``value_slope``; it must equal the separately generated
    ``f`` and ``f'`` ufuncs, on strided inputs, at large |x| and at the kinks."""
    act = ACTIVATIONS[name]()
    x = (4 * rng.standard_normal((6, 10))).astype(dtype)
    x[0, :4] = [0.0, -700.0, 700.0, -30.0]
    x = x[:, ::2]                                            # not contiguous
    y, (cached_x, slope) = act.forward(np.zeros(0), x)
    assert y.dtype == slope.dtype == dtype and y.shape == slope.shape == x.shape
    tol = dict(rtol=2e-15 if dtype == np.float64 else 2e-7, atol=0)
    with np.errstate(over="ignore", invalid="ignore"):      # mish overflows at 700, both ways
        np.testing.assert_allclose(y, act.value(x), **tol)
        np.testing.assert_allclose(slope, act.derivative(x, 1), **tol)
    assert cached_x is x


def test_value_and_slope_on_different_branches_are_computed_apart():
    from symode.nn.activations import _emit_joint

    x = sp.Symbol("x")
    f = sp.Piecewise((x, x > 1), (0, True))
    d1 = sp.Piecewise((1, x > 2), (0, True))
    text = _emit_joint("_fdf", f, d1, dict(where="test", names={}))
    assert "return _f(x), _df(x)" in text
    shared = _emit_joint("_fdf", f, sp.Piecewise((1, x > 1), (0, True)),
                         dict(where="test", names={}))
    assert "_fdf_1" in shared and "_f(x)" not in shared
