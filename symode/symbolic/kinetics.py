"""Chemical reaction mechanisms as ODEs under mass action (``ODE.from_reactions``).

A reaction ``ν_1 A_1 + ν_2 A_2 -> μ_1 B_1 + ..`` with rate constant k runs at
``r = k · Π_i A_i^ν_i`` and changes each species by (its coefficient on the right minus its
coefficient on the left) times r; ``dX/dt`` sums that over the reactions. Mechanisms of this kind
(atmospheric and combustion chemistry, enzyme networks) are stiff, with sparse Jacobians whose
structure the Rosenbrock solvers exploit (:mod:`symode.solvers.lu_plan`).

:func:`pollu` is Verwer's POLLU mechanism, the standard stiff test problem of air chemistry.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import sympy as sp

from ..errors import ExpressionError
from .parse import parse_expression

__all__ = ["parse_reaction", "mass_action", "pollu"]

_TERM = re.compile(r"^\s*(?:(\d+)\s*\*?\s*)?([A-Za-z_]\w*)\s*$")


def _side(text: str, where: str) -> dict[str, int]:
    coeffs: dict[str, int] = {}
    if text.strip() in ("", "0"):
        return coeffs
    for term in text.split("+"):
        m = _TERM.match(term)
        if not m:
            raise ExpressionError(f"{where}: cannot read {term.strip()!r} as a species with an "
                                  f"optional whole-number coefficient, such as 'NO2' or '2 OH'")
        coeffs[m.group(2)] = coeffs.get(m.group(2), 0) + int(m.group(1) or 1)
    return coeffs


def parse_reaction(text: str, where: str = "reaction") -> tuple[dict[str, int], dict[str, int]]:
    """``"2 A + B -> C"`` as (reactants, products), species name -> coefficient. An empty side
    or ``0`` is a source or a sink."""
    if not isinstance(text, str) or text.count("->") != 1:
        raise ExpressionError(f"{where} = {text!r}: write a reaction as 'A + 2 B -> C', with one "
                              f"'->'")
    left, right = text.split("->")
    return _side(left, where), _side(right, where)


def mass_action(reactions: Sequence[str], rates: Sequence | None = None,
                species: Sequence[str] | None = None, t: str = "t"):
    """The arguments of ``ODE(states, rhs, params, t)`` for a mechanism; see
    ``ODE.from_reactions``."""
    if isinstance(reactions, str):
        raise ExpressionError("reactions is a single string; pass a list of reactions")
    parsed = [parse_reaction(r, f"reactions[{j}]") for j, r in enumerate(reactions)]
    used = list(dict.fromkeys(name for left, right in parsed for name in (*left, *right)))
    names = used if species is None else list(species)
    missing = sorted(set(used) - set(names))
    if missing:
        raise ExpressionError(f"species {', '.join(missing)} appear in the reactions but not in "
                              f"species=[...]; list every species")
    z = {name: sp.Symbol(name) for name in names}
    time = sp.Symbol(t)
    if rates is None:
        rates = [sp.Symbol(f"k{j + 1}") for j in range(len(parsed))]
    if len(rates) != len(parsed):
        raise ExpressionError(f"{len(rates)} rates for {len(parsed)} reactions; give one each")
    known = {**z, t: time}
    consts = []
    for j, k in enumerate(rates):
        if isinstance(k, str):
            k = parse_expression(k, known, where=f"rates[{j}]")
        consts.append(sp.sympify(k))
    params = list(dict.fromkeys(s for k in consts for s in sorted(k.free_symbols, key=str)
                                if s not in z.values() and s != time))
    rhs = {name: sp.Integer(0) for name in names}
    for k, (left, right) in zip(consts, parsed):
        rate = k * sp.Mul(*[z[name] ** nu for name, nu in left.items()])
        for name in {**left, **right}:
            change = right.get(name, 0) - left.get(name, 0)
            if change:
                rhs[name] += change * rate
    return [z[n] for n in names], [rhs[n] for n in names], params, time


# POLLU (Verwer 1994; IVP test set): 20 species, 25 reactions, ppm and minutes.
POLLU_REACTIONS = [
    "NO2 -> NO + O3P", "NO + O3 -> NO2", "HO2 + NO -> NO2 + OH", "HCHO -> 2 HO2 + CO",
    "HCHO -> CO", "HCHO + OH -> HO2 + CO", "ALD -> MEO2 + HO2 + CO", "ALD + OH -> C2O3",
    "C2O3 + NO -> NO2 + MEO2 + CO2", "C2O3 + NO2 -> PAN", "PAN -> C2O3 + NO2",
    "MEO2 + NO -> CH3O + NO2", "CH3O -> HCHO + HO2", "NO2 + OH -> HNO3", "O3P -> O3",
    "O3 -> O1D", "O3 -> O3P", "O1D -> 2 OH", "O1D -> O3P", "SO2 + OH -> SO4 + HO2", "NO3 -> NO",
    "NO3 -> NO2 + O3P", "NO2 + O3 -> NO3", "NO3 + NO2 -> N2O5", "N2O5 -> NO3 + NO2",
]
POLLU_SPECIES = ["NO2", "NO", "O3P", "O3", "HO2", "OH", "HCHO", "CO", "ALD", "MEO2", "C2O3",
                 "CO2", "PAN", "CH3O", "HNO3", "O1D", "SO2", "SO4", "NO3", "N2O5"]
POLLU_RATES = [0.35, 26.6, 1.23e4, 8.6e-4, 8.2e-4, 1.5e4, 1.3e-4, 2.4e4, 1.65e4, 9e3, 0.022,
               1.2e4, 1.88, 1.63e4, 4.8e6, 3.5e-4, 0.0175, 1e8, 4.44e11, 1240.0, 2.1, 5.78,
               0.0474, 1780.0, 3.12]


def pollu():
    """Verwer's POLLU air-pollution mechanism (SIAM J. Sci. Comput. 15, 1994), the stiff test
    problem of the IVP test set: 20 species, 25 reactions with rate constants from 1e-4 to
    4e11 per minute, on t ∈ [0, 60] minutes.

    Returns ``(ode, y0, k)``: the ODE with the rate constants ``k1 .. k25`` as parameters, the
    initial concentrations (ppm) and the constants' values.
    """
    from .ode import ODE

    ode = ODE.from_reactions(POLLU_REACTIONS, species=POLLU_SPECIES)
    y0 = np.zeros(20)
    for name, value in {"NO": 0.2, "O3": 0.04, "HCHO": 0.1, "CO": 0.3, "ALD": 0.01,
                        "SO2": 0.007}.items():
        y0[POLLU_SPECIES.index(name)] = value
    return ode, y0, np.array(POLLU_RATES)
