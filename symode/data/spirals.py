"""The synthetic spirals of the latent ODE experiment (Chen et al. 2018, section 5.1).

Two Archimedean-like curves in the plane, traced on a dense grid ``t_0 < … < t_{M-1}`` of
``[start, stop]``:

* counter-clockwise, about ``(+5, 0)``: polar angle ``φ(t) = t`` and radius ``r = a + b t``;
  the angle grows, so the point turns counter-clockwise and moves outwards;
* clockwise, about ``(-5, 0)``: ``φ(t) = stop + 1 - t`` and ``r = a + 50 b / φ(t)``; the angle
  falls, so the point turns clockwise, and it too moves outwards (``r`` grows as ``φ`` falls).

Each spiral of the data set follows one of the two curves (half of them each, in a random
order) from a random start index ``s``. Its observations are ``n_obs`` of the ``window`` dense
points ``s, s+1, …, s+window-1``, drawn without replacement and sorted, each with independent
``N(0, noise²)`` noise on both coordinates:

    x_k = curve(t_{i_k}) + noise · ε_k,    ε_k ~ N(0, I₂).

With ``window == n_obs`` every spiral is observed at consecutive grid points, as in the demo
of the Neural ODE code (``torchdiffeq/examples/latent_ode.py``); a larger window gives the
irregular, randomly subsampled times of the paper's experiment. The times handed to a model are
measured from the window's start, ``τ_k = t_{i_k - s} - t_0`` (so ``τ`` takes at most ``window``
distinct values across the whole data set, and a batch can share one time grid); the latent
state of a spiral lives at ``τ = 0``, its window start.

>>> data = make_spirals(n_spirals=10, n_obs=30, window=60, rng=0)
>>> data.obs.shape, data.times.shape, data.truth.shape
((10, 30, 2), (10, 30), (10, 1000, 2))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import ShapeError, SymodeError

__all__ = ["Spirals", "make_spirals", "spiral_curves", "CENTERS"]

#: Centres of the counter-clockwise and of the clockwise curve, in that order.
CENTERS = np.array([[5.0, 0.0], [-5.0, 0.0]])


@dataclass(frozen=True)
class Spirals:
    """A spiral data set (see the module docstring for the maths).

    Attributes
    ----------
    t : ndarray, shape (n_total,)
        The dense, uniform time grid shared by all spirals.
    truth : ndarray, shape (n_spirals, n_total, 2)
        Each spiral's noise-free curve on the whole grid ``t``.
    clockwise : ndarray of bool, shape (n_spirals,)
    start : ndarray of int, shape (n_spirals,)
        Index into ``t`` of each spiral's window start (where its latent state lives).
    index : ndarray of int, shape (n_spirals, n_obs)
        Indices into ``t`` of the observations, strictly increasing along each row, in
        ``[start, start + window)``.
    times : ndarray, shape (n_spirals, n_obs)
        Observation times measured from the window start: ``t[index - start] - t[0]``.
    obs : ndarray, shape (n_spirals, n_obs, 2)
        Noisy observations ``truth[n, index[n]] + noise · ε``.
    noise : float
        Standard deviation of the observation noise.
    window : int
        Dense points each spiral's observations are drawn from.
    """

    t: NDArray[np.float64]
    truth: NDArray[np.float64]
    clockwise: NDArray[np.bool_]
    start: NDArray[np.int64]
    index: NDArray[np.int64]
    times: NDArray[np.float64]
    obs: NDArray[np.float64]
    noise: float
    window: int

    def __post_init__(self) -> None:
        n, n_obs = self.index.shape
        expected = {"truth": (n, self.t.size, 2), "clockwise": (n,), "start": (n,),
                    "times": (n, n_obs), "obs": (n, n_obs, 2)}
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ShapeError(f"Spirals: expected {name} of shape {shape}, got "
                                 f"{getattr(self, name).shape}")

    def __len__(self) -> int:
        return self.index.shape[0]

    @property
    def dt(self) -> float:
        """Spacing of the dense grid ``t``."""
        return float(self.t[1] - self.t[0])

    def batch(self, which: ArrayLike) -> tuple[NDArray, NDArray]:
        """``(obs[which], times[which])``: shapes (batch, n_obs, 2) and (batch, n_obs)."""
        which = np.asarray(which)
        return self.obs[which], self.times[which]

    def truth_from_start(self, n: int, length: int) -> tuple[NDArray, NDArray]:
        """Spiral ``n``'s true curve from its window start: times measured from the start,
        shape (L,), and points, shape (L, 2), with ``L = min(length, n_total - start[n])``."""
        s = int(self.start[n])
        stop = min(s + int(length), self.t.size)
        return self.t[:stop - s] - self.t[0], self.truth[n, s:stop]


def spiral_curves(t: ArrayLike, a: float = 0.0, b: float = 0.3,
                  stop: float | None = None) -> tuple[NDArray, NDArray]:
    """The counter-clockwise and the clockwise curve at the times ``t``.

    Parameters
    ----------
    t : array_like, shape (M,)
        Times in ``[start, stop]``.
    a, b : float
        Radius parameters (see the module docstring).
    stop : float, optional
        End of the time span, which sets the clockwise curve's angle ``stop + 1 - t``
        (default ``max(t)``).

    Returns
    -------
    ccw, cw : ndarray, shape (M, 2)
    """
    t = np.asarray(t, dtype=np.float64)
    stop = float(t.max()) if stop is None else float(stop)
    phi_cw = stop + 1.0 - t
    if np.any(phi_cw <= 0):
        raise SymodeError(f"spiral_curves: the clockwise angle stop + 1 - t must stay positive; "
                          f"times run up to {t.max():g} with stop={stop:g}")
    r_ccw, r_cw = a + b * t, a + 50.0 * b / phi_cw
    ccw = np.stack([r_ccw * np.cos(t), r_ccw * np.sin(t)], axis=1) + CENTERS[0]
    cw = np.stack([r_cw * np.cos(phi_cw), r_cw * np.sin(phi_cw)], axis=1) + CENTERS[1]
    return ccw, cw


def make_spirals(n_spirals: int = 1000, n_total: int = 1000, n_obs: int = 100,
                 window: int | None = None, noise: float = 0.1, a: float = 0.0, b: float = 0.3,
                 start: float = 0.0, stop: float = 6 * math.pi,
                 rng: np.random.Generator | int | None = None) -> Spirals:
    """Draw a spiral data set: half clockwise, half counter-clockwise, noisy, irregular.

    Parameters
    ----------
    n_spirals : int
        Number of spirals (``n_spirals // 2`` clockwise).
    n_total : int
        Points of the dense grid on ``[start, stop]``.
    n_obs : int
        Observations per spiral.
    window : int, optional
        Consecutive dense points each spiral's observations are drawn from, ``n_obs <= window
        <= n_total``; default ``2 * n_obs`` (capped at ``n_total``). ``window = n_obs`` gives
        regularly spaced observations, as in the Neural ODE demo.
    noise : float
        Standard deviation of the Gaussian observation noise (``>= 0``).
    a, b : float
        Radius parameters of the curves (the demo's ``a = 0``, ``b = 0.3``).
    start, stop : float
        Span of the dense grid (the demo's ``[0, 6π]``).
    rng : numpy Generator, int or None
        Source of the start indices, subsamples, directions and noise.

    Returns
    -------
    Spirals
    """
    n_spirals, n_total, n_obs = (_positive(v, name) for v, name in
                                 ((n_spirals, "n_spirals"), (n_total, "n_total"),
                                  (n_obs, "n_obs")))
    window = min(2 * n_obs, n_total) if window is None else _positive(window, "window")
    if not n_obs <= window <= n_total:
        raise SymodeError(f"make_spirals: need n_obs <= window <= n_total, got n_obs={n_obs}, "
                          f"window={window}, n_total={n_total}")
    if n_total < 2 or not stop > start:
        raise SymodeError(f"make_spirals: the dense grid needs n_total >= 2 and stop > start, "
                          f"got n_total={n_total}, [start, stop] = [{start}, {stop}]")
    if not (math.isfinite(noise) and noise >= 0):
        raise SymodeError(f"make_spirals: noise must be a finite number >= 0, got {noise}")
    rng = np.random.default_rng(rng)
    t = np.linspace(start, stop, n_total)
    curves = np.stack(spiral_curves(t, a, b, stop))                     # (2, n_total, 2)
    clockwise = np.zeros(n_spirals, dtype=bool)
    clockwise[rng.permutation(n_spirals)[:n_spirals // 2]] = True
    first = rng.integers(0, n_total - window + 1, size=n_spirals)
    offsets = np.sort(np.stack([rng.choice(window, n_obs, replace=False)
                                for _ in range(n_spirals)]), axis=1)    # (n_spirals, n_obs)
    index = first[:, None] + offsets
    truth = curves[clockwise.astype(int)]                               # (n_spirals, n_total, 2)
    clean = np.take_along_axis(truth, index[..., None], axis=1)
    obs = clean + noise * rng.standard_normal(clean.shape)
    return Spirals(t=t, truth=truth, clockwise=clockwise, start=first, index=index,
                   times=t[offsets] - t[0], obs=obs, noise=float(noise), window=window)


def _positive(n, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise SymodeError(f"make_spirals: {name} must be a positive integer, got {n!r}")
    return int(n)
