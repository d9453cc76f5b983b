"""Direction fields of a system: slope fields, vector fields and phase portraits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
from numpy.typing import ArrayLike

from ..backend import to_numpy
from ..errors import ShapeError, SymodeError
from ..solvers.solve import solve
from ..symbolic import ODE
from ._common import (axes, grid_size, limits, require_matplotlib, rhs_function, state_names)
from .solutions import trajectories

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["slope_field", "vector_field", "phase_portrait"]

#: Segments drawn without heads: quiver arrows reduced to lines.
_NO_HEADS = dict(headwidth=0, headlength=0, headaxislength=0)


def slope_field(ode: Any, tlim: ArrayLike, ylim: ArrayLike, *, params: ArrayLike | None = None,
                n: int | tuple[int, int] = (25, 21), ax: "Axes | None" = None,
                **kw) -> "Axes":
    """Slope field of a scalar equation ``dy/dt = f(t, y)``: a short segment of slope ``f`` at
    each point of a ``(t, y)`` grid.

    The segments all have the same length on screen and point along ``(1, f)`` in data
    coordinates, so a solution curve drawn on the same Axes is tangent to them.

    Parameters
    ----------
    ode : ODE or callable
        A one-state :class:`~symode.ODE`, or ``f(t, y, params)`` on ``y`` of shape (m, 1).
    tlim, ylim : (float, float)
        The ranges of ``t`` (horizontal) and ``y`` (vertical).
    params : array_like, shape (P,), optional
        Parameter values, required when the system has parameters.
    n : int or (int, int)
        Grid points along ``t`` and along ``y``.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    **kw
        Passed to :meth:`~matplotlib.axes.Axes.quiver` (``color``, ``width``, ``scale``: larger
        is shorter).

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> y, t = sp.symbols("y t")
    >>> ax = so.viz.slope_field(so.ODE([y], [t - y**2], t=t), (0, 4), (-3, 3))
    """
    require_matplotlib("slope_field")
    dim = ode.dim if isinstance(ode, ODE) else 1
    if dim != 1:
        raise ShapeError(f"slope_field needs an equation with one state; this system has {dim} "
                         f"({', '.join(state_names(ode, dim))}). Use vector_field or "
                         f"phase_portrait for two states.")
    (t0, t1), (y0, y1) = limits(tlim, "tlim", "slope_field"), limits(ylim, "ylim", "slope_field")
    nt, ny = grid_size(n, "slope_field")
    tt, yy = np.meshgrid(np.linspace(t0, t1, nt), np.linspace(y0, y1, ny))
    f = rhs_function(ode, params, "slope_field")
    slope = np.stack([f(t, yy[:, [j]])[:, 0] for j, t in enumerate(tt[0])], axis=1)
    norm = np.hypot(1.0, slope)
    ax = axes(ax, "slope_field")
    style = dict(color="0.6", angles="xy", pivot="mid", width=0.0025,
                 scale=1.4 * max(nt, ny), **_NO_HEADS)
    ax.quiver(tt, yy, np.ma.masked_invalid(1.0 / norm), np.ma.masked_invalid(slope / norm),
              **{**style, **kw})
    names = state_names(ode, 1)
    ax.set(xlim=(t0, t1), ylim=(y0, y1), xlabel=ode.t.name if isinstance(ode, ODE) else "t",
           ylabel=names[0])
    return ax


def vector_field(system: Any, xlim: ArrayLike, ylim: ArrayLike, *,
                 params: ArrayLike | None = None, t: float = 0.0,
                 states: tuple[int | str, int | str] = (0, 1),
                 fixed: Mapping[int | str, float] | None = None, n: int | tuple[int, int] = 21,
                 normalize: bool = True, streamlines: bool = False, ax: "Axes | None" = None,
                 **kw) -> "Axes":
    """Arrows (or streamlines) of the right-hand side ``f(t, y)`` in a plane of the state space.

    Parameters
    ----------
    system : ODE or callable
        An :class:`~symode.ODE` with two or more states, or ``f(t, y, params)`` on ``y`` of
        shape (m, dim) (called as :func:`symode.solve` calls it).
    xlim, ylim : (float, float)
        Ranges of the two states shown, ``states[0]`` horizontally and ``states[1]``
        vertically.
    params : array_like, shape (P,), optional
        Parameter values, required when the system has parameters.
    t : float
        The time at which ``f`` is evaluated (it matters only for non-autonomous systems).
    states : (int or str, int or str)
        The two states shown, by index or (for an ODE) by name.
    fixed : mapping state -> float, optional
        Values of the other states, required when the system has more than two: the arrows
        are the projection of ``f`` on the plane through those values, ``fixed={"z": 25}``.
        For a callable with more than two states, ``dim = 2 + len(fixed)``.
    n : int or (int, int)
        Grid points along x and along y.
    normalize : bool
        Draw every arrow with the same length (the direction of ``f`` only); with False the
        lengths are proportional to ``|f|``. Ignored with ``streamlines=True``.
    streamlines : bool
        Draw streamlines (:meth:`~matplotlib.axes.Axes.streamplot`) instead of arrows.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    **kw
        Passed to :meth:`~matplotlib.axes.Axes.quiver` or
        :meth:`~matplotlib.axes.Axes.streamplot`.

    Returns
    -------
    ax : matplotlib Axes

    Notes
    -----
    Points where ``f`` is not finite (a pole on the grid) get no arrow.

    Examples
    --------
    >>> x, y = sp.symbols("x y")
    >>> pendulum = so.ODE([x, y], [y, -sp.sin(x)])
    >>> ax = so.viz.vector_field(pendulum, (-2 * np.pi, 2 * np.pi), (-3, 3))
    """
    require_matplotlib("vector_field")
    i, j, base = _plane(system, states, fixed)
    (x0, x1), (y0, y1) = limits(xlim, "xlim", "vector_field"), limits(ylim, "ylim", "vector_field")
    nx, ny = grid_size(n, "vector_field")
    xs, ys = np.linspace(x0, x1, nx), np.linspace(y0, y1, ny)
    X, Y = np.meshgrid(xs, ys)
    z = np.tile(base, (X.size, 1))
    z[:, i], z[:, j] = X.ravel(), Y.ravel()
    dz = rhs_function(system, params, "vector_field")(float(t), z)
    U, V = dz[:, i].reshape(X.shape), dz[:, j].reshape(X.shape)
    ax = axes(ax, "vector_field")
    if streamlines:
        ax.streamplot(xs, ys, U, V, **{"color": "0.5", "density": 1.2, **kw})
    else:
        if normalize:
            with np.errstate(all="ignore"):
                speed = np.hypot(U, V)
                speed[speed == 0] = 1.0            # a rest point keeps its zero arrow
                U, V = U / speed, V / speed
        style = dict(color="0.5", angles="xy", pivot="mid", width=0.003)
        ax.quiver(X, Y, np.ma.masked_invalid(U), np.ma.masked_invalid(V), **{**style, **kw})
    names = state_names(system, len(base))
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel=names[i], ylabel=names[j])
    return ax


def phase_portrait(system: Any, y0: ArrayLike, t: ArrayLike, *, params: ArrayLike | None = None,
                   xlim: ArrayLike | None = None, ylim: ArrayLike | None = None,
                   n: int | tuple[int, int] = 21, ax: "Axes | None" = None,
                   **solve_kw) -> "Axes":
    """Phase portrait of a two-state system: its vector field and solutions from ``y0``.

    The solutions come from one :func:`symode.solve` call; their starts are marked with dots.
    To keep the solution, solve yourself and draw with :func:`vector_field` and
    :func:`trajectories` (``dims=(0, 1)``) on one Axes.

    Parameters
    ----------
    system : ODE or callable
        A two-state :class:`~symode.ODE`, or ``f(t, y, params)`` on ``y`` of shape (m, 2).
    y0 : array_like, shape (batch, 2) or (2,)
        Initial states, one trajectory each.
    t : array_like, shape (T,) or (batch, T)
        Times to solve at, as for :func:`symode.solve`; the field is drawn at ``t[..., 0]``
        (it matters only for non-autonomous systems).
    params : array_like, shape (P,), optional
        Parameter values, shared by all trajectories.
    xlim, ylim : (float, float), optional
        The plotted ranges; by default the extent of the trajectories with a 10 % margin.
    n : int or (int, int)
        Arrows along x and along y.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    **solve_kw
        Passed to :func:`symode.solve` (``method``, ``rtol``, ``atol``, ...).

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> x, y, mu = sp.symbols("x y mu")
    >>> vdp = so.ODE([x, y], [y, mu * (1 - x**2) * y - x], params=[mu])
    >>> ax = so.viz.phase_portrait(vdp, [[0.1, 0], [3, 3]], np.linspace(0, 20, 400),
    ...                            params=[1.0])
    """
    require_matplotlib("phase_portrait")
    y0 = np.asarray(to_numpy(y0), dtype=np.float64)
    dim = system.dim if isinstance(system, ODE) else y0.shape[-1] if y0.ndim else 0
    if dim != 2 or y0.ndim not in (1, 2) or y0.shape[-1] != 2:
        raise ShapeError(f"phase_portrait draws systems of two states from y0 of shape "
                         f"(batch, 2); got a system of {dim} state(s) and y0 of shape "
                         f"{y0.shape}. For more states use vector_field(..., fixed=...) and "
                         f"trajectories(sol, dims=(i, j)).")
    if np.ndim(params) > 1:
        raise ShapeError(f"phase_portrait: params must be shared, shape (P,), so that one "
                         f"field fits every trajectory; got shape {np.shape(params)}.")
    given = [None if lim is None else limits(lim, name, "phase_portrait")
             for lim, name in ((xlim, "xlim"), (ylim, "ylim"))]
    sol = solve(system, y0.reshape(-1, 2), t, params, **solve_kw)
    xlim, ylim = (auto if lim is None else lim for lim, auto in zip(given, _extent(sol.y)))
    t_start = float(np.asarray(to_numpy(t), dtype=np.float64).reshape(-1)[0])
    ax = vector_field(system, xlim, ylim, params=params, t=t_start, n=n, ax=ax, color="0.7")
    trajectories(sol, dims=(0, 1), names=state_names(system, 2), ax=ax, max_lines=None,
                 marker="o", markevery=[0], ms=4)
    return ax


def _extent(y: np.ndarray, margin: float = 0.1) -> list[tuple[float, float]]:
    """``[(x0, x1), (y0, y1)]``: the range of ``y`` (T, batch, 2) widened by ``margin``."""
    y = np.asarray(to_numpy(y)).reshape(-1, 2)
    low, high = y.min(axis=0), y.max(axis=0)
    pad = np.maximum(margin * (high - low), 0.5 * margin * np.maximum(1.0, np.abs(low)))
    return [(float(a), float(b)) for a, b in zip(low - pad, high + pad)]


def _plane(system, states, fixed) -> tuple[int, int, np.ndarray]:
    """Indices of the two shown states and the base point (dim,) holding the fixed values."""
    fixed = {} if fixed is None else fixed
    if not isinstance(fixed, Mapping):
        raise SymodeError(f"vector_field: fixed must be a mapping state -> value, such as "
                          f"{{'z': 0.0}}, got {type(fixed).__name__}.")
    dim = system.dim if isinstance(system, ODE) else 2 + len(fixed)
    names = state_names(system, dim)
    if dim < 2:
        raise ShapeError(f"vector_field needs a system with two or more states; this one has "
                         f"{dim} ({', '.join(names)}). Use slope_field for one state.")
    if np.ndim(states) != 1 or len(states) != 2:
        raise SymodeError(f"vector_field: states must name two states, such as (0, 1), got "
                          f"{states!r}.")
    i, j = (_index(s, names, "states") for s in states)
    if i == j:
        raise SymodeError(f"vector_field: states names {names[i]} twice; choose two different "
                          f"states.")
    base = np.zeros(dim)
    given = {_index(k, names, "fixed"): v for k, v in fixed.items()}
    others = [k for k in range(dim) if k not in (i, j)]
    if sorted(given) != others:
        want = ", ".join(f"{names[k]!r}: ..." for k in others)
        raise ShapeError(f"vector_field: the system has {dim} states ({', '.join(names)}) and "
                         f"the arrows show {names[i]} and {names[j]}; give values for exactly "
                         f"the others: fixed={{{want}}}.")
    for k, v in given.items():
        base[k] = float(v)
    return i, j, base


def _index(state, names: list[str], what: str) -> int:
    """The index of a state given by index or by name."""
    if isinstance(state, str) and state in names:
        return names.index(state)
    if isinstance(state, (int, np.integer)) and not isinstance(state, bool) \
            and 0 <= state < len(names):
        return int(state)
    raise SymodeError(f"vector_field: {what} refers to {state!r}, which is not a state; the "
                      f"states are {', '.join(names)} (indices 0 to {len(names) - 1}).")
