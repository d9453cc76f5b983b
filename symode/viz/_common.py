"""What the plotting functions share: matplotlib on demand, checked limits, the field of a system.

matplotlib is imported only when a plotting function is called, never when symode is imported.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import numpy as np
import sympy as sp

from ..backend import to_numpy
from ..errors import ShapeError, SymodeError
from ..symbolic import ODE

INSTALL = 'pip install "symode[plot]"'


def require_matplotlib(caller: str):
    """``matplotlib.pyplot``, or a SymodeError that names the extra to install."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise SymodeError(f"{caller} draws with matplotlib, which is not installed: "
                          f"{INSTALL} (or pip install matplotlib).") from None
    return plt


def axes(ax, caller: str):
    """``ax``, or the Axes of a new figure when ``ax`` is None."""
    if ax is None:
        _, ax = require_matplotlib(caller).subplots()
    return ax


def limits(lim, name: str, caller: str) -> tuple[float, float]:
    """``(low, high)`` as floats: two finite real numbers with ``low < high``."""
    try:
        low, high = (float(v) for v in lim)
    except (TypeError, ValueError):
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise SymodeError(f"{caller}: {name} must be a pair (low, high) of finite numbers with "
                          f"low < high, got {lim!r}; for example {name}=(-2, 2).")
    return low, high


def grid_size(n, caller: str) -> tuple[int, int]:
    """``(nx, ny)`` from ``n`` (one int for both, or a pair), each at least 2."""
    pair = (n, n) if isinstance(n, numbers.Integral) else tuple(n) if np.ndim(n) == 1 else ()
    if len(pair) != 2 or not all(isinstance(k, numbers.Integral) and k >= 2 for k in pair):
        raise SymodeError(f"{caller}: n must be an integer >= 2 or a pair of them (points "
                          f"along x and along y), got {n!r}.")
    return int(pair[0]), int(pair[1])


def state_names(system: Any, dim: int) -> list[str]:
    """The state names of an ODE; ``y[0], y[1], ...`` for anything else."""
    if isinstance(system, ODE):
        return [s.name for s in system.states]
    return [f"y[{k}]" for k in range(dim)]


def rhs_function(system: Any, params, caller: str) -> Callable[[float, np.ndarray], np.ndarray]:
    """``f(t, z)`` of a system on points ``z`` (m, dim), returning float64 (m, dim).

    An :class:`~symode.ODE` is evaluated with ``sympy.lambdify`` (numpy, nothing compiled) at
    the parameter values ``params`` (P,); anything else is called as ``f(t, z, params)``, as
    :func:`symode.solve` calls it. Entries that are not finite (a pole on the grid) stay so;
    callers mask them.
    """
    if isinstance(system, ODE):
        theta = ode_params(system, params, caller)
        fun = sp.lambdify([system.t, *system.states, *system.params], list(system.rhs),
                          modules="numpy")

        def evaluate(t, z):
            with np.errstate(all="ignore"):
                cols = fun(t, *z.T, *theta)
            return np.stack([np.broadcast_to(np.asarray(c, dtype=np.float64), z.shape[:1])
                             for c in cols], axis=1)
        return evaluate
    fun = getattr(system, "f", system)
    if not callable(fun):
        raise SymodeError(f"{caller}: cannot evaluate a {type(system).__name__}; pass a "
                          f"symode.ODE or a function f(t, y, params) -> dy/dt on (m, dim) "
                          f"arrays.")

    def evaluate(t, z):
        with np.errstate(all="ignore"):
            out = np.asarray(to_numpy(fun(t, z, params)), dtype=np.float64)
        if out.shape != z.shape:
            raise ShapeError(f"{caller}: f(t, y, params) returned shape {out.shape} for y of "
                             f"shape {z.shape}; it must return dy/dt of the shape of y.")
        return out
    return evaluate


def ode_params(ode: ODE, params, caller: str) -> np.ndarray:
    """The parameter values of an ODE as float64 (P,), checked against ``ode.params``."""
    names = ", ".join(p.name for p in ode.params)
    if params is None:
        if ode.n_params:
            raise SymodeError(f"{caller}: the system has parameters ({names}); pass "
                              f"params=[...] with {ode.n_params} value(s) in that order.")
        return np.zeros(0)
    theta = np.asarray(to_numpy(params), dtype=np.float64)
    if theta.shape != (ode.n_params,):
        raise ShapeError(f"{caller}: params must have shape ({ode.n_params},), one value for "
                         f"each of ({names}), got shape {theta.shape}.")
    return theta
