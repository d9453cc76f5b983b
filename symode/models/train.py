"""Training loops with progress and checkpoints that resume exactly.

* :func:`fit`: any model whose step is "draw a batch, return the loss and its gradient" (flows,
  latent ODEs, fits of ODE parameters), for a number of iterations;
* :func:`train_classifier`: classifiers by epochs over a data set, with the test error per epoch
  and the ODE blocks' function evaluations.

A checkpoint holds θ, the optimizer state, the random generator's state, the position in the
run and the history, written atomically; resuming continues with the same batches and the same
numbers as a run that never stopped.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import NonFiniteError, SymodeError
from ..nn.io import load_checkpoint, save_checkpoint
from ..nn.losses import accuracy, softmax_cross_entropy
from ..nn.module import Module
from ..nn.ode_block import ODEBlock

__all__ = ["fit", "TrainConfig", "train_classifier", "evaluate", "ode_blocks"]


def fit(step: Callable, theta, optimizer, iters: int, rng: np.random.Generator, *,
        schedule: Callable[[int], float] | None = None, checkpoint: str | None = None,
        checkpoint_every: int = 100, resume: bool = False, progress: bool = True,
        log: Callable[[str], None] = print, log_every: int = 100):
    """Run ``iters`` optimizer steps on what ``step`` returns, with progress and checkpoints.

    Parameters
    ----------
    step : callable ``step(theta, rng) -> (loss, grad)`` or ``(loss, grad, info)``
        One iteration's loss and gradient. Draw everything random (the batch, noise, probes)
        from ``rng``: its state is what the checkpoint keeps. ``info``, a mapping of names to
        numbers (function evaluations, parts of the loss), joins the history.
    theta : ndarray, shape (n_params,)
        Starting parameters (ignored when resuming from a checkpoint).
    optimizer : symode.nn optimizer
    iters : int
        Total iterations, counting those of a resumed run.
    rng : numpy Generator
    schedule : callable ``iteration -> learning rate``, optional
        The optimizer's own ``lr`` if omitted.
    checkpoint : str, optional
        Path written atomically every ``checkpoint_every`` iterations and at the end.
    resume : bool
        Continue from ``checkpoint`` when it exists (else start afresh).
    progress : bool
        A tqdm bar when tqdm is installed, else a line every ``log_every`` iterations.

    Returns
    -------
    theta : ndarray
    history : dict of lists
        Per iteration ``loss``, ``seconds`` and each ``info`` entry.

    Examples
    --------
    >>> def step(theta, rng):                                   # doctest: +SKIP
    ...     out = model.loss_and_grad(theta, *data.batch(rng.choice(n, 100)), rng)
    ...     return out.loss, out.grad, {"nfe": out.nfe_forward}
    >>> theta, history = fit(step, theta, nn.Adam(1e-2), 2000, np.random.default_rng(0),
    ...                      checkpoint="run.ckpt", resume=True)  # doctest: +SKIP
    """
    if isinstance(iters, bool) or not isinstance(iters, numbers.Integral) or iters < 0:
        raise SymodeError(f"fit: iters must be a whole number >= 0, got {iters!r}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, numbers.Integral) \
            or checkpoint_every < 1:
        raise SymodeError(f"fit: checkpoint_every must be a whole number >= 1, got "
                          f"{checkpoint_every!r}")
    if not isinstance(rng, np.random.Generator):
        raise SymodeError(f"fit needs a numpy Generator (np.random.default_rng(seed)), whose "
                          f"state the checkpoints keep; got {type(rng).__name__}")
    opt_state = optimizer.init(theta)
    history: dict[str, list] = {"loss": [], "seconds": []}
    it = 0
    if resume and checkpoint and os.path.exists(checkpoint):
        ck = load_checkpoint(checkpoint)
        if ck.get("kind") != "fit":
            raise SymodeError(f"{checkpoint} is not a checkpoint of fit (it holds "
                              f"{sorted(k for k in ck if k != 'symode_version')}); give another "
                              f"path or resume=False")
        theta, opt_state, rng, it = ck["theta"], ck["opt_state"], ck["rng"], ck["iteration"]
        history = {k: list(v) for k, v in ck["history"].items()}
        log(f"resumed from {checkpoint} at iteration {it}")

    def save():
        if checkpoint:
            save_checkpoint(checkpoint, kind="fit", theta=theta, opt_state=opt_state, rng=rng,
                            iteration=it, history=history)

    bar = _bar(progress, iters, it, log, log_every)
    while it < iters:
        start = time.perf_counter()
        loss, grad, info = _unpack(step(theta, rng), it)
        theta, opt_state = optimizer.step(theta, grad, opt_state,
                                          lr=None if schedule is None else schedule(it))
        it += 1
        history["loss"].append(loss)
        history["seconds"].append(time.perf_counter() - start)
        for key, value in info.items():
            history.setdefault(key, []).append(value)
        bar(history)
        if it % checkpoint_every == 0 and it < iters:
            save()
    save()
    return theta, history


def _unpack(out, it: int) -> tuple[float, Any, dict]:
    """``(loss, grad, info)`` from what a step returned, checked."""
    if not isinstance(out, tuple) or len(out) not in (2, 3):
        raise SymodeError(f"fit: step must return (loss, grad) or (loss, grad, info), got "
                          f"{type(out).__name__}")
    loss, grad, info = (*out, {}) if len(out) == 2 else out
    loss = float(loss)
    if not math.isfinite(loss):
        raise NonFiniteError(f"fit: the loss is {loss} at iteration {it}; lower the learning "
                             f"rate or look at the last checkpoint's history")
    if not isinstance(info, Mapping):
        raise SymodeError(f"fit: info must be a mapping name -> number, got "
                          f"{type(info).__name__}")
    return loss, grad, {k: float(v) for k, v in info.items()}


def _bar(progress: bool, total: int, start: int, log, every: int):
    """A progress display: tqdm with the last value of every per-iteration series of the
    history (``seconds`` aside), or, without tqdm, a log line of their means every ``every``
    iterations."""
    if not progress:
        return lambda history: None

    def series(h):
        n = len(h["loss"])
        return {k: v for k, v in h.items() if k != "seconds" and len(v) == n}

    try:
        from tqdm import tqdm
    except ImportError:
        def line(h):
            k = len(h["loss"])
            if every and k % every == 0:
                shown = ", ".join(f"{key} {np.mean(v[-every:]):.4g}"
                                  for key, v in series(h).items())
                log(f"iteration {k}/{total}: {shown}, "
                    f"{np.mean(h['seconds'][-every:]):.3f} s/it")
        return line
    bar = tqdm(total=total, initial=start, unit="it", dynamic_ncols=True, mininterval=0.5)

    def update(h):
        bar.set_postfix({k: f"{v[-1]:.4g}" for k, v in series(h).items()}, refresh=False)
        bar.update(1)
        if bar.n >= total:
            bar.close()
    return update


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
    bar = _bar(config.progress, steps_per_epoch * config.epochs, step, config.log, 20)
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
