"""Lorenz gradient benchmark: dL/dθ and dL/dy0 through a batch of dopri5 solves.

Problem: N Lorenz trajectories (default 1000), y0 = [1, 1, 1] + 0.1 * standard normal
(numpy default_rng(0)), parameters θ = (sigma, rho, beta) = (10, 28, 8/3) shared by the batch,
t in [0, 1] (saved at t = 0 and t = 1), loss L = sum of all final states. Every row computes
dL/dθ (three numbers, summed over the batch) and dL/dy0 (N x 3) with dopri5 at rtol 1e-6,
atol 1e-8 (backward tolerances = forward ones).

Rows:

* ``symode backsolve`` / ``backsolve+seminorm`` / ``checkpoint`` / ``discrete``:
  ``so.solve_vjp`` followed by the pullback (all four run compiled per-trajectory kernels;
  discrete's backward pass is a generated sweep through the recorded steps).
* ``torchdiffeq odeint_adjoint`` (with and without ``adjoint_options=dict(norm="seminorm")``)
  and backprop through ``odeint``: CPU, float64, the (N, 3) batch as one tensor state (one step
  size for the whole batch, torchdiffeq's default RMS error norm over all N*3 components),
  θ an ``nn.Parameter`` of 3, ``torch.set_num_threads(2)``. Right-hand-side calls are counted
  in the module, separately in the forward solve and in ``loss.backward()``.
* ``diffrax BacksolveAdjoint`` / ``RecursiveCheckpointAdjoint``: CPU, float64, ``jax.vmap`` of
  ``diffeqsolve`` over y0 (every trajectory its own step size and error control; this is how
  diffrax's documentation batches solves), θ passed as ``args`` (not vmapped, so its gradient
  is summed over the batch), ``jax.jit(jax.grad(loss))``. Compile time is reported apart from
  the run. Work counts are diffrax's ``sol.stats["num_steps"]`` of the forward solve
  (attempted steps; dopri5 is FSAL, so about 6 evaluations per step); diffrax does not report
  the backward pass's work.

Timing: one warm-up call (compilation, tracing, caches), then the best of ``--repeat`` calls,
each a full forward + backward pass from y0 and θ.

Accuracy: every row's gradient is compared with central finite differences of L computed with
``so.solve(..., method="dop853", rtol=1e-12, atol=1e-14)``, relative step 1e-6 (for dL/dy0 the
three columns of y0 are perturbed one at a time for the whole batch, since the trajectories are
independent). The same differences with step 1e-5 give an estimate of the reference's own
error, printed with it. Errors reported:

* ``θ rel err``: max over the three parameters of |g - g_ref| / |g_ref|;
* ``y0 max rel``: max over all N*3 entries of |g - g_ref| / |g_ref| (the smallest |g_ref| entry
  is a few 1e-3, so this is the worst case of a small entry);
* ``y0 norm rel``: ||g - g_ref|| / ||g_ref|| over the whole N x 3 array.

Usage::

    python benchmarks/bench_lorenz_gradient.py                  # N = 1000, best of 5
    python benchmarks/bench_lorenz_gradient.py --n 200 --repeat 3 --skip-peers
    python benchmarks/bench_lorenz_gradient.py --json /tmp/lorenz_gradient.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import time

import numpy as np

SIGMA, RHO, BETA = 10.0, 28.0, 8.0 / 3.0
PARAMS = np.array([SIGMA, RHO, BETA])
T_SAVE = np.array([0.0, 1.0])


# --- setup ----------------------------------------------------------------------------------

def initial_states(n: int) -> np.ndarray:
    return 1.0 + 0.1 * np.random.default_rng(0).standard_normal((n, 3))


def lorenz_ode():
    import sympy as sp
    import symode as so

    x, y, z, sigma, rho, beta = sp.symbols("x y z sigma rho beta")
    return so.ODE([x, y, z], [sigma * (y - x), x * (rho - z) - y, x * y - beta * z],
                  params=[sigma, rho, beta])


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("numpy", "sympy", "numba", "symode", "torch", "torchdiffeq", "jax", "jaxlib",
                 "diffrax", "equinox"):
        try:
            out[name] = str(getattr(importlib.import_module(name), "__version__", "?"))
        except ImportError:
            out[name] = "not installed"
    return out


def best_of(fn, repeat: int):
    """Call ``fn`` ``repeat`` times; the smallest wall time and that call's result."""
    best, best_result = float("inf"), None
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
        if elapsed < best:
            best, best_result = elapsed, result
    return best, best_result


# --- reference gradient ---------------------------------------------------------------------

def reference_gradient(ode, y0, rel_step):
    """Central differences of L = sum of final states, tight dop853 solves."""
    import symode as so

    def final(y0_, theta):
        return so.solve(ode, y0_, T_SAVE, params=theta, method="dop853", rtol=1e-12,
                        atol=1e-14, max_steps=100_000).y[-1]

    g_theta = np.empty(3)
    for k in range(3):
        h = rel_step * abs(PARAMS[k])
        up, down = PARAMS.copy(), PARAMS.copy()
        up[k] += h
        down[k] -= h
        g_theta[k] = (final(y0, up).sum() - final(y0, down).sum()) / (2 * h)
    g_y0 = np.empty_like(y0)
    for j in range(3):
        h = rel_step * np.maximum(1.0, np.abs(y0[:, j]))
        up, down = y0.copy(), y0.copy()
        up[:, j] += h
        down[:, j] -= h
        g_y0[:, j] = (final(up, PARAMS).sum(axis=1) - final(down, PARAMS).sum(axis=1)) / (2 * h)
    return g_theta, g_y0


def gradient_errors(g_theta, g_y0, ref_theta, ref_y0) -> dict[str, float]:
    g_theta, g_y0 = np.asarray(g_theta, dtype=float), np.asarray(g_y0, dtype=float)
    return {
        "theta_rel": float(np.max(np.abs(g_theta - ref_theta) / np.abs(ref_theta))),
        "y0_max_rel": float(np.max(np.abs(g_y0 - ref_y0) / np.abs(ref_y0))),
        "y0_norm_rel": float(np.linalg.norm(g_y0 - ref_y0) / np.linalg.norm(ref_y0)),
    }


# --- symode ---------------------------------------------------------------------------------

SYMODE_ROWS = (("symode backsolve", "backsolve", False),
               ("symode backsolve+seminorm", "backsolve", True),
               ("symode checkpoint", "checkpoint", False),
               ("symode discrete", "discrete", False))


def run_symode(ode, y0, args, adjoint, seminorm):
    import symode as so

    n = y0.shape[0]
    cot = np.zeros((len(T_SAVE), n, 3))
    cot[-1] = 1.0

    def once():
        t0 = time.perf_counter()
        sol, pullback = so.solve_vjp(ode, y0, T_SAVE, params=PARAMS, method="dopri5",
                                     adjoint=adjoint, rtol=args.rtol, atol=args.atol,
                                     seminorm=seminorm)
        t1 = time.perf_counter()
        g = pullback(cot)
        t2 = time.perf_counter()
        return sol, g, t1 - t0, t2 - t1

    start = time.perf_counter()
    once()
    first = time.perf_counter() - start
    seconds, (sol, g, fwd_s, bwd_s) = best_of(once, args.repeat)
    fwd, bwd = np.asarray(sol.stats.nfev), np.asarray(g.stats.nfev)
    return {"seconds": seconds, "first_call_s": first, "compile_s": None,
            "forward_s": fwd_s, "backward_s": bwd_s,
            "fwd_nfev_sum": int(fwd.sum()), "fwd_nfev_mean": float(fwd.mean()),
            "bwd_nfev_sum": int(bwd.sum()), "bwd_nfev_mean": float(bwd.mean()),
            "fwd_steps_mean": float(np.mean(sol.stats.nsteps)),
            "stepping": "batch together" if sol.stats.shared else "per trajectory",
            "g_theta": np.asarray(g.params), "g_y0": np.asarray(g.y0)}


# --- torchdiffeq ----------------------------------------------------------------------------

TORCH_ROWS = (("torchdiffeq odeint_adjoint", "adjoint", None),
              ("torchdiffeq odeint_adjoint+seminorm", "adjoint", "seminorm"),
              ("torchdiffeq odeint (backprop)", "backprop", None))


def run_torch(y0, args, kind, adjoint_norm):
    import torch
    import torchdiffeq

    torch.set_num_threads(args.threads)

    class Lorenz(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.theta = torch.nn.Parameter(torch.tensor(PARAMS, dtype=torch.float64))
            self.nfev = 0

        def forward(self, t, u):
            self.nfev += 1
            sigma, rho, beta = self.theta[0], self.theta[1], self.theta[2]
            x, y, z = u[:, 0], u[:, 1], u[:, 2]
            return torch.stack((sigma * (y - x), x * (rho - z) - y, x * y - beta * z), dim=1)

    func = Lorenz()
    t = torch.tensor(T_SAVE, dtype=torch.float64)
    y0_np = np.ascontiguousarray(y0)

    def once():
        func.zero_grad(set_to_none=True)
        y0_t = torch.tensor(y0_np, dtype=torch.float64, requires_grad=True)
        func.nfev = 0
        if kind == "adjoint":
            kw = {} if adjoint_norm is None else {"adjoint_options": {"norm": adjoint_norm}}
            ys = torchdiffeq.odeint_adjoint(func, y0_t, t, rtol=args.rtol, atol=args.atol,
                                            method="dopri5", **kw)
        else:
            ys = torchdiffeq.odeint(func, y0_t, t, rtol=args.rtol, atol=args.atol,
                                    method="dopri5")
        loss = ys[-1].sum()
        nfev_fwd = func.nfev
        func.nfev = 0
        loss.backward()
        return (func.theta.grad.detach().numpy().copy(), y0_t.grad.detach().numpy().copy(),
                nfev_fwd, func.nfev)

    start = time.perf_counter()
    once()
    first = time.perf_counter() - start
    seconds, (g_theta, g_y0, nf, nb) = best_of(once, args.torch_repeat or args.repeat)
    return {"seconds": seconds, "first_call_s": first, "compile_s": None,
            "forward_s": None, "backward_s": None,
            # one call of func evaluates all N trajectories: "sum" = N * calls
            "fwd_nfev_sum": nf * y0.shape[0], "fwd_nfev_mean": float(nf),
            "bwd_nfev_sum": nb * y0.shape[0], "bwd_nfev_mean": float(nb),
            "bwd_note": None if kind == "adjoint" else "0 (autograd graph)",
            "fwd_steps_mean": None, "stepping": "batch together (one step size)",
            "g_theta": g_theta, "g_y0": g_y0}


# --- diffrax --------------------------------------------------------------------------------

DIFFRAX_ROWS = (("diffrax BacksolveAdjoint", "BacksolveAdjoint"),
                ("diffrax RecursiveCheckpointAdjoint", "RecursiveCheckpointAdjoint"))


def run_diffrax(y0, args, adjoint_name):
    import jax

    jax.config.update("jax_enable_x64", True)
    import diffrax
    import jax.numpy as jnp

    def vector_field(t, u, theta):
        x, y, z = u[0], u[1], u[2]
        return jnp.stack([theta[0] * (y - x), x * (theta[1] - z) - y, x * y - theta[2] * z])

    adjoint = getattr(diffrax, adjoint_name)()
    term, solver = diffrax.ODETerm(vector_field), diffrax.Dopri5()
    controller = diffrax.PIDController(rtol=args.rtol, atol=args.atol)

    def loss(theta, y0s):
        def one(u0):
            sol = diffrax.diffeqsolve(term, solver, t0=float(T_SAVE[0]), t1=float(T_SAVE[-1]),
                                      dt0=None, y0=u0, args=theta,
                                      stepsize_controller=controller,
                                      saveat=diffrax.SaveAt(t1=True), adjoint=adjoint)
            return sol.ys[-1], sol.stats["num_steps"]

        y1, steps = jax.vmap(one)(y0s)
        return jnp.sum(y1), steps

    grad_fn = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))
    theta = jnp.asarray(PARAMS)
    y0_j = jnp.asarray(y0)
    start = time.perf_counter()
    compiled = grad_fn.lower(theta, y0_j).compile()
    compile_s = time.perf_counter() - start

    def once():
        (g_theta, g_y0), steps = compiled(theta, y0_j)
        jax.block_until_ready((g_theta, g_y0, steps))
        return g_theta, g_y0, steps

    start = time.perf_counter()
    once()
    first = time.perf_counter() - start
    seconds, (g_theta, g_y0, steps) = best_of(once, args.repeat)
    steps = np.asarray(steps)
    return {"seconds": seconds, "first_call_s": first, "compile_s": compile_s,
            "forward_s": None, "backward_s": None,
            "fwd_nfev_sum": None, "fwd_nfev_mean": None,
            "bwd_nfev_sum": None, "bwd_nfev_mean": None,
            "fwd_steps_sum": int(steps.sum()), "fwd_steps_mean": float(steps.mean()),
            "fwd_steps_max": int(steps.max()),
            "stepping": "per trajectory (vmap, lockstep loop)",
            "g_theta": np.asarray(g_theta), "g_y0": np.asarray(g_y0)}


# --- report ---------------------------------------------------------------------------------

def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def fmt_ratio(v):
    return "n/a" if v is None else (f"{v:.1f}×" if v >= 1 else f"{v:.2f}×")


def fmt_nfev(total, mean, note=None):
    if note:
        return note
    if total is None:
        return "n/a"
    return f"{total:,} / {mean:.0f}"


def print_table(rows):
    head = ("method", "seconds", "first call", "fwd nfev sum / mean", "bwd nfev sum / mean",
            "vs tdq adj", "vs dfx RCA", "θ rel err", "y0 max rel", "y0 norm rel")
    lines = []
    for r in rows:
        e = r["errors"]
        first = fmt(r["first_call_s"], ".3g") + (
            f" (+{r['compile_s']:.1f} compile)" if r.get("compile_s") is not None else "")
        fwd = fmt_nfev(r["fwd_nfev_sum"], r["fwd_nfev_mean"])
        if r["fwd_nfev_sum"] is None and r.get("fwd_steps_sum") is not None:
            fwd = f"steps {r['fwd_steps_sum']:,} / {r['fwd_steps_mean']:.0f}"
        lines.append((r["method"], f"{r['seconds']:.4f}", first, fwd,
                      fmt_nfev(r["bwd_nfev_sum"], r["bwd_nfev_mean"], r.get("bwd_note")),
                      fmt_ratio(r.get("ratio_tdq")), fmt_ratio(r.get("ratio_dfx")),
                      f"{e['theta_rel']:.1e}", f"{e['y0_max_rel']:.1e}",
                      f"{e['y0_norm_rel']:.1e}"))
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |"
            for line in lines]
    print("\n".join(out))


def verdict(rows):
    """Check symode's rows against the targets (≥15× odeint_adjoint, ≥3× diffrax RCA at equal
    or better accuracy: each of the three errors no larger than the peer's)."""
    by = {r["method"]: r for r in rows}
    targets = (("torchdiffeq odeint_adjoint", 15.0), ("diffrax RecursiveCheckpointAdjoint", 3.0))
    print("\nTargets: ≥15× torchdiffeq odeint_adjoint and ≥3× diffrax RecursiveCheckpointAdjoint,"
          " at equal or better accuracy (every error column ≤ the peer's):")
    for r in rows:
        if not r["method"].startswith("symode"):
            continue
        parts = []
        for peer, need in targets:
            p = by.get(peer)
            if p is None:
                parts.append(f"{peer}: not run")
                continue
            speed = p["seconds"] / r["seconds"]
            acc = all(r["errors"][k] <= p["errors"][k] for k in r["errors"])
            ok = speed >= need and acc
            parts.append(f"vs {peer.split()[0]}: {speed:.1f}× (need {need:g}×), accuracy "
                         f"{'≤' if acc else '>'} peer → {'MET' if ok else 'not met'}")
        print(f"  {r['method']}: " + "; ".join(parts))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--torch-repeat", type=int, default=None,
                    help="repeats for the torchdiffeq rows (default: --repeat)")
    ap.add_argument("--skip-peers", action="store_true", help="symode rows only")
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--atol", type=float, default=1e-8)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args(argv)

    import numba

    info = {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
            "numba_threads": numba.get_num_threads(), "versions": versions(), "n": args.n,
            "rtol": args.rtol, "atol": args.atol, "repeat": args.repeat}
    print(f"Lorenz gradient benchmark: N = {args.n}, t in [0, 1], dopri5 rtol {args.rtol:g} "
          f"atol {args.atol:g}, L = sum of final states, gradient w.r.t. θ (shared) and y0")
    print(f"machine: {info['cpu_model']}, os.cpu_count() = {info['cpu_count']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print(f"threads: symode numba {info['numba_threads']}; torch set_num_threads({args.threads});"
          " jax XLA CPU defaults")

    ode = lorenz_ode()
    y0 = initial_states(args.n)
    start = time.perf_counter()
    ref_theta, ref_y0 = reference_gradient(ode, y0, 1e-6)
    alt_theta, alt_y0 = reference_gradient(ode, y0, 1e-5)
    ref_s = time.perf_counter() - start
    ref_err = gradient_errors(alt_theta, alt_y0, ref_theta, ref_y0)
    info["reference"] = {"dL_dtheta": ref_theta.tolist(), "step_change": ref_err}
    print("reference (dop853 rtol 1e-12 atol 1e-14, central differences, step 1e-6; "
          f"{ref_s:.1f} s):"
          f" dL/dθ = {np.array2string(ref_theta, precision=6)}; |dL/dy0| in "
          f"[{np.abs(ref_y0).min():.2e}, {np.abs(ref_y0).max():.2e}]")
    print("  change with step 1e-5: θ rel {theta_rel:.1e}, y0 max rel {y0_max_rel:.1e}, "
          "y0 norm rel {y0_norm_rel:.1e}".format(**ref_err))
    print()

    rows = []

    def add(method, result):
        result["method"] = method
        result["errors"] = gradient_errors(result["g_theta"], result["g_y0"], ref_theta, ref_y0)
        rows.append(result)
        split = ""
        if result.get("forward_s") is not None:
            split = (f" (best call: solve_vjp {result['forward_s']:.4f} s + pullback "
                     f"{result['backward_s']:.4f} s)")
        extra = ""
        if result.get("compile_s") is not None:
            extra = f", compile {result['compile_s']:.1f} s"
        print(f"  {method}: {result['seconds']:.4f} s{split}{extra}, "
              f"θ rel err {result['errors']['theta_rel']:.1e}", flush=True)

    for method, adjoint, seminorm in SYMODE_ROWS:
        add(method, run_symode(ode, y0, args, adjoint, seminorm))
    if not args.skip_peers:
        for method, kind, norm in TORCH_ROWS:
            try:
                add(method, run_torch(y0, args, kind, norm))
            except ImportError as exc:
                print(f"  {method}: skipped ({exc})")
        for method, name in DIFFRAX_ROWS:
            try:
                add(method, run_diffrax(y0, args, name))
            except ImportError as exc:
                print(f"  {method}: skipped ({exc})")

    by = {r["method"]: r for r in rows}
    for r in rows:
        for key, peer in (("ratio_tdq", "torchdiffeq odeint_adjoint"),
                          ("ratio_dfx", "diffrax RecursiveCheckpointAdjoint")):
            r[key] = by[peer]["seconds"] / r["seconds"] if peer in by else None

    print()
    print(f"N = {args.n}; seconds = best of {args.repeat} after a warm-up call (forward + "
          "backward); 'vs' = peer seconds / row seconds; nfev sum over trajectories / mean per "
          "trajectory (torchdiffeq: calls of the batched func, each on all N states, mean = "
          "calls; diffrax: forward num_steps)")
    print_table(rows)
    if not args.skip_peers:
        verdict(rows)

    if args.json:
        out = dict(info, rows=[{k: v for k, v in r.items() if k not in ("g_theta", "g_y0")}
                               | {"g_theta": np.asarray(r["g_theta"]).tolist()} for r in rows])
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
