"""The array engine: a Python loop over steps, each stage one vectorised call of ``f`` on the
whole batch (numpy or cupy arrays). It runs any Dynamics, networks included, whose cost lives in
array operations rather than in the loop.

The batch is stepped together with one step size (as torchdiffeq does), but the error ratio is
the largest of the per-trajectory scaled RMS norms, so every trajectory meets the tolerance.
All trajectories start at one ``t0``; each may save at its own times.

The state's array module runs the step (``xp = symode.backend.array_module(y0)``): a cupy
``y0`` keeps the stages, the error estimate and the saved values on the GPU, as plain cupy
expressions, with one scalar (the error ratio) read back per step; the times and the
bookkeeping stay on the host. Large numpy states sum their stages in compiled numba loops
instead; ``symode.backend.kernel_target("cuda")`` turns those off, so that the array-module
path can be tested on numpy arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np

from ..backend import array_module, dispatch, to_numpy
from .controllers import ERR_PREV_FLOOR, PIController, initial_step
from .kernel_engine import EPS, MAX_STEPS, NON_FINITE, UNDERFLOW
from .tableaus import ButcherTableau

__all__ = ["integrate_arrays", "ArrayResult", "ERROR_NORMS"]

ERROR_NORMS = ("trajectory", "batch")


@dataclass
class ArrayResult:
    """Raw engine output; :func:`symode.solve` turns it into a Solution or an error."""

    y: np.ndarray        # (T, batch, ...), of y0's array module
    nfev: int
    naccept: int
    nreject: int
    status: np.ndarray   # (batch,) engine status codes
    fail: np.ndarray     # (batch, 3): t, h and error ratio where a trajectory failed
    h_next: float = 0.0  # the step the controller proposes after the end (adaptive methods)


def _row_norm(x: np.ndarray) -> np.ndarray:
    x = x.reshape(x.shape[0], -1)
    xp = array_module(x)
    return xp.sqrt(xp.mean(x * x, axis=1))


def _rms_norm(x: np.ndarray) -> float:
    xp = array_module(x)
    return float(xp.sqrt(xp.mean(x * x)))


def _max_norm(x: np.ndarray) -> float:
    return float(_row_norm(x).max())


def _nonzero(coeffs) -> tuple[tuple[int, float], ...]:
    """(index, value) of the non-zero coefficients, as Python floats."""
    return tuple((i, float(c)) for i, c in enumerate(coeffs) if float(c) != 0.0)


def _combine(terms, ks):
    """Σ c_i k_i over ``terms`` = ((i, c_i), ...) (None when there are none)."""
    acc = None
    for i, c in terms:
        acc = c * ks[i] if acc is None else acc + c * ks[i]
    return acc


# -- compiled stage sums for large states: one pass over memory instead of two per term ----------
#: States with fewer elements stay with numpy (the compiled call's fixed cost would dominate).
FAST_MIN_SIZE = 10_000
_PAD = 16        # stage arrays are passed as a tuple of this length (one compiled signature)
_BLOCK = 1024    # elements summed at a time, in a buffer that stays in cache


@numba.njit(cache=True, nogil=True)
def _axpy_kernel(out, y, h, coeffs, ks):
    """out = y + h Σ_j coeffs[j] ks[j] over the first len(coeffs) flat arrays of ``ks``, in
    numpy's order and dtypes (coeffs has the stages' dtype, h that of ``h * Σ``)."""
    acc = np.empty(_BLOCK, coeffs.dtype)
    for s in range(0, out.size, _BLOCK):
        e = min(s + _BLOCK, out.size)
        k, c = ks[0][s:e], coeffs[0]
        for i in range(e - s):
            acc[i] = c * k[i]
        for j in range(1, coeffs.size):
            k, c = ks[j][s:e], coeffs[j]
            for i in range(e - s):
                acc[i] = acc[i] + c * k[i]
        o, yb = out[s:e], y[s:e]
        for i in range(e - s):
            o[i] = yb[i] + h * acc[i]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _scaled_squares(sq, acc, s, e, ks, idx, coeffs, y, y_new, rtol, atol):
    """sq[:e-s] = (Σ_j coeffs[j] ks[idx[j]] / (atol + rtol max(|y|, |y_new|)))² on [s, e), in
    numpy's order and dtypes (acc and coeffs have the stages' dtype)."""
    n = e - s
    acc[:n] = 0
    for j in range(coeffs.size):
        k, c = ks[idx[j]][s:e], coeffs[j]
        for i in range(n):
            acc[i] = acc[i] + c * k[i]
    yb, ynb = y[s:e], y_new[s:e]
    for i in range(n):
        u, v = abs(yb[i]), abs(ynb[i])
        q = acc[i] / (atol + rtol * (u if u > v or u != u else v))   # np.maximum's NaN
        sq[i] = q * q


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def _add_row_sums(a, s, e, width, ncols, out):
    """out[r] += the sum of a[:e-s] (elements s..e-1) over row r's first ncols columns."""
    p = s
    while p < e:
        row = p // width * width
        stop = min(e, row + ncols)
        if p < stop:
            t = 0.0
            for i in range(p - s, stop - s):
                t += a[i]
            out[row // width] += t
        p = min(e, row + width)


@numba.njit(cache=True, nogil=True)
def _err_kernel(y, y_new, rtol, atol, ks, i5, c5, i3, c3, width, ncols, s5, s3):
    """Per row of ``width`` elements, the sums (in float64) over its first ``ncols`` of
    (Σ c_j ks[i_j] / sc)² with sc = atol + rtol max(|y|, |y_new|), for (i5, c5) and (when not
    empty) (i3, c3)."""
    sq, acc = np.empty(_BLOCK), np.empty(_BLOCK, c5.dtype)
    for s in range(0, y.size, _BLOCK):
        e = min(s + _BLOCK, y.size)
        col = s % width
        if col >= ncols and e <= s - col + width:       # only columns past ncols
            continue
        _scaled_squares(sq, acc, s, e, ks, i5, c5, y, y_new, rtol, atol)
        _add_row_sums(sq, s, e, width, ncols, s5)
        if c3.size:
            _scaled_squares(sq, acc, s, e, ks, i3, c3, y, y_new, rtol, atol)
            _add_row_sums(sq, s, e, width, ncols, s3)


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _flat_stages(arrays, shape):
    """The arrays flattened (no copy) and padded to a tuple of ``_PAD`` (one numba type), or
    None unless all are writeable, C-contiguous float32/float64 ndarrays of ``shape`` and one
    dtype."""
    if not arrays or len(arrays) > _PAD:
        return None
    dt = getattr(arrays[0], "dtype", None)
    if dt is None or dt not in _FLOATS:             # (np.dtype(None) is float64)
        return None
    for a in arrays:
        if not (isinstance(a, np.ndarray) and a.dtype == dt and a.shape == shape
                and a.flags.c_contiguous and a.flags.writeable and a.flags.aligned):
            return None
    flat = tuple(a.reshape(-1) for a in arrays)
    return flat + flat[:1] * (_PAD - len(flat))


def _fast_ok(y):
    """Whether ``y`` is a state the compiled loops take."""
    return (isinstance(y, np.ndarray) and y.size >= FAST_MIN_SIZE and y.dtype in _FLOATS
            and y.flags.c_contiguous)


def _real_scalar(x) -> bool:
    """Whether ``x`` is a real number (a tolerance the compiled error loop takes)."""
    return np.ndim(x) == 0 and np.asarray(x).dtype.kind in "fiu"


def _stage_sum(y, h, terms, ks):
    """``y + h * _combine(terms, ks)`` of a large float state in one compiled pass (same
    dtype and value as numpy's)."""
    flat = _flat_stages([ks[i] for i, _ in terms], y.shape)
    hdt = np.result_type(h, flat[0].dtype) if flat else None          # that of h * Σ
    if hdt is None or hdt not in _FLOATS:
        return y + h * _combine(terms, ks)
    out = np.empty(y.shape, np.result_type(y, hdt))
    coeffs = np.array([c for _, c in terms], flat[0].dtype)
    _axpy_kernel(out.reshape(-1), y.reshape(-1), hdt.type(h), coeffs, flat)
    return out


def _error_sums(b_err, b_err3, ks, y, y_new, rtol, atol, norm_dims):
    """Per row, the sums of squares of the scaled error estimates (b_err, b_err3) and the
    number of elements they run over, compiled; None where numpy must do it (small or
    non-float states, array tolerances, ...)."""
    if not (_fast_ok(y) and _fast_ok(y_new) and y_new.shape == y.shape
            and _real_scalar(rtol) and _real_scalar(atol)):
        return None
    if norm_dims and (norm_dims < 0 or y.ndim != 2):
        return None
    tol = np.result_type(atol, rtol, y, y_new)                    # numpy's dtype of the scale
    sets = (b_err, b_err3 or ())
    used = sorted({i for i, _ in sets[0] + sets[1]})
    flat = _flat_stages([ks[i] for i in used], y.shape)
    if flat is None or tol not in _FLOATS:
        return None
    i5, i3 = (np.array([used.index(i) for i, _ in t], np.int64) for t in sets)
    c5, c3 = (np.array([c for _, c in t], flat[0].dtype) for t in sets)
    rows = y.shape[0]
    width = y.size // rows
    ncols = min(norm_dims, width) if norm_dims else width
    s5, s3 = np.zeros(rows), np.zeros(rows)
    _err_kernel(y.reshape(-1), y_new.reshape(-1), tol.type(rtol), tol.type(atol), flat,
                i5, c5, i3, c3, width, ncols, s5, s3)
    return s5, s3, ncols


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

    def __init__(self, fun, tab: ButcherTableau, xp=np, compiled: bool = True):
        self.fun, self.tab = fun, tab
        self.xp, self.compiled = xp, compiled      # compiled: numba loops for large states
        self.nfev = 0
        self.__dict__.update(_coefficients(tab))

    def call(self, t, y):
        self.nfev += 1
        return self.fun(t, y)

    def step(self, t, y, k0, h):
        """Stages k_0..k_{s-1} and the new state."""
        ks, last = [k0], self.n_stages - 1
        y_new = None
        fast = self.compiled and _fast_ok(y) and isinstance(h, (float, int, np.floating))
        for j in range(1, self.n_stages):
            if fast:
                ys = _stage_sum(y, h, self.a[j], ks) if self.a[j] else y
            else:
                inc = _combine(self.a[j], ks)
                ys = y if inc is None else y + h * inc
            if self.fsal and j == last:
                y_new = ys
            ks.append(self.call(t + self.c[j] * h, ys))
        if y_new is None:
            y_new = _stage_sum(y, h, self.b, ks) if fast else y + h * _combine(self.b, ks)
        return ks, y_new

    def error_ratio(self, h, ks, y, y_new, rtol, atol, norm_dims=None, whole_batch=False):
        """Per-trajectory error ratios (DOP853 combines its two estimates); with ``norm_dims``
        only the first components of each (flat) row count (a seminorm); with
        ``whole_batch`` the batch is one state: every row gets the ratio of the whole."""
        xp = self.xp
        sums = (_error_sums(self.b_err, self.b_err3, ks, y, y_new, rtol, atol, norm_dims)
                if self.compiled else None)
        if sums is not None:
            s5, s3, n = sums
            if whole_batch:
                s5, s3, n = s5.sum(keepdims=True), s3.sum(keepdims=True), n * len(s5)
            if self.b_err3 is None:
                return np.abs(h) * np.sqrt(s5 / n)
            denom = np.where(s5 + s3 == 0, 1.0, np.sqrt((s5 + 0.01 * s3) * n))
            return np.abs(h) * s5 / denom
        scale = atol + rtol * xp.maximum(xp.abs(y), xp.abs(y_new))
        cut = (slice(None), slice(0, norm_dims)) if norm_dims else (Ellipsis,)
        e5 = (_combine(self.b_err, ks) / scale)[cut]
        if whole_batch:
            e5 = e5.reshape(1, -1)
        if self.b_err3 is None:
            return abs(h) * _row_norm(e5)
        e3 = (_combine(self.b_err3, ks) / scale)[cut]
        if whole_batch:
            e3 = e3.reshape(1, -1)
        n = e5[0].size
        s5 = (e5 * e5).reshape(len(e5), -1).sum(axis=1)
        s3 = (e3 * e3).reshape(len(e3), -1).sum(axis=1)
        denom = xp.where(s5 + s3 == 0, 1.0, xp.sqrt((s5 + 0.01 * s3) * n))
        return abs(h) * s5 / denom

    def interpolate(self, t, h, y, y_new, ks, k_new, theta, rows):
        """Dense output at fractions ``theta`` (one per selected row) of the step; ``rows``
        is an index array or ``slice(None)`` for the whole batch (host arrays both)."""
        xp = self.xp
        if xp is not np:
            rows = rows if isinstance(rows, slice) else xp.asarray(rows)
        th = xp.asarray(theta).reshape((-1,) + (1,) * (y.ndim - 1))
        if self.tab.dense is None:  # cubic Hermite from values and slopes at both ends
            th2, th3 = th * th, th * th * th
            return ((2 * th3 - 3 * th2 + 1) * y[rows] + h * (th3 - 2 * th2 + th) * ks[0][rows]
                    + (3 * th2 - 2 * th3) * y_new[rows] + h * (th3 - th2) * k_new[rows])
        stages = self._dense_stages(t, h, y, ks, k_new)
        degree = self.dense_p.shape[1]
        powers = theta[:, None] ** np.arange(1, degree + 1)          # (rows, degree)
        weights = powers @ self.dense_p.T                             # (rows, stages)
        acc = None
        weights = xp.asarray(weights)
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
    xp, on_device = dispatch(y0)
    if xp is not np:          # array tolerances join the state's module
        rtol, atol = (v if np.ndim(v) == 0 else xp.asarray(v) for v in (rtol, atol))
    out = xp.empty((T,) + y0.shape, dtype=y0.dtype)
    status = np.zeros(batch, dtype=np.int32)
    fail = np.zeros((batch, 3))
    nxt = np.zeros(batch, dtype=np.int64)          # next unsaved index per trajectory
    st = _Stepper(fun, tab, xp, compiled=not on_device)
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
    guessed = tab.adaptive and not h_first           # the first step is Hairer's estimate
    while nxt.min() < T:
        if nacc + nrej >= max_steps:
            status[nxt < T] = MAX_STEPS
            fail[:, 0], fail[:, 1] = t, h
            break
        last = direction * (t + h - t_end) >= 0 or (
            not tab.adaptive and abs(t + h - t_end) <= 1e-9 * abs(h))
        if last:
            h_free, h = h, t_end - t
        ks, y_new = st.step(t, y, k0, h)
        if tab.adaptive:
            ratios = st.error_ratio(h, ks, y, y_new, rtol, atol, norm_dims, whole_batch)
            err = float(ratios.max())               # NaN if one is NaN; inf too counts as NaN
            if not math.isfinite(err):
                err = np.nan
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
            finite = xp.isfinite(y_new.reshape(batch, -1)).all(axis=1)
            if not finite.all():
                bad = ~to_numpy(finite)
                status[bad] = NON_FINITE
                fail[bad, 0], fail[bad, 1] = t_new, h
                break
            if record is not None:
                record.append((t, h, t_new, y))
            y, t = y_new, t_new
            k0 = k_new_() if nxt.min() < T else None
            nacc += 1
            fac = controller.scalar_factor(err, err_prev, tab.error_order or 1, True, after_reject,
                                           guessed and nacc == 1 and nrej == 0)
            err_prev, after_reject = max(err, ERR_PREV_FLOOR), False
        else:
            nrej += 1
            after_reject = True
            fac = controller.scalar_factor(err, err_prev, tab.error_order, False, True)
        if tab.adaptive:
            h *= fac
            if nxt.min() < T and abs(h) < 10 * EPS * max(abs(t), abs(t_end)):
                ratios = to_numpy(ratios)
                worst = np.nanargmax(np.where(np.isfinite(ratios), ratios, np.inf))
                status[worst] = UNDERFLOW
                fail[worst] = (t, h, ratios[worst])
                break
    # a step cut short to land on t_end says little about the next one: propose the step the
    # controller had chosen before the cut, when that is the larger
    h_next = abs(h) if not tab.adaptive or nxt.min() < T else max(abs(h), abs(h_free))
    return ArrayResult(out, st.nfev, nacc, nrej, status, fail, h_next)


def _save(out, nxt, tgrid, t_new, at_end, interp=None, t=None, h=None, direction=1.0):
    """Write every trajectory's requested times that the step (t, t_new] has reached (``out``
    may be a cupy array; the indices are host arrays). The times inside the step, however
    many, are interpolated in one call."""
    T = tgrid.shape[1]
    xp = array_module(out)
    index = (lambda a: a) if xp is np else xp.asarray
    inner_rows, inner_cols, inner_theta = [], [], []
    while True:
        pending = np.nonzero(nxt < T)[0]
        if pending.size == 0:
            break
        tj = tgrid[pending, nxt[pending]]
        reached = direction * (tj - t_new) <= 0
        rows = pending[reached]
        if rows.size == 0:
            break
        tj = tj[reached]
        exact = tj == t_new
        if exact.any():
            hit = index(rows[exact])
            out[index(nxt[rows[exact]]), hit] = at_end(hit)
        inner = rows[~exact]
        if inner.size:
            inner_rows.append(inner)
            inner_cols.append(nxt[inner].copy())
            inner_theta.append((tj[~exact] - t) / h)
        nxt[rows] += 1
    if inner_rows:
        rows = np.concatenate(inner_rows)
        out[index(np.concatenate(inner_cols)), index(rows)] = interp(
            rows, np.concatenate(inner_theta))
