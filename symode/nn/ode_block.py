"""Networks as ODE dynamics, and ODE solves as layers.

``NetworkDynamics(net)`` makes a module the right-hand side ``dz/dt = net(θ, z, t)``: ``f`` runs
the layers forward, ``vjp`` runs them backwards, so every solver and adjoint works with it.
``ODEBlock`` is the Neural ODE paper's layer: ``x ↦ z(t1)`` with ``z(t0) = x``; its ``vjp`` runs
the chosen adjoint.
"""

from __future__ import annotations

from ..backend import array_module
from ..gradients import solve_vjp
from ..solvers.controllers import PIController
from .fused import fuse
from .module import Module

__all__ = ["NetworkDynamics", "ODEBlock"]


class NetworkDynamics:
    """The Dynamics ``f(t, z, θ) = net.forward(θ, z, t)`` of a module.

    Parameters
    ----------
    net : Module
        Maps (batch, ...) to the same shape; may use the time (``ConcatLinear``, ...).
    compile : bool
        Run a chain of dense layers and activations as one generated numba function
        (:mod:`symode.nn.fused`; float64 numpy arrays only: other inputs, cupy arrays among
        them, take the layer-by-layer path). Networks it cannot compile always run layer by
        layer.

    Attributes
    ----------
    nfev : int
        Evaluations so far (``f`` and ``f_and_vjp`` each count one).
    fused : FusedDense or None
        The compiled network, when there is one.
    """

    def __init__(self, net: Module, compile: bool = True):
        if not isinstance(net, Module):
            raise TypeError(f"NetworkDynamics needs a symode.nn Module, got {type(net).__name__}")
        self.net = net
        self.fused = fuse(net) if compile else None
        self.nfev = 0

    def f(self, t, z, theta):
        self.nfev += 1
        if self.fused is not None and self.fused.accepts(theta, z):
            return self.fused.forward(theta, z, t)
        return self.net.forward(theta, z, float(t))[0]

    def vjp(self, t, z, theta, a):
        """(a·∂f/∂z, a·∂f/∂θ, a·∂f/∂t), one forward and one backward pass of the net."""
        _, a_z, a_theta, a_t = self.f_and_vjp(t, z, theta, a)
        return a_z, a_theta, a_t

    def f_and_vjp(self, t, z, theta, a):
        """``f`` and its VJP at one point, sharing the forward pass."""
        self.nfev += 1
        if self.fused is not None and self.fused.accepts(theta, z):
            return self.fused.forward_vjp(theta, z, t, a)
        y, cache = self.net.forward(theta, z, float(t))
        a_z, a_theta, a_t = self.net.vjp_t(theta, cache, a)
        return y, a_z, a_theta, a_t

    def __repr__(self) -> str:
        return f"NetworkDynamics({self.net!r})"


class ODEBlock(Module):
    """``y = z(t1)`` where ``dz/dt = net(θ, z, t)``, ``z(t0) = x``: a solve as a layer.

    Parameters
    ----------
    net : Module
        The dynamics; ``θ`` of the block is ``θ`` of the net.
    t0, t1 : float
    method, rtol, atol, step_size, n_steps, max_steps
        As for :func:`symode.solve`.
    adjoint : {"backsolve", "checkpoint", "discrete"}
        How ``vjp`` differentiates the solve (see :func:`symode.solve_vjp`).
    seminorm : bool
        Backward error control without the parameter adjoint.
    error_norm : {"batch", "trajectory"}
        ``"batch"`` (default, as in the Neural ODE paper's code): the minibatch is one state
        and its RMS error meets the tolerance; ``"trajectory"``: every example on its own.
    controller : PIController, optional
        Step-size control; the default is the classical I controller
        (``PIController(beta=0)``), which the paper's code used.

    Attributes
    ----------
    nfe_forward, nfe_backward : int
        Function evaluations of the last forward and backward pass (VJPs count as one each).
    """

    def __init__(self, net: Module, t0: float = 0.0, t1: float = 1.0, method: str = "dopri5",
                 rtol: float = 1e-3, atol: float = 1e-3, adjoint: str = "backsolve",
                 seminorm: bool = False, error_norm: str = "batch", controller=None,
                 step_size=None, n_steps=None, max_steps: int = 10_000):
        self.children = (net,)
        self.net = net
        self.dynamics = NetworkDynamics(net)
        self.t0, self.t1 = float(t0), float(t1)
        self.options = dict(method=method, rtol=rtol, atol=atol, adjoint=adjoint,
                            seminorm=seminorm, error_norm=error_norm,
                            controller=PIController(beta=0.0) if controller is None else controller,
                            step_size=step_size,
                            n_steps=n_steps, max_steps=max_steps)
        self.nfe_forward = self.nfe_backward = 0

    def forward(self, theta, x, t=0.0):
        sol, pullback = solve_vjp(self.dynamics, x, [self.t0, self.t1], params=theta,
                                  **self.options)
        self.nfe_forward = int(sol.stats.nfev[0])
        return sol.y[-1], (pullback, sol.y.shape)

    def vjp(self, theta, cache, ybar):
        pullback, shape = cache
        xp = array_module(ybar)
        cot = xp.zeros(shape, dtype=ybar.dtype)
        cot[-1] = ybar
        g = pullback(cot)
        self.nfe_backward = int(g.stats.nfev[0])
        return g.y0, array_module(theta).asarray(g.params, dtype=theta.dtype)

    def __repr__(self) -> str:
        o = self.options
        return (f"ODEBlock({self.net!r}, t=[{self.t0}, {self.t1}], method={o['method']!r}, "
                f"rtol={o['rtol']}, atol={o['atol']}, adjoint={o['adjoint']!r})")
