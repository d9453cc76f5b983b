"""symode.models.fit: the generic training loop, its history, checkpoints and exact resumption."""

import numpy as np
import pytest

from symode import nn
from symode.data.spirals import make_spirals
from symode.errors import NonFiniteError, SymodeError
from symode.models import LatentODE, fit

TARGET = np.array([1.0, -2.0, 0.5])


def noisy_quadratic(theta, rng):
    """0.5|θ - c|² with a noisy gradient drawn from ``rng`` (a stochastic step)."""
    noise = rng.normal(scale=0.1, size=theta.shape)
    return 0.5 * np.sum((theta - TARGET) ** 2), theta - TARGET + noise, {"noise": noise[0]}


def test_converges_and_records_history():
    theta, hist = fit(noisy_quadratic, np.zeros(3), nn.SGD(lr=0.1), 200,
                      np.random.default_rng(0), progress=False)
    np.testing.assert_allclose(theta, TARGET, atol=0.1)
    assert len(hist["loss"]) == len(hist["seconds"]) == len(hist["noise"]) == 200
    assert hist["loss"][-1] < 1e-2 * hist["loss"][0]


def test_schedule_sets_each_learning_rate():
    seen = []

    def step(theta, rng):
        return 0.0, np.ones_like(theta)

    theta, _ = fit(step, np.zeros(1), nn.SGD(lr=1.0), 4, np.random.default_rng(0),
                   schedule=lambda it: seen.append(it) or 0.5 ** it, progress=False)
    assert seen == [0, 1, 2, 3]
    assert theta[0] == pytest.approx(-(1 + 0.5 + 0.25 + 0.125))     # SGD: θ -= lr·g


def test_interrupted_run_resumes_exactly(tmp_path):
    """A run that crashes at iteration 8 and is resumed from its checkpoint (taken at 6) ends
    bit for bit where an uninterrupted run ends."""
    ref, ref_hist = fit(noisy_quadratic, np.zeros(3), nn.Adam(lr=0.05), 12,
                        np.random.default_rng(3), progress=False)
    path = str(tmp_path / "run.ckpt")
    calls = []

    def crashing(theta, rng):
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt
        return noisy_quadratic(theta, rng)

    with pytest.raises(KeyboardInterrupt):
        fit(crashing, np.zeros(3), nn.Adam(lr=0.05), 12, np.random.default_rng(3),
            checkpoint=path, checkpoint_every=3, progress=False)
    logged = []
    theta, hist = fit(noisy_quadratic, np.full(3, 99.0), nn.Adam(lr=0.05), 12,
                      np.random.default_rng(123), checkpoint=path, resume=True, progress=False,
                      log=logged.append)
    assert logged == [f"resumed from {path} at iteration 6"]
    np.testing.assert_array_equal(theta, ref)
    assert hist["loss"] == ref_hist["loss"] and hist["noise"] == ref_hist["noise"]


def test_latent_ode_resumes_exactly(tmp_path):
    """A real model: its batches and reparameterisation noise come from fit's generator."""
    data = make_spirals(n_spirals=20, n_obs=10, window=30, rng=0)
    model = LatentODE(obs_dim=2, latent_dim=2, hidden=8, rnn_hidden=6, decoder_hidden=8,
                      adjoint="discrete", rtol=1e-4, atol=1e-6)

    def step(theta, rng):
        out = model.loss_and_grad(theta, *data.batch(rng.choice(20, 5, replace=False)), rng)
        return out.loss, out.grad

    theta0 = model.init(np.random.default_rng(1))
    ref, _ = fit(step, theta0, nn.Adam(lr=1e-2), 4, np.random.default_rng(2), progress=False)
    path = str(tmp_path / "latent.ckpt")
    fit(step, theta0, nn.Adam(lr=1e-2), 2, np.random.default_rng(2), checkpoint=path,
        progress=False)
    theta, hist = fit(step, theta0, nn.Adam(lr=1e-2), 4, np.random.default_rng(2),
                      checkpoint=path, resume=True, progress=False, log=lambda m: None)
    np.testing.assert_array_equal(theta, ref)
    assert len(hist["loss"]) == 4


def test_resume_without_a_checkpoint_starts_afresh(tmp_path):
    a, _ = fit(noisy_quadratic, np.zeros(3), nn.SGD(lr=0.1), 3, np.random.default_rng(0),
               checkpoint=str(tmp_path / "new.ckpt"), resume=True, progress=False)
    b, _ = fit(noisy_quadratic, np.zeros(3), nn.SGD(lr=0.1), 3, np.random.default_rng(0),
               progress=False)
    np.testing.assert_array_equal(a, b)
    assert (tmp_path / "new.ckpt").exists()


def test_progress_lines_without_tqdm(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tqdm", None)
    lines = []
    fit(noisy_quadratic, np.zeros(3), nn.SGD(lr=0.1), 4, np.random.default_rng(0),
        log=lines.append, log_every=2)
    assert len(lines) == 2 and lines[1].startswith("iteration 4/4: loss ")
    assert ", noise " in lines[1]


@pytest.mark.parametrize("step, kwargs, error, match", [
    (lambda th, rng: 1.0, {}, SymodeError, "step must return .loss, grad."),
    (lambda th, rng: (1.0, th, [1]), {}, SymodeError, "info must be a mapping"),
    (lambda th, rng: (np.nan, th), {}, NonFiniteError, "the loss is nan at iteration 0"),
    (noisy_quadratic, {"iters": -1}, SymodeError, "iters must be a whole number"),
    (noisy_quadratic, {"checkpoint_every": 0}, SymodeError, "checkpoint_every"),
    (noisy_quadratic, {"rng": np.random.RandomState(0)}, SymodeError, "numpy Generator"),
])
def test_bad_input(step, kwargs, error, match):
    args = dict(iters=2, rng=np.random.default_rng(0))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        fit(step, np.zeros(3), nn.SGD(lr=0.1), progress=False, **args)


def test_a_foreign_checkpoint_is_refused(tmp_path):
    path = tmp_path / "other.ckpt"
    nn.save_checkpoint(path, theta=np.zeros(3))
    with pytest.raises(SymodeError, match="not a checkpoint of fit"):
        fit(noisy_quadratic, np.zeros(3), nn.SGD(lr=0.1), 2, np.random.default_rng(0),
            checkpoint=str(path), resume=True, progress=False)
