"""Models built from symode.nn: the Neural ODE paper's MNIST classifiers and their training loop,
the latent ODE of its section 5, and continuous normalizing flows (FFJORD).

>>> from symode.models import odenet, train_classifier     # doctest: +SKIP
"""

from .cnf import CNF, CNFDynamics, concat_squash_mlp, normal_log_prob
from .latent_ode import ELBOResult, LatentODE, RecognitionRNN
from .odenet import MODELS, PAPER_PARAMS, mlp, odenet, resnet, rknet
from .train import TrainConfig, evaluate, fit, ode_blocks, train_classifier

__all__ = ["odenet", "resnet", "rknet", "mlp", "MODELS", "PAPER_PARAMS", "TrainConfig",
           "train_classifier", "fit", "evaluate", "ode_blocks", "CNF", "CNFDynamics",
           "concat_squash_mlp", "normal_log_prob", "LatentODE", "RecognitionRNN", "ELBOResult"]
