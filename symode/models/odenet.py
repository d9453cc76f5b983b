"""The MNIST classifiers of the Neural ODE paper (Chen et al. 2018, Table 1).

All four share the downsampling stem and the classifier head; they differ in the middle:

* ``odenet``: one ODE block, ``dz/dt = f(z, t)`` with ``f`` = GroupNorm-ReLU-ConcatConv2d(3×3)-
  GroupNorm-ReLU-ConcatConv2d(3×3)-GroupNorm, solved on t ∈ [0, 1] by dopri5 at
  rtol = atol = 1e-3, differentiated by the backsolve adjoint;
* ``resnet``: six residual blocks of the same shape (plain convolutions);
* ``rknet``: the ODE block with fixed-step RK4 and the discrete (backprop-through-solver)
  gradient;
* ``mlp``: one hidden layer of 300 units on the flattened image.

Parameter counts (paper): ODE-Net 0.22M, ResNet 0.60M, RK-Net 0.22M, MLP 0.24M.
"""

from __future__ import annotations

from ..nn.activations import ReLU
from ..nn.conv import ConcatConv2d, Conv2d
from ..nn.layers import Flatten, Linear, Residual
from ..nn.module import Sequential
from ..nn.norm import GroupNorm
from ..nn.ode_block import ODEBlock
from ..nn.pooling import AdaptiveAvgPool2d

__all__ = ["odenet", "resnet", "rknet", "mlp", "MODELS", "PAPER_PARAMS"]

WIDTH = 64
PAPER_PARAMS = {"odenet": 0.22e6, "resnet": 0.60e6, "rknet": 0.22e6, "mlp": 0.24e6}


def _norm(channels: int) -> GroupNorm:
    return GroupNorm(min(32, channels), channels)


def _stem(width: int) -> list:
    """1×28×28 -> width×6×6: a 3×3 convolution, then two strided 4×4 ones."""
    return [Conv2d(1, width, 3, 1), _norm(width), ReLU(),
            Conv2d(width, width, 4, 2, 1), _norm(width), ReLU(),
            Conv2d(width, width, 4, 2, 1)]


def _head(width: int) -> list:
    return [_norm(width), ReLU(), AdaptiveAvgPool2d(1), Flatten(), Linear(width, 10)]


def ode_function(channels: int = WIDTH) -> Sequential:
    """The dynamics of the ODE block (time enters each convolution as an extra channel)."""
    return Sequential(_norm(channels), ReLU(), ConcatConv2d(channels, channels, 3, 1, 1),
                      _norm(channels), ReLU(), ConcatConv2d(channels, channels, 3, 1, 1),
                      _norm(channels))


def residual_block(channels: int = WIDTH) -> Residual:
    """x + conv(relu(norm(conv(relu(norm(x)))))), as in the paper's ResNet baseline."""
    return Residual(Sequential(_norm(channels), ReLU(),
                               Conv2d(channels, channels, 3, 1, 1, bias=False),
                               _norm(channels), ReLU(),
                               Conv2d(channels, channels, 3, 1, 1, bias=False)))


def odenet(rtol: float = 1e-3, atol: float = 1e-3, adjoint: str = "backsolve",
           width: int = WIDTH) -> Sequential:
    """The ODE-Net: stem, one ODE block (dopri5 on t ∈ [0, 1]), head."""
    block = ODEBlock(ode_function(width), 0.0, 1.0, method="dopri5", rtol=rtol, atol=atol,
                     adjoint=adjoint)
    return Sequential(*_stem(width), block, *_head(width))


def rknet(n_steps: int = 4, width: int = WIDTH) -> Sequential:
    """The RK-Net: the ODE block solved by ``n_steps`` RK4 steps, differentiated through the
    solver (the discrete adjoint)."""
    block = ODEBlock(ode_function(width), 0.0, 1.0, method="rk4", n_steps=n_steps,
                     adjoint="discrete")
    return Sequential(*_stem(width), block, *_head(width))


def resnet(blocks: int = 6, width: int = WIDTH) -> Sequential:
    """The ResNet baseline: ``blocks`` residual blocks between the same stem and head."""
    return Sequential(*_stem(width), *[residual_block(width) for _ in range(blocks)],
                      *_head(width))


def mlp(hidden: int = 300) -> Sequential:
    """One hidden layer of ``hidden`` ReLU units on the flattened image."""
    return Sequential(Flatten(), Linear(28 * 28, hidden), ReLU(), Linear(hidden, 10))


MODELS = {"odenet": odenet, "resnet": resnet, "rknet": rknet, "mlp": mlp}
