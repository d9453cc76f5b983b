"""A training loop for classifiers built from symode modules: minibatches, progress, test
error per epoch, ODE-block function evaluations, and checkpoints that resume exactly.

A checkpoint holds θ, the optimizer state, the epoch's shuffled order and the position in it,
the generator's state and the history, written atomically; resuming continues with the same
batches and the same numbers as a run that never stopped.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..nn.io import load_checkpoint, save_checkpoint
from ..nn.losses import accuracy, softmax_cross_entropy
from ..nn.module import Module
from ..nn.ode_block import ODEBlock

__all__ = ["TrainConfig", "train_classifier", "evaluate", "ode_blocks"]


@dataclass
class TrainConfig:
    """Options of :func:`train_classifier`."""

    epochs: int = 1
    batch_size: int = 128
    eval_batch_size: int = 1000
    checkpoint: str | None = None       # path of the checkpoint file
    checkpoint_every: int = 100         # steps between checkpoints (and at each epoch's end)
    resume: bool = False
    max_steps: int | None = None        # stop after this many steps in total (for short runs)
    progress: bool = True
    log: Callable[[str], None] = print


def ode_blocks(module: Module) -> list[ODEBlock]:
    """Every ODEBlock in a module tree."""
    found = [module] if isinstance(module, ODEBlock) else []
    for child in module.children:
        found += ode_blocks(child)
    return found


def evaluate(model: Module, theta, x, y, batch_size: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy and error rate of ``model`` on (x, y)."""
    losses, correct = [], 0
    for i in range(0, len(x), batch_size):
        logits = model(theta, x[i:i + batch_size])
        losses.append(softmax_cross_entropy(logits, y[i:i + batch_size])[0] * len(logits))
        correct += accuracy(logits, y[i:i + batch_size]) * len(logits)
    return float(np.sum(losses) / len(x)), 1.0 - correct / len(x)


def train_classifier(model: Module, theta, optimizer, schedule, data, rng: np.random.Generator,
                     config: TrainConfig):
    """Train ``model`` by minibatch gradient descent on softmax cross-entropy.

    Parameters
    ----------
    model : Module
    theta : ndarray, shape (model.n_params,)
    optimizer : symode.nn.optim optimizer
    schedule : callable ``step -> learning rate``
    data : tuple ``(x_train, y_train, x_test, y_test)``
    rng : numpy Generator
        Shuffles each epoch (its state is checkpointed).
    config : TrainConfig

    Returns
    -------
    theta : ndarray
    history : dict
        Per step ``loss``, ``acc``, ``nfe_forward``, ``nfe_backward``, ``seconds``; per epoch
        ``test_error`` and ``test_loss``.
    """
    x_train, y_train, x_test, y_test = data
    n = len(x_train)
    steps_per_epoch = -(-n // config.batch_size)
    opt_state = optimizer.init(theta)
    history = {"loss": [], "acc": [], "nfe_forward": [], "nfe_backward": [], "seconds": [],
               "test_error": [], "test_loss": [], "epoch_seconds": []}
    epoch, pos, step, order = 0, 0, 0, None
    if config.resume and config.checkpoint and os.path.exists(config.checkpoint):
        ck = load_checkpoint(config.checkpoint)
        theta, opt_state, rng = ck["theta"], ck["opt_state"], ck["rng"]
        epoch, pos, step = ck["epoch"], ck["pos"], ck["step"]
        order = ck["order"] if len(ck["order"]) else None
        history = {k: list(v) for k, v in ck["history"].items()}
        config.log(f"resumed from {config.checkpoint}: epoch {epoch + 1}, step {step}")
    blocks = ode_blocks(model)
    bar = _progress(config, steps_per_epoch * config.epochs, step)
    while epoch < config.epochs:
        if order is None:
            order = rng.permutation(n)
        t_epoch = time.perf_counter()
        while pos < n:
            if config.max_steps is not None and step >= config.max_steps:
                break
            idx = order[pos:pos + config.batch_size]
            t0 = time.perf_counter()
            logits, cache = model.forward(theta, x_train[idx])
            loss, dlogits = softmax_cross_entropy(logits, y_train[idx])
            _, grad = model.vjp(theta, cache, dlogits)
            theta, opt_state = optimizer.step(theta, grad, opt_state, lr=schedule(step))
            pos += len(idx)
            step += 1
            _record(history, loss, accuracy(logits, y_train[idx]), blocks,
                    time.perf_counter() - t0)
            bar(history)
            if config.checkpoint and step % config.checkpoint_every == 0:
                _save(config, theta, opt_state, rng, epoch, pos, step, order, history)
        if pos < n:                                    # stopped by max_steps
            _save(config, theta, opt_state, rng, epoch, pos, step, order, history)
            break
        test_loss, test_error = evaluate(model, theta, x_test, y_test, config.eval_batch_size)
        history["test_loss"].append(test_loss)
        history["test_error"].append(test_error)
        history["epoch_seconds"].append(time.perf_counter() - t_epoch)
        config.log(f"epoch {epoch + 1}: test error {100 * test_error:.2f}%, "
                   f"test loss {test_loss:.4f}")
        epoch, pos, order = epoch + 1, 0, None
        _save(config, theta, opt_state, rng, epoch, pos, step, order, history)
    return theta, history


def _record(history, loss, acc, blocks, seconds):
    history["loss"].append(float(loss))
    history["acc"].append(float(acc))
    history["nfe_forward"].append(sum(b.nfe_forward for b in blocks))
    history["nfe_backward"].append(sum(b.nfe_backward for b in blocks))
    history["seconds"].append(seconds)


def _save(config, theta, opt_state, rng, epoch, pos, step, order, history):
    if config.checkpoint:
        save_checkpoint(config.checkpoint, theta=theta, opt_state=opt_state, rng=rng,
                        epoch=epoch, pos=pos, step=step,
                        order=np.zeros(0, dtype=np.int64) if order is None else order,
                        history=history)


def _progress(config, total, start):
    """A progress display: tqdm when installed, a line every 20 steps otherwise."""
    if not config.progress:
        return lambda history: None
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)

        def update(h):
            bar.set_postfix(loss=f"{h['loss'][-1]:.3f}", acc=f"{h['acc'][-1]:.3f}",
                            nfe=f"{h['nfe_forward'][-1]}/{h['nfe_backward'][-1]}",
                            s=f"{h['seconds'][-1]:.2f}", refresh=False)
            bar.update(1)
        return update

    def line(h):
        k = len(h["loss"])
        if k % 20 == 0:
            config.log(f"step {k}/{total}: loss {np.mean(h['loss'][-20:]):.4f}, "
                       f"acc {np.mean(h['acc'][-20:]):.3f}, nfe {h['nfe_forward'][-1]}/"
                       f"{h['nfe_backward'][-1]}, {np.mean(h['seconds'][-20:]):.2f} s/step")
    return line
