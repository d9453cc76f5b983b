"""Parameter initializers: random arrays drawn from a numpy ``Generator``.

Every initializer has the signature ``init(rng, shape, ...) -> ndarray`` (float64; ``Module.init``
casts to the requested dtype), so layers can swap one for another. The fans of a weight follow
torch's convention: for a shape ``(n_out, n_in, *kernel)``, ``fan_in = n_in · prod(kernel)`` and
``fan_out = n_out · prod(kernel)``. With the defaults, :func:`kaiming_uniform` and :func:`uniform`
reproduce the distributions of ``torch.nn.Linear`` and ``torch.nn.Conv2d`` (the draws differ, the
laws do not).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["fans", "kaiming_uniform", "xavier_uniform", "uniform", "normal", "zeros"]

Shape = int | Sequence[int]


def fans(shape: Shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of this shape, as torch computes them.

    For ``shape = (n_out, n_in, k_1, ..., k_m)``: ``fan_in = n_in · Π k_i`` and
    ``fan_out = n_out · Π k_i``. A 1-D shape ``(n,)`` has ``fan_in = fan_out = n``.
    """
    shape = _as_shape(shape)
    if len(shape) == 0:
        raise ValueError("a scalar parameter has no fan; pass fan_in explicitly")
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def kaiming_uniform(rng: np.random.Generator, shape: Shape, fan_in: int | None = None,
                    a: float = math.sqrt(5)) -> NDArray[np.float64]:
    """He-uniform weights, torch's default for ``Linear`` and ``Conv`` weights.

    Draws ``W ~ U(-bound, bound)`` with

    .. math:: \\mathrm{gain} = \\sqrt{2 / (1 + a^2)}, \\qquad
              \\mathrm{bound} = \\mathrm{gain}\\,\\sqrt{3 / \\mathrm{fan\\_in}},

    the uniform law with variance ``gain² / fan_in`` (He et al., *Delving deep into
    rectifiers*, 2015). torch's default ``a = √5`` gives ``gain = 1/√3`` and so
    ``bound = 1/√fan_in``: ``W ~ U(-1/√fan_in, 1/√fan_in)``. ``a = 0`` is the ReLU gain ``√2``.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : int or tuple of int
        ``(n_out, n_in, *kernel)`` for a weight.
    fan_in : int, optional
        Inputs feeding each output; by default from ``shape`` (see :func:`fans`).
    a : float
        Negative slope of the leaky ReLU the gain is computed for.

    Returns
    -------
    W : ndarray, shape ``shape``
    """
    fan_in = _positive(fans(shape)[0] if fan_in is None else fan_in, "fan_in")
    gain = math.sqrt(2.0 / (1.0 + a * a))
    return uniform(rng, shape, gain * math.sqrt(3.0 / fan_in))


def xavier_uniform(rng: np.random.Generator, shape: Shape, fan_in: int | None = None,
                   fan_out: int | None = None, gain: float = 1.0) -> NDArray[np.float64]:
    """Glorot-uniform weights: ``W ~ U(-b, b)``, ``b = gain · √(6 / (fan_in + fan_out))``.

    The variance ``2 gain² / (fan_in + fan_out)`` balances forward and backward signal (Glorot &
    Bengio, *Understanding the difficulty of training deep feedforward neural networks*, 2010).

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : int or tuple of int
    fan_in, fan_out : int, optional
        By default from ``shape`` (see :func:`fans`).
    gain : float

    Returns
    -------
    W : ndarray, shape ``shape``
    """
    if fan_in is None or fan_out is None:
        shape_in, shape_out = fans(shape)
        fan_in = shape_in if fan_in is None else fan_in
        fan_out = shape_out if fan_out is None else fan_out
    fan_in, fan_out = _positive(fan_in, "fan_in"), _positive(fan_out, "fan_out")
    return uniform(rng, shape, gain * math.sqrt(6.0 / (fan_in + fan_out)))


def uniform(rng: np.random.Generator, shape: Shape, bound: float) -> NDArray[np.float64]:
    """``U(-bound, bound)``; torch's default bias of a layer with ``fan_in`` inputs is
    ``bound = 1/√fan_in``.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : int or tuple of int
    bound : float
        Half-width of the interval, ``>= 0``.
    """
    if not bound >= 0:
        raise ValueError(f"uniform(): bound must be >= 0, got {bound}")
    return rng.uniform(-bound, bound, _as_shape(shape))


def normal(rng: np.random.Generator, shape: Shape, std: float = 1.0,
           mean: float = 0.0) -> NDArray[np.float64]:
    """``N(mean, std²)`` entries.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : int or tuple of int
    std : float
        Standard deviation, ``>= 0``.
    mean : float
    """
    if not std >= 0:
        raise ValueError(f"normal(): std must be >= 0, got {std}")
    return mean + std * rng.standard_normal(_as_shape(shape))


def zeros(rng: np.random.Generator, shape: Shape) -> NDArray[np.float64]:
    """All zeros; ``rng`` is not used and only keeps the common signature."""
    return np.zeros(_as_shape(shape))


def _as_shape(shape: Shape) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if any(int(s) != s or s < 0 for s in shape):
        raise ValueError(f"a shape is a tuple of non-negative integers, got {shape}")
    return tuple(int(s) for s in shape)


def _positive(n: int, name: str) -> int:
    if int(n) != n or n <= 0:
        raise ValueError(f"{name} must be a positive integer, got {n}")
    return int(n)
