"""Lorenz on the GPU: symode's CUDA kernel engine against symode on the CPU, diffrax (jit(vmap)) and
torchdiffeq (batched odeint) on the same GPU.

Two parts, each printed as a table and written as JSON with ``--json``:

* ensemble: dopri5, rtol 1e-6, atol 1e-8, t in [0, 10], final state saved, x0 = [1, 1, 1] +
  0.1 * standard normal (numpy default_rng(0)), sigma, rho, beta = 10, 28, 8/3, N trajectories.
* gradient: N trajectories, t in [0, 1], L = sum of the final states, dL/d(sigma, rho, beta)
  (shared) and dL/dy0, dopri5 at rtol 1e-6, atol 1e-8; every row states its error against
  central differences (relative step 1e-6) of a dop853 solve at rtol 1e-12, atol 1e-14.

Every time is from numpy input to numpy output (transfers included), the best of ``--repeat``
calls after a first call, whose time (compilation, tracing) is reported apart. Peers are optional
installs; a missing one is reported as such and skipped.

Usage::

    python benchmarks/bench_gpu.py                              # N = 1k, 100k, 1M; gradient 100k
    python benchmarks/bench_gpu.py --ns 1000 --grad-n 1000 --repeat 1   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # share the GPU with the others

import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402

import symode as so  # noqa: E402

SIGMA, RHO, BETA = 10.0, 28.0, 8.0 / 3.0
PARAMS = np.array([SIGMA, RHO, BETA])
RTOL, ATOL = 1e-6, 1e-8


def lorenz_ode():
    x, y, z, s, r, b = sp.symbols("x y z sigma rho beta")
    return so.ODE([x, y, z], [s * (y - x), x * (r - z) - y, x * y - b * z], params=[s, r, b])


def initial_states(n):
    return np.random.default_rng(0).normal([1.0, 1.0, 1.0], 0.1, size=(n, 3))


def timed(fn, repeat):
    """(first-call seconds, best of ``repeat`` later calls, last result)."""
    start = time.perf_counter()
    res = fn()
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - start)
    return first, best, res


# -- ensemble ----------------------------------------------------------------------------------
def ens_symode(ode, y0, device):
    def fn():
        sol = so.solve(ode, y0, [0.0, 10.0], params=PARAMS, rtol=RTOL, atol=ATOL, device=device)
        return sol.y[-1], {"nfev_per_traj": float(sol.stats.nfev.mean()),
                           "steps_per_traj": float(sol.stats.nsteps.mean())}
    return fn


def ens_symode_cupy(ode, y0):
    """Input and output stay on the GPU (cupy arrays): no host transfers of the states."""
    import cupy

    d_y0 = cupy.asarray(y0)

    def fn():
        sol = so.solve(ode, d_y0, [0.0, 10.0], params=PARAMS, rtol=RTOL, atol=ATOL,
                       device="cuda")
        cupy.cuda.Device().synchronize()
        return sol.y[-1], {"nfev_per_traj": float(sol.stats.nfev.mean()),
                           "steps_per_traj": float(sol.stats.nsteps.mean())}
    return fn


def ens_diffrax(n):
    import diffrax as dfx
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    def f(t, u, args):
        return jnp.stack([SIGMA * (u[1] - u[0]), u[0] * (RHO - u[2]) - u[1],
                          u[0] * u[1] - BETA * u[2]])

    def one(y0):
        sol = dfx.diffeqsolve(dfx.ODETerm(f), dfx.Dopri5(), 0.0, 10.0, None, y0,
                              stepsize_controller=dfx.PIDController(rtol=RTOL, atol=ATOL),
                              saveat=dfx.SaveAt(t1=True), max_steps=100_000)
        return sol.ys[0], sol.stats["num_steps"]

    compiled = jax.jit(jax.vmap(one)).lower(
        jax.ShapeDtypeStruct((n, 3), jnp.float64)).compile()

    def fn(y0):
        ys, steps = compiled(jnp.asarray(y0))
        return np.asarray(ys), {"steps_per_traj": float(np.asarray(steps).mean()),
                                "lockstep_iterations": int(np.asarray(steps).max())}
    return fn


def torch_lorenz():
    import torch

    class Lorenz(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.theta = torch.nn.Parameter(torch.tensor(PARAMS, dtype=torch.float64))
            self.nfev = 0

        def forward(self, t, u):
            self.nfev += 1
            s, r, b = self.theta
            x, y, z = u[:, 0], u[:, 1], u[:, 2]
            return torch.stack((s * (y - x), x * (r - z) - y, x * y - b * z), dim=1)

    return Lorenz().cuda()


def ens_torch(y0):
    import torch
    import torchdiffeq

    func = torch_lorenz()

    def fn():
        func.nfev = 0
        with torch.no_grad():
            u0 = torch.from_numpy(y0).cuda()
            ys = torchdiffeq.odeint(func, u0, torch.tensor([0.0, 10.0], dtype=torch.float64,
                                                           device="cuda"),
                                    method="dopri5", rtol=RTOL, atol=ATOL)
            y1 = ys[-1].cpu().numpy()
        return y1, {"shared_rhs_calls": func.nfev}
    return fn


def ensemble(ns, repeat, skip):
    ode = lorenz_ode()
    rows = []
    for n in ns:
        y0 = initial_states(n)
        ref_n = min(n, 200)
        tight = so.solve(ode, y0[:ref_n], [0.0, 10.0], params=PARAMS, method="dop853",
                         rtol=1e-12, atol=1e-14, max_steps=1_000_000).y[-1]
        cands = [("symode cuda", lambda: ens_symode(ode, y0, "cuda")),
                 ("symode cuda, cupy in/out", lambda: ens_symode_cupy(ode, y0)),
                 ("symode cpu", lambda: ens_symode(ode, y0, "cpu")),
                 ("diffrax gpu", lambda: (lambda c: (lambda: c(y0)))(ens_diffrax(n))),
                 ("torchdiffeq gpu", lambda: ens_torch(y0))]
        for name, make in cands:
            if any(s in name for s in skip):
                continue
            print(f"  ensemble N={n}: {name} ...", flush=True)
            row = {"part": "ensemble", "method": name, "N": n}
            try:
                start = time.perf_counter()
                fn = make()
                setup = time.perf_counter() - start
                first, best, (y1, info) = timed(fn, repeat)
                y1 = y1.get() if hasattr(y1, "get") else y1    # cupy: compare on the host
                row.update(seconds=best, first_call=first + setup, us_per_traj=1e6 * best / n,
                           max_abs_vs_tight=float(np.abs(y1[:ref_n] - tight).max()), **info)
            except Exception as exc:  # a peer failing is a row, not the end of the run
                row["error"] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            rows.append(row)
            print("   ", row, flush=True)
    return rows


# -- gradient ----------------------------------------------------------------------------------
def reference_gradient(ode, y0, device, rel=1e-6):
    """Central differences of sum(y(1)) by dop853 at rtol 1e-12: dL/dθ, dL/dy0 (per row)."""
    def loss_rows(y, p):
        sol = so.solve(ode, y, [0.0, 1.0], params=p, method="dop853", rtol=1e-12, atol=1e-14,
                       device=device, max_steps=1_000_000)
        return sol.y[-1].sum(axis=1)

    g_th = np.empty(3)
    for i in range(3):
        h = rel * PARAMS[i]
        pp, pm = PARAMS.copy(), PARAMS.copy()
        pp[i] += h
        pm[i] -= h
        g_th[i] = (loss_rows(y0, pp).sum() - loss_rows(y0, pm).sum()) / (2 * h)
    g_y = np.empty_like(y0)
    for i in range(3):   # each row's loss depends on its own y0 only: perturb all rows at once
        h = rel * np.maximum(np.abs(y0[:, i]), 1.0)
        yp, ym = y0.copy(), y0.copy()
        yp[:, i] += h
        ym[:, i] -= h
        g_y[:, i] = (loss_rows(yp, PARAMS) - loss_rows(ym, PARAMS)) / (2 * h)
    return g_th, g_y


def grad_symode(ode, y0, device, adjoint, seminorm=False):
    def fn():
        sol, back = so.solve_vjp(ode, y0, [0.0, 1.0], params=PARAMS, rtol=RTOL, atol=ATOL,
                                 adjoint=adjoint, seminorm=seminorm, device=device)
        g = back(np.stack([np.zeros_like(y0), np.ones_like(y0)]))
        return g.params, g.y0, {"fwd_nfev_per_traj": float(sol.stats.nfev.mean()),
                                "bwd_nfev_per_traj": float(g.stats.nfev.mean())}
    return fn


def grad_torch(y0, kind):
    import torch
    import torchdiffeq

    func = torch_lorenz()
    t = torch.tensor([0.0, 1.0], dtype=torch.float64, device="cuda")

    def fn():
        func.nfev = 0
        func.theta.grad = None
        u0 = torch.tensor(y0, device="cuda", requires_grad=True)
        if kind == "odeint":
            ys = torchdiffeq.odeint(func, u0, t, method="dopri5", rtol=RTOL, atol=ATOL)
        else:
            opts = {"norm": "seminorm"} if kind == "seminorm" else {}
            ys = torchdiffeq.odeint_adjoint(func, u0, t, method="dopri5", rtol=RTOL, atol=ATOL,
                                            adjoint_params=(func.theta,), adjoint_options=opts)
        fwd = func.nfev
        ys[-1].sum().backward()
        return (func.theta.grad.cpu().numpy().copy(), u0.grad.cpu().numpy(),
                {"fwd_shared_calls": fwd, "bwd_shared_calls": func.nfev - fwd})
    return fn


def grad_diffrax(y0, adjoint_name):
    import diffrax as dfx
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    def f(t, u, th):
        return jnp.stack([th[0] * (u[1] - u[0]), u[0] * (th[1] - u[2]) - u[1],
                          u[0] * u[1] - th[2] * u[2]])

    adjoint = getattr(dfx, adjoint_name)()

    def one(u0, th):
        sol = dfx.diffeqsolve(dfx.ODETerm(f), dfx.Dopri5(), 0.0, 1.0, None, u0, args=th,
                              stepsize_controller=dfx.PIDController(rtol=RTOL, atol=ATOL),
                              saveat=dfx.SaveAt(t1=True), adjoint=adjoint, max_steps=100_000)
        return sol.ys[0].sum()

    def loss(u0, th):
        return jax.vmap(one, in_axes=(0, None))(u0, th).sum()

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    th = jnp.asarray(PARAMS)

    def fn():
        gy, gth = grad(jnp.asarray(y0), th)
        return np.asarray(gth), np.asarray(gy), {}
    return fn


def gradient(n, repeat, skip):
    ode = lorenz_ode()
    y0 = initial_states(n)
    start = time.perf_counter()
    ref_th, ref_y = reference_gradient(ode, y0, "cuda" if "symode cuda" not in skip else "cpu")
    print(f"  reference gradient ({time.perf_counter() - start:.1f} s): {ref_th}", flush=True)
    cands = [
        ("symode cuda backsolve", lambda: grad_symode(ode, y0, "cuda", "backsolve")),
        ("symode cuda backsolve+seminorm",
         lambda: grad_symode(ode, y0, "cuda", "backsolve", True)),
        ("symode cuda checkpoint", lambda: grad_symode(ode, y0, "cuda", "checkpoint")),
        ("symode cuda discrete", lambda: grad_symode(ode, y0, "cuda", "discrete")),
        ("symode cpu checkpoint", lambda: grad_symode(ode, y0, "cpu", "checkpoint")),
        ("diffrax gpu BacksolveAdjoint", lambda: grad_diffrax(y0, "BacksolveAdjoint")),
        ("diffrax gpu RecursiveCheckpointAdjoint",
         lambda: grad_diffrax(y0, "RecursiveCheckpointAdjoint")),
        ("torchdiffeq gpu odeint_adjoint", lambda: grad_torch(y0, "adjoint")),
        ("torchdiffeq gpu odeint_adjoint+seminorm", lambda: grad_torch(y0, "seminorm")),
        ("torchdiffeq gpu odeint (backprop)", lambda: grad_torch(y0, "odeint")),
    ]
    rows = []
    for name, make in cands:
        if any(s in name for s in skip):
            continue
        print(f"  gradient N={n}: {name} ...", flush=True)
        row = {"part": "gradient", "method": name, "N": n}
        try:
            start = time.perf_counter()
            fn = make()
            setup = time.perf_counter() - start
            first, best, (g_th, g_y, info) = timed(fn, repeat)
            row.update(seconds=best, first_call=first + setup,
                       theta_rel_err=float(np.max(np.abs(g_th - ref_th) / np.abs(ref_th))),
                       y0_norm_rel_err=float(np.linalg.norm(g_y - ref_y) / np.linalg.norm(ref_y)),
                       **info)
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        rows.append(row)
        print("   ", row, flush=True)
    return rows


def environment():
    env = {"python": platform.python_version(), "numpy": np.__version__,
           "symode": so.__version__, "cpu_count": os.cpu_count()}
    import numba

    env["numba"] = numba.__version__
    try:
        from numba import cuda

        env["gpu"] = cuda.get_current_device().name.decode() if hasattr(
            cuda.get_current_device().name, "decode") else str(cuda.get_current_device().name)
    except Exception as exc:
        env["gpu"] = f"unavailable ({exc})"
    for mod in ("numba_cuda", "torch", "torchdiffeq", "jax", "diffrax"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:
            env[mod] = "not installed"
    return env


def print_table(rows):
    for part in ("ensemble", "gradient"):
        sel = [r for r in rows if r["part"] == part]
        if not sel:
            continue
        keys = [k for k in sel[0] if k != "part"]
        for r in sel:
            keys += [k for k in r if k not in keys and k != "part"]
        print(f"\n| {' | '.join(keys)} |")
        print(f"|{'---|' * len(keys)}")
        for r in sel:
            cells = []
            for k in keys:
                v = r.get(k, "")
                cells.append(f"{v:.4g}" if isinstance(v, float) else str(v))
            print(f"| {' | '.join(cells)} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ns", default="1000,100000,1000000")
    ap.add_argument("--grad-n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma-separated name parts to skip")
    ap.add_argument("--parts", default="ensemble,gradient")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    skip = [s for s in args.skip.split(",") if s]
    env = environment()
    print("environment:", env, flush=True)
    rows = []
    if "ensemble" in args.parts:
        rows += ensemble([int(n) for n in args.ns.split(",")], args.repeat, skip)
    if "gradient" in args.parts:
        rows += gradient(args.grad_n, args.repeat, skip)
    print_table(rows)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"environment": env, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())
