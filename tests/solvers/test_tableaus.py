"""Butcher tableaus: order conditions from rooted trees, embedded pairs, dense output.

The order conditions are generated here from Butcher's theory (every rooted tree ``t`` with
``|t| <= p`` gives ``sum_i b_i Phi_i(t) = 1/gamma(t)``), independently of how the tableaus were
typed in.  Dense output and error estimates are checked by one-step convergence on a nonlinear,
non-autonomous problem with a closed-form solution, and against scipy where it ships the same
coefficients.
"""

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
from scipy.integrate import RK23, RK45

from symode.errors import SymodeError
from symode.solvers.tableaus import METHODS, ButcherTableau, DenseOutput, get_tableau

NAMES = list(METHODS)
ADAPTIVE = [m for m in NAMES if METHODS[m].adaptive]
DENSE = [m for m in NAMES if METHODS[m].dense is not None]

# The two embedded formulas of DOP853 are of orders 5 and 3; their combination behaves like an
# order-7 estimate (that is ``error_order``), which test_error_estimate_order checks separately.
EMBEDDED_ORDER = {"dop853": 5}


# ---------------------------------------------------------------------------------------------
# rooted trees and elementary weights


def rooted_trees(max_order):
    """All rooted trees with at most ``max_order`` nodes, as canonical nested tuples of children."""
    by_order = {1: [()]}
    flat = [(1, ())]  # (order, tree) in generation order; multisets use nondecreasing indices

    def multisets(remaining, start, pool):
        if remaining == 0:
            yield ()
            return
        for idx in range(start, len(pool)):
            size, tree = pool[idx]
            if size <= remaining:
                for rest in multisets(remaining - size, idx, pool):
                    yield (tree,) + rest

    for n in range(2, max_order + 1):
        pool = list(flat)
        by_order[n] = list(multisets(n - 1, 0, pool))
        flat += [(n, t) for t in by_order[n]]
    return by_order


TREES = rooted_trees(9)


def order_of(tree):
    return 1 + sum(order_of(child) for child in tree)


def density(tree):
    g = order_of(tree)
    for child in tree:
        g *= density(child)
    return g


def elementary_weight(a, tree):
    """Phi(t)_i: 1 for the single node, prod_children (A Phi(child))_i otherwise."""
    s = len(a)
    phi = [1] * s
    for child in tree:
        inner = elementary_weight(a, child)
        a_inner = [sum(a[i][j] * inner[j] for j in range(s)) for i in range(s)]
        phi = [x * y for x, y in zip(phi, a_inner)]
    return phi


def residual(a, b, tree):
    """sum_i b_i Phi_i(t) - 1/gamma(t), and a scale for float round-off."""
    phi = elementary_weight(a, tree)
    value = sum(bi * p for bi, p in zip(b, phi))
    scale = 1 + sum(abs(float(bi) * float(p)) for bi, p in zip(b, phi))
    return value - Fraction(1, density(tree)), scale


def satisfied(a, b, tree):
    res, scale = residual(a, b, tree)
    if isinstance(res, Fraction):
        return res == 0
    return abs(res) <= 1e-13 * scale


def embedded_weights(tab):
    return [bi - ei for bi, ei in zip(tab.b, tab.b_err)]


def test_tree_counts():
    # OEIS A000081
    assert [len(TREES[n]) for n in range(1, 10)] == [1, 1, 2, 4, 9, 20, 48, 115, 286]


# ---------------------------------------------------------------------------------------------
# structure


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_row_sums(name):
    tab = METHODS[name]
    s = tab.n_stages
    assert tab.name == name
    assert len(tab.a) == s and all(len(row) == s for row in tab.a)
    for i in range(s):
        assert all(tab.a[i][j] == 0 for j in range(i, s))
        total = sum(tab.a[i])
        if isinstance(total, Fraction) and isinstance(tab.c[i], Fraction):
            assert total == tab.c[i]
        else:
            assert abs(float(total) - float(tab.c[i])) < 1e-14
    assert sum(tab.b) == pytest.approx(1, abs=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_as_float_matches_exact(name):
    tab = METHODS[name]
    fl = tab.as_float()
    assert fl is tab.as_float()  # cached
    np.testing.assert_array_equal(fl.a, [[float(x) for x in row] for row in tab.a])
    np.testing.assert_array_equal(fl.b, [float(x) for x in tab.b])
    np.testing.assert_array_equal(fl.c, [float(x) for x in tab.c])
    assert fl.a.dtype == np.float64 and not fl.a.flags.writeable
    assert (fl.b_err is None) == (tab.b_err is None)
    assert (fl.dense_p is None) == (tab.dense is None)
    if tab.dense is not None:
        assert fl.dense_p.shape == (tab.n_stages + len(tab.dense.c), tab.dense.degree)
        for j, row in enumerate(tab.dense.a):
            np.testing.assert_array_equal(fl.dense_a[j, :len(row)], [float(x) for x in row])
            assert not fl.dense_a[j, len(row):].any()


def test_fsal_and_adaptive_flags():
    assert {m for m in NAMES if METHODS[m].fsal} == {"bosh3", "dopri5", "tsit5"}
    assert set(ADAPTIVE) == {"bosh3", "dopri5", "tsit5", "dop853"}
    assert METHODS["dop853"].b_err3 is not None
    assert all(METHODS[m].b_err3 is None for m in NAMES if m != "dop853")
    for m in ("bosh3", "dopri5", "tsit5"):
        assert METHODS[m].dense.a == () and METHODS[m].dense.c == ()


# ---------------------------------------------------------------------------------------------
# order conditions


@pytest.mark.parametrize("name", NAMES)
def test_bushy_tree_conditions(name):
    tab = METHODS[name]
    for k in range(1, tab.order + 1):
        value = sum(bi * ci ** (k - 1) for bi, ci in zip(tab.b, tab.c))
        assert float(value) == pytest.approx(1 / k, rel=1e-13, abs=1e-14), k


@pytest.mark.parametrize("name", NAMES)
def test_all_order_conditions(name):
    tab = METHODS[name]
    for n in range(1, tab.order + 1):
        for tree in TREES[n]:
            assert satisfied(tab.a, tab.b, tree), (n, tree, residual(tab.a, tab.b, tree))
    # the order is not higher than claimed
    assert not all(satisfied(tab.a, tab.b, t) for t in TREES[tab.order + 1])


@pytest.mark.parametrize("name", ADAPTIVE)
def test_embedded_order(name):
    tab = METHODS[name]
    q = EMBEDDED_ORDER.get(name, tab.error_order)
    b_hat = embedded_weights(tab)
    for n in range(1, q + 1):
        for tree in TREES[n]:
            assert satisfied(tab.a, b_hat, tree), (n, tree)
    bushy = tuple(() for _ in range(q))  # condition: sum_i b_i c_i^q = 1/(q+1)
    assert not satisfied(tab.a, b_hat, bushy)


def test_dop853_third_order_estimate():
    tab = METHODS["dop853"]
    b3 = [bi - ei for bi, ei in zip(tab.b, tab.b_err3)]
    for n in range(1, 4):
        assert all(satisfied(tab.a, b3, t) for t in TREES[n])
    assert not satisfied(tab.a, b3, ((), (), ()))


# ---------------------------------------------------------------------------------------------
# one-step convergence on a nonlinear, non-autonomous problem with a closed-form solution:
#   y1' = y1 (1 - y1),   y2' = y2 cos t,   y3' = -y3^2 cos t


T0, Y0 = 0.3, np.array([0.2, 1.0, 0.5])


def rhs(t, y):
    return np.array([y[0] * (1 - y[0]), y[1] * np.cos(t), -y[2] ** 2 * np.cos(t)])


def exact(t):
    logistic = 1 / (1 + (1 / Y0[0] - 1) * np.exp(-(t - T0)))
    ds = np.sin(t) - np.sin(T0)
    return np.array([logistic, Y0[1] * np.exp(ds), 1 / (1 / Y0[2] + ds)])


def one_step(tab, f, t0, y0, h):
    """Main stages, extra dense stages and y1 of one explicit step, straight from the tableau."""
    fl = tab.as_float()
    s = tab.n_stages
    ks = []
    for i in range(s):
        ks.append(f(t0 + fl.c[i] * h, y0 + h * sum(fl.a[i, j] * ks[j] for j in range(i))))
    y1 = y0 + h * sum(fl.b[i] * ks[i] for i in range(s))
    if tab.dense is not None:
        for row, c in zip(tab.dense.a, tab.dense.c):
            inc = sum(float(coef) * k for coef, k in zip(row, ks))
            ks.append(f(t0 + float(c) * h, y0 + h * inc))
    return np.array(ks), y1


def interpolate(tab, y0, h, ks, theta):
    p = tab.as_float().dense_p
    weights = [np.polynomial.polynomial.polyval(theta, np.concatenate([[0.0], row])) for row in p]
    return y0 + h * sum(w * k for w, k in zip(weights, ks))


def fitted_slope(hs, errs):
    return np.polyfit(np.log(hs), np.log(errs), 1)[0]


# Step sizes h = 2^-k, k = first..last: small enough to be in the asymptotic range, large enough
# that the errors stay well above round-off (checked by hand for this problem; high-order methods
# with small error constants leave only a narrow window in double precision).
WINDOWS = {  # name: (local step, dense output, error estimate)
    "euler": ((4, 8), None, None),
    "midpoint": ((4, 8), None, None),
    "heun": ((3, 7), None, None),
    "rk4": ((2, 6), None, None),
    "bosh3": ((4, 8), (4, 8), (4, 8)),
    "dopri5": ((1, 5), (5, 7), (3, 8)),
    "tsit5": ((2, 6), (5, 7), (2, 8)),
    "dop853": ((0, 3), (1, 3), (4, 6)),
}


def step_sizes(name, which):
    first, last = WINDOWS[name][which]
    return 0.5 ** np.arange(first, last + 1)


@pytest.mark.parametrize("name", NAMES)
def test_local_error_order(name):
    """One step from the exact state errs by O(h^(order+1)).  (That the order is not higher is
    the tree test's job; pre-asymptotic slopes of the high-order pairs can exceed order + 1.)"""
    tab = METHODS[name]
    hs = step_sizes(name, 0)
    errs = [np.abs(one_step(tab, rhs, T0, Y0, h)[1] - exact(T0 + h)).max() for h in hs]
    assert fitted_slope(hs, errs) > tab.order + 1 - 0.3


def error_estimate(tab, f, y0, h):
    """What the step-size controller sees, in the 2-norm (DOP853 combines its two estimates)."""
    fl = tab.as_float()
    ks, _ = one_step(tab, f, T0, y0, h)
    e5 = np.linalg.norm(fl.b_err @ ks[:tab.n_stages])
    if fl.b_err3 is None:
        return h * e5
    e3 = np.linalg.norm(fl.b_err3 @ ks[:tab.n_stages])
    return h * e5 ** 2 / np.sqrt(e5 ** 2 + 0.01 * e3 ** 2)


@pytest.mark.parametrize("name", ADAPTIVE)
def test_error_estimate_order(name):
    """The estimate shrinks like h^(error_order + 1), the exponent the controller assumes."""
    tab = METHODS[name]
    f, y0 = rhs, Y0
    if name == "dop853":
        # In the y2 = exp(sin t) component DOP853's fifth-order estimate goes through a
        # near-cancellation at moderate h, so the combined estimate (err5 ~ h^6, err3 ~ h^4,
        # err5^2 / err3 ~ h^8) is followed on the other two components.
        def f(t, y):
            return rhs(t, np.array([y[0], 1.0, y[1]]))[[0, 2]]

        y0 = Y0[[0, 2]]
    hs = step_sizes(name, 2)
    ests = [error_estimate(tab, f, y0, h) for h in hs]
    assert abs(fitted_slope(hs, ests) - (tab.error_order + 1)) < 0.3


@pytest.mark.parametrize("name", DENSE)
def test_dense_continuity(name):
    tab = METHODS[name]
    p = tab.as_float().dense_p
    at_one = p.sum(axis=1)
    s = tab.n_stages
    np.testing.assert_allclose(at_one[:s], tab.as_float().b, atol=1e-13)
    np.testing.assert_allclose(at_one[s:], 0.0, atol=1e-12)


@pytest.mark.parametrize("name", DENSE)
@pytest.mark.parametrize("theta", [0.3, 0.7])
def test_dense_order(name, theta):
    tab = METHODS[name]
    hs = step_sizes(name, 1)
    errs = []
    for h in hs:
        ks, _ = one_step(tab, rhs, T0, Y0, h)
        errs.append(np.abs(interpolate(tab, Y0, h, ks, theta) - exact(T0 + theta * h)).max())
    assert abs(fitted_slope(hs, errs) - (tab.dense.order + 1)) < 0.3


# ---------------------------------------------------------------------------------------------
# agreement with scipy where it ships the same method


def test_dopri5_and_bosh3_match_scipy():
    for name, cls in (("dopri5", RK45), ("bosh3", RK23)):
        fl = METHODS[name].as_float()
        s = cls.n_stages  # scipy leaves out the FSAL stage
        np.testing.assert_allclose(fl.a[:s, :s], np.pad(cls.A, ((0, 0), (0, s - cls.A.shape[1]))),
                                   rtol=1e-15, atol=1e-15)
        np.testing.assert_allclose(fl.b[:s], cls.B, rtol=1e-15)
        np.testing.assert_allclose(fl.c[:s], cls.C, rtol=1e-15)
        np.testing.assert_allclose(fl.b_err, -cls.E, rtol=1e-14, atol=1e-16)  # scipy: b_hat - b
        np.testing.assert_allclose(fl.dense_p, cls.P, rtol=1e-14, atol=1e-16)


def test_dop853_matches_scipy_coefficients():
    from scipy.integrate._ivp import dop853_coefficients as ref

    tab = METHODS["dop853"]
    fl = tab.as_float()
    np.testing.assert_array_equal(fl.a, ref.A[:12, :12])
    np.testing.assert_array_equal(fl.b, ref.B)
    np.testing.assert_array_equal(fl.c, ref.C[:12])
    np.testing.assert_array_equal(fl.b_err, ref.E5[:12])
    np.testing.assert_array_equal(fl.b_err3, ref.E3[:12])
    np.testing.assert_array_equal(fl.dense_c, ref.C[12:])
    for j, row in enumerate(tab.dense.a):
        np.testing.assert_array_equal(np.array(row, dtype=float), ref.A[12 + j, :12 + j])


def test_dop853_dense_matches_scipy_nested_form(rng):
    """Expanded p reproduces scipy's nested Horner-like DOP853 interpolant for arbitrary stages."""
    from scipy.integrate._ivp import dop853_coefficients as ref
    from scipy.integrate._ivp.rk import Dop853DenseOutput

    tab = METHODS["dop853"]
    n = 3
    ks = rng.standard_normal((16, n))
    y0 = rng.standard_normal(n)
    t0, h = 0.7, 0.37
    # scipy's construction of its interpolation coefficients
    delta = h * ref.B @ ks[:12]
    F = np.empty((7, n))
    F[0] = delta
    F[1] = h * ks[0] - delta
    F[2] = 2 * delta - h * (ks[12] + ks[0])
    F[3:] = h * ref.D @ ks
    nested = Dop853DenseOutput(t0, t0 + h, y0, F)
    for theta in (0.0, 0.1, 0.3, 0.5, 0.7, 0.95, 1.0):
        ours = interpolate(tab, y0, h, ks, theta)
        np.testing.assert_allclose(ours, nested(t0 + theta * h), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# dataclass behaviour and validation


def test_frozen():
    tab = METHODS["rk4"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        tab.order = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        METHODS["dopri5"].dense.order = 5


def test_hashable_and_equal():
    rk4 = METHODS["rk4"]
    copy = ButcherTableau("rk4", a=[list(row) for row in rk4.a], b=list(rk4.b), c=list(rk4.c),
                          order=4)
    assert copy == rk4 and hash(copy) == hash(rk4)
    assert isinstance(copy.a, tuple) and isinstance(copy.a[0], tuple)
    assert {rk4: 1}[copy] == 1


HALF = Fraction(1, 2)
GOOD = dict(name="t", a=((0, 0), (HALF, 0)), b=(0, 1), c=(0, HALF), order=2)


@pytest.mark.parametrize("change, message", [
    (dict(a=((0, 0),)), "2x2"),
    (dict(a=((0, 0), (HALF, 0, 0))), "2x2"),
    (dict(a=((0, 1), (HALF, 0))), "lower triangular"),
    (dict(a=((0, 0), (HALF, 1))), "lower triangular"),
    (dict(c=(0,)), r"len\(c\)"),
    (dict(b=()), "stage"),
    (dict(b_err=(1, 2, 3), error_order=1), "b_err"),
    (dict(b_err=(1, -1)), "error_order"),
    (dict(b_err3=(1, -1)), "b_err3"),
    (dict(dense=DenseOutput(a=(), c=(), p=((1, 0), (0, 1), (0, 0)), order=2)), "rows"),
    (dict(dense=DenseOutput(a=((1, 0, 0),), c=(1,), p=((1,), (0,), (0,)), order=1)), "length"),
])
def test_bad_shapes_raise(change, message):
    ButcherTableau(**GOOD)  # the base case is valid
    with pytest.raises(ValueError, match=message):
        ButcherTableau(**{**GOOD, **change})


@pytest.mark.parametrize("kwargs, message", [
    (dict(a=((1,),), c=(), p=((1,),), order=1), "extra"),
    (dict(a=((1, 0), (1, 0)), c=(1, 1), p=((1,),), order=1), "extra row 1"),
    (dict(a=(), c=(), p=((1, 0), (1,)), order=1), "same length"),
    (dict(a=(), c=(), p=(), order=1), "at least one"),
    (dict(a=(), c=(), p=((1,),), order=0), "order"),
])
def test_bad_dense_output_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DenseOutput(**kwargs)


def test_get_tableau():
    assert get_tableau("dopri5") is METHODS["dopri5"]
    assert get_tableau("DOPRI5") is METHODS["dopri5"]
    custom = ButcherTableau(**GOOD)
    assert get_tableau(custom) is custom
    with pytest.raises(SymodeError, match="dopri5") as info:
        get_tableau("rk45")
    assert "rk45" in str(info.value)
    with pytest.raises(SymodeError):
        get_tableau(3)
