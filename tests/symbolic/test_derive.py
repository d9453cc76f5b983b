"""Derived expressions against central finite differences of the lambdified right-hand side."""

import numpy as np
import pytest
import sympy as sp

from symode.errors import ExpressionError
from symode.symbolic import (ODE, derive_vjp, divergence, fresh_symbols, gradient, jacobian,
                             time_derivative)

EPS = 1e-6
RTOL, ATOL = 1e-6, 1e-8


def lorenz():
    x, y, z, sigma, rho, beta = sp.symbols("x y z sigma rho beta")
    return ODE([x, y, z], [sigma * (y - x), x * (rho - z) - y, x * y - beta * z],
               params=[sigma, rho, beta])


def forced_van_der_pol():
    x, y, mu, amp, omega, t = sp.symbols("x y mu amp omega t")
    return ODE([x, y], [y, mu * (1 - x**2) * y - x + amp * sp.sin(omega * t)],
               params=[mu, amp, omega], t=t)


def transcendental():
    """exp, tanh, log, sqrt, Abs, atan2 and explicit time; every branch stays in its domain."""
    u, v, w, k, c, t = sp.symbols("u v w k c t")
    return ODE([u, v, w], [
        sp.exp(-k * u) * sp.tanh(v) + c * sp.log(1 + u**2),
        -v * sp.tanh(u - t) + sp.exp(c * t / 10) * sp.log(2 + v**2 + w**2),
        sp.sqrt(1 + u**2 * w**2) - k * sp.Abs(v) + sp.atan2(w, 1 + u**2) * sp.cos(t),
    ], params=[k, c], t=t)


SYSTEMS = {"lorenz": lorenz, "van_der_pol": forced_van_der_pol, "transcendental": transcendental}


class Numeric:
    """The ODE's expressions as numpy functions of ``(t, z, theta)`` (sympy.lambdify)."""

    def __init__(self, ode):
        self.ode = ode
        self.args = (ode.t, list(ode.states), list(ode.params))

    def __call__(self, expr):
        fn = sp.lambdify(self.args, expr, "numpy")
        return lambda t, z, th: np.asarray(fn(t, z, th), dtype=float)


def central(fun, x, direction):
    """Central difference of ``fun`` at ``x`` along ``direction``."""
    return (fun(x + EPS * direction) - fun(x - EPS * direction)) / (2 * EPS)


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


@pytest.fixture(params=list(SYSTEMS))
def case(request, rng):
    ode = SYSTEMS[request.param]()
    num = Numeric(ode)
    t = float(rng.uniform(0, 2))
    z = rng.standard_normal(ode.dim)
    th = rng.uniform(0.5, 2.0, ode.n_params)
    return ode, num, num(list(ode.rhs)), t, z, th


def test_jacobian_matches_fd(case):
    ode, num, f, t, z, th = case
    fd = np.column_stack([central(lambda zz: f(t, zz, th), z, e) for e in np.eye(ode.dim)])
    assert ode.jacobian.shape == (ode.dim, ode.dim)
    np.testing.assert_allclose(num(ode.jacobian)(t, z, th), fd, rtol=RTOL, atol=ATOL)


def test_param_jacobian_matches_fd(case):
    ode, num, f, t, z, th = case
    fd = np.column_stack([central(lambda p: f(t, z, p), th, e) for e in np.eye(ode.n_params)])
    assert ode.param_jacobian.shape == (ode.dim, ode.n_params)
    np.testing.assert_allclose(num(ode.param_jacobian)(t, z, th), fd, rtol=RTOL, atol=ATOL)


def test_time_derivative_matches_fd(case):
    ode, num, f, t, z, th = case
    fd = central(lambda tt: f(tt, z, th), t, 1.0)
    assert ode.time_derivative.shape == (ode.dim, 1)
    np.testing.assert_allclose(num(ode.time_derivative)(t, z, th).ravel(), fd,
                               rtol=RTOL, atol=ATOL)


def _vjp_at(ode, num, part, t, z, th, u):
    """The derived VJP part evaluated with the adjoint symbols set to ``u``."""
    a = list(ode.adjoint_symbols)
    fn = sp.lambdify((ode.t, list(ode.states), list(ode.params), a), part, "numpy")
    return np.asarray(fn(t, z, th, u), dtype=float)


def test_vjp_matches_fd(case, rng):
    """<u, J v> by central differences equals <vjp(u), v>, for z, θ and t."""
    ode, num, f, t, z, th = case
    u = rng.standard_normal(ode.dim)
    v = rng.standard_normal(ode.dim)
    numeric = u @ central(lambda zz: f(t, zz, th), z, v)
    derived = _vjp_at(ode, num, list(ode.vjp.z), t, z, th, u) @ v
    assert derived == pytest.approx(numeric, rel=RTOL, abs=ATOL)
    w = rng.standard_normal(ode.n_params)
    numeric = u @ central(lambda p: f(t, z, p), th, w)
    derived = _vjp_at(ode, num, list(ode.vjp.theta), t, z, th, u) @ w
    assert derived == pytest.approx(numeric, rel=RTOL, abs=ATOL)
    numeric = u @ central(lambda tt: f(tt, z, th), t, 1.0)
    assert float(_vjp_at(ode, num, ode.vjp.t, t, z, th, u)) == pytest.approx(
        numeric, rel=RTOL, abs=ATOL)


def test_divergence_matches_fd_trace(case):
    ode, num, f, t, z, th = case
    trace = sum(central(lambda zz: f(t, zz, th), z, e)[i] for i, e in enumerate(np.eye(ode.dim)))
    assert float(num(ode.divergence)(t, z, th)) == pytest.approx(trace, rel=RTOL, abs=ATOL)


def test_divergence_gradients_match_fd(case):
    ode, num, f, t, z, th = case
    div = num(ode.divergence)
    grads = ode.divergence_gradients
    fd_z = [central(lambda zz: div(t, zz, th), z, e) for e in np.eye(ode.dim)]
    fd_th = [central(lambda p: div(t, z, p), th, e) for e in np.eye(ode.n_params)]
    np.testing.assert_allclose(num(list(grads.z))(t, z, th), fd_z, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(num(list(grads.theta))(t, z, th), fd_th, rtol=1e-5, atol=1e-7)


def test_derivations_are_cached_and_immutable():
    ode = lorenz()
    assert ode.jacobian is ode.jacobian and ode.vjp is ode.vjp
    with pytest.raises(TypeError):
        ode.jacobian[0, 0] = 1
    with pytest.raises(AttributeError):
        ode.vjp.t = 1


def test_lorenz_by_hand():
    ode = lorenz()
    x, y, z = ode.states
    sigma, rho, beta = ode.params
    assert ode.jacobian == sp.Matrix([[-sigma, sigma, 0], [rho - z, -1, -x], [y, x, -beta]])
    assert ode.time_derivative == sp.zeros(3, 1)
    assert ode.divergence == -sigma - 1 - beta
    assert ode.divergence_gradients.z == (0, 0, 0)
    assert ode.divergence_gradients.theta == (-1, 0, -1)
    a_x, a_y, a_z = ode.adjoint_symbols
    assert ode.vjp.theta == (a_x * (y - x), a_y * x, -a_z * z)
    assert ode.vjp.t == 0


def test_no_params():
    x, v = sp.symbols("x v")
    ode = ODE([x, v], [v, -x])
    assert ode.param_jacobian.shape == (2, 0)
    assert ode.vjp.theta == () and ode.divergence_gradients.theta == ()


def test_abs_differentiates_as_real_sign():
    x = sp.Symbol("x")
    ode = ODE([x], [sp.Abs(x) * x])
    assert ode.jacobian[0, 0] == sp.Abs(x) + x * sp.sign(x)
    assert not ode.jacobian.has(sp.re, sp.im, sp.Derivative)


def test_step_functions_have_zero_derivative():
    x, k = sp.symbols("x k")
    ode = ODE([x], [sp.floor(x) + sp.ceiling(k * x) + sp.Heaviside(x) + sp.sign(x) * k],
              params=[k])
    assert ode.jacobian[0, 0] == 0
    assert ode.param_jacobian[0, 0] == sp.sign(x)
    assert ode.divergence_gradients.z == (0,)


def test_symbols_with_assumptions_keep_identity():
    x = sp.Symbol("x", positive=True)
    k = sp.Symbol("k", real=True)
    ode = ODE([x], [-k * sp.log(x)], params=[k])
    assert ode.jacobian[0, 0] == -k / x
    assert ode.param_jacobian[0, 0] == -sp.log(x)


def test_undifferentiable_expression_is_reported():
    x = sp.Symbol("x")
    with pytest.raises(ExpressionError, match="cannot differentiate"):
        jacobian([sp.zeta(x, 2)], [x])


def test_pure_functions():
    x, y, k, t = sp.symbols("x y k t")
    f = [k * x * y, sp.sin(t) * x]
    assert jacobian(f, [x, y]) == sp.Matrix([[k * y, k * x], [sp.sin(t), 0]])
    assert jacobian(f, []).shape == (2, 0)
    assert time_derivative(f, t) == sp.Matrix([0, sp.cos(t) * x])
    a, b = sp.symbols("a b")
    assert derive_vjp(f, [a, b], [x, y]) == (a * k * y + b * sp.sin(t), a * k * x)
    assert divergence(f, [x, y]) == k * y
    assert gradient(x**2 * k, [x, k]) == (2 * x * k, x**2)
    assert gradient(x, []) == ()


def test_pure_function_errors():
    x, y, a = sp.symbols("x y a")
    with pytest.raises(ExpressionError, match="one adjoint symbol per expression"):
        derive_vjp([x, y], [a], [x])
    with pytest.raises(ExpressionError, match="expected"):
        derive_vjp([x], [a], [x, y], jac=sp.Matrix([[1]]))
    with pytest.raises(ExpressionError, match="square system"):
        divergence([x, y], [x])


def test_fresh_symbols_avoid_clashes():
    assert fresh_symbols(["x", "y"], ["x", "y"]) == sp.symbols("a_x a_y")
    assert fresh_symbols(["x"], ["x", "a_x", "a__x"]) == (sp.Symbol("a___x"),)
    assert fresh_symbols(["_x", "x"], ["a_x"]) == sp.symbols("a__x a___x")
