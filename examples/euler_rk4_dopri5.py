"""Euler, RK4 and dopri5 on dy/dt = y - e^(t/2) sin(5t)/2 + 5 e^(t/2) cos(5t), y(0) = 0.

The exact solution is y = e^(t/2) sin(5t), an oscillation whose amplitude grows. Euler and
RK4 take fixed steps of one size; dopri5 picks its steps to meet a tolerance. The printout
gives each method's largest error on [0, 5] and the right-hand-side evaluations it spent.

Run:  python examples/euler_rk4_dopri5.py     (figure: examples/output/euler_rk4_dopri5.png)
"""

import numpy as np
import sympy as sp

import symode as so
from _plotting import pyplot, save

RUNS = [  # (label, method, options)
    ("Euler, h = 0.01", "euler", dict(step_size=0.01)),
    ("RK4, h = 0.05", "rk4", dict(step_size=0.05)),
    ("dopri5, rtol = 1e-6", "dopri5", dict(rtol=1e-6, atol=1e-9)),
]


def exact(t):
    return np.exp(t / 2) * np.sin(5 * t)


def main():
    y, t = sp.symbols("y t")
    rhs = y - sp.exp(t / 2) * sp.sin(5 * t) / 2 + 5 * sp.exp(t / 2) * sp.cos(5 * t)
    ode = so.ODE(states=[y], rhs=[rhs], t=t)

    times = np.linspace(0.0, 5.0, 501)
    results = []
    print(f"{'method':22s} {'max |error|':>12s} {'error at t=5':>13s} {'nfev':>6s} "
          f"{'steps':>6s}")
    for label, method, opts in RUNS:
        sol = so.solve(ode, [0.0], times, method=method, **opts)
        err = np.abs(sol.y[:, 0] - exact(times))
        results.append((label, sol, err))
        print(f"{label:22s} {err.max():12.3e} {err[-1]:13.3e} {sol.stats.nfev[0]:6d} "
              f"{sol.stats.nsteps[0]:6d}")

    plt = pyplot()
    if plt is None:
        return
    fig, (ax, ax_err) = plt.subplots(1, 2, figsize=(12, 4.4))
    ax.plot(times, exact(times), color="k", lw=2.2, alpha=0.35, label="exact e^(t/2) sin 5t")
    for label, sol, err in results:
        line, = ax.plot(times, sol.y[:, 0], lw=1, label=label)
        ax_err.semilogy(times[1:], np.maximum(err[1:], 1e-16), lw=1, color=line.get_color(),
                        label=f"{label} ({sol.stats.nfev[0]} evaluations)")
    ax.set(xlabel="t", ylabel="y(t)", title="Solutions")
    ax.legend(fontsize=8, loc="lower left")
    ax_err.set(xlabel="t", ylabel="|y - exact|", title="Error (log scale)")
    ax_err.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save(fig, "euler_rk4_dopri5.png")


if __name__ == "__main__":
    main()
