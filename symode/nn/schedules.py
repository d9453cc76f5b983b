"""Learning-rate schedules: callables ``step -> lr``.

A schedule is a pure function of the number of updates already taken (0 for the first update),
so it needs no state of its own: a resumed run passes the restored optimizer step and gets the
same rate as an uninterrupted one::

    schedule = cosine(0.1, total_steps=10_000, warmup=500)
    theta, state = opt.step(theta, grad, state, lr=schedule(state["step"]))

Each value equals what the corresponding ``torch.optim.lr_scheduler`` reports after ``step``
calls of ``scheduler.step()`` (``StepLR``, ``MultiStepLR``, ``CosineAnnealingLR``, and
``LinearLR`` for the warmup), computed in closed form rather than by torch's recurrences; they
agree to rounding.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..errors import SymodeError

__all__ = ["Schedule", "constant", "step_decay", "cosine", "multistep"]

#: What every function here returns: ``schedule(step) -> lr`` for integer ``step >= 0``.
Schedule = Callable[[int], float]


def _as_int(value: Any) -> int | None:
    """``value`` as an int if it is a whole number (``3``, ``np.int64(3)``, ``3.0``), else None."""
    if isinstance(value, bool):
        return None
    try:
        as_int = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return as_int if as_int == value else None


def _check_int(owner: str, name: str, value: object, low: int) -> int:
    as_int = _as_int(value)
    if as_int is None or as_int < low:
        raise SymodeError(f"{owner}: {name}={value!r} must be an integer >= {low}.")
    return as_int


def _check_step(step: object) -> int:
    as_int = _as_int(step)
    if as_int is None or as_int < 0:
        raise SymodeError(f"schedule: step={step!r} must be an integer >= 0 (updates taken).")
    return as_int


def _check_lr(owner: str, **values: Any) -> None:
    for name, value in values.items():
        try:
            ok = math.isfinite(float(value)) and float(value) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise SymodeError(f"{owner}: {name}={value!r} must be a finite number >= 0.")


@dataclass(frozen=True)
class _Constant:
    lr: float

    def __call__(self, step: int) -> float:
        _check_step(step)
        return self.lr


@dataclass(frozen=True)
class _StepDecay:
    lr: float
    step_size: int
    gamma: float

    def __call__(self, step: int) -> float:
        return self.lr * self.gamma ** (_check_step(step) // self.step_size)


@dataclass(frozen=True)
class _MultiStep:
    lr: float
    milestones: tuple[int, ...]
    gamma: float

    def __call__(self, step: int) -> float:
        return self.lr * self.gamma ** bisect.bisect_right(self.milestones, _check_step(step))


@dataclass(frozen=True)
class _Cosine:
    lr: float
    total_steps: int
    lr_min: float
    warmup: int

    def __call__(self, step: int) -> float:
        step = _check_step(step)
        if step < self.warmup:
            return self.lr * (step + 1) / (self.warmup + 1)
        if step >= self.total_steps:
            return self.lr_min
        phase = math.pi * (step - self.warmup) / (self.total_steps - self.warmup)
        return self.lr_min + (self.lr - self.lr_min) * (1 + math.cos(phase)) / 2


def constant(lr: float) -> Schedule:
    """``lr`` at every step."""
    _check_lr("constant", lr=lr)
    return _Constant(float(lr))


def step_decay(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """``lr · gamma^(step // step_size)``: multiply by ``gamma`` every ``step_size`` steps.

    Parameters
    ----------
    lr : float
        Rate for steps ``0 .. step_size - 1``.
    step_size : int
        Steps between decays (``StepLR``'s ``step_size``).
    gamma : float, default 0.1
    """
    _check_lr("step_decay", lr=lr, gamma=gamma)
    step_size = _check_int("step_decay", "step_size", step_size, 1)
    return _StepDecay(float(lr), step_size, float(gamma))


def multistep(lr: float, milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    """``lr · gamma^(number of milestones <= step)``: decay once at each milestone.

    Parameters
    ----------
    lr : float
    milestones : sequence of int
        Increasing steps at which the rate is multiplied by ``gamma`` (the rate at step
        ``milestones[0]`` is already ``lr · gamma``).
    gamma : float, default 0.1
    """
    _check_lr("multistep", lr=lr, gamma=gamma)
    try:
        given = list(milestones)
    except TypeError:
        given = [milestones]
    ms = tuple(_as_int(m) for m in given)
    if any(m is None or m < 0 for m in ms) or any(a >= b for a, b in zip(ms, ms[1:])):
        raise SymodeError(f"multistep: milestones={milestones!r} must be strictly increasing "
                          f"integers >= 0.")
    return _MultiStep(float(lr), ms, float(gamma))


def cosine(lr: float, total_steps: int, lr_min: float = 0.0, warmup: int = 0) -> Schedule:
    """Linear warmup, then cosine annealing from ``lr`` to ``lr_min`` (Loshchilov & Hutter 2017).

    With ``w`` = ``warmup`` and ``T`` = ``total_steps``::

        lr(k) = lr · (k + 1) / (w + 1)                                   k < w
        lr(k) = lr_min + (lr - lr_min) (1 + cos(π (k - w) / (T - w))) / 2   w <= k < T
        lr(k) = lr_min                                                   k >= T

    The warmup never uses a zero rate and reaches ``lr`` exactly at step ``w``, where the cosine
    starts (``torch``'s ``LinearLR(start_factor=1/(w+1), total_iters=w)`` followed by
    ``CosineAnnealingLR(T_max=T-w, eta_min=lr_min)``). Past ``T`` the rate stays at ``lr_min``
    instead of climbing back up as ``CosineAnnealingLR`` does, so overrunning a planned run is
    harmless.

    Parameters
    ----------
    lr : float
        Peak rate.
    total_steps : int
        Steps of the whole run, warmup included.
    lr_min : float, default 0
        Final rate, at most ``lr``.
    warmup : int, default 0
        Must be smaller than ``total_steps``.
    """
    _check_lr("cosine", lr=lr, lr_min=lr_min)
    if lr_min > lr:
        raise SymodeError(f"cosine: lr_min={lr_min!r} exceeds lr={lr!r}; the schedule anneals "
                          f"from lr down to lr_min (were the two swapped?).")
    total_steps = _check_int("cosine", "total_steps", total_steps, 1)
    as_int = _as_int(warmup)
    if as_int is None or not 0 <= as_int < total_steps:
        raise SymodeError(f"cosine: warmup={warmup!r} must be an integer in "
                          f"[0, total_steps={total_steps}).")
    return _Cosine(float(lr), total_steps, float(lr_min), as_int)
