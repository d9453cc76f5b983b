"""The main demo: the Lorenz system from declaration to a 10,000-trajectory ensemble.

    dx/dt = sigma (y - x),   dy/dt = x (rho - z) - y,   dz/dt = x y - beta z

1. declare the system with sympy and print what symode derives from it (Jacobian, adjoint);
2. solve 10,000 trajectories that start in a small cloud around (1, 1, 1) with dopri5, each
   with its own adaptive step, and report the time taken and the work done;
3. plot a few trajectories (x-z projection) and how the cloud spreads over time;
   the plotted trajectories are saved at 2001 times by dense output, at no extra steps.

Run:  python examples/lorenz_demo.py     (figure: examples/output/lorenz_demo.png)
"""

import time

import numpy as np
import sympy as sp

import symode as so
from _plotting import pyplot, save

BATCH = 10_000
SIGMA, RHO, BETA = 10.0, 28.0, 8.0 / 3.0


def declare():
    x, y, z, sigma, rho, beta = sp.symbols("x y z sigma rho beta")
    return so.ODE(states=[x, y, z],
                  rhs=[sigma * (y - x), x * (rho - z) - y, x * y - beta * z],
                  params=[sigma, rho, beta])


def show_derivations(lorenz):
    print("Jacobian df/dz:")
    print(sp.pretty(lorenz.jacobian))
    print("\nAdjoint system:")
    print(lorenz.adjoint().pretty())


def solve_ensemble(lorenz):
    rng = np.random.default_rng(0)
    y0 = rng.normal([1.0, 1.0, 1.0], 0.1, size=(BATCH, 3))     # (batch, dim)
    t = np.linspace(0.0, 10.0, 101)                            # (T,)
    opts = dict(params=[SIGMA, RHO, BETA], method="dopri5", rtol=1e-6, atol=1e-8)

    start = time.perf_counter()
    sol = so.solve(lorenz, y0, t, **opts)
    first = time.perf_counter() - start
    start = time.perf_counter()
    sol = so.solve(lorenz, y0, t, **opts)                      # compiled code is reused
    second = time.perf_counter() - start

    print(f"\nSolved {BATCH} trajectories on t in [0, 10] ({len(t)} saved times) "
          f"with {sol.method}, {sol.engine} engine:")
    print(f"  first call  {first:7.3f} s  (includes generating and compiling the integrator, "
          f"or loading it from the disk cache)")
    print(f"  second call {second:7.3f} s  ({1e6 * second / BATCH:.1f} us per trajectory)")
    print(f"  sol.y: {sol.y.shape}  (len(t), batch, dim)")
    print(sol.stats)
    tot = sol.stats.total()
    print(f"  total: {tot['nfev']} right-hand-side evaluations, {tot['naccept']} accepted and "
          f"{tot['nreject']} rejected steps")
    return t, sol, y0, opts


def describe_spread(t, y):
    spread = y.std(axis=1)                                     # (T, dim)
    for ti in (0.0, 2.0, 4.0, 6.0, 10.0):
        i = int(np.argmin(np.abs(t - ti)))
        print(f"  t = {t[i]:4.1f}: std of (x, y, z) over the ensemble = "
              + ", ".join(f"{s:8.4f}" for s in spread[i]))
    return spread


def dense_trajectories(lorenz, y0, opts):
    """A few trajectories saved at 2001 times: dense output, so no extra steps are taken."""
    t_fine = np.linspace(0.0, 10.0, 2001)
    fine = so.solve(lorenz, y0, t_fine, **opts)
    return t_fine, fine


def plot(t, y, spread, t_fine, y_fine):
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    ax = axes[0]
    for b in range(y_fine.shape[1]):
        ax.plot(y_fine[:, b, 0], y_fine[:, b, 2], lw=0.7, alpha=0.85, label=f"trajectory {b}")
    ax.plot(y_fine[0, :, 0], y_fine[0, :, 2], "ko", ms=3, label="starts")
    ax.set(xlabel="x", ylabel="z", title="A few trajectories, x-z projection (t from 0 to 10)")
    ax.legend(fontsize=7, loc="upper right")

    ax = axes[1]
    for i, name in enumerate("xyz"):
        ax.semilogy(t, spread[:, i], lw=1, label=f"std of {name}")
    dist = np.sqrt(((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=2))   # (T, batch)
    ax.semilogy(t, np.percentile(dist, 95, axis=1), "k--", lw=1,
                label="95th percentile of the distance to the ensemble mean")
    ax.set(xlabel="t", ylabel="spread",
           title=f"Spread of the {y.shape[1]:,}-trajectory ensemble over time")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    save(fig, "lorenz_demo.png")


def main():
    lorenz = declare()
    show_derivations(lorenz)
    t, sol, y0, opts = solve_ensemble(lorenz)
    print("\nEnsemble spread:")
    spread = describe_spread(t, sol.y)
    t_fine, fine = dense_trajectories(lorenz, y0[:5], opts)
    same = np.array_equal(fine.stats.naccept, sol.stats.naccept[:5])
    print(f"\n5 trajectories again, saved at {len(t_fine)} times instead of {len(t)}: accepted "
          f"steps {fine.stats.naccept} ({'the same' if same else 'NOT the same'} as in the "
          f"ensemble: values between steps come from the dense-output interpolant)")
    plot(t, sol.y, spread, t_fine, fine.y)


if __name__ == "__main__":
    main()
