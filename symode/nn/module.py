"""Functional modules: a module holds structure, never parameters.

Every module maps ``(θ, x, t) -> y`` with all of its parameters in one flat vector ``θ``
(``init(rng)`` makes one, ``views(θ)`` names its pieces without copying). Reverse and forward
derivatives are explicit:

* ``forward(θ, x, t=0.0) -> (y, cache)``;
* ``vjp(θ, cache, ȳ) -> (x̄, θ̄)``: ``x̄ = ȳ·∂y/∂x``, ``θ̄ = ȳ·∂y/∂θ`` (summed over the batch);
* ``vjp_t(θ, cache, ȳ) -> (x̄, θ̄, t̄)``: the same with ``t̄ = ȳ·∂y/∂t`` for layers that see the
  time (a float: the batch shares ``t``);
* ``jvp(θ, cache, ẋ, θ̇=None) -> ẏ``: the directional derivative;
* ``vjp_jvp(θ, cache, ȳ, ẋ) -> (x̄, θ̄, t̄)``: the derivative of ``vjp_t`` along ``ẋ`` with ``ȳ``
  held, that is the gradient of ``ȳ·(∂y/∂x)ẋ`` with respect to ``x``, ``θ`` and ``t`` (second
  derivatives, which continuous normalizing flows need to differentiate a trace);
* ``jvp_record(θ, cache, ẋ) -> (ẏ, record)``: the tangent ``ẏ = (∂y/∂x)ẋ`` and what
  ``dual_vjp`` needs of its pass (``ẋ`` itself for a layer; every child's tangent for a
  container, so that the reverse pass does not recompute them);
* ``dual_vjp(θ, cache, record, ȳ, ẏ̄) -> (x̄, ẋ̄, θ̄, t̄)``: the reverse pass of the pair map
  ``(x, ẋ) ↦ (y, ẏ)`` for cotangents ``ȳ`` (or None for zero) and ``ẏ̄``.

A layer implements ``vjp`` or, if it uses the time, ``vjp_t``; the base class derives the
other. A layer with second derivatives implements ``vjp_jvp``; the base class builds
``dual_vjp`` from it:

    ẋ̄ = ẏ̄ ∂y/∂x,    x̄ = ȳ ∂y/∂x + ∂/∂x [ẏ̄ (∂y/∂x) ẋ],

and ``θ̄``, ``t̄`` alike. Containers split ``θ`` among their children in order and chain their
children's ``dual_vjp``.

A module that maps each sample of the batch on its own declares ``per_sample = True``; runs of
such layers in a :class:`Sequential` share out large batches among threads
(:mod:`symode.nn.parallel`).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from ..backend import array_module, asarray
from ..errors import ShapeError
from . import parallel

__all__ = ["Module", "Sequential", "expect_shape"]


def expect_shape(owner: "Module", a, shape: tuple, name: str) -> NDArray:
    """``a`` as an array of exactly ``shape``, or a :class:`ShapeError` naming ``owner``."""
    a = asarray(a)
    if a.shape != shape:
        raise ShapeError(f"{owner!r}: expected {name} of shape {shape} (NCHW), got {a.shape}")
    return a


class Module:
    """Base class of functional layers (see the module docstring)."""

    #: Children in the order their parameters follow this module's own in ``θ``.
    children: tuple["Module", ...] = ()

    #: Whether sample ``n`` of the output depends on sample ``n`` of the input alone (and the
    #: module keeps no state between calls): then slices of a batch may run in threads.
    per_sample: bool = False

    # -- parameters ----------------------------------------------------------------------------
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes of this module's own parameters, in ``θ`` order."""
        return {}

    def init_params(self, rng: np.random.Generator) -> dict[str, NDArray]:
        """Initial values of the own parameters (zeros unless a layer says otherwise)."""
        return {k: np.zeros(s) for k, s in self.param_shapes().items()}

    @cached_property
    def _own_layout(self) -> tuple[tuple[str, int, int, tuple[int, ...]], ...]:
        """(name, start, stop, shape) of each own parameter (structure is fixed at creation)."""
        out, k = [], 0
        for name, shape in self.param_shapes().items():
            n = int(np.prod(shape, dtype=int))
            out.append((name, k, k + n, tuple(shape)))
            k += n
        return tuple(out)

    @cached_property
    def n_own(self) -> int:
        return self._own_layout[-1][2] if self._own_layout else 0

    @cached_property
    def n_params(self) -> int:
        """Length of ``θ``: own parameters, then each child's."""
        return self.n_own + sum(c.n_params for c in self.children)

    @cached_property
    def _child_slices(self) -> tuple[slice, ...]:
        k, out = self.n_own, []
        for c in self.children:
            out.append(slice(k, k + c.n_params))
            k += c.n_params
        return tuple(out)

    def init(self, rng: np.random.Generator, dtype=np.float64) -> NDArray:
        """A fresh parameter vector, drawn from ``rng``."""
        own = self.init_params(rng)
        parts = [np.asarray(own[k], dtype=dtype).ravel() for k in self.param_shapes()]
        parts += [c.init(rng, dtype) for c in self.children]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    def views(self, theta: NDArray) -> dict[str, NDArray]:
        """Own parameters of ``θ`` as named, reshaped views (no copies)."""
        return {name: theta[a:b].reshape(shape) for name, a, b, shape in self._own_layout}

    def child_thetas(self, theta: NDArray) -> list[NDArray]:
        """The slices of ``θ`` that belong to each child."""
        return [theta[s] for s in self._child_slices]

    def named_views(self, theta: NDArray, prefix: str = "") -> dict[str, NDArray]:
        """Every parameter of the tree, named ``"0.weight"`` style."""
        out = {prefix + k: v for k, v in self.views(theta).items()}
        for i, (c, th) in enumerate(zip(self.children, self.child_thetas(theta))):
            out.update(c.named_views(th, f"{prefix}{i}."))
        return out

    # -- maps ----------------------------------------------------------------------------------
    def forward(self, theta: NDArray, x: NDArray, t: float = 0.0) -> tuple[NDArray, Any]:
        raise NotImplementedError

    def vjp(self, theta, cache, ybar):
        if type(self).vjp_t is Module.vjp_t:
            raise NotImplementedError(f"{type(self).__name__} implements neither vjp nor vjp_t")
        xbar, thetabar, _ = self.vjp_t(theta, cache, ybar)
        return xbar, thetabar

    def vjp_t(self, theta, cache, ybar):
        xbar, thetabar = self.vjp(theta, cache, ybar)
        return xbar, thetabar, 0.0

    def jvp(self, theta, cache, xdot, thetadot=None):
        raise NotImplementedError(f"{type(self).__name__} has no jvp")

    def vjp_jvp(self, theta, cache, ybar, xdot):
        raise NotImplementedError(
            f"{type(self).__name__} has no second derivatives (vjp_jvp); every layer and "
            f"container of symode.nn has them, an ODEBlock does not")

    def jvp_record(self, theta, cache, xdot):
        return self.jvp(theta, cache, xdot), xdot

    def dual_vjp(self, theta, cache, xdot, ybar, ydotbar):
        # a layer's record is its input tangent ẋ
        xdotbar = self.vjp_t(theta, cache, ydotbar)[0]
        xbar, thetabar, tbar = self.vjp_jvp(theta, cache, ydotbar, xdot)
        if ybar is not None:
            xb, thb, tb = self.vjp_t(theta, cache, ybar)
            xbar, thetabar, tbar = xbar + xb, thetabar + thb, tbar + tb
        return xbar, xdotbar, thetabar, tbar

    def __call__(self, theta: NDArray, x: NDArray, t: float = 0.0) -> NDArray:
        return self.forward(theta, x, t)[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Sequential(Module):
    """Modules applied in order; ``θ`` is their parameter vectors one after another.

    Each maximal run of per-sample children maps a large batch slice by slice in threads
    (:mod:`symode.nn.parallel`); other children see the whole batch.
    """

    def __init__(self, *layers: Module):
        if not all(isinstance(m, Module) for m in layers):
            raise TypeError("Sequential takes Module instances")
        self.children = tuple(layers)

    @property
    def per_sample(self) -> bool:
        return all(c.per_sample for c in self.children)

    @cached_property
    def _runs(self) -> tuple[tuple[int, int, bool], ...]:
        """``(start, stop, per_sample)`` of the maximal runs of children alike in per_sample."""
        runs: list[list] = []
        for i, c in enumerate(self.children):
            if runs and runs[-1][2] == c.per_sample:
                runs[-1][1] = i + 1
            else:
                runs.append([i, i + 1, c.per_sample])
        return tuple(tuple(r) for r in runs)

    @cached_property
    def _widths(self) -> tuple[int, ...]:
        """Per run, the widest dense layer's features (0 if none): a narrow input can still
        feed wide hidden layers, whose work decides whether splitting the batch pays."""
        def width(m: Module) -> int:
            own = max(getattr(m, "in_features", 0), getattr(m, "out_features", 0))
            return max([own] + [width(c) for c in m.children])

        return tuple(max(width(c) for c in self.children[a:b]) for a, b, _ in self._runs)

    def forward(self, theta, x, t=0.0):
        thetas = self.child_thetas(theta)
        caches = []
        for (a, b, per_sample), width in zip(self._runs, self._widths):
            layers, ths = self.children[a:b], thetas[a:b]
            slices = parallel.batch_slices(x, width) if per_sample else None
            if slices is None:
                x, c = _forward_run(layers, ths, x, t)
            else:
                parts = parallel.map_slices(lambda s: _forward_run(layers, ths, x[s], t), slices)
                x = np.concatenate([p[0] for p in parts])
                c = _Sliced(slices, [p[1] for p in parts])
            caches.append(c)
        return x, caches

    def vjp_t(self, theta, cache, ybar):
        thetas = self.child_thetas(theta)
        xp = array_module(theta, ybar)
        thetabar = xp.zeros_like(theta, dtype=np.result_type(theta.dtype, ybar.dtype))
        tbar = 0.0
        for (a, b, _), c in zip(reversed(self._runs), reversed(cache)):
            layers, ths = self.children[a:b], thetas[a:b]
            parts = _each_slice(c, ybar, lambda cc, yb: _vjp_run(layers, ths, cc, yb))
            ybar = _join([p[0] for p in parts])
            thetabar[self._child_slices[a].start:self._child_slices[b - 1].stop] = \
                sum(p[1] for p in parts)
            tbar += sum(p[2] for p in parts)
        return ybar, thetabar, tbar

    def jvp(self, theta, cache, xdot, thetadot=None):
        thetas = self.child_thetas(theta)
        dots = [None] * len(self.children) if thetadot is None else self.child_thetas(thetadot)
        for (a, b, _), c in zip(self._runs, cache):
            layers, ths, tds = self.children[a:b], thetas[a:b], dots[a:b]
            xdot = _join(_each_slice(c, xdot, lambda cc, xd: _jvp_run(layers, ths, cc, xd, tds)))
        return xdot

    def vjp_jvp(self, theta, cache, ybar, xdot):
        record = self.jvp_record(theta, cache, xdot)[1]
        xbar, _, thetabar, tbar = self.dual_vjp(theta, cache, record, None, ybar)
        return xbar, thetabar, tbar

    def jvp_record(self, theta, cache, xdot):
        """The tangent through the children, keeping each child's record (per run and batch
        slice)."""
        thetas = self.child_thetas(theta)
        record = []
        for (a, b, _), c in zip(self._runs, cache):
            layers, ths = self.children[a:b], thetas[a:b]
            parts = _each_slice(c, xdot, lambda cc, xd: _tangents_run(layers, ths, cc, xd))
            record.append([p[0] for p in parts])
            xdot = _join([p[1] for p in parts])
        return xdot, record

    def dual_vjp(self, theta, cache, record, ybar, ydotbar):
        """The children's ``dual_vjp`` in reverse, each with its record."""
        thetas = self.child_thetas(theta)
        xp = array_module(theta, ydotbar)
        thetabar = xp.zeros_like(theta, dtype=np.result_type(theta.dtype, ydotbar.dtype))
        tbar = 0.0
        for (a, b, _), c, tans in zip(reversed(self._runs), reversed(cache), reversed(record)):
            layers, ths = self.children[a:b], thetas[a:b]

            def run(k, cc, s, layers=layers, ths=ths, tans=tans):
                yb = None if ybar is None else ybar[s]
                return _dual_run(layers, ths, cc, tans[k], yb, ydotbar[s])

            parts = _per_slice(c, run)
            ybar = _join([p[0] for p in parts])
            ydotbar = _join([p[1] for p in parts])
            thetabar[self._child_slices[a].start:self._child_slices[b - 1].stop] = \
                sum(p[2] for p in parts)
            tbar += sum(p[3] for p in parts)
        return ybar, ydotbar, thetabar, tbar

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(c) for c in self.children)
        return f"Sequential(\n  {inner}\n)"


class _Sliced(NamedTuple):
    """Cache of a run of layers that mapped the batch slice by slice."""
    slices: list[slice]
    caches: list[list]


def _each_slice(cache, arr, fn) -> list:
    """``[fn(cache, arr)]``, or for a :class:`_Sliced` cache ``fn`` on every slice of ``arr``
    with that slice's cache, in threads."""
    if not isinstance(cache, _Sliced):
        return [fn(cache, arr)]
    arr = asarray(arr)
    return parallel.map_slices(lambda k: fn(cache.caches[k], arr[cache.slices[k]]),
                               range(len(cache.slices)))


def _per_slice(cache, fn) -> list:
    """``[fn(0, cache, slice(None))]``, or for a :class:`_Sliced` cache ``fn(k, cache_k,
    slice_k)`` for every slice, in threads."""
    if not isinstance(cache, _Sliced):
        return [fn(0, cache, slice(None))]
    return parallel.map_slices(lambda k: fn(k, cache.caches[k], cache.slices[k]),
                               range(len(cache.slices)))


def _join(arrays: list) -> NDArray:
    return arrays[0] if len(arrays) == 1 else array_module(arrays[0]).concatenate(arrays)


def _forward_run(layers, thetas, x, t):
    caches = []
    for layer, th in zip(layers, thetas):
        x, c = layer.forward(th, x, t)
        caches.append(c)
    return x, caches


def _vjp_run(layers, thetas, caches, ybar):
    """``(x̄, θ̄ of the run, t̄)``; θ̄ is the children's parameter vectors one after another."""
    parts, tbar = [], 0.0
    for layer, th, c in zip(reversed(layers), reversed(thetas), reversed(caches)):
        ybar, g, tb = layer.vjp_t(th, c, ybar)
        parts.append(asarray(g).ravel())
        tbar += tb
    return ybar, array_module(ybar).concatenate(parts[::-1]), tbar


def _jvp_run(layers, thetas, caches, xdot, thetadots):
    for layer, th, c, td in zip(layers, thetas, caches, thetadots):
        xdot = layer.jvp(th, c, xdot, td)
    return xdot


def _tangents_run(layers, thetas, caches, xdot):
    """``(record of every layer, output tangent)`` of a run (no parameter tangent)."""
    records = []
    for layer, th, c in zip(layers, thetas, caches):
        xdot, rec = layer.jvp_record(th, c, xdot)
        records.append(rec)
    return records, xdot


def _dual_run(layers, thetas, caches, records, ybar, ydotbar):
    """``(x̄, ẋ̄, θ̄ of the run, t̄)``: the layers' ``dual_vjp`` in reverse."""
    parts, tbar = [], 0.0
    for layer, th, c, rec in zip(reversed(layers), reversed(thetas), reversed(caches),
                                 reversed(records)):
        ybar, ydotbar, g, tb = layer.dual_vjp(th, c, rec, ybar, ydotbar)
        parts.append(asarray(g).ravel())
        tbar += tb
    return ybar, ydotbar, array_module(ydotbar).concatenate(parts[::-1]), tbar
