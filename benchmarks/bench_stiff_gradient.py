"""Gradients of a stiff ensemble: symode's rodas4 and rodas5p discrete adjoints against scipy's
stiff solvers on the forward-sensitivity system and, when installed, diffrax's Kvaerno5
differentiated by ``jax.grad`` under ``jit(vmap)``.

Problems (``--problem``); the loss is L = Σ_j c_j · y(t_j) with fixed random weights, and
each method returns dL/dk for every trajectory:

* ``robertson``: the Robertson chemistry problem, N trajectories with their own
  k1 = 0.04·U(0.5, 2) (k2 = 3e7, k3 = 1e4), y0 = (1, 0, 0), saved at t = 0, 1e-3, 1e-2, ..,
  1e3, rtol 1e-6, atol 1e-10 (y2's weights scaled by 1e4, since it lives near 1e-5);
* ``pollu``: Verwer's POLLU air chemistry (20 species, 25 rate constants; symode's step LU is
  the sparse one), one box per trajectory with rate constants k·U(0.8, 1.2), saved at t = 0,
  1, 5, 15, 30, 60 min, rtol 1e-6, atol 1e-10.

Methods:

* symode: ``solve_vjp(..., method="rodas4")`` (and ``"rodas5p"``) and its pullback (forward
  solve, recorded steps, then the backward sweep through the Rosenbrock steps);
* scipy (what a scipy user would write), in a Python loop over ``--scipy-subset`` trajectories,
  time scaled to N: for Robertson the 12 equations y' = f, S' = J S + ∂f/∂k for S = ∂y/∂k with
  the exact Jacobian of that system (derived with sympy), Radau / BDF / LSODA,
  dL/dk = Σ_j c_j S_j; for POLLU (520 such equations) central differences of LSODA in log k;
* diffrax: Kvaerno5 with its default adjoint (back-propagation through the solver's steps).

Error: the largest relative difference of k·dL/dk from a reference on the first
``--tight-subset`` trajectories (relative to each trajectory's largest entry): Radau's
sensitivities at rtol 1e-11 (Robertson), central differences of Radau at rtol 1e-11 in log k
(POLLU).

Run:  python benchmarks/bench_stiff_gradient.py [--problem robertson|pollu] [--n 1000]
      [--methods rodas4,rodas5p] [--cuda]
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
from bench_stiff import best_of, print_table
from symode.symbolic.kinetics import pollu

HERE = os.path.dirname(os.path.abspath(__file__))


def robertson(n, rng):
    y = sp.symbols("y1 y2 y3")
    k = sp.symbols("k1 k2 k3")
    f = [-k[0] * y[0] + k[2] * y[1] * y[2], k[0] * y[0] - k[1] * y[1] ** 2 - k[2] * y[1] * y[2],
         k[1] * y[1] ** 2]
    ode = so.ODE(list(y), f, params=list(k))
    params = np.column_stack([0.04 * rng.uniform(0.5, 2, n), np.full(n, 3e7), np.full(n, 1e4)])
    t = np.concatenate([[0.0], np.logspace(-3, 3, 7)])
    c = rng.normal(size=(len(t), 3)) * np.array([1.0, 1e4, 1.0])
    return dict(ode=ode, y=y, k=k, f=f, params=params, y0=np.tile([1.0, 0.0, 0.0], (n, 1)), t=t,
                c=c, rtol=1e-6, atol=1e-10)


def pollu_boxes(n, rng):
    ode, y0, k = pollu()
    t = np.array([0.0, 1.0, 5.0, 15.0, 30.0, 60.0])
    return dict(ode=ode, y=list(ode.states), k=list(ode.params), f=list(ode.rhs),
                params=k * rng.uniform(0.8, 1.2, (n, len(k))), y0=np.tile(y0, (n, 1)), t=t,
                c=rng.normal(size=(len(t), ode.dim)), rtol=1e-6, atol=1e-10)


PROBLEMS = {"robertson": robertson, "pollu": pollu_boxes}


def log_k_differences(p, method, idx, rtol, atol, eps=1e-4):
    """dL/dk by central differences of scipy's ``method`` in log k (each constant perturbed by
    a factor exp(±eps)), trajectory by trajectory; returns (gradients, f evaluations each)."""
    fun = sp.lambdify([p["y"], p["k"]], p["f"], "numpy")
    jac = sp.lambdify([p["y"], p["k"]], sp.Matrix(p["f"]).jacobian(p["y"]), "numpy")
    out, nfev = [], 0

    def loss(b, kk):
        nonlocal nfev
        r = solve_ivp(lambda t, y: fun(y, kk), (p["t"][0], p["t"][-1]), p["y0"][b],
                      method=method, t_eval=p["t"], rtol=rtol, atol=atol,
                      jac=lambda t, y: jac(y, kk))
        if not r.success:
            raise RuntimeError(f"scipy {method} failed on trajectory {b}: {r.message}")
        nfev += r.nfev
        return np.sum(p["c"] * r.y.T)

    for b in idx:
        k = p["params"][b]
        g = np.empty(len(k))
        for q in range(len(k)):
            up, down = k.copy(), k.copy()
            up[q] *= np.exp(eps)
            down[q] *= np.exp(-eps)
            g[q] = (loss(b, up) - loss(b, down)) / (2 * eps) / k[q]
        out.append(g)
    return np.array(out), nfev / len(idx)


def sensitivity_system(p):
    """Right-hand side and exact Jacobian of [y, vec(S)], S = ∂y/∂k, as numpy functions."""
    y, k, f = p["y"], p["k"], sp.Matrix(p["f"])
    S = sp.Matrix(3, 3, sp.symbols("s0:9"))
    J = f.jacobian(y)
    rhs = list(f) + list(J * S + f.jacobian(k))
    state = list(y) + list(S)
    jac = sp.Matrix(rhs).jacobian(state)
    fun = sp.lambdify([state, k], rhs, "numpy")
    jfun = sp.lambdify([state, k], jac, "numpy")
    return (lambda t, z, *kk: fun(z, kk)), (lambda t, z, *kk: jfun(z, kk))


def scipy_gradients(p, fun, jac, method, idx, rtol, atol):
    out, nfev = [], 0
    z0 = np.concatenate([[1.0, 0.0, 0.0], np.zeros(9)])
    for b in idx:
        r = solve_ivp(fun, (p["t"][0], p["t"][-1]), z0, method=method, t_eval=p["t"], rtol=rtol,
                      atol=atol, args=tuple(p["params"][b]), jac=jac)
        if not r.success:
            raise RuntimeError(f"scipy {method} failed on trajectory {b}: {r.message}")
        S = r.y.T[:, 3:].reshape(-1, 3, 3)            # (T, state, k)
        out.append(np.einsum("ti,tik->k", p["c"], S))
        nfev += r.nfev
    return np.array(out), nfev / len(idx)


def symode_gradients(p, method, device="cpu"):
    sol, pullback = so.solve_vjp(p["ode"], p["y0"], p["t"], params=p["params"], method=method,
                                 rtol=p["rtol"], atol=p["atol"], device=device)
    g = pullback(np.broadcast_to(p["c"][:, None], sol.y.shape))
    return g.params, sol, g


def diffrax_gradients(p, repeat):
    import diffrax
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    c = jnp.asarray(p["c"])

    f = sp.lambdify([p["y"], p["k"]], p["f"], "numpy")     # arithmetic only: traces in jax

    def rhs(t, y, k):
        return jnp.stack(f(y, k))

    def loss(k, y0):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(rhs), diffrax.Kvaerno5(), p["t"][0], p["t"][-1], None, y0, k,
            saveat=diffrax.SaveAt(ts=jnp.asarray(p["t"])),
            stepsize_controller=diffrax.PIDController(rtol=p["rtol"], atol=p["atol"]),
            max_steps=100_000)
        return jnp.sum(c * sol.ys)

    grad = jax.jit(jax.vmap(jax.grad(loss)))
    k, y0 = jnp.asarray(p["params"]), jnp.asarray(p["y0"])
    out, best, first = best_of(lambda: grad(k, y0).block_until_ready(), repeat)
    return np.asarray(out), best, first


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problem", default="robertson", choices=sorted(PROBLEMS))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scipy-subset", type=int, default=20)
    parser.add_argument("--tight-subset", type=int, default=None,
                        help="trajectories checked against the reference (10; POLLU: 3)")
    parser.add_argument("--skip-peers", default="", help="comma list of radau,bdf,lsoda,diffrax")
    parser.add_argument("--methods", default="rodas4,rodas5p",
                        help="symode's stiff methods (the first is the 'vs symode' base)")
    parser.add_argument("--cuda", action="store_true",
                        help="also run symode's adjoints on the GPU (device='cuda')")
    args = parser.parse_args()
    methods = args.methods.split(",")
    skip = set(filter(None, args.skip_peers.split(",")))
    p = PROBLEMS[args.problem](args.n, np.random.default_rng(0))
    tight_subset = args.tight_subset or (10 if args.problem == "robertson" else 3)
    tight = range(min(tight_subset, args.scipy_subset, args.n))
    if args.problem == "robertson":
        fun, jac = sensitivity_system(p)
        ref, _ = scipy_gradients(p, fun, jac, "Radau", tight, 1e-11, 1e-16)
    else:
        ref, _ = log_k_differences(p, "Radau", tight, 1e-11, 1e-16)
    ref_scaled = ref * p["params"][:len(tight)]
    rows = {}

    def record(row, seconds, first, grads, work):
        scaled = grads[:len(tight)] * p["params"][:len(tight)]
        err = np.abs(scaled - ref_scaled).max(axis=1) / np.abs(ref_scaled).max(axis=1)
        rows[row] = dict(seconds=seconds, first=first, err=float(err.max()), work=work)

    for method in methods:
        (grads, sol, g), best, first = best_of(lambda: symode_gradients(p, method), args.repeat)
        _, fwd, _ = best_of(
            lambda: so.solve(p["ode"], p["y0"], p["t"], params=p["params"], method=method,
                             rtol=p["rtol"], atol=p["atol"]), args.repeat)
        record(f"symode {method} discrete adjoint", best, first, grads,
               f"{sol.stats.naccept.mean():.0f} steps; forward alone {fwd * 1e3:.1f} ms")
        if args.cuda:
            (grads_g, _, _), best_g, first_g = best_of(
                lambda: symode_gradients(p, method, "cuda"), args.repeat)
            record(f"symode {method} discrete adjoint (cuda)", best_g, first_g, grads_g, "")
    idx = range(min(args.scipy_subset, args.n))
    for method in ("Radau", "BDF", "LSODA"):
        if method.lower() in skip or (args.problem != "robertson" and method != "LSODA"):
            continue
        start = time.perf_counter()
        if args.problem == "robertson":
            grads_s, nfev = scipy_gradients(p, fun, jac, method, idx, p["rtol"], p["atol"])
            row, work = f"scipy {method} sensitivities (scaled)", f"{nfev:.0f} f of 12 equations"
        else:
            grads_s, nfev = log_k_differences(p, method, idx, p["rtol"], p["atol"])
            row, work = f"scipy {method} differences (scaled)", f"{nfev:.0f} f in 50 solves"
        seconds = (time.perf_counter() - start) * args.n / len(idx)
        record(row, seconds, float("nan"), grads_s, work)
    if "diffrax" not in skip:
        try:
            grads_d, best_d, first_d = diffrax_gradients(p, args.repeat)
            record("diffrax Kvaerno5 jit(vmap(grad))", best_d, first_d, grads_d, "")
        except ImportError as exc:
            print(f"diffrax: skipped ({exc})")
    print_table(f"{args.problem} dL/dk: N = {args.n}, rtol {p['rtol']}, atol {p['atol']}", rows,
                f"symode {methods[0]} discrete adjoint", "max rel err", width=40)
    os.makedirs(os.path.join(HERE, "output"), exist_ok=True)
    with open(os.path.join(HERE, "output", f"stiff_gradient_{args.problem}.json"), "w") as fh:
        json.dump(dict(problem=args.problem, n=args.n, results=rows), fh, indent=1)


if __name__ == "__main__":
    main()
