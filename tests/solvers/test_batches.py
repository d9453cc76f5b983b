"""Batches, per-trajectory parameters and time grids, engines and dtypes."""

import numpy as np
import pytest

import symode as so

import problems


def test_shapes_and_stats():
    p = problems.lorenz(batch=5)
    sol = so.solve(p.ode, p.y0, p.t, params=p.params)
    assert sol.y.shape == (len(p.t), 5, 3)
    assert sol.stats.nfev.shape == (5,) and (sol.stats.nfev > 0).all()
    assert (sol.stats.nfev >= 6 * sol.stats.naccept).all()   # dopri5: 6 new stages a step
    np.testing.assert_array_equal(sol.y[0], p.y0)
    single = so.solve(p.ode, p.y0[0], p.t, params=p.params)
    assert single.y.shape == (len(p.t), 3)
    np.testing.assert_array_equal(single.y, sol.y[:, 0])


def test_per_trajectory_params_equal_solving_each_alone():
    p = problems.decay(batch=4)
    sol = so.solve(p.ode, p.y0, p.t, params=p.params, rtol=1e-9, atol=1e-12)
    for b in range(4):
        alone = so.solve(p.ode, p.y0[b], p.t, params=p.params[b], rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(sol.y[:, b], alone.y)
    np.testing.assert_allclose(sol.y, p.exact(p.t), rtol=1e-8)


def test_per_trajectory_time_grids_equal_solving_each_alone(rng):
    p = problems.forced_van_der_pol(batch=3)
    grids = np.stack([np.sort(rng.uniform(0.0, 4.0, 6)) for _ in range(3)])
    grids[:, 0] = [0.0, 0.5, -1.0]                 # each its own start time too
    sol = so.solve(p.ode, p.y0, grids, params=p.params, rtol=1e-9, atol=1e-11)
    assert sol.y.shape == (6, 3, 2)
    for b in range(3):
        alone = so.solve(p.ode, p.y0[b], grids[b], params=p.params, rtol=1e-9, atol=1e-11)
        np.testing.assert_array_equal(sol.y[:, b], alone.y)
    ref = problems.scipy_reference(p, t=grids)
    np.testing.assert_allclose(sol.y, ref, atol=1e-7)


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "dop853", "bosh3", "rk4", "euler"])
def test_kernel_engine_equals_array_engine_for_one_trajectory(method):
    p = problems.forced_van_der_pol(batch=1)
    opts = {"n_steps": 50} if method in ("rk4", "euler") else {"rtol": 1e-7, "atol": 1e-9}
    k = so.solve(p.ode, p.y0, p.t, params=p.params, method=method, engine="kernel", **opts)
    a = so.solve(p.ode, p.y0, p.t, params=p.params, method=method, engine="array", **opts)
    assert (k.engine, a.engine) == ("kernel", "array")
    np.testing.assert_array_equal(k.stats.naccept, a.stats.naccept)
    np.testing.assert_allclose(k.y, a.y, rtol=1e-11, atol=1e-12)


def test_array_engine_batch_meets_tolerance_like_kernel_engine():
    p = problems.lorenz(batch=6)
    k = so.solve(p.ode, p.y0, p.t, params=p.params, rtol=1e-8, atol=1e-10, engine="kernel")
    a = so.solve(p.ode, p.y0, p.t, params=p.params, rtol=1e-8, atol=1e-10, engine="array")
    ref = problems.scipy_reference(p)
    for sol in (k, a):
        assert np.max(np.abs(sol.y - ref) / (1 + np.abs(ref))) < 1e-5
    assert a.stats.shared and not k.stats.shared


def test_plain_python_function_in_array_engine():
    a = np.array([[-0.1, -1.0], [1.0, -0.1]])
    p = problems.linear_spiral()
    sol = so.solve(lambda t, z, theta: z @ a.T, p.y0, p.t, rtol=1e-9, atol=1e-12)
    assert sol.engine == "array"
    np.testing.assert_allclose(sol.y, p.exact(p.t), atol=1e-8)


def test_float32_in_float32_out():
    p = problems.linear_spiral()
    sol = so.solve(p.ode, p.y0.astype(np.float32), p.t)
    assert sol.y.dtype == np.float32
    np.testing.assert_allclose(sol.y, p.exact(p.t), atol=1e-5)


def test_batch_larger_than_threads_uses_every_chunk(rng):
    p = problems.decay(batch=257)
    sol = so.solve(p.ode, p.y0, p.t, params=p.params, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sol.y, p.exact(p.t), rtol=1e-7)


def test_repr_and_stats_text():
    p = problems.decay(batch=2)
    sol = so.solve(p.ode, p.y0, p.t, params=p.params)
    assert "dopri5" in repr(sol) and "nfev" in repr(sol)
    assert "naccept" in str(sol.stats)


def test_generated_source_is_readable():
    p = problems.lorenz()
    rhs = so.source(p.ode, "rhs")
    assert rhs.startswith("@JIT") and "def rhs(t, z0, z1, z2, p0, p1, p2)" in rhs
    kernel = so.source(p.ode, "kernel", method="dopri5")
    assert "def solve_one" in kernel and "k6_2" in kernel
