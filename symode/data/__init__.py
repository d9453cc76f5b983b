"""Data sets for the examples: MNIST readers, normalisation and minibatches."""

from .mnist import MNIST_MEAN, MNIST_STD, as_float, batches, download_mnist, load_mnist, read_idx

__all__ = ["load_mnist", "download_mnist", "as_float", "batches", "read_idx",
           "MNIST_MEAN", "MNIST_STD"]
