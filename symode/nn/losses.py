"""Losses with their gradients, for training symode networks.

One convention throughout: **the first axis is the batch; each example's loss is summed over all
its other axes, and the loss is the mean of these over the batch**,

.. math:: L = \\frac1N \\sum_{n=1}^{N} \\ell_n, \\qquad \\ell_n = \\sum_j \\ell_{nj}.

So the Gaussian log-likelihood of a whole trajectory and the KL divergence of a whole latent
vector add up to one example's ELBO term, and a loss does not change with the batch size. The
gradients returned are those of ``L`` itself (they carry the ``1/N``). Every loss is returned as
a Python float; gradients keep the floating dtype of the inputs (float32 stays float32).

A loss that comes out NaN or infinite raises :class:`symode.errors.NonFiniteError` rather than
passing the NaN on to the optimizer.

cupy arrays in give cupy gradients out (:mod:`symode.backend`); the loss is still a float.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..backend import array_module, asarray
from ..errors import NonFiniteError, ShapeError

__all__ = ["softmax_cross_entropy", "accuracy", "mse", "gaussian_nll", "kl_diag_gaussians"]

LOG_2PI = math.log(2 * math.pi)


def _quiet(fn):
    """Run ``fn`` without numpy's overflow and invalid-value warnings: a loss that overflows is
    not finite, and :func:`_mean_over_batch` raises NonFiniteError for it instead."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore"):
            return fn(*args, **kwargs)
    return wrapper


@_quiet
def softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike) -> tuple[float, NDArray]:
    """Mean cross-entropy of class ids under the softmax of ``logits``, and its gradient.

    .. math:: L = \\frac1N \\sum_n \\Big(\\log \\sum_k e^{z_{nk}} - z_{n y_n}\\Big), \\qquad
              \\frac{\\partial L}{\\partial z_{nk}} = \\frac{\\mathrm{softmax}(z_n)_k
              - [k = y_n]}{N}.

    The log-sum-exp is taken after subtracting each row's maximum, so large logits neither
    overflow nor lose the small ones.

    Parameters
    ----------
    logits : ndarray, shape (batch, classes)
    labels : ndarray of int, shape (batch,)
        Class ids in ``[0, classes)``.

    Returns
    -------
    loss : float
    dlogits : ndarray, shape (batch, classes)
    """
    z, labels = _class_inputs("softmax_cross_entropy", logits, labels)
    xp = array_module(z)
    n = z.shape[0]
    shifted = z - z.max(axis=1, keepdims=True)
    e = xp.exp(shifted)
    sums = e.sum(axis=1)
    rows = xp.arange(n)
    per_example = xp.log(sums) - shifted[rows, labels]
    loss = _mean_over_batch("softmax_cross_entropy", per_example)
    grad = e / sums[:, None]
    grad[rows, labels] -= 1
    grad /= n
    return loss, grad


def accuracy(logits: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of examples whose largest logit is at the label: ``mean(argmax_k z_nk == y_n)``.

    Ties go to the first largest logit (``numpy.argmax``).

    Parameters
    ----------
    logits : ndarray, shape (batch, classes)
    labels : ndarray of int, shape (batch,)

    Returns
    -------
    accuracy : float in [0, 1]
    """
    z, labels = _class_inputs("accuracy", logits, labels)
    xp = array_module(z)
    return float(xp.mean(xp.argmax(z, axis=1) == labels))


@_quiet
def mse(pred: ArrayLike, target: ArrayLike) -> tuple[float, NDArray]:
    """Squared error summed over each example, averaged over the batch, and its gradient.

    .. math:: L = \\frac1N \\sum_n \\lVert p_n - y_n \\rVert^2, \\qquad
              \\frac{\\partial L}{\\partial p} = \\frac2N (p - y).

    Per the module's convention this sums over the features; it is ``D`` times torch's
    ``MSELoss()`` (which averages over all ``N·D`` entries) for ``D`` features per example.

    Parameters
    ----------
    pred, target : ndarray, shape (batch, ...)
        Of the same shape.

    Returns
    -------
    loss : float
    dpred : ndarray, shape of ``pred``
    """
    p, y = _common(pred, target)
    if p.shape != y.shape:
        raise ShapeError(f"mse: expected target of the shape of pred, {p.shape}, got {y.shape}")
    n = _batch("mse", p, "pred")
    diff = p - y
    loss = _mean_over_batch("mse", diff * diff)
    return loss, diff * (2 / n)


@_quiet
def gaussian_nll(x: ArrayLike, mean: ArrayLike,
                 log_var: ArrayLike) -> tuple[float, tuple[NDArray, NDArray]]:
    """Negative log-likelihood of ``x`` under independent normals ``N(mean, exp(log_var))``.

    .. math:: L = \\frac1N \\sum_{n,j} \\frac12 \\Big(\\log 2\\pi + v_{nj}
              + \\frac{(x_{nj} - \\mu_{nj})^2}{e^{v_{nj}}}\\Big),

    with ``v = log_var``, and

    .. math:: \\frac{\\partial L}{\\partial \\mu} = -\\frac{(x - \\mu)\\,e^{-v}}{N}, \\qquad
              \\frac{\\partial L}{\\partial v} = \\frac{1 - (x - \\mu)^2 e^{-v}}{2N}.

    ``mean`` and ``log_var`` may broadcast against ``x`` (a scalar or per-feature noise level);
    their gradients are summed back to their own shapes.

    Parameters
    ----------
    x : ndarray, shape (batch, ...)
        Observations.
    mean, log_var : ndarray, broadcastable to the shape of ``x``
        Mean and log-variance of each entry.

    Returns
    -------
    loss : float
    (dmean, dlog_var) : ndarrays of the shapes of ``mean`` and ``log_var``
    """
    x, mean, log_var = _common(x, mean, log_var)
    n = _batch("gaussian_nll", x, "x")
    _broadcasts_to("gaussian_nll", x.shape, "x", mean=mean, log_var=log_var)
    r = x - mean
    precision = array_module(x).exp(-log_var)
    q = r * r * precision
    loss = _mean_over_batch("gaussian_nll", 0.5 * (LOG_2PI + log_var + q))
    dmean = _sum_to(-r * precision / n, mean.shape)
    dlog_var = _sum_to((0.5 / n) * (1 - q), log_var.shape)
    return loss, (dmean, dlog_var)


@_quiet
def kl_diag_gaussians(mu1: ArrayLike, logvar1: ArrayLike, mu2: ArrayLike = 0.0,
                      logvar2: ArrayLike = 0.0) -> tuple[float, tuple[NDArray, ...]]:
    """``KL(N(μ₁, e^{v₁}) ‖ N(μ₂, e^{v₂}))`` of diagonal normals, and its gradients.

    Per coordinate (the defaults make the second law the standard normal, as in a VAE's prior):

    .. math:: \\mathrm{KL} = \\frac1N \\sum_{n,j} \\frac12 \\Big(v_2 - v_1 + e^{v_1 - v_2}
              + (\\mu_1 - \\mu_2)^2 e^{-v_2} - 1\\Big),

    .. math:: \\partial_{\\mu_1} = -\\partial_{\\mu_2} = \\frac{(\\mu_1 - \\mu_2) e^{-v_2}}{N},
              \\quad \\partial_{v_1} = \\frac{e^{v_1 - v_2} - 1}{2N}, \\quad
              \\partial_{v_2} = \\frac{1 - e^{v_1 - v_2} - (\\mu_1 - \\mu_2)^2 e^{-v_2}}{2N}.

    Parameters
    ----------
    mu1 : ndarray, shape (batch, ...)
        Mean of the first law; its first axis is the batch.
    logvar1, mu2, logvar2 : ndarray, broadcastable to the shape of ``mu1``

    Returns
    -------
    kl : float
    (dmu1, dlogvar1, dmu2, dlogvar2) : ndarrays of the shapes of the arguments
        Gradients summed back to each argument's shape (0-d for scalar arguments).
    """
    mu1, logvar1, mu2, logvar2 = _common(mu1, logvar1, mu2, logvar2)
    n = _batch("kl_diag_gaussians", mu1, "mu1")
    _broadcasts_to("kl_diag_gaussians", mu1.shape, "mu1", logvar1=logvar1, mu2=mu2,
                   logvar2=logvar2)
    xp = array_module(mu1)
    d = mu1 - mu2
    d2 = d * d * xp.exp(-logvar2)
    ratio = xp.exp(logvar1 - logvar2)
    kl = _mean_over_batch("kl_diag_gaussians", 0.5 * (logvar2 - logvar1 + ratio + d2 - 1))
    dmu1 = d * xp.exp(-logvar2) / n
    grads = (_sum_to(dmu1, mu1.shape),
             _sum_to((0.5 / n) * (ratio - 1), logvar1.shape, d.shape),
             _sum_to(-dmu1, mu2.shape),
             _sum_to((0.5 / n) * (1 - ratio - d2), logvar2.shape, d.shape))
    return kl, grads


# -- checks and helpers ---------------------------------------------------------------------------
def _floating(a: ArrayLike) -> NDArray:
    a = asarray(a)
    return a if np.issubdtype(a.dtype, np.inexact) else a.astype(np.float64)


def _common(*args: ArrayLike) -> list[NDArray]:
    """The arguments as arrays of one floating dtype; Python numbers do not widen it, so a
    float32 array with the default ``0.0`` stays float32."""
    arrays = [a if isinstance(a, (int, float)) and not isinstance(a, bool) else asarray(a)
              for a in args]
    xp = array_module(*arrays)
    dtype = np.result_type(*(getattr(a, "dtype", a) for a in arrays))
    dtype = dtype if np.issubdtype(dtype, np.inexact) else np.float64
    return [xp.asarray(a, dtype=dtype) for a in arrays]


def _batch(fn: str, a: NDArray, name: str) -> int:
    """The batch size ``a.shape[0]``, which must be at least 1."""
    if a.ndim < 1 or a.shape[0] == 0:
        raise ShapeError(f"{fn}: expected {name} of shape (batch, ...) with batch >= 1, got "
                         f"{a.shape}; a loss is a mean over the batch")
    return a.shape[0]


def _broadcasts_to(fn: str, shape: tuple[int, ...], name: str, **arrays: NDArray) -> None:
    for key, a in arrays.items():
        try:
            ok = np.broadcast_shapes(a.shape, shape) == shape
        except ValueError:
            ok = False
        if not ok:
            raise ShapeError(f"{fn}: expected {key} of the shape of {name}, {shape}, or one that "
                             f"broadcasts to it, got {a.shape}")


def _class_inputs(fn: str, logits: ArrayLike, labels: ArrayLike) -> tuple[NDArray, NDArray]:
    z = _floating(logits)
    xp = array_module(z)
    labels = xp.asarray(labels)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] == 0:
        raise ShapeError(f"{fn}: expected logits of shape (batch, classes), both >= 1, got "
                         f"{z.shape}")
    n, k = z.shape
    if labels.shape != (n,):
        raise ShapeError(f"{fn}: expected labels of shape ({n},), one class id per row of the "
                         f"logits, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ShapeError(f"{fn}: labels must be integer class ids, got dtype {labels.dtype}")
    bad = xp.flatnonzero((labels < 0) | (labels >= k))
    if bad.size:
        raise ShapeError(f"{fn}: labels must lie in [0, {k}) for logits of shape {z.shape}; "
                         f"labels[{bad[0]}] = {labels[bad[0]]}")
    return z, labels


def _mean_over_batch(fn: str, terms: NDArray) -> float:
    """``Σ terms / batch`` (the batch on axis 0) as a float; NonFiniteError, naming the first
    example with a term that is NaN or infinite, if it is not finite."""
    xp = array_module(terms)
    loss = float(xp.sum(terms)) / terms.shape[0]
    if math.isfinite(loss):
        return loss
    flat = terms.reshape(terms.shape[0], -1)
    rows = xp.flatnonzero(~xp.isfinite(flat).all(axis=1))
    where = f" (first non-finite term at example {rows[0]})" if rows.size else ""
    raise NonFiniteError(f"{fn}: the loss is {loss}{where}. Check the inputs for NaN or inf, "
                         f"or lower the learning rate if training diverged.")


def _sum_to(g: NDArray, shape: tuple[int, ...], full: tuple[int, ...] | None = None) -> NDArray:
    """``g`` (broadcast to ``full`` first, if given) summed down to ``shape``: the adjoint of
    broadcasting an array of ``shape``."""
    xp = array_module(g)
    if full is not None:
        g = xp.broadcast_to(g, full)
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead))) if lead else g
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    return xp.asarray(g.sum(axis=axes, keepdims=True) if axes else g).reshape(shape)
