"""Batch slices in threads: the same maps and derivatives as one whole-batch pass."""

import warnings

import numpy as np
import pytest

from symode import nn
from symode.errors import ShapeError
from symode.nn import parallel
from symode.nn.module import _Sliced


@pytest.fixture
def split_everything(monkeypatch):
    """Split every batch among 3 threads, however small."""
    monkeypatch.setattr(parallel, "MIN_SLICE_BYTES", 1)
    with parallel.num_threads(3):
        yield


class BatchMean(nn.Module):
    """Not per-sample: every output row is the batch mean (ties the samples together)."""

    def forward(self, theta, x, t=0.0):
        return np.broadcast_to(x.mean(axis=0), x.shape).copy(), x.shape[0]

    def vjp(self, theta, cache, ybar):
        return np.broadcast_to(ybar.sum(axis=0) / cache, ybar.shape).copy(), np.zeros(0)

    def jvp(self, theta, cache, xdot, thetadot=None):
        return np.broadcast_to(xdot.mean(axis=0), xdot.shape).copy()


def conv_net():
    return nn.Sequential(
        nn.GroupNorm(2, 4), nn.ReLU(), nn.ConcatConv2d(4, 4, 3, padding=1),
        nn.Sequential(nn.GroupNorm(2, 4), nn.Tanh()),               # nested: runs inside a slice
        BatchMean(),
        nn.Conv2d(4, 3, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(12, 5))


def passes(net, theta, x, ybar, xdot, thetadot, t=0.3):
    y, cache = net.forward(theta, x, t)
    xbar, thetabar, tbar = net.vjp_t(theta, cache, ybar)
    return y, xbar, thetabar, tbar, net.jvp(theta, cache, xdot, thetadot), cache


def test_sliced_runs_match_the_whole_batch(split_everything):
    rng = np.random.default_rng(0)
    net = conv_net()
    theta = net.init(rng)
    x = rng.standard_normal((7, 4, 4, 4))
    ybar, xdot = rng.standard_normal((7, 5)), rng.standard_normal(x.shape)
    thetadot = rng.standard_normal(theta.shape)
    got = passes(net, theta, x, ybar, xdot, thetadot)
    assert [type(c) for c in got[-1]] == [_Sliced, list, _Sliced]    # per-sample, not, per-sample
    assert [len(c.slices) for c in got[-1][::2]] == [3, 3]
    with parallel.num_threads(1):
        want = passes(net, theta, x, ybar, xdot, thetadot)
    assert all(type(c) is list for c in want[-1])
    for g, w in zip(got[:-1], want[:-1]):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def test_sliced_gradient_matches_central_differences(split_everything):
    rng = np.random.default_rng(1)
    net = conv_net()
    theta = net.init(rng)
    x = rng.standard_normal((5, 4, 4, 4))
    ybar = rng.standard_normal((5, 5))
    _, cache = net.forward(theta, x, 0.3)
    _, thetabar, tbar = net.vjp_t(theta, cache, ybar)
    v = rng.standard_normal(theta.shape)
    eps = 1e-6

    def loss(th, t=0.3):
        return float(np.vdot(ybar, net.forward(th, x, t)[0]))

    fd = (loss(theta + eps * v) - loss(theta - eps * v)) / (2 * eps)
    assert np.vdot(thetabar, v) == pytest.approx(fd, rel=1e-7, abs=1e-9)
    fd_t = (loss(theta, 0.3 + eps) - loss(theta, 0.3 - eps)) / (2 * eps)
    assert tbar == pytest.approx(fd_t, rel=1e-7, abs=1e-9)


def test_small_batches_and_one_thread_stay_whole(monkeypatch):
    x = np.zeros((64, 100))                                      # 51 KiB
    with parallel.num_threads(2):
        assert parallel.batch_slices(x) is None                  # under MIN_SLICE_BYTES a slice
        big = np.zeros((64, 1000))
        assert parallel.batch_slices(big) == [slice(0, 32), slice(32, 64)]
    with parallel.num_threads(1):
        assert parallel.batch_slices(big) is None
    monkeypatch.setattr(parallel, "_blas_controller", lambda: None)
    with parallel.num_threads(2):
        assert parallel.batch_slices(big) is None                # BLAS cannot be held to 1


def test_a_narrow_input_to_wide_layers_is_split(monkeypatch):
    """A flow's 2-D points feed 64-wide layers: the layers' width decides, not the input's."""
    x = np.zeros((1000, 2))                                      # 16 KiB, 500 KiB at width 64
    with parallel.num_threads(2):
        assert parallel.batch_slices(x) is None
        assert parallel.batch_slices(x, width=64) == [slice(0, 500), slice(500, 1000)]
        assert parallel.batch_slices(x[:100], width=64) is None  # 51 KiB
        net = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 2))
        theta = net.init(np.random.default_rng(0))
        points = np.random.default_rng(1).normal(size=(1000, 2))
        y, cache = net.forward(theta, points)
        assert isinstance(cache[0], _Sliced)
    with parallel.num_threads(1):
        np.testing.assert_allclose(y, net(theta, points), rtol=1e-13, atol=1e-15)


def test_slices_do_not_split_again(split_everything):
    seen = []

    def job(s):
        seen.append(parallel.batch_slices(np.zeros((8, 4))))
        return s

    assert parallel.map_slices(job, [slice(0, 4), slice(4, 8)]) == [slice(0, 4), slice(4, 8)]
    assert seen == [None, None]


def test_errors_in_a_slice_reach_the_caller(split_everything):
    net = nn.Sequential(nn.Linear(3, 2))
    theta = net.init(np.random.default_rng(0))
    with pytest.raises(ShapeError, match="expected x of shape"):
        net.forward(theta, np.zeros((6, 4)))


def test_thread_count_checks(monkeypatch):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            parallel.set_num_threads(bad)
    monkeypatch.setenv("SYMODE_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="SYMODE_NUM_THREADS"):
        parallel._default_threads()
    monkeypatch.setenv("SYMODE_NUM_THREADS", "3")
    assert parallel._default_threads() == 3


def test_per_sample_flags():
    assert nn.Sequential(nn.Conv2d(1, 2, 3), nn.GroupNorm(1, 2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2)).per_sample
    assert nn.Residual(nn.Linear(2, 2)).per_sample
    assert not nn.Sequential(nn.Linear(2, 2), BatchMean()).per_sample
    assert not nn.ODEBlock(nn.Linear(2, 2)).per_sample          # the batch shares its steps


def test_ode_block_with_a_sliced_network_matches_one_thread(split_everything, monkeypatch):
    """The ODE block sees the whole batch (shared steps); its dynamics run on slices."""
    calls = []
    map_slices = parallel.map_slices
    monkeypatch.setattr(parallel, "map_slices", lambda fn, s: calls.append(1) or map_slices(fn, s))
    rng = np.random.default_rng(2)
    net = nn.Sequential(nn.GroupNorm(2, 4), nn.Tanh(), nn.ConcatConv2d(4, 4, 3, padding=1))
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1),
                          nn.ODEBlock(net, rtol=1e-6, atol=1e-6, adjoint="backsolve"),
                          nn.Flatten(), nn.Linear(64, 3))
    theta = model.init(rng)
    x = rng.standard_normal((6, 1, 4, 4))
    ybar = rng.standard_normal((6, 3))

    def run():
        y, cache = model.forward(theta, x)
        return (y,) + model.vjp(theta, cache, ybar) + (cache,)

    *got, cache = run()
    assert [type(c) for c in cache] == [_Sliced, list, _Sliced]
    assert len(calls) > 4 + model.children[1].nfe_forward             # 2 runs x 2 ways + f's
    with parallel.num_threads(1):
        *want, _ = run()
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_a_forked_child_gets_its_own_threads(split_everything):
    import multiprocessing as mp

    net = nn.Sequential(nn.Linear(3, 2), nn.Tanh())
    theta = net.init(np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((6, 3))
    want = net(theta, x)                                       # the parent's pool exists now
    ctx = mp.get_context("fork")
    with warnings.catch_warnings():                 # Python 3.12+ warns of fork with threads
        warnings.simplefilter("ignore", DeprecationWarning)
        with ctx.Pool(1) as pool:
            got = pool.apply_async(_sliced_in_child, (net, theta, x)).get(timeout=60)
    np.testing.assert_allclose(got, want, rtol=1e-14)


def _sliced_in_child(net, theta, x):
    parallel.MIN_SLICE_BYTES = 1
    return net(theta, x)


def test_sliced_second_derivatives_match_the_whole_batch(split_everything):
    rng = np.random.default_rng(2)
    net = nn.Sequential(nn.ConcatSquashLinear(3, 8), nn.Tanh(), BatchMeanDense(),
                        nn.Residual(nn.Sequential(nn.ConcatLinear(8, 8), nn.Softplus())),
                        nn.Linear(8, 3))
    theta = net.init(rng)
    x, xdot, ybar, ydotbar = rng.standard_normal((4, 7, 3))

    def dual():
        _, cache = net.forward(theta, x, 0.4)
        record = net.jvp_record(theta, cache, xdot)[1]
        return cache, net.dual_vjp(theta, cache, record, ybar, ydotbar)

    cache, got = dual()
    assert [type(c) for c in cache] == [_Sliced, list, _Sliced]
    with parallel.num_threads(1):
        want = dual()[1]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


class BatchMeanDense(BatchMean):
    """:class:`BatchMean` with its (zero) second derivatives: it is linear."""

    def vjp_jvp(self, theta, cache, ybar, xdot):
        return np.zeros_like(xdot), np.zeros(0), 0.0
