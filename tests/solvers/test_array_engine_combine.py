"""The array engine's compiled stage sums and error estimate (large states) against numpy."""

import numpy as np
import pytest

from symode.solvers import array_engine as ae
from symode.solvers.tableaus import get_tableau


def numpy_step(st, t, y, k0, h):
    """The stages and new state by the plain numpy formulas."""
    ks, y_new = [k0], None
    for j in range(1, st.n_stages):
        inc = ae._combine(st.a[j], ks)
        ys = y if inc is None else y + h * inc
        if st.fsal and j == st.n_stages - 1:
            y_new = ys
        ks.append(st.fun(t + st.c[j] * h, ys))
    if y_new is None:
        y_new = y + h * ae._combine(st.b, ks)
    return ks, y_new


def rhs(rng, shape, dtype):
    a = rng.standard_normal(shape)
    return lambda t, y: (np.sin(y) * a - (1 + t) * y).astype(dtype)


@pytest.mark.parametrize("method", ["dopri5", "dop853", "rk4"])
@pytest.mark.parametrize("ydt, kdt, h", [
    (np.float32, np.float32, 0.05), (np.float64, np.float64, 0.05),
    (np.float32, np.float64, 0.05),                   # stages upcast the state
    (np.float32, np.float32, np.float64(0.05)),       # a float64 step upcasts the sums
])
def test_stage_sums_equal_numpy(method, ydt, kdt, h, rng):
    shape = (3, 7001)
    y = rng.standard_normal(shape).astype(ydt)
    st = ae._Stepper(rhs(rng, shape, kdt), get_tableau(method))
    ks, y_new = st.step(0.1, y, st.fun(0.1, y), h)
    ref_ks, ref = numpy_step(st, 0.1, y, ks[0], h)
    assert y_new.dtype == ref.dtype == np.result_type(y, h * ks[0])
    np.testing.assert_array_equal(y_new, ref)            # same operations in the same order
    for k, r in zip(ks, ref_ks):
        np.testing.assert_array_equal(k, r)


def test_stage_sums_fall_back_to_numpy(rng):
    """Stages that are not C-contiguous (or small states) take numpy's path, unchanged."""
    shape = (3, 7001)
    y = rng.standard_normal(shape)
    st = ae._Stepper(lambda t, y: np.asfortranarray(-y), get_tableau("dopri5"))
    ks, y_new = st.step(0.0, y, st.fun(0.0, y), 0.1)
    np.testing.assert_array_equal(y_new, numpy_step(st, 0.0, y, ks[0], 0.1)[1])
    small = y[:, :10].copy()
    ks, y_new = st.step(0.0, small, st.fun(0.0, small), 0.1)
    np.testing.assert_array_equal(y_new, numpy_step(st, 0.0, small, ks[0], 0.1)[1])


@pytest.mark.parametrize("method", ["dopri5", "dop853"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 9001), (6000, 3)])
@pytest.mark.parametrize("whole_batch", [False, True])
@pytest.mark.parametrize("norm_dims", [None, 2, 5000])
def test_error_ratio_equals_numpy(method, dtype, shape, whole_batch, norm_dims, rng):
    y = rng.standard_normal(shape).astype(dtype)
    st = ae._Stepper(rhs(rng, shape, dtype), get_tableau(method))
    ks, y_new = st.step(0.0, y, st.fun(0.0, y), 0.05)
    args = (st.b_err, st.b_err3, ks, y, y_new, 1e-6, 1e-8, norm_dims)
    assert ae._error_sums(*args) is not None                  # the compiled path is taken
    fast = st.error_ratio(0.05, ks, y, y_new, 1e-6, 1e-8, norm_dims, whole_batch)
    # numpy's formulas (array tolerances take them): the sums of squares differ in round-off
    ref = st.error_ratio(0.05, ks, y, y_new, np.full(shape[1:], 1e-6), 1e-8, norm_dims,
                         whole_batch)
    assert fast.shape == ref.shape == ((1,) if whole_batch else (shape[0],))
    np.testing.assert_allclose(fast, ref, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_error_ratio_keeps_nan(rng):
    shape = (2, 9001)
    y = rng.standard_normal(shape)
    st = ae._Stepper(rhs(rng, shape, np.float64), get_tableau("dopri5"))
    ks, y_new = st.step(0.0, y, st.fun(0.0, y), 0.05)
    y_new[1, 17] = np.nan
    r = st.error_ratio(0.05, ks, y, y_new, 1e-6, 1e-8)
    assert np.isfinite(r[0]) and np.isnan(r[1])
    assert np.isnan(st.error_ratio(0.05, ks, y, y_new, 1e-6, 1e-8, whole_batch=True)).all()


@pytest.mark.parametrize("method", ["dopri5", "dop853"])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-8), (np.float32, 1e-4)])
def test_large_linear_system_solve(method, dtype, rtol, rng, monkeypatch):
    """dy/dt = -y over 50,000 entries equals exp(-t) y0, and the numpy path's solve."""
    y0 = rng.uniform(0.5, 2.0, (1, 50_000)).astype(dtype)
    tgrid = np.array([[0.0, 0.3, 1.0, 2.0]])
    atol = rtol * 1e-2
    res = ae.integrate_arrays(lambda t, y: -y, get_tableau(method), y0, tgrid, rtol, atol)
    assert (res.status == 0).all() and res.y.dtype == dtype
    exact = np.exp(-tgrid[0])[:, None, None] * y0.astype(np.float64)
    np.testing.assert_allclose(res.y, exact, rtol=50 * rtol)
    monkeypatch.setattr(ae, "FAST_MIN_SIZE", 10**9)              # numpy throughout
    ref = ae.integrate_arrays(lambda t, y: -y, get_tableau(method), y0, tgrid, rtol, atol)
    if dtype == np.float64:
        assert (res.naccept, res.nreject, res.nfev) == (ref.naccept, ref.nreject, ref.nfev)
        np.testing.assert_allclose(res.y, ref.y, rtol=1e-12)
    else:
        np.testing.assert_allclose(res.y, ref.y, rtol=20 * rtol)
