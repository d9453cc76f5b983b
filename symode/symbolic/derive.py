"""Symbolic derivatives of a right-hand side ``f(z, θ, t)``: the pure functions behind :class:`ODE`.

For ``dz/dt = f(z, θ, t)`` with states ``z = (z_1..z_n)``, parameters ``θ = (θ_1..θ_p)`` and
adjoint (co-state) symbols ``a = (a_1..a_n)`` this module derives

* the Jacobians ``J_ij = ∂f_i/∂z_j`` and ``(J_θ)_ik = ∂f_i/∂θ_k``, the time derivative
  ``∂f_i/∂t``;
* vector-Jacobian products ``(a·∂f/∂w)_j = Σ_i a_i ∂f_i/∂w_j``, the adjoint method's building block;
* the divergence ``div f = tr J = Σ_i ∂f_i/∂z_i`` (the CNF log-density rate) and its gradients.

Expressions are only differentiated, never simplified or expanded: the code generator removes
common subexpressions, and ``simplify`` is far too slow for large systems.

Every symbol is differentiated as a *real* variable (an ODE's state lives in ℝⁿ): sympy's default
complex symbols would turn ``d|x|/dx`` into ``re``/``im`` derivatives that no code printer can
emit, where the real derivative is ``sign(x)``. Step functions (``Heaviside``, ``sign``,
``floor``, ``ceiling``) have derivative zero almost everywhere, and the derivatives here use that
value, as automatic differentiation does: no ``DiracDelta`` reaches the generated code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import sympy as sp

from ..errors import ExpressionError

__all__ = ["VJP", "DivergenceGradients", "jacobian", "time_derivative", "derive_vjp",
           "divergence", "gradient", "fresh_symbols"]

_STEP_FUNCTIONS = (sp.floor, sp.ceiling, sp.sign, sp.Heaviside)


@dataclass(frozen=True)
class VJP:
    """Vector-Jacobian products of ``f`` with the adjoint vector ``a``.

    Attributes
    ----------
    z : tuple of sympy.Expr, length dim
        ``a·∂f/∂z_j = Σ_i a_i ∂f_i/∂z_j``.
    theta : tuple of sympy.Expr, length n_params
        ``a·∂f/∂θ_k``.
    t : sympy.Expr
        ``a·∂f/∂t``.
    """

    z: tuple[sp.Expr, ...]
    theta: tuple[sp.Expr, ...]
    t: sp.Expr


@dataclass(frozen=True)
class DivergenceGradients:
    """Gradients of ``div f = Σ_i ∂f_i/∂z_i``.

    Attributes
    ----------
    z : tuple of sympy.Expr, length dim
        ``∂(div f)/∂z_j``.
    theta : tuple of sympy.Expr, length n_params
        ``∂(div f)/∂θ_k``.
    """

    z: tuple[sp.Expr, ...]
    theta: tuple[sp.Expr, ...]


def _real_view(exprs: Sequence[sp.Expr]) -> tuple[list[sp.Expr], dict, dict]:
    """``exprs`` with every not-known-real symbol replaced by a real Dummy, and both maps."""
    symbols = set().union(*(e.free_symbols for e in exprs)) if exprs else set()
    to_real = {s: sp.Dummy(s.name, real=True) for s in symbols
               if isinstance(s, sp.Symbol) and s.is_real is not True}
    back = {d: s for s, d in to_real.items()}
    return [e.xreplace(to_real) for e in exprs], to_real, back


def _is_step_derivative(e: sp.Basic) -> bool:
    return isinstance(e, sp.Derivative) and isinstance(e.expr, _STEP_FUNCTIONS)


def _clean(d: sp.Expr, expr: sp.Expr, var: sp.Symbol) -> sp.Expr:
    """Drop the zero-almost-everywhere pieces of a derivative; refuse unevaluated ones."""
    if d.has(sp.DiracDelta):
        d = d.replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.S.Zero)
    if d.has(sp.Derivative):
        d = d.replace(_is_step_derivative, lambda e: sp.S.Zero)
    if d.has(sp.Subs):  # the chain rule's Subs(0, ξ, g(x)) of a step function is just 0
        d = d.replace(lambda e: isinstance(e, sp.Subs) and not e.has(sp.Derivative),
                      lambda e: e.doit())
    if d.has(sp.Derivative, sp.Subs):
        raise ExpressionError(
            f"sympy cannot differentiate {expr} with respect to {var}: it leaves "
            f"{d.atoms(sp.Derivative, sp.Subs) or d}. Rewrite the expression with functions "
            f"whose derivatives sympy knows.")
    return d


def _derivative_table(exprs: Sequence[sp.Expr], wrt: Sequence[sp.Symbol]) -> list[list[sp.Expr]]:
    """``table[i][j] = ∂exprs[i]/∂wrt[j]``, each symbol differentiated as a real variable."""
    exprs = [sp.sympify(e) for e in exprs]
    real, to_real, back = _real_view(exprs)
    table = []
    for e, e_real in zip(exprs, real):
        row = []
        for w in wrt:
            d = sp.diff(e_real, to_real.get(w, w)).xreplace(back)
            row.append(_clean(d, e, w))
        table.append(row)
    return table


def jacobian(exprs: Sequence[sp.Expr], wrt: Sequence[sp.Symbol]) -> sp.ImmutableMatrix:
    """Jacobian ``J_ij = ∂exprs_i/∂wrt_j``.

    Parameters
    ----------
    exprs : sequence of sympy.Expr, length m
    wrt : sequence of sympy.Symbol, length k

    Returns
    -------
    J : sympy.ImmutableMatrix, shape (m, k)
    """
    table = _derivative_table(exprs, wrt)
    return sp.ImmutableMatrix(len(table), len(wrt), [d for row in table for d in row])


def time_derivative(exprs: Sequence[sp.Expr], t: sp.Symbol) -> sp.ImmutableMatrix:
    """Explicit time derivative ``∂exprs_i/∂t``, a column of shape (m, 1)."""
    return jacobian(exprs, [t])


def _dot(weights: Iterable[sp.Expr], values: Iterable[sp.Expr]) -> sp.Expr:
    """``Σ w_i v_i``, leaving out the terms whose ``v_i`` is zero."""
    return sp.Add(*[w * v for w, v in zip(weights, values) if v != 0])


def derive_vjp(exprs: Sequence[sp.Expr], adjoint_symbols: Sequence[sp.Symbol],
               wrt: Sequence[sp.Symbol], jac: sp.MatrixBase | None = None) -> tuple[sp.Expr, ...]:
    """Vector-Jacobian product ``(a·∂f/∂w)_j = Σ_i a_i ∂f_i/∂w_j``.

    Parameters
    ----------
    exprs : sequence of sympy.Expr, length m
        The function ``f``.
    adjoint_symbols : sequence of sympy.Symbol, length m
        The vector ``a``, one symbol per entry of ``f``.
    wrt : sequence of sympy.Symbol, length k
    jac : sympy matrix, shape (m, k), optional
        ``∂f/∂w`` when already known, so it is not derived twice.

    Returns
    -------
    tuple of sympy.Expr, length k
    """
    if len(adjoint_symbols) != len(exprs):
        raise ExpressionError(f"derive_vjp needs one adjoint symbol per expression: got "
                              f"{len(adjoint_symbols)} symbols for {len(exprs)} expressions")
    if jac is None:
        jac = jacobian(exprs, wrt)
    if jac.shape != (len(exprs), len(wrt)):
        raise ExpressionError(f"jac has shape {jac.shape}, expected {(len(exprs), len(wrt))}")
    return tuple(_dot(adjoint_symbols, jac[:, j]) for j in range(len(wrt)))


def divergence(exprs: Sequence[sp.Expr], states: Sequence[sp.Symbol],
               jac: sp.MatrixBase | None = None) -> sp.Expr:
    """Divergence ``div f = Σ_i ∂f_i/∂z_i``, the trace of the Jacobian.

    Parameters
    ----------
    exprs : sequence of sympy.Expr, length n
    states : sequence of sympy.Symbol, length n
    jac : sympy matrix, shape (n, n), optional
        ``∂f/∂z`` when already known.
    """
    if len(exprs) != len(states):
        raise ExpressionError(f"the divergence needs a square system: {len(exprs)} expressions "
                              f"in {len(states)} states")
    if jac is None:
        return sp.Add(*[_derivative_table([f], [z])[0][0] for f, z in zip(exprs, states)])
    return sp.Add(*[jac[i, i] for i in range(len(states))])


def gradient(expr: sp.Expr, wrt: Sequence[sp.Symbol]) -> tuple[sp.Expr, ...]:
    """Gradient ``(∂expr/∂w_1, ..., ∂expr/∂w_k)`` of a scalar expression."""
    return tuple(_derivative_table([expr], wrt)[0]) if len(wrt) else ()


def fresh_symbols(stems: Sequence[str], taken: Iterable[str], prefix: str = "a_"
                  ) -> tuple[sp.Symbol, ...]:
    """Symbols named ``prefix + stem`` whose names differ from ``taken`` and from each other.

    A clash is resolved by doubling the underscore: ``a_x`` becomes ``a__x``, then ``a___x``.

    Examples
    --------
    >>> fresh_symbols(["x", "y"], taken=["x", "y", "a_x"])
    (a__x, a_y)
    """
    used = set(taken)
    out = []
    for stem in stems:
        name, extra = prefix + stem, 0
        while name in used:
            extra += 1
            name = prefix + "_" * extra + stem
        used.add(name)
        out.append(sp.Symbol(name))
    return tuple(out)
