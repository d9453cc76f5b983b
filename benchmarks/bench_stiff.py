"""Stiff ensembles: symode's rodas4 and rodas5p (Rosenbrock, exact derived Jacobian, compiled)
against scipy's stiff solvers (Radau, BDF, LSODA, each given the exact Jacobian too) and, when
installed, diffrax's Kvaerno5 under ``jit(vmap)``.

Problems (every trajectory its own parameters):

* ``robertson``: the Robertson chemistry problem, k1 = 0.04·U(0.5, 2), k2 = 3e7, k3 = 1e4,
  y0 = (1, 0, 0), saved at t = 0 and 1e-5 .. 1e5 (11 decades, log-spaced);
* ``vdp``: Van der Pol, x'' = μ(1 - x²)x' - x with μ = 1000·U(0.5, 2), y0 = (2, 0), saved at
  t = 0, 500, 1000;
* ``brusselator`` (not run by default): a 1-D reaction-diffusion system of 32 states with a
  sparse (block-tridiagonal) Jacobian, B = 3·U(0.8, 1.2), saved at t = 0, 1, .., 10;
* ``pollu``: Verwer's air chemistry mechanism (20 species, 25 reactions, rate constants over 15
  decades), one box of air per trajectory with rate constants k·U(0.8, 1.2), saved at t = 0,
  1, 5, 15, 30, 60 minutes; symode's LU is the sparse one (Markowitz order).

All at rtol 1e-6. atol is 1e-10 for Robertson (y2 lives near 1e-5) and POLLU, 1e-8 for
the others.
scipy runs trajectory by trajectory in a Python loop over ``--scipy-subset`` of them, and its
time is scaled to the whole batch. Times are the best of ``--repeat`` calls after a first call
(compilation or cache load; reported apart). Error: the largest absolute difference at the saved
times from scipy Radau at rtol 1e-11 over the first ``--tight-subset`` trajectories.

Run:  python benchmarks/bench_stiff.py [--n 1000] [--problems robertson,vdp]
      [--methods rodas4,rodas5p] [--cuda]
      (--cuda adds symode's methods on the GPU; diffrax runs where jax puts it)
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import sympy as sp
from scipy.integrate import solve_ivp

import symode as so
from symode.symbolic.kinetics import pollu as so_pollu

HERE = os.path.dirname(os.path.abspath(__file__))


def robertson(n, rng):
    y1, y2, y3, k1, k2, k3 = sp.symbols("y1 y2 y3 k1 k2 k3")
    ode = so.ODE([y1, y2, y3], [-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2 ** 2 - k3 * y2 * y3,
                                k2 * y2 ** 2], params=[k1, k2, k3])

    def fun(t, y, a, b, c):
        return [-a * y[0] + c * y[1] * y[2], a * y[0] - b * y[1] ** 2 - c * y[1] * y[2],
                b * y[1] ** 2]

    def jac(t, y, a, b, c):
        return [[-a, c * y[2], c * y[1]], [a, -2 * b * y[1] - c * y[2], -c * y[1]],
                [0.0, 2 * b * y[1], 0.0]]

    params = np.column_stack([0.04 * rng.uniform(0.5, 2, n), np.full(n, 3e7), np.full(n, 1e4)])
    y0 = np.tile([1.0, 0.0, 0.0], (n, 1))
    t = np.concatenate([[0.0], np.logspace(-5, 5, 11)])
    return dict(ode=ode, fun=fun, jac=jac, params=params, y0=y0, t=t, rtol=1e-6, atol=1e-10)


def van_der_pol(n, rng):
    x, v, mu = sp.symbols("x v mu")
    ode = so.ODE([x, v], [v, mu * (1 - x ** 2) * v - x], params=[mu])

    def fun(t, y, m):
        return [y[1], m * (1 - y[0] ** 2) * y[1] - y[0]]

    def jac(t, y, m):
        return [[0.0, 1.0], [-2 * m * y[0] * y[1] - 1.0, m * (1 - y[0] ** 2)]]

    params = 1000.0 * rng.uniform(0.5, 2, (n, 1))
    y0 = np.tile([2.0, 0.0], (n, 1))
    return dict(ode=ode, fun=fun, jac=jac, params=params, y0=y0, t=np.array([0.0, 500.0, 1000.0]),
                rtol=1e-6, atol=1e-8)


def brusselator(n, rng, points=16):
    """1-D Brusselator, u_t = A + u²v - (B+1)u + α u_xx, v_t = Bu - u²v + α v_xx on (0, 1) with
    u = 1, v = 3 at the ends, α = 1/50, on ``points`` interior points (D = 2·points, stored
    u0, v0, u1, v1, ..); each trajectory its own B = 3·U(0.8, 1.2)."""
    B = sp.Symbol("B")
    u, v = sp.symbols(f"u0:{points}"), sp.symbols(f"v0:{points}")
    c = (points + 1) ** 2 / 50.0
    rhs = []
    for i in range(points):
        ul, ur = (u[i - 1] if i else 1.0), (u[i + 1] if i < points - 1 else 1.0)
        vl, vr = (v[i - 1] if i else 3.0), (v[i + 1] if i < points - 1 else 3.0)
        rhs += [1.0 + u[i] ** 2 * v[i] - (B + 1) * u[i] + c * (ul - 2 * u[i] + ur),
                B * u[i] - u[i] ** 2 * v[i] + c * (vl - 2 * v[i] + vr)]
    states = [s for pair in zip(u, v) for s in pair]
    ode = so.ODE(states, rhs, params=[B])
    fun_l = sp.lambdify((states, B), rhs, "numpy")
    jac_l = sp.lambdify((states, B), sp.Matrix(rhs).jacobian(states), "numpy")

    def fun(t, y, b):
        return fun_l(y, b)

    def jac(t, y, b):
        return jac_l(y, b)

    x = np.arange(1, points + 1) / (points + 1)
    y0 = np.tile(np.column_stack([1 + np.sin(2 * np.pi * x), np.full(points, 3.0)]).ravel(),
                 (n, 1))
    params = 3.0 * rng.uniform(0.8, 1.2, (n, 1))
    return dict(ode=ode, fun=fun, jac=jac, params=params, y0=y0, t=np.linspace(0.0, 10.0, 11),
                rtol=1e-6, atol=1e-8)


def pollu_boxes(n, rng):
    """Verwer's POLLU air chemistry (20 species, 25 reactions; symode.symbolic.kinetics.pollu),
    one box of air per trajectory with its own rate constants k·U(0.8, 1.2), saved at t = 0, 1,
    5, 15, 30, 60 minutes. The step's LU is the sparse one."""
    ode, y0, k = so_pollu()
    states, params = list(ode.states), list(ode.params)
    fun_l = sp.lambdify((states, *params), list(ode.rhs), "numpy")
    jac_l = sp.lambdify((states, *params), ode.jacobian, "numpy")

    def fun(t, y, *kk):
        return fun_l(y, *kk)

    def jac(t, y, *kk):
        return jac_l(y, *kk)

    return dict(ode=ode, fun=fun, jac=jac, params=k * rng.uniform(0.8, 1.2, (n, len(k))),
                y0=np.tile(y0, (n, 1)), t=np.array([0.0, 1.0, 5.0, 15.0, 30.0, 60.0]),
                rtol=1e-6, atol=1e-10)


PROBLEMS = {"robertson": robertson, "vdp": van_der_pol, "brusselator": brusselator,
            "pollu": pollu_boxes}


def best_of(fn, repeat):
    start = time.perf_counter()
    out = fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, min(times), first


def scipy_run(p, method, idx, rtol, atol):
    ys, nfev = [], 0
    for b in idx:
        r = solve_ivp(p["fun"], (p["t"][0], p["t"][-1]), p["y0"][b], method=method,
                      t_eval=p["t"], rtol=rtol, atol=atol, args=tuple(p["params"][b]),
                      jac=p["jac"])
        if not r.success:
            raise RuntimeError(f"scipy {method} failed on trajectory {b}: {r.message}")
        ys.append(r.y.T)
        nfev += r.nfev
    return np.stack(ys, axis=1), nfev / len(idx)


def diffrax_solver(p):
    """``run(rtol, atol)``: Kvaerno5 under jit(vmap) over the batch, the tolerances traced (one
    compilation serves every tolerance); returns (T, batch, dim)."""
    import diffrax
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    fun = p["fun"]

    def rhs(t, y, args):
        return jnp.stack(fun(t, y, *args))

    def one(y0, args, rtol, atol):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(rhs), diffrax.Kvaerno5(), p["t"][0], p["t"][-1], None, y0, args,
            saveat=diffrax.SaveAt(ts=jnp.asarray(p["t"])),
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
            max_steps=1_000_000)
        return sol.ys

    solve = jax.jit(jax.vmap(one, in_axes=(0, 0, None, None)))
    y0, args = jnp.asarray(p["y0"]), tuple(jnp.asarray(c) for c in p["params"].T)

    def run(rtol, atol):
        out = solve(y0, args, jnp.float64(rtol), jnp.float64(atol)).block_until_ready()
        return np.transpose(np.asarray(out), (1, 0, 2))

    return run


def diffrax_run(p, repeat):
    run = diffrax_solver(p)
    return best_of(lambda: run(p["rtol"], p["atol"]), repeat)


def print_table(title, rows, base, err_label, width=32):
    """The rows {name: {seconds, first, err, work}} with their times relative to row ``base``."""
    print(f"\n{title}")
    print(f"{'method':{width}s} {'seconds':>9s} {'vs symode':>10s} {'first call':>10s} "
          f"{err_label:>12s}  work/traj")
    for row, r in rows.items():
        print(f"{row:{width}s} {r['seconds']:9.4f} {r['seconds'] / rows[base]['seconds']:9.1f}x "
              f"{r['first']:10.2f} {r['err']:12.2e}  {r['work']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--problems", default="robertson,vdp,pollu")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scipy-subset", type=int, default=20)
    parser.add_argument("--tight-subset", type=int, default=10)
    parser.add_argument("--skip-peers", default="", help="comma list of radau,bdf,lsoda,diffrax")
    parser.add_argument("--methods", default="rodas4,rodas5p",
                        help="symode's stiff methods (the first is the 'vs symode' base)")
    parser.add_argument("--cuda", action="store_true",
                        help="also run symode's methods on the GPU (device='cuda')")
    args = parser.parse_args()
    methods = args.methods.split(",")
    skip = set(filter(None, args.skip_peers.split(",")))
    results = {}
    for name in args.problems.split(","):
        p = PROBLEMS[name](args.n, np.random.default_rng(0))
        rtol, atol = p["rtol"], p["atol"]
        tight_idx = range(min(args.tight_subset, args.scipy_subset, args.n))
        ref, _ = scipy_run(p, "Radau", tight_idx, 1e-11, atol * 1e-3)
        rows = {}

        def record(row, seconds, first, y, work):
            err = float(np.max(np.abs(y[:, :len(tight_idx)] - ref)))
            rows[row] = dict(seconds=seconds, first=first, err=err, work=work)

        for method in methods:
            for device in ("cpu", "cuda") if args.cuda else ("cpu",):
                sol, best, first = best_of(
                    lambda: so.solve(p["ode"], p["y0"], p["t"], params=p["params"],
                                     method=method, rtol=rtol, atol=atol, device=device),
                    args.repeat)
                record(f"symode {method}" + (" (cuda)" if device == "cuda" else ""), best,
                       first, sol.y,
                       f"{sol.stats.nfev.mean():.0f} f, {sol.stats.naccept.mean():.0f} steps")
        idx = range(min(args.scipy_subset, args.n))
        for method in ("Radau", "BDF", "LSODA"):
            if method.lower() in skip:
                continue
            start = time.perf_counter()
            y, nfev = scipy_run(p, method, idx, rtol, atol)
            seconds = (time.perf_counter() - start) * args.n / len(idx)
            record(f"scipy {method} (loop, scaled)", seconds, float("nan"), y, f"{nfev:.0f} f")
        if "diffrax" not in skip:
            try:
                y, best_d, first_d = diffrax_run(p, args.repeat)
                record("diffrax Kvaerno5 jit(vmap)", best_d, first_d, y, "")
            except ImportError as exc:
                print(f"diffrax: skipped ({exc})")
        print_table(f"{name}: N = {args.n}, rtol {rtol}, atol {atol}", rows,
                    f"symode {methods[0]}", "max abs err")
        results[name] = rows
    os.makedirs(os.path.join(HERE, "output"), exist_ok=True)
    with open(os.path.join(HERE, "output", "stiff.json"), "w") as fh:
        json.dump(dict(n=args.n, results=results), fh, indent=1)


if __name__ == "__main__":
    main()
