"""Two-dimensional densities: a log-density as an image, and samples as a 2-D histogram."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
from numpy.typing import ArrayLike

from ..backend import to_numpy
from ..errors import NonFiniteError, ShapeError, SymodeError
from ._common import axes, grid_size, limits, require_matplotlib

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["density", "sample_histogram"]


def density(log_prob: Callable[[np.ndarray], ArrayLike], xlim: ArrayLike, ylim: ArrayLike, *,
            n: int | tuple[int, int] = 200, cmap: str = "magma", ax: "Axes | None" = None,
            **kw) -> "Axes":
    """Image of a density ``p = exp(log p)`` on a rectangle of the plane.

    ``log_prob`` is called once, on the centres of an ``n`` by ``n`` grid of cells; the image's
    pixels are those cells, so its extent is exactly ``xlim`` by ``ylim``.

    Parameters
    ----------
    log_prob : callable
        ``log_prob(x)`` with ``x`` of shape (m, 2) returns ``log p(x)``, shape (m,): for a
        trained flow ``lambda x: cnf.log_prob(theta, x)``, for a toy density of
        :mod:`symode.data` ``lambda x: toy_log_density("8gaussians", x)``. ``-inf`` (zero
        density) is allowed.
    xlim, ylim : (float, float)
        The rectangle.
    n : int or (int, int)
        Cells along x and along y.
    cmap : str or Colormap
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    **kw
        Passed to :meth:`~matplotlib.axes.Axes.imshow` (``vmax``, ``interpolation``, ...).

    Returns
    -------
    ax : matplotlib Axes

    Raises
    ------
    ShapeError
        ``log_prob`` returned other than one value per point.
    NonFiniteError
        ``log_prob`` returned NaN or ``+inf``.

    Examples
    --------
    >>> from symode.data import toy_log_density
    >>> log_p = lambda x: toy_log_density("8gaussians", x)
    >>> ax = so.viz.density(log_p, (-4, 4), (-4, 4))
    """
    require_matplotlib("density")
    if not callable(log_prob):
        raise SymodeError(f"density: log_prob must be a function of points (m, 2) returning "
                          f"log p (m,), got a {type(log_prob).__name__}; to show an array "
                          f"of values use ax.imshow.")
    (x0, x1), (y0, y1) = limits(xlim, "xlim", "density"), limits(ylim, "ylim", "density")
    nx, ny = grid_size(n, "density")
    X, Y = np.meshgrid(x0 + (np.arange(nx) + 0.5) * (x1 - x0) / nx,
                       y0 + (np.arange(ny) + 0.5) * (y1 - y0) / ny)
    points = np.stack([X.ravel(), Y.ravel()], axis=1)
    logp = np.asarray(to_numpy(log_prob(points)), dtype=np.float64)
    if logp.shape != (len(points),):
        raise ShapeError(f"density: log_prob returned shape {logp.shape} for {len(points)} "
                         f"points of shape {points.shape}; it must return one log-density per "
                         f"point, shape ({len(points)},).")
    bad = np.isnan(logp) | (logp == np.inf)
    if bad.any():
        k = int(np.argmax(bad))
        raise NonFiniteError(f"density: log_prob returned {logp[k]} at x = {points[k].tolist()} "
                             f"({int(bad.sum())} of {len(points)} points are NaN or +inf); a "
                             f"log-density must be finite or -inf.")
    ax = axes(ax, "density")
    ax.imshow(np.exp(logp).reshape(ny, nx), extent=(x0, x1, y0, y1), origin="lower", cmap=cmap,
              **kw)
    return ax


def sample_histogram(x: ArrayLike, xlim: ArrayLike | None = None, ylim: ArrayLike | None = None,
                     *, bins: int | tuple[int, int] = 100, cmap: str = "magma",
                     ax: "Axes | None" = None, **kw) -> "Axes":
    """2-D histogram of samples in the plane, to set beside :func:`density`.

    Parameters
    ----------
    x : array_like, shape (m, 2)
        The samples, e.g. ``cnf.sample(theta, 5000)[0]`` or ``symode.data.sample_toy(name, 5000)``.
    xlim, ylim : (float, float), optional
        The rectangle counted; samples outside it are left out. By default the samples' range.
    bins : int or (int, int)
        Bins along x and along y.
    cmap : str or Colormap
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    **kw
        Passed to :meth:`~matplotlib.axes.Axes.hist2d` (``density=True`` scales the counts to
        a density, comparable with :func:`density`'s image).

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> from symode.data import sample_toy
    >>> x = sample_toy("8gaussians", 5000, rng=0)
    >>> ax = so.viz.sample_histogram(x, (-4, 4), (-4, 4))
    """
    require_matplotlib("sample_histogram")
    x = np.asarray(to_numpy(x), dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2 or len(x) == 0:
        raise ShapeError(f"sample_histogram: x must have shape (m, 2) with m >= 1, got "
                         f"{x.shape}.")
    if not np.isfinite(x).all():
        k = int(np.argmax(~np.isfinite(x).all(axis=1)))
        raise NonFiniteError(f"sample_histogram: sample {k} is {x[k].tolist()}; samples must "
                             f"be finite.")
    bounds = []
    for k, (lim, name) in enumerate(((xlim, "xlim"), (ylim, "ylim"))):
        lo, hi = x[:, k].min(), x[:, k].max()
        auto = (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)
        bounds.append(auto if lim is None else limits(lim, name, "sample_histogram"))
    ax = axes(ax, "sample_histogram")
    ax.hist2d(x[:, 0], x[:, 1], bins=bins, range=bounds, cmap=cmap, **kw)
    return ax
