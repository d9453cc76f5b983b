"""How a stiff step solves its linear systems, planned from the derived Jacobian's structure.

A Rosenbrock step factors ``W = I/(hγ) - J`` once and solves with it once per stage (and with
``Wᵀ`` in the discrete adjoint). The nonzero pattern of ``J`` is known exactly at generation
time, so the factorisation is generated for it, in one of two forms:

* **band**: LU with partial pivoting (as LAPACK's banded LU) within the band of ``J``, the states
  taken in the declared order or in reverse Cuthill-McKee order where that narrows the band. A
  full matrix is the band ``D - 1``. Small and banded systems (stiff oscillators, 1-D
  reaction-diffusion) use it.
* **sparse**: LU over the filled pattern only, pivots on the diagonal, the states in a Markowitz
  order chosen to keep fill-in small (as KPP does for atmospheric chemistry): the index lists of
  ``L`` and ``U`` are computed here and the generated loops visit just those entries. Chemical
  mechanisms, whose species couple through a few hub radicals, use it. The diagonal of ``W``
  grows as ``1/(hγ)`` when a step shrinks, so a zero pivot is answered by a smaller step.

:func:`lu_plan` picks the form whose factorisation and solves cost fewer multiply-adds, the
sparse one only where it saves at least half (its loops index through lists).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..codegen.source import is_zero

__all__ = ["LUPlan", "jacobian_pattern", "jacobian_band", "band_plan", "sparse_plan", "lu_plan",
           "lu_source", "pattern_source", "BAND_LU", "SPARSE_LU"]

SPARSE_GAIN = 2.0   # the sparse form is chosen where it costs at most 1/SPARSE_GAIN of the band's


@dataclass(frozen=True)
class LUPlan:
    """The factorisation of ``W`` for one pattern: ``order`` (the LU's state order, ``W'[i, j]
    = W[order[i], order[j]]``) and either a band (``kl`` sub-, ``ku`` superdiagonals of ``W'``,
    partial pivoting) or, for ``sparse``, the filled pattern of ``W'``: ``lower[k]`` the rows
    below the diagonal in column k of L, ``upper[k]`` the columns right of it in row k of U."""

    order: tuple[int, ...]
    kl: int = 0
    ku: int = 0
    lower: tuple[tuple[int, ...], ...] | None = None
    upper: tuple[tuple[int, ...], ...] | None = None

    @property
    def dim(self) -> int:
        return len(self.order)

    @property
    def sparse(self) -> bool:
        return self.lower is not None

    @property
    def klu(self) -> int:
        """U's band under partial pivoting: ``min(D - 1, kl + ku)``."""
        return min(self.dim - 1, self.kl + self.ku)

    def cost(self, solves: int = 6) -> int:
        """Multiply-adds of one factorisation and ``solves`` solves."""
        n = self.dim
        if self.sparse:
            factor = sum(len(lo) * (1 + len(up)) for lo, up in zip(self.lower, self.upper))
            solve = sum(len(lo) + len(up) + 1 for lo, up in zip(self.lower, self.upper))
        else:
            below = [min(self.kl, n - 1 - k) for k in range(n)]
            right = [min(self.klu, n - 1 - k) for k in range(n)]
            factor = sum(b * (1 + r) for b, r in zip(below, right))
            solve = sum(b + r + 1 for b, r in zip(below, right))
        return factor + solves * solve


def jacobian_pattern(dyn) -> list[tuple[int, int]]:
    """The (row, column) entries of the derived Jacobian that are not identically zero."""
    J = dyn.ode.jacobian
    return [(r, c) for r in range(J.rows) for c in range(J.cols) if not is_zero(J[r, c])]


def _band(nonzero, pos) -> tuple[int, int]:
    return (int(max([pos[r] - pos[c] for r, c in nonzero] + [0])),
            int(max([pos[c] - pos[r] for r, c in nonzero] + [0])))


def jacobian_band(dyn) -> tuple[int, int]:
    """(subdiagonals, superdiagonals) of the derived Jacobian in the declared state order: how
    far from the diagonal its entries that are not identically zero lie."""
    return _band(jacobian_pattern(dyn), range(dyn.dim))


def band_plan(D: int, nonzero) -> LUPlan:
    """The banded LU in the declared order, or in the reverse Cuthill-McKee order of the
    pattern where that narrows the band (a reaction-diffusion system declared species by
    species)."""
    from scipy.sparse import coo_matrix, identity
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    natural = _band(nonzero, range(D))
    if D > 2 and nonzero:
        rows, cols = zip(*nonzero)
        pattern = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(D, D))
        order = [int(i) for i in reverse_cuthill_mckee(
            (pattern + pattern.T + identity(D)).tocsr(), symmetric_mode=True)]
        band = _band(nonzero, np.argsort(order))
        if sum(band) < sum(natural):
            return LUPlan(tuple(order), *band)
    return LUPlan(tuple(range(D)), *natural)


def markowitz_order(D: int, nonzero) -> list[int]:
    """Elimination order with diagonal pivots, each the one of least Markowitz count
    ``(r - 1)(c - 1)`` (r, c: its row's and column's entries in the part not yet eliminated,
    fill-in included); ties go to the sparser row, then to the declared order."""
    rows = [{i} for i in range(D)]
    cols = [{i} for i in range(D)]
    for r, c in nonzero:
        rows[r].add(c)
        cols[c].add(r)
    active = set(range(D))
    order = []
    for _ in range(D):
        k = min(active, key=lambda i: ((len(rows[i]) - 1) * (len(cols[i]) - 1), len(rows[i]), i))
        lower, upper = cols[k] - {k}, rows[k] - {k}
        for i in lower:
            rows[i] |= upper
            rows[i].discard(k)
        for j in upper:
            cols[j] |= lower
            cols[j].discard(k)
        active.remove(k)
        order.append(k)
    return order


def sparse_plan(D: int, nonzero, order=None) -> LUPlan:
    """The sparse LU in ``order`` (a Markowitz order by default), with the filled pattern of
    its L and U found by eliminating symbolically."""
    order = list(markowitz_order(D, nonzero) if order is None else order)
    pos = np.argsort(order)
    below = [set() for _ in range(D)]      # column k of L: rows > k
    right = [set() for _ in range(D)]      # row k of U: columns > k
    for r, c in nonzero:
        i, j = int(pos[r]), int(pos[c])
        if i > j:
            below[j].add(i)
        elif j > i:
            right[i].add(j)
    for k in range(D):
        for i in below[k]:                 # row i takes row k's columns
            for j in right[k]:
                if j > i:
                    right[i].add(j)
                elif j < i:
                    below[j].add(i)
    return LUPlan(tuple(int(i) for i in order),
                  lower=tuple(tuple(sorted(s)) for s in below),
                  upper=tuple(tuple(sorted(s)) for s in right))


def lu_plan(dyn, solves: int = 6) -> LUPlan:
    """The plan for a system's derived Jacobian: the band, or the sparse LU where it costs at
    most half as many multiply-adds (one factorisation and ``solves`` solves)."""
    nonzero = jacobian_pattern(dyn)
    band = band_plan(dyn.dim, nonzero)
    if dyn.dim < 4:
        return band
    sparse = sparse_plan(dyn.dim, nonzero)
    return sparse if SPARSE_GAIN * sparse.cost(solves) <= band.cost(solves) else band


def _index_lists(lists) -> tuple[list[int], list[int]]:
    """Compressed form: entries of list k are ``idx[ptr[k]:ptr[k + 1]]``; ``idx`` has one spare
    entry so that it is never empty."""
    ptr, idx = [0], []
    for entries in lists:
        idx.extend(entries)
        ptr.append(len(idx))
    return ptr, idx + [0]


def pattern_source(dyn) -> str:
    """``JP``, ``JC``: the derived Jacobian's nonzeros by row, J[i, JC[JP[i]:JP[i + 1]]]."""
    by_row = [[] for _ in range(dyn.dim)]
    for r, c in jacobian_pattern(dyn):
        by_row[r].append(c)
    ptr, idx = _index_lists(by_row)
    return (f"JP = np.array({ptr!r}, dtype=np.int64)\n"
            f"JC = np.array({idx!r}, dtype=np.int64)\n")


# Both forms define form_w (W' = I/(hγ) - J in LU order), lu_factor(W, piv) (False where a pivot
# is zero or not finite), and the solves with W' and W'ᵀ in place, solve_ordered(W, piv, x) and
# solve_t_ordered(W, piv, x); PERMUTED_SOLVES wraps them as lu_solve(W, piv, X, q) (W z = X[q] in
# place) and lu_solve_t(W, piv, v) (Wᵀ z = v in place). {D}: dimension.

# Banded, partial pivoting: {KL} sub- and {KU} superdiagonals, U's band {KLU} = min(D - 1,
# KL + KU). As in LAPACK's banded LU, a row exchange at step k leaves the multipliers of
# earlier columns in place, so L keeps its band and the solves apply exchanges and eliminations
# in turn.
BAND_LU = """
ORD = np.array({order!r}, dtype=np.int64)


@JIT
def form_w(J, inv, W):
    for r in range({D}):
        for c in range(max(0, r - {KL}), min({D}, r + {KLU} + 1)):
            W[r, c] = -J[ORD[r], ORD[c]]
        W[r, r] += inv


@JIT
def lu_factor(W, piv):
    \"\"\"W = (P_0 L_0 .. P_(n-1) L_(n-1)) U in place, within the band: U on and above the
    diagonal, the multipliers of L_k below it in column k.\"\"\"
    n = {D}
    for k in range(n):
        last = min(n - 1, k + {KL})
        right = min(n - 1, k + {KLU})
        p = k
        big = abs(W[k, k])
        for r in range(k + 1, last + 1):
            if abs(W[r, k]) > big:
                big = abs(W[r, k])
                p = r
        if not (big > 0.0 and big < math.inf):
            return False
        piv[k] = p
        if p != k:
            for c in range(k, right + 1):
                W[k, c], W[p, c] = W[p, c], W[k, c]
        inv = 1.0 / W[k, k]
        for r in range(k + 1, last + 1):
            l = W[r, k] * inv
            W[r, k] = l
            if l != 0.0:
                for c in range(k + 1, right + 1):
                    W[r, c] -= l * W[k, c]
    return True


@JIT
def solve_ordered(W, piv, x):
    n = {D}
    for k in range(n):
        p = piv[k]
        if p != k:
            x[k], x[p] = x[p], x[k]
        xk = x[k]
        if xk != 0.0:
            for r in range(k + 1, min(n - 1, k + {KL}) + 1):
                x[r] -= W[r, k] * xk
    for r in range(n - 1, -1, -1):
        s = x[r]
        for c in range(r + 1, min(n - 1, r + {KLU}) + 1):
            s -= W[r, c] * x[c]
        x[r] = s / W[r, r]


@JIT
def solve_t_ordered(W, piv, x):
    \"\"\"Uᵀ w = x, then the transposed eliminations and exchanges in reverse order.\"\"\"
    n = {D}
    for r in range(n):
        s = x[r]
        for c in range(max(0, r - {KLU}), r):
            s -= W[c, r] * x[c]
        x[r] = s / W[r, r]
    for k in range(n - 1, -1, -1):
        s = x[k]
        for r in range(k + 1, min(n - 1, k + {KL}) + 1):
            s -= W[r, k] * x[r]
        x[k] = s
        p = piv[k]
        if p != k:
            x[k], x[p] = x[p], x[k]
"""

# Sparse, diagonal pivots: column k of L holds rows LI[LP[k]:LP[k + 1]], row k of U columns
# UI[UP[k]:UP[k + 1]], fill-in included (entries of W' outside them stay unread). piv is unused.
SPARSE_LU = """
ORD = np.array({order!r}, dtype=np.int64)
LP = np.array({lp!r}, dtype=np.int64)
LI = np.array({li!r}, dtype=np.int64)
UP = np.array({up!r}, dtype=np.int64)
UI = np.array({ui!r}, dtype=np.int64)


@JIT
def form_w(J, inv, W):
    for k in range({D}):
        W[k, k] = inv - J[ORD[k], ORD[k]]
        for a in range(LP[k], LP[k + 1]):
            W[LI[a], k] = -J[ORD[LI[a]], ORD[k]]
        for a in range(UP[k], UP[k + 1]):
            W[k, UI[a]] = -J[ORD[k], ORD[UI[a]]]


@JIT
def lu_factor(W, piv):
    \"\"\"W = L U in place over the filled pattern: U on and above the diagonal, L's
    multipliers below it.\"\"\"
    for k in range({D}):
        d = W[k, k]
        if not (d != 0.0 and abs(d) < math.inf):
            return False
        inv = 1.0 / d
        for a in range(LP[k], LP[k + 1]):
            r = LI[a]
            l = W[r, k] * inv
            W[r, k] = l
            if l != 0.0:
                for b in range(UP[k], UP[k + 1]):
                    W[r, UI[b]] -= l * W[k, UI[b]]
    return True


@JIT
def solve_ordered(W, piv, x):
    n = {D}
    for k in range(n):
        xk = x[k]
        if xk != 0.0:
            for a in range(LP[k], LP[k + 1]):
                x[LI[a]] -= W[LI[a], k] * xk
    for r in range(n - 1, -1, -1):
        s = x[r]
        for a in range(UP[r], UP[r + 1]):
            s -= W[r, UI[a]] * x[UI[a]]
        x[r] = s / W[r, r]


@JIT
def solve_t_ordered(W, piv, x):
    \"\"\"Uᵀ w = x by U's rows, then Lᵀ z = w by L's columns.\"\"\"
    n = {D}
    for r in range(n):
        xr = x[r] / W[r, r]
        x[r] = xr
        if xr != 0.0:
            for a in range(UP[r], UP[r + 1]):
                x[UI[a]] -= W[r, UI[a]] * xr
    for k in range(n - 1, -1, -1):
        s = x[k]
        for a in range(LP[k], LP[k + 1]):
            s -= W[LI[a], k] * x[LI[a]]
        x[k] = s
"""


# The solves in the declared order, around either form's solves in LU order.
PERMUTED_SOLVES = """

@JIT
def lu_solve(W, piv, X, q):
    x = np.empty({D})
    for i in range({D}):
        x[i] = X[q, ORD[i]]
    solve_ordered(W, piv, x)
    for i in range({D}):
        X[q, ORD[i]] = x[i]


@JIT
def lu_solve_t(W, piv, v):
    x = np.empty({D})
    for i in range({D}):
        x[i] = v[ORD[i]]
    solve_t_ordered(W, piv, x)
    for i in range({D}):
        v[ORD[i]] = x[i]
"""


def lu_source(plan: LUPlan) -> str:
    """The generated factorisation and solves of ``plan`` (CPU text; see ``for_target``)."""
    if plan.sparse:
        lp, li = _index_lists(plan.lower)
        up, ui = _index_lists(plan.upper)
        text = SPARSE_LU.format(D=plan.dim, order=list(plan.order), lp=lp, li=li, up=up, ui=ui)
    else:
        text = BAND_LU.format(D=plan.dim, order=list(plan.order), KL=plan.kl, KU=plan.ku,
                              KLU=plan.klu)
    return text + PERMUTED_SOLVES.format(D=plan.dim)
