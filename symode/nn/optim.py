"""First-order optimizers over one flat parameter vector ``θ``.

An optimizer holds only hyperparameters; everything that changes during training lives in an
explicit state dict, so a checkpoint can save it (:func:`symode.nn.io.save_checkpoint`) and a
run can be resumed bit for bit::

    opt = Adam(lr=1e-3)
    state = opt.init(theta)                      # {"step": 0, "exp_avg": ..., "exp_avg_sq": ...}
    for x, y in batches:
        grad = ...                               # dL/dθ, shape (n_params,)
        theta, state = opt.step(theta, grad, state, lr=schedule(state["step"]))

``step`` is functional: it returns a new ``θ`` and a new state and leaves its arguments
untouched. The state's arrays have ``θ``'s shape and dtype; ``state["step"]`` counts the updates
taken (0 after ``init``).

The update rules and the state's array names (``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``,
``square_avg``, ``grad_avg``) follow ``torch.optim`` (PyTorch 2.x with its default flags: no
``maximize``, no ``amsgrad``), the conventions most users know; each class's docstring writes
its rule out with ``g`` the gradient and ``γ`` the learning rate. Where PyTorch would pass on
a NaN (the centered RMSprop variance rounding below zero) symode clamps instead. ``step`` casts
the gradient to ``θ``'s dtype, so float32 training stays float32.

Hyperparameters are checked when an optimizer is built; a bad one raises
:class:`~symode.errors.SymodeError` naming it and the range it must lie in. A cupy ``θ`` gets
cupy state and cupy updates (:mod:`symode.backend`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..backend import array_module, asarray
from ..errors import NonFiniteError, ShapeError, SymodeError

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "clip_grad_norm"]

State = dict[str, Any]


def _lerp(start: NDArray, end: NDArray, weight: float) -> NDArray:
    """``start + weight (end - start)``, evaluated from the nearer end as ``torch.lerp`` does."""
    if abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1.0 - weight)


def _check_range(owner: str, name: str, value: Any, low: float = 0.0, high: float = np.inf,
                 low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a float, or a :class:`SymodeError` saying which interval it must lie in."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = float("nan")
    too_low = x <= low if low_open else x < low
    too_high = x >= high if high_open else x > high
    if np.isnan(x) or too_low or too_high:
        if high == np.inf:
            finite = "finite " if high_open else ""
            rule = f"be a {finite}number {'>' if low_open else '>='} {low:g}"
        else:
            rule = (f"lie in {'(' if low_open else '['}{low:g}, {high:g}"
                    f"{')' if high_open else ']'}")
        raise SymodeError(f"{owner}: {name}={value!r} must {rule}.")
    return x


def _beta(owner: str, name: str, value: Any) -> float:
    return _check_range(owner, name, value, 0.0, 1.0, high_open=True)


@dataclass(frozen=True)
class Optimizer:
    """Base class: hyperparameters, input checks and the ``init``/``step`` protocol.

    Subclasses list the state arrays they need in :meth:`_buffers` and implement
    :meth:`_update`, which may assume checked inputs and must not modify them.
    """

    lr: float

    def __post_init__(self) -> None:
        self._checked("lr")

    def _checked(self, name: str, low: float = 0.0, high: float = np.inf, **open_ends: bool):
        """Check hyperparameter ``name`` (see :func:`_check_range`) and store it as a float."""
        if high == np.inf:
            open_ends.setdefault("high_open", True)
        value = _check_range(type(self).__name__, name, getattr(self, name), low, high,
                             **open_ends)
        object.__setattr__(self, name, value)

    def _buffers(self) -> tuple[str, ...]:
        return ()

    def init(self, theta: ArrayLike) -> State:
        """Fresh state for parameters ``theta``: zero buffers and ``step = 0``.

        Parameters
        ----------
        theta : ndarray, shape (n_params,)

        Returns
        -------
        state : dict
            ``"step"`` (int) and one array of ``theta``'s shape and dtype per buffer.
        """
        theta = self._check_theta(theta)
        state: State = {"step": 0}
        xp = array_module(theta)
        for name in self._buffers():
            state[name] = xp.zeros_like(theta)
        return state

    def step(self, theta: ArrayLike, grad: ArrayLike, state: State,
             lr: float | None = None) -> tuple[NDArray, State]:
        """One update; returns new arrays and leaves ``theta``, ``grad`` and ``state`` unchanged.

        Parameters
        ----------
        theta, grad : ndarray, shape (n_params,)
            Parameters and the gradient of the loss with respect to them.
        state : dict
            From :meth:`init` or a previous ``step``.
        lr : float, optional
            Learning rate for this step (a schedule's value); the optimizer's own ``lr`` if
            omitted.

        Returns
        -------
        theta_new : ndarray, shape (n_params,)
        state_new : dict
            ``state_new["step"] == state["step"] + 1``.

        Raises
        ------
        ShapeError
            ``grad`` or a state array does not have ``theta``'s shape.
        NonFiniteError
            ``grad`` holds NaN or infinity (the update would spread it into every parameter).
        """
        theta = self._check_theta(theta)
        name = type(self).__name__
        self._check_state(theta, state)
        grad = asarray(grad)
        if grad.shape != theta.shape:
            raise ShapeError(f"{name}.step: grad has shape {grad.shape}, theta {theta.shape}.")
        xp = array_module(grad)
        if not xp.isfinite(grad).all():
            bad = ~xp.isfinite(grad)
            raise NonFiniteError(
                f"{name}.step: grad has {int(bad.sum())} non-finite entries (first at index "
                f"{int(xp.flatnonzero(bad)[0])}) at step {state['step']}. Lower the "
                f"learning rate, clip the gradient (clip_grad_norm) or look for a blown-up loss.")
        grad = grad.astype(theta.dtype, copy=False)
        if lr is None:
            lr = self.lr
        else:
            lr = _check_range(name, "lr", lr, high=np.inf, high_open=True)
        step = int(state["step"]) + 1
        theta_new, buffers = self._update(theta, grad, state, lr, step)
        return theta_new, {"step": step, **buffers}

    def _update(self, theta: NDArray, grad: NDArray, state: State, lr: float,
                step: int) -> tuple[NDArray, dict[str, NDArray]]:
        raise NotImplementedError

    # -- checks ----------------------------------------------------------------------------------
    def _check_theta(self, theta: ArrayLike) -> NDArray:
        theta = asarray(theta)
        if theta.ndim != 1 or not np.issubdtype(theta.dtype, np.floating):
            raise ShapeError(
                f"{type(self).__name__}: theta must be a flat float vector (n_params,); got shape "
                f"{theta.shape}, dtype {theta.dtype}. Modules keep all parameters in one vector.")
        return theta

    def _check_state(self, theta: NDArray, state: State) -> None:
        name = type(self).__name__
        if not isinstance(state, dict) or "step" not in state:
            raise SymodeError(f"{name}.step: state must be the dict made by {name}.init(theta).")
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise SymodeError(f"{name}.step: state['step']={step!r} must be an integer >= 0 "
                              f"(the number of updates taken).")
        for key in self._buffers():
            if key not in state:
                raise SymodeError(
                    f"{name}.step: state has no {key!r} (it has {sorted(state)}); it was made "
                    f"by another optimizer or other settings. Start from {name}.init(theta).")
            if np.shape(state[key]) != theta.shape:
                raise ShapeError(f"{name}.step: state[{key!r}] has shape "
                                 f"{np.shape(state[key])}, theta {theta.shape}.")


@dataclass(frozen=True)
class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    With ``λ`` = ``weight_decay``, ``μ`` = ``momentum``, ``τ`` = ``dampening``::

        g ← g + λ θ
        b ← g                      (first step)
        b ← μ b + (1 - τ) g        (later steps)
        g ← g + μ b   if nesterov,   else g ← b
        θ ← θ - γ g

    The weight decay is added to the gradient (an L2 penalty), so it also passes through the
    momentum. Nesterov momentum needs ``momentum > 0`` and ``dampening = 0``. The state's
    ``momentum_buffer`` is ``b`` (zeros until the first step, where ``torch`` holds ``None``).

    Parameters
    ----------
    lr : float >= 0
    momentum : float in [0, 1), default 0
    nesterov : bool, default False
    weight_decay : float >= 0, default 0
    dampening : float in [0, 1], default 0
    """

    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    dampening: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._checked("momentum", 0.0, 1.0, high_open=True)
        self._checked("dampening", 0.0, 1.0)
        self._checked("weight_decay")
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise SymodeError(f"SGD: nesterov=True needs momentum > 0 and dampening = 0; got "
                              f"momentum={self.momentum}, dampening={self.dampening}.")

    def _buffers(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.momentum != 0 else ()

    def _update(self, theta, grad, state, lr, step):
        if self.weight_decay != 0:
            grad = grad + self.weight_decay * theta
        buffers = {}
        if self.momentum != 0:
            if step == 1:
                buf = grad.copy()
            else:
                buf = state["momentum_buffer"] * self.momentum + (1 - self.dampening) * grad
            grad = grad + self.momentum * buf if self.nesterov else buf
            buffers["momentum_buffer"] = buf
        return theta + (-lr) * grad, buffers


@dataclass(frozen=True)
class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction and optional L2 weight decay.

    At step ``k`` (counting from 1), with ``λ`` = ``weight_decay``::

        g ← g + λ θ
        m ← β1 m + (1 - β1) g
        v ← β2 v + (1 - β2) g²
        θ ← θ - γ / (1 - β1^k) · m / (sqrt(v) / sqrt(1 - β2^k) + ε)

    The weight decay here is coupled: it is added to the gradient and so rescaled by ``1/sqrt(v)``
    like the rest of it; :class:`AdamW` decays the parameters directly, which is usually what is
    meant by weight decay with Adam (Loshchilov & Hutter 2019).

    Parameters
    ----------
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
        ``(β1, β2)``, each in [0, 1): decay rates of the moment estimates ``m = exp_avg``,
        ``v = exp_avg_sq``.
    eps : float > 0, default 1e-8
    weight_decay : float >= 0, default 0
    """

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise SymodeError(f"{name}: betas={self.betas!r} must be a pair (beta1, beta2).")
        object.__setattr__(self, "betas", (_beta(name, "betas[0]", self.betas[0]),
                                           _beta(name, "betas[1]", self.betas[1])))
        self._checked("eps", low_open=True)
        self._checked("weight_decay")

    def _buffers(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def _update(self, theta, grad, state, lr, step):
        if self.weight_decay != 0:
            grad = grad + self.weight_decay * theta
        return self._adam(theta, grad, state, lr, step)

    def _adam(self, theta, grad, state, lr, step):
        beta1, beta2 = self.betas
        m = _lerp(state["exp_avg"], grad, 1 - beta1)
        v = state["exp_avg_sq"] * beta2 + (1 - beta2) * grad * grad
        step_size = lr / (1 - beta1 ** step)
        denom = array_module(v).sqrt(v) / (1 - beta2 ** step) ** 0.5 + self.eps
        return theta + (-step_size) * m / denom, {"exp_avg": m, "exp_avg_sq": v}


@dataclass(frozen=True)
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019).

    The parameters shrink by ``1 - γ λ`` before the Adam update, which itself sees the plain
    gradient::

        θ ← θ (1 - γ λ)
        θ ← Adam update of θ with g (no decay term)

    Unlike :class:`Adam`'s coupled decay, every parameter decays at the same relative rate
    whatever the size of its gradients. The default ``weight_decay`` is 1e-2, as in ``torch``.
    Keep ``γ λ`` well below 1: at ``γ λ >= 1`` the shrink factor is zero or flips signs.

    Parameters
    ----------
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 1e-2
    """

    weight_decay: float = 1e-2

    def _update(self, theta, grad, state, lr, step):
        if self.weight_decay != 0:
            theta = theta * (1 - lr * self.weight_decay)
        return self._adam(theta, grad, state, lr, step)


@dataclass(frozen=True)
class RMSprop(Optimizer):
    """RMSprop (Hinton, Coursera lecture 6.5), optionally centered and with momentum.

    With ``α`` = ``alpha``, ``μ`` = ``momentum``, ``λ`` = ``weight_decay``::

        g ← g + λ θ
        s ← α s + (1 - α) g²                        (square_avg)
        ḡ ← α ḡ + (1 - α) g                         (grad_avg, centered only)
        d ← sqrt(s - ḡ²) + ε   if centered,   else sqrt(s) + ε
        b ← μ b + g / d,   θ ← θ - γ b             if momentum > 0
        θ ← θ - γ g / d                             otherwise

    ``ε`` is added outside the square root, as in ``torch`` (Keras adds it inside). In the
    centered variant ``s - ḡ²`` is clamped at 0 before the square root, so rounding cannot
    turn a nearly constant gradient into NaN.

    Parameters
    ----------
    lr : float, default 1e-2
    alpha : float in [0, 1), default 0.99
        Decay rate of ``s`` (``torch``'s default; Hinton's lecture used 0.9).
    eps : float > 0, default 1e-8
    momentum : float in [0, 1), default 0
    centered : bool, default False
        Divide by an estimate of the gradient's standard deviation instead of its RMS.
    weight_decay : float, default 0
    """

    lr: float = 1e-2
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    centered: bool = False
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._checked("alpha", 0.0, 1.0, high_open=True)
        self._checked("eps", low_open=True)
        self._checked("momentum", 0.0, 1.0, high_open=True)
        self._checked("weight_decay")

    def _buffers(self) -> tuple[str, ...]:
        return (("square_avg",) + (("grad_avg",) if self.centered else ())
                + (("momentum_buffer",) if self.momentum > 0 else ()))

    def _update(self, theta, grad, state, lr, step):
        if self.weight_decay != 0:
            grad = grad + self.weight_decay * theta
        s = state["square_avg"] * self.alpha + (1 - self.alpha) * grad * grad
        buffers = {"square_avg": s}
        xp = array_module(s)
        if self.centered:
            gbar = _lerp(state["grad_avg"], grad, 1 - self.alpha)
            # s - ḡ² >= 0 in exact arithmetic; rounding can push it below when g barely varies
            denom = xp.sqrt(xp.maximum(s - gbar * gbar, 0)) + self.eps
            buffers["grad_avg"] = gbar
        else:
            denom = xp.sqrt(s) + self.eps
        if self.momentum > 0:
            buf = state["momentum_buffer"] * self.momentum + grad / denom
            buffers["momentum_buffer"] = buf
            return theta + (-lr) * buf, buffers
        return theta + (-lr) * grad / denom, buffers


def clip_grad_norm(grad: ArrayLike, max_norm: float) -> tuple[NDArray, float]:
    """Scale ``grad`` down so that its Euclidean norm is at most ``max_norm``.

    ``clipped = grad · min(1, max_norm / (‖grad‖ + 1e-6))``, as
    ``torch.nn.utils.clip_grad_norm_`` does (the 1e-6 keeps the division finite and leaves the
    clipped norm a hair under ``max_norm``). Gradients already short enough are returned
    unchanged (as a copy).

    Parameters
    ----------
    grad : ndarray, shape (n_params,)
    max_norm : float
        Positive bound on the norm.

    Returns
    -------
    clipped : ndarray, shape (n_params,)
    norm : float
        ``‖grad‖`` before clipping; worth logging, since a norm that keeps hitting the bound
        means the learning rate or the model is off.

    Raises
    ------
    NonFiniteError
        The norm is NaN or infinite; there is no meaningful direction to keep.
    """
    grad = asarray(grad)
    max_norm = _check_range("clip_grad_norm", "max_norm", max_norm, low_open=True)
    norm = float(array_module(grad).linalg.norm(grad.ravel()))
    if not np.isfinite(norm):
        raise NonFiniteError(f"clip_grad_norm: the gradient norm is {norm}; the gradient holds "
                             f"NaN or infinity, so clipping cannot rescue the step.")
    coef = min(1.0, max_norm / (norm + 1e-6))
    return grad * coef if coef < 1.0 else grad.copy(), norm
