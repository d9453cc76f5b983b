"""Dense layers and small containers: :class:`Linear`, :class:`ConcatLinear`,
:class:`ConcatSquashLinear`, :class:`Flatten`, :class:`Unflatten` and :class:`Residual`.

The dense layers act on ``x`` of shape ``(batch, in_features)`` with a weight ``W`` of shape
``(out_features, in_features)`` (torch's layout), so that ``y = x Wᵀ + b`` and

* ``x̄ = ȳ W``, ``W̄ = ȳᵀ x``, ``b̄ = Σ_n ȳ_n`` (summed over the batch);
* ``ẏ = ẋ Wᵀ + x Ẇᵀ + ḃ``;
* second derivatives (``vjp_jvp``): ``ȳ·(∂y/∂x)ẋ = Σ_n ȳ_n·W ẋ_n``, so ``W̄ = ȳᵀ ẋ`` and
  nothing else.

The two time-aware layers are the ones of the Neural ODE and FFJORD code bases: ``ConcatLinear``
appends ``t`` to the input (Chen et al. 2018), ``ConcatSquashLinear`` gates and shifts the output
by functions of ``t`` (Grathwohl et al. 2019). Both return ``t̄`` from ``vjp_t``, a float, since
the batch shares one time.

Arrays keep their floating dtype: the work is done in ``result_type(x, θ)``, so a float32 ``x``
with a float32 ``θ`` (``module.init(rng, np.float32)``) stays float32 throughout; integer inputs
become float64. cupy arrays in give cupy arrays out (:mod:`symode.backend`); the products are
then cuBLAS's.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

from ..backend import array_module, asarray
from ..errors import ShapeError
from . import init
from .module import Module

__all__ = ["Linear", "ConcatLinear", "ConcatSquashLinear", "Flatten", "Unflatten", "Residual"]


class _DenseCache(NamedTuple):
    x: NDArray      # (batch, in_features), in the working dtype
    t: float


class Linear(Module):
    """Affine map ``y = x Wᵀ + b`` of ``x`` with shape ``(batch, in_features)``.

    Parameters ``weight`` of shape ``(out_features, in_features)`` and ``bias``
    ``(out_features,)``, both drawn from ``U(-1/√fan_in, 1/√fan_in)`` with ``fan_in =
    in_features`` (torch's default law: :func:`symode.nn.init.kaiming_uniform` with ``a = √5``).

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
        Whether the layer has ``bias``.

    Examples
    --------
    >>> layer = Linear(3, 2)
    >>> theta = layer.init(np.random.default_rng(0))
    >>> layer(theta, np.ones((5, 3))).shape
    (5, 2)
    """

    #: Weight columns in front of those of ``x`` (the time column of :class:`ConcatLinear`).
    _extra_inputs = 0

    per_sample = True

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        name = type(self).__name__
        self.in_features = _count(in_features, "in_features", name)
        self.out_features = _count(out_features, "out_features", name)
        self.bias = bool(bias)

    def param_shapes(self):
        shapes = {"weight": (self.out_features, self.in_features + self._extra_inputs)}
        if self.bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def init_params(self, rng):
        shape = self.param_shapes()["weight"]
        out = {"weight": init.kaiming_uniform(rng, shape)}
        if self.bias:
            out["bias"] = init.uniform(rng, (self.out_features,), 1 / math.sqrt(shape[1]))
        return out

    # -- Module protocol -----------------------------------------------------------------------
    def forward(self, theta, x, t=0.0):
        x = _dense_input(self, theta, x, self.in_features)
        t = _scalar_time(self, t) if self._extra_inputs else 0.0
        w_t, w, b = self._weights(theta, x.dtype)
        y = x @ w.T
        if b is not None:
            y += b
        if w_t is not None:
            y += t * w_t
        return y, _DenseCache(x, t)

    def vjp(self, theta, cache, ybar):
        xbar, thetabar, _ = self.vjp_t(theta, cache, ybar)
        return xbar, thetabar

    def vjp_t(self, theta, cache, ybar):
        x = cache.x
        ybar = _check_like(self, ybar, (x.shape[0], self.out_features), "ȳ")
        w_t, w, _ = self._weights(theta, x.dtype)
        xbar = ybar @ w
        wbar = ybar.T @ x
        ysum = ybar.sum(axis=0)
        tbar = 0.0
        xp = array_module(x)
        if w_t is not None:
            wbar = xp.concatenate([cache.t * ysum[:, None], wbar], axis=1)
            tbar = float(ysum @ w_t)
        parts = [wbar.ravel()] + ([ysum] if self.bias else [])
        return xbar, xp.concatenate(parts), tbar

    def jvp(self, theta, cache, xdot, thetadot=None):
        x = cache.x
        xdot = _check_like(self, xdot, x.shape, "ẋ")
        _, w, _ = self._weights(theta, x.dtype)
        ydot = xdot @ w.T
        if thetadot is not None:
            thetadot = _check_like(self, thetadot, (self.n_params,), "θ̇")
            wdot_t, wdot, bdot = self._weights(thetadot, ydot.dtype)
            ydot += x @ wdot.T
            if bdot is not None:
                ydot += bdot
            if wdot_t is not None:
                ydot += cache.t * wdot_t
        return ydot

    def vjp_jvp(self, theta, cache, ybar, xdot):
        # ȳ·(∂y/∂x)ẋ = Σ_n ȳ_n·W ẋ_n is linear in x: only W̄ = ȳᵀẋ (the time column gets 0)
        x = cache.x
        ybar = _check_like(self, ybar, (x.shape[0], self.out_features), "ȳ")
        xdot = _check_like(self, xdot, x.shape, "ẋ")
        xp = array_module(x)
        wbar = ybar.T @ xdot
        if self._extra_inputs:
            wbar = xp.concatenate([xp.zeros_like(wbar[:, :1]), wbar], axis=1)
        parts = [wbar.ravel()] + ([xp.zeros_like(wbar[:, 0])] if self.bias else [])
        return xp.zeros_like(xdot), xp.concatenate(parts), 0.0

    def dual_vjp(self, theta, cache, xdot, ybar, ydotbar):
        # ẋ̄ = ẏ̄ W, and the second-order term only adds ẏ̄ᵀẋ to the x columns of W̄
        ydotbar = _check_like(self, ydotbar, (cache.x.shape[0], self.out_features), "ẏ̄")
        if ybar is None:
            xbar, thetabar, tbar = self.vjp_jvp(theta, cache, ydotbar, xdot)
        else:
            xdot = _check_like(self, xdot, cache.x.shape, "ẋ")
            xbar, thetabar, tbar = self.vjp_t(theta, cache, ybar)
            n = self.out_features * (self.in_features + self._extra_inputs)
            wbar = thetabar[:n].reshape(self.out_features, -1)
            wbar[:, self._extra_inputs:] += ydotbar.T @ xdot
        return xbar, ydotbar @ self._weights(theta, ydotbar.dtype)[1], thetabar, tbar

    # -- helpers -------------------------------------------------------------------------------
    def _weights(self, theta, dtype) -> tuple[NDArray | None, NDArray, NDArray | None]:
        """``(w_t, W, b)`` in ``dtype``: the time column (or None), the x columns, the bias."""
        v = self.views(asarray(theta))
        weight = v["weight"].astype(dtype, copy=False)
        w_t = weight[:, 0] if self._extra_inputs else None
        b = v["bias"].astype(dtype, copy=False) if self.bias else None
        return w_t, weight[:, self._extra_inputs:], b

    def __repr__(self) -> str:
        extra = "" if self.bias else ", bias=False"
        return f"{type(self).__name__}({self.in_features}, {self.out_features}{extra})"


class ConcatLinear(Linear):
    """Affine map of ``[t, x]``: the time as an extra first input column (Chen et al. 2018).

    .. math:: y = [t\\,\\mathbf 1, x]\\, W^\\top + b = x W_x^\\top + t\\, w_t + b,
              \\qquad \\bar t = \\sum_n \\bar y_n \\cdot w_t, \\qquad
              \\bar w_t = t \\sum_n \\bar y_n,

    where ``w_t = W[:, 0]`` and ``W_x = W[:, 1:]``; the concatenated input is never formed. The
    weight has shape ``(out_features, in_features + 1)``, so ``fan_in = in_features + 1`` (as for
    torch's ``Linear(in_features + 1, out_features)``). ``t`` is one scalar shared by the batch.

    Parameters
    ----------
    in_features, out_features : int
        Features of ``x`` (the time column not counted) and of ``y``.
    bias : bool
    """

    _extra_inputs = 1


class _SquashCache(NamedTuple):
    x: NDArray      # (batch, in_features)
    a: NDArray      # (batch, out_features), x Wᵀ + b
    gate: NDArray   # (out_features,), σ(t·w_gate + b_gate)
    t: float


class ConcatSquashLinear(Module):
    """FFJORD's time-conditioned layer (Grathwohl et al. 2019):

    .. math:: y = (x W^\\top + b) \\odot \\sigma(t\\, w_{gate} + b_{gate}) + t\\, w_{hyper}.

    With ``a = x Wᵀ + b``, ``s = σ(t w_gate + b_gate)`` and ``s' = s (1 - s)``:

    * ``x̄ = (ȳ ⊙ s) W``, ``W̄ = (ȳ ⊙ s)ᵀ x``, ``b̄ = Σ_n ȳ_n ⊙ s``;
    * ``z̄ = s' ⊙ Σ_n ȳ_n ⊙ a_n`` (the gate's pre-activation), ``w̄_gate = t z̄``, ``b̄_gate = z̄``,
      ``w̄_hyper = t Σ_n ȳ_n``;
    * ``t̄ = z̄ · w_gate + (Σ_n ȳ_n) · w_hyper``.

    Parameters, in ``θ`` order: ``weight`` ``(out, in)`` and ``bias`` ``(out,)`` as in
    :class:`Linear`; ``gate_weight``, ``gate_bias`` and ``hyper_weight``, each ``(out,)``, the
    one-input layers of FFJORD's code (the hyper layer has no bias), drawn from ``U(-1, 1)``:
    torch's default for a layer with one input.

    Parameters
    ----------
    in_features, out_features : int
    """

    per_sample = True

    def __init__(self, in_features: int, out_features: int):
        self.in_features = _count(in_features, "in_features", "ConcatSquashLinear")
        self.out_features = _count(out_features, "out_features", "ConcatSquashLinear")

    def param_shapes(self):
        o = self.out_features
        return {"weight": (o, self.in_features), "bias": (o,), "gate_weight": (o,),
                "gate_bias": (o,), "hyper_weight": (o,)}

    def init_params(self, rng):
        o = self.out_features
        out = {"weight": init.kaiming_uniform(rng, (o, self.in_features)),
               "bias": init.uniform(rng, (o,), 1 / math.sqrt(self.in_features))}
        for name in ("gate_weight", "gate_bias", "hyper_weight"):
            out[name] = init.uniform(rng, (o,), 1.0)       # fan_in = 1
        return out

    def forward(self, theta, x, t=0.0):
        x = _dense_input(self, theta, x, self.in_features)
        t = _scalar_time(self, t)
        v = self._views(theta, x.dtype)
        a = x @ v["weight"].T
        a += v["bias"]
        gate = _expit(t * v["gate_weight"] + v["gate_bias"])
        y = a * gate
        y += t * v["hyper_weight"]
        return y, _SquashCache(x, a, gate, t)

    def vjp(self, theta, cache, ybar):
        xbar, thetabar, _ = self.vjp_t(theta, cache, ybar)
        return xbar, thetabar

    def vjp_t(self, theta, cache, ybar):
        x, a, gate, t = cache
        ybar = _check_like(self, ybar, a.shape, "ȳ")
        v = self._views(theta, x.dtype)
        abar = ybar * gate
        zbar = (ybar * a).sum(axis=0) * gate * (1 - gate)
        ysum = ybar.sum(axis=0)
        thetabar = array_module(x).concatenate([(abar.T @ x).ravel(), abar.sum(axis=0),
                                                t * zbar, zbar, t * ysum])
        tbar = float(zbar @ v["gate_weight"] + ysum @ v["hyper_weight"])
        return abar @ v["weight"], thetabar, tbar

    def jvp(self, theta, cache, xdot, thetadot=None):
        x, a, gate, t = cache
        xdot = _check_like(self, xdot, x.shape, "ẋ")
        v = self._views(theta, x.dtype)
        adot = xdot @ v["weight"].T
        if thetadot is None:
            return adot * gate
        thetadot = _check_like(self, thetadot, (self.n_params,), "θ̇")
        d = self._views(thetadot, adot.dtype)
        adot += x @ d["weight"].T
        adot += d["bias"]
        zdot = t * d["gate_weight"] + d["gate_bias"]
        ydot = adot * gate
        ydot += a * (gate * (1 - gate) * zdot)
        ydot += t * d["hyper_weight"]
        return ydot

    def vjp_jvp(self, theta, cache, ybar, xdot):
        # ȳ·ẏ with ẏ = (ẋWᵀ) ⊙ s: W̄ = (ȳ ⊙ s)ᵀẋ; the gate sees ż̄ = s' ⊙ Σ_n ȳ_n ⊙ ȧ_n
        x, a, gate, t = cache
        ybar = _check_like(self, ybar, a.shape, "ȳ")
        xdot = _check_like(self, xdot, x.shape, "ẋ")
        v = self._views(theta, x.dtype)
        adot = xdot @ v["weight"].T
        zbar = (ybar * adot).sum(axis=0) * gate * (1 - gate)
        xp = array_module(x)
        zero = xp.zeros_like(zbar)
        thetabar = xp.concatenate([((ybar * gate).T @ xdot).ravel(), zero, t * zbar, zbar,
                                   zero])
        return xp.zeros_like(xdot), thetabar, float(zbar @ v["gate_weight"])

    def dual_vjp(self, theta, cache, xdot, ybar, ydotbar):
        # one pass for both cotangents: ẏ = ȧ ⊙ s with ȧ = ẋWᵀ adds (ẏ̄ ⊙ s)ᵀẋ to W̄ and
        # Σ_n ẏ̄_n ⊙ ȧ_n to the gate's sum
        x, a, gate, t = cache
        ydotbar = _check_like(self, ydotbar, a.shape, "ẏ̄")
        xdot = _check_like(self, xdot, x.shape, "ẋ")
        v = self._views(theta, x.dtype)
        xp = array_module(x)
        sdot = ydotbar * gate
        wbar = sdot.T @ xdot
        zbar = (ydotbar * (xdot @ v["weight"].T)).sum(axis=0)
        if ybar is None:
            xbar, bbar, ysum = xp.zeros_like(xdot), xp.zeros_like(zbar), xp.zeros_like(zbar)
        else:
            ybar = _check_like(self, ybar, a.shape, "ȳ")
            abar = ybar * gate
            xbar = abar @ v["weight"]
            wbar += abar.T @ x
            zbar += (ybar * a).sum(axis=0)
            bbar, ysum = abar.sum(axis=0), ybar.sum(axis=0)
        zbar *= gate * (1 - gate)
        thetabar = xp.concatenate([wbar.ravel(), bbar, t * zbar, zbar, t * ysum])
        tbar = float(zbar @ v["gate_weight"] + ysum @ v["hyper_weight"])
        return xbar, sdot @ v["weight"], thetabar, tbar

    def _views(self, theta, dtype) -> dict[str, NDArray]:
        return {k: p.astype(dtype, copy=False) for k, p in self.views(asarray(theta)).items()}

    def __repr__(self) -> str:
        return f"ConcatSquashLinear({self.in_features}, {self.out_features})"


class Flatten(Module):
    """``(batch, d_1, ..., d_k) -> (batch, d_1·...·d_k)``; the batch axis is kept. No
    parameters. A ``(batch,)`` input becomes ``(batch, 1)``."""

    per_sample = True

    def forward(self, theta, x, t=0.0):
        x = asarray(x)
        if x.ndim < 1:
            raise ShapeError("Flatten(): expected x of shape (batch, ...), got a scalar")
        return x.reshape(x.shape[0], math.prod(x.shape[1:])), x.shape

    def vjp(self, theta, cache, ybar):
        ybar = _check_like(self, ybar, (cache[0], math.prod(cache[1:])), "ȳ")
        return ybar.reshape(cache), array_module(ybar).zeros(0, dtype=ybar.dtype)

    def jvp(self, theta, cache, xdot, thetadot=None):
        xdot = _check_like(self, xdot, cache, "ẋ")
        return xdot.reshape(cache[0], math.prod(cache[1:]))

    def vjp_jvp(self, theta, cache, ybar, xdot):
        xdot = _check_like(self, xdot, cache, "ẋ")
        xp = array_module(xdot)
        return xp.zeros_like(xdot), xp.zeros(0, dtype=xdot.dtype), 0.0

    def __repr__(self) -> str:
        return "Flatten()"


class Unflatten(Module):
    """``(batch, d_1·...·d_k) -> (batch, d_1, ..., d_k)``, the inverse of :class:`Flatten`; no
    parameters.

    It lets a network on images act on flat states, such as the ``(batch, dim)`` states of a
    continuous normalizing flow: ``Sequential(Unflatten((1, 4, 4)), ConcatConv2d(1, 8, 3,
    padding=1), ..., Flatten())``. Being a reshape, it has zero second derivatives.

    Parameters
    ----------
    shape : int or tuple of int
        ``(d_1, ..., d_k)`` of each sample, e.g. ``(channels, height, width)``.

    Attributes
    ----------
    in_features : int
        ``d_1·...·d_k``, the length of a flat sample.
    """

    per_sample = True

    def __init__(self, shape):
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        if not shape:
            raise ShapeError("Unflatten: shape must have at least one entry, got ()")
        self.shape = tuple(_count(d, "each entry of shape", "Unflatten") for d in shape)
        self.in_features = math.prod(self.shape)

    def forward(self, theta, x, t=0.0):
        x = asarray(x)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ShapeError(f"{self!r}: expected x of shape (batch, {self.in_features}), got "
                             f"{x.shape}")
        return x.reshape(x.shape[0], *self.shape), x.shape[0]

    def vjp(self, theta, cache, ybar):
        ybar = _check_like(self, ybar, (cache, *self.shape), "ȳ")
        return ybar.reshape(cache, self.in_features), array_module(ybar).zeros(0, ybar.dtype)

    def jvp(self, theta, cache, xdot, thetadot=None):
        xdot = _check_like(self, xdot, (cache, self.in_features), "ẋ")
        return xdot.reshape(cache, *self.shape)

    def vjp_jvp(self, theta, cache, ybar, xdot):
        ybar = _check_like(self, ybar, (cache, *self.shape), "ȳ")
        xdot = _check_like(self, xdot, (cache, self.in_features), "ẋ")
        xp = array_module(xdot)
        dtype = np.result_type(ybar.dtype, xdot.dtype)
        return xp.zeros(xdot.shape, dtype), xp.zeros(0, dtype), 0.0

    def __repr__(self) -> str:
        return f"Unflatten({self.shape})"


class Residual(Module):
    """``y = x + inner(θ, x, t)``: a skip connection around one module (He et al. 2016).

    ``θ`` is the inner module's; ``x̄ = ȳ + x̄_inner``, ``ẏ = ẋ + ẏ_inner``, and ``θ̄`` and ``t̄``
    are the inner module's. The inner module must keep the shape of ``x``.

    Parameters
    ----------
    inner : Module
    """

    @property
    def per_sample(self) -> bool:
        return self.inner.per_sample

    def __init__(self, inner: Module):
        if not isinstance(inner, Module):
            raise TypeError(f"Residual wraps a symode.nn Module, got {type(inner).__name__}")
        self.inner = inner
        self.children = (inner,)

    def forward(self, theta, x, t=0.0):
        theta, x = asarray(theta), asarray(x)
        _check_theta(self, theta)
        fx, cache = self.inner.forward(theta, x, t)
        if fx.shape != x.shape:
            raise ShapeError(f"{self!r}: the inner module maps x of shape {x.shape} to "
                             f"{fx.shape}; y = x + inner(x) needs the shape {x.shape} kept")
        return x + fx, cache

    def vjp(self, theta, cache, ybar):
        xbar, thetabar, _ = self.vjp_t(theta, cache, ybar)
        return xbar, thetabar

    def vjp_t(self, theta, cache, ybar):
        xbar, thetabar, tbar = self.inner.vjp_t(theta, cache, ybar)
        return ybar + xbar, thetabar, tbar

    def jvp(self, theta, cache, xdot, thetadot=None):
        return xdot + self.inner.jvp(theta, cache, xdot, thetadot)

    def vjp_jvp(self, theta, cache, ybar, xdot):
        return self.inner.vjp_jvp(theta, cache, ybar, xdot)

    def jvp_record(self, theta, cache, xdot):
        ydot, record = self.inner.jvp_record(theta, cache, xdot)
        return xdot + ydot, record

    def dual_vjp(self, theta, cache, record, ybar, ydotbar):
        xbar, xdotbar, thetabar, tbar = self.inner.dual_vjp(theta, cache, record, ybar, ydotbar)
        return (xbar if ybar is None else xbar + ybar), xdotbar + ydotbar, thetabar, tbar

    def __repr__(self) -> str:
        return f"Residual({self.inner!r})"


# -- checks ---------------------------------------------------------------------------------------
def _count(n, name: str, who: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ShapeError(f"{who}: {name} must be a positive integer, got {n!r}")
    return int(n)


def _check_theta(module: Module, theta: NDArray) -> None:
    if theta.shape != (module.n_params,):
        raise ShapeError(f"{module!r}: expected θ of shape ({module.n_params},), got "
                         f"{theta.shape}")


def _dense_input(module: Module, theta, x, n_in: int) -> NDArray:
    """``x`` checked to be ``(batch, n_in)`` and cast to the working dtype ``result_type(x, θ)``."""
    theta, x = asarray(theta), asarray(x)
    _check_theta(module, theta)
    if x.ndim != 2 or x.shape[1] != n_in:
        raise ShapeError(f"{module!r}: expected x of shape (batch, {n_in}), got {x.shape}")
    dtype = np.result_type(x.dtype, theta.dtype)
    return x.astype(dtype if np.issubdtype(dtype, np.inexact) else np.float64, copy=False)


def _scalar_time(module: Module, t) -> float:
    if np.ndim(t) != 0:
        raise ShapeError(f"{module!r}: expected a scalar time t (the batch shares it), got an "
                         f"array of shape {np.shape(t)}")
    return float(t)


def _expit(z: NDArray) -> NDArray:
    """The logistic sigmoid, scipy's (or cupyx's for cupy arrays)."""
    if array_module(z) is np:
        return expit(z)
    from cupyx.scipy.special import expit as cupy_expit

    return cupy_expit(z)


def _check_like(module: Module, a, shape: tuple[int, ...], name: str) -> NDArray:
    a = asarray(a)
    if a.shape != tuple(shape):
        raise ShapeError(f"{module!r}: expected {name} of shape {tuple(shape)}, got {a.shape}")
    return a
