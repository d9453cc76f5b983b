"""Other ODE libraries solving the same Lorenz ensemble, for the benchmark's comparison rows.

Every solver here has the signature ``solve_xxx(y0, t1, rtol, atol, ...) -> (y1, stats)``:
``y0`` is an (N, 3) float64 array of initial states at ``t = 0``, ``y1`` the (N, 3) float64
numpy array of final states at ``t1``, and ``stats`` a dict of whatever work counts the peer
reports (or that can be counted from outside without changing what it does).

The peers are optional: none of them is a dependency of symode. Each one is imported only when
its solver is first called, and a missing one raises :class:`PeerUnavailableError` (an
``ImportError``) that says what to install.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = [
    "PeerUnavailableError", "SIGMA", "RHO", "BETA",
    "solve_torchdiffeq", "solve_diffrax", "DiffraxSolver", "solve_scipy", "solve_scipy_tight",
    "peer_versions",
]

SIGMA, RHO, BETA = 10.0, 28.0, 8.0 / 3.0


class PeerUnavailableError(ImportError):
    """A comparison library is not installed (it is optional)."""


def _require(module: str, install: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PeerUnavailableError(
            f"{module} is not installed ({exc}); install it with `{install}` to run this "
            f"comparison (see benchmarks/README.md)") from exc


def _check_y0(y0) -> np.ndarray:
    y0 = np.ascontiguousarray(y0, dtype=np.float64)
    if y0.ndim != 2 or y0.shape[1] != 3:
        raise ValueError(f"y0 must have shape (N, 3), got {y0.shape}")
    return y0


def _lorenz_numpy(t, u):
    x, y, z = u
    return [SIGMA * (y - x), x * (RHO - z) - y, x * y - BETA * z]


# --- torchdiffeq ----------------------------------------------------------------------------

_TORCH_LORENZ = None


def _torch_lorenz_class():
    """Build (once) the Lorenz right-hand side as a torch ``nn.Module`` that counts its work."""
    global _TORCH_LORENZ
    if _TORCH_LORENZ is not None:
        return _TORCH_LORENZ
    torch = _require("torch", "pip install torch==2.13.0")

    class Lorenz(torch.nn.Module):
        def __init__(self, sigma=SIGMA, rho=RHO, beta=BETA):
            super().__init__()
            self.sigma, self.rho, self.beta = sigma, rho, beta
            self.reset_counts()

        def reset_counts(self):
            self.nfev = 0
            self.naccept = 0
            self.nreject = 0

        def forward(self, t, u):
            self.nfev += 1
            x, y, z = u[:, 0], u[:, 1], u[:, 2]
            return torch.stack((self.sigma * (y - x),
                                x * (self.rho - z) - y,
                                x * y - self.beta * z), dim=1)

        # torchdiffeq calls these hooks (if present) after each accepted / rejected step.
        def callback_accept_step(self, t0, y0, dt):
            self.naccept += 1

        def callback_reject_step(self, t0, y0, dt):
            self.nreject += 1

    _TORCH_LORENZ = Lorenz
    return Lorenz


def _per_trajectory_max_rms(tensor):
    """Error norm: the worst trajectory's RMS (rows are trajectories)."""
    return tensor.pow(2).mean(dim=1).sqrt().max()


def solve_torchdiffeq(y0, t1, rtol, atol, *, norm: str = "rms", threads: int | None = None):
    """Batched ``torchdiffeq.odeint(..., method="dopri5")`` on the CPU, in float64.

    torchdiffeq integrates the (N, 3) batch as ONE system: a single step size is shared by every
    trajectory, chosen from one error norm over the whole batch. That is the point of the
    comparison with per-trajectory stepping (the numba reference, symode's kernel engine, a
    vmapped diffrax solve): each shared step costs N right-hand sides even for trajectories that
    could have taken a longer one.

    norm : {"rms", "max"}
        ``"rms"`` is torchdiffeq's default: RMS over all N*3 components of the whole batch, so
        one trajectory's error can exceed its tolerance when the others are quiet. ``"max"`` is
        the batch's worst per-trajectory RMS, so every trajectory meets the tolerance the others
        meet (more steps).

    torchdiffeq does not clip its last step to ``t1``; it steps past it and returns the
    step's dense-output interpolant at ``t1``.

    stats: ``nfev`` (batched right-hand-side calls, each on all N states), ``naccept``,
    ``nreject``, ``steps`` = accepted + rejected; all shared by the batch.
    """
    torch = _require("torch", "pip install torch==2.13.0")
    torchdiffeq = _require("torchdiffeq", "pip install torchdiffeq")
    y0 = _check_y0(y0)
    if threads is not None:
        torch.set_num_threads(int(threads))
    options = {}
    if norm == "max":
        options["norm"] = _per_trajectory_max_rms
    elif norm != "rms":
        raise ValueError(f"norm must be 'rms' or 'max', got {norm!r}")
    func = _torch_lorenz_class()()
    y0_t = torch.from_numpy(y0)
    t = torch.tensor([0.0, float(t1)], dtype=torch.float64)
    with torch.no_grad():
        ys = torchdiffeq.odeint(func, y0_t, t, method="dopri5", rtol=rtol, atol=atol,
                                options=options or None)
    y1 = ys[-1].numpy().astype(np.float64, copy=True)
    stats = {"nfev": func.nfev, "naccept": func.naccept, "nreject": func.nreject,
             "steps": func.naccept + func.nreject, "shared": True,
             "threads": torch.get_num_threads()}
    return y1, stats


# --- diffrax --------------------------------------------------------------------------------

class DiffraxSolver:
    """``jax.jit(jax.vmap(diffeqsolve))`` over the initial states, in float64, on the CPU.

    ``jax.vmap`` of diffrax's adaptive loop gives every trajectory its own step size and error
    control, but the batched loop advances in lockstep until the slowest trajectory is done
    (finished ones are masked, not skipped).

    Compilation is explicit so it can be timed apart from the solve::

        s = DiffraxSolver(t1, rtol, atol)
        compile_s = s.compile(n)          # trace + XLA compile for batch size n
        y1, stats = s(y0)                 # runs the compiled executable
    """

    def __init__(self, t1, rtol, atol, max_steps: int = 100_000):
        self.jax = _require("jax", "pip install jax jaxlib")
        self.jax.config.update("jax_enable_x64", True)
        self.diffrax = _require("diffrax", "pip install diffrax")
        self.jnp = self.jax.numpy
        self.t1, self.rtol, self.atol = float(t1), float(rtol), float(atol)
        self.max_steps = max_steps
        self._compiled = {}
        self._fn = self.jax.jit(self.jax.vmap(self._one))

    def _one(self, y0):
        dfx, jnp = self.diffrax, self.jnp

        def lorenz(t, u, args):
            x, y, z = u[0], u[1], u[2]
            return jnp.stack([SIGMA * (y - x), x * (RHO - z) - y, x * y - BETA * z])

        sol = dfx.diffeqsolve(
            dfx.ODETerm(lorenz), dfx.Dopri5(), t0=0.0, t1=self.t1, dt0=None, y0=y0,
            stepsize_controller=dfx.PIDController(rtol=self.rtol, atol=self.atol),
            saveat=dfx.SaveAt(t1=True), max_steps=self.max_steps)
        return (sol.ys[0], sol.stats["num_steps"], sol.stats["num_accepted_steps"],
                sol.stats["num_rejected_steps"])

    def compile(self, n: int) -> float:
        """Trace and compile for a batch of ``n``; returns the seconds it took."""
        if n in self._compiled:
            return 0.0
        start = time.perf_counter()
        spec = self.jax.ShapeDtypeStruct((n, 3), self.jnp.float64)
        self._compiled[n] = self._fn.lower(spec).compile()
        return time.perf_counter() - start

    def __call__(self, y0):
        y0 = _check_y0(y0)
        n = y0.shape[0]
        self.compile(n)
        ys, steps, acc, rej = self._compiled[n](self.jnp.asarray(y0))
        ys.block_until_ready()
        y1 = np.asarray(ys, dtype=np.float64)
        steps, acc, rej = np.asarray(steps), np.asarray(acc), np.asarray(rej)
        stats = {"steps": int(steps.sum()), "naccept": int(acc.sum()), "nreject": int(rej.sum()),
                 "max_steps_one": int(steps.max()),
                 # Dopri5 is FSAL: 6 new evaluations per attempted step, +2 for the initial step.
                 "nfev": int(6 * steps.sum() + 2 * n), "nfev_estimated": True,
                 "lockstep_iterations": int(steps.max())}
        return y1, stats


_DIFFRAX_CACHE: dict = {}


def solve_diffrax(y0, t1, rtol, atol):
    """One-shot wrapper around :class:`DiffraxSolver` (compiled once per (t1, rtol, atol, N))."""
    key = (float(t1), float(rtol), float(atol))
    if key not in _DIFFRAX_CACHE:
        _DIFFRAX_CACHE[key] = DiffraxSolver(t1, rtol, atol)
    return _DIFFRAX_CACHE[key](y0)


# --- scipy ----------------------------------------------------------------------------------

def solve_scipy(y0, t1, rtol, atol, *, method: str = "RK45"):
    """``scipy.integrate.solve_ivp`` in a Python loop, one trajectory at a time (1 thread).

    stats: ``nfev`` and ``steps`` (accepted steps, from the returned step times) summed over
    the trajectories.
    """
    integrate = _require("scipy.integrate", "pip install scipy")
    y0 = _check_y0(y0)
    out = np.empty_like(y0)
    nfev = 0
    naccept = 0
    for i, row in enumerate(y0):
        sol = integrate.solve_ivp(_lorenz_numpy, (0.0, float(t1)), row, method=method,
                                  rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"solve_ivp failed on trajectory {i}: {sol.message}")
        out[i] = sol.y[:, -1]
        nfev += sol.nfev
        naccept += sol.t.size - 1
    return out, {"nfev": int(nfev), "naccept": int(naccept)}


def solve_scipy_tight(y0, t1, rtol=1e-12, atol=1e-14):
    """Tight reference: scipy's DOP853 (8th order) at rtol 1e-12, atol 1e-14."""
    return solve_scipy(y0, t1, rtol, atol, method="DOP853")[0]


# --- versions -------------------------------------------------------------------------------

def peer_versions() -> dict[str, str]:
    """Versions of whatever peers are importable ("not installed" otherwise)."""
    import importlib

    out = {}
    for name in ("torch", "torchdiffeq", "jax", "jaxlib", "diffrax", "equinox", "scipy"):
        try:
            mod = importlib.import_module(name)
            out[name] = str(getattr(mod, "__version__", "?"))
        except ImportError:
            out[name] = "not installed"
    return out


def set_threads(n: int) -> None:
    """``n`` threads everywhere a benchmark row computes: symode's batch slices, numba,
    numpy's BLAS and, when installed, torch."""
    import numba
    from threadpoolctl import threadpool_limits

    from symode.nn.parallel import set_num_threads

    set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(n)                              # numpy's BLAS
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def copy_weights(module, views: dict) -> None:
    """Copy symode's parameter views (``Module.named_views(θ)``) into a torch module whose
    ``parameters()`` come in the same order and shapes; raise if the layouts differ."""
    import torch

    params = list(module.parameters())
    values = list(views.values())
    if [tuple(p.shape) for p in params] != [np.shape(v) for v in values]:
        raise RuntimeError("torch and symode parameter layouts differ")
    with torch.no_grad():
        for p, v in zip(params, values):
            p.copy_(torch.from_numpy(np.array(v)))


def take_turns(steppers: dict, draws, warmup: int) -> dict:
    """Time every row on every batch, the rows taking turns (order rotating by batch) so that
    all see the same machine load. ``steppers[name](batch) -> (loss, nfe_fwd, nfe_bwd)``.

    Returns ``{name: {"times", "losses", "nfe_forward", "nfe_backward"}}``, lists per batch;
    the first ``warmup`` batches are left out of ``times``.
    """
    results = {name: dict(times=[], losses=[], nfe_forward=[], nfe_backward=[])
               for name in steppers}
    names = list(steppers)
    for k, batch in enumerate(draws):
        for name in names[k % len(names):] + names[:k % len(names)]:
            start = time.perf_counter()
            loss, nfe_f, nfe_b = steppers[name](batch)
            elapsed = time.perf_counter() - start
            r = results[name]
            r["losses"].append(float(loss))
            r["nfe_forward"].append(int(nfe_f))
            r["nfe_backward"].append(int(nfe_b))
            if k >= warmup:
                r["times"].append(elapsed)
    return results
