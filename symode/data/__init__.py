"""Data sets for the examples: MNIST readers, normalisation and minibatches; 2-D toy densities;
the latent ODE's irregularly observed spirals."""

from .mnist import MNIST_MEAN, MNIST_STD, as_float, batches, download_mnist, load_mnist, read_idx
from .spirals import Spirals, make_spirals
from .toy2d import GAUSSIANS_CENTERS, GAUSSIANS_STD, TOY_DENSITIES, sample_toy, toy_log_density

__all__ = ["load_mnist", "download_mnist", "as_float", "batches", "read_idx",
           "MNIST_MEAN", "MNIST_STD",
           "sample_toy", "toy_log_density", "TOY_DENSITIES", "GAUSSIANS_CENTERS", "GAUSSIANS_STD",
           "make_spirals", "Spirals"]
