"""The latent ODE on spirals: the data generator, the encoder's back-propagation through time,
the gradient of the negative ELBO, extrapolation, and a short training run."""

import math

import numpy as np
import pytest

from checks import assert_vjp_matches_fd, central_differences
import symode as so
from symode.data.spirals import CENTERS, make_spirals, spiral_curves
from symode.errors import ShapeError, SymodeError, TimeGridError
from symode.models.latent_ode import LatentODE, RecognitionRNN

# one dynamics architecture throughout (the demo's 4-20-20-4), so it is compiled once
EXACT = dict(method="rk4", n_steps=8, adjoint="discrete")        # gradient exact to round-off
TIGHT = dict(method="dopri5", rtol=1e-10, atol=1e-12)


def small_model(**solver):
    return LatentODE(rnn_hidden=6, decoder_hidden=7, obs_std=0.3, **solver)


@pytest.fixture(scope="module")
def spirals():
    return make_spirals(n_spirals=40, n_total=400, n_obs=12, window=24, noise=0.1, rng=7)


# -- data ---------------------------------------------------------------------------------------

def test_spirals_shapes_and_seeds():
    a = make_spirals(n_spirals=9, n_total=200, n_obs=5, window=11, rng=3)
    assert (a.t.shape, a.truth.shape, a.obs.shape, a.times.shape, a.index.shape) == \
        ((200,), (9, 200, 2), (9, 5, 2), (9, 5), (9, 5))
    b, c = (make_spirals(n_spirals=9, n_total=200, n_obs=5, window=11, rng=s) for s in (3, 4))
    np.testing.assert_array_equal(a.obs, b.obs)
    np.testing.assert_array_equal(a.index, b.index)
    assert not np.array_equal(a.obs, c.obs)
    assert a.clockwise.sum() == 4 and len(a) == 9


def test_spirals_turn_the_way_claimed():
    data = make_spirals(n_spirals=10, n_total=500, n_obs=10, rng=0)
    t = data.t
    for n in range(len(data)):
        rel = data.truth[n] - CENTERS[int(data.clockwise[n])]
        angle = np.unwrap(np.arctan2(rel[:, 1], rel[:, 0]))
        radius = np.hypot(rel[:, 0], rel[:, 1])
        if data.clockwise[n]:
            assert np.all(np.diff(angle) < 0), f"spiral {n} should turn clockwise"
            np.testing.assert_allclose(radius, 0.3 * 50 / (6 * np.pi + 1 - t), rtol=1e-12)
        else:
            assert np.all(np.diff(angle) > 0), f"spiral {n} should turn counter-clockwise"
            np.testing.assert_allclose(radius[1:], 0.3 * t[1:], rtol=1e-12)
        assert np.all(np.diff(radius[1:]) > 0), f"spiral {n} should move outwards"


def test_spiral_observations_are_the_curve_plus_noise_of_the_given_level():
    data = make_spirals(n_spirals=60, n_total=600, n_obs=40, window=80, noise=0.2, rng=1)
    clean = np.take_along_axis(data.truth, data.index[..., None], axis=1)
    residual = data.obs - clean                                       # 4800 N(0, 0.04) draws
    assert np.std(residual) == pytest.approx(0.2, rel=0.05)
    assert abs(np.mean(residual)) < 0.02
    quiet = make_spirals(n_spirals=4, n_total=100, n_obs=5, noise=0.0, rng=1)
    ccw, cw = spiral_curves(quiet.t, stop=6 * np.pi)
    for n in range(4):
        curve = cw if quiet.clockwise[n] else ccw
        np.testing.assert_array_equal(quiet.obs[n], curve[quiet.index[n]])


def test_spiral_times_are_irregular_subsets_of_each_window():
    data = make_spirals(n_spirals=30, n_total=300, n_obs=8, window=20, rng=2)
    steps = data.times / data.dt
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)     # on the dense grid
    assert np.all(np.diff(data.times, axis=1) > 0) and np.all(data.times >= 0)
    assert np.all(np.round(steps) <= data.window - 1)
    np.testing.assert_array_equal(data.index - data.start[:, None], np.round(steps))
    assert len({tuple(row) for row in np.round(steps).astype(int)}) > 20   # not one grid
    regular = make_spirals(n_spirals=5, n_total=300, n_obs=8, window=8, rng=2)
    np.testing.assert_array_equal(regular.times, np.broadcast_to(regular.t[:8], (5, 8)))


def test_spiral_arguments_are_checked():
    with pytest.raises(SymodeError, match="n_obs <= window <= n_total"):
        make_spirals(n_spirals=3, n_total=50, n_obs=10, window=5)
    with pytest.raises(SymodeError, match="n_spirals must be a positive integer"):
        make_spirals(n_spirals=0)
    with pytest.raises(SymodeError, match="noise"):
        make_spirals(n_spirals=2, n_total=50, n_obs=5, noise=-1.0)


# -- encoder ------------------------------------------------------------------------------------

@pytest.mark.parametrize("backwards", [True, False])
def test_rnn_backprop_through_time_matches_differences(backwards, rng):
    rnn = RecognitionRNN(3, 5, 4, backwards=backwards)
    theta = rnn.init(rng)
    x = rng.standard_normal((2, 6, 3))
    _, cache = rnn.forward(theta, x)
    assert_vjp_matches_fd(lambda th: rnn(th, x), theta, lambda u: rnn.vjp(theta, cache, u)[1],
                          rng, rtol=1e-7)
    assert_vjp_matches_fd(lambda xx: rnn(theta, xx), x, lambda u: rnn.vjp(theta, cache, u)[0],
                          rng, rtol=1e-7)
    y, cache = rnn.forward(theta, x)
    u = rng.standard_normal(y.shape)
    coords = central_differences(lambda th: np.vdot(u, rnn(th, x)), theta)
    np.testing.assert_allclose(rnn.vjp(theta, cache, u)[1], coords, rtol=1e-6, atol=1e-9)


def test_rnn_reads_backwards_with_the_elman_recurrence(rng):
    rnn = RecognitionRNN(2, 3, 4)
    theta = rnn.init(rng)
    x = rng.standard_normal((5, 4, 2))
    forwards = RecognitionRNN(2, 3, 4, backwards=False)
    np.testing.assert_allclose(rnn(theta, x), forwards(theta, x[:, ::-1]), rtol=1e-14)
    p = rnn.named_views(theta)                  # h = tanh(W [x, h] + c) from h = 0, then U h + d
    h = np.zeros((5, 3))
    for k in (3, 2, 1, 0):
        h = np.tanh(np.concatenate([x[:, k], h], axis=1) @ p["0.0.weight"].T + p["0.0.bias"])
    np.testing.assert_allclose(rnn(theta, x), h @ p["1.weight"].T + p["1.bias"], rtol=1e-13)


# -- the ELBO and its gradient ------------------------------------------------------------------

def test_loss_is_the_elbo_of_the_decoded_path(spirals, rng):
    """The negative ELBO written out by hand from encode/decode (a separate solve per time
    grid) equals the model's loss, which reads every sequence off the batch's union grid."""
    model = small_model(**TIGHT)
    theta = model.init(rng)
    obs, times = spirals.batch([0, 1, 2])
    eps = rng.standard_normal((3, 4))
    result = model.loss_and_grad(theta, obs, times, eps)
    mu, logvar, _ = model.encode(theta, obs, times)
    z0 = mu + np.exp(logvar / 2) * eps
    nll = np.mean([np.sum(0.5 * (math.log(2 * math.pi * 0.09) + (obs[n] - x) ** 2 / 0.09))
                   for n in range(3)
                   for x in [model.decode(theta, z0[n:n + 1], times[n])[1][0]]])
    kl = np.mean(np.sum(0.5 * (np.exp(logvar) + mu ** 2 - 1 - logvar), axis=1))
    assert result.nll == pytest.approx(nll, rel=1e-8)
    assert result.kl == pytest.approx(kl, rel=1e-12)
    assert result.loss == pytest.approx(nll + kl, rel=1e-8)
    assert model.loss(theta, obs, times, eps) == pytest.approx(result.loss, rel=1e-12)


def test_elbo_gradient_matches_central_differences(spirals):
    """The whole gradient (BPTT, reparametrization, discrete adjoint of fixed-step RK4,
    decoder) against differences of the loss with the same ε, along random directions; the
    discretisation is fixed, so the two agree to round-off."""
    rng = np.random.default_rng(11)
    model = small_model(**EXACT)
    theta = model.init(rng)
    obs, times = spirals.batch([3, 4, 5, 6])
    eps = rng.standard_normal((4, 4))
    result = model.loss_and_grad(theta, obs, times, eps)
    assert result.grad.shape == (model.n_params,)
    for _ in range(3):
        assert_vjp_matches_fd(lambda th: model.loss(th, obs, times, eps), theta,
                              lambda u: u * result.grad, rng, eps=1e-6, rtol=1e-7)


@pytest.mark.parametrize("adjoint", ["backsolve", "checkpoint"])
def test_continuous_adjoints_give_the_gradient_of_the_ode(spirals, adjoint):
    """dopri5 at a tight tolerance with a continuous adjoint against the exact gradient of a
    fine RK4 discretisation (the previous test checks that one against differences), entry by
    entry, and against differences along one direction (wide steps: adaptive step sizes make
    the loss rough at the tolerance's scale)."""
    rng = np.random.default_rng(11)
    model = small_model(**TIGHT, adjoint=adjoint)
    theta = model.init(rng)
    obs, times = spirals.batch([3, 4, 5, 6])
    eps = rng.standard_normal((4, 4))
    grad = model.loss_and_grad(theta, obs, times, eps).grad
    exact = small_model(method="rk4", n_steps=200, adjoint="discrete")
    reference = exact.loss_and_grad(theta, obs, times, eps).grad
    np.testing.assert_allclose(grad, reference, rtol=1e-6, atol=1e-8 * np.abs(reference).max())
    assert_vjp_matches_fd(lambda th: model.loss(th, obs, times, eps), theta,
                          lambda u: u * grad, rng, eps=1e-4, rtol=1e-4)


def test_elbo_gradient_coordinates_of_every_part(spirals):
    rng = np.random.default_rng(5)
    model = small_model(**EXACT)
    theta = model.init(rng)
    obs, times = spirals.batch([7, 8])
    eps = rng.standard_normal((2, 4))
    grad = model.loss_and_grad(theta, obs, times, eps).grad
    starts = np.cumsum([0] + [c.n_params for c in model.children])
    # cell and head of the encoder, first and last layer of the dynamics, the decoder
    picks = [starts[0] + 1, starts[0] + model.encoder.cell.n_params + 2, starts[1] + 3,
             starts[2] - 1, starts[2] + 5, starts[3] - 1]
    for i in picks:
        e = np.zeros_like(theta)
        e[i] = 1e-6
        fd = (model.loss(theta + e, obs, times, eps)
              - model.loss(theta - e, obs, times, eps)) / 2e-6
        assert grad[i] == pytest.approx(fd, rel=1e-6, abs=1e-7), f"θ[{i}]"


def test_shared_times_and_generator_noise(spirals):
    model = small_model(**EXACT)
    theta = model.init(np.random.default_rng(0))
    obs = spirals.obs[:3]
    shared = spirals.times[0]
    a = model.loss_and_grad(theta, obs, shared, np.random.default_rng(4))
    b = model.loss_and_grad(theta, obs, np.tile(shared, (3, 1)),
                            np.random.default_rng(4).standard_normal((3, 4)))
    assert a.loss == b.loss
    np.testing.assert_array_equal(a.grad, b.grad)


def test_bad_inputs_raise_clear_errors(spirals):
    model = small_model(**EXACT)
    theta = model.init(np.random.default_rng(0))
    obs, times = spirals.batch([0, 1])
    eps = np.zeros((2, 4))
    with pytest.raises(ShapeError, match=r"obs of shape \(batch, n_obs, 2\)"):
        model.loss_and_grad(theta, obs[..., :1], times, eps)
    with pytest.raises(ShapeError, match="times of shape"):
        model.loss_and_grad(theta, obs, times[:, :-1], eps)
    bad = times.copy()
    bad[1, 3] = bad[1, 2]
    with pytest.raises(TimeGridError, match="sequence 1"):
        model.loss_and_grad(theta, obs, bad, eps)
    with pytest.raises(ShapeError, match="ε of shape"):
        model.loss_and_grad(theta, obs, times, np.zeros((2, 3)))
    with pytest.raises(ShapeError, match="θ of shape"):
        model.loss_and_grad(theta[:-1], obs, times, eps)
    with pytest.raises(SymodeError, match="obs_std"):
        LatentODE(obs_std=0.0)
    with pytest.raises(SymodeError, match="adjoint must be one of"):
        LatentODE(adjoint="reverse")


# -- extrapolation ------------------------------------------------------------------------------

def test_decode_backwards_and_forwards_in_time(rng):
    """z at negative times comes from a backward solve: integrating forward from there
    returns to z0."""
    model = small_model(**TIGHT)
    theta = model.init(rng)
    z0 = rng.standard_normal((3, 4))
    t = np.array([-0.7, -0.2, 0.0, 0.5, 1.3])
    z, x = model.decode(theta, z0, t)
    assert z.shape == (3, 5, 4) and x.shape == (3, 5, 2)
    np.testing.assert_array_equal(z[:, 2], z0)
    th_dyn = model.child_thetas(theta)[1]
    back = so.solve(model.dynamics, z[:, 0], [-0.7, 0.0], params=th_dyn, rtol=1e-10,
                    atol=1e-12).y[-1]
    np.testing.assert_allclose(back, z0, atol=1e-8)
    later = model.decode(theta, z0, t[3:])[0]
    np.testing.assert_allclose(later, z[:, 3:], atol=1e-9)


def test_predict_reconstructs_and_extrapolates(spirals, rng):
    model = small_model(**TIGHT)
    theta = model.init(rng)
    obs, times = spirals.batch([0, 1])
    grid = np.linspace(0.0, 2 * times.max(), 9)
    x = model.predict(theta, obs, times, grid)
    mu = model.encode(theta, obs, times)[0]
    np.testing.assert_allclose(x, model.decode(theta, mu, grid)[1], rtol=1e-12)
    assert x.shape == (2, 9, 2) and np.all(np.isfinite(x))
    with pytest.raises(TimeGridError, match="strictly increasing"):
        model.predict(theta, obs, times, grid[::-1])


# -- training -----------------------------------------------------------------------------------

def test_short_training_run_lowers_the_loss(spirals):
    rng = np.random.default_rng(0)
    model = small_model(method="dopri5", rtol=1e-4, atol=1e-6, adjoint="discrete")
    theta = model.init(rng)
    opt = so.nn.Adam(lr=1e-2)
    state = opt.init(theta)
    fixed = rng.standard_normal((len(spirals), 4))
    start = model.loss(theta, spirals.obs, spirals.times, fixed)
    losses = []
    for _ in range(80):
        which = rng.choice(len(spirals), 10, replace=False)
        out = model.loss_and_grad(theta, *spirals.batch(which), rng)
        theta, state = opt.step(theta, out.grad, state)
        losses.append(out.loss)
    end = model.loss(theta, spirals.obs, spirals.times, fixed)
    assert end < 0.5 * start, f"loss on the whole set went from {start:.1f} to {end:.1f}"
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
