"""The paper's MNIST classifiers and the training loop: sizes, gradients, learning, resuming."""

from pathlib import Path

import numpy as np
import pytest

from checks import assert_vjp_matches_fd
from symode import nn
from symode.models import (MODELS, PAPER_PARAMS, TrainConfig, evaluate, mlp, ode_blocks, odenet,
                           rknet, train_classifier)

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"
HAVE_REAL = all((REAL / f"{s}-{k}-idx{d}-ubyte.gz").exists()
                for s in ("train", "t10k") for k, d in (("images", 3), ("labels", 1)))


def test_parameter_counts_are_near_the_papers():
    counts = {name: make().n_params for name, make in MODELS.items()}
    # exact counts of this architecture (conv downsampling, GroupNorm(32, 64), time channels)
    assert counts == {"odenet": 208_266, "rknet": 208_266, "resnet": 576_778, "mlp": 238_510}
    for name, n in counts.items():
        assert abs(n - PAPER_PARAMS[name]) / PAPER_PARAMS[name] < 0.06


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_map_images_to_ten_logits(name, rng):
    model = MODELS[name](width=8) if name != "mlp" else mlp(hidden=16)
    theta = model.init(rng, dtype=np.float32)
    logits = model(theta, rng.standard_normal((3, 1, 28, 28)).astype(np.float32))
    assert logits.shape == (3, 10) and logits.dtype == np.float32


def test_odenet_counts_function_evaluations(rng):
    model = odenet(width=4)
    theta = model.init(rng)
    logits, cache = model.forward(theta, rng.standard_normal((2, 1, 28, 28)))
    block = ode_blocks(model)[0]
    assert block.nfe_forward >= 8
    model.vjp(theta, cache, np.ones_like(logits))
    assert block.nfe_backward >= 8


def test_odenet_continuous_adjoints_agree(rng):
    """Backsolve (z re-integrated backwards) and checkpoint (z from the forward pass) give the
    same gradient of the whole ODE-Net at a tight tolerance. (The discrete gradient holds step
    sizes fixed; with ReLU inside the dynamics the step sizes move with θ, so it differs.)"""
    x = rng.standard_normal((1, 1, 28, 28))
    grads = []
    for adjoint in ("backsolve", "checkpoint"):
        model = odenet(rtol=1e-9, atol=1e-9, adjoint=adjoint, width=2)
        theta = model.init(np.random.default_rng(0))
        logits, cache = model.forward(theta, x)
        grads.append(model.vjp(theta, cache, np.ones_like(logits))[1])
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-3, atol=1e-5)


def test_rknet_gradient_is_exact_for_rk4(rng):
    model = rknet(n_steps=2, width=4)
    theta = model.init(rng)
    x = rng.standard_normal((2, 1, 28, 28))
    _, cache = model.forward(theta, x)
    assert ode_blocks(model)[0].nfe_forward == 8
    assert_vjp_matches_fd(lambda th: model(th, x), theta, lambda u: model.vjp(theta, cache, u)[1],
                          rng, eps=1e-7, rtol=1e-6, atol=1e-9)


# -- training --------------------------------------------------------------------------------

def blobs(n, rng):
    """28×28 images with one bright 8×8 blob in one of four quadrants; the label is the
    quadrant. Learnable, but only from the pixels."""
    y = rng.integers(0, 4, n)
    x = 0.3 * rng.standard_normal((n, 1, 28, 28))
    for i, q in enumerate(y):
        r, c = 3 + 14 * (q // 2) + rng.integers(0, 3), 3 + 14 * (q % 2) + rng.integers(0, 3)
        x[i, 0, r:r + 8, c:c + 8] += 1.5
    return x.astype(np.float32), y


def _config(**kw):
    return TrainConfig(progress=False, log=lambda s: None, **kw)


def ode_mlp(hidden=32, classes=4):
    """Flatten - Linear - ODE block (ConcatLinear-tanh-ConcatLinear dynamics) - Linear."""
    f = nn.Sequential(nn.ConcatLinear(hidden, hidden), nn.Tanh(), nn.ConcatLinear(hidden, hidden))
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden), nn.Tanh(),
                         nn.ODEBlock(f, rtol=1e-3, atol=1e-3), nn.Linear(hidden, classes))


def test_a_network_with_an_ode_block_learns(rng):
    x, y = blobs(256, rng)
    xt, yt = blobs(200, rng)
    model = ode_mlp()
    theta = model.init(rng, dtype=np.float32)
    before = evaluate(model, theta, xt, yt)[1]
    theta, hist = train_classifier(model, theta, nn.Adam(lr=3e-3), nn.schedules.constant(3e-3),
                                   (x, y, xt, yt), rng, _config(epochs=3, batch_size=32))
    assert before > 0.5                                  # about chance (3/4) before
    assert hist["test_error"][-1] < 0.1
    assert len(hist["loss"]) == 24 and len(hist["test_error"]) == 3
    assert min(hist["nfe_forward"]) > 0 and min(hist["nfe_backward"]) > 0


def test_resumed_training_continues_exactly(tmp_path, rng):
    x, y = blobs(96, rng)
    xt, yt = blobs(40, rng)
    data = (x, y, xt, yt)

    def run(path, max_steps=None, resume=False, theta=None):
        model = mlp(hidden=12)
        theta = model.init(np.random.default_rng(0)) if theta is None else theta
        return train_classifier(model, theta, nn.Adam(lr=1e-2), nn.schedules.constant(1e-2),
                                data, np.random.default_rng(1),
                                _config(epochs=3, batch_size=16, checkpoint=str(path),
                                        checkpoint_every=4, max_steps=max_steps,
                                        resume=resume))

    theta_full, hist_full = run(tmp_path / "a.ckpt")
    run(tmp_path / "b.ckpt", max_steps=7)                   # stops mid-epoch 2
    theta_res, hist_res = run(tmp_path / "b.ckpt", resume=True)
    np.testing.assert_array_equal(theta_res, theta_full)
    assert hist_res["loss"] == hist_full["loss"]
    assert hist_res["test_error"] == hist_full["test_error"]


@pytest.mark.skipif(not HAVE_REAL, reason=f"the four MNIST files are not in {REAL}")
def test_training_on_a_mnist_subset_learns(rng):
    from symode.data.mnist import as_float, load_mnist

    x, y = load_mnist(REAL, "train")
    xt, yt = load_mnist(REAL, "test")
    data = (as_float(x[:2000]), y[:2000].astype(np.int64), as_float(xt[:500]), yt[:500])
    model = ode_mlp(classes=10)
    theta = model.init(rng, dtype=np.float32)
    theta, hist = train_classifier(model, theta, nn.Adam(lr=3e-3), nn.schedules.constant(3e-3),
                                   data, rng, _config(epochs=2, batch_size=64))
    assert hist["test_error"][-1] < 0.25                    # chance is 0.9
