"""Printed code equals sympy's own numeric evaluation."""

import math

import numpy as np
import pytest
import sympy as sp

import symode as so
from symode.codegen.printers import NumbaPrinter, print_expression
from symode.codegen.source import emit_function

x, y = sp.symbols("x y")

EXPRESSIONS = [
    x**2 * y**-3, sp.sqrt(x) + 1 / sp.sqrt(y), x ** sp.Rational(1, 3), sp.exp(-x) * sp.tanh(y),
    sp.Heaviside(x - 1), sp.Piecewise((x, x > 1), (y, True)), sp.Abs(x - y) + sp.Min(x, y),
    sp.atan2(x, y) + sp.log(1 + x), sp.erf(x) * sp.sign(y - 2), sp.floor(3 * x), x**2.5,
]


@pytest.mark.parametrize("expr", EXPRESSIONS, ids=str)
def test_printed_expression_matches_sympy(expr):
    code = print_expression(expr, NumbaPrinter())
    for xv, yv in [(0.7, 1.9), (1.4, 2.6), (2.2, 0.3)]:
        value = eval(code, {"math": math, "x": xv, "y": yv})  # test-only: our own printed code
        assert value == pytest.approx(float(expr.subs({x: xv, y: yv})), rel=1e-13)


def test_cse_keeps_the_values():
    exprs = [sp.sin(x * y) + sp.cos(x * y) ** 2, sp.sin(x * y) * x]
    text = emit_function("f", ["x", "y"], exprs, decorator=None)
    assert "_c0" in text                       # x*y is computed once
    ns = {"math": math}
    exec(text, ns)  # test-only: run the generated text
    np.testing.assert_allclose(ns["f"](0.3, 1.7), [float(e.subs({x: 0.3, y: 1.7})) for e in exprs])


def test_unsupported_function_is_named():
    with pytest.raises(so.UnsupportedFunctionError,
                       match=r"cannot print besselj\(0, x\) in rhs\[2\]"):
        print_expression(sp.sin(x) + sp.besselj(0, x), NumbaPrinter(), "rhs[2]")
