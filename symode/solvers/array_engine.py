"""The array engine: a Python loop over steps, each stage one vectorised call of ``f`` on the
whole batch (numpy arrays). It runs any Dynamics, networks included, whose cost lives in array
operations rather than in the loop.

The batch is stepped together with one step size (as torchdiffeq does), but the error ratio is
the largest of the per-trajectory scaled RMS norms, so every trajectory meets the tolerance.
All trajectories start at one ``t0``; each may save at its own times.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .controllers import ERR_PREV_FLOOR, PIController, initial_step
from .kernel_engine import EPS, MAX_STEPS, NON_FINITE, UNDERFLOW
from .tableaus import ButcherTableau

__all__ = ["integrate_arrays", "ArrayResult", "ERROR_NORMS"]

ERROR_NORMS = ("trajectory", "batch")


@dataclass
class ArrayResult:
    """Raw engine output; :func:`symode.solve` turns it into a Solution or an error."""

    y: np.ndarray        # (T, batch, ...)
    nfev: int
    naccept: int
    nreject: int
    status: np.ndarray   # (batch,) engine status codes
    fail: np.ndarray     # (batch, 3): t, h and error ratio where a trajectory failed


def _row_norm(x: np.ndarray) -> np.ndarray:
    x = x.reshape(x.shape[0], -1)
    return np.sqrt(np.mean(x * x, axis=1))


def _rms_norm(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x)))


def _max_norm(x: np.ndarray) -> float:
    return float(np.max(_row_norm(x)))


def _nonzero(coeffs) -> tuple[tuple[int, float], ...]:
    """(index, value) of the non-zero coefficients, as Python floats."""
    return tuple((i, float(c)) for i, c in enumerate(coeffs) if float(c) != 0.0)


def _combine(terms, ks):
    """Σ c_i k_i over ``terms`` = ((i, c_i), ...) (None when there are none)."""
    acc = None
    for i, c in terms:
        acc = c * ks[i] if acc is None else acc + c * ks[i]
    return acc


@lru_cache(maxsize=None)
def _coefficients(tab: ButcherTableau) -> dict:
    """The tableau as Python floats, non-zero terms only (once per tableau)."""
    out = dict(a=[_nonzero(row[:j]) for j, row in enumerate(tab.a)], b=_nonzero(tab.b),
               c=[float(c) for c in tab.c], fsal=tab.fsal, n_stages=tab.n_stages,
               b_err=None if tab.b_err is None else _nonzero(tab.b_err),
               b_err3=None if tab.b_err3 is None else _nonzero(tab.b_err3))
    if tab.dense is not None:
        dense_p = np.asarray(tab.as_float().dense_p)                  # (stages, degree)
        rows = []                                                     # extra stages
        for row, c in zip(tab.dense.a, tab.dense.c):
            padded = tuple(tab.b) + (0,) * (len(row) - tab.n_stages)
            same = float(c) == 1.0 and all(float(a) == float(b) for a, b in zip(row, padded))
            rows.append(None if same else (float(c), _nonzero(row)))
        out.update(dense_p=dense_p, dense_rows=rows,
                   dense_used=[i for i in range(len(dense_p)) if dense_p[i].any()])
    return out


class _Stepper:
    """Stages, error and dense output of one tableau on batched arrays."""

    def __init__(self, fun, tab: ButcherTableau):
        self.fun, self.tab = fun, tab
        self.nfev = 0
        self.__dict__.update(_coefficients(tab))

    def call(self, t, y):
        self.nfev += 1
        return self.fun(t, y)

    def step(self, t, y, k0, h):
        """Stages k_0..k_{s-1} and the new state."""
        ks, last = [k0], self.n_stages - 1
        y_new = None
        for j in range(1, self.n_stages):
            inc = _combine(self.a[j], ks)
            ys = y if inc is None else y + h * inc
            if self.fsal and j == last:
                y_new = ys
            ks.append(self.call(t + self.c[j] * h, ys))
        if y_new is None:
            y_new = y + h * _combine(self.b, ks)
        return ks, y_new

    def error_ratio(self, h, ks, y, y_new, rtol, atol, norm_dims=None, whole_batch=False):
        """Per-trajectory error ratios (DOP853 combines its two estimates); with ``norm_dims``
        only the first components of each (flat) row count (a seminorm); with
        ``whole_batch`` the batch is one state: every row gets the ratio of the whole."""
        scale = atol + rtol * np.maximum(np.abs(y), np.abs(y_new))
        cut = (slice(None), slice(0, norm_dims)) if norm_dims else (Ellipsis,)
        e5 = (_combine(self.b_err, ks) / scale)[cut]
        if whole_batch:
            e5 = e5.reshape(1, -1)
        if self.b_err3 is None:
            return np.abs(h) * _row_norm(e5)
        e3 = (_combine(self.b_err3, ks) / scale)[cut]
        if whole_batch:
            e3 = e3.reshape(1, -1)
        n = e5[0].size
        s5 = (e5 * e5).reshape(len(e5), -1).sum(axis=1)
        s3 = (e3 * e3).reshape(len(e3), -1).sum(axis=1)
        denom = np.where(s5 + s3 == 0, 1.0, np.sqrt((s5 + 0.01 * s3) * n))
        return np.abs(h) * s5 / denom

    def interpolate(self, t, h, y, y_new, ks, k_new, theta, rows):
        """Dense output at fractions ``theta`` (one per selected row) of the step; ``rows``
        is an index array or ``slice(None)`` for the whole batch."""
        th = theta.reshape((-1,) + (1,) * (y.ndim - 1))
        if self.tab.dense is None:  # cubic Hermite from values and slopes at both ends
            th2, th3 = th * th, th * th * th
            return ((2 * th3 - 3 * th2 + 1) * y[rows] + h * (th3 - 2 * th2 + th) * ks[0][rows]
                    + (3 * th2 - 2 * th3) * y_new[rows] + h * (th3 - th2) * k_new[rows])
        stages = self._dense_stages(t, h, y, ks, k_new)
        degree = self.dense_p.shape[1]
        powers = theta[:, None] ** np.arange(1, degree + 1)          # (rows, degree)
        weights = powers @ self.dense_p.T                             # (rows, stages)
        acc = None
        for i in self.dense_used:
            term = weights[:, i].reshape(th.shape) * stages[i][rows]
            acc = term if acc is None else acc + term
        return y[rows] + h * acc

    def _dense_stages(self, t, h, y, ks, k_new):
        if not self.dense_rows:
            return ks
        if getattr(self, "_dense_cache_key", None) == (t, h):
            return self._dense_cache
        stages = list(ks)
        for row in self.dense_rows:
            if row is None:
                stages.append(k_new)
            else:
                c, terms = row
                stages.append(self.call(t + c * h, y + h * _combine(terms, stages)))
        self._dense_cache_key, self._dense_cache = (t, h), stages
        return stages


def integrate_arrays(fun, tab: ButcherTableau, y0, tgrid, rtol, atol, *, h_first=None,
                     step_size=None, max_steps=10_000, controller=PIController(),
                     norm_dims=None, error_norm="trajectory", record=None) -> ArrayResult:
    """Integrate ``dy/dt = fun(t, y)`` for a batch stepped together.

    Parameters
    ----------
    fun : callable ``fun(t: float, y) -> dy/dt``, y of shape (batch, ...)
    tab : ButcherTableau
    y0 : ndarray, shape (batch, ...)
    tgrid : ndarray, shape (batch, T)
        Times to save at, per trajectory, monotonic, all starting at one t0.
    rtol, atol : float or ndarray broadcastable to one trajectory's state
    h_first : float, optional
        First step for adaptive methods (default: Hairer's choice).
    step_size : float, optional
        Step of a fixed-step method (the last step ends exactly at the final time).
    max_steps : int
    norm_dims : int, optional
        Only the first ``norm_dims`` components of each row enter the error norm (rows must
        be flat: ``y0`` of shape (batch, n)).
    error_norm : {"trajectory", "batch"}
        ``"trajectory"``: every trajectory's own RMS error must meet the tolerance (the step
        follows the hardest one); ``"batch"``: the RMS over the whole batch, the batch being
        one state (as torchdiffeq does; fewer steps, no per-trajectory guarantee).
    record : list, optional
        Receives ``(t, h, t_new, y)`` of every accepted step (for the adjoints).

    Returns
    -------
    ArrayResult
    """
    batch, T = tgrid.shape
    if error_norm not in ERROR_NORMS:
        raise ValueError(f"error_norm must be one of {ERROR_NORMS}, got {error_norm!r}")
    whole_batch = error_norm == "batch"
    t0 = float(tgrid[0, 0])
    t_end = float(tgrid[:, -1].max()) if tgrid[0, -1] >= t0 else float(tgrid[:, -1].min())
    direction = 1.0 if t_end >= t0 else -1.0
    out = np.empty((T,) + y0.shape, dtype=y0.dtype)
    status = np.zeros(batch, dtype=np.int32)
    fail = np.zeros((batch, 3))
    nxt = np.zeros(batch, dtype=np.int64)          # next unsaved index per trajectory
    st = _Stepper(fun, tab)
    _save(out, nxt, tgrid, t0, lambda rows: y0[rows], direction=direction)
    if nxt.min() >= T:
        return ArrayResult(out, 0, 0, 0, status, fail)
    y, t = y0, t0
    k0 = st.call(t, y)
    if tab.adaptive:
        h = h_first or initial_step(lambda tt, yy: st.call(tt, yy), t, y, k0, direction,
                                    tab.error_order, rtol, atol, abs(t_end - t0),
                                    _rms_norm if whole_batch else _max_norm)
        h = direction * min(h, abs(t_end - t0))
    else:
        nsteps = max(1, int(np.ceil(abs(t_end - t0) / step_size - 1e-9)))
        h = direction * abs(t_end - t0) / nsteps
    nacc = nrej = 0
    err_prev, after_reject = ERR_PREV_FLOOR, False
    while nxt.min() < T:
        if nacc + nrej >= max_steps:
            status[nxt < T] = MAX_STEPS
            fail[:, 0], fail[:, 1] = t, h
            break
        last = direction * (t + h - t_end) >= 0 or (
            not tab.adaptive and abs(t + h - t_end) <= 1e-9 * abs(h))
        if last:
            h = t_end - t
        ks, y_new = st.step(t, y, k0, h)
        if tab.adaptive:
            ratios = st.error_ratio(h, ks, y, y_new, rtol, atol, norm_dims, whole_batch)
            err = float(np.max(ratios)) if np.all(np.isfinite(ratios)) else np.nan
        else:
            err = 0.0
        if err <= 1.0:
            t_new = t_end if last else t + h
            # f(t_new, y_new): the FSAL stage, else evaluated only when the interpolant or
            # a next step needs it
            slope = [ks[-1] if st.fsal else None]

            def k_new_(slope=slope, t_new=t_new, y_new=y_new):
                if slope[0] is None:
                    slope[0] = st.call(t_new, y_new)
                return slope[0]

            _save(out, nxt, tgrid, t_new,
                  lambda rows: y_new[rows],
                  lambda rows, th: st.interpolate(t, h, y, y_new, ks, k_new_(), th, rows),
                  t, h, direction)
            bad = ~np.isfinite(y_new.reshape(batch, -1)).all(axis=1)
            if bad.any():
                status[bad] = NON_FINITE
                fail[bad, 0], fail[bad, 1] = t_new, h
                break
            if record is not None:
                record.append((t, h, t_new, y))
            y, t = y_new, t_new
            k0 = k_new_() if nxt.min() < T else None
            nacc += 1
            fac = controller.scalar_factor(err, err_prev, tab.error_order or 1, True, after_reject)
            err_prev, after_reject = max(err, ERR_PREV_FLOOR), False
        else:
            nrej += 1
            after_reject = True
            fac = controller.scalar_factor(err, err_prev, tab.error_order, False, True)
        if tab.adaptive:
            h *= fac
            if nxt.min() < T and abs(h) < 10 * EPS * max(abs(t), abs(t_end)):
                worst = np.nanargmax(np.where(np.isfinite(ratios), ratios, np.inf))
                status[worst] = UNDERFLOW
                fail[worst] = (t, h, ratios[worst])
                break
    return ArrayResult(out, st.nfev, nacc, nrej, status, fail)


def _save(out, nxt, tgrid, t_new, at_end, interp=None, t=None, h=None, direction=1.0):
    """Write every trajectory's requested times that the step (t, t_new] has reached."""
    T = tgrid.shape[1]
    while True:
        pending = np.nonzero(nxt < T)[0]
        if pending.size == 0:
            return
        tj = tgrid[pending, nxt[pending]]
        reached = direction * (tj - t_new) <= 0
        rows = pending[reached]
        if rows.size == 0:
            return
        tj = tj[reached]
        exact = tj == t_new
        if exact.any():
            out[nxt[rows[exact]], rows[exact]] = at_end(rows[exact])
        inner = rows[~exact]
        if inner.size:
            theta = (tj[~exact] - t) / h
            out[nxt[inner], inner] = interp(inner, theta)
        nxt[rows] += 1
