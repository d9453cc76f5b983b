"""The 2-D toy densities on which continuous normalizing flows are trained.

The names, shapes and scales are those of FFJORD (Grathwohl, Chen, Bettencourt, Sutskever &
Duvenaud 2019, ``lib/toy_data.py``), so a flow trained here can be compared with the paper's
figures; all of them live roughly in ``[-4, 4]²``. :func:`sample_toy` draws samples,
:func:`toy_log_density` gives the exact log-density of the two that have a closed form.

``"8gaussians"``
    Equal-weight mixture of 8 isotropic Gaussians, centres on the circle of radius ``2√2`` at
    angles ``kπ/4`` (:data:`GAUSSIANS_CENTERS`), standard deviation ``√2/4 ≈ 0.354``
    (:data:`GAUSSIANS_STD`). FFJORD puts the centres at radius 4 with deviation 0.5 and divides
    by 1.414; dividing by ``√2`` exactly gives the values here. Exact density.
``"2spirals"``
    Two interleaved spirals, one the point reflection of the other:
    ``(-θ cos θ, θ sin θ) + 0.5 U[0, 1)²`` with ``θ = 3π √u`` (up to 540°), a random sign,
    divided by 3, plus ``N(0, 0.1²)`` noise on each coordinate.
``"checkerboard"``
    Uniform on the 8 squares of side 2 of a 4 × 4 checkerboard on ``[-4, 4)²``: the square
    ``[2i, 2i + 2) × [2j, 2j + 2)`` (``i, j ∈ {-2, …, 1}``) belongs to it when ``i + j`` is even.
    Total area 32, so the density is ``1/32`` there and 0 elsewhere. Exact density.
``"circles"``
    Two concentric circles of radii 3 and 1.5 (scikit-learn's ``make_circles(factor=0.5,
    noise=0.08)`` times 3), half of the points on each, uniform angle, ``N(0, 0.24²)`` noise.
``"rings"``
    Four concentric circles of radii 3, 2.25, 1.5 and 0.75, a quarter of the points on each,
    uniform angle, ``N(0, 0.08²)`` noise.
``"moons"``
    Two interleaved half circles of radius 2 (``make_moons(noise=0.1)`` times 2, shifted by
    ``(-1, -0.2)``): ``(2 cos t - 1, 2 sin t - 0.2)`` and ``(1 - 2 cos t, 0.8 - 2 sin t)``,
    ``t ~ U[0, π]``, ``N(0, 0.2²)`` noise.
``"pinwheel"``
    Five curved arms: ``(r, s)`` with ``r ~ N(1, 0.3²)``, ``s ~ N(0, 0.1²)`` turned clockwise by
    ``2πk/5 + 0.25 exp(r)`` for a random arm ``k``, then doubled.
``"swissroll"``
    The spiral ``(t cos t, t sin t) / 5``, ``t ~ U[1.5π, 4.5π)`` (scikit-learn's swiss roll
    seen along its axis), plus ``N(0, 0.2²)`` noise.
``"line"``
    ``(x, x)`` with ``x ~ U[-2.5, 2.5)``: a segment, no density in the plane.
``"cos"``
    ``(x, 2.5 sin x)`` with ``x ~ U[-2.5, 2.5)`` (FFJORD's name; the curve is a sine): no
    density in the plane either.

Every sample is drawn independently. FFJORD splits some batches exactly (half the points on
each circle, evenly spaced angles for the rings) and returns ``n // 5 * 5`` pinwheel points;
here each point picks its component at random, which gives the same distribution and exactly
``n`` points. Only numpy is needed (no scikit-learn).

>>> x = sample_toy("8gaussians", 1000, rng=0)
>>> x.shape, toy_log_density("8gaussians", x).shape
((1000, 2), (1000,))
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp

from ..errors import NonFiniteError, ShapeError, SymodeError

__all__ = ["TOY_DENSITIES", "sample_toy", "toy_log_density", "GAUSSIANS_CENTERS",
           "GAUSSIANS_STD"]

_ANGLES = np.arange(8) * np.pi / 4
#: Centres of the ``"8gaussians"`` mixture, shape (8, 2): radius ``2√2``, angles ``kπ/4``.
GAUSSIANS_CENTERS = 2 * np.sqrt(2) * np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1)
#: Standard deviation of each ``"8gaussians"`` component (the same along both axes).
GAUSSIANS_STD = np.sqrt(2) / 4

#: Lower-left corners ``(i, j)``, in units of the side 2, of the ``"checkerboard"`` squares.
_CHECKER_CELLS = np.array([(i, j) for i in range(-2, 2) for j in range(-2, 2) if (i + j) % 2 == 0])
_CHECKER_AREA = 4.0 * len(_CHECKER_CELLS)


def _normal(rng, n, std):
    return std * rng.standard_normal((n, 2))


def _on_circle(radius, angle):
    return radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)


def _eight_gaussians(rng, n):
    return GAUSSIANS_CENTERS[rng.integers(8, size=n)] + _normal(rng, n, GAUSSIANS_STD)


def _two_spirals(rng, n):
    theta = 3 * np.pi * np.sqrt(rng.random(n))
    arm = np.stack([-theta * np.cos(theta), theta * np.sin(theta)], axis=1)
    arm += 0.5 * rng.random((n, 2))
    sign = rng.choice([-1.0, 1.0], size=n)
    return sign[:, None] * arm / 3 + _normal(rng, n, 0.1)


def _checkerboard(rng, n):
    corner = _CHECKER_CELLS[rng.integers(len(_CHECKER_CELLS), size=n)]
    # corner + u can round up to corner + 1, into the next square; keep it in its own
    unit = np.minimum(corner + rng.random((n, 2)), np.nextafter(corner + 1.0, -np.inf))
    return 2 * unit


def _circles(rng, n):
    radius = np.where(rng.random(n) < 0.5, 3.0, 1.5)
    return _on_circle(radius, 2 * np.pi * rng.random(n)) + _normal(rng, n, 0.24)


def _rings(rng, n):
    radius = np.array([3.0, 2.25, 1.5, 0.75])[rng.integers(4, size=n)]
    return _on_circle(radius, 2 * np.pi * rng.random(n)) + _normal(rng, n, 0.08)


def _moons(rng, n):
    t = np.pi * rng.random(n)
    upper = np.stack([2 * np.cos(t) - 1, 2 * np.sin(t) - 0.2], axis=1)
    lower = np.stack([1 - 2 * np.cos(t), 0.8 - 2 * np.sin(t)], axis=1)
    return np.where(rng.random(n)[:, None] < 0.5, upper, lower) + _normal(rng, n, 0.2)


def _pinwheel(rng, n):
    r = 1.0 + 0.3 * rng.standard_normal(n)
    s = 0.1 * rng.standard_normal(n)
    angle = 2 * np.pi * rng.integers(5, size=n) / 5 + 0.25 * np.exp(r)
    c, si = np.cos(angle), np.sin(angle)
    return 2 * np.stack([r * c + s * si, s * c - r * si], axis=1)   # (r, s) turned by -angle


def _swissroll(rng, n):
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    return _on_circle(t, t) / 5 + _normal(rng, n, 0.2)


def _line(rng, n):
    x = 5 * rng.random(n) - 2.5
    return np.stack([x, x], axis=1)


def _cos(rng, n):
    x = 5 * rng.random(n) - 2.5
    return np.stack([x, 2.5 * np.sin(x)], axis=1)


_SAMPLERS = {"8gaussians": _eight_gaussians, "2spirals": _two_spirals,
             "checkerboard": _checkerboard, "circles": _circles, "rings": _rings,
             "moons": _moons, "pinwheel": _pinwheel, "swissroll": _swissroll, "line": _line,
             "cos": _cos}
#: Names of the toy densities, as FFJORD spells them.
TOY_DENSITIES = tuple(_SAMPLERS)


def _check_name(caller: str, name) -> None:
    if name not in _SAMPLERS:
        raise SymodeError(f"{caller}: unknown toy density {name!r}; choose one of "
                          f"{', '.join(map(repr, TOY_DENSITIES))}.")


def _generator(rng) -> np.random.Generator:
    if rng is None or isinstance(rng, np.random.Generator):
        return np.random.default_rng(rng)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise SymodeError(f"sample_toy: rng must be a numpy Generator, an integer seed >= 0 or "
                      f"None, got {rng!r}; use rng=np.random.default_rng(seed).")


def sample_toy(name: str, n: int,
               rng: np.random.Generator | int | None = None) -> NDArray[np.float64]:
    """Independent samples of one of the FFJORD toy densities.

    Parameters
    ----------
    name : str
        One of :data:`TOY_DENSITIES` (the module docstring defines each).
    n : int
        Number of samples, >= 1.
    rng : numpy Generator, int or None
        Source of randomness: a Generator (advanced by the call), a seed (the same seed gives
        the same samples) or None for fresh entropy.

    Returns
    -------
    x : ndarray of float64, shape (n, 2)

    Raises
    ------
    SymodeError
        Unknown ``name`` (the message lists the valid ones) or an ``rng`` of the wrong kind.
    ShapeError
        ``n`` is not a positive integer.
    """
    _check_name("sample_toy", name)
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ShapeError(f"sample_toy: n is the number of samples and must be a positive "
                         f"integer, got {n!r} ({type(n).__name__}).")
    x = _SAMPLERS[name](_generator(rng), int(n))
    return np.ascontiguousarray(x, dtype=np.float64)


def _log_density_8gaussians(x):
    var = GAUSSIANS_STD ** 2
    d2 = ((x[:, None, :] - GAUSSIANS_CENTERS[None]) ** 2).sum(axis=-1)   # (n, 8)
    log_norm = np.log(len(GAUSSIANS_CENTERS) * 2 * np.pi * var)
    return logsumexp(-d2 / (2 * var), axis=1) - log_norm


def _log_density_checkerboard(x):
    cell = np.floor(x / 2)                       # x / 2 is exact: squares of side 2
    inside = (np.all((cell >= -2) & (cell <= 1), axis=1)
              & ((cell[:, 0] + cell[:, 1]) % 2 == 0))
    return np.where(inside, -np.log(_CHECKER_AREA), -np.inf)


_LOG_DENSITIES = {"8gaussians": _log_density_8gaussians,
                  "checkerboard": _log_density_checkerboard}


def toy_log_density(name: str, x: ArrayLike) -> NDArray[np.float64]:
    """Exact log-density of a toy density, for those that have a closed form.

    ``"8gaussians"``: ``log p(x) = log(1/8 Σ_k N(x; c_k, σ² I))`` with the centres ``c_k`` of
    :data:`GAUSSIANS_CENTERS` and ``σ`` = :data:`GAUSSIANS_STD`, the mixture
    :func:`sample_toy` draws from. ``"checkerboard"``: ``log(1/32)`` on the 8 squares (each
    ``[2i, 2i + 2) × [2j, 2j + 2)`` with ``i + j`` even, ``-4 <= 2i, 2j < 4``), ``-inf``
    elsewhere. Use it to score a trained flow's ``log q(x)`` against the truth, e.g. the
    Kullback-Leibler divergence ``mean(log p(x) - log q(x))`` over samples ``x`` of ``p``.

    Parameters
    ----------
    name : {"8gaussians", "checkerboard"}
    x : array_like, shape (n, 2)
        Finite points of the plane.

    Returns
    -------
    log_p : ndarray of float64, shape (n,)

    Raises
    ------
    SymodeError
        ``name`` is unknown, or is a toy density without a closed-form density here.
    ShapeError
        ``x`` is not a real array of shape (n, 2).
    NonFiniteError
        ``x`` holds NaN or infinite values.
    """
    _check_name("toy_log_density", name)
    if name not in _LOG_DENSITIES:
        raise SymodeError(
            f"toy_log_density: {name!r} has no closed-form density here; exact log-densities "
            f"exist for {' and '.join(map(repr, _LOG_DENSITIES))} only. For {name!r}, estimate "
            f"one from samples, e.g. a kernel density estimate of sample_toy({name!r}, n).")
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != 2 or x.dtype.kind not in "biuf":
        raise ShapeError(f"toy_log_density: x must be a real array of shape (n, 2), one point "
                         f"per row; got {x.dtype} of shape {x.shape}.")
    x = x.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(x), axis=1))[0])
        raise NonFiniteError(f"toy_log_density: x[{bad}] = {x[bad]} is not finite; drop or "
                             f"fix such points before asking for their density.")
    return _LOG_DENSITIES[name](x)
