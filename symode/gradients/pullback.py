"""``solve_vjp``: a solve together with its pullback, the reverse-mode gradient of the solve.

Given dL/dy at the saved times, the pullback returns dL/dy0, dL/dθ and dL/dt_i for every saved
time, by one of three adjoints:

========== ============================================== ======================== ==========
adjoint    how                                            memory                   exact for
========== ============================================== ======================== ==========
backsolve  continuous adjoint, z re-integrated backwards  O(1) in steps            the ODE
checkpoint continuous adjoint, z reset at every step      O(steps) states          the ODE
discrete   reverse through the solver's stages            O(steps) states          the solver
========== ============================================== ======================== ==========

For the continuous adjoints the time gradients are dL/dt_i = dL/dy_i · f(t_i, y_i) for the
saved times after the first, and dL/dt_0 = -a(t_0⁺) · f(t_0, y_0), a(t_0⁺) being the adjoint
just after t_0 (the identity d/dt (a·f) = a·∂f/∂t makes the paper's a_t equation unnecessary).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from numpy.typing import ArrayLike

from ..backend import array_module
from ..dynamics import SymbolicDynamics, as_dynamics
from ..errors import MissingVJPError, ShapeError, SymodeError, TimeGridError
from ..solvers.solution import Solution, Stats
from ..solvers.cuda_engine import is_device_array, to_host
from ..solvers.rosenbrock_tableaus import RosenbrockTableau
from ..solvers.solve import prepare, run, to_gpu
from .backsolve import backsolve_arrays, backsolve_kernel
from .checkpoint import checkpoint_arrays, checkpoint_kernel
from .discrete import discrete_arrays
from .discrete_kernel import discrete_kernel
from .rosenbrock_adjoint import rosenbrock_adjoint

__all__ = ["solve_vjp", "Gradients", "ADJOINTS"]

ADJOINTS = ("backsolve", "checkpoint", "discrete")
#: Steps per trajectory the kernel engine keeps on a first try (it retries with the exact need).
FIRST_RECORD = 256


@dataclass(frozen=True)
class Gradients:
    """What a pullback returns.

    Attributes
    ----------
    y0 : ndarray, shape of ``y0``
        dL/dy0.
    params : ndarray or None, shape of ``params``
        dL/dθ (summed over the batch when the parameters were shared).
    t : ndarray, shape of ``t``
        dL/dt_i for every saved time, the first included.
    stats : Stats
        Work of the backward pass (function evaluations count VJPs too).
    """

    y0: np.ndarray
    params: np.ndarray | None
    t: np.ndarray
    stats: Stats


def solve_vjp(system: Any, y0: ArrayLike, t: ArrayLike, params: ArrayLike | None = None, *,
              method="dopri5", adjoint: str | None = None, rtol=1e-6, atol=1e-8,
              adjoint_rtol=None, adjoint_atol=None, seminorm: bool = False,
              step_size=None, n_steps=None, first_step=None, max_steps: int = 10_000,
              engine: str = "auto", device: str = "cpu", error_norm: str = "trajectory",
              controller=None) -> tuple[Solution, Callable[[ArrayLike], Gradients]]:
    """Solve like :func:`symode.solve` and return the solution with its pullback.

    Parameters
    ----------
    system, y0, t, params, method, rtol, atol, step_size, n_steps, first_step, max_steps, engine,
    error_norm, controller
        As for :func:`symode.solve` (the backward pass of the array engine always integrates
        the batch as one state; the controller steps the forward and array-engine backward
        solves).
    device : {"cpu", "cuda"}
        Where the forward and backward kernels run (symbolic systems; ``backsolve`` and
        ``checkpoint``). The cotangent may be a GPU array; gradients come back where ``y0``
        was given.
    adjoint : {"backsolve", "checkpoint", "discrete"}, optional
        Default ``"backsolve"``, and ``"discrete"`` for the stiff ``rodas4`` and ``rodas5p`` (the
        only one they take).
        ``backsolve`` re-integrates z backwards with the adjoint (O(1) memory; drifts on
        dissipative or chaotic systems); ``checkpoint`` resets z to the stored forward state at
        every forward step (accurate there, memory grows with steps); ``discrete`` is the exact
        gradient of the solver's own steps (memory grows with steps; no backward solve).
    adjoint_rtol, adjoint_atol : float, optional
        Tolerances of the backward solve (default: the forward ones).
    seminorm : bool
        Leave the parameter adjoint out of the backward error norm (fewer backward steps).

    Returns
    -------
    sol : Solution
    pullback : callable ``pullback(dL_dy) -> Gradients``
        ``dL_dy`` has the shape of ``sol.y``.
    """
    if adjoint is not None and adjoint not in ADJOINTS:
        raise SymodeError(f"adjoint must be one of {ADJOINTS}, got {adjoint!r}")
    dyn = as_dynamics(system)
    if not callable(getattr(dyn, "vjp", None)):
        raise MissingVJPError(
            f"{type(system).__name__} has no vjp(t, z, theta, a), which gradients need. Declare "
            f"the system as a symode.ODE (its VJP is derived), wrap a network as NetworkDynamics, "
            f"or pass FunctionDynamics(f, vjp=...).")
    prep = prepare(dyn, y0, t, params, method=method, rtol=rtol, atol=atol,
                   step_size=step_size, n_steps=n_steps, first_step=first_step,
                   max_steps=max_steps, engine=engine, device=device, error_norm=error_norm,
                   controller=controller)
    stiff = isinstance(prep.tab, RosenbrockTableau)
    adjoint = ("discrete" if stiff else "backsolve") if adjoint is None else adjoint
    if stiff and adjoint != "discrete":
        raise SymodeError(f"gradients of {prep.tab.name} solves take adjoint='discrete' (the "
                          f"exact gradient of its steps), got adjoint={adjoint!r}: a continuous "
                          f"adjoint would integrate a stiff system backwards")
    if not prep.use_kernel and np.ndim(prep.t_given) != 1:
        raise TimeGridError("gradients in the array engine need one time grid of shape (T,) "
                            "for the whole batch")
    shared = params is None or np.ndim(params) <= 1
    a_rtol = prep.rtol.max() if adjoint_rtol is None else float(adjoint_rtol)
    a_atol = prep.atol.max() if adjoint_atol is None else float(adjoint_atol)
    if not (a_rtol > 0 or a_atol > 0):
        raise SymodeError("adjoint_rtol and adjoint_atol cannot both be zero")
    recorded = _forward(prep, adjoint)
    y = recorded[0]
    sol = prep.solution(y, recorded[1])

    def pullback(dL_dy: ArrayLike) -> Gradients:
        xp = array_module(y)    # cupy where the array engine ran on the GPU
        if xp is np:
            cot = np.asarray(to_host(dL_dy) if is_device_array(dL_dy) else dL_dy, dtype=y.dtype)
        else:
            cot = xp.asarray(dL_dy, dtype=y.dtype)
        if cot.shape != sol.y.shape:
            raise ShapeError(f"dL_dy must have the shape of sol.y {sol.y.shape}, got {cot.shape}")
        if prep.single:
            cot = cot[:, None]
        if not bool(xp.isfinite(cot).all()):
            raise SymodeError("dL_dy contains NaN or inf")
        if prep.use_kernel:
            g = _pullback_kernel(prep, adjoint, recorded, cot, a_rtol, a_atol, seminorm)
        else:
            g = _pullback_arrays(prep, adjoint, recorded, cot, a_rtol, a_atol, seminorm)
        y0_bar, p_bar, t_bar, stats = g
        if isinstance(prep.dyn, SymbolicDynamics):
            p_bar = (p_bar.sum(axis=0) if shared else p_bar) if prep.dyn.n_params else (
                None if params is None else np.zeros(np.shape(params)))
        if np.ndim(prep.t_given) == 1 and t_bar.ndim == 2:
            t_bar = t_bar.sum(axis=0)
        y0_bar = y0_bar[0] if prep.single else y0_bar
        if prep.on_gpu:
            y0_bar, t_bar = to_gpu(y0_bar), to_gpu(t_bar)
            p_bar = None if p_bar is None else to_gpu(p_bar)
        return Gradients(y0=y0_bar, params=p_bar, t=t_bar, stats=stats)

    return sol, pullback


def _forward(prep, adjoint):
    """Forward solve, keeping what the adjoint needs. The array engine's is ``(y, stats,
    steps or None, h_next)``: the backward pass starts from the step the forward controller
    proposed at the end, not from a fresh guess."""
    if prep.use_kernel:
        if adjoint == "backsolve":
            return run(prep)
        out = run(prep, record=FIRST_RECORD)
        need = int(out[2][2].max())
        if need > FIRST_RECORD:
            out = run(prep, record=need)
        return out
    steps: list | None = None if adjoint == "backsolve" else []
    y, stats, h_next = run(prep, record=steps)
    return y, stats, steps, h_next


def _pullback_kernel(prep, adjoint, recorded, cot, rtol, atol, seminorm):
    dyn, y = prep.dyn, recorded[0]
    D = dyn.dim
    args = (prep.params, rtol, atol, prep.max_steps, seminorm, prep.h_fixed, prep.device)
    if isinstance(prep.tab, RosenbrockTableau):
        return rosenbrock_adjoint(dyn, prep.tab, prep.tgrid, prep.y0, prep.params, prep.h_fixed,
                                  cot, recorded[2], prep.device)
    if adjoint == "discrete":
        return discrete_kernel(dyn, prep.tab, prep.tgrid, prep.y0, prep.params, cot,
                               recorded[2], prep.device)
    if adjoint == "backsolve":
        final, stats = backsolve_kernel(dyn, prep.tab, prep.tgrid, y, cot, *args)
    else:
        final, stats = checkpoint_kernel(dyn, prep.tab, prep.tgrid, y, cot, recorded[2], *args)
    a0 = final[:, D:2 * D]
    p_bar = final[:, 2 * D:]
    # f at every saved point, each trajectory at its own times
    T, B = prep.tgrid.shape[1], prep.batch
    f_obs = dyn.f(prep.tgrid.T.ravel(), y.reshape(T * B, D),
                  np.repeat(prep.params[None], T, axis=0).reshape(T * B, -1)).reshape(T, B, D)
    t_bar = _time_gradients(cot, f_obs, a0).T          # (B, T)
    return a0, p_bar, t_bar, stats


def _pullback_arrays(prep, adjoint, recorded, cot, rtol, atol, seminorm):
    dyn, y, theta = prep.dyn, recorded[0], prep.params
    t = prep.tgrid[0]
    if adjoint == "discrete":
        y0_bar, p_bar, t_bar, stats = discrete_arrays(dyn, theta, prep.tab, t, y, cot,
                                                      recorded[2], not prep.tab.adaptive)
        return y0_bar, p_bar, t_bar, stats
    step = None if prep.h_fixed is None else float(np.min(prep.h_fixed))
    args = (rtol, atol, prep.max_steps, seminorm, step, prep.controller, recorded[3])
    if adjoint == "backsolve":
        a0, p_bar, stats = backsolve_arrays(dyn, theta, prep.tab, t, y, cot, *args)
    else:
        a0, p_bar, stats = checkpoint_arrays(dyn, theta, prep.tab, t, y, cot, recorded[2], *args)
    f_obs = array_module(y).stack([dyn.f(t[i], y[i], theta) for i in range(len(t))])
    t_bar = _time_gradients(cot, f_obs, a0).sum(axis=1)  # one grid for the batch
    return a0, p_bar, t_bar, stats


def _time_gradients(cot, f_obs, a0):
    """dL/dt_i = cot_i · f_i (i ≥ 1), dL/dt_0 = -(a(t0) - cot_0) · f_0; shape (T, batch)."""
    axes = tuple(range(2, cot.ndim))
    g = (cot * f_obs).sum(axis=axes)
    g[0] = -((a0 - cot[0]) * f_obs[0]).sum(axis=tuple(a - 1 for a in axes))
    return g
