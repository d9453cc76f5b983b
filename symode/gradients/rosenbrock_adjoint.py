"""The discrete adjoint of a Rosenbrock solve (``rodas4``, ``rodas5p``): the exact gradient of the
solver's own steps, one trajectory at a time in the kernel engine.

One step from (t, y) of size h, with J = ∂f/∂y(t, y), f_t = ∂f/∂t(t, y) and W = I/(hγ) - J:

    W U_s = F_s + γ_s h f_t + Σ_{q<s} (c_sq/h) U_q,   F_s = f(t + α_s h, y + Σ_{q<s} a_sq U_q),
    y_new = y + Σ_s m_s U_s.

The backward sweep recomputes each recorded step and runs it in reverse, last stage first:
R̄_s = W⁻ᵀ Ū_s (the step's LU, transposed), then F̄_s = R̄_s goes through the derived VJP of f,
Ū_q gains (c_sq/h) R̄_s and a_sq Ȳ_s, and the matrix W contributes J̄ = Σ_s R̄_s U_sᵀ,
f̄_t = Σ_s γ_s h R̄_s. What J and f_t add to ȳ, θ̄ and t̄ is the gradient of
Σ_rc J̄_rc J_rc + Σ_i f̄_t,i f_t,i, second derivatives of f that sympy derives once
(``jac_vjp``). Step sizes are fixed numbers except those the saved times set: an adaptive step
that lands on t_j has h = t_j - t, a fixed-step interval is cut into equal steps of
(t_j - t_{j-1})/n; dL/dt_j follows from that.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ..codegen.cache import load_module
from ..codegen.source import emit_into, is_zero, rename
from ..dynamics import SymbolicDynamics
from ..solvers.cuda_engine import check_device, launch
from ..solvers.kernel_engine import run_batch
from ..solvers.lu_plan import pattern_source
from ..solvers.rosenbrock import (array_loads, entry, for_target, header_source, jacobian_source,
                                  step_source, wrappers)
from ..solvers.rosenbrock_tableaus import RosenbrockTableau
from ..solvers.solution import Stats
from ..symbolic.derive import derive_vjp

__all__ = ["jac_vjp_source", "emit_rosenbrock_adjoint", "rosenbrock_adjoint"]

SWEEP = '''
@JIT
def adjoint_one(b, y_init, tg, prm, h_fixed, rec_t, rec_y, rec_n, cot, ybar, pbar, tbar,
                stats):
    T = tg.shape[1]
    tb = b if tg.shape[0] > 1 else 0
    p = prm[b if prm.shape[0] > 1 else 0]
    fixed = h_fixed[0] > 0.0
    hf = h_fixed[b if h_fixed.shape[0] > 1 else 0]
    y = np.empty({D})
    f0 = np.empty({D})
    ft = np.empty({D})
    J = np.empty(({D}, {D}))
    W = np.empty(({D}, {D}))
    piv = np.empty({D}, dtype=np.int64)
    U = np.empty(({S}, {D}))
    Y = np.empty(({S}, {D}))
    F = np.empty(({S}, {D}))
    ab = np.empty({D})          # dL/dy at the end of the step being reversed
    yb = np.empty({D})
    Ub = np.empty(({S}, {D}))
    r = np.empty({D})
    pend = np.empty({D})
    Jb = np.empty(({D}, {D}))
    ftb = np.empty({D})
    g = np.empty({G})
    gp = np.empty({P1})
    for i in range({D}):
        ab[i] = 0.0
        for c in range({D}):
            J[i, c] = 0.0           # jac_into writes only the nonzeros
    for q in range({P1}):
        gp[q] = 0.0
    for j in range(T):
        tbar[b, j] = 0.0
    n_rec = rec_n[b]
    nfev = 0
    j = T - 1
    kk = 0
    nseg = 1
    for n in range(n_rec - 1, -1, -1):
        t_new = rec_t[b, n]
        if n > 0:
            t = rec_t[b, n - 1]
            for i in range({D}):
                y[i] = rec_y[b, n - 1, i]
        else:
            t = tg[tb, 0]
            for i in range({D}):
                y[i] = y_init[b, i]
        if j > 1 and t_new == tg[tb, j - 1]:
            j -= 1
        landing = t_new == tg[tb, j]
        if landing:
            for i in range({D}):
                ab[i] += cot[j, b, i]
            if fixed:
                nseg = max(1, int(math.ceil(abs(tg[tb, j] - tg[tb, j - 1]) / hf - 1e-9)))
                kk = nseg - 1
        elif fixed:
            kk -= 1
        h = t_new - t
        rhs_into(t, y, p, f0)
        jac_into(t, y, p, J, ft)
        stages(t, y, h, p, J, ft, f0, W, piv, U, Y, F)
        nfev += 1 + {new_stages}
        # y_new = y + Σ m_s U_s
        for i in range({D}):
            yb[i] = ab[i]
            ftb[i] = 0.0
            pend[i] = 0.0
            for a in range(JP[i], JP[i + 1]):                 # J's nonzeros
                Jb[i, JC[a]] = 0.0
        for s in range({S}):
            for i in range({D}):
                Ub[s, i] = M[s] * ab[i]
        hb = 0.0
        for s in range({S} - 1, -1, -1):
            for i in range({D}):
                r[i] = Ub[s, i]
            lu_solve_t(W, piv, r)
            ru = 0.0
            rf = 0.0
            for i in range({D}):
                ru += r[i] * U[s, i]
                rf += r[i] * ft[i]
                ftb[i] += GAMMAS[s] * h * r[i]
                for a in range(JP[i], JP[i + 1]):
                    Jb[i, JC[a]] += r[i] * U[s, JC[a]]
            hb += ru / (h * h * GAMMA) + GAMMAS[s] * rf
            for q in range(s):
                if C[s, q] != 0.0:
                    rq = 0.0
                    for i in range({D}):
                        Ub[q, i] += C[s, q] / h * r[i]
                        rq += r[i] * U[q, i]
                    hb -= C[s, q] / (h * h) * rq
            for i in range({D}):
                r[i] += pend[i]
            if s > 0 and not NEW_F[s]:      # F_s is F_(s-1)
                for i in range({D}):
                    pend[i] = r[i]
                continue
            for i in range({D}):
                pend[i] = 0.0
            vjp_row(t + ALPHA[s] * h, Y, s, p, r, g)
            nfev += 1
            for q in range({P} + 1):
                gp[q] += g[{D} + q]
            hb += ALPHA[s] * g[{D} + {P}]
            for i in range({D}):
                yb[i] += g[i]
            for q in range(s):
                if A[s, q] != 0.0:
                    for i in range({D}):
                        Ub[q, i] += A[s, q] * g[i]
        # J and f_t at (t, y)
        jac_vjp_into(t, y, p, Jb, ftb, g)
        for q in range({P} + 1):
            gp[q] += g[{D} + q]
        for i in range({D}):
            ab[i] = yb[i] + g[i]
        tbs = gp[{P}]
        gp[{P}] = 0.0
        if fixed:
            tbar[b, j - 1] += tbs * (1.0 - kk / nseg) - hb / nseg
            tbar[b, j] += tbs * kk / nseg + hb / nseg
        else:
            tbar[b, j - 1] += tbs
            if landing:
                tbar[b, j - 1] -= hb
                tbar[b, j] += hb
    for i in range({D}):
        ybar[b, i] = ab[i] + cot[0, b, i]
    for q in range({P}):
        pbar[b, q] = gp[q]
    stats[b, 0] = nfev
    stats[b, 1] = n_rec
    stats[b, 2] = 0


'''


def jac_vjp_source(dyn: SymbolicDynamics) -> str:
    """``def jac_vjp_into(t, y, p, Jb, ftb, g)``: into ``g`` the gradient with respect to
    (z, θ, t) of ``Σ_rc Jb_rc ∂f_r/∂z_c + Σ_r ftb_r ∂f_r/∂t``, second derivatives of f. Only
    the entries of J and f_t that are not identically zero carry a weight."""
    ode = dyn.ode
    D, P = dyn.dim, dyn.n_params
    exprs = [*ode.jacobian, *ode.time_derivative]
    entries = [f"Jbf[{k}]" for k in range(D * D)] + [f"ftb[{r}]" for r in range(D)]
    names = [f"w{r}_{c}" for r in range(D) for c in range(D)] + [f"v{r}" for r in range(D)]
    keep = [k for k, e in enumerate(exprs) if not is_zero(e)]
    weights = [sp.Dummy(names[k]) for k in keep]
    grad = derive_vjp([exprs[k] for k in keep], weights, (*ode.states, *ode.params, ode.t))
    symbols = (ode.t, *ode.states, *ode.params, *weights)
    code = dyn.arg_names + [names[k] for k in keep]
    renamed, back = rename(grad, symbols, code)
    loads = {**array_loads(D, P), **{names[k]: entries[k] for k in keep}}
    return emit_into("jac_vjp_into", ["t", "y", "p", "Jb", "ftb", "g"], loads,
                     [f"g[{k}]" for k in range(D + P + 1)], renamed, where="jac_vjp", names=back,
                     views={"Jbf": f"Jb.reshape({D * D})"})


def _adjoint_wrappers(D: int, P: int) -> str:
    """``vjp_row``: (ȳ, θ̄, t̄) of the VJP at row s of Y written into one array ``g``."""
    row = ", ".join(["t"] + [f"Y[s, {i}]" for i in range(D)] + [f"p[{q}]" for q in range(P)])
    g = ", ".join(f"g[{k}]" for k in range(D + P + 1))
    a = ", ".join(f"a[{i}]" for i in range(D))
    return f"@JIT\ndef vjp_row(t, Y, s, p, a, g):\n    {g} = vjp({row}, {a})\n"


ARGS = "y_init, tg, prm, h_fixed, rec_t, rec_y, rec_n, cot, ybar, pbar, tbar, stats"


def emit_rosenbrock_adjoint(dyn: SymbolicDynamics, tab: RosenbrockTableau,
                            target: str = "cpu") -> str:
    """The module text of the discrete adjoint of ``tab`` for a symbolic system, for ``target``
    "cpu" (``adjoint_range``) or "cuda" (``adjoint_kernel``)."""
    D, P = dyn.dim, dyn.n_params
    sweep = SWEEP.format(D=D, P=P, S=tab.stages, G=D + P + 1, P1=P + 1,
                         new_stages=sum(tab.new_f[1:]))
    header = header_source(tab, f"{tab.name} discrete adjoint", target)
    return "\n\n".join([header, dyn.rhs_source, jacobian_source(dyn), dyn.vjp_source,
                        jac_vjp_source(dyn), wrappers(D, P), _adjoint_wrappers(D, P),
                        step_source(dyn, tab, target), pattern_source(dyn),
                        for_target(sweep, target),
                        entry("adjoint_one", ARGS, target)])


def adjoint_module(dyn: SymbolicDynamics, tab: RosenbrockTableau, device: str = "cpu"):
    """The compiled discrete adjoint for ``device``, built once per process (and cached on
    disk)."""
    key = ("rosenbrock_adjoint", tab, device)
    if key not in dyn.kernels:
        if device == "cuda":
            check_device("cuda")
        target = "cuda" if device == "cuda" else "cpu"
        tag = f"{'cuda_' if device == 'cuda' else ''}adjoint_{tab.name}"
        dyn.kernels[key] = load_module(emit_rosenbrock_adjoint(dyn, tab, target), tag)
    return dyn.kernels[key]


def rosenbrock_adjoint(dyn: SymbolicDynamics, tab: RosenbrockTableau, tgrid, y0, prm, h_fixed,
                       cot, rec, device: str = "cpu"):
    """Backward sweep of a Rosenbrock solve, per trajectory.

    Parameters
    ----------
    tgrid : ndarray, shape (batch, T) (or one broadcast row)
    y0 : ndarray, shape (batch, dim)
    prm : ndarray, shape (batch, P) (or one row)
    h_fixed : ndarray or None
        The fixed step bound per trajectory, or None for adaptive steps.
    cot : ndarray, shape (T, batch, dim)
        dL/dy at the saved times.
    rec : (rec_t, rec_y, rec_n)
        Every accepted step's end time and state, and the number of steps per trajectory
        (on the GPU where a CUDA forward solve left them).
    device : {"cpu", "cuda"}

    Returns
    -------
    y0_bar, p_bar, t_bar : ndarrays, shapes (batch, dim), (batch, P), (batch, T)
    stats : Stats (nfev: f and VJP evaluations of the sweep; naccept: steps swept)
    """
    from ..solvers.solve import compact

    rec_t, rec_y, rec_n = rec
    batch, T = y0.shape[0], tgrid.shape[1]
    h_fix = np.zeros(1) if h_fixed is None else compact(np.asarray(h_fixed, dtype=np.float64))
    outputs = (np.empty((batch, dyn.dim)), np.empty((batch, dyn.n_params)),
               np.empty((batch, T)), np.zeros((batch, 3), dtype=np.int64))
    inputs = (np.ascontiguousarray(y0), compact(tgrid), compact(prm), h_fix, rec_t, rec_y, rec_n,
              np.ascontiguousarray(cot))
    module = adjoint_module(dyn, tab, device)
    if device == "cuda":
        outputs = tuple(d.copy_to_host() for d in launch(module, "adjoint", batch, inputs,
                                                         outputs))
    else:
        inputs = tuple(np.ascontiguousarray(a) for a in inputs)
        run_batch(module, batch, *inputs, *outputs, entry="adjoint_range")
    y0_bar, p_bar, t_bar, stats = outputs
    return y0_bar, p_bar, t_bar, Stats(stats[:, 0], stats[:, 1], stats[:, 2])
