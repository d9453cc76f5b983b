"""ODE construction: what is accepted, every error path and its message, printing, subs."""

import re
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp

from symode.errors import ExpressionError, SymodeError, UnknownSymbolError
from symode.symbolic import ODE

x, y, z, sigma, rho, beta, t = sp.symbols("x y z sigma rho beta t")
LORENZ_RHS = [sigma * (y - x), x * (rho - z) - y, x * y - beta * z]


def lorenz():
    return ODE([x, y, z], LORENZ_RHS, params=[sigma, rho, beta])


def test_attributes():
    ode = lorenz()
    assert ode.states == (x, y, z) and ode.params == (sigma, rho, beta)
    assert ode.rhs == tuple(LORENZ_RHS) and ode.t == sp.Symbol("t")
    assert ode.dim == 3 and ode.n_params == 3
    assert isinstance(ode.states, tuple) and isinstance(ode.rhs, tuple)


def test_default_time_symbol_matches_users_t():
    ode = ODE([x], [sp.sin(t) * x])
    assert ode.t == t and ode.time_derivative[0, 0] == sp.cos(t) * x


def test_accepts_matrix_numbers_and_custom_time():
    tau = sp.Symbol("tau")
    ode = ODE(sp.Matrix([x, y]), sp.Matrix([[y, tau]]), t=tau)
    assert ode.rhs == (y, tau) and ode.t == tau
    numbers = ODE([x, y, z], [0, 2.5, Fraction(1, 3)])
    assert numbers.rhs == (sp.Integer(0), sp.Float(2.5), sp.Rational(1, 3))
    assert all(isinstance(e, sp.Expr) for e in numbers.rhs)
    assert ODE([x], [np.float64(1.5)]).rhs == (sp.Float(1.5),)
    assert ODE([x], [np.int64(3)]).rhs == (sp.Integer(3),)


def test_unknown_symbol_message_exact():
    with pytest.raises(UnknownSymbolError) as info:
        ODE([x, y, z], LORENZ_RHS, params=[sigma, beta])
    assert str(info.value) == (
        "rhs[1] = x*(rho - z) - y uses 'rho', which is not a state (x, y, z), a parameter "
        "(sigma, beta) or the time symbol t. Add it to params=[...] or substitute a value.")
    assert isinstance(info.value, ExpressionError) and isinstance(info.value, SymodeError)


def test_unknown_symbols_plural_and_no_params():
    with pytest.raises(UnknownSymbolError, match=re.escape(
            "uses 'beta' and 'sigma', which are not a state (x, y), a parameter (none) or the "
            "time symbol t. Add them to params=[...]")):
        ODE([x, y], [sigma * beta * x, y])


def test_unknown_symbol_with_other_assumptions():
    x_pos = sp.Symbol("x", positive=True)
    with pytest.raises(UnknownSymbolError, match="symbol named 'x' whose assumptions"):
        ODE([x], [-x_pos])


def test_time_symbol_of_other_name_is_unknown():
    tau = sp.Symbol("tau")
    with pytest.raises(UnknownSymbolError, match="uses 't', .* or the time symbol tau"):
        ODE([x], [sp.sin(t)], t=tau)


@pytest.mark.parametrize("states, rhs, params, match", [
    ([x, y], [y], (), r"rhs has 1 entries but there are 2 states \(x, y\)"),
    ([x], [x, y], (), r"rhs has 2 entries but there are 1 states"),
    ([], [], (), "at least one state"),
    ("x y", [x, y], (), r"states is the string 'x y'.*ODE.from_strings"),
    (x, [x], (), r"states must be a sequence .* write states=\[x\]"),
    ([x, "y"], [x, y], (), r"states\[1\] is the string 'y', not a sympy Symbol"),
    ([x, y**2], [x, y], (), r"states\[1\] = y\*\*2 is a Pow, not a sympy Symbol"),
    ([x], [x], [2], r"params\[0\] = 2 is a int, not a sympy Symbol"),
    ([x], [x], 5, "params must be a sequence of sympy Symbols, got int"),
    ([x, y, x], [x, y, x], (), r"'x' is used twice, by states\[0\] and by states\[2\]"),
    ([x], [sigma * x], [sigma, sigma], r"'sigma' is used twice, by params\[0\] and by params\[1\]"),
    ([x], [x], [x], r"'x' is used twice, by states\[0\] and by params\[0\]"),
    ([t], [t], (), r"'t' is used twice, by states\[0\] and by the time symbol t"),
    ([x], [sp.Symbol("x", real=True)], [sp.Symbol("x", real=True)], r"'x' is used twice"),
    ([x], ["-x"], (), r"rhs\[0\] is the string '-x'; .*ODE.from_strings"),
    ([x], "-x", (), "rhs is a string; .*ODE.from_strings"),
    ([x], {x: -x}, (), "rhs is a mapping"),
    ([x], -x, (), r"single expression -x; write rhs=\[...\]"),
    ([x], 3, (), "rhs must be a sequence of sympy expressions, got int"),
    ([x, y], sp.Matrix([[x, y], [y, x]]), (), "rhs is a 2x2 matrix"),
    ([x], [sp.Matrix([x, y])], (), r"rhs\[0\] = .* is a MutableDenseMatrix, not a scalar"),
    ([x], [[x]], (), r"rhs\[0\] = \[x\] is a list, not a scalar sympy expression"),
    ([x], [sp.Eq(x, 1)], (), r"rhs\[0\] = Eq\(x, 1\) is .* relation.*right-hand side only"),
    ([x], [True], (), r"rhs\[0\] = True is a truth value"),
    ([x], [sp.nan * x], (), r"rhs\[0\] = nan contains nan"),
    ([x], [x / sp.S.Zero], (), r"contains zoo \(complex infinity"),
    ([x], [sp.oo + x], (), r"contains oo \(infinity\)"),
    ([x], [float("inf")], (), "contains oo"),
    ([x], [sp.I * x], (), "imaginary unit I"),
    ([x], [sp.Function("f")(x)], (), r"undefined function f\(x\)"),
    ([x], [sp.Derivative(x**2 * y, y)], (), "unevaluated Derivative"),
    ([x], [sp.Integral(x * y, (y, 0, 1))], (), "unevaluated Integral"),
    ([x], [x], [sp.Function("g")], "is a UndefinedFunction, not a sympy Symbol"),
])
def test_construction_errors(states, rhs, params, match):
    with pytest.raises(ExpressionError, match=match):
        ODE(states, rhs, params=params)


def test_time_must_be_symbol():
    with pytest.raises(ExpressionError, match="t must be a sympy Symbol, got str t"):
        ODE([x], [x], t="t")


def test_equality_and_hash():
    assert lorenz() == lorenz() and hash(lorenz()) == hash(lorenz())
    assert lorenz() != ODE([x, y, z], LORENZ_RHS[::-1], params=[sigma, rho, beta])
    assert lorenz() != "lorenz"
    assert len({lorenz(), lorenz()}) == 1


def test_read_only():
    ode = lorenz()
    with pytest.raises(AttributeError):
        ode.states = (x,)


def test_subs_removes_parameters():
    ode = lorenz().subs({sigma: 10, "beta": sp.Rational(8, 3)})
    assert ode.params == (rho,)
    assert ode.rhs == (10 * (y - x), x * (rho - z) - y, x * y - sp.Rational(8, 3) * z)
    assert lorenz().subs({rho: 28.0}).rhs[1] == x * (28.0 - z) - y
    assert lorenz().subs({}) == lorenz()


def test_subs_errors():
    with pytest.raises(ExpressionError, match=r"only replace parameters \(sigma, rho, beta\); "
                                              r"got x"):
        lorenz().subs({x: 1})
    with pytest.raises(ExpressionError, match="only replace parameters.*got 'gamma'"):
        lorenz().subs({"gamma": 1})
    with pytest.raises(ExpressionError, match="the value for rho is the string '28'"):
        lorenz().subs({rho: "28"})
    with pytest.raises(ExpressionError, match="the value for rho = nan contains nan"):
        lorenz().subs({rho: float("nan")})
    with pytest.raises(ExpressionError, match="subs needs a mapping parameter -> value, got list"):
        lorenz().subs([(rho, 28)])
    with pytest.raises(UnknownSymbolError, match="uses 'gamma'"):
        lorenz().subs({rho: sp.Symbol("gamma")})


def test_repr_and_str():
    ode = lorenz()
    assert repr(ode) == ("ODE(dx/dt = sigma*(-x + y), dy/dt = x*(rho - z) - y, "
                         "dz/dt = -beta*z + x*y, params=(sigma, rho, beta))")
    assert str(ode).splitlines() == [
        "ODE in x, y, z with parameters sigma, rho, beta:",
        "  dx/dt = sigma*(-x + y)", "  dy/dt = x*(rho - z) - y", "  dz/dt = -beta*z + x*y"]
    k, tau, theta = sp.symbols("k tau theta")
    assert repr(ODE([theta], [-k * theta], [k], t=tau)) == \
        "ODE(d theta/dtau = -k*theta, params=(k,), t=tau)"
    assert str(ODE([x], [-x])) == "ODE in x:\n  dx/dt = -x"


def test_latex_and_pretty():
    ode = lorenz()
    tex = ode.latex()
    assert tex.startswith("\\begin{aligned}") and tex.endswith("\\end{aligned}")
    assert r"\frac{d x}{d t} &= \sigma \left(- x + y\right)" in tex
    assert tex.count(r"\\") == 2
    assert ode._repr_latex_() == f"$${tex}$$"
    pretty = ode.pretty()
    assert "σ⋅(-x + y)" in pretty and pretty.count("dt") == 3


def test_adjoint_symbols_avoid_existing_names():
    a_x = sp.Symbol("a_x")
    ode = ODE([x, a_x], [a_x, -x])
    assert [s.name for s in ode.adjoint_symbols] == ["a__x", "a_a_x"]
    assert lorenz().adjoint_symbols == sp.symbols("a_x a_y a_z")


def test_adjoint_is_cached():
    ode = lorenz()
    assert ode.adjoint() is ode.adjoint()
