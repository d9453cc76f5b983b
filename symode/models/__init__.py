"""Models built from symode.nn: the Neural ODE paper's MNIST classifiers and their training loop.

>>> from symode.models import odenet, train_classifier     # doctest: +SKIP
"""

from .odenet import MODELS, PAPER_PARAMS, mlp, odenet, resnet, rknet
from .train import TrainConfig, evaluate, ode_blocks, train_classifier

__all__ = ["odenet", "resnet", "rknet", "mlp", "MODELS", "PAPER_PARAMS", "TrainConfig",
           "train_classifier", "evaluate", "ode_blocks"]
