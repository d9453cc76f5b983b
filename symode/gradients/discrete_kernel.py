"""The discrete adjoint in the kernel engine: one trajectory per thread (CPU threads or GPU
threads), generated from the same tableau and the same symbolic right-hand side and VJP as the
forward integrator.

The forward solve records the end of every accepted step, (t_{n+1}, y_{n+1}). The backward
sweep recomputes the stages of each step, last to first,

    Y_i = y_n + h Σ_j a_ij k_j,   k_i = f(t_n + c_i h, Y_i),   y_{n+1} = y_n + h Σ_i b_i k_i,

and runs them backwards with the symbolic VJP of f: k̄_i = h b_i ȳ_{n+1} (+ dense-output terms
at the saved times inside the step), then for i = s-1 … 0, (Ȳ_i, θ̄_i, t̄_i) = vjp(k̄_i) at
stage i, Ȳ_i flows into ȳ_n and into k̄_j (j < i) through h a_ij. Step sizes are held fixed
and the grid model for dL/dt0 and dL/dt_N is the array engine's (symode.gradients.discrete):
fixed steps t_n = t0 + n (t_N - t0)/N; adaptive steps keep their sizes but the last one ends on
t_N. The result is the exact gradient of the discretised solve, to round-off, per trajectory.
"""

from __future__ import annotations

import numpy as np

from ..codegen.cache import load_module
from ..dynamics import SymbolicDynamics
from ..solvers.cuda_engine import check_device, launch
from ..solvers.kernel_engine import (CUDA_HEADER, HEADER, _f, _Lines, cuda_kernel_options,
                                     run_batch, theta_poly)
from ..solvers.solution import Stats
from ..solvers.tableaus import ButcherTableau
from .discrete import stage_table

__all__ = ["emit_discrete", "discrete_module", "discrete_kernel"]


def _closure(seed: set[int], a) -> set[int]:
    """Stages whose slope feeds the stages in ``seed`` (through a), with ``seed`` itself; one
    pass from the last stage down, since a stage feeds only later ones."""
    need = set(seed)
    for i in range(len(a) - 1, -1, -1):
        if i in need:
            need.update(j for j in range(i) if a[i][j] != 0.0)
    return need


class _DiscreteEmitter:
    """Writes ``discrete_one`` for one tableau and system size."""

    def __init__(self, tab: ButcherTableau, dim: int, n_params: int, target: str):
        self.tab, self.D, self.P, self.target = tab, dim, n_params, target
        a, c, b = stage_table(tab)
        self.a, self.c, self.b = a.tolist(), c.tolist(), b.tolist()
        self.dense_p = None if tab.dense is None else tab.as_float().dense_p.tolist()
        self.S = len(self.c)
        self.main = _closure({i for i, bi in enumerate(self.b) if bi != 0.0}, self.a)
        if self.dense_p is not None:
            used = {i for i, row in enumerate(self.dense_p) if any(row)}
            self.dense_only = _closure(used, self.a) - self.main
        else:   # cubic Hermite: y_n, k_0, y_{n+1} and f(t_{n+1}, y_{n+1})
            self.dense_only = set() if 0 in self.main else {0}
        self.w = _Lines()

    def vec(self, prefix: str) -> str:
        return ", ".join(f"{prefix}{d}" for d in range(self.D))

    def prm(self) -> str:
        return ", ".join(f"p{q}" for q in range(self.P))

    def call(self, fn: str, time: str, state: str, extra: str = "") -> str:
        args = ", ".join(x for x in (time, self.vec(state), self.prm(), extra) if x)
        return f"{fn}({args})"

    def stage(self, i: int) -> None:
        """Y_i and k_i = f(t + c_i h, Y_i)."""
        w, D = self.w, self.D
        for d in range(D):
            terms = [f"{_f(self.a[i][j])}*k{j}_{d}" for j in range(i) if self.a[i][j] != 0.0]
            w(f"Y{i}_{d} = y{d} + h*({' + '.join(terms)})" if terms else f"Y{i}_{d} = y{d}")
        w("nfev += 1")
        w(f"{self.vec(f'k{i}_')}{',' if D == 1 else ''} = "
          + self.call("rhs", f"t + {_f(self.c[i])}*h", f"Y{i}_"))

    def reverse_stage(self, i: int) -> None:
        """The VJP of stage i: into ȳ_n, θ̄, t̄, h̄ and the slopes it was built from."""
        w, D, P = self.w, self.D, self.P
        names = [f"az{d}" for d in range(D)] + [f"ap{q}" for q in range(P)] + ["at"]
        w("nfev += 1")
        w(f"{', '.join(names)} = " + self.call("vjp", f"t + {_f(self.c[i])}*h", f"Y{i}_",
                                               self.vec(f"g{i}_")))
        w("tbs += at")
        if self.c[i] != 0.0:
            w(f"hb += {_f(self.c[i])}*at")
        for d in range(D):
            w(f"yb{d} += az{d}")
        for q in range(P):
            w(f"gp{q} += ap{q}")
        for j in range(i):
            aij = self.a[i][j]
            if aij == 0.0:
                continue
            for d in range(D):
                w(f"g{j}_{d} += h*{_f(aij)}*az{d}")
            w(f"hb += {_f(aij)}*({' + '.join(f'az{d}*k{j}_{d}' for d in range(D))})")

    def outputs_dense(self) -> None:
        """Saved times inside the step through the method's interpolant y_n + h Σ B_i(θ) k_i."""
        w, D = self.w, self.D
        p = self.dense_p
        used = [i for i, row in enumerate(p) if any(row)]
        deg = len(p[0])
        w("th = (tj - t)/h")
        for i in used:
            coeffs = p[i]
            w(f"B{i} = {theta_poly(coeffs)}")               # B_i(θ) and its slope
            slope = _f(deg * coeffs[-1])
            for m in range(deg - 2, -1, -1):
                slope = f"{_f((m + 1) * coeffs[m])} + th*({slope})"
            w(f"dB{i} = {slope}")
        w("dth = 0.0")
        for d in range(D):
            w(f"cj{d} = cot[j, b, {d}]")
            w(f"yb{d} += cj{d}")
        for i in used:
            w(f"ck = {' + '.join(f'cj{d}*k{i}_{d}' for d in range(D))}")
            for d in range(D):
                w(f"g{i}_{d} += h*B{i}*cj{d}")
            w(f"hb += B{i}*ck")
            w(f"dth += h*dB{i}*ck")

    def outputs_hermite(self) -> None:
        """Saved times inside the step through the cubic Hermite interpolant."""
        w, D = self.w, self.D
        w("th = (tj - t)/h")
        w("th2 = th*th")
        w("th3 = th2*th")
        w("h00 = 2.0*th3 - 3.0*th2 + 1.0")
        w("h10 = th3 - 2.0*th2 + th")
        w("h01 = 3.0*th2 - 2.0*th3")
        w("h11 = th3 - th2")
        w("d00 = 6.0*th2 - 6.0*th")
        w("d10 = 3.0*th2 - 4.0*th + 1.0")
        w("d01 = 6.0*th - 6.0*th2")
        w("d11 = 3.0*th2 - 2.0*th")
        for d in range(D):
            w(f"cj{d} = cot[j, b, {d}]")
            w(f"yb{d} += h00*cj{d}")
            w(f"g0_{d} += h*h10*cj{d}")
            w(f"ab{d} += h01*cj{d}")
            w(f"knb{d} += h*h11*cj{d}")
        dot = " + ".join(f"cj{d}*(d00*y{d} + h*d10*k0_{d} + d01*n{d} + h*d11*kn{d})"
                         for d in range(D))
        w(f"dth = {dot}")
        w(f"hb += {' + '.join(f'cj{d}*(h10*k0_{d} + h11*kn{d})' for d in range(D))}")

    def saved_times_in_step(self) -> None:
        """Cotangents of the saved times inside the step, through the interpolant that made
        them (run only for steps that hold saved times)."""
        w, D, P = self.w, self.D, self.P
        hermite = self.dense_p is None
        w("if j > 0 and direction*(tg[tb, j] - t) > 0.0:")
        w.indent()
        for i in sorted(self.dense_only):
            self.stage(i)
        if hermite:
            for d in range(D):
                terms = " + ".join(f"{_f(bi)}*k{i}_{d}" for i, bi in enumerate(self.b)
                                   if bi != 0.0)
                w(f"n{d} = y{d} + h*({terms})")
            w("nfev += 1")
            w(f"{self.vec('kn')}{',' if D == 1 else ''} = " + self.call("rhs", "t_new", "n"))
            for d in range(D):
                w(f"knb{d} = 0.0")
        w("while j > 0 and direction*(tg[tb, j] - t) > 0.0:")
        w.indent()
        w("tj = tg[tb, j]")
        if hermite:
            self.outputs_hermite()
        else:
            self.outputs_dense()
        w("tbar[b, j] += dth/h")
        w("tbs -= dth/h")
        w("hb -= dth*th/h")
        w("j -= 1")
        w.dedent()
        if hermite:
            names = [f"az{d}" for d in range(D)] + [f"ap{q}" for q in range(P)] + ["at"]
            w("nfev += 1")
            w(f"{', '.join(names)} = " + self.call("vjp", "t_new", "n", self.vec("knb")))
            for d in range(D):
                w(f"ab{d} += az{d}")
            for q in range(P):
                w(f"gp{q} += ap{q}")
            w("tbs += at")
            w("hb += at")
        for i in sorted(self.dense_only, reverse=True):
            self.reverse_stage(i)
        w.dedent()

    def emit(self) -> str:
        w, D, P, S = self.w, self.D, self.P, self.S
        w("@JIT")
        w("def discrete_one(b, y_init, tg, prm, rec_t, rec_y, rec_n, cot, fixed, ybar, pbar, "
          "tbar, stats):")
        w.indent()
        w("T = tg.shape[1]")
        w("tb = b if tg.shape[0] > 1 else 0  # one row: shared by the batch")
        w("pb = b if prm.shape[0] > 1 else 0")
        for q in range(P):
            w(f"p{q} = prm[pb, {q}]")
            w(f"gp{q} = 0.0")
        for d in range(D):
            w(f"ab{d} = 0.0  # dL/dy at the end of the current step")
        w("for j in range(T):")
        w("    tbar[b, j] = 0.0")
        w("M = rec_n[b]")
        w("t0 = tg[tb, 0]")
        w("direction = 1.0 if tg[tb, T - 1] >= t0 else -1.0")
        w("sum_t = 0.0")
        w("sum_nt = 0.0")
        w("sum_h = 0.0")
        w("h_last = 0.0")
        w("nfev = 0")
        w("j = T - 1")
        w("for n in range(M - 1, -1, -1):")
        w.indent()
        w("t_new = rec_t[b, n]")
        w("if n > 0:")
        w("    t = rec_t[b, n - 1]")
        for d in range(D):
            w(f"    y{d} = rec_y[b, n - 1, {d}]")
        w("else:")
        w("    t = t0")
        for d in range(D):
            w(f"    y{d} = y_init[b, {d}]")
        w("h = t_new - t")
        for i in sorted(self.main):
            self.stage(i)
        for i in range(S):
            for d in range(D):
                w(f"g{i}_{d} = 0.0")
        for d in range(D):
            w(f"yb{d} = 0.0")
        w("tbs = 0.0")
        w("hb = 0.0")
        self.saved_times_in_step()
        # y_{n+1} = y_n + h Σ b_i k_i
        for d in range(D):
            w(f"yb{d} += ab{d}")
        for i, bi in enumerate(self.b):
            if bi == 0.0:
                continue
            for d in range(D):
                w(f"g{i}_{d} += h*{_f(bi)}*ab{d}")
            w(f"hb += {_f(bi)}*({' + '.join(f'ab{d}*k{i}_{d}' for d in range(D))})")
        for i in sorted(self.main, reverse=True):
            self.reverse_stage(i)
        for d in range(D):
            w(f"ab{d} = yb{d}")
        w("sum_t += tbs")
        w("sum_nt += n*tbs")
        w("sum_h += hb")
        w("if n == M - 1:")
        w("    h_last = hb")
        w.dedent()
        w("while j >= 0:  # saved at the first time: the initial state itself")
        w.indent()
        for d in range(D):
            w(f"ab{d} += cot[j, b, {d}]")
        w("j -= 1")
        w.dedent()
        w("if M > 0:")
        w.indent()
        w("if fixed:")
        w("    tbar[b, 0] += sum_t - sum_nt/M - sum_h/M")
        w("    tbar[b, T - 1] += sum_nt/M + sum_h/M")
        w("else:")
        w("    tbar[b, 0] += sum_t - h_last")
        w("    tbar[b, T - 1] += h_last")
        w.dedent()
        for d in range(D):
            w(f"ybar[b, {d}] = ab{d}")
        for q in range(P):
            w(f"pbar[b, {q}] = gp{q}")
        w("stats[b, 0] = nfev")
        w("stats[b, 1] = M")
        w("stats[b, 2] = 0")
        w.dedent()
        w("")
        w("")
        args = "y_init, tg, prm, rec_t, rec_y, rec_n, cot, fixed, ybar, pbar, tbar, stats"
        if self.target == "cuda":
            w("@KERNEL")
            w(f"def discrete_kernel({args}):")
            w("    b = cuda.grid(1)")
            w("    if b < y_init.shape[0]:")
            w(f"        discrete_one(b, {args})")
        else:
            w("@JIT")
            w(f"def discrete_range(lo, hi, {args}):")
            w("    for b in range(lo, hi):")
            w(f"        discrete_one(b, {args})")
        return w.text()


def emit_discrete(dyn: SymbolicDynamics, tab: ButcherTableau, target: str = "cpu") -> str:
    """Module text of the discrete adjoint of ``dyn`` under ``tab`` for ``target``."""
    body = _DiscreteEmitter(tab, dyn.dim, dyn.n_params, target).emit()
    title = f"{tab.name} discrete adjoint"
    header = (CUDA_HEADER.format(title=title, kernel_options=cuda_kernel_options())
              if target == "cuda" else HEADER.format(title=title))
    return "\n\n".join([header, dyn.rhs_source, dyn.vjp_source, body])


def discrete_module(dyn: SymbolicDynamics, tab: ButcherTableau, device: str = "cpu"):
    """The compiled discrete adjoint, built once per process (and cached on disk)."""
    key = ("discrete", tab, device)
    if key not in dyn.kernels:
        if device == "cuda":
            check_device("cuda")            # numba.cuda importable, or a clear error
        text = emit_discrete(dyn, tab, "cuda" if device == "cuda" else "cpu")
        tag = f"{'cuda_' if device == 'cuda' else ''}discrete_{tab.name}"
        dyn.kernels[key] = load_module(text, tag)
    return dyn.kernels[key]


def discrete_kernel(dyn: SymbolicDynamics, tab: ButcherTableau, tgrid, y0, prm, cot, rec,
                    device: str = "cpu"):
    """Backward sweep of a kernel-engine solve, per trajectory.

    Parameters
    ----------
    tgrid : ndarray, shape (batch, T) (or one broadcast row)
    y0 : ndarray, shape (batch, dim)
    prm : ndarray, shape (batch, P) (or one row)
    cot : ndarray, shape (T, batch, dim)
        dL/dy at the saved times.
    rec : (rec_t, rec_y, rec_n)
        Every accepted step's end time and state (batch, R) and (batch, R, dim), and the
        number of steps (batch,), with R ≥ the largest number of steps.

    Returns
    -------
    y0_bar : ndarray, shape (batch, dim)
    p_bar : ndarray, shape (batch, P)
    t_bar : ndarray, shape (batch, T)
    stats : Stats (nfev: f and VJP evaluations of the sweep; naccept: steps swept)
    """
    from ..solvers.solve import compact

    rec_t, rec_y, rec_n = rec
    batch, T = y0.shape[0], tgrid.shape[1]
    D, P = dyn.dim, dyn.n_params
    module = discrete_module(dyn, tab, device)
    inputs = (y0, compact(tgrid), compact(prm), rec_t, rec_y, rec_n, np.ascontiguousarray(cot),
              not tab.adaptive)
    outputs = (np.empty((batch, D)), np.empty((batch, P)), np.empty((batch, T)),
               np.zeros((batch, 3), dtype=np.int64))
    if device == "cuda":
        dev_out = launch(module, "discrete", batch, inputs, outputs)
        outputs = tuple(d.copy_to_host() for d in dev_out)
    else:
        inputs = tuple(np.ascontiguousarray(a) if isinstance(a, np.ndarray) else a
                       for a in inputs)
        run_batch(module, batch, *inputs, *outputs, entry="discrete_range")
    y0_bar, p_bar, t_bar, stats = outputs
    return y0_bar, p_bar, t_bar, Stats(stats[:, 0], stats[:, 1], stats[:, 2])
