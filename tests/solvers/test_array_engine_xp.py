"""The array engine on its array-module path (cupy's, tested on numpy with the compiled loops
off) against its numpy path with the compiled stage sums and error pass."""

import numba
import numpy as np
import pytest

from symode.backend import kernel_target
from symode.solvers import array_engine as ae
from symode.solvers.controllers import PIController
from symode.solvers.kernel_engine import OK
from symode.solvers.tableaus import get_tableau


def _system(rng, shape):
    """dy/dt = sin(y)·a - (1 + t)·y on a state of ``shape`` (large: the compiled path)."""
    a = rng.standard_normal(shape)
    return lambda t, y: np.sin(y) * a - (1 + t) * y


def _solve(fun, method, y0, tgrid, **kw):
    opts = dict(rtol=1e-6, atol=1e-8, controller=PIController())
    opts.update(kw)
    return ae.integrate_arrays(fun, get_tableau(method), y0, tgrid, **opts)


@pytest.mark.parametrize("method", ["dopri5", "dop853", "bosh3"])
@pytest.mark.parametrize("error_norm, norm_dims", [("trajectory", None), ("batch", None),
                                                   ("trajectory", 5000)])
def test_array_module_path_equals_compiled_path(method, error_norm, norm_dims, rng,
                                                monkeypatch):
    shape = (3, 6000)                          # 18000 elements: over FAST_MIN_SIZE
    assert shape[0] * shape[1] >= ae.FAST_MIN_SIZE
    fun = _system(rng, shape)
    y0 = rng.standard_normal(shape)
    tgrid = np.array([[0.0, 0.13, 0.4], [0.0, 0.25, 0.4], [0.0, 0.4, 0.4]])
    kw = dict(error_norm=error_norm, norm_dims=norm_dims)
    ref = _solve(fun, method, y0, tgrid, **kw)

    def compiled(*args):
        raise AssertionError("the array-module path ran a compiled CPU loop")

    monkeypatch.setattr(ae, "_stage_sum", compiled)
    monkeypatch.setattr(ae, "_error_sums", compiled)
    with kernel_target("cuda"):
        res = _solve(fun, method, y0, tgrid, **kw)
    assert (res.nfev, res.naccept, res.nreject) == (ref.nfev, ref.naccept, ref.nreject)
    np.testing.assert_allclose(res.y, ref.y, rtol=1e-13, atol=1e-13)
    assert (res.status == OK).all() and (ref.status == OK).all()


def test_array_module_path_small_state_and_array_tolerances(rng):
    """Small states run the plain array expressions on either path: identical results."""
    fun = _system(rng, (4, 3))
    y0 = rng.standard_normal((4, 3))
    tgrid = np.tile([0.0, 0.3, 1.0], (4, 1))
    kw = dict(rtol=np.array([1e-6, 1e-5, 1e-6]), atol=1e-8)
    ref = _solve(fun, "tsit5", y0, tgrid, **kw)
    with kernel_target("cuda"):
        res = _solve(fun, "tsit5", y0, tgrid, **kw)
    np.testing.assert_array_equal(res.y, ref.y)


@pytest.mark.cuda
@pytest.mark.parametrize("method", ["dopri5", "dop853", "rk4"])
def test_cupy_state_stays_on_the_gpu(method, rng):
    cp = pytest.importorskip("cupy", reason="cupy (the cuda extra) is not installed")
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no GPU")
    except Exception as exc:
        pytest.skip(f"no usable GPU: {exc}")
    if numba.config.ENABLE_CUDASIM:
        pytest.skip("numba's CUDA simulator is on; run with SYMODE_TEST_GPU=1 on a GPU")
    shape = (4, 5000)
    a = rng.standard_normal(shape)
    y0 = rng.standard_normal(shape)
    tgrid = np.tile([0.0, 0.21, 0.5], (shape[0], 1))
    kw = {"step_size": 0.05} if method == "rk4" else {}
    ref = _solve(lambda t, y: np.sin(y) * a - (1 + t) * y, method, y0, tgrid, **kw)
    a_g = cp.asarray(a)
    res = _solve(lambda t, y: cp.sin(y) * a_g - (1 + t) * y, method, cp.asarray(y0), tgrid,
                 **kw)
    assert isinstance(res.y, cp.ndarray)
    assert (res.naccept, res.nreject) == (ref.naccept, ref.nreject)
    np.testing.assert_allclose(res.y.get(), ref.y, rtol=1e-11, atol=1e-12)
