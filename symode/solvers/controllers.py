"""Step-size control: the PI controller and Hairer's initial step, both for the array engine
(numpy) and as constants the kernel engine writes into generated code.

A step with error ratio ``r`` (scaled RMS norm, accepted when ``r <= 1``) is followed by
``h_new = h * clip(safety * r**-alpha * r_prev**beta, factor_min, factor_max)`` with
``alpha = 1/k - 0.75*beta`` and ``k = error_order + 1`` (Hairer, Nørsett & Wanner, Solving ODEs I,
II.4; the stabilised controller of DOPRI5 with ``beta = 0.04``). After a rejected step the step
may not grow on the next try. Hairer's initial step is meant to be small (its error is often
orders of magnitude below the tolerance): after it, the step may grow by up to
``first_factor_max`` (10⁴, the bound CVODE puts on its first step) instead of ``factor_max``.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import numpy as np

__all__ = ["PIController", "error_ratio", "initial_step"]

#: Smallest previous error used by the PI term (Hairer's ``facold`` floor).
ERR_PREV_FLOOR = 1e-4


@dataclass(frozen=True)
class PIController:
    """Proportional-integral step-size controller.

    Parameters
    ----------
    safety : float
        Fraction of the optimal step taken (0.9).
    factor_min, factor_max : float
        Bounds of the step-size change per step (0.2 and 10).
    beta : float
        Weight of the previous step's error; 0 gives the classical I controller.
    first_factor_max : float
        Bound of the growth after an accepted first step that came from Hairer's estimate
        (10⁴; explicit methods). Set it to ``factor_max`` for Hairer's codes' behaviour.
    """

    safety: float = 0.9
    factor_min: float = 0.2
    factor_max: float = 10.0
    beta: float = 0.04
    first_factor_max: float = 1e4

    def __post_init__(self):
        if not 0 < self.safety <= 1:
            raise ValueError(f"safety must lie in (0, 1], got {self.safety}")
        if not 0 < self.factor_min < 1 < self.factor_max:
            raise ValueError("need 0 < factor_min < 1 < factor_max")
        if not 0 <= self.beta < 0.2:
            raise ValueError(f"beta must lie in [0, 0.2), got {self.beta}")
        if not self.first_factor_max >= self.factor_max:
            raise ValueError(f"first_factor_max must be at least factor_max "
                             f"({self.factor_max}), got {self.first_factor_max}")

    def alpha(self, error_order: int) -> float:
        """Exponent of the current error for a method whose error estimate has this order."""
        return 1.0 / (error_order + 1) - 0.75 * self.beta

    def factor(self, r, r_prev, error_order: int, accepted, after_reject, first=False):
        """Step-size factor(s) for error ratio(s) ``r``; vectorised over trajectories.
        ``first``: the accepted step was Hairer's initial guess."""
        r = np.asarray(r, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            pi = self.safety * r ** -self.alpha(error_order) * np.asarray(r_prev) ** self.beta
            rej = self.safety * r ** (-1.0 / (error_order + 1))
        upper = np.where(after_reject, 1.0,
                         np.where(first, self.first_factor_max, self.factor_max))
        fac_acc = np.where(r == 0, upper, np.clip(pi, self.factor_min, upper))
        fac_rej = np.where(np.isfinite(rej), np.clip(rej, self.factor_min, 1.0), self.factor_min)
        return np.where(accepted, fac_acc, fac_rej)

    def scalar_factor(self, r: float, r_prev: float, error_order: int, accepted: bool,
                      after_reject: bool, first: bool = False) -> float:
        """:meth:`factor` for one trajectory, in plain floats (the array engine's hot path)."""
        if accepted:
            upper = 1.0 if after_reject else (self.first_factor_max if first
                                              else self.factor_max)
            if r == 0:
                return upper
            pi = self.safety * r ** -self.alpha(error_order) * r_prev ** self.beta
            return min(max(pi, self.factor_min), upper)
        if not r > 0 or math.isinf(r):        # nan, or an infinite error: shrink at most
            return self.factor_min
        rej = self.safety * r ** (-1.0 / (error_order + 1))
        return min(max(rej, self.factor_min), 1.0) if math.isfinite(rej) else self.factor_min


def error_ratio(err, y0, y1, rtol, atol):
    """Scaled RMS norm of a step's error estimate, one value per trajectory.

    ``r = sqrt(mean((err / (atol + rtol * max(|y0|, |y1|)))**2))``; the step is accepted when
    ``r <= 1`` (Hairer, Nørsett & Wanner, Solving ODEs I, II.4).

    Parameters
    ----------
    err, y0, y1 : ndarray, shape (batch, ...)
    rtol, atol : float or ndarray broadcastable to one trajectory's state

    Returns
    -------
    r : ndarray, shape (batch,)
    """
    scale = atol + rtol * np.maximum(np.abs(y0), np.abs(y1))
    q = (err / scale).reshape(err.shape[0], -1)
    return np.sqrt(np.mean(q * q, axis=1))


def initial_step(fun, t0, y0, f0, direction, error_order, rtol, atol, span, norm):
    """Hairer's starting step (Solving ODEs I, II.4, algorithm 'HINIT').

    ``h0 = 0.01 ||y0|| / ||f0||``, one explicit Euler step to estimate ``||f'||``, then
    ``h1 = (0.01 / max(||f0||, ||f'||)) ** (1 / (error_order + 1))`` and ``h = min(100 h0, h1)``,
    all norms scaled by ``atol + rtol |y0|``.

    Parameters
    ----------
    fun : callable ``fun(t, y) -> dy/dt``
    t0 : float
    y0, f0 : ndarray, shape (batch, ...)
    direction : float, +1 or -1
    error_order : int
    rtol, atol : float or ndarray
    span : float
        ``|t_end - t0|``; the step never exceeds it.
    norm : callable
        Scaled norm reducing a (batch, ...) array to one float (the engine's norm).

    Returns
    -------
    h : float, positive (multiply by ``direction``)
    """
    scale = atol + rtol * np.abs(y0)
    d0, d1 = norm(y0 / scale), norm(f0 / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, span)
    f1 = fun(t0 + direction * h0, y0 + direction * h0 * f0)
    d2 = norm((f1 - f0) / scale) / h0
    dmax = max(d1, d2)
    h1 = max(1e-6, h0 * 1e-3) if dmax <= 1e-15 else (0.01 / dmax) ** (1.0 / (error_order + 1))
    return min(100 * h0, h1, span)
