"""Fitting the parameters (and initial states) of an ODE to observations.

:func:`fit_parameters` minimises the weighted sum of squares

    L(θ, y0) = ½ Σ_{i,b,k} w_k (y_k(t_i; θ, y0_b) - ŷ_{ibk})²

over the observed entries ŷ (NaN marks a missing one) with scipy's L-BFGS-B. The gradient of L
is exact: one solve and one adjoint pullback (:func:`symode.solve_vjp`) per evaluation. Several
experiments (trajectories with their own initial states and times) share the parameters.
Parameters that must stay positive can be fitted in log space (``positive=True``), which also
evens out their scales.

After the fit, the covariance of the estimate is approximated as in nonlinear least squares:
``σ² H⁻¹``, where ``H`` is the Hessian of ``L`` (central differences of the exact gradient)
and ``σ² = 2L / (n - p)`` (``n`` observations, ``p`` fitted numbers). The result gives it as
``cov`` and as standard errors ``stderr``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize

from .errors import ShapeError, SymodeError
from .gradients import solve_vjp
from .solvers.rosenbrock_tableaus import RosenbrockTableau
from .solvers.solution import Solution
from .solvers.tableaus import get_tableau

__all__ = ["fit_parameters", "FitResult"]


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit_parameters` returns.

    Attributes
    ----------
    params : ndarray, shape (P,)
        The fitted parameters.
    y0 : ndarray, shape (batch, dim), or (dim,) for observations of shape (T, dim)
        Initial states: fitted with ``fit_y0=True``, else those used.
    loss : float
        ``½ Σ w (y - ŷ)²`` over the observed entries at the optimum.
    success : bool
    message : str
        The optimizer's verdict.
    nit, nfev : int
        Optimizer iterations and loss evaluations (each one solve and one pullback).
    sol : Solution
        The fitted model at the observation times.
    residuals : ndarray, shape of the observations
        ``y - ŷ``, NaN where nothing was observed.
    cov : ndarray, shape (P, P), or (P + batch·dim, P + batch·dim) with ``fit_y0``
        Approximate covariance of the fitted numbers (parameters first), NaN when it cannot be
        estimated (as many numbers as observations, or a singular Hessian).
    stderr : ndarray
        ``sqrt(diag(cov))``.
    """

    params: np.ndarray
    y0: np.ndarray
    loss: float
    success: bool
    message: str
    nit: int
    nfev: int
    sol: Solution
    residuals: np.ndarray
    cov: np.ndarray
    stderr: np.ndarray


def fit_parameters(system: Any, t: ArrayLike, y_obs: ArrayLike, params0: ArrayLike, *,
                   y0: ArrayLike | None = None, fit_y0: bool = False, positive: bool = False,
                   weights: ArrayLike | None = None, bounds=None, method: str = "dopri5",
                   rtol: float = 1e-8, atol: float = 1e-10, adjoint: str | None = None,
                   maxiter: int = 1000, gtol: float = 1e-10,
                   callback: Callable[[np.ndarray, float], None] | None = None) -> FitResult:
    """Least-squares estimate of an ODE's parameters from observations.

    Parameters
    ----------
    system : ODE or Dynamics with ``vjp``
    t : array_like, shape (T,) or (batch, T)
        Observation times; the first is where each trajectory starts.
    y_obs : array_like, shape (T, batch, dim) or (T, dim)
        Observations; NaN where a state was not observed.
    params0 : array_like, shape (P,)
        Starting parameters, shared by every trajectory.
    y0 : array_like, shape (batch, dim) or (dim,), optional
        Initial states. By default the observations at the first time, which must then be
        complete. With ``fit_y0`` they are the starting guess.
    fit_y0 : bool
        Estimate the initial states too.
    positive : bool
        Fit ``log θ``: parameters stay positive (``params0`` must be). Not with ``bounds``.
    weights : array_like, optional
        ``w``, broadcast against one observation ``(dim,)`` or all ``(T, batch, dim)``;
        ``1/σ²`` for known noise levels ``σ``.
    bounds : sequence of (low, high), optional
        Bounds of each parameter (``None`` for no bound), as scipy's ``minimize`` takes them.
    method, rtol, atol, adjoint
        Of the solves, as for :func:`symode.solve_vjp`. The defaults favour an accurate
        gradient, which the optimizer's line search needs: tight tolerances and the
        ``"checkpoint"`` adjoint (``"discrete"`` for the stiff methods).
    maxiter, gtol
        L-BFGS-B's iteration limit and projected-gradient tolerance.
    callback : callable ``callback(params, loss)``, optional
        Called after each iteration.

    Returns
    -------
    FitResult

    Examples
    --------
    >>> decay = so.ODE.from_strings({"x": "-k*x"}, params=["k"])
    >>> t = np.linspace(0, 2, 21)
    >>> y = np.exp(-1.3 * t)[:, None] + 0.01 * np.random.default_rng(0).normal(size=(21, 1))
    >>> fit = so.fit_parameters(decay, t, y, [1.0], positive=True)   # doctest: +SKIP
    >>> fit.params, fit.stderr                                        # doctest: +SKIP
    """
    obs = np.asarray(y_obs, dtype=np.float64)
    single = obs.ndim == 2
    if single:
        obs = obs[:, None, :]
    if obs.ndim != 3:
        raise ShapeError(f"y_obs must have shape (T, batch, dim) or (T, dim), got {obs.shape}")
    T, batch, dim = obs.shape
    t = np.asarray(t, dtype=np.float64)
    if t.shape not in ((T,), (batch, T)):
        raise ShapeError(f"t has shape {t.shape}; with observations of shape {obs.shape} it "
                         f"must be ({T},) or ({batch}, {T})")
    seen = np.isfinite(obs)
    if not seen.any():
        raise SymodeError("y_obs has no finite entry: nothing to fit")
    w = np.broadcast_to(np.ones(1) if weights is None else np.asarray(weights, float),
                        obs.shape)
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise SymodeError("weights must be finite and >= 0")
    w = np.where(seen, w, 0.0)
    target = np.where(seen, obs, 0.0)
    theta0 = np.atleast_1d(np.asarray(params0, dtype=np.float64))
    if theta0.ndim != 1:
        raise ShapeError(f"params0 must be a vector (P,), got shape {theta0.shape}")
    P = theta0.size
    start = _initial_states(y0, obs, single, fit_y0)
    if positive:
        if bounds is not None:
            raise SymodeError("positive=True fits log θ; give bounds or positive, not both")
        if not (theta0 > 0).all():
            raise SymodeError(f"positive=True needs params0 > 0, got {theta0}")
    n_free = P + (batch * dim if fit_y0 else 0)
    if bounds is not None:
        bounds = list(bounds)
        if len(bounds) != P:
            raise ShapeError(f"bounds has {len(bounds)} pairs for {P} parameters")
        bounds = bounds + [(None, None)] * (n_free - P)
    if adjoint is None:   # accurate gradients: the optimizer's line search depends on them
        adjoint = "discrete" if isinstance(get_tableau(method), RosenbrockTableau) else \
            "checkpoint"
    opts = dict(method=method, rtol=rtol, atol=atol, adjoint=adjoint)

    def unpack(x):
        phi = x[:P]
        theta = np.exp(phi) if positive else phi
        z0 = x[P:].reshape(batch, dim) if fit_y0 else start
        return theta, z0

    last = {}

    def loss_and_grad(x):
        theta, z0 = unpack(x)
        sol, pullback = solve_vjp(system, z0, t, params=theta, **opts)
        r = (sol.y - target) * (w > 0)
        loss = 0.5 * float(np.sum(w * r * r))
        g = pullback(w * r)
        g_theta = np.asarray(g.params, dtype=np.float64).reshape(P)
        if positive:
            g_theta = g_theta * theta            # dL/d log θ
        parts = [g_theta] + ([g.y0.ravel()] if fit_y0 else [])
        last.update(x=x.copy(), loss=loss)
        return loss, np.concatenate(parts)

    x0 = np.concatenate([np.log(theta0) if positive else theta0]
                        + ([start.ravel()] if fit_y0 else []))
    def report(x):
        known = "x" in last and np.array_equal(last["x"], x)
        callback(unpack(x)[0], last["loss"] if known else loss_and_grad(x)[0])

    res = minimize(loss_and_grad, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                   callback=None if callback is None else report,
                   options=dict(maxiter=maxiter, gtol=gtol, ftol=1e-15))
    theta, z0 = unpack(res.x)
    sol = solve_vjp(system, z0, t, params=theta, **opts)[0]
    residuals = np.where(seen, sol.y - obs, np.nan)
    loss = 0.5 * float(np.nansum(w * np.nan_to_num(residuals) ** 2))
    cov = _covariance(loss_and_grad, res.x, P, positive, theta, int(seen.sum()), loss)
    if single:
        residuals = residuals[:, 0]
    return FitResult(params=theta, y0=z0[0] if single else z0, loss=loss,
                     success=bool(res.success), message=str(res.message), nit=int(res.nit),
                     nfev=int(res.nfev), sol=sol, residuals=residuals, cov=cov,
                     stderr=np.sqrt(np.abs(np.diag(cov))))


def _initial_states(y0, obs, single: bool, fit_y0: bool) -> np.ndarray:
    """``(batch, dim)`` initial states: given, or the first observations."""
    T, batch, dim = obs.shape
    if y0 is None:
        first = obs[0]
        if not np.isfinite(first).all():
            raise SymodeError("the observations at the first time are incomplete; give y0 "
                              "(with fit_y0=True to estimate it)")
        return first.copy()
    z0 = np.asarray(y0, dtype=np.float64)
    if z0.shape == (dim,):
        z0 = np.broadcast_to(z0, (batch, dim)).copy()
    if z0.shape != (batch, dim):
        raise ShapeError(f"y0 must have shape ({batch}, {dim}) or ({dim},), got {z0.shape}")
    return z0


def _covariance(loss_and_grad, x, P: int, positive: bool, theta, n_obs: int, loss: float):
    """``σ² H⁻¹`` in the parameters' own scale (not log θ); NaN where it cannot be had."""
    k = x.size
    if n_obs <= k:
        return np.full((k, k), np.nan)
    H = np.empty((k, k))
    for j in range(k):
        h = 1e-4 * max(abs(x[j]), 1e-2)
        e = np.zeros(k)
        e[j] = h
        H[:, j] = (loss_and_grad(x + e)[1] - loss_and_grad(x - e)[1]) / (2 * h)
    H = 0.5 * (H + H.T)
    try:
        inv = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return np.full((k, k), np.nan)
    cov = 2 * loss / (n_obs - k) * inv
    if positive:     # θ = exp(φ): cov_θ = D cov_φ D with D = diag(θ) on the parameters
        d = np.ones(k)
        d[:P] = theta
        cov = cov * np.outer(d, d)
    return cov
