"""Expressions -> source text: common-subexpression elimination, then one printed line each.

The text is kept so that a user can read exactly what runs (``SymbolicDynamics.source``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from .printers import NumbaPrinter, print_expression

__all__ = ["emit_function", "emit_into", "is_zero", "rename"]

INDENT = "    "


def rename(exprs: Sequence[sp.Expr], symbols: Sequence[sp.Symbol], names: Sequence[str]):
    """Replace each symbol by a plain symbol with a code-safe name (``z0``, ``p1``, ``t``).

    Returns the renamed expressions and the map back to the user's symbols.
    """
    mapping = {s: sp.Symbol(n) for s, n in zip(symbols, names)}
    back = {v: k for k, v in mapping.items()}
    return [sp.sympify(e).xreplace(mapping) for e in exprs], back


def emit_function(
    name: str,
    arg_names: Sequence[str],
    exprs: Sequence[sp.Expr],
    printer: NumbaPrinter | None = None,
    where: str = "out",
    decorator: str | None = "@JIT",
    names: dict | None = None,
) -> str:
    """Source of ``def name(*arg_names)`` returning the tuple of ``exprs``.

    The expressions must already be written in the argument names (see :func:`rename`).
    Shared subexpressions are computed once into locals ``_c0, _c1, ...``.

    Parameters
    ----------
    name : str
    arg_names : sequence of str
    exprs : sequence of sympy.Expr
        One expression per returned value.
    printer : NumbaPrinter, optional
    where : str
        Name used in error messages for entry ``i`` (``f"{where}[{i}]"``).
    decorator : str or None
        A line put above the ``def``.
    names : dict, optional
        Code symbol -> user symbol, so that errors name the user's symbols.
    """
    printer = printer or NumbaPrinter()
    temps, reduced = sp.cse(list(exprs), symbols=sp.numbered_symbols("_c"), optimizations="basic")
    lines = [decorator] if decorator else []
    lines.append(f"def {name}({', '.join(arg_names)}):")
    for sym, value in temps:
        lines.append(f"{INDENT}{sym} = {print_expression(value, printer, where, names)}")
    outs = [print_expression(e, printer, f"{where}[{i}]", names) for i, e in enumerate(reduced)]
    if len(outs) == 1:
        lines.append(f"{INDENT}return ({outs[0]},)")
    else:
        body = (",\n" + INDENT * 2).join(outs)
        lines.append(f"{INDENT}return (\n{INDENT * 2}{body},\n{INDENT})")
    return "\n".join(lines) + "\n"


def emit_into(
    name: str,
    arrays: Sequence[str],
    loads: dict[str, str],
    targets: Sequence[str],
    exprs: Sequence[sp.Expr],
    clear: dict[str, int] | None = None,
    printer: NumbaPrinter | None = None,
    where: str = "out",
    names: dict | None = None,
    zeroed: Sequence[str] = (),
    views: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> str:
    """Source of ``def name(*arrays)`` storing each of ``exprs`` into its target (``"J[0, 2]"``).

    For large, sparse outputs (a Jacobian): the scalars the expressions use are read from the
    arrays by ``loads`` (code name -> array entry, e.g. ``"z0": "y[0]"``), and only the entries
    that are not structurally zero are computed and stored, after the arrays in ``clear`` (name
    -> number of dimensions) are zeroed; so the code grows with the nonzeros, not with
    ``len(exprs)``. The arrays in ``zeroed`` are kept zero by the caller (zeroed once), so
    their zero entries are not written at all. Targets of zero entries in other arrays get
    ``0.0``. Shared subexpressions are computed once. ``views`` (name -> expression, e.g.
    ``{"Jf": "J.reshape(9)"}``) are bound first: numba types a flat index far faster than a
    pair, which matters for thousands of entries; ``labels`` (target -> text) are written as
    comments after the stores, so the text still reads ``# J[2, 1]``.
    """
    printer = printer or NumbaPrinter()
    clear = clear or {}
    live = [(tgt, e) for tgt, e in zip(targets, exprs)
            if not is_zero(e) or tgt.split("[")[0] not in (*clear, *zeroed)]
    temps, reduced = sp.cse([e for _, e in live], symbols=sp.numbered_symbols("_c"),
                            optimizations="basic")
    used = set().union(*(sp.sympify(e).free_symbols for _, e in live))
    lines = ["@JIT", f"def {name}({', '.join(arrays)}):"]
    lines += [f"{INDENT}{view} = {value}" for view, value in (views or {}).items()]
    for array, ndim in clear.items():
        idx = [f"_i{k}" for k in range(ndim)]
        for k, i in enumerate(idx):
            lines.append(f"{INDENT * (k + 1)}for {i} in range({array}.shape[{k}]):")
        lines.append(f"{INDENT * (ndim + 1)}{array}[{', '.join(idx)}] = 0.0")
    lines += [f"{INDENT}{code} = {entry}" for code, entry in loads.items()
              if sp.Symbol(code) in used]
    for sym, value in temps:
        lines.append(f"{INDENT}{sym} = {print_expression(value, printer, where, names)}")
    labels = labels or {}
    for (tgt, _), e in zip(live, reduced):
        label = labels.get(tgt, tgt)
        note = f"  # {label}" if label != tgt else ""
        lines.append(f"{INDENT}{tgt} = {print_expression(e, printer, f'{where} {label}', names)}"
                     f"{note}")
    return "\n".join(lines) + "\n"


def is_zero(e) -> bool:
    """Structurally zero: the number 0 (integer or float), not an expression that simplifies
    to it."""
    e = sp.sympify(e)
    return bool(e.is_Number and e.is_zero)
