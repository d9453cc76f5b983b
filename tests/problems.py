"""Test problems, each with its exact solution or an independent reference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import sympy as sp
from scipy.integrate import solve_ivp
from scipy.linalg import expm

import symode as so


@dataclass
class Problem:
    name: str
    ode: so.ODE
    y0: np.ndarray            # (batch, dim)
    t: np.ndarray             # (T,)
    params: np.ndarray | None  # (P,) or (batch, P)
    exact: Callable | None = None  # exact(t: (T,)) -> (T, batch, dim)


def oscillating_growth(batch: int = 1) -> Problem:
    """dy/dt = y - e^(t/2) sin(5t)/2 + 5 e^(t/2) cos(5t), y(0) = 0; exact y = e^(t/2) sin 5t."""
    y, t = sp.symbols("y t")
    ode = so.ODE([y], [y - sp.exp(t / 2) * sp.sin(5 * t) / 2 + 5 * sp.exp(t / 2) * sp.cos(5 * t)])

    def exact(tt):
        y = np.exp(tt / 2) * np.sin(5 * tt)
        return np.broadcast_to(y[:, None, None], (len(tt), batch, 1))

    return Problem("oscillating_growth", ode, np.zeros((batch, 1)), np.linspace(0, 2, 5), None,
                   exact)


def linear_spiral(batch: int = 3, seed: int = 0) -> Problem:
    """dz/dt = A z, A = [[-0.1, -1], [1, -0.1]]; exact z(t) = expm(A t) z0."""
    x, y = sp.symbols("x y")
    a = np.array([[-0.1, -1.0], [1.0, -0.1]])
    ode = so.ODE([x, y], [-0.1 * x - y, x - 0.1 * y])
    y0 = np.random.default_rng(seed).normal(size=(batch, 2))

    def exact(tt):
        return np.stack([y0 @ expm(a * ti).T for ti in tt])

    return Problem("linear_spiral", ode, y0, np.linspace(0, 6, 13), None, exact)


def decay(batch: int = 4, seed: int = 1) -> Problem:
    """dx/dt = -k x with k per trajectory; exact x0 e^(-k t)."""
    x, k = sp.symbols("x k")
    ode = so.ODE([x], [-k * x], params=[k])
    rng = np.random.default_rng(seed)
    y0 = rng.uniform(0.5, 2.0, size=(batch, 1))
    ks = rng.uniform(0.2, 3.0, size=(batch, 1))

    def exact(tt):
        return (y0[None] * np.exp(-ks[None] * tt[:, None, None]))

    return Problem("decay", ode, y0, np.linspace(0, 3, 7), ks, exact)


def logistic(batch: int = 2) -> Problem:
    """dx/dt = r x (1 - x/K); exact K / (1 + (K/x0 - 1) e^(-r t))."""
    x, r, K = sp.symbols("x r K")
    ode = so.ODE([x], [r * x * (1 - x / K)], params=[r, K])
    y0 = np.linspace(0.1, 0.5, batch)[:, None]
    p = np.array([1.5, 10.0])

    def exact(tt):
        return p[1] / (1 + (p[1] / y0[None] - 1) * np.exp(-p[0] * tt[:, None, None]))

    return Problem("logistic", ode, y0, np.linspace(0, 8, 9), p, exact)


def lorenz(batch: int = 4, t1: float = 2.0, seed: int = 0) -> Problem:
    """The Lorenz system; reference by scipy DOP853 at rtol 1e-12 (see ``scipy_reference``)."""
    x, y, z, sigma, rho, beta = sp.symbols("x y z sigma rho beta")
    ode = so.ODE([x, y, z], [sigma * (y - x), x * (rho - z) - y, x * y - beta * z],
                 params=[sigma, rho, beta])
    y0 = np.random.default_rng(seed).normal([1, 1, 1], 0.1, size=(batch, 3))
    return Problem("lorenz", ode, y0, np.linspace(0, t1, 11), np.array([10.0, 28.0, 8 / 3]))


def forced_van_der_pol(batch: int = 3, seed: int = 2) -> Problem:
    """x'' - mu (1 - x^2) x' + x = A sin(omega t), as a first-order system (time-dependent)."""
    x, v, mu, A, w, t = sp.symbols("x v mu A omega t")
    ode = so.ODE([x, v], [v, mu * (1 - x**2) * v - x + A * sp.sin(w * t)], params=[mu, A, w])
    y0 = np.random.default_rng(seed).normal(size=(batch, 2))
    return Problem("forced_van_der_pol", ode, y0, np.linspace(0, 5, 11),
                   np.array([1.2, 0.5, 1.3]))


def robertson_ode() -> so.ODE:
    """Robertson's stiff chemical kinetics, rate constants k1, k2, k3 (classically 0.04, 3e7,
    1e4)."""
    y1, y2, y3, k1, k2, k3 = sp.symbols("y1 y2 y3 k1 k2 k3")
    return so.ODE([y1, y2, y3], [-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2 ** 2 - k3 * y2 * y3,
                                 k2 * y2 ** 2], params=[k1, k2, k3])


def hub_mechanism(D: int = 9) -> so.ODE:
    """A stiff, nonlinear mechanism in which one radical z0 reacts with every other species: an
    arrow-shaped Jacobian, whose Rosenbrock LU is the sparse one (hub last, no fill-in).
    Parameters k (the hub's rate), a (its source), d (its self-reaction)."""
    z = sp.symbols(f"z0:{D}")
    k, a, d = sp.symbols("k a d")
    rhs = [a - k * z[0] * sum(z[1:]) - d * z[0] ** 2] + [
        k * z[0] * (0.5 * i - z[i]) - sp.sin(z[i]) + 0.1 * i * z[i] ** 2 for i in range(1, D)]
    return so.ODE(list(z), rhs, params=[k, a, d])


def scipy_reference(p: Problem, t=None, y0=None, params=None) -> np.ndarray:
    """DOP853 at rtol 1e-12, atol 1e-14, trajectory by trajectory: (T, batch, dim)."""
    t = p.t if t is None else t
    y0 = p.y0 if y0 is None else y0
    params = p.params if params is None else params
    fun = sp.lambdify((p.ode.t, p.ode.states, p.ode.params), list(p.ode.rhs), "numpy")
    out = []
    for b in range(len(y0)):
        prm = () if params is None else (params[b] if np.ndim(params) == 2 else params)
        tb = t[b] if np.ndim(t) == 2 else t
        sol = solve_ivp(lambda tt, u: np.array(fun(tt, u, prm), dtype=float), (tb[0], tb[-1]),
                        y0[b], t_eval=tb, method="DOP853", rtol=1e-12, atol=1e-14)
        out.append(sol.y.T)
    return np.stack(out, axis=1)
