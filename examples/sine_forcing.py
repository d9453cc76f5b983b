"""A right-hand side that depends on time: dh/dt = t sin(lambda t), with exact solution

    h(t) = (sin(lambda t) - lambda t cos(lambda t)) / lambda^2 + h0.

The time symbol ``t`` may appear in the expressions like any state or parameter. Three
frequencies lambda are solved in one call, one parameter value per trajectory.

Run:  python examples/sine_forcing.py     (figure: examples/output/sine_forcing.png)
"""

import numpy as np
import sympy as sp

import symode as so
from _plotting import pyplot, save

H0 = 1.0
LAMBDAS = np.array([0.5, 1.0, 2.0])


def exact(t, lam):
    return (np.sin(lam * t) - lam * t * np.cos(lam * t)) / lam**2 + H0


def main():
    h, lam, t = sp.symbols("h lambda t")
    forced = so.ODE(states=[h], rhs=[sp.sin(lam * t) * t], params=[lam], t=t)

    times = np.linspace(0.0, 12.0, 121)
    y0 = np.full((len(LAMBDAS), 1), H0)
    sol = so.solve(forced, y0, times, params=LAMBDAS[:, None], method="tsit5",
                   rtol=1e-8, atol=1e-10)
    ref = exact(times[:, None], LAMBDAS[None, :])             # (T, batch)
    err = np.abs(sol.y[:, :, 0] - ref)
    for b, lam_b in enumerate(LAMBDAS):
        print(f"lambda = {lam_b:3.1f}: h(12) = {sol.y[-1, b, 0]: .8f} (exact {ref[-1, b]: .8f}), "
              f"max error {err[:, b].max():.2e}, {sol.stats.nfev[b]} evaluations")
    print(f"max error over all frequencies and times: {err.max():.2e}")

    plt = pyplot()
    if plt is None:
        return
    fig, (ax, ax_err) = plt.subplots(1, 2, figsize=(11, 4.2))
    fine = np.linspace(0.0, 12.0, 600)
    for b, lam_b in enumerate(LAMBDAS):
        line, = ax.plot(fine, exact(fine, lam_b), lw=1, label=f"exact, lambda = {lam_b}")
        ax.plot(times[::3], sol.y[::3, b, 0], "o", ms=3, color=line.get_color())
        ax_err.semilogy(times[1:], np.maximum(err[1:, b], 1e-17), color=line.get_color(),
                        label=f"lambda = {lam_b}")
    ax.set(xlabel="t", ylabel="h(t)", title="dh/dt = t sin(lambda t)   (dots: symode, tsit5)")
    ax.legend(fontsize=8)
    ax_err.set(xlabel="t", ylabel="|h - exact|", title="Absolute error (rtol = 1e-8)")
    ax_err.legend(fontsize=8)
    fig.tight_layout()
    save(fig, "sine_forcing.png")


if __name__ == "__main__":
    main()
