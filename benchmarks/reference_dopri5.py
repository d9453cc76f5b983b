"""Hand-written numba Dormand–Prince 5(4) integrator for an ensemble of Lorenz systems.

This is the "near-hardware" baseline for the Lorenz ensemble benchmark: the loop a careful
person would write by hand for exactly this problem, with nothing generic left in it.

* one trajectory per ``prange`` iteration (``@njit(parallel=True, fastmath=False)``),
  each trajectory with its own step size;
* only scalar locals in the hot loop: the three state components and the seven stages are
  written out component by component, no temporary arrays;
* Dormand–Prince 5(4) coefficients, first-same-as-last (the last stage of an accepted step is
  the first stage of the next one);
* error norm: RMS over the components of ``err / (atol + rtol * max(|y0|, |y1|))``;
* Hairer's initial step selection;
* an integral (I) controller: safety 0.9, factor clipped to [0.2, 10], exponent 1/5;
* steps are clipped so the last one lands exactly on ``t1``; only the final state is kept.

Usage::

    from reference_dopri5 import solve_reference
    y1, stats = solve_reference(y0, t1=10.0, rtol=1e-6, atol=1e-8)
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["lorenz_dopri5_final", "solve_reference", "warm_up"]

# --- Dormand–Prince 5(4) tableau -----------------------------------------------------------
C2 = 1.0 / 5.0
C3 = 3.0 / 10.0
C4 = 4.0 / 5.0
C5 = 8.0 / 9.0

A21 = 1.0 / 5.0
A31 = 3.0 / 40.0
A32 = 9.0 / 40.0
A41 = 44.0 / 45.0
A42 = -56.0 / 15.0
A43 = 32.0 / 9.0
A51 = 19372.0 / 6561.0
A52 = -25360.0 / 2187.0
A53 = 64448.0 / 6561.0
A54 = -212.0 / 729.0
A61 = 9017.0 / 3168.0
A62 = -355.0 / 33.0
A63 = 46732.0 / 5247.0
A64 = 49.0 / 176.0
A65 = -5103.0 / 18656.0
# fifth-order weights (also the last row of A: the FSAL stage is evaluated at y1)
B1 = 35.0 / 384.0
B3 = 500.0 / 1113.0
B4 = 125.0 / 192.0
B5 = -2187.0 / 6784.0
B6 = 11.0 / 84.0
# error weights: fifth-order minus embedded fourth-order weights
E1 = 71.0 / 57600.0
E3 = -71.0 / 16695.0
E4 = 71.0 / 1920.0
E5 = -17253.0 / 339200.0
E6 = 22.0 / 525.0
E7 = -1.0 / 40.0

SAFETY = 0.9
FAC_MIN = 0.2
FAC_MAX = 10.0
EXPONENT = 1.0 / 5.0   # 1 / (embedded order + 1)


@njit(inline="always", fastmath=False)
def _lorenz(x, y, z, sigma, rho, beta):
    return sigma * (y - x), x * (rho - z) - y, x * y - beta * z


@njit(parallel=True, fastmath=False)
def lorenz_dopri5_final(y0, t0, t1, sigma, rho, beta, rtol, atol, max_steps):
    """Integrate every row of ``y0`` (shape (N, 3)) from ``t0`` to ``t1`` (``t1 > t0``).

    Returns ``(y1, naccept, nreject, nfev)``: the final states (N, 3) and per-trajectory counts.
    A trajectory that exceeds ``max_steps`` attempts, or whose step underflows, ends with NaN.
    """
    n = y0.shape[0]
    out = np.empty((n, 3))
    naccept = np.zeros(n, dtype=np.int64)
    nreject = np.zeros(n, dtype=np.int64)
    nfev = np.zeros(n, dtype=np.int64)
    span = t1 - t0

    for i in prange(n):
        x = y0[i, 0]
        y = y0[i, 1]
        z = y0[i, 2]
        t = t0
        k1x, k1y, k1z = _lorenz(x, y, z, sigma, rho, beta)
        fev = 1

        # Hairer's initial step: h0 from |y0| and |f0|, then refine with a second-derivative
        # estimate from one explicit Euler step.
        sx = atol + rtol * abs(x)
        sy = atol + rtol * abs(y)
        sz = atol + rtol * abs(z)
        d0 = math.sqrt(((x / sx) ** 2 + (y / sy) ** 2 + (z / sz) ** 2) / 3.0)
        d1 = math.sqrt(((k1x / sx) ** 2 + (k1y / sy) ** 2 + (k1z / sz) ** 2) / 3.0)
        if d0 < 1e-5 or d1 < 1e-5:
            h0 = 1e-6
        else:
            h0 = 0.01 * d0 / d1
        h0 = min(h0, span)
        fx, fy, fz = _lorenz(x + h0 * k1x, y + h0 * k1y, z + h0 * k1z, sigma, rho, beta)
        fev += 1
        d2 = math.sqrt((((fx - k1x) / sx) ** 2 + ((fy - k1y) / sy) ** 2
                        + ((fz - k1z) / sz) ** 2) / 3.0) / h0
        dmax = max(d1, d2)
        if dmax <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / dmax) ** EXPONENT
        h = min(100.0 * h0, h1, span)

        acc = 0
        rej = 0
        failed = False
        while t < t1:
            if acc + rej >= max_steps:
                failed = True
                break
            last = t + h >= t1
            hs = t1 - t if last else h
            if hs <= 1e-14 * max(abs(t), 1.0):
                failed = True
                break

            k2x, k2y, k2z = _lorenz(x + hs * (A21 * k1x),
                                    y + hs * (A21 * k1y),
                                    z + hs * (A21 * k1z), sigma, rho, beta)
            k3x, k3y, k3z = _lorenz(x + hs * (A31 * k1x + A32 * k2x),
                                    y + hs * (A31 * k1y + A32 * k2y),
                                    z + hs * (A31 * k1z + A32 * k2z), sigma, rho, beta)
            k4x, k4y, k4z = _lorenz(x + hs * (A41 * k1x + A42 * k2x + A43 * k3x),
                                    y + hs * (A41 * k1y + A42 * k2y + A43 * k3y),
                                    z + hs * (A41 * k1z + A42 * k2z + A43 * k3z),
                                    sigma, rho, beta)
            k5x, k5y, k5z = _lorenz(x + hs * (A51 * k1x + A52 * k2x + A53 * k3x + A54 * k4x),
                                    y + hs * (A51 * k1y + A52 * k2y + A53 * k3y + A54 * k4y),
                                    z + hs * (A51 * k1z + A52 * k2z + A53 * k3z + A54 * k4z),
                                    sigma, rho, beta)
            k6x, k6y, k6z = _lorenz(
                x + hs * (A61 * k1x + A62 * k2x + A63 * k3x + A64 * k4x + A65 * k5x),
                y + hs * (A61 * k1y + A62 * k2y + A63 * k3y + A64 * k4y + A65 * k5y),
                z + hs * (A61 * k1z + A62 * k2z + A63 * k3z + A64 * k4z + A65 * k5z),
                sigma, rho, beta)
            nx = x + hs * (B1 * k1x + B3 * k3x + B4 * k4x + B5 * k5x + B6 * k6x)
            ny = y + hs * (B1 * k1y + B3 * k3y + B4 * k4y + B5 * k5y + B6 * k6y)
            nz = z + hs * (B1 * k1z + B3 * k3z + B4 * k4z + B5 * k5z + B6 * k6z)
            k7x, k7y, k7z = _lorenz(nx, ny, nz, sigma, rho, beta)
            fev += 6

            ex = hs * (E1 * k1x + E3 * k3x + E4 * k4x + E5 * k5x + E6 * k6x + E7 * k7x)
            ey = hs * (E1 * k1y + E3 * k3y + E4 * k4y + E5 * k5y + E6 * k6y + E7 * k7y)
            ez = hs * (E1 * k1z + E3 * k3z + E4 * k4z + E5 * k5z + E6 * k6z + E7 * k7z)
            ex /= atol + rtol * max(abs(x), abs(nx))
            ey /= atol + rtol * max(abs(y), abs(ny))
            ez /= atol + rtol * max(abs(z), abs(nz))
            err = math.sqrt((ex * ex + ey * ey + ez * ez) / 3.0)

            if err <= 1.0:
                acc += 1
                if last:
                    t = t1
                else:
                    t += hs
                x = nx
                y = ny
                z = nz
                k1x = k7x
                k1y = k7y
                k1z = k7z
                if err == 0.0:
                    fac = FAC_MAX
                else:
                    fac = min(FAC_MAX, max(FAC_MIN, SAFETY * err ** (-EXPONENT)))
                h = hs * fac
            else:
                rej += 1
                if err != err or err == math.inf:   # NaN / inf: shrink as hard as allowed
                    fac = FAC_MIN
                else:
                    fac = max(FAC_MIN, SAFETY * err ** (-EXPONENT))
                h = hs * fac

        if failed:
            out[i, 0] = np.nan
            out[i, 1] = np.nan
            out[i, 2] = np.nan
        else:
            out[i, 0] = x
            out[i, 1] = y
            out[i, 2] = z
        naccept[i] = acc
        nreject[i] = rej
        nfev[i] = fev
    return out, naccept, nreject, nfev


def solve_reference(y0, t1=10.0, rtol=1e-6, atol=1e-8, params=(10.0, 28.0, 8.0 / 3.0),
                    t0=0.0, max_steps=1_000_000):
    """Final states (N, 3) of the Lorenz ensemble ``y0`` at ``t1`` and a stats dict.

    The stats hold totals over the ensemble: ``steps`` (attempted), ``naccept``, ``nreject``,
    ``nfev``, plus the number of ``failed`` trajectories (NaN rows).
    """
    y0 = np.ascontiguousarray(y0, dtype=np.float64)
    if y0.ndim != 2 or y0.shape[1] != 3:
        raise ValueError(f"y0 must have shape (N, 3), got {y0.shape}")
    if not t1 > t0:
        raise ValueError("this reference integrates forwards only (t1 > t0)")
    sigma, rho, beta = (float(p) for p in params)
    out, acc, rej, fev = lorenz_dopri5_final(y0, float(t0), float(t1), sigma, rho, beta,
                                             float(rtol), float(atol), int(max_steps))
    stats = {
        "steps": int(acc.sum() + rej.sum()),
        "naccept": int(acc.sum()),
        "nreject": int(rej.sum()),
        "nfev": int(fev.sum()),
        "failed": int(np.isnan(out[:, 0]).sum()),
    }
    return out, stats


def warm_up():
    """Compile the kernel with a tiny call (numba compiles on first use)."""
    solve_reference(np.ones((2, 3)), t1=0.1)


if __name__ == "__main__":
    import time

    rng = np.random.default_rng(0)
    y0 = 1.0 + 0.1 * rng.standard_normal((1000, 3))
    t = time.perf_counter()
    warm_up()
    print(f"first call (compile): {time.perf_counter() - t:.3f} s")
    t = time.perf_counter()
    y1, stats = solve_reference(y0)
    print(f"N=1000, t in [0, 10]: {time.perf_counter() - t:.4f} s, {stats}")
    print("first final state:", y1[0])
