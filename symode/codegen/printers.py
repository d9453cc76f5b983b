"""Code printers: sympy expressions -> Python source that numba compiles for the CPU or CUDA.

numba compiles the ``math`` module's functions in both ``njit`` and ``cuda.jit`` code, so one
printer family serves both targets; ``CudaPrinter`` only narrows what it accepts. A function
neither can print raises :class:`~symode.errors.UnsupportedFunctionError` instead of emitting
code that fails later inside the compiler.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.codeprinter import PrintMethodNotImplementedError
from sympy.printing.pycode import PythonCodePrinter

from ..errors import UnsupportedFunctionError

__all__ = ["NumbaPrinter", "CudaPrinter", "print_expression"]

#: Integer powers up to this magnitude are written as products: exact, and cheaper than ``pow``.
MAX_UNROLLED_POWER = 4


class NumbaPrinter(PythonCodePrinter):
    """Prints scalar expressions as ``math``-module Python code for ``numba.njit``."""

    target = "numba"

    def __init__(self, settings=None):
        super().__init__({"strict": True, "fully_qualified_modules": True, **(settings or {})})

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.as_base_exp()
        if exp.is_Integer and 0 < abs(int(exp)) <= MAX_UNROLLED_POWER:
            b = self.parenthesize(base, sp.printing.precedence.PRECEDENCE["Mul"] + 1)
            prod = "*".join([b] * abs(int(exp)))
            return f"({prod})" if exp > 0 else f"(1.0/({prod}))"
        if exp == sp.Rational(1, 2):
            return f"math.sqrt({self._print(base)})"
        if exp == -sp.Rational(1, 2):
            return f"1.0/math.sqrt({self._print(base)})"
        return super()._print_Pow(expr, rational=rational)

    def _print_Rational(self, expr):
        return repr(float(expr))

    def _print_Integer(self, expr):
        # floats throughout keep numba's type inference to one scalar type
        return repr(float(expr))

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_Heaviside(self, expr):
        x = self._print(expr.args[0])
        h0 = expr.args[1] if len(expr.args) > 1 else sp.Rational(1, 2)
        return f"(0.0 if {x} < 0.0 else ({float(h0)!r} if {x} == 0.0 else 1.0))"

    def _print_floor(self, expr):
        return f"float(math.floor({self._print(expr.args[0])}))"

    def _print_ceiling(self, expr):
        return f"float(math.ceil({self._print(expr.args[0])}))"


class CudaPrinter(NumbaPrinter):
    """Prints expressions for ``numba.cuda`` device functions (same language, same ``math``)."""

    target = "cuda"


def print_expression(expr: sp.Expr, printer: NumbaPrinter, where: str = "",
                     names: dict | None = None) -> str:
    """Print one expression, turning sympy's 'not supported' into a clear symode error.

    Parameters
    ----------
    expr : sympy.Expr
    printer : NumbaPrinter or CudaPrinter
    where : str
        Where the expression comes from (``"rhs[2]"``), for the message.
    names : dict, optional
        Code symbol -> user symbol, to show the user's names in the message.
    """
    try:
        return printer.doprint(expr)
    except PrintMethodNotImplementedError:
        bad = _first_unprintable(expr, printer).xreplace(names or {})
        place = f" in {where}" if where else ""
        raise UnsupportedFunctionError(
            f"the {printer.target} printer cannot print {bad}{place}. Rewrite it with elementary "
            f"functions (sin, exp, log, sqrt, tanh, Abs, Min, Max, Piecewise, erf, ...), or "
            f"pass solve() a plain Python function f(t, z, theta) computing it numerically."
        ) from None


def _first_unprintable(expr, printer):
    """The smallest subexpression the printer rejects, to name it in the error."""
    for sub in sp.preorder_traversal(expr):
        if isinstance(sub, sp.Basic) and sub.args and sub is not expr:
            try:
                printer.doprint(sub)
            except PrintMethodNotImplementedError:
                return _first_unprintable(sub, printer)
    return expr
