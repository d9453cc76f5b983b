"""``solve()``: check the inputs, pick an engine, run it, and turn failures into clear errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..backend import array_module, is_cupy
from ..dynamics import SymbolicDynamics, as_dynamics
from ..errors import (MaxStepsError, NonFiniteError, ShapeError, StepSizeUnderflowError,
                      SymodeError, TimeGridError)
from .array_engine import ERROR_NORMS, integrate_arrays
from .controllers import PIController
from .cuda_engine import (check_device, cuda_module, has_cupy, is_device_array, launch,
                          to_host)
from .kernel_engine import (MAX_STEPS, NON_FINITE, OK, UNDERFLOW, KernelSpec, compiled_kernel,
                            run_batch)
from .rosenbrock import compiled_rosenbrock
from .rosenbrock_tableaus import RosenbrockTableau
from .solution import Solution, Stats
from .tableaus import ButcherTableau, get_tableau

__all__ = ["solve", "source", "prepare", "run", "Prepared", "raise_for_status"]

ENGINES = ("auto", "kernel", "array")


def solve(system: Any, y0: ArrayLike, t: ArrayLike, params: ArrayLike | None = None, *,
          method: str | ButcherTableau = "dopri5", rtol: float | ArrayLike = 1e-6,
          atol: float | ArrayLike = 1e-8, step_size: float | None = None,
          n_steps: int | None = None, first_step: float | None = None,
          max_steps: int = 10_000, engine: str = "auto", device: str = "cpu",
          error_norm: str = "trajectory", controller: PIController | None = None) -> Solution:
    """Solve ``dy/dt = f(t, y, θ)`` for a batch of initial values, saving at the times ``t``.

    Parameters
    ----------
    system : ODE, Dynamics or callable ``f(t, y, params)``
        A symbolic :class:`~symode.ODE` runs in the compiled kernel engine; anything else in the
        array engine.
    y0 : array_like, shape (batch, dim) or (dim,)
    t : array_like, shape (T,) or (batch, T)
        Times to save at, strictly increasing or strictly decreasing (backwards in time); the
        first is the initial time. One grid for all, or one per trajectory.
    params : array_like, shape (P,) or (batch, P), optional
        Values of the system's parameters, shared or per trajectory.
    method : str or ButcherTableau
        ``"euler"``, ``"midpoint"``, ``"heun"``, ``"rk4"`` (fixed step: give ``step_size`` or
        ``n_steps``) or ``"bosh3"``, ``"dopri5"``, ``"tsit5"``, ``"dop853"`` (adaptive), or
        ``"rodas4"`` or ``"rodas5p"`` for stiff systems (Rosenbrock methods of order 4 and 5 with
        the derived Jacobian; a symbolic ODE, CPU or CUDA; adaptive, or fixed steps when
        ``step_size`` or ``n_steps`` is given).
    rtol, atol : float or array_like, shape (dim,)
        Tolerances of adaptive methods: a step is accepted when the RMS over components of
        ``err / (atol + rtol * max(|y_old|, |y_new|))`` is at most 1.
    step_size : float, optional
        Largest fixed step: the span is cut into ``ceil(span / step_size)`` equal steps
        (rodas4/rodas5p: each interval between saved times, so every saved time is a step's
        end).
    n_steps : int, optional
        Number of fixed steps from the first to the last time (instead of ``step_size``).
    first_step : float, optional
        Initial step of an adaptive method (default: Hairer's estimate).
    max_steps : int
        Attempted steps allowed per trajectory before :class:`MaxStepsError`.
    engine : {"auto", "kernel", "array"}
        ``"kernel"`` needs a symbolic ODE; ``"auto"`` picks it for one.
    device : {"cpu", "cuda"}
        Where the kernel engine runs: CPU threads, or one GPU thread per trajectory (needs the
        ``cuda`` extra and an NVIDIA GPU). Arrays given on the GPU (cupy) come back on the GPU.
        Other dynamics (networks) run the array engine where their state is: a cupy ``y0``
        (and cupy parameters) keeps the whole solve on the GPU, whatever ``device`` says.
    error_norm : {"trajectory", "batch"}
        ``"trajectory"``: every trajectory meets the tolerance on its own. ``"batch"``: the
        batch is one state and the RMS over all of it meets the tolerance, as in torchdiffeq
        (fewer steps for large batches such as images; array engine only).
    controller : PIController, optional
        Step-size control of adaptive methods (default ``PIController()``: Hairer's PI
        controller; ``PIController(beta=0)`` is the classical I controller of torchdiffeq).

    Returns
    -------
    Solution
        ``sol.y`` has shape (T, batch, dim) ((T, dim) for a single ``y0`` of shape (dim,)).
        Float32 input gives float32 output; a symbolic system is solved in float64, any other
        dynamics (a network) in the dtype of ``y0``.

    Raises
    ------
    ShapeError, TimeGridError, NonFiniteError, MaxStepsError, StepSizeUnderflowError
    """
    prep = prepare(system, y0, t, params, method=method, rtol=rtol, atol=atol,
                   step_size=step_size, n_steps=n_steps, first_step=first_step,
                   max_steps=max_steps, engine=engine, device=device, error_norm=error_norm,
                   controller=controller)
    # GPU input: the states stay there as cupy arrays (without cupy they are copied back)
    y, stats = run(prep, keep_on_gpu=prep.on_gpu and has_cupy())[:2]
    return prep.solution(y, stats)


@dataclass(frozen=True)
class Prepared:
    """Checked inputs of a solve, in the engines' layout (also used by the adjoints)."""

    dyn: Any
    tab: ButcherTableau
    y0: np.ndarray           # (batch, ...) float64
    single: bool             # y0 was one state: drop the batch axis on output
    out_dtype: Any
    tgrid: np.ndarray        # (batch, T)
    t_given: np.ndarray      # (T,) or (batch, T)
    params: Any              # (batch, P) for symbolic systems, as given otherwise
    rtol: np.ndarray
    atol: np.ndarray
    first_step: float | None
    h_fixed: np.ndarray | None
    max_steps: int
    use_kernel: bool
    device: str = "cpu"
    on_gpu: bool = False     # y0 was given as a GPU array: return GPU arrays
    error_norm: str = "trajectory"
    controller: PIController = PIController()

    @property
    def batch(self) -> int:
        return self.y0.shape[0]

    def solution(self, y, stats) -> Solution:
        y = y[:, 0] if self.single else y
        y = y.astype(self.out_dtype, copy=False)
        return Solution(t=self.t_given, y=to_gpu(y) if self.on_gpu else y, stats=stats,
                        method=self.tab.name, engine="kernel" if self.use_kernel else "array",
                        device=self.device)


def prepare(system, y0, t, params=None, *, method="dopri5", rtol=1e-6, atol=1e-8,
            step_size=None, n_steps=None, first_step=None, max_steps=10_000,
            engine="auto", device="cpu", error_norm="trajectory", controller=None) -> Prepared:
    """Check every input of :func:`solve` and put it in the engines' layout."""
    tab = get_tableau(method)
    dyn = as_dynamics(system)
    if engine not in ENGINES:
        raise SymodeError(f"engine must be one of {ENGINES}, got {engine!r}")
    if error_norm not in ERROR_NORMS:
        raise SymodeError(f"error_norm must be one of {ERROR_NORMS}, got {error_norm!r}")
    controller = PIController() if controller is None else controller
    if not isinstance(controller, PIController):
        raise SymodeError(f"controller must be a symode PIController, got "
                          f"{type(controller).__name__}")
    if error_norm == "batch":
        if engine == "kernel" or device == "cuda":
            raise SymodeError('error_norm="batch" steps the batch together in the array engine; '
                              'the kernel engine (and device="cuda") controls each trajectory')
        engine = "array"
    symbolic = isinstance(dyn, SymbolicDynamics)
    # the array engine follows a cupy state of a network (or other non-symbolic dynamics)
    arrays_on_gpu = is_cupy(y0) and not symbolic
    if arrays_on_gpu:
        device = "cuda"
    else:
        check_device(device)
    if device == "cuda" and not symbolic and not arrays_on_gpu:
        raise SymodeError(f"device='cuda' runs the kernel engine, which needs a symbolic "
                          f"symode.ODE; {type(system).__name__} runs on the GPU when y0 and "
                          f"its parameters are cupy arrays (symode.backend.to_device)")
    if device == "cuda" and engine == "array" and not arrays_on_gpu:
        raise SymodeError("device='cuda' runs the kernel engine; leave engine='auto'")
    if isinstance(tab, RosenbrockTableau):
        _check_stiff(tab, symbolic, engine, system)
    on_gpu = is_device_array(y0)
    checked = (_check_y0(y0, dyn) if arrays_on_gpu
               else _check_y0_gpu(y0, dyn) if on_gpu and device == "cuda" else None)
    if on_gpu:
        t = to_host(t) if is_device_array(t) else t
        if not arrays_on_gpu:   # a network's parameters stay with its state
            params = to_host(params) if is_device_array(params) else params
    if engine == "kernel" and not isinstance(dyn, SymbolicDynamics):
        raise SymodeError('engine="kernel" needs a symbolic symode.ODE; use engine="array" for '
                          f"{type(system).__name__}")
    use_kernel = isinstance(dyn, SymbolicDynamics) and engine != "array"
    if checked is None:   # on the host; also gives the precise error for bad GPU input
        checked = _check_y0(to_host(y0) if on_gpu else y0, dyn)
    y0_arr, single, out_dtype = checked
    batch = y0_arr.shape[0]
    tgrid, t_given = _check_times(t, batch)
    prm = _check_params(params, dyn, batch)
    rtol_a, atol_a = _check_tolerances(rtol, atol, y0_arr.shape[1:], tab)
    h_fixed = _check_steps(tab, step_size, n_steps, first_step, tgrid)
    if not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise SymodeError(f"max_steps must be a positive integer, got {max_steps!r}")
    if not use_kernel and not (tgrid[:, 0] == tgrid[0, 0]).all():
        raise TimeGridError('the array engine needs one initial time for the batch; solve a '
                            'symbolic ODE with engine="kernel" for per-trajectory start times')
    if not use_kernel and len(set(np.sign(tgrid[:, -1] - tgrid[:, 0])) - {0.0}) > 1:
        raise TimeGridError('the array engine steps the batch together, in one direction; '
                            'solve a symbolic ODE with engine="kernel" to go forwards and '
                            'backwards in one batch')
    return Prepared(dyn, tab, y0_arr, single, out_dtype, tgrid, t_given, prm, rtol_a, atol_a,
                    first_step, h_fixed, int(max_steps), use_kernel, device, on_gpu, error_norm,
                    controller)


def _check_stiff(tab, symbolic, engine, system) -> None:
    """A Rosenbrock method runs in the kernel engine, with a derived Jacobian."""
    if not symbolic:
        raise SymodeError(f"{tab.name} needs the exact Jacobian, which symode derives from a "
                          f"symbolic symode.ODE; {type(system).__name__} has none. Declare the "
                          f"system as an ODE, or use an explicit method (dopri5, ...)")
    if engine == "array":
        raise SymodeError(f"{tab.name} runs in the kernel engine, one trajectory at a time; "
                          f"leave engine='auto' (and error_norm='trajectory')")


def run(prep: Prepared, record: int | list | None = None, keep_on_gpu: bool = False):
    """Run the engine of a prepared solve; raise on failure. Returns ``(y, stats)`` and, with
    ``record``, what was recorded: the kernel engine keeps the first ``record`` accepted steps
    of each trajectory (``rec_t``, ``rec_y``, ``rec_n``); the array engine appends
    ``(t, h, t_new, y)`` of every accepted step to the ``record`` list, and returns
    ``(y, stats, h_next)``, with the step its controller proposes after the end."""
    p = prep
    if p.use_kernel:
        res = _run_kernel(p.dyn, p.tab, p.y0, p.tgrid, p.params, p.rtol, p.atol, p.first_step,
                          p.h_fixed, p.max_steps, record or 0, p.device, keep_on_gpu,
                          p.controller)
    else:
        res = _run_arrays(p.dyn, p.tab, p.y0, p.tgrid, p.params, p.rtol, p.atol, p.first_step,
                          p.h_fixed, p.max_steps, record, p.error_norm, p.controller)
    y, stats, status, fail = res[:4]
    raise_for_status(status, fail, p.tgrid, p.tab, p.rtol, p.atol, p.max_steps)
    return (y, stats) + tuple(res[4:])


def source(system: Any, what: str = "rhs", method: str | ButcherTableau = "dopri5") -> str:
    """The generated source code that runs for a symbolic system.

    Parameters
    ----------
    system : ODE
    what : {"rhs", "vjp", "kernel", "adjoint"}
        The right-hand side, its vector-Jacobian product, the whole compiled integrator for
        ``method``, or the backward (adjoint) integrator for ``method`` (for a stiff method, its
        discrete adjoint, with the derived second derivatives ``jac_vjp``).
    """
    dyn = as_dynamics(system)
    if not isinstance(dyn, SymbolicDynamics):
        raise SymodeError("only a symbolic symode.ODE has generated source")
    if what == "rhs":
        return dyn.rhs_source
    if what == "vjp":
        return dyn.vjp_source
    if what in ("kernel", "adjoint"):
        tab = get_tableau(method)
        if what == "kernel":
            module = (compiled_rosenbrock(dyn, tab) if isinstance(tab, RosenbrockTableau)
                      else compiled_kernel(dyn, tab))
        elif isinstance(tab, RosenbrockTableau):
            from ..gradients.rosenbrock_adjoint import adjoint_module

            module = adjoint_module(dyn, tab)
        else:
            from ..gradients.augmented import segments_module

            module = segments_module(dyn, tab, seminorm=False)
        with open(module.__file__) as fh:
            return fh.read()
    raise SymodeError(f"unknown source {what!r}; choose 'rhs', 'vjp', 'kernel' or 'adjoint'")


# -- input checks ------------------------------------------------------------------------------
def _check_y0(y0, dyn):
    xp = array_module(y0)      # a cupy state is checked, and kept, on the GPU
    arr = xp.asarray(y0)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ShapeError(f"y0 must be a numeric array, got dtype {arr.dtype}")
    out_dtype = np.float32 if arr.dtype == np.float32 else np.float64
    # symbolic systems compute in float64; other dynamics (networks) in the dtype they are given
    work = out_dtype if not isinstance(dyn, SymbolicDynamics) else np.float64
    arr = xp.asarray(arr, dtype=work)
    single = arr.ndim == 1
    if single:
        arr = arr[None, :]
    dim = getattr(dyn, "dim", None)
    if dim is not None and (arr.ndim != 2 or arr.shape[1] != dim):
        raise ShapeError(f"y0 must have shape (batch, {dim}) or ({dim},) for this system, got "
                         f"{np.shape(y0)}")
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise ShapeError(f"y0 must have shape (batch, dim) or (dim,), got {np.shape(y0)}")
    if not bool(xp.isfinite(arr).all()):
        bad = ~xp.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
        b = int(xp.argmax(bad))
        raise NonFiniteError(f"y0 of trajectory {b} is not finite: {arr[b]}. Initial values must "
                             f"be finite numbers.")
    return xp.ascontiguousarray(arr), single, out_dtype


def _check_y0_gpu(y0, dyn):
    """``y0`` given on the GPU, checked and kept there (needs cupy); None when it must go
    through the host checks (no cupy, or something is wrong with it: they say what)."""
    try:
        import cupy
    except ImportError:
        return None
    arr = cupy.asarray(y0)
    if arr.dtype not in (np.float32, np.float64):
        return None
    single = arr.ndim == 1
    arr2 = arr[None, :] if single else arr
    if arr2.ndim != 2 or arr2.shape[0] == 0 or arr2.shape[1] != dyn.dim:
        return None
    if not bool(cupy.isfinite(arr2).all()):
        return None
    out_dtype = np.float32 if arr.dtype == np.float32 else np.float64
    return cupy.ascontiguousarray(arr2, dtype=np.float64), single, out_dtype


def _check_times(t, batch):
    t_given = np.asarray(t, dtype=np.float64)
    if t_given.ndim == 1:
        rows = t_given[None, :]
        tgrid = np.broadcast_to(t_given, (batch, t_given.size))
    elif t_given.ndim == 2 and t_given.shape[0] == batch:
        rows = tgrid = t_given
    else:
        raise ShapeError(f"t must have shape (T,) or (batch, T) = ({batch}, T), got "
                         f"{t_given.shape}")
    if tgrid.shape[1] == 0:
        raise TimeGridError("t is empty: give at least the initial time")
    if not np.isfinite(rows).all():
        raise TimeGridError("t contains NaN or inf")
    d = np.diff(rows, axis=1)
    ok = (d > 0).all(axis=1) | (d < 0).all(axis=1)
    if not ok.all():
        b = int(np.argmin(ok))
        raise TimeGridError(f"t of trajectory {b} is not strictly monotonic: {rows[b]}. Times "
                            f"must strictly increase, or strictly decrease to solve backwards.")
    return tgrid, t_given


def _check_params(params, dyn, batch):
    n = getattr(dyn, "n_params", None)
    if not isinstance(dyn, SymbolicDynamics):
        return params
    names = ", ".join(str(p) for p in dyn.ode.params)
    if params is None:
        if n:
            raise ShapeError(f"this system has parameters ({names}): pass params of shape "
                             f"({n},), or ({batch}, {n}) for one set per trajectory")
        return np.zeros((batch, 0))
    prm = np.asarray(params, dtype=np.float64)
    if not (prm.ndim == 1 and prm.size == n) and not (prm.ndim == 2 and prm.shape == (batch, n)):
        raise ShapeError(f"params must have shape ({n},) or (batch, {n}) = ({batch}, {n}) for "
                         f"parameters ({names}), got {np.shape(params)}")
    if not np.isfinite(prm).all():
        raise NonFiniteError("params contain NaN or inf")
    if prm.ndim == 1:   # shared: a broadcast view, passed to the kernels as one row
        return np.broadcast_to(prm, (batch, n))
    return np.ascontiguousarray(prm)


def _check_tolerances(rtol, atol, dim_shape, tab):
    out = []
    for name, v in (("rtol", rtol), ("atol", atol)):
        a = np.asarray(v, dtype=np.float64)
        if a.ndim > 0 and a.shape != dim_shape:
            raise ShapeError(f"{name} must be a number or have shape {dim_shape}, got {a.shape}")
        if tab.adaptive and (not np.isfinite(a).all() or (a < 0).any()):
            raise SymodeError(f"{name} must be finite and non-negative, got {v}")
        out.append(a)
    if tab.adaptive and not (out[0] > 0).any() and not (out[1] > 0).any():
        raise SymodeError("rtol and atol cannot both be zero")
    return out


def _check_steps(tab, step_size, n_steps, first_step, tgrid):
    fixed_given = step_size is not None or n_steps is not None
    if isinstance(tab, RosenbrockTableau) and fixed_given:   # fixed steps, no error control
        if first_step is not None:
            raise SymodeError(f"first_step is for {tab.name}'s adaptive steps; with step_size or "
                              f"n_steps its steps are fixed")
    elif tab.adaptive:
        if fixed_given:
            raise SymodeError(f"{tab.name} chooses its own steps; step_size and n_steps are for "
                              f"fixed-step methods (use first_step to set its initial step)")
        if first_step is not None and not first_step > 0:
            raise SymodeError(f"first_step must be positive, got {first_step}")
        return None
    if (step_size is None) == (n_steps is None):
        raise SymodeError(f"{tab.name} is a fixed-step method: give exactly one of step_size "
                          f"or n_steps")
    span = np.abs(tgrid[:, -1] - tgrid[:, 0])
    if step_size is not None:
        if not step_size > 0:
            raise SymodeError(f"step_size must be positive, got {step_size}")
        return np.broadcast_to(float(step_size), (tgrid.shape[0],))
    if int(n_steps) != n_steps or n_steps < 1:
        raise SymodeError(f"n_steps must be a positive integer, got {n_steps}")
    return np.where(span > 0, span / int(n_steps), 1.0)


# -- engines -----------------------------------------------------------------------------------
def _run_kernel(dyn, tab, y0, tgrid, prm, rtol, atol, first_step, h_fixed, max_steps,
                record=0, device="cpu", keep_on_gpu=False, controller=PIController()):
    """Run the compiled integrator; with ``record > 0`` also return the first ``record``
    accepted steps of each trajectory (times, states, and how many steps there were)."""
    batch, T = tgrid.shape
    dim = dyn.dim
    out = np.empty((T, batch, dim))
    stats = np.zeros((batch, 3), dtype=np.int64)
    status = np.zeros(batch, dtype=np.int32)
    fail = np.zeros((batch, 3))
    h_first = np.full(1, float(first_step or 0.0))
    h_fix = compact(h_fixed) if h_fixed is not None else np.zeros(1)
    rec_t, rec_y = np.zeros((batch, record)), np.zeros((batch, record, dim))
    rec_n = np.zeros(batch, dtype=np.int64)
    inputs = (y0, compact(tgrid), compact(prm),
              np.ascontiguousarray(np.broadcast_to(rtol, (dim,))),
              np.ascontiguousarray(np.broadcast_to(atol, (dim,))), h_first, h_fix,
              int(max_steps))
    outputs = (out, stats, status, fail, rec_t, rec_y, rec_n)
    stiff = isinstance(tab, RosenbrockTableau)
    if device == "cuda":
        module = (compiled_rosenbrock(dyn, tab, controller, "cuda") if stiff else
                  cuda_module(dyn, KernelSpec(tab, dim, dyn.n_params, controller), dyn.rhs_source,
                              f"{tab.name} integrator", False, f"kernel_{tab.name}"))
        dev = launch(module, "solve", batch, inputs, outputs)
        stats, status = dev[1].copy_to_host(), dev[2].copy_to_host()
        fail = dev[3].copy_to_host() if (status != OK).any() else fail
        out = to_gpu(dev[0]) if keep_on_gpu else dev[0].copy_to_host()
        if record:   # the recorded steps stay on the GPU for the adjoint
            rec_t, rec_y, rec_n = dev[4], dev[5], dev[6].copy_to_host()
    else:
        module = (compiled_rosenbrock(dyn, tab, controller) if stiff
                  else compiled_kernel(dyn, tab, controller))
        run_batch(module, batch, *inputs, *outputs)
    result = out, Stats(stats[:, 0], stats[:, 1], stats[:, 2]), status, fail
    return result + ((rec_t, rec_y, rec_n),) if record else result


def compact(a: np.ndarray) -> np.ndarray:
    """A contiguous array for a kernel: one row when every row is the same broadcast row
    (the kernels read row 0 of a one-row argument for every trajectory)."""
    if a.ndim >= 1 and a.shape[0] > 1 and a.strides[0] == 0:
        return np.ascontiguousarray(a[:1])
    return np.ascontiguousarray(a)


def to_gpu(x):
    """A cupy array of ``x`` (host or GPU array; no copy for a GPU array), or a numba device
    array where cupy is not installed."""
    try:
        import cupy
    except ImportError:
        from numba import cuda

        return x if is_device_array(x) else cuda.to_device(x)
    return cupy.asarray(x)


def _run_arrays(dyn, tab, y0, tgrid, prm, rtol, atol, first_step, h_fixed, max_steps,
                record=None, error_norm="trajectory", controller=PIController()):
    batch = y0.shape[0]
    res = integrate_arrays(lambda tt, yy: dyn.f(tt, yy, prm), tab, y0, tgrid, rtol, atol,
                           h_first=first_step, step_size=None if h_fixed is None
                           else float(np.min(h_fixed)), max_steps=max_steps, record=record,
                           error_norm=error_norm, controller=controller)
    ones = np.ones(batch, dtype=np.int64)
    stats = Stats(ones * res.nfev, ones * res.naccept, ones * res.nreject, shared=True)
    return res.y, stats, res.status, res.fail, res.h_next


def raise_for_status(status, fail, tgrid, tab, rtol, atol, max_steps):
    if (status == OK).all():
        return
    b = int(np.argmax(status != OK))
    code = int(status[b])
    t_fail, h_fail, err = fail[b]
    t0, t1 = tgrid[b, 0], tgrid[b, -1]
    if code == MAX_STEPS:
        raise MaxStepsError(
            f"trajectory {b} stopped at t={t_fail:.6g} of [{t0:.6g}, {t1:.6g}] after "
            f"max_steps={max_steps} steps. Raise max_steps or loosen rtol/atol.")
    if code == NON_FINITE or (code == UNDERFLOW and not np.isfinite(err)):
        raise NonFiniteError(
            f"trajectory {b}: the state or its derivative became NaN or inf near t={t_fail:.6g} "
            f"({tab.name}). The solution may blow up there, or f is undefined at that state; "
            f"solve to an earlier time and look at it.")
    if code == UNDERFLOW:
        raise StepSizeUnderflowError(
            f"trajectory {b}: step size fell to {abs(h_fail):.2g} at t={t_fail:.6g} ({tab.name}, "
            f"rtol={rtol}, atol={atol}). The solution may blow up or turn stiff there; solve to "
            f"an earlier time and look at it.")
    raise SymodeError(f"trajectory {b}: solver status {code}")
