"""The discrete adjoint: the exact gradient of the discretised solve ("RK-Net" in the Neural ODE
paper), by reverse-mode differentiation through the solver's own stages.

The accepted steps of the forward pass are kept ((t_n, h_n, y_n), memory O(steps)); each is
recomputed and run backwards:

    Y_i = y_n + h Σ_j a_ij k_j,   k_i = f(t_n + c_i h, Y_i),   y_{n+1} = y_n + h Σ_i b_i k_i,

so k̄_i = h b_i ȳ_{n+1} (+ dense-output terms), then for i = s-1 … 0 the VJP of f at stage i
gives Ȳ_i, which flows to ȳ_n and to k̄_j (j < i) through h a_ij. Step sizes are held fixed,
except that the grid follows the end points: a fixed-step grid is t_n = t0 + n (t_N - t0)/N,
and an adaptive one keeps its step sizes but its last step ends on t_N. The gradient is then
exact for that discretisation, to round-off.
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module
from ..solvers.solution import Stats

__all__ = ["discrete_arrays", "stage_table"]


def stage_table(tab):
    """``a`` (n, n), ``c`` (n,) and ``b`` (n,) over all n stages, the main ones and then the
    dense output's extra stages (b is zero on those)."""
    fab, s = tab.as_float(), tab.n_stages
    n = s + len(fab.dense_c) if tab.dense is not None else s
    a, c, b = np.zeros((n, n)), np.zeros(n), np.zeros(n)
    a[:s, :s], c[:s], b[:s] = fab.a, fab.c, fab.b
    if n > s:
        a[s:, :fab.dense_a.shape[1]] = fab.dense_a
        c[s:] = fab.dense_c
    return a, c, b


class _Reverse:
    """Accumulates the gradients of one backward sweep."""

    def __init__(self, dyn, theta, tab):
        self.dyn, self.theta, self.tab = dyn, theta, tab
        self.fab = tab.as_float()
        self.theta_bar = None
        self.nfev = 0

    def f(self, t, y):
        self.nfev += 1
        return self.dyn.f(t, y, self.theta)

    def vjp(self, t, y, a):
        self.nfev += 1
        a_z, a_th, a_t = self.dyn.vjp(t, y, self.theta, a)
        self.theta_bar = a_th if self.theta_bar is None else self.theta_bar + a_th
        return a_z, float(a_t.sum() if hasattr(a_t, 'sum') else np.sum(a_t))

    def stages(self, t, h, y):
        """Main stages (Y_i, k_i) of the step from (t, y) with step h."""
        fab, Ys, ks = self.fab, [], []
        for i in range(self.tab.n_stages):
            Y = y
            for j in range(i):
                if fab.a[i, j] != 0.0:
                    Y = Y + h * fab.a[i, j] * ks[j]
            Ys.append(Y)
            ks.append(self.f(t + fab.c[i] * h, Y))
        return Ys, ks

    def extra_stages(self, t, h, y, Ys, ks):
        fab = self.fab
        s = self.tab.n_stages
        for e in range(len(fab.dense_c)):
            row = fab.dense_a[e]
            Y = y
            for j in range(s + e):
                if row[j] != 0.0:
                    Y = Y + h * row[j] * ks[j]
            Ys.append(Y)
            ks.append(self.f(t + fab.dense_c[e] * h, Y))



def discrete_arrays(dyn, theta, tab, t, y_out, cot, steps, fixed_step: bool):
    """Backward sweep through the recorded steps of an array-engine solve.

    Parameters
    ----------
    dyn : Dynamics with ``vjp``
    theta : parameters as passed to ``dyn.f``
    tab : ButcherTableau
    t : ndarray, shape (T,)
    y_out : ndarray, shape (T, batch, ...)
    cot : ndarray, shape (T, batch, ...)
        dL/dy at the saved times.
    steps : list of (t_n, h_n, t_new, y_n)
    fixed_step : bool
        Grid model for dL/dt0 and dL/dt_N (see module docstring).

    Returns
    -------
    y0_bar, theta_bar, t_bar (T,), stats
    """
    rv = _Reverse(dyn, theta, tab)
    a_all, c_all, _ = stage_table(tab)
    b = rv.fab.b
    T = len(t)
    t_bar = np.zeros(T)
    M = len(steps)
    tbars, hbars = np.zeros(M), np.zeros(M)
    xp = array_module(y_out)     # cupy: the sweep stays on the GPU
    ybar = xp.zeros_like(y_out[0])
    dense_p = rv.fab.dense_p if tab.dense is not None else None
    for n in range(M - 1, -1, -1):
        t_n, h, t_new, y_n = steps[n]
        direction = 1.0 if h > 0 else -1.0
        # saved times in (t_n, t_new]; one on the step's end is its interpolant at θ = 1, which
        # equals y_{n+1} but also carries how the saved value moves with the grid
        inner = [j for j in range(T) if direction * (t[j] - t_n) > 0
                 and direction * (t[j] - t_new) <= 0]
        Ys, ks = rv.stages(t_n, h, y_n)
        tbar = hbar = 0.0
        yn_bar = xp.zeros_like(y_n)
        kbar = [xp.zeros_like(y_n) for _ in range(len(c_all))]
        if inner and dense_p is None:      # cubic Hermite between (y_n, k_0) and (y_{n+1}, f_{n+1})
            y_next = y_n + h * sum(bi * k for bi, k in zip(b, ks) if bi != 0.0)
            k_new = rv.f(t_new, y_next)
            knew_bar = xp.zeros_like(y_n)
            for j in inner:
                th = (t[j] - t_n) / h
                cj = cot[j]
                h00, h10, h01, h11 = _hermite(th)
                d00, d10, d01, d11 = _hermite_slope(th)
                yn_bar += h00 * cj
                kbar[0] += h * h10 * cj
                ybar = ybar + h01 * cj
                knew_bar += h * h11 * cj
                dth = _dot(xp, cj, d00 * y_n + h * d10 * ks[0] + d01 * y_next + h * d11 * k_new)
                hbar += _dot(xp, cj, h10 * ks[0] + h11 * k_new)
                t_bar[j] += dth / h
                tbar -= dth / h
                hbar -= dth * th / h
            az, at = rv.vjp(t_new, y_next, knew_bar)
            ybar = ybar + az
            tbar += at
            hbar += at
        elif inner:                       # the method's own interpolant y_n + h Σ B_i(θ) k_i
            rv.extra_stages(t_n, h, y_n, Ys, ks)
            for j in inner:
                th = (t[j] - t_n) / h
                cj = cot[j]
                powers = th ** np.arange(1, dense_p.shape[1] + 1)
                slopes = np.arange(1, dense_p.shape[1] + 1) * th ** np.arange(dense_p.shape[1])
                B, dB = dense_p @ powers, dense_p @ slopes
                yn_bar += cj
                dth = 0.0
                for i in range(len(B)):
                    if B[i] != 0.0 or dB[i] != 0.0:
                        kbar[i] += h * B[i] * cj
                        ck = _dot(xp, cj, ks[i])
                        hbar += B[i] * ck
                        dth += h * dB[i] * ck
                t_bar[j] += dth / h
                tbar -= dth / h
                hbar -= dth * th / h
        # y_{n+1} = y_n + h Σ b_i k_i
        yn_bar += ybar
        for i, bi in enumerate(b):
            if bi != 0.0:
                kbar[i] += h * bi * ybar
                hbar += bi * _dot(xp, ybar, ks[i])
        for i in range(len(ks) - 1, -1, -1):
            if not kbar[i].any():
                continue
            az, at = rv.vjp(t_n + c_all[i] * h, Ys[i], kbar[i])
            tbar += at
            hbar += c_all[i] * at
            yn_bar += az
            for j in range(i):
                if a_all[i, j] != 0.0:
                    kbar[j] += h * a_all[i, j] * az
                    hbar += a_all[i, j] * _dot(xp, az, ks[j])
        ybar = yn_bar
        tbars[n], hbars[n] = tbar, hbar
    ybar = ybar + _exact(cot, t, t[0])
    _grid_terms(t_bar, tbars, hbars, fixed_step)
    batch = y_out.shape[1]
    one = np.ones(batch, dtype=np.int64)
    theta_bar = rv.theta_bar if rv.theta_bar is not None else xp.zeros(np.shape(theta))
    return ybar, theta_bar, t_bar, Stats(one * rv.nfev, one * M, one * 0, shared=True)


def _dot(xp, a, b) -> float:
    """``a · b`` over all entries, as a host number."""
    return float(xp.vdot(a, b))


def _exact(cot, t, time):
    """Sum of the cotangents saved exactly at ``time``."""
    hit = np.nonzero(t == time)[0]
    return sum(cot[j] for j in hit) if hit.size else 0.0


def _grid_terms(t_bar, tbars, hbars, fixed_step):
    """How the step grid moves with the first and last time (module docstring)."""
    M = len(tbars)
    if M == 0:
        return
    if fixed_step:
        n = np.arange(M)
        t_bar[0] += np.sum(tbars * (1 - n / M) - hbars / M)
        t_bar[-1] += np.sum(tbars * n / M + hbars / M)
    else:
        t_bar[0] += np.sum(tbars) - hbars[-1]
        t_bar[-1] += hbars[-1]


def _hermite(th):
    th2, th3 = th * th, th * th * th
    return 2 * th3 - 3 * th2 + 1, th3 - 2 * th2 + th, 3 * th2 - 2 * th3, th3 - th2


def _hermite_slope(th):
    th2 = th * th
    return 6 * th2 - 6 * th, 3 * th2 - 4 * th + 1, 6 * th - 6 * th2, 3 * th2 - 2 * th
