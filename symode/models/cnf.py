"""Continuous normalizing flows (Chen et al. 2018, section 4; FFJORD, Grathwohl et al. 2019).

A flow carries a data point ``x = z(t0)`` to ``z(t1)`` along ``dz/dt = f(t, z, θ)``, ``f`` a
network. The log-density follows the instantaneous change of variables

    d log p(z(t))/dt = -tr(∂f/∂z),

so the state is augmented with ``Δ``, ``dΔ/dt = -tr(∂f/∂z)``, ``Δ(t0) = 0``, and with a
standard normal base density at ``t1``

    log p(x) = log N(z(t1); 0, I) - Δ(t1).

The trace is computed

* ``"exact"``: ``Σ_i e_iᵀ (∂f/∂z) e_i``, one forward-mode product (``jvp``) per dimension;
  what FFJORD calls brute force, right for low-dimensional data;
* ``"hutchinson"``: ``εᵀ (∂f/∂z) ε`` with ``ε`` drawn once per solve (Rademacher or Gaussian),
  one product: an unbiased estimate of the trace whose gradient is unbiased too.

Differentiating ``Δ`` needs second derivatives of the network: the gradient of
``ā_Δ εᵀ(∂f/∂z)ε`` with respect to ``z``, ``θ`` and ``t`` comes from the layers' ``dual_vjp``
(:mod:`symode.nn.module`). With that, :class:`CNFDynamics` is an ordinary Dynamics, and every
solver and adjoint of :func:`symode.solve_vjp` trains a flow unchanged.

Optionally the kinetic energy ``∫ ‖f‖² dt`` and the Jacobian's Frobenius norm
``∫ ‖∂f/∂z‖²_F dt`` join the state as regularizers (Finlay et al. 2020); their gradients come
from the same ``dual_vjp``.

For a system written in sympy, :meth:`symode.ODE.with_log_density` appends the exact,
derived divergence instead.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from ..backend import array_module, asarray
from ..errors import ShapeError, SymodeError
from ..gradients import solve_vjp
from ..nn.activations import Softplus, Tanh
from ..nn.layers import ConcatSquashLinear
from ..nn.module import Module, Sequential
from ..solvers.solve import solve

__all__ = ["CNF", "CNFDynamics", "TRACES", "NOISES", "concat_squash_mlp", "normal_log_prob"]

TRACES = ("exact", "hutchinson")
NOISES = ("rademacher", "gaussian")
_ACTIVATIONS = {"tanh": Tanh, "softplus": Softplus}


def normal_log_prob(z: NDArray) -> NDArray:
    """``log N(z; 0, I) = -|z|²/2 - (D/2) log 2π`` per row of ``z`` (batch, D)."""
    return -0.5 * (z * z).sum(axis=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


def concat_squash_mlp(dim: int, hidden=(64, 64, 64), activation: str = "tanh") -> Sequential:
    """FFJORD's toy network: ``ConcatSquashLinear`` layers ``dim → hidden… → dim`` with an
    activation between them (``"tanh"`` or ``"softplus"``), the time gating every layer."""
    if activation not in _ACTIVATIONS:
        raise SymodeError(f"activation must be one of {tuple(_ACTIVATIONS)}, got {activation!r}")
    sizes = [dim, *hidden, dim]
    layers: list[Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(ConcatSquashLinear(a, b))
        if i < len(sizes) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return Sequential(*layers)


class CNFDynamics:
    """The augmented Dynamics ``d/dt [z, Δ] = [f, -tr ∂f/∂z]`` of a network ``f``, optionally
    with the regularizers of Finlay et al. (2020) as two more states.

    States have shape (batch, dim + 1), ``Δ`` last; with ``regularize`` (batch, dim + 3):
    ``[z, Δ, K, F]`` with

        dK/dt = ‖f‖²,    dF/dt = Σ_p ‖(∂f/∂z) p‖²,

    the kinetic energy and the Frobenius norm of the Jacobian, exact with the exact trace's
    basis probes and unbiased with a Hutchinson probe (``E‖Jε‖² = ‖J‖²_F``).

    Parameters
    ----------
    net : Module
        ``f(θ, z, t)``, mapping (batch, dim) to (batch, dim), with ``jvp`` and second
        derivatives (``dual_vjp``): every layer of :mod:`symode.nn`. An image net is wrapped
        as ``Sequential(Unflatten((C, H, W)), ..., Flatten())``, the state staying flat.
    trace : {"exact", "hutchinson"}
    eps : ndarray, shape (batch, dim), optional
        The probe ``ε`` of the Hutchinson estimator, fixed for the solve (required for it).
    regularize : bool
        Carry ``K`` and ``F``.

    Attributes
    ----------
    nfev : int
        Evaluations so far (``f`` and ``f_and_vjp`` count one each).
    """

    def __init__(self, net: Module, trace: str = "exact", eps: NDArray | None = None,
                 regularize: bool = False):
        if not isinstance(net, Module):
            raise TypeError(f"CNFDynamics needs a symode.nn Module, got {type(net).__name__}")
        if trace not in TRACES:
            raise SymodeError(f"trace must be one of {TRACES}, got {trace!r}")
        if trace == "hutchinson" and eps is None:
            raise SymodeError("the Hutchinson trace needs its probe eps of shape (batch, dim)")
        self.net, self.trace, self.eps = net, trace, eps
        self.extra = 3 if regularize else 1          # states after z
        self.nfev = 0

    def _probes(self, z: NDArray) -> list[NDArray]:
        """Tangents whose ``Σ_k pᵀ J p`` is the trace: the basis vectors, or ``ε``."""
        if self.trace == "hutchinson":
            if self.eps.shape != z.shape:
                raise ShapeError(f"the probe eps has shape {self.eps.shape}; the state z has "
                                 f"{z.shape}")
            return [self.eps]
        xp = array_module(z)
        probes = []
        for i in range(z.shape[1]):
            e = xp.zeros_like(z)
            e[:, i] = 1
            probes.append(e)
        return probes

    def _evaluate(self, t, s, theta):
        """``(z, f, cache of the net, probes, their tangents (∂f/∂z)p, the tangents' records
        for dual_vjp, F)``."""
        s = asarray(s)
        z = s[:, :-self.extra]
        y, cache = self.net.forward(theta, z, float(t))
        if y.shape != z.shape:
            raise ShapeError(f"{self.net!r} maps z of shape {z.shape} to {y.shape}; a flow "
                             f"needs dz/dt of the shape of z")
        probes = self._probes(z)
        tangents, records = zip(*(self.net.jvp_record(theta, cache, p) for p in probes))
        rates = [-sum((p * jp).sum(axis=1) for p, jp in zip(probes, tangents))]
        if self.extra == 3:
            rates += [(y * y).sum(axis=1), sum((jp * jp).sum(axis=1) for jp in tangents)]
        xp = array_module(y)
        F = xp.concatenate([y, xp.stack(rates, axis=1)], axis=1)
        return z, y, cache, probes, tangents, records, F

    def f(self, t, s, theta):
        """``[f, -tr ∂f/∂z]`` (and ``‖f‖², Σ_p ‖(∂f/∂z)p‖²``), shape (batch, dim + extra)."""
        self.nfev += 1
        return self._evaluate(t, s, theta)[-1]

    def vjp(self, t, s, theta, a):
        _, a_s, a_theta, a_t = self.f_and_vjp(t, s, theta, a)
        return a_s, a_theta, a_t

    def f_and_vjp(self, t, s, theta, a):
        """``F`` and ``(a·∂F/∂s, a·∂F/∂θ, a·∂F/∂t)`` of the augmented ``F``, one forward pass.

        With ``a = [a_z, a_Δ, a_K, a_F]``:

            a·F = a_z·f - a_Δ Σ_p pᵀ(∂f/∂z)p + a_K ‖f‖² + a_F Σ_p ‖(∂f/∂z)p‖²,

        whose gradients are the network's ``dual_vjp`` with ``ȳ = a_z + 2 a_K f`` and
        ``ẏ̄ = -a_Δ p + 2 a_F (∂f/∂z)p`` for each probe ``p``.
        """
        self.nfev += 1
        z, y, cache, probes, tangents, records, F = self._evaluate(t, s, theta)
        a = asarray(a)
        D = z.shape[1]
        a_z, a_delta = a[:, :D], a[:, D:D + 1]
        ybar = a_z
        if self.extra == 3:
            ybar = a_z + 2 * a[:, D + 1:D + 2] * y
        a_zsum, a_theta, a_t = 0.0, 0.0, 0.0
        for k, (p, jp, rec) in enumerate(zip(probes, tangents, records)):
            ydotbar = -a_delta * p
            if self.extra == 3:
                ydotbar = ydotbar + 2 * a[:, D + 2:D + 3] * jp
            xbar, _, thetabar, tbar = self.net.dual_vjp(theta, cache, rec,
                                                        ybar if k == 0 else None, ydotbar)
            a_zsum, a_theta, a_t = a_zsum + xbar, a_theta + thetabar, a_t + tbar
        xp = array_module(y)
        # F depends on z alone among the states, not on Δ, K or F
        a_s = xp.concatenate([a_zsum, xp.zeros_like(a[:, D:])], axis=1)
        return F, a_s, a_theta, a_t

    def __repr__(self) -> str:
        extra = ", regularize=True" if self.extra == 3 else ""
        return f"CNFDynamics({self.net!r}, trace={self.trace!r}{extra})"


class _FlowCache(NamedTuple):
    pullback: object
    shape: tuple
    z: NDArray


class CNF(Module):
    """The log-density ``log p(x)`` of a continuous normalizing flow, as a module.

    ``forward(θ, x)`` returns ``log p(x)`` of shape (batch,) for ``x`` of shape (batch, dim);
    ``vjp(θ, cache, ȳ)`` differentiates it by the chosen adjoint, so that ``-mean(log p)`` is
    trained with any optimizer of :mod:`symode.nn`.

    Parameters
    ----------
    net : Module
        The dynamics ``f(θ, z, t)``; ``θ`` of the flow is ``θ`` of the net (see
        :func:`concat_squash_mlp`).
    t0, t1 : float
        Data lives at ``t0``, the standard normal base density at ``t1``.
    train_t1 : bool
        Learn the length of the flow, as FFJORD does: ``θ`` then starts with the parameter
        ``sqrt_t1`` ``s``, ``t1 = t0 + s²`` (initially the given ``t1``), and ``vjp`` returns
        ``s̄ = 2s dL/dt1`` from the pullback's time gradient. Needs ``t1 > t0``.
    trace : {"exact", "hutchinson"}
        See the module docstring: ``"exact"`` costs ``dim`` products per evaluation,
        ``"hutchinson"`` one, at the price of noise in ``log p`` and its gradient.
    noise : {"rademacher", "gaussian"}
        Law of the Hutchinson probe, drawn per sample once per solve.
    method, rtol, atol, adjoint, seminorm, step_size, n_steps, max_steps
        As for :func:`symode.solve_vjp` (FFJORD's defaults: dopri5, rtol = atol = 1e-5).
    error_norm : {"batch", "trajectory"}
        ``"batch"`` (default, as in FFJORD's code): the minibatch is one state.
    seed : int or numpy Generator, optional
        Source of the Hutchinson probes.
    kinetic, jacobian : float
        Weights ``λ_K``, ``λ_J`` of the regularizers of Finlay et al. (2020), "How to train your
        neural ODE": ``K = ∫ ‖f‖² dt`` and ``F = ∫ ‖∂f/∂z‖²_F dt`` along each trajectory
        (see :class:`CNFDynamics`). When either is positive, ``forward`` returns the
        regularized objective ``log p(x) - λ_K K - λ_J F`` (and ``vjp`` its gradient): flows
        with straighter, smoother paths, which the solver crosses in fewer steps.
        :meth:`log_prob` stays the plain log-density.

    Attributes
    ----------
    nfe_forward, nfe_backward : int
        Function evaluations of the last forward and backward pass.
    last_terms : dict
        ``log_p``, ``kinetic`` and ``jacobian`` (each (batch,)) of the last ``forward`` (the
        last two only when regularizing).

    Examples
    --------
    >>> flow = CNF(concat_squash_mlp(2, (32, 32)), t1=0.5)              # doctest: +SKIP
    >>> theta = flow.init(np.random.default_rng(0))      # the net's θ   # doctest: +SKIP
    >>> logp, cache = flow.forward(theta, x)                           # doctest: +SKIP
    >>> x_bar, theta_bar = flow.vjp(theta, cache, -np.ones(len(x)) / len(x))  # doctest: +SKIP
    """

    def __init__(self, net: Module, t0: float = 0.0, t1: float = 1.0, train_t1: bool = False,
                 trace: str = "exact",
                 noise: str = "rademacher", method: str = "dopri5", rtol: float = 1e-5,
                 atol: float = 1e-5, adjoint: str = "backsolve", seminorm: bool = False,
                 error_norm: str = "batch", step_size=None, n_steps=None,
                 max_steps: int = 10_000, seed=None, kinetic: float = 0.0,
                 jacobian: float = 0.0):
        if not isinstance(net, Module):
            raise TypeError(f"CNF needs a symode.nn Module as its dynamics, got "
                            f"{type(net).__name__}")
        if trace not in TRACES:
            raise SymodeError(f"trace must be one of {TRACES}, got {trace!r}")
        if noise not in NOISES:
            raise SymodeError(f"noise must be one of {NOISES}, got {noise!r}")
        if not float(t1) != float(t0):
            raise SymodeError(f"the flow needs t1 != t0, got t0 = t1 = {t0}")
        self.net = net
        self.children = (net,)
        if train_t1 and not float(t1) > float(t0):
            raise SymodeError(f"a trained flow length needs t1 > t0, got t0 = {t0}, t1 = {t1}")
        self.t0, self.t1 = float(t0), float(t1)
        self.train_t1 = bool(train_t1)
        self.trace, self.noise = trace, noise
        self.rng = np.random.default_rng(seed)
        self.options = dict(method=method, rtol=rtol, atol=atol, step_size=step_size,
                            n_steps=n_steps, max_steps=max_steps, error_norm=error_norm)
        self.adjoint, self.seminorm = adjoint, seminorm
        for name, weight in (("kinetic", kinetic), ("jacobian", jacobian)):
            if not (math.isfinite(weight) and weight >= 0):
                raise SymodeError(f"the {name} weight must be a number >= 0, got {weight!r}")
        self.weights = (float(kinetic), float(jacobian))
        self.nfe_forward = self.nfe_backward = 0
        self.last_terms: dict = {}

    # -- parameters ----------------------------------------------------------------------------
    def param_shapes(self):
        return {"sqrt_t1": ()} if self.train_t1 else {}

    def init_params(self, rng):
        return {"sqrt_t1": np.sqrt(self.t1 - self.t0)} if self.train_t1 else {}

    def _split(self, theta):
        """``(t1, θ of the net)``: the end time, learned or fixed, and the net's parameters."""
        theta = asarray(theta)
        if theta.shape != (self.n_params,):
            raise ShapeError(f"{self!r}: expected θ of shape ({self.n_params},), got "
                             f"{theta.shape}")
        net_theta = self.child_thetas(theta)[0]
        if not self.train_t1:
            return self.t1, net_theta
        return self.t0 + float(theta[0]) ** 2, net_theta

    # -- pieces --------------------------------------------------------------------------------
    @property
    def regularized(self) -> bool:
        return any(w > 0 for w in self.weights)

    def dynamics(self, eps: NDArray | None = None, regularize: bool = False) -> CNFDynamics:
        """The augmented dynamics, with the Hutchinson probe ``eps`` where it needs one."""
        return CNFDynamics(self.net, self.trace, eps, regularize)

    def draw_eps(self, shape: tuple[int, int], like=None, rng=None) -> NDArray | None:
        """A Hutchinson probe of ``shape`` from ``rng`` (default :attr:`rng`); None for the
        exact trace."""
        if self.trace == "exact":
            return None
        rng = self.rng if rng is None else rng
        eps = (rng.standard_normal(shape) if self.noise == "gaussian"
               else rng.choice([-1.0, 1.0], size=shape))
        return eps if like is None else array_module(like).asarray(eps, dtype=like.dtype)

    def _start(self, x, eps, extra=1):
        """The initial augmented state ``[x, 0 …]`` with ``extra`` zero columns, and the
        probe."""
        x = asarray(x)
        if x.ndim != 2:
            raise ShapeError(f"{self!r}: expected x of shape (batch, dim), got {x.shape}")
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float64)
        if eps is None:
            eps = self.draw_eps(x.shape, x)
        elif self.trace == "hutchinson":
            eps = asarray(eps)
            if eps.shape != x.shape:
                raise ShapeError(f"{self!r}: eps must have the shape of x {x.shape}, got "
                                 f"{eps.shape}")
        xp = array_module(x)
        return xp.concatenate([x, xp.zeros((x.shape[0], extra), dtype=x.dtype)], axis=1), eps

    # -- the module ----------------------------------------------------------------------------
    def forward(self, theta, x, t=0.0, eps=None):
        """``(log p(x), cache)``, or ``(log p(x) - λ_K K - λ_J F, cache)`` when regularizing;
        ``t`` is unused (the flow has its own interval)."""
        t1, net_theta = self._split(theta)
        extra = 3 if self.regularized else 1
        s0, eps = self._start(x, eps, extra)
        sol, pullback = solve_vjp(self.dynamics(eps, self.regularized), s0, [self.t0, t1],
                                  params=net_theta, adjoint=self.adjoint, seminorm=self.seminorm,
                                  **self.options)
        self.nfe_forward = int(sol.stats.nfev[0])
        end = sol.y[-1]
        z = end[:, :-extra]
        log_p = normal_log_prob(z) - end[:, -extra]
        self.last_terms = {"log_p": log_p}
        y = log_p
        if self.regularized:
            kinetic, jacobian = end[:, -2], end[:, -1]
            self.last_terms.update(kinetic=kinetic, jacobian=jacobian)
            y = log_p - self.weights[0] * kinetic - self.weights[1] * jacobian
        return y, _FlowCache(pullback, sol.y.shape, z)

    def vjp(self, theta, cache, ybar):
        """``(x̄, θ̄)`` for ``ȳ`` = dL/dy of shape (batch,): the cotangent of the end state
        ``[z, Δ (, K, F)]`` is ``[-ȳ z(t1), -ȳ (, -λ_K ȳ, -λ_J ȳ)]``."""
        ybar = asarray(ybar)
        if ybar.shape != cache.z.shape[:1]:
            raise ShapeError(f"{self!r}: expected ȳ of shape {cache.z.shape[:1]}, got "
                             f"{ybar.shape}")
        xp = array_module(ybar)
        cot = xp.zeros(cache.shape, dtype=np.result_type(ybar.dtype, cache.z.dtype))
        D = cache.z.shape[1]
        cot[-1, :, :D] = -ybar[:, None] * cache.z
        cot[-1, :, D] = -ybar
        if self.regularized:
            cot[-1, :, D + 1] = -self.weights[0] * ybar
            cot[-1, :, D + 2] = -self.weights[1] * ybar
        g = cache.pullback(cot)
        self.nfe_backward = int(g.stats.nfev[0])
        theta_bar = array_module(g.params).asarray(g.params)
        if self.train_t1:
            sqrt_t1 = asarray(theta)[:1]
            theta_bar = xp.concatenate([2 * sqrt_t1 * g.t[-1], theta_bar])
        return g.y0[:, :D], theta_bar

    # -- without gradients ---------------------------------------------------------------------
    def log_prob(self, theta, x, eps=None) -> NDArray:
        """``log p(x)``, shape (batch,), by one forward solve (no pullback kept)."""
        z, delta = self.transform(theta, x, eps)
        return normal_log_prob(z) - delta

    def transform(self, theta, x, eps=None) -> tuple[NDArray, NDArray]:
        """``(z(t1), Δ(t1))`` for data ``x`` (batch, dim): ``log p(x) = log N(z) - Δ``."""
        t1, net_theta = self._split(theta)
        s0, eps = self._start(x, eps)
        sol = solve(self.dynamics(eps), s0, [self.t0, t1], params=net_theta, **self.options)
        self.nfe_forward = int(sol.stats.nfev[0])
        return sol.y[-1][:, :-1], sol.y[-1][:, -1]

    def sample(self, theta, n: int, rng=None, z=None) -> tuple[NDArray, NDArray]:
        """``n`` samples and their log-density: ``z ~ N(0, I)`` carried from ``t1`` back to
        ``t0``.

        Integrating ``Δ`` backwards from ``Δ(t1) = 0`` gives ``log p(x) = log N(z) + Δ(t0)``.

        Parameters
        ----------
        n : int
        rng : int or numpy Generator, optional
        z : ndarray, shape (n, dim), optional
            Base points to carry instead of fresh draws.

        Returns
        -------
        x : ndarray, shape (n, dim)
        log_p : ndarray, shape (n,)
        """
        if z is None:
            dim = _data_dim(self.net)
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise ShapeError(f"n must be a positive integer, got {n!r}")
            z = np.random.default_rng(rng).standard_normal((int(n), dim))
        t1, net_theta = self._split(theta)
        s1, eps = self._start(z, None)
        sol = solve(self.dynamics(eps), s1, [t1, self.t0], params=net_theta, **self.options)
        x, delta = sol.y[-1][:, :-1], sol.y[-1][:, -1]
        return x, normal_log_prob(asarray(z)) + delta

    def __repr__(self) -> str:
        end = f"{self.t1} (trained)" if self.train_t1 else f"{self.t1}"
        return (f"CNF({self.net!r}, t=[{self.t0}, {end}], trace={self.trace!r}, "
                f"method={self.options['method']!r}, adjoint={self.adjoint!r})")


def _data_dim(net: Module) -> int:
    """The data dimension of a net whose first layer says it (a dense layer's ``in_features``,
    or an ``Unflatten``'s)."""
    first = net
    while first.children and not hasattr(first, "in_features"):
        first = first.children[0]
    dim = getattr(first, "in_features", None)
    if dim is None:
        raise SymodeError(f"cannot tell the data dimension of {net!r}; pass z of shape (n, dim)")
    return int(dim)
