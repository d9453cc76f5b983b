"""2-D convolutions on NCHW arrays: :class:`Conv2d` and the time-aware :class:`ConcatConv2d`.

A convolution (a cross-correlation, as in torch) with weight ``W`` of shape
``(out, in, kh, kw)``, stride ``(sh, sw)`` and zero padding ``(ph, pw)`` is

.. math:: y_{n,o,p,q} = b_o + \\sum_{c,i,j} W_{o,c,i,j}\\,
          x^{\\mathrm{pad}}_{n,c,\\,p s_h + i,\\,q s_w + j},

with output size ``ho = (H + 2 ph - kh) // sh + 1`` (and likewise ``wo``). It runs as im2col and
one matrix product: the patches of ``x`` are copied into ``col`` of shape ``(in·kh·kw, N·ho·wo)``,
rows ordered ``(c, i, j)`` like ``W.reshape(out, -1)``, so that ``Y = W·col``. The derivatives
are products of the same matrices,

* ``W̄ = Ȳ·colᵀ``, ``b̄ = Σ ȳ`` and ``x̄ = col2im(Wᵀ·Ȳ)`` (col2im adds each patch entry back to
  the pixel it came from);
* ``ẏ = W·col(ẋ) + Ẇ·col(x) + ḃ``;
* second derivatives (``vjp_jvp``): ``ȳ·(∂y/∂x)ẋ = ȳ·(W ⋆ ẋ)`` is linear in ``x`` and free of
  ``b`` (and of ``t`` in :class:`ConcatConv2d`), so its gradient is ``W̄ = Ȳ·col(ẋ)ᵀ`` alone
  (zero in the time channel), with ``x̄ = 0``, ``b̄ = 0`` and ``t̄ = 0``.

The copies are compiled numba loops over a table of patch offsets into the padded image; on the
ODE-Net's shapes they beat numpy slicing and ``sliding_window_view`` copies, most of all in
col2im. ``col`` is ``kh·kw`` times the size of ``x`` and is kept in the cache for ``vjp``/``jvp``;
likewise ``jvp_record`` keeps ``col(ẋ)`` of its tangent pass for ``dual_vjp``, which needs it for
``W̄``.

Arrays keep their floating dtype: the work is done in ``result_type(x, θ)`` (float32 with a
float32 ``θ``), integer inputs become float64.

On cupy arrays (:mod:`symode.backend`) the matrix products are cupy's (cuBLAS) and the copies
are the CUDA kernels of :mod:`symode.nn.cuda_kernels`, which work from the unpadded image.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numba
import numpy as np
from numpy.typing import NDArray

from ..backend import asarray, dispatch
from ..errors import ShapeError
from . import init
from .module import Module, expect_shape

__all__ = ["Conv2d", "ConcatConv2d"]


class _Geometry(NamedTuple):
    """Sizes of one convolution; ``index[i·kw + j, p·wo + q]`` is the flat offset, in the padded
    ``(H + 2ph) × (W + 2pw)`` image, of the pixel that output ``(p, q)`` sees through tap
    ``(i, j)``."""

    H: int
    W: int
    kh: int
    kw: int
    ph: int
    pw: int
    ho: int
    wo: int
    sh: int
    sw: int
    index: NDArray[np.intp]


@lru_cache(maxsize=64)
def _geometry(H: int, W: int, kernel: tuple[int, int], stride: tuple[int, int],
              padding: tuple[int, int]) -> _Geometry:
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    ho, wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    i, j = np.arange(kh)[:, None, None, None], np.arange(kw)[None, :, None, None]
    p, q = np.arange(ho)[None, None, :, None], np.arange(wo)[None, None, None, :]
    index = ((p * sh + i) * (W + 2 * pw) + q * sw + j).reshape(kh * kw, ho * wo)
    index = np.ascontiguousarray(index, dtype=np.intp)
    index.setflags(write=False)
    return _Geometry(H, W, kh, kw, ph, pw, ho, wo, sh, sw, index)


@numba.njit(cache=True, nogil=True)
def _gather(xp, index, col):
    """``col[c, k, n, r] = xp[n, c, index[k, r]]``; xp (N, C, S), col (C, kh·kw, N, ho·wo)."""
    N, C = xp.shape[0], xp.shape[1]
    taps, P = index.shape
    for c in range(C):
        for k in range(taps):
            for n in range(N):
                for r in range(P):
                    col[c, k, n, r] = xp[n, c, index[k, r]]


@numba.njit(cache=True, nogil=True)
def _scatter_add(col, index, xp):
    """``xp[n, c, index[k, r]] += col[c, k, n, r]``, the adjoint of :func:`_gather`."""
    N, C = xp.shape[0], xp.shape[1]
    taps, P = index.shape
    for c in range(C):
        for k in range(taps):
            for n in range(N):
                for r in range(P):
                    xp[n, c, index[k, r]] += col[c, k, n, r]


def _im2col(x: NDArray, geo: _Geometry) -> NDArray:
    """Patches of ``x`` (N, C, H, W) as ``col`` of shape ``(C·kh·kw, N·ho·wo)``."""
    N, C = x.shape[:2]
    xp, cuda = dispatch(x)
    if cuda:
        from . import cuda_kernels

        col = xp.empty((C, geo.kh * geo.kw, N, geo.ho * geo.wo), x.dtype)
        cuda_kernels.im2col(xp.ascontiguousarray(x), col, geo)
        return col.reshape(C * geo.kh * geo.kw, -1)
    if geo.ph or geo.pw:
        padded = np.zeros((N, C, geo.H + 2 * geo.ph, geo.W + 2 * geo.pw), x.dtype)
        padded[:, :, geo.ph:geo.ph + geo.H, geo.pw:geo.pw + geo.W] = x
    else:
        padded = np.ascontiguousarray(x)
    taps, P = geo.index.shape
    col = np.empty((C, taps, N, P), x.dtype)
    _gather(padded.reshape(N, C, -1), geo.index, col)
    return col.reshape(C * taps, N * P)


def _col2im(col: NDArray, geo: _Geometry, N: int, C: int) -> NDArray:
    """The adjoint of :func:`_im2col`: ``(C·kh·kw, N·ho·wo) -> (N, C, H, W)``."""
    Hp, Wp = geo.H + 2 * geo.ph, geo.W + 2 * geo.pw
    taps, P = geo.index.shape
    xp, cuda = dispatch(col)
    if cuda:
        from . import cuda_kernels

        xbar = xp.empty((N, C, geo.H, geo.W), col.dtype)
        cuda_kernels.col2im(xp.ascontiguousarray(col).reshape(C, taps, N, P), xbar, geo)
        return xbar
    padded = np.zeros((N, C, Hp * Wp), col.dtype)
    _scatter_add(np.ascontiguousarray(col).reshape(C, taps, N, P), geo.index, padded)
    padded = padded.reshape(N, C, Hp, Wp)
    if geo.ph or geo.pw:
        return padded[:, :, geo.ph:geo.ph + geo.H, geo.pw:geo.pw + geo.W].copy()
    return padded


def _to_nchw(Y: NDArray, N: int, geo: _Geometry, offset: NDArray | None) -> NDArray:
    """``Y`` of shape ``(out, N·ho·wo)`` as ``(N, out, ho, wo)``, plus ``offset`` (out, 1 or
    ho·wo)."""
    O = Y.shape[0]
    Yt = Y.reshape(O, N, -1).transpose(1, 0, 2)
    xp = dispatch(Y)[0]
    y = xp.empty_like(Yt, order="C")
    if offset is None:
        y[...] = Yt
    else:
        xp.add(Yt, offset, out=y)
    return y.reshape(N, O, geo.ho, geo.wo)


def _from_nchw(ybar: NDArray) -> NDArray:
    """``(N, out, ho, wo) -> (out, N·ho·wo)``, the layout of ``Y = W·col``."""
    N, O = ybar.shape[:2]
    xp = dispatch(ybar)[0]
    return xp.ascontiguousarray(ybar.reshape(N, O, -1).transpose(1, 0, 2)).reshape(O, -1)


def _pair(v, name: str, low: int) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(pair) != 2 or any(int(a) != a or a < low for a in pair):
        raise ValueError(f"{name} must be an integer >= {low} or a pair of them, got {v!r}")
    return int(pair[0]), int(pair[1])


class _ConvCache(NamedTuple):
    col: NDArray        # (in·kh·kw, N·ho·wo), patches of x
    geo: _Geometry
    x_shape: tuple[int, ...]
    y_shape: tuple[int, ...]
    t: float


class _Tangent(NamedTuple):
    """A convolution's record of a tangent pass: ``ẋ`` and its patches ``col(ẋ)``."""
    xdot: NDArray
    col: NDArray


class Conv2d(Module):
    """2-D convolution ``y = W ⋆ x + b`` on ``(batch, in_ch, H, W)`` arrays (see module docstring).

    Parameters ``weight`` of shape ``(out_ch, in_ch, kh, kw)`` and ``bias`` ``(out_ch,)``, both
    drawn from ``U(-1/√fan_in, 1/√fan_in)``, ``fan_in = in_ch·kh·kw`` (torch's default law).

    Parameters
    ----------
    in_ch, out_ch : int
        Input and output channels.
    kernel_size, stride, padding : int or pair of int
        ``(height, width)`` sizes; ``padding`` adds that many zeros on every side.
    bias : bool
        Whether the layer has ``bias``.
    """

    per_sample = True

    def __init__(self, in_ch: int, out_ch: int, kernel_size, stride=1, padding=0,
                 bias: bool = True):
        if int(in_ch) != in_ch or int(out_ch) != out_ch or in_ch < 1 or out_ch < 1:
            raise ValueError(f"Conv2d: channel counts must be positive integers, got "
                             f"{in_ch}, {out_ch}")
        self.in_ch, self.out_ch = int(in_ch), int(out_ch)
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        self.bias = bool(bias)

    #: Weight input channels beyond ``in_ch`` (the time channel of :class:`ConcatConv2d`).
    _extra_channels = 0

    def param_shapes(self):
        shapes = {"weight": (self.out_ch, self.in_ch + self._extra_channels) + self.kernel_size}
        if self.bias:
            shapes["bias"] = (self.out_ch,)
        return shapes

    def init_params(self, rng):
        shape = self.param_shapes()["weight"]
        out = {"weight": init.kaiming_uniform(rng, shape)}
        if self.bias:
            out["bias"] = init.uniform(rng, (self.out_ch,), 1 / math.sqrt(init.fans(shape)[0]))
        return out

    # -- Module protocol -----------------------------------------------------------------------
    def forward(self, theta, x, t=0.0):
        x, geo = self._check_input(theta, x)
        col = _im2col(x, geo)
        weight, bias = self._weights(theta, x.dtype)
        y = _to_nchw(weight @ col, x.shape[0], geo, None if bias is None else bias[:, None])
        return y, _ConvCache(col, geo, x.shape, y.shape, 0.0)

    def vjp(self, theta, cache, ybar):
        Ybar = _from_nchw(expect_shape(self, ybar, cache.y_shape, "ȳ"))
        weight, _ = self._weights(theta, cache.col.dtype)
        xbar = _col2im(weight.T @ Ybar, cache.geo, *cache.x_shape[:2])
        parts = [(Ybar @ cache.col.T).ravel()] + ([Ybar.sum(axis=1)] if self.bias else [])
        return xbar, dispatch(Ybar)[0].concatenate(parts)

    def jvp(self, theta, cache, xdot, thetadot=None):
        return self._tangent(theta, cache, xdot, thetadot)[0]

    def jvp_record(self, theta, cache, xdot):
        # the reverse pass needs col(ẋ) for W̄: keep the one the tangent was computed from
        ydot, col = self._tangent(theta, cache, xdot)
        return ydot, _Tangent(asarray(xdot), col)

    def _tangent(self, theta, cache, xdot, thetadot=None):
        """``(ẏ, col(ẋ))``."""
        xdot = expect_shape(self, xdot, cache.x_shape, "ẋ")
        weight, _ = self._weights(theta, cache.col.dtype)
        col = _im2col(xdot, cache.geo)
        Ydot = weight @ col
        offset = None
        if thetadot is not None:
            wdot, bdot = self._weights(thetadot, Ydot.dtype)
            Ydot += wdot @ cache.col
            offset = None if bdot is None else bdot[:, None]
        return _to_nchw(Ydot, cache.x_shape[0], cache.geo, offset), col

    def vjp_jvp(self, theta, cache, ybar, xdot):
        # ȳ·(W_x ⋆ ẋ) is linear in x and sees neither b nor t: only W̄_x = Ȳ·col(ẋ)ᵀ
        Ybar = _from_nchw(expect_shape(self, ybar, cache.y_shape, "ȳ"))
        xdot = expect_shape(self, xdot, cache.x_shape, "ẋ")
        wbar = Ybar @ _im2col(xdot, cache.geo).T
        thetabar = dispatch(wbar)[0].zeros(self.n_params, wbar.dtype)
        self._x_columns(thetabar)[...] = wbar
        return dispatch(xdot)[0].zeros_like(xdot), thetabar, 0.0

    def dual_vjp(self, theta, cache, xdot, ybar, ydotbar):
        # one pass for both cotangents: ẋ̄ = col2im(W_xᵀ Ẏ̄) and Ẏ̄·col(ẋ)ᵀ joins the x columns
        # of W̄; the Ẏ̄·colᵀ that vjp_t(ẏ̄) would compute, and drop, is never formed. The
        # record of jvp_record brings col(ẋ); a bare ẋ is accepted too
        Ydotbar = _from_nchw(expect_shape(self, ydotbar, cache.y_shape, "ẏ̄"))
        if isinstance(xdot, _Tangent):
            xdot, col = xdot
        else:
            xdot = expect_shape(self, xdot, cache.x_shape, "ẋ")
            col = _im2col(xdot, cache.geo)
        weight, _ = self._weights(theta, cache.col.dtype)
        xdotbar = _col2im(weight.T @ Ydotbar, cache.geo, *cache.x_shape[:2])
        wbar = Ydotbar @ col.T
        if ybar is None:
            xbar, tbar = dispatch(xdot)[0].zeros_like(xdot), 0.0
            thetabar = dispatch(wbar)[0].zeros(self.n_params, wbar.dtype)
        else:
            xbar, thetabar, tbar = self.vjp_t(theta, cache, ybar)
        self._x_columns(thetabar)[...] += wbar
        return xbar, xdotbar, thetabar, tbar

    # -- helpers -------------------------------------------------------------------------------
    def _weights(self, theta, dtype) -> tuple[NDArray, NDArray | None]:
        """``W`` as ``(out, in·kh·kw)`` (the x channels only) and ``b``, in ``dtype``."""
        v = self.views(asarray(theta))
        w = v["weight"].astype(dtype, copy=False).reshape(self.out_ch, -1)
        w = w[:, self._extra_channels * self.kernel_size[0] * self.kernel_size[1]:]
        b = v["bias"].astype(dtype, copy=False) if self.bias else None
        return w, b

    def _x_columns(self, thetabar: NDArray) -> NDArray:
        """The view of ``θ̄`` holding the x channels of ``W̄``, as ``(out, in·kh·kw)``."""
        taps = self.kernel_size[0] * self.kernel_size[1]
        n = self.out_ch * (self.in_ch + self._extra_channels) * taps
        return thetabar[:n].reshape(self.out_ch, -1)[:, self._extra_channels * taps:]

    def _check_input(self, theta, x) -> tuple[NDArray, _Geometry]:
        theta, x = asarray(theta), asarray(x)
        if theta.shape != (self.n_params,):
            raise ShapeError(f"{self!r}: expected θ of shape ({self.n_params},), got "
                             f"{theta.shape}")
        if x.ndim != 4 or x.shape[1] != self.in_ch:
            raise ShapeError(f"{self!r}: expected x of shape (batch, {self.in_ch}, height, "
                             f"width) (NCHW, {self.in_ch} channels), got {x.shape}")
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if x.shape[2] + 2 * ph < kh or x.shape[3] + 2 * pw < kw:
            raise ShapeError(f"{self!r}: the {x.shape[2]}×{x.shape[3]} input, padded by "
                             f"{self.padding}, is smaller than the {kh}×{kw} kernel; pass "
                             f"larger images or more padding")
        dtype = np.result_type(x.dtype, theta.dtype)
        x = x.astype(dtype if np.issubdtype(dtype, np.inexact) else np.float64, copy=False)
        geo = _geometry(x.shape[2], x.shape[3], self.kernel_size, self.stride, self.padding)
        return x, geo

    def __repr__(self) -> str:
        def show(p):
            return str(p[0]) if p[0] == p[1] else str(p)
        extra = "" if self.bias else ", bias=False"
        return (f"{type(self).__name__}({self.in_ch}, {self.out_ch}, "
                f"kernel_size={show(self.kernel_size)}, stride={show(self.stride)}, "
                f"padding={show(self.padding)}{extra})")


class ConcatConv2d(Conv2d):
    """Convolution of ``[t, x]``: the time as a constant first input channel (Chen et al. 2018).

    The ODE function of the Neural ODE paper's ODE-Net. The weight has shape
    ``(out_ch, in_ch + 1, kh, kw)`` with channel 0 for the time, as in the paper's code, so
    ``fan_in = (in_ch + 1)·kh·kw``. The time channel is padded with zeros like ``x``, so its
    contribution ``t·m`` varies near the borders: ``m_{o,p,q} = Σ_{i,j} W_{o,0,i,j}·1[pixel
    (p s_h + i - ph, q s_w + j - pw) inside the image]``, i.e. ``m = W_t·col(1)``, one image's
    worth. Hence

    .. math:: y = W_x ⋆ x + b + t\\,m, \\qquad \\bar t = \\sum_{n,o,p,q} \\bar y_{n,o,p,q}\\,
              m_{o,p,q}, \\qquad \\bar W_t = t \\,\\Big(\\sum_n \\bar Y_n\\Big)\\,
              \\mathrm{col}(1)^\\top,

    without ever forming the concatenated input. ``vjp_t`` returns ``t̄`` as a float.

    The time enters ``y`` additively, so the Jacobian ``∂y/∂x = W_x ⋆ ·`` depends on neither
    ``t`` nor ``W_t``: the second derivatives are those of :class:`Conv2d`, with ``W̄_t = 0``
    and ``t̄ = 0``.
    """

    _extra_channels = 1

    def forward(self, theta, x, t=0.0):
        x, geo = self._check_input(theta, x)
        col = _im2col(x, geo)
        weight, bias = self._weights(theta, x.dtype)
        if np.ndim(t) != 0:
            raise ShapeError(f"{self!r}: expected a scalar time t (the batch shares it), got an "
                             f"array of shape {np.shape(t)}")
        t = float(t)
        offset = t * self._time_map(theta, geo, x.dtype)
        if bias is not None:
            offset += bias[:, None]
        y = _to_nchw(weight @ col, x.shape[0], geo, offset)
        return y, _ConvCache(col, geo, x.shape, y.shape, t)

    def vjp(self, theta, cache, ybar):
        xbar, thetabar, _ = self.vjp_t(theta, cache, ybar)
        return xbar, thetabar

    def vjp_t(self, theta, cache, ybar):
        Ybar = _from_nchw(expect_shape(self, ybar, cache.y_shape, "ȳ"))
        weight, _ = self._weights(theta, cache.col.dtype)
        xbar = _col2im(weight.T @ Ybar, cache.geo, *cache.x_shape[:2])
        N, O = cache.y_shape[:2]
        xp = dispatch(Ybar)[0]
        Ysum = Ybar.reshape(O, N, -1).sum(axis=1)                            # (out, ho·wo)
        ones = self._ones_col(cache.geo, Ysum.dtype, xp)                     # (kh·kw, ho·wo)
        tbar = float(xp.vdot(Ysum, self._time_map(theta, cache.geo, Ysum.dtype)))
        wbar = xp.concatenate([cache.t * (Ysum @ ones.T),                    # time channel
                               (Ybar @ cache.col.T)], axis=1)
        parts = [wbar.ravel()] + ([Ybar.sum(axis=1)] if self.bias else [])
        return xbar, xp.concatenate(parts), tbar

    def jvp(self, theta, cache, xdot, thetadot=None):
        ydot = super().jvp(theta, cache, xdot, thetadot)
        if thetadot is not None:
            mdot = self._time_map(thetadot, cache.geo, ydot.dtype)
            ydot += (cache.t * mdot).reshape(1, *ydot.shape[1:])
        return ydot

    def _time_map(self, theta, geo: _Geometry, dtype) -> NDArray:
        """``m = W_t·col(1)`` of shape ``(out, ho·wo)``: the output of a unit time channel."""
        taps = self.kernel_size[0] * self.kernel_size[1]
        theta = asarray(theta)
        w_t = self.views(theta)["weight"].reshape(self.out_ch, -1)[:, :taps]
        return w_t.astype(dtype, copy=False) @ self._ones_col(geo, dtype, dispatch(theta)[0])

    def _ones_col(self, geo: _Geometry, dtype, xp=np) -> NDArray:
        return _unit_patches(geo.H, geo.W, self.kernel_size, self.stride, self.padding,
                             np.dtype(dtype), xp)


@lru_cache(maxsize=64)
def _unit_patches(H: int, W: int, kernel, stride, padding, dtype, xp=np) -> NDArray:
    """im2col of one all-ones channel, ``(kh·kw, ho·wo)``: 1 where a tap sees the image, else 0
    (read-only and shared on the host; one copy per GPU array module)."""
    col = _im2col(np.ones((1, 1, H, W), dtype), _geometry(H, W, kernel, stride, padding))
    col.setflags(write=False)
    return col if xp is np else xp.asarray(col)
