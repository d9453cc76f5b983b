"""The latent ODE of the Neural ODE paper (Chen et al. 2018, section 5), a variational
auto-encoder for irregularly sampled time series.

Generative model. A latent initial state ``z0 ~ N(0, I)`` of dimension ``L`` flows by learned
dynamics, and each observation is a noisy read-out of the latent state at its time:

    dz/dt = f(z; θ_f),    z(τ_k) = ODESolve(f, z0, 0, τ_k),    x_k ~ N(g(z(τ_k); θ_g), σ² I).

Inference. A recognition RNN reads the observations from the last to the first,

    h ← tanh(W [x_k, Δ_k, h] + c),    Δ_k = τ_k - τ_{k-1}  (τ_{-1} = 0),

and maps its final state to the mean and log-variance of ``q(z0 | x) = N(μ, diag e^v)``.

Loss. The negative evidence lower bound of each sequence, averaged over the batch,

    -ELBO = -E_q[log p(x | z0)] + KL(q(z0 | x) ‖ N(0, I))
          = Σ_{k,j} ½ (log 2π + log σ² + (x_kj - x̂_kj)² / σ²)
            + Σ_l ½ (e^{v_l} + μ_l² - 1 - v_l),

with the expectation estimated by one reparametrized sample ``z0 = μ + e^{v/2} ⊙ ε``,
``ε ~ N(0, I)``, so that the gradient flows through ``μ`` and ``v``:

    μ̄ = z̄0 + ∂KL/∂μ,    v̄ = ½ z̄0 ⊙ ε ⊙ e^{v/2} + ∂KL/∂v.

``z̄0`` and the dynamics' ``θ̄_f`` come from the pullback of the solve (:func:`symode.solve_vjp`),
whose cotangent is the decoder's ``x̄ → z̄`` at every observed time; ``θ̄`` of the encoder comes
from back-propagation through time. All parameters are one flat ``θ``: the encoder's, then the
dynamics', then the decoder's (``model.named_views(θ)`` names them).

A batch shares one time grid: the union of its observation times (and ``0``), solved once for
the whole batch; each sequence reads its own times off it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import ShapeError, SymodeError, TimeGridError
from ..gradients import solve_vjp
from ..gradients.pullback import ADJOINTS
from ..nn.activations import ELU, ReLU, Tanh
from ..nn.layers import Linear
from ..nn.losses import gaussian_nll, kl_diag_gaussians
from ..nn.module import Module, Sequential
from ..nn.ode_block import NetworkDynamics
from ..solvers.controllers import PIController
from ..solvers.solve import solve

__all__ = ["RecognitionRNN", "LatentODE", "ELBOResult"]


class RecognitionRNN(Module):
    """An Elman RNN over a sequence, read backwards, followed by a linear output layer.

    For ``x`` of shape ``(batch, T, in_features)``, from ``h_T = 0``:

        h_k = tanh(W [x_k, h_{k+1}] + c),  k = T-1, …, 0;    y = U h_0 + d,

    (with ``backwards=False`` the loop runs ``k = 0, …, T-1`` from ``h_{-1} = 0`` and ``y``
    reads the last state). ``vjp`` is back-propagation through time, in the reverse order of
    the forward loop.

    Parameters, in ``θ`` order: the cell ``Linear(in_features + hidden, hidden)`` (with its
    ``Tanh``), then the head ``Linear(hidden, out_features)``.

    Parameters
    ----------
    in_features, hidden, out_features : int
    backwards : bool
        Read the sequence from its end (default), as the latent ODE's encoder does.
    """

    def __init__(self, in_features: int, hidden: int, out_features: int,
                 backwards: bool = True):
        self.cell = Sequential(Linear(in_features + hidden, hidden), Tanh())
        self.head = Linear(hidden, out_features)
        self.children = (self.cell, self.head)
        self.in_features, self.hidden, self.out_features = in_features, hidden, out_features
        self.backwards = bool(backwards)

    def _order(self, steps: int) -> range:
        return range(steps - 1, -1, -1) if self.backwards else range(steps)

    def forward(self, theta, x, t=0.0):
        """``y`` of shape (batch, out_features) and the cache: the inputs and the states.

        The input part of every step's product, ``x_k W_xᵀ + c``, is one matrix product over
        the whole sequence; the loop adds ``h W_hᵀ`` and the tanh.
        """
        theta, x = np.asarray(theta), np.asarray(x)
        if theta.shape != (self.n_params,):
            raise ShapeError(f"{self!r}: expected θ of shape ({self.n_params},), got "
                             f"{theta.shape}")
        if x.ndim != 3 or x.shape[2] != self.in_features or x.shape[1] < 1:
            raise ShapeError(f"{self!r}: expected a sequence x of shape (batch, T, "
                             f"{self.in_features}) with T >= 1, got {x.shape}")
        th_cell, th_head = self.child_thetas(theta)
        w_x, w_h, c = self._cell_weights(th_cell)
        dtype = np.result_type(x.dtype, theta.dtype)
        inputs = x @ w_x.T + c                                   # (batch, T, hidden)
        order = self._order(x.shape[1])
        states = np.empty((x.shape[1] + 1, x.shape[0], self.hidden), dtype=dtype)
        states[0] = 0.0                                          # states[i + 1]: after step i
        for i, k in enumerate(order):
            states[i + 1] = np.tanh(inputs[:, k] + states[i] @ w_h.T)
        y, head_cache = self.head.forward(th_head, states[-1])
        return y, (x, states, head_cache)

    def vjp(self, theta, cache, ybar):
        """``(x̄, θ̄)`` by back-propagation through time; ``x̄`` has the shape of ``x``.

        With ``ā_k = h̄_k (1 - h_k²)``: ``h̄`` of the previous state ``ā_k W_h``,
        ``W̄_h = Σ ā_kᵀ h_prev``, and the input parts ``x̄ = Ā W_x``, ``W̄_x = Σ ā_kᵀ x_k``,
        ``c̄ = Σ ā_k`` over the whole sequence at once.
        """
        x, states, head_cache = cache
        th_cell, th_head = self.child_thetas(np.asarray(theta))
        w_x, w_h, _ = self._cell_weights(th_cell)
        hbar, head_bar = self.head.vjp(th_head, head_cache, np.asarray(ybar))
        order = list(self._order(x.shape[1]))
        abar = np.empty(x.shape[:2] + (self.hidden,), dtype=hbar.dtype)   # (batch, T, hidden)
        wh_bar = np.zeros_like(w_h, dtype=hbar.dtype)
        for i in range(len(order) - 1, -1, -1):
            a = hbar * (1.0 - states[i + 1] ** 2)
            abar[:, order[i]] = a
            wh_bar += a.T @ states[i]
            hbar = a @ w_h
        xbar = abar @ w_x
        flat = abar.reshape(-1, self.hidden)
        wx_bar = flat.T @ x.reshape(-1, self.in_features)
        cell_bar = np.concatenate([np.concatenate([wx_bar, wh_bar], axis=1).ravel(),
                                   flat.sum(axis=0)])
        return xbar, np.concatenate([cell_bar, head_bar])

    def _cell_weights(self, th_cell):
        """``(W_x, W_h, c)``: the cell's weight split at the input's width, and its bias."""
        v = self.cell.children[0].views(th_cell)
        return v["weight"][:, :self.in_features], v["weight"][:, self.in_features:], v["bias"]

    def __repr__(self) -> str:
        return (f"RecognitionRNN({self.in_features}, {self.hidden}, {self.out_features}, "
                f"backwards={self.backwards})")


class ELBOResult(NamedTuple):
    """What :meth:`LatentODE.loss_and_grad` returns.

    Attributes
    ----------
    loss : float
        ``-ELBO`` averaged over the batch (``nll + kl``).
    grad : ndarray, shape (n_params,)
        ``d loss / dθ``.
    nll : float
        ``-log p(x | z0)`` at the sampled ``z0``, averaged over the batch.
    kl : float
        ``KL(q(z0 | x) ‖ N(0, I))``, averaged over the batch.
    nfe_forward, nfe_backward : int
        Function evaluations of the latent solve and of its pullback.
    """

    loss: float
    grad: NDArray[np.float64]
    nll: float
    kl: float
    nfe_forward: int
    nfe_backward: int


class LatentODE(Module):
    """RNN encoder, ODE decoder and ELBO of the latent ODE (see the module docstring).

    The parts (sizes of the Neural ODE demo by default):

    * ``encoder``: :class:`RecognitionRNN` from ``obs_dim`` (+1 for ``Δ_k`` when
      ``time_input``) through ``rnn_hidden`` units to ``2 * latent_dim`` (``[μ, v]``);
    * ``dynamics``: ``Linear(L, hidden)-ELU-Linear(hidden, hidden)-ELU-Linear(hidden, L)``,
      solved as :class:`~symode.nn.NetworkDynamics`;
    * ``decoder``: ``Linear(L, decoder_hidden)-ReLU-Linear(decoder_hidden, obs_dim)``.

    Parameters
    ----------
    obs_dim, latent_dim, hidden, rnn_hidden, decoder_hidden : int
    obs_std : float
        Fixed standard deviation ``σ`` of the observation noise in ``p(x | z)``.
    time_input : bool
        Feed the encoder ``Δ_k`` next to ``x_k`` (needed for irregular times; the demo, with
        one regular grid, leaves it out).
    method, rtol, atol, adjoint, step_size, n_steps, max_steps, error_norm
        Options of the latent solve, as for :func:`symode.solve_vjp`, except that
        ``error_norm`` defaults to ``"batch"`` (the minibatch is one state, as in torchdiffeq).
        The default backsolve adjoint is the paper's; ``"discrete"`` is several times faster
        here, since the continuous adjoints restart their backward solve at every observed
        time of the batch. ``method="rk4"`` with ``n_steps`` and ``adjoint="discrete"`` makes
        the gradient exact for the discretisation.
    controller : PIController, optional
        Step-size control of the latent solve; by default the classical I controller
        (``PIController(beta=0)``), as :class:`~symode.nn.ODEBlock` and torchdiffeq use: on the
        spirals it takes 15 % fewer forward evaluations than the PI default of ``symode.solve``.

    ``θ`` is the encoder's parameters, then the dynamics', then the decoder's; ``named_views``
    names them ``"0.0.0.weight"`` (encoder cell), ``"1.2.bias"`` (dynamics), and so on. The model
    works on numpy float64 arrays.

    Examples
    --------
    >>> from symode.data.spirals import make_spirals
    >>> data = make_spirals(n_spirals=8, n_obs=20, window=40, rng=0)
    >>> model = LatentODE()
    >>> theta = model.init(np.random.default_rng(0))
    >>> out = model.loss_and_grad(theta, data.obs, data.times, np.random.default_rng(1))
    >>> out.grad.shape == theta.shape
    True
    """

    def __init__(self, obs_dim: int = 2, latent_dim: int = 4, hidden: int = 20,
                 rnn_hidden: int = 25, decoder_hidden: int = 20, obs_std: float = 0.1,
                 time_input: bool = True, method: str = "dopri5", rtol: float = 1e-5,
                 atol: float = 1e-7, adjoint: str = "backsolve", step_size: float | None = None,
                 n_steps: int | None = None, max_steps: int = 10_000,
                 error_norm: str = "batch", controller=None):
        if not (math.isfinite(obs_std) and obs_std > 0):
            raise SymodeError(f"LatentODE: obs_std must be a positive number, got {obs_std}")
        if adjoint not in ADJOINTS:
            raise SymodeError(f"LatentODE: adjoint must be one of {ADJOINTS}, got {adjoint!r}")
        self.obs_dim, self.latent_dim = obs_dim, latent_dim
        self.obs_std, self.time_input = float(obs_std), bool(time_input)
        self.encoder = RecognitionRNN(obs_dim + self.time_input, rnn_hidden, 2 * latent_dim)
        self.dynamics_net = Sequential(Linear(latent_dim, hidden), ELU(), Linear(hidden, hidden),
                                       ELU(), Linear(hidden, latent_dim))
        self.decoder = Sequential(Linear(latent_dim, decoder_hidden), ReLU(),
                                  Linear(decoder_hidden, obs_dim))
        self.children = (self.encoder, self.dynamics_net, self.decoder)
        self.dynamics = NetworkDynamics(self.dynamics_net)
        self.solver = dict(method=method, rtol=rtol, atol=atol, adjoint=adjoint,
                           step_size=step_size, n_steps=n_steps, max_steps=max_steps,
                           error_norm=error_norm,
                           controller=PIController(beta=0.0) if controller is None
                           else controller)

    def forward(self, theta, x, t=0.0):
        raise SymodeError("LatentODE has no single forward map: use loss_and_grad(θ, obs, "
                          "times, eps) to train, encode/decode/predict to use the model")

    # -- the parts -----------------------------------------------------------------------------
    def encode(self, theta: ArrayLike, obs: ArrayLike,
               times: ArrayLike) -> tuple[NDArray, NDArray, tuple]:
        """Mean and log-variance of ``q(z0 | x)``.

        Parameters
        ----------
        theta : ndarray, shape (n_params,)
        obs : ndarray, shape (batch, n_obs, obs_dim)
        times : ndarray, shape (batch, n_obs) or (n_obs,)
            Observation times from the latent state's time ``0``, strictly increasing, ``>= 0``.

        Returns
        -------
        mu, logvar : ndarray, shape (batch, latent_dim)
        cache
            For the encoder's ``vjp``.
        """
        theta = self._theta(theta)
        obs, times = self._check_data(obs, times)
        th_enc = self.child_thetas(theta)[0]
        out, cache = self.encoder.forward(th_enc, self._encoder_input(obs, times))
        return out[:, :self.latent_dim], out[:, self.latent_dim:], cache

    def decode(self, theta: ArrayLike, z0: ArrayLike, t: ArrayLike) -> tuple[NDArray, NDArray]:
        """Latent path and predicted observations from ``z0`` at the times ``t``.

        Parameters
        ----------
        theta : ndarray, shape (n_params,)
        z0 : ndarray, shape (batch, latent_dim)
            Latent states at time 0.
        t : ndarray, shape (T,)
            Strictly increasing times; negative ones are reached by solving backwards from 0.

        Returns
        -------
        z : ndarray, shape (batch, T, latent_dim)
        x : ndarray, shape (batch, T, obs_dim)
        """
        theta = self._theta(theta)
        z0 = np.asarray(z0, dtype=np.float64)
        if z0.ndim != 2 or z0.shape[1] != self.latent_dim:
            raise ShapeError(f"LatentODE.decode: expected z0 of shape (batch, "
                             f"{self.latent_dim}), got {z0.shape}")
        t = np.asarray(t, dtype=np.float64)
        if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
            raise TimeGridError(f"LatentODE.decode: t must be a non-empty, finite, strictly "
                                f"increasing array of shape (T,), got shape {t.shape}")
        _, th_dyn, th_dec = self.child_thetas(theta)
        z = np.concatenate([self._latent_path(z0, t[t < 0][::-1], th_dyn)[::-1],
                            self._latent_path(z0, t[t >= 0], th_dyn)])   # (T, batch, L)
        z = z.transpose(1, 0, 2)
        x = self.decoder(th_dec, z.reshape(-1, self.latent_dim))
        return z, x.reshape(z.shape[0], z.shape[1], self.obs_dim)

    def predict(self, theta: ArrayLike, obs: ArrayLike, times: ArrayLike, t: ArrayLike,
                eps: np.random.Generator | ArrayLike | None = None) -> NDArray:
        """Encode the observations and decode at the times ``t``: reconstruction where ``t``
        lies among the observed times, extrapolation beyond them.

        Parameters
        ----------
        theta, obs, times
            As for :meth:`encode`.
        t : ndarray, shape (T,)
            Strictly increasing output times (from the latent state's time 0; may be negative).
        eps : Generator, ndarray of shape (batch, latent_dim), or None
            ``None`` decodes the posterior mean ``z0 = μ``; otherwise ``z0 = μ + e^{v/2} ε``.

        Returns
        -------
        x : ndarray, shape (batch, T, obs_dim)
        """
        mu, logvar, _ = self.encode(theta, obs, times)
        z0 = mu if eps is None else mu + np.exp(0.5 * logvar) * self._noise(eps, mu.shape)
        return self.decode(theta, z0, t)[1]

    # -- the loss ------------------------------------------------------------------------------
    def loss_and_grad(self, theta: ArrayLike, obs: ArrayLike, times: ArrayLike,
                      eps: np.random.Generator | ArrayLike) -> ELBOResult:
        """The negative ELBO averaged over the batch, and its gradient with respect to ``θ``.

        Parameters
        ----------
        theta : ndarray, shape (n_params,)
        obs : ndarray, shape (batch, n_obs, obs_dim)
        times : ndarray, shape (batch, n_obs) or (n_obs,)
            Observation times from the latent state's time 0 (strictly increasing, ``>= 0``).
        eps : Generator or ndarray, shape (batch, latent_dim)
            The reparametrization noise ``ε``, or a generator to draw it from.

        Returns
        -------
        ELBOResult
            ``loss``, ``grad`` (shape (n_params,)), the two terms and the solver's work.
        """
        return self._elbo(theta, obs, times, eps, grad=True)

    def loss(self, theta: ArrayLike, obs: ArrayLike, times: ArrayLike,
             eps: np.random.Generator | ArrayLike) -> float:
        """The negative ELBO alone, by a plain solve (no pullback); for the same ``ε`` it is
        the ``loss`` of :meth:`loss_and_grad`."""
        return self._elbo(theta, obs, times, eps, grad=False).loss

    def _elbo(self, theta, obs, times, eps, grad: bool) -> ELBOResult:
        """The negative ELBO, and with ``grad`` its gradient (else ``grad`` is None)."""
        theta = self._theta(theta)
        obs, times = self._check_data(obs, times)
        batch, n_obs = times.shape
        L = self.latent_dim
        th_enc, th_dyn, th_dec = self.child_thetas(theta)
        out, enc_cache = self.encoder.forward(th_enc, self._encoder_input(obs, times))
        mu, logvar = out[:, :L], out[:, L:]
        eps = self._noise(eps, mu.shape)
        std = np.exp(0.5 * logvar)
        grid, pos = _union_grid(times)
        if grad:
            sol, pullback = solve_vjp(self.dynamics, mu + std * eps, grid, params=th_dyn,
                                      **self.solver)
        else:
            sol = solve(self.dynamics, mu + std * eps, grid, params=th_dyn,
                        **self._forward_options)
        rows = np.arange(batch)[:, None]
        z_obs = sol.y[pos, rows]                                       # (batch, n_obs, L)
        x_hat, dec_cache = self.decoder.forward(th_dec, z_obs.reshape(-1, L))
        nll, (dx_hat, _) = gaussian_nll(obs, x_hat.reshape(obs.shape),
                                        2.0 * math.log(self.obs_std))
        kl, (dmu, dlogvar, _, _) = kl_diag_gaussians(mu, logvar)
        if not grad:
            return ELBOResult(nll + kl, None, nll, kl, int(sol.stats.nfev[0]), 0)
        z_bar, dec_bar = self.decoder.vjp(th_dec, dec_cache, dx_hat.reshape(-1, self.obs_dim))
        cot = np.zeros_like(sol.y)                                     # (T, batch, L)
        np.add.at(cot, (pos, rows), z_bar.reshape(batch, n_obs, L))
        g = pullback(cot)
        z0_bar = np.asarray(g.y0)
        out_bar = np.concatenate([z0_bar + dmu, 0.5 * z0_bar * eps * std + dlogvar], axis=1)
        enc_bar = self.encoder.vjp(th_enc, enc_cache, out_bar)[1]
        grad = np.concatenate([enc_bar, np.asarray(g.params, dtype=theta.dtype), dec_bar])
        return ELBOResult(nll + kl, grad, nll, kl, int(sol.stats.nfev[0]),
                          int(g.stats.nfev[0]))

    # -- helpers -------------------------------------------------------------------------------
    @property
    def _forward_options(self) -> dict:
        """The solver options less the adjoint, for solves that need no gradient."""
        return {k: v for k, v in self.solver.items() if k != "adjoint"}

    def _latent_path(self, z0: NDArray, t: NDArray, th_dyn: NDArray) -> NDArray:
        """``z`` at the times ``t`` (all ``>= 0`` increasing, or all ``< 0`` decreasing), shape
        (len(t), batch, L), by one solve from time 0."""
        if t.size == 0:
            return np.zeros((0,) + z0.shape)
        skip = t[0] == 0.0
        grid = t if skip else np.concatenate([[0.0], t])
        y = solve(self.dynamics, z0, grid, params=th_dyn, **self._forward_options).y
        return y if skip else y[1:]

    def _encoder_input(self, obs: NDArray, times: NDArray) -> NDArray:
        """``[x_k, Δ_k]`` (or ``x_k``), shape (batch, n_obs, obs_dim (+1))."""
        if not self.time_input:
            return obs
        gaps = np.diff(times, axis=1, prepend=0.0)
        return np.concatenate([obs, gaps[..., None]], axis=2)

    def _theta(self, theta: ArrayLike) -> NDArray:
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.n_params,):
            raise ShapeError(f"LatentODE: expected θ of shape ({self.n_params},), got "
                             f"{theta.shape}; make one with model.init(rng)")
        return theta

    def _check_data(self, obs: ArrayLike, times: ArrayLike) -> tuple[NDArray, NDArray]:
        obs = np.asarray(obs, dtype=np.float64)
        if obs.ndim != 3 or obs.shape[2] != self.obs_dim or 0 in obs.shape:
            raise ShapeError(f"LatentODE: expected obs of shape (batch, n_obs, {self.obs_dim}) "
                             f"with batch, n_obs >= 1, got {obs.shape}")
        times = np.asarray(times, dtype=np.float64)
        if times.ndim == 1:
            times = np.broadcast_to(times, obs.shape[:2])
        if times.shape != obs.shape[:2]:
            raise ShapeError(f"LatentODE: expected times of shape {obs.shape[:2]} (one per "
                             f"observation) or ({obs.shape[1]},) (shared), got {times.shape}")
        if not np.all(np.isfinite(obs)) or not np.all(np.isfinite(times)):
            raise SymodeError("LatentODE: obs and times must be finite (no NaN or inf)")
        bad = np.flatnonzero((times[:, 0] < 0) | np.any(np.diff(times, axis=1) <= 0, axis=1))
        if bad.size:
            raise TimeGridError(f"LatentODE: the times of sequence {bad[0]} must be >= 0 and "
                                f"strictly increasing, got {times[bad[0]]}")
        return obs, times

    def _noise(self, eps, shape: tuple[int, int]) -> NDArray:
        if isinstance(eps, np.random.Generator):
            return eps.standard_normal(shape)
        eps = np.asarray(eps, dtype=np.float64)
        if eps.shape != shape:
            raise ShapeError(f"LatentODE: expected ε of shape {shape} (batch, latent_dim), got "
                             f"{eps.shape}; or pass a numpy Generator to draw it")
        return eps

    def __repr__(self) -> str:
        return (f"LatentODE(obs_dim={self.obs_dim}, latent_dim={self.latent_dim}, "
                f"encoder={self.encoder!r}, obs_std={self.obs_std:g}, "
                f"method={self.solver['method']!r}, adjoint={self.solver['adjoint']!r})")


def _union_grid(times: NDArray) -> tuple[NDArray, NDArray]:
    """The sorted union of ``0`` and all observation times, shape (T,), and the position of
    each observation in it, shape (batch, n_obs)."""
    grid, inverse = np.unique(np.concatenate([[0.0], times.ravel()]), return_inverse=True)
    return grid, inverse[1:].reshape(times.shape)
