"""symode.nn: functional layers with explicit parameters, losses and initializers.

A module holds structure only; its parameters are one flat vector ``θ`` (``module.init(rng)``).
Every layer has ``forward(θ, x, t) -> (y, cache)``, ``vjp`` (or ``vjp_t``) and ``jvp``; see
:mod:`symode.nn.module`.

>>> import numpy as np
>>> from symode import nn
>>> net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))
>>> theta = net.init(np.random.default_rng(0))
>>> y, cache = net.forward(theta, np.zeros((5, 2)))
>>> xbar, thetabar = net.vjp(theta, cache, np.ones_like(y))
"""

from . import init
from .activations import ELU, Activation, ReLU, Sigmoid, SiLU, Softplus, Swish, Tanh, activation
from .layers import ConcatLinear, ConcatSquashLinear, Flatten, Linear, Residual, Unflatten
from .losses import accuracy, gaussian_nll, kl_diag_gaussians, mse, softmax_cross_entropy
from .module import Module, Sequential

from . import parallel, schedules
from .conv import ConcatConv2d, Conv2d
from .io import load_checkpoint, load_params, save_checkpoint, save_params
from .norm import GroupNorm
from .ode_block import NetworkDynamics, ODEBlock
from .optim import SGD, Adam, AdamW, Optimizer, RMSprop, clip_grad_norm
from .pooling import AdaptiveAvgPool2d

__all__ = [
    # module.py
    "Module", "Sequential",
    # layers.py
    "Linear", "ConcatLinear", "ConcatSquashLinear", "Flatten", "Unflatten", "Residual",
    # activations.py
    "Activation", "activation", "ReLU", "Tanh", "Sigmoid", "Softplus", "SiLU", "Swish", "ELU",
    # losses.py
    "softmax_cross_entropy", "accuracy", "mse", "gaussian_nll", "kl_diag_gaussians",
    # conv.py, norm.py, pooling.py
    "Conv2d", "ConcatConv2d", "GroupNorm", "AdaptiveAvgPool2d",
    # ode_block.py
    "NetworkDynamics", "ODEBlock",
    # optim.py, io.py
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "clip_grad_norm",
    "save_params", "load_params", "save_checkpoint", "load_checkpoint",
    # submodules
    "init", "parallel", "schedules",
]
