"""Plots of solves: trajectories against time or in a plane, and the work each trajectory did."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from numpy.typing import ArrayLike

from ..backend import to_numpy
from ..errors import ShapeError, SymodeError
from ..solvers.solution import Solution, Stats
from ..symbolic import ODE
from ._common import axes, require_matplotlib

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["trajectories", "nfe_histogram"]

#: What :func:`nfe_histogram` can count, with its axis label.
COUNTS = {"nfev": "right-hand-side evaluations", "naccept": "accepted steps",
          "nreject": "rejected steps", "nsteps": "attempted steps"}


def trajectories(sol: Solution | ArrayLike, y: ArrayLike | None = None, *,
                 dims: int | tuple[int, int] | None = None,
                 names: Sequence[str] | ODE | None = None, max_lines: int | None = 100,
                 ax: "Axes | None" = None, **kw) -> "Axes":
    """Solutions against time, or one state against another.

    Called as ``trajectories(sol)`` with a :class:`~symode.Solution` or as
    ``trajectories(t, y)`` with arrays of the same layout.

    Parameters
    ----------
    sol : Solution, or array_like of shape (T,) or (batch, T)
        A solution, or the times ``t`` (shared, or one row per trajectory).
    y : array_like, shape (T, batch, dim) or (T, dim), optional
        The states, when ``sol`` is the times; ``(T, dim)`` is one trajectory.
    dims : int or (int, int), optional
        None: every state against time, one colour per state (with a legend when there are
        several). An int ``i``: state ``i`` against time, one colour per trajectory. A pair
        ``(i, j)``: state ``j`` against state ``i`` (a phase-plane projection).
    names : sequence of str, or ODE, optional
        Names of the states for labels and legend; an :class:`~symode.ODE` gives its state
        names (and its time symbol). Default ``y[0], y[1], ...``.
    max_lines : int or None
        Draw at most the first ``max_lines`` trajectories (None: all of them); thousands of
        lines are slow to draw and unreadable.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    **kw
        Passed to :meth:`~matplotlib.axes.Axes.plot` for every line (``color``, ``lw``,
        ``alpha``; ``marker="o", markevery=[0]`` marks the starts).

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> sol = so.solve(lorenz, y0, np.linspace(0, 10, 1001), params=[10, 28, 8 / 3])
    >>> ax = so.viz.trajectories(sol, dims=(0, 2), names=lorenz)
    """
    require_matplotlib("trajectories")
    t, y = _arrays(sol, y)
    _, batch, dim = y.shape
    labels, t_name = _names(names, dim)
    states, plane = _dims(dims, dim)
    if max_lines is not None and not (isinstance(max_lines, numbers.Integral)
                                      and max_lines >= 1):
        raise SymodeError(f"trajectories: max_lines must be an integer >= 1 or None, got "
                          f"{max_lines!r}.")
    shown = range(batch if max_lines is None else min(batch, int(max_lines)))
    ax = axes(ax, "trajectories")
    if plane:
        i, j = states
        for b in shown:
            ax.plot(y[:, b, i], y[:, b, j], **kw)
        ax.set(xlabel=labels[i], ylabel=labels[j])
        return ax
    several = len(states) > 1          # then colour by state, else by trajectory
    for k in states:
        for b in shown:
            style = {"color": f"C{k % 10}",
                     "label": labels[k] if b == 0 else "_nolegend_"} if several else {}
            ax.plot(t if t.ndim == 1 else t[b], y[:, b, k], **{**style, **kw})
    ax.set(xlabel=t_name, ylabel="" if several else labels[states[0]])
    if several:
        ax.legend()
    return ax


def nfe_histogram(sol: Solution | Stats, *, count: str = "nfev", bins: Any = None,
                  ax: "Axes | None" = None, **kw) -> "Axes":
    """Histogram over trajectories of the work a solve did: how adaptive steps spread.

    Parameters
    ----------
    sol : Solution or Stats
    count : {"nfev", "naccept", "nreject", "nsteps"}
        Right-hand-side evaluations, accepted, rejected or attempted steps per trajectory.
    bins : int or sequence, optional
        As for :meth:`~matplotlib.axes.Axes.hist`. By default at most 50 bins with edges
        halfway between the counts that can occur: dopri5 makes 6 evaluations a step, so its
        counts are 6 apart, and so are the bins while there are few.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    **kw
        Passed to :meth:`~matplotlib.axes.Axes.hist`.

    Returns
    -------
    ax : matplotlib Axes

    Notes
    -----
    The kernel engine counts per trajectory. The array engine steps the batch together
    (``stats.shared``), so every trajectory has the same count and the histogram is one bar.

    Examples
    --------
    >>> sol = so.solve(lorenz, y0, [0, 10], params=[10, 28, 8 / 3])
    >>> ax = so.viz.nfe_histogram(sol)
    """
    require_matplotlib("nfe_histogram")
    stats = sol.stats if isinstance(sol, Solution) else sol
    if not isinstance(stats, Stats):
        raise SymodeError(f"nfe_histogram needs a symode Solution or Stats, got "
                          f"{type(sol).__name__}.")
    if count not in COUNTS:
        raise SymodeError(f"nfe_histogram: unknown count {count!r}; choose one of "
                          f"{', '.join(map(repr, COUNTS))}.")
    values = np.asarray(to_numpy(getattr(stats, count))).reshape(-1)
    if values.size == 0:
        raise ShapeError("nfe_histogram: the solve has no trajectories to count.")
    if bins is None:
        bins = _count_bins(values.astype(np.int64))
    ax = axes(ax, "nfe_histogram")
    ax.hist(values, bins=bins, **{"color": "0.4", **kw})
    ax.set(xlabel=f"{COUNTS[count]} per trajectory", ylabel="trajectories")
    return ax


def _count_bins(values: np.ndarray, most: int = 50) -> np.ndarray:
    """Bin edges for integer counts: the counts lie on ``low + step * k``, and each bin holds
    ``ceil(points / most)`` of those points; edges lie halfway between points."""
    low, high = int(values.min()), int(values.max())
    step = max(int(np.gcd.reduce(values - low)), 1)
    points = (high - low) // step + 1
    width = step * -(-points // most)
    return low - step / 2 + width * np.arange(-(-(high - low + step) // width) + 1)


def _arrays(sol, y) -> tuple[np.ndarray, np.ndarray]:
    """``t`` (T,) or (batch, T) and ``y`` (T, batch, dim) from a Solution or from arrays."""
    if isinstance(sol, Solution):
        if y is not None:
            raise SymodeError("trajectories: give a Solution alone, or the arrays t and y.")
        t, y = sol.t, sol.y
    elif y is None:
        raise SymodeError(f"trajectories needs a symode Solution or the arrays t and y, got "
                          f"one {type(sol).__name__}.")
    else:
        t = sol
    t = np.asarray(to_numpy(t), dtype=np.float64)
    y = np.asarray(to_numpy(y), dtype=np.float64)
    if y.ndim == 2:
        y = y[:, None, :]
    if y.ndim != 3 or t.ndim not in (1, 2) or t.shape[-1] != y.shape[0] \
            or (t.ndim == 2 and t.shape[0] != y.shape[1]):
        raise ShapeError(f"trajectories: y must have shape (T, batch, dim) or (T, dim) and t "
                         f"shape (T,) or (batch, T); got t {t.shape} and y {y.shape}.")
    return t, y


def _names(names, dim: int) -> tuple[list[str], str]:
    """State labels and the time label."""
    if names is None:
        return [f"y[{k}]" for k in range(dim)], "t"
    if isinstance(names, ODE):
        labels, t_name = [s.name for s in names.states], names.t.name
    else:
        labels, t_name = [str(s) for s in names], "t"
    if len(labels) != dim:
        raise ShapeError(f"trajectories: {len(labels)} names ({', '.join(labels)}) for "
                         f"{dim} states; give one name per state.")
    return labels, t_name


def _dims(dims, dim: int) -> tuple[tuple[int, ...], bool]:
    """The states to draw (all, one, or a pair) and whether they make a plane."""
    if dims is None:
        return tuple(range(dim)), False
    pair = (dims,) if np.ndim(dims) == 0 else tuple(dims)
    ok = len(pair) in (1, 2) and all(isinstance(k, (int, np.integer)) and not isinstance(k, bool)
                                     and 0 <= k < dim for k in pair)
    if not ok:
        raise SymodeError(f"trajectories: dims must be None, a state index or a pair (i, j) of "
                          f"state indices below {dim}, got {dims!r}.")
    return tuple(int(k) for k in pair), len(pair) == 2
