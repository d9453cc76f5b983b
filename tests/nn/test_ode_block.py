"""Networks as dynamics (NetworkDynamics), fused dense networks, and ODE blocks as layers."""

import numpy as np
import pytest
import sympy as sp

import symode as so
from checks import assert_vjp_matches_fd
from symode import nn
from symode.nn.fused import fuse
from symode.solvers.controllers import PIController

x_ = sp.Symbol("x")


def _chains():
    return {
        "cube-mlp": nn.Sequential(nn.activation(x_**3, x_, name="cube"), nn.Linear(2, 8),
                                  nn.Tanh(), nn.Linear(8, 2)),
        "concat-softplus": nn.Sequential(nn.ConcatLinear(3, 6), nn.Softplus(),
                                         nn.ConcatLinear(6, 3, bias=False), nn.Tanh()),
        "linear": nn.Linear(2, 2),
        "user-activation": nn.Sequential(nn.Linear(3, 5),
                                         nn.activation(x_ / (1 + sp.Abs(x_)), x_, "softsign"),
                                         nn.Linear(5, 3)),
    }


def _input_width(net):
    first = [m for m in (net.children or (net,)) if isinstance(m, nn.Linear)][0]
    return first.in_features


@pytest.mark.parametrize("name", list(_chains()))
def test_fused_network_equals_layer_by_layer(name, rng):
    net = _chains()[name]
    theta = net.init(rng) + 0.1 * rng.standard_normal(net.n_params)
    z = rng.standard_normal((7, _input_width(net)))
    slow, fast = nn.NetworkDynamics(net, compile=False), nn.NetworkDynamics(net)
    assert slow.fused is None and fast.fused is not None
    a = rng.standard_normal(slow.f(0.4, z, theta).shape)
    np.testing.assert_allclose(fast.f(0.4, z, theta), slow.f(0.4, z, theta), rtol=1e-13,
                               atol=1e-14)
    for u, v in zip(fast.f_and_vjp(0.4, z, theta, a), slow.f_and_vjp(0.4, z, theta, a)):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-13)


def test_networks_that_are_not_dense_chains_are_not_fused():
    assert fuse(nn.Sequential(nn.ConcatSquashLinear(2, 2), nn.Tanh())) is None
    assert fuse(nn.Sequential(nn.Conv2d(1, 1, 3, 1, 1))) is None
    assert fuse(nn.Sequential(nn.Tanh())) is None
    assert fuse(nn.Residual(nn.Linear(2, 2))) is None


def test_fused_path_falls_back_for_float32(rng):
    net = _chains()["cube-mlp"]
    theta = net.init(rng)
    dyn = nn.NetworkDynamics(net)
    z = rng.standard_normal((4, 2)).astype(np.float32)
    out = dyn.f(0.0, z, theta.astype(np.float32))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, net(theta, z.astype(np.float64)), rtol=1e-5)


@pytest.mark.parametrize("compile", [False, True])
def test_network_dynamics_vjp_matches_finite_differences(compile, rng):
    net = _chains()["concat-softplus"]
    dyn = nn.NetworkDynamics(net, compile=compile)
    theta = net.init(rng)
    z = rng.standard_normal((5, 3))
    t = 0.7
    a = rng.standard_normal((5, 3))
    a_z, a_theta, a_t = dyn.vjp(t, z, theta, a)
    assert_vjp_matches_fd(lambda zz: dyn.f(t, zz, theta), z, lambda u: dyn.vjp(t, z, theta, u)[0],
                          rng)
    assert_vjp_matches_fd(lambda th: dyn.f(t, z, th), theta,
                          lambda u: dyn.vjp(t, z, theta, u)[1], rng)
    assert_vjp_matches_fd(lambda tt: dyn.f(float(tt), z, theta), np.array(t),
                          lambda u: np.array(dyn.vjp(t, z, theta, u)[2]), rng)
    assert abs(a_t) > 0


def test_network_dynamics_counts_evaluations(rng):
    net = _chains()["linear"]
    dyn = nn.NetworkDynamics(net)
    theta = net.init(rng)
    sol = so.solve(dyn, rng.standard_normal((3, 2)), [0.0, 1.0], params=theta)
    assert dyn.nfev == sol.stats.nfev[0] > 6


def test_network_dynamics_needs_a_module():
    with pytest.raises(TypeError, match="symode.nn Module"):
        nn.NetworkDynamics(lambda t, z, th: z)


def test_linear_network_solves_like_the_symbolic_system(rng):
    """A Linear layer with weight A is dz/dt = A z: same answer as the symbolic ODE."""
    A = np.array([[-0.1, -1.0], [1.0, -0.1]])
    net = nn.Linear(2, 2)
    theta = np.concatenate([A.ravel(), np.zeros(2)])
    z1, z2 = sp.symbols("z1 z2")
    ode = so.ODE([z1, z2], [-0.1 * z1 - z2, z1 - 0.1 * z2])
    y0 = rng.standard_normal((4, 2))
    t = np.linspace(0, 3, 7)
    got = so.solve(nn.NetworkDynamics(net), y0, t, params=theta, rtol=1e-10, atol=1e-12).y
    want = so.solve(ode, y0, t, rtol=1e-10, atol=1e-12).y
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


# -- ODEBlock ---------------------------------------------------------------------------------

def _block(adjoint, rtol=1e-9, atol=1e-11, method="dopri5", **kw):
    net = nn.Sequential(nn.ConcatLinear(2, 6), nn.Tanh(), nn.ConcatLinear(6, 2))
    return nn.ODEBlock(net, 0.0, 0.8, method=method, rtol=rtol, atol=atol, adjoint=adjoint,
                       **kw)


def test_ode_block_forward_is_the_solution_at_t1(rng):
    block = _block("backsolve")
    theta = block.init(rng)
    x = rng.standard_normal((3, 2))
    y, _ = block.forward(theta, x)
    want = so.solve(nn.NetworkDynamics(block.net), x, [0.0, 0.8], params=theta, rtol=1e-9,
                    atol=1e-11, error_norm="batch", controller=PIController(beta=0.0)).y[-1]
    np.testing.assert_allclose(y, want, rtol=1e-12)
    assert block.n_params == block.net.n_params
    assert block.nfe_forward > 0


@pytest.mark.parametrize("adjoint", ["backsolve", "checkpoint", "discrete"])
def test_ode_block_vjp_matches_finite_differences(adjoint, rng):
    block = _block(adjoint)
    theta = block.init(rng)
    x = rng.standard_normal((3, 2))
    _, cache = block.forward(theta, x)
    assert_vjp_matches_fd(lambda xx: block(theta, xx), x,
                          lambda u: block.vjp(theta, cache, u)[0], rng, eps=1e-5, rtol=1e-6)
    assert_vjp_matches_fd(lambda th: block(th, x), theta,
                          lambda u: block.vjp(theta, cache, u)[1], rng, eps=1e-5, rtol=1e-6)
    assert block.nfe_backward > 0


def test_rk4_block_with_discrete_gradient_is_exact_for_the_solver(rng):
    """RK-Net: fixed-step RK4, gradient exact for the discretisation even at 2 steps."""
    block = _block("discrete", method="rk4", n_steps=2)
    theta = block.init(rng)
    x = rng.standard_normal((3, 2))
    _, cache = block.forward(theta, x)
    assert block.nfe_forward == 8           # 2 steps of 4 stages
    assert_vjp_matches_fd(lambda th: block(th, x), theta,
                          lambda u: block.vjp(theta, cache, u)[1], rng, eps=1e-6, rtol=1e-7)


def test_ode_block_inside_a_network_trains_end_to_end(rng):
    """Linear -> ODEBlock -> Linear: the chain rule through the block matches differences."""
    model = nn.Sequential(nn.Linear(3, 2), _block("checkpoint"), nn.Linear(2, 1))
    theta = model.init(rng)
    x = rng.standard_normal((4, 3))
    _, cache = model.forward(theta, x)
    assert_vjp_matches_fd(lambda th: model(th, x), theta, lambda u: model.vjp(theta, cache, u)[1],
                          rng, eps=1e-5, rtol=1e-6)


@pytest.mark.parametrize("adjoint, options, tol", [
    ("discrete", dict(method="rk4", n_steps=3), 1e-7),        # exact for the solver
    ("backsolve", dict(rtol=1e-9, atol=1e-11), 1e-4),           # exact for the ODE, to tolerance
])
def test_ode_block_on_image_shaped_states(adjoint, options, tol, rng):
    """The state may be (batch, channels, height, width): a convolutional ODE function."""
    f = nn.Sequential(nn.GroupNorm(2, 4), nn.Softplus(), nn.ConcatConv2d(4, 4, 3, 1, 1))
    block = nn.ODEBlock(f, adjoint=adjoint, **options)
    theta = block.init(rng)
    x = rng.standard_normal((2, 4, 5, 5))
    y, cache = block.forward(theta, x)
    assert y.shape == x.shape
    assert_vjp_matches_fd(lambda th: block(th, x), theta, lambda u: block.vjp(theta, cache, u)[1],
                          rng, eps=1e-5, rtol=tol, atol=1e-8)
    assert_vjp_matches_fd(lambda xx: block(theta, xx), x, lambda u: block.vjp(theta, cache, u)[0],
                          rng, eps=1e-5, rtol=tol, atol=1e-8)


def test_ode_block_repr_names_its_options():
    text = repr(_block("backsolve"))
    assert "ODEBlock" in text and "dopri5" in text and "backsolve" in text


def test_learning_the_linear_spiral_lowers_the_loss(rng):
    """A few RMSprop steps through the adjoint make the fit of dz/dt = A z better."""
    A = np.array([[-0.1, -1.0], [1.0, -0.1]])
    t = np.linspace(0, 2, 8)
    y0 = rng.standard_normal((16, 2))
    z1, z2 = sp.symbols("z1 z2")
    data = so.solve(so.ODE([z1, z2], list(sp.Matrix(A) * sp.Matrix([z1, z2]))), y0, t,
                    rtol=1e-10, atol=1e-12).y
    net = nn.Linear(2, 2, bias=False)
    dyn = nn.NetworkDynamics(net)
    theta = net.init(np.random.default_rng(1))
    opt = nn.Adam(lr=0.05)
    state = opt.init(theta)
    losses = []
    for _ in range(200):
        sol, pullback = so.solve_vjp(dyn, y0, t, params=theta, rtol=1e-6, atol=1e-8,
                                     adjoint="backsolve")
        diff = sol.y - data
        losses.append(np.mean(diff**2))
        theta, state = opt.step(theta, pullback(2 * diff / diff.size).params, state)
    assert losses[-1] < 1e-3 * losses[0]
    np.testing.assert_allclose(theta.reshape(2, 2), A, atol=0.02)
