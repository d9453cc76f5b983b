"""Continuous normalizing flows on images: a convolutional dynamics (ConcatConv2d, GroupNorm,
Softplus, ConcatConv2d) acting on flat states through Unflatten and Flatten.

The exact log-density is checked against the log-determinant of the flow map, differentiated by
central differences of an independent scipy solve of the network alone; the Hutchinson estimate
with each basis vector as probe against the exact trace; the gradients of log p in θ and x
(second derivatives of every layer through dual_vjp) against central differences."""

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from checks import assert_gradient_matches_fd
from symode import nn
from symode.models.cnf import CNF, normal_log_prob

IMAGE = (1, 4, 4)
DIM = math.prod(IMAGE)
T1 = 0.5


def _image_net():
    """(batch, 16) -> 1×4×4 images -> 4 channels in 2 groups -> (batch, 16)."""
    return nn.Sequential(nn.Unflatten(IMAGE), nn.ConcatConv2d(1, 4, 3, padding=1),
                         nn.GroupNorm(2, 4), nn.Softplus(), nn.ConcatConv2d(4, 1, 3, padding=1),
                         nn.Flatten())


@pytest.fixture
def net_theta_x(rng):
    net = _image_net()
    theta = net.init(rng)
    theta += 0.3 * rng.standard_normal(theta.shape)   # γ ≠ 1, β ≠ 0: no special point
    return net, theta, rng.standard_normal((2, DIM))


def _flow_map(net, theta, x):
    """z(T1) for each row of x (n, DIM), by scipy's DOP853 on the network's forward pass."""
    n = len(x)
    sol = solve_ivp(lambda t, z: net(theta, z.reshape(n, DIM), t).ravel(), (0.0, T1), x.ravel(),
                    method="DOP853", rtol=1e-12, atol=1e-12)
    assert sol.success
    return sol.y[:, -1].reshape(n, DIM)


def test_exact_log_density_is_the_log_determinant_of_the_flow_map(net_theta_x):
    """log p(x) = log N(z(t1)) + log |det ∂z(t1)/∂x|, the Jacobian by central differences."""
    net, theta, x = net_theta_x
    flow = CNF(net, t1=T1, rtol=1e-10, atol=1e-10)
    h = 1e-4
    steps = h * np.eye(DIM)
    points = np.concatenate([x] + [np.concatenate([xi + steps, xi - steps]) for xi in x])
    ends = _flow_map(net, theta, points)
    z, ends = ends[:len(x)], ends[len(x):].reshape(len(x), 2, DIM, DIM)
    jac = (ends[:, 0] - ends[:, 1]).transpose(0, 2, 1) / (2 * h)      # [n, i, j] = ∂z_i/∂x_j
    logdet = np.linalg.slogdet(jac)[1]
    assert np.abs(logdet).min() > 0.1                  # the flow does change volume
    got_z, delta = flow.transform(theta, x)
    np.testing.assert_allclose(got_z, z, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(-delta, logdet, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(flow.log_prob(theta, x), normal_log_prob(z) + logdet, rtol=1e-7)


def test_hutchinson_with_basis_probes_sums_to_the_exact_trace(net_theta_x):
    """Σ_i of the estimate with probe e_i is the exact Δ: each sample repeated once per basis
    vector in one batch."""
    net, theta, x = net_theta_x
    exact = CNF(net, t1=T1, rtol=1e-10, atol=1e-10)
    hutch = CNF(net, t1=T1, trace="hutchinson", rtol=1e-10, atol=1e-10)
    _, delta = exact.transform(theta, x)
    _, parts = hutch.transform(theta, np.repeat(x, DIM, axis=0), eps=np.tile(np.eye(DIM),
                                                                              (len(x), 1)))
    np.testing.assert_allclose(parts.reshape(len(x), DIM).sum(axis=1), delta, rtol=1e-8)


@pytest.mark.parametrize("trace, adjoint", [("exact", "backsolve"), ("hutchinson", "backsolve"),
                                            ("hutchinson", "discrete")])
def test_log_density_gradients_match_central_differences(trace, adjoint, net_theta_x, rng):
    net, theta, x = net_theta_x
    flow = CNF(net, t1=T1, trace=trace, noise="gaussian", adjoint=adjoint, rtol=1e-10,
               atol=1e-10, seed=5)
    eps = flow.draw_eps(x.shape)
    _, cache = flow.forward(theta, x, eps=eps)
    w = rng.standard_normal(len(x))
    x_bar, theta_bar = flow.vjp(theta, cache, w)
    assert x_bar.shape == x.shape and theta_bar.shape == theta.shape
    for at, grad, fun in ((theta, theta_bar, lambda th: w @ flow.log_prob(th, x, eps)),
                          (x, x_bar, lambda xx: w @ flow.log_prob(theta, xx, eps))):
        assert_gradient_matches_fd(fun, at, grad, rng)
    # the part of θ̄ that comes through Δ (second derivatives) is not negligible: the gradient
    # of log N(z(t1)) alone differs from θ̄
    cot = np.zeros(cache.shape)
    cot[-1, :, :DIM] = -w[:, None] * cache.z
    theta_bar_z = cache.pullback(cot).params
    assert np.linalg.norm(theta_bar - theta_bar_z) > 0.05 * np.linalg.norm(theta_bar)


def test_samples_of_an_image_flow_map_back(net_theta_x):
    """sample() finds the data dimension through Unflatten and carries N(0, I) back."""
    net, theta, _ = net_theta_x
    flow = CNF(net, t1=T1, rtol=1e-9, atol=1e-9)
    x, logp = flow.sample(theta, 3, rng=2)
    assert x.shape == (3, DIM)
    z, _ = flow.transform(theta, x)
    np.testing.assert_allclose(z, np.random.default_rng(2).standard_normal((3, DIM)), atol=1e-6)
    np.testing.assert_allclose(flow.log_prob(theta, x), logp, atol=1e-6)
