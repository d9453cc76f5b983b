"""Continuous normalizing flows: log-densities against closed forms and normalisation,
gradients against central differences for every trace and adjoint, sampling against the
forward map, and the symbolic change of variables against the flow map's determinant."""

import math

import numpy as np
import pytest
import scipy.linalg as sl
import sympy as sp

import symode as so
from checks import assert_gradient_matches_fd
from symode import nn
from symode.errors import ShapeError, SymodeError
from symode.models.cnf import CNF, CNFDynamics, concat_squash_mlp, normal_log_prob


def _linear_flow(rng, **options):
    net = nn.Linear(2, 2, bias=False)
    theta = net.init(rng)
    return CNF(net, t1=0.7, rtol=1e-10, atol=1e-10, **options), theta, theta.reshape(2, 2)


def test_linear_flow_log_density_is_exact(rng):
    """dz/dt = W z: z(t1) = e^{t1 W} x and log p(x) = log N(z(t1)) + t1 tr W."""
    flow, theta, W = _linear_flow(rng)
    x = rng.standard_normal((6, 2))
    z = x @ sl.expm(0.7 * W).T
    np.testing.assert_allclose(flow.log_prob(theta, x),
                               normal_log_prob(z) + 0.7 * np.trace(W), rtol=1e-9)
    logp, _ = flow.forward(theta, x)
    np.testing.assert_allclose(logp, flow.log_prob(theta, x), rtol=1e-12)


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_estimate_is_the_probes_quadratic_form(noise, rng):
    """For a linear flow the estimator integrates the constant εᵀWε exactly; Rademacher
    probes have |ε_i| = 1, and the probes' mean form tends to tr W."""
    flow, theta, W = _linear_flow(rng, trace="hutchinson", noise=noise, seed=7)
    x = rng.standard_normal((4000, 2))
    eps = flow.draw_eps(x.shape)
    if noise == "rademacher":
        assert set(np.unique(eps)) == {-1.0, 1.0}
    _, delta = flow.transform(theta, x, eps)
    form = np.einsum("ni,ij,nj->n", eps, W, eps)
    np.testing.assert_allclose(delta, -0.7 * form, rtol=1e-8, atol=1e-12)
    spread = form.std() / math.sqrt(len(form))
    assert abs(form.mean() - np.trace(W)) < 5 * spread


def test_density_integrates_to_one(rng):
    net = concat_squash_mlp(2, (16, 16))
    theta = 2 * net.init(rng)                          # a strongly curved map
    flow = CNF(net, t1=1.0, rtol=1e-7, atol=1e-7)
    grid = np.linspace(-7.0, 7.0, 101)
    X, Y = np.meshgrid(grid, grid)
    logp = flow.log_prob(theta, np.stack([X.ravel(), Y.ravel()], axis=1))
    h = grid[1] - grid[0]
    assert np.exp(logp).sum() * h * h == pytest.approx(1.0, abs=2e-3)
    assert logp.std() > 1.0                            # not the base density


@pytest.mark.parametrize("adjoint", ["backsolve", "checkpoint", "discrete"])
@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_gradients_match_central_differences(trace, adjoint, rng):
    net = nn.Sequential(nn.ConcatSquashLinear(2, 8), nn.Tanh(), nn.ConcatLinear(8, 8),
                        nn.Softplus(), nn.ConcatSquashLinear(8, 2))
    theta = net.init(rng)
    flow = CNF(net, t1=0.5, trace=trace, adjoint=adjoint, rtol=1e-10, atol=1e-10, seed=3)
    x = rng.standard_normal((5, 2))
    eps = flow.draw_eps(x.shape)
    logp, cache = flow.forward(theta, x, eps=eps)
    w = rng.standard_normal(5)
    x_bar, theta_bar = flow.vjp(theta, cache, w)
    for at, grad, fun in ((theta, theta_bar, lambda th: w @ flow.log_prob(th, x, eps)),
                          (x, x_bar, lambda xx: w @ flow.log_prob(theta, xx, eps))):
        assert_gradient_matches_fd(fun, at, grad, rng)
    assert flow.nfe_forward > 0 and flow.nfe_backward > 0


def test_samples_map_back_to_their_base_points_with_their_density(rng):
    net = concat_squash_mlp(2, (16, 16))
    theta = 2 * net.init(rng)
    flow = CNF(net, t1=1.0, rtol=1e-9, atol=1e-9)
    x, logp = flow.sample(theta, 50, rng=1)
    z, _ = flow.transform(theta, x)
    np.testing.assert_allclose(z, np.random.default_rng(1).standard_normal((50, 2)), atol=1e-6)
    np.testing.assert_allclose(flow.log_prob(theta, x), logp, atol=1e-6)


def test_training_raises_the_likelihood(rng):
    """A few Adam steps on samples of N((2, -1), diag(0.25, 1)) raise the mean log-density."""
    net = concat_squash_mlp(2, (16, 16))
    theta = net.init(rng)
    flow = CNF(net, t1=0.5, trace="hutchinson", rtol=1e-4, atol=1e-4, seed=0)
    data = rng.standard_normal((2000, 2)) * [0.5, 1.0] + [2.0, -1.0]
    opt = nn.Adam(lr=2e-2)
    state = opt.init(theta)
    exact = CNF(net, t1=0.5, rtol=1e-6, atol=1e-6)
    before = exact.log_prob(theta, data[:500]).mean()
    for it in range(40):
        batch = data[rng.choice(len(data), 64, replace=False)]
        logp, cache = flow.forward(theta, batch)
        _, grad = flow.vjp(theta, cache, -np.ones(64) / 64)
        theta, state = opt.step(theta, grad, state)
    after = exact.log_prob(theta, data[:500]).mean()
    best = -math.log(2 * math.pi * 0.5) - 1.0          # the data law's own mean log-density
    assert after > before + 0.5 and after < best + 0.05


def test_with_log_density_lorenz_contracts_volume_at_a_constant_rate():
    x, y, z, s, r, b = sp.symbols("x y z sigma rho beta")
    lorenz = so.ODE([x, y, z], [s * (y - x), x * (r - z) - y, x * y - b * z], [s, r, b])
    aug = lorenz.with_log_density()
    assert aug.states[-1].name == "delta_logp" and aug.rhs[-1] == s + 1 + b
    sol = so.solve(aug, [[1.0, 1.0, 1.0, 0.0]], [0.0, 2.0], params=[10.0, 28.0, 8 / 3])
    assert sol.y[-1, 0, -1] == pytest.approx(2.0 * (10.0 + 1.0 + 8 / 3), rel=1e-10)


def test_with_log_density_is_the_log_determinant_of_the_flow_map():
    """-Δ(t1) = log |det ∂z(t1)/∂z(t0)|, the determinant by central differences of the map."""
    u, v, mu = sp.symbols("u v mu")
    vdp = so.ODE([u, v], [v, mu * (1 - u**2) * v - u], [mu])
    aug = vdp.with_log_density("logdet")
    z0 = np.array([[0.5, -0.3], [1.5, 0.8]])
    opts = dict(params=[1.3], rtol=1e-12, atol=1e-12)
    sol = so.solve(aug, np.hstack([z0, np.zeros((2, 1))]), [0.0, 1.5], **opts)
    h = 1e-5
    for n in range(2):
        cols = []
        for i in range(2):
            e = np.zeros(2)
            e[i] = h
            ends = so.solve(vdp, np.stack([z0[n] + e, z0[n] - e]), [0.0, 1.5], **opts).y[-1]
            cols.append((ends[0] - ends[1]) / (2 * h))
        logdet = math.log(abs(np.linalg.det(np.array(cols).T)))
        assert -sol.y[-1, n, -1] == pytest.approx(logdet, rel=1e-7)


def test_with_log_density_name_checks():
    u, k = sp.symbols("u k")
    ode = so.ODE([u], [-k * u], [k])
    with pytest.raises(SymodeError, match="taken"):
        ode.with_log_density("k")
    with pytest.raises(SymodeError, match="identifier"):
        ode.with_log_density("log p")


def test_errors_name_what_is_wrong(rng):
    net = concat_squash_mlp(2, (4,))
    theta = net.init(rng)
    with pytest.raises(SymodeError, match="trace must be one of"):
        CNF(net, trace="brute")
    with pytest.raises(SymodeError, match="noise must be one of"):
        CNF(net, noise="uniform")
    with pytest.raises(SymodeError, match="t1 != t0"):
        CNF(net, t0=1.0, t1=1.0)
    with pytest.raises(SymodeError, match="kinetic weight must be a number >= 0"):
        CNF(net, kinetic=-1.0)
    with pytest.raises(SymodeError, match="needs t1 > t0"):
        CNF(net, t0=1.0, t1=0.0, train_t1=True)
    with pytest.raises(ShapeError, match="expected θ of shape"):
        CNF(net, train_t1=True).log_prob(theta, np.zeros((3, 2)))
    with pytest.raises(SymodeError, match="activation must be one of"):
        concat_squash_mlp(2, activation="relu6")
    flow = CNF(net, trace="hutchinson")
    with pytest.raises(ShapeError, match="expected x of shape"):
        flow.log_prob(theta, np.zeros(3))
    with pytest.raises(ShapeError, match="eps must have the shape of x"):
        flow.log_prob(theta, np.zeros((3, 2)), eps=np.ones((2, 2)))
    _, cache = flow.forward(theta, np.zeros((3, 2)))
    with pytest.raises(ShapeError, match="expected ȳ of shape"):
        flow.vjp(theta, cache, np.ones(4))
    with pytest.raises(SymodeError, match="needs its probe"):
        CNFDynamics(net, "hutchinson")
    with pytest.raises(ShapeError, match="n must be a positive integer"):
        flow.sample(theta, 0)
    squash = CNF(nn.Linear(2, 3))
    with pytest.raises(ShapeError, match="needs dz/dt of the shape of z"):
        squash.log_prob(nn.Linear(2, 3).init(rng), np.zeros((2, 2)))


@pytest.mark.parametrize("adjoint", ["backsolve", "discrete"])
def test_trained_flow_length_gets_its_gradient(adjoint, rng):
    net = concat_squash_mlp(2, (8,))
    flow = CNF(net, t1=0.4, train_t1=True, adjoint=adjoint, rtol=1e-10, atol=1e-10)
    theta = flow.init(rng)
    assert flow.named_views(theta)["sqrt_t1"] == pytest.approx(math.sqrt(0.4))
    theta[1:] += 0.3 * rng.standard_normal(theta.size - 1)
    x = rng.standard_normal((4, 2))
    w = rng.standard_normal(4)
    _, cache = flow.forward(theta, x)
    _, theta_bar = flow.vjp(theta, cache, w)
    h = 1e-5
    for v in (np.eye(theta.size)[0], rng.standard_normal(theta.size)):
        numeric = (w @ flow.log_prob(theta + h * v, x)
                   - w @ flow.log_prob(theta - h * v, x)) / (2 * h)
        assert theta_bar @ v == pytest.approx(numeric, rel=1e-6, abs=1e-9)
    # the learned length is the flow's: the same as a fixed flow of that length
    fixed = CNF(net, t1=theta[0] ** 2)
    np.testing.assert_allclose(fixed.log_prob(theta[1:], x), CNF(net, t1=0.1, train_t1=True)
                               .log_prob(theta, x), rtol=1e-6)


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_regularizers_of_a_linear_flow(trace, rng):
    """dz/dt = W z: K = ∫ ‖W e^{tW} x‖² dt (by quadrature), F = t1 ‖W‖²_F for the exact trace's
    basis probes and t1 ‖W ε‖² for a probe ε."""
    from scipy.integrate import quad

    flow, theta, W = _linear_flow(rng, trace=trace, kinetic=0.3, jacobian=0.2, seed=2)
    x = rng.standard_normal((3, 2))
    eps = flow.draw_eps(x.shape)
    y, _ = flow.forward(theta, x, eps=eps)
    terms = flow.last_terms
    kinetic = [quad(lambda t: np.sum((W @ sl.expm(t * W) @ xi) ** 2), 0, 0.7,
                    epsabs=1e-13, epsrel=1e-12)[0] for xi in x]
    frob = (np.sum(W**2) if trace == "exact" else np.sum((eps @ W.T) ** 2, axis=1)) * 0.7
    np.testing.assert_allclose(terms["kinetic"], kinetic, rtol=1e-8)
    np.testing.assert_allclose(terms["jacobian"], frob * np.ones(3), rtol=1e-8)
    np.testing.assert_allclose(terms["log_p"], flow.log_prob(theta, x, eps), rtol=1e-9)
    np.testing.assert_allclose(y, terms["log_p"] - 0.3 * terms["kinetic"]
                               - 0.2 * terms["jacobian"], rtol=1e-12)


@pytest.mark.parametrize("adjoint", ["backsolve", "discrete"])
@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_regularized_gradients_match_central_differences(trace, adjoint, rng):
    net = concat_squash_mlp(2, (8, 8), activation="softplus")
    flow = CNF(net, t1=0.5, train_t1=True, trace=trace, adjoint=adjoint, rtol=1e-10,
               atol=1e-10, seed=4, kinetic=0.5, jacobian=0.7)
    theta = flow.init(rng)
    x = rng.standard_normal((4, 2))
    eps = flow.draw_eps(x.shape)
    _, cache = flow.forward(theta, x, eps=eps)
    w = rng.standard_normal(4)
    x_bar, theta_bar = flow.vjp(theta, cache, w)

    def objective(th, xx):
        return w @ flow.forward(th, xx, eps=eps)[0]

    for at, grad, fun in ((theta, theta_bar, lambda th: objective(th, x)),
                          (x, x_bar, lambda xx: objective(theta, xx))):
        assert_gradient_matches_fd(fun, at, grad, rng)


def test_probes_from_a_given_generator():
    flow = CNF(concat_squash_mlp(2, (4,)), trace="hutchinson", noise="gaussian", seed=0)
    eps = flow.draw_eps((3, 2), rng=np.random.default_rng(5))
    np.testing.assert_array_equal(eps, np.random.default_rng(5).standard_normal((3, 2)))
    assert CNF(concat_squash_mlp(2, (4,))).draw_eps((3, 2), rng=np.random.default_rng(5)) is None
