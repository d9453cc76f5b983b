"""Adaptive average pooling of NCHW images to a fixed output size.

Output cell ``(p, q)`` of an ``oh × ow`` output averages the input window of rows
``[⌊pH/oh⌋, ⌈(p+1)H/oh⌉)`` and columns ``[⌊qW/ow⌋, ⌈(q+1)W/ow⌉)`` (torch's bins). The windows
are products of row and column intervals, so pooling is separable and linear:

.. math:: y_{nc} = A_h\\, x_{nc}\\, A_w^\\top, \\qquad \\bar x_{nc} = A_h^\\top \\bar y_{nc} A_w,
          \\qquad \\dot y = A_h \\dot x A_w^\\top,

with ``A_h`` of shape ``(oh, H)`` holding ``1/len`` over each row window. When ``oh`` divides
``H`` and ``ow`` divides ``W`` the windows tile the image and the layer is a reshape and a mean
(``output_size=1`` is the global average); otherwise the matrices are used. Being linear, the
layer has zero second derivatives: ``vjp_jvp`` gives ``x̄ = 0`` (and no parameters, no time).
cupy arrays in give cupy arrays out (:mod:`symode.backend`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from ..backend import array_module, asarray
from ..errors import ShapeError
from .module import Module

__all__ = ["AdaptiveAvgPool2d"]


@lru_cache(maxsize=64)
def _window_matrix(n_in: int, n_out: int, xp=np) -> NDArray[np.float64]:
    """``A`` of shape ``(n_out, n_in)``; row ``p`` averages ``[⌊p·n_in/n_out⌋,
    ⌈(p+1)·n_in/n_out⌉)`` (one copy per array module)."""
    if xp is not np:
        return xp.asarray(_window_matrix(n_in, n_out))
    A = np.zeros((n_out, n_in))
    for p in range(n_out):
        lo, hi = (p * n_in) // n_out, -((-(p + 1) * n_in) // n_out)
        A[p, lo:hi] = 1.0 / (hi - lo)
    A.setflags(write=False)
    return A


class AdaptiveAvgPool2d(Module):
    """Average pooling of ``(batch, C, H, W)`` to ``(batch, C, oh, ow)``; no parameters.

    Parameters
    ----------
    output_size : int or pair of int
        ``(oh, ow)``; an int ``k`` means ``(k, k)``. ``1`` gives the global average.
    """

    per_sample = True

    def __init__(self, output_size):
        size = (output_size, output_size) if isinstance(output_size, (int, np.integer)) \
            else tuple(output_size)
        if len(size) != 2 or any(int(s) != s or s < 1 for s in size):
            raise ValueError(f"AdaptiveAvgPool2d: output_size must be a positive integer or a "
                             f"pair of them, got {output_size!r}")
        self.output_size = (int(size[0]), int(size[1]))

    def forward(self, theta, x, t=0.0):
        x = asarray(x)
        if x.ndim != 4 or min(x.shape[2:]) < 1:
            raise ShapeError(f"{self!r}: expected x of shape (batch, channels, height, width) "
                             f"(NCHW, height and width >= 1), got {x.shape}")
        if not np.issubdtype(x.dtype, np.inexact):
            x = x.astype(np.float64)
        return self._pool(x), x.shape

    def vjp(self, theta, cache, ybar):
        ybar = asarray(ybar)
        xp = array_module(ybar)
        N, C, H, W = cache
        oh, ow = self.output_size
        if ybar.shape != (N, C, oh, ow):
            raise ShapeError(f"{self!r}: expected ȳ of shape {(N, C, oh, ow)} (NCHW), got "
                             f"{ybar.shape}")
        if H % oh == 0 and W % ow == 0:
            kh, kw = H // oh, W // ow
            xbar = xp.broadcast_to((ybar / (kh * kw))[:, :, :, None, :, None],
                                   (N, C, oh, kh, ow, kw)).reshape(N, C, H, W)
        else:
            Ah, Aw = (_window_matrix(H, oh, xp).astype(ybar.dtype, copy=False),
                      _window_matrix(W, ow, xp).astype(ybar.dtype, copy=False))
            xbar = xp.einsum("ph,ncpq,qw->nchw", Ah, ybar, Aw, optimize=True)
        return xbar, xp.zeros(0, dtype=xbar.dtype)

    def jvp(self, theta, cache, xdot, thetadot=None):
        xdot = asarray(xdot)
        if xdot.shape != cache:
            raise ShapeError(f"{self!r}: expected ẋ of shape {cache} (NCHW), got {xdot.shape}")
        return self._pool(xdot)

    def vjp_jvp(self, theta, cache, ybar, xdot):
        # ȳ·(A_h ẋ A_wᵀ) does not depend on x
        ybar, xdot = asarray(ybar), asarray(xdot)
        if ybar.shape != cache[:2] + self.output_size:
            raise ShapeError(f"{self!r}: expected ȳ of shape {cache[:2] + self.output_size} "
                             f"(NCHW), got {ybar.shape}")
        if xdot.shape != cache:
            raise ShapeError(f"{self!r}: expected ẋ of shape {cache} (NCHW), got {xdot.shape}")
        xp = array_module(xdot)
        dtype = np.result_type(ybar.dtype, xdot.dtype)
        return xp.zeros(cache, dtype), xp.zeros(0, dtype), 0.0

    def _pool(self, x: NDArray) -> NDArray:
        N, C, H, W = x.shape
        oh, ow = self.output_size
        if H % oh == 0 and W % ow == 0:
            return x.reshape(N, C, oh, H // oh, ow, W // ow).mean(axis=(3, 5))
        xp = array_module(x)
        Ah, Aw = (_window_matrix(H, oh, xp).astype(x.dtype, copy=False),
                  _window_matrix(W, ow, xp).astype(x.dtype, copy=False))
        return xp.einsum("ph,nchw,qw->ncpq", Ah, x, Aw, optimize=True)

    def __repr__(self) -> str:
        oh, ow = self.output_size
        return f"AdaptiveAvgPool2d({oh if oh == ow else self.output_size})"
