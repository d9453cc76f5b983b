"""Group normalization (Wu & He, *Group Normalization*, 2018).

The ``C`` channels of each sample split into ``G`` groups of ``C/G`` consecutive channels; each
group ``g`` of sample ``n`` (its ``M = (C/G)·H·W`` entries) is standardised by its own mean and
variance, then every channel gets an affine map:

.. math:: \\hat x = (x - \\mu_{ng})\\,r_{ng}, \\quad r_{ng} = (\\sigma^2_{ng} + \\epsilon)^{-1/2},
          \\qquad y_{nc\\cdot} = \\gamma_c \\hat x_{nc\\cdot} + \\beta_c,

with ``σ²`` the biased (``1/M``) variance, as torch computes it. Writing ``⟨·⟩`` for the mean
over a group, the Jacobian of ``x ↦ x̂`` is symmetric, so one formula serves both directions:

.. math:: \\bar x = r\\,\\big(g - \\langle g\\rangle - \\hat x\\,\\langle g \\hat x\\rangle\\big),
          \\; g = \\gamma\\,\\bar y; \\qquad
          \\dot{\\hat x} = r\\,\\big(\\dot x - \\langle \\dot x\\rangle
          - \\hat x\\,\\langle \\hat x \\dot x\\rangle\\big),

and ``γ̄ = Σ_{n,h,w} ȳ x̂``, ``β̄ = Σ_{n,h,w} ȳ``, ``ẏ = γ ẋ̂ + γ̇ x̂ + β̇``. Batches do not mix:
unlike batch norm, a sample's output depends on that sample alone.

Second derivatives (``vjp_jvp``), the gradient of ``S = ȳ·(∂y/∂x)ẋ``: with ``u = γ ȳ`` and ``J``
the Jacobian above, each group contributes ``S_g = Σ u·Jẋ = r M (⟨u ẋ⟩ - ⟨u⟩⟨ẋ⟩ - ⟨u x̂⟩⟨x̂ ẋ⟩)``.
Only ``r`` and ``x̂`` depend on ``x``, with ``∂r/∂x = -r² x̂ / M`` and ``∂x̂/∂x = J``, so

.. math:: \\bar x = -r\\,\\big(\\langle u\\, J\\dot x\\rangle\\, \\hat x
          + \\langle \\hat x \\dot x\\rangle\\, J u + \\langle \\hat x u\\rangle\\, J\\dot x\\big),
          \\qquad \\bar\\gamma = \\sum_{n,h,w} \\bar y\\, J\\dot x, \\qquad \\bar\\beta = 0,
          \\qquad \\bar t = 0,

symmetric in ``u`` and ``ẋ``, as a second derivative is. ``dual_vjp``, called with the
tangent's cotangent ``ẏ̄`` in place of ``ȳ``, takes ``ẋ̄ = J(γ ẏ̄) = Ju`` from the same pass.

The forward pass and the VJP are compiled loops (one pass for the statistics, one to
normalise); on cupy arrays (:mod:`symode.backend`) they are the CUDA kernels of
:mod:`symode.nn.cuda_kernels`, one block per (sample, group). The second derivatives are a
compiled loop too on numpy arrays (three passes over each group, where the array code makes
about twenty over the whole input), and vectorised array code on cupy.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numpy.typing import NDArray

from ..backend import asarray, dispatch
from ..errors import ShapeError
from .module import Module, expect_shape

__all__ = ["GroupNorm"]


class _NormCache(NamedTuple):
    xhat: NDArray   # (N, G, M), the standardised input
    r: NDArray      # (N, G, 1), reciprocal standard deviations
    shape: tuple[int, ...]


class GroupNorm(Module):
    """Group normalization with a per-channel affine map (see the module docstring).

    Inputs are ``(batch, channels, *spatial)``: NCHW images, or ``(batch, channels)``.
    Parameters ``weight`` (γ, initially ones) and ``bias`` (β, initially zeros), both
    ``(channels,)``.

    Parameters
    ----------
    groups : int
        Number of groups ``G``; must divide ``channels``. ``G = 1`` is layer norm over
        ``(C, H, W)``, ``G = C`` is instance norm.
    channels : int
    eps : float
        Added to the variance, ``> 0``.
    """

    per_sample = True

    def __init__(self, groups: int, channels: int, eps: float = 1e-5):
        if int(groups) != groups or int(channels) != channels or groups < 1 or channels < 1:
            raise ValueError(f"GroupNorm: groups and channels must be positive integers, got "
                             f"{groups}, {channels}")
        if channels % groups:
            raise ValueError(f"GroupNorm: {groups} groups do not divide {channels} channels")
        if not eps > 0:
            raise ValueError(f"GroupNorm: eps must be > 0, got {eps}")
        self.groups, self.channels, self.eps = int(groups), int(channels), float(eps)

    def param_shapes(self):
        return {"weight": (self.channels,), "bias": (self.channels,)}

    def init_params(self, rng):
        return {"weight": np.ones(self.channels), "bias": np.zeros(self.channels)}

    # -- Module protocol -----------------------------------------------------------------------
    def forward(self, theta, x, t=0.0):
        theta, x = self._check(theta, x)
        N = x.shape[0]
        xp, cuda = dispatch(x)
        xg = xp.ascontiguousarray(x).reshape(N, self.groups, -1)
        gamma, beta = self._affine(theta, xg.dtype)
        xhat, y = xp.empty_like(xg), xp.empty_like(xg)
        r = xp.empty((N, self.groups, 1), xg.dtype)
        if cuda:
            from .cuda_kernels import group_norm_forward

            group_norm_forward(xg, gamma[:, 0], beta[:, 0], self.eps, xhat, r, y)
        else:
            _forward(xg, gamma[:, 0], beta[:, 0], self.eps, xhat, r, y)
        return y.reshape(x.shape), _NormCache(xhat, r, x.shape)

    def vjp(self, theta, cache, ybar):
        ybar = expect_shape(self, ybar, cache.shape, "ȳ")
        gamma, _ = self._affine(asarray(theta), cache.xhat.dtype)
        xp, cuda = dispatch(ybar)
        yg = xp.ascontiguousarray(ybar, dtype=cache.xhat.dtype).reshape(cache.xhat.shape)
        xbar = xp.empty_like(yg)
        if cuda:
            from .cuda_kernels import group_norm_vjp

            gpart = xp.empty((yg.shape[0], self.channels))           # per sample
            bpart = xp.empty((yg.shape[0], self.channels))
            group_norm_vjp(yg, cache.xhat, cache.r, gamma[:, 0], xbar, gpart, bpart)
            gbar, bbar = gpart.sum(axis=0), bpart.sum(axis=0)
        else:
            gbar, bbar = np.zeros(self.channels), np.zeros(self.channels)
            _vjp(yg, cache.xhat, cache.r, gamma[:, 0], xbar, gbar, bbar)
        return xbar.reshape(cache.shape), xp.concatenate([gbar, bbar]).astype(
            np.result_type(ybar.dtype, cache.xhat.dtype), copy=False)

    def jvp(self, theta, cache, xdot, thetadot=None):
        xdot = expect_shape(self, xdot, cache.shape, "ẋ")
        N = cache.shape[0]
        xhat_dot = self._standardised_dot(cache, xdot.reshape(cache.xhat.shape))
        gamma, _ = self._affine(asarray(theta), xhat_dot.dtype)
        ydot = xhat_dot.reshape(N, self.channels, -1) * gamma
        if thetadot is not None:
            gdot, bdot = self._affine(asarray(thetadot), ydot.dtype)
            ydot += cache.xhat.reshape(ydot.shape) * gdot + bdot
        return ydot.reshape(cache.shape)

    def vjp_jvp(self, theta, cache, ybar, xdot):
        """``(x̄, [γ̄, 0], 0)`` of the module docstring's second derivatives."""
        ybar = expect_shape(self, ybar, cache.shape, "ȳ")
        xdot = expect_shape(self, xdot, cache.shape, "ẋ")
        xbar, _, gbar = self._second(theta, cache, ybar, xdot)
        xp = dispatch(xbar)[0]
        return xbar, xp.concatenate([gbar, xp.zeros_like(gbar)]), 0.0

    def dual_vjp(self, theta, cache, xdot, ybar, ydotbar):
        # ẋ̄ = J(γ ẏ̄) comes out of the second-order pass, which needs it anyway
        ydotbar = expect_shape(self, ydotbar, cache.shape, "ẏ̄")
        xdot = expect_shape(self, xdot, cache.shape, "ẋ")
        xbar, xdotbar, gbar = self._second(theta, cache, ydotbar, xdot)
        xp = dispatch(xbar)[0]
        if ybar is None:
            return xbar, xdotbar, xp.concatenate([gbar, xp.zeros_like(gbar)]), 0.0
        xb, thetabar = self.vjp(theta, cache, ybar)
        thetabar[:self.channels] += gbar
        return xbar + xb, xdotbar, thetabar, 0.0

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _standardised_dot(cache: _NormCache, v: NDArray) -> NDArray:
        """``r (v - ⟨v⟩ - x̂ ⟨x̂ v⟩)``, the (symmetric) Jacobian of ``x ↦ x̂`` applied to ``v``
        of shape (N, G, M)."""
        M = v.shape[2]
        mean_v = v.mean(axis=2, keepdims=True)
        xp = dispatch(v)[0]
        mean_xv = xp.einsum("ngm,ngm->ng", cache.xhat, v)[..., None] / M
        return cache.r * (v - mean_v - cache.xhat * mean_xv)

    def _second(self, theta, cache: _NormCache, ybar: NDArray, xdot: NDArray):
        """``(x̄, Ju, γ̄)`` for ``u = γ ȳ``: the gradient of ``ȳ·(∂y/∂x)ẋ`` in ``x`` and ``γ``
        (module docstring) and the VJP ``Ju`` of ``ȳ``, all from one pass."""
        xhat = cache.xhat
        gamma, _ = self._affine(asarray(theta), xhat.dtype)
        if dispatch(ybar, xdot)[1]:
            return self._second_arrays(cache, gamma, ybar, xdot)
        dtype = np.result_type(ybar.dtype, xdot.dtype, xhat.dtype)
        yg, v, xhat = (np.ascontiguousarray(a, dtype=dtype).reshape(xhat.shape)
                       for a in (ybar, xdot, xhat))
        xbar, ju = np.empty_like(yg), np.empty_like(yg)
        gbar = np.zeros(self.channels)
        _vjp_jvp(yg, v, xhat, cache.r, gamma[:, 0], xbar, ju, gbar)
        return xbar.reshape(cache.shape), ju.reshape(cache.shape), gbar.astype(dtype)

    def _second_arrays(self, cache: _NormCache, gamma, ybar: NDArray, xdot: NDArray):
        """:meth:`_second` as array code (cupy)."""
        N, C = cache.shape[0], self.channels
        xhat, r = cache.xhat, cache.r
        u = (ybar.reshape(N, C, -1) * gamma).reshape(xhat.shape)
        v = xdot.reshape(xhat.shape)
        xp = dispatch(u, v)[0]
        M = xhat.shape[2]
        mean_xu = xp.einsum("ngm,ngm->ng", xhat, u)[..., None] / M
        mean_xv = xp.einsum("ngm,ngm->ng", xhat, v)[..., None] / M
        ju = r * (u - u.mean(axis=2, keepdims=True) - xhat * mean_xu)
        jv = r * (v - v.mean(axis=2, keepdims=True) - xhat * mean_xv)
        mean_ujv = xp.einsum("ngm,ngm->ng", u, jv)[..., None] / M
        xbar = -r * (mean_ujv * xhat + mean_xv * ju + mean_xu * jv)
        gbar = (ybar.reshape(N, C, -1) * jv.reshape(N, C, -1)).sum(axis=(0, 2))
        return xbar.reshape(cache.shape), ju.reshape(cache.shape), gbar

    def _affine(self, theta: NDArray, dtype) -> tuple[NDArray, NDArray]:
        """``γ`` and ``β`` as ``(channels, 1)`` columns in ``dtype``."""
        v = self.views(theta)
        return (v["weight"].astype(dtype, copy=False)[:, None],
                v["bias"].astype(dtype, copy=False)[:, None])

    def _check(self, theta, x) -> tuple[NDArray, NDArray]:
        theta, x = asarray(theta), asarray(x)
        if theta.shape != (self.n_params,):
            raise ShapeError(f"{self!r}: expected θ of shape ({self.n_params},), got "
                             f"{theta.shape}")
        if x.ndim < 2 or x.shape[1] != self.channels:
            raise ShapeError(f"{self!r}: expected x of shape (batch, {self.channels}, height, "
                             f"width) (NCHW, {self.channels} channels) or (batch, "
                             f"{self.channels}), got {x.shape}")
        dtype = np.result_type(x.dtype, theta.dtype)
        x = x.astype(dtype if np.issubdtype(dtype, np.inexact) else np.float64, copy=False)
        return theta, x

    def __repr__(self) -> str:
        eps = "" if self.eps == 1e-5 else f", eps={self.eps:g}"
        return f"GroupNorm({self.groups}, {self.channels}{eps})"


# -- compiled loops: one pass for the statistics, one to normalise (numpy needs six) -------------
# Sums may be reassociated (vectorised): only round-off changes; NaN and inf still propagate.
_FAST = {"reassoc", "contract"}


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _forward(x, gamma, beta, eps, xhat, r, y):
    """x, xhat, y (N, G, M); r (N, G, 1); gamma, beta (C,) with C/G channels to a group."""
    N, G, M = x.shape
    per = gamma.shape[0] // G
    S = M // per
    for n in range(N):
        for g in range(G):
            mean = 0.0
            for m in range(M):
                mean += x[n, g, m]
            mean /= M
            var = 0.0
            for m in range(M):
                d = x[n, g, m] - mean
                var += d * d
            rr = 1.0 / np.sqrt(var / M + eps)
            r[n, g, 0] = rr
            for ci in range(per):
                c = g * per + ci
                a, b = gamma[c], beta[c]
                for s in range(ci * S, (ci + 1) * S):
                    xh = (x[n, g, s] - mean) * rr
                    xhat[n, g, s] = xh
                    y[n, g, s] = xh * a + b


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _vjp(ybar, xhat, r, gamma, xbar, gbar, bbar):
    """x̄ = r (v - ⟨v⟩ - x̂ ⟨x̂ v⟩) with v = γ ȳ; γ̄ = Σ ȳ x̂ and β̄ = Σ ȳ per channel."""
    N, G, M = ybar.shape
    per = gamma.shape[0] // G
    S = M // per
    for n in range(N):
        for g in range(G):
            mean_v = 0.0
            mean_xv = 0.0
            for ci in range(per):
                c = g * per + ci
                sy = 0.0
                sxy = 0.0
                for s in range(ci * S, (ci + 1) * S):
                    sy += ybar[n, g, s]
                    sxy += ybar[n, g, s] * xhat[n, g, s]
                gbar[c] += sxy
                bbar[c] += sy
                mean_v += gamma[c] * sy
                mean_xv += gamma[c] * sxy
            mean_v /= M
            mean_xv /= M
            rr = r[n, g, 0]
            for ci in range(per):
                a = gamma[g * per + ci]
                for s in range(ci * S, (ci + 1) * S):
                    xbar[n, g, s] = rr * (ybar[n, g, s] * a - mean_v - xhat[n, g, s] * mean_xv)


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _vjp_jvp(ybar, v, xhat, r, gamma, xbar, ju, gbar):
    """GroupNorm's second derivatives (module docstring) with ``u = γ ȳ``: ``x̄``, ``Ju`` and
    ``γ̄ += Σ ȳ Jv`` per channel. ybar, v, xhat, xbar, ju (N, G, M); r (N, G, 1); gamma, gbar
    (C,). Three passes over each group: the means, ``⟨u Jv⟩``, the outputs."""
    N, G, M = ybar.shape
    per = gamma.shape[0] // G
    S = M // per
    for n in range(N):
        for g in range(G):
            yb, vv, xh, xb, jux = ybar[n, g], v[n, g], xhat[n, g], xbar[n, g], ju[n, g]
            su = sv = sxu = sxv = 0.0
            for ci in range(per):
                sy = sxy = 0.0
                for s in range(ci * S, (ci + 1) * S):
                    sy += yb[s]
                    sxy += xh[s] * yb[s]
                    sv += vv[s]
                    sxv += xh[s] * vv[s]
                su += gamma[g * per + ci] * sy
                sxu += gamma[g * per + ci] * sxy
            mu, mv, mxu, mxv = su / M, sv / M, sxu / M, sxv / M
            rr = r[n, g, 0]
            sujv = 0.0
            for ci in range(per):
                part = 0.0
                for s in range(ci * S, (ci + 1) * S):
                    part += yb[s] * (vv[s] - mv - xh[s] * mxv)
                sujv += gamma[g * per + ci] * part
            mujv = rr * sujv / M
            for ci in range(per):
                c = g * per + ci
                a = gamma[c]
                sg = 0.0
                for s in range(ci * S, (ci + 1) * S):
                    jv = rr * (vv[s] - mv - xh[s] * mxv)
                    jun = rr * (yb[s] * a - mu - xh[s] * mxu)
                    jux[s] = jun
                    xb[s] = -rr * (mujv * xh[s] + mxv * jun + mxu * jv)
                    sg += yb[s] * jv
                gbar[c] += sg
