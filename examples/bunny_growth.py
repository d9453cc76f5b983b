"""Exponential growth: dB/dt = r B, compared with the exact B(t) = B0 e^(r t).

A colony of B0 = 2 rabbits grows at three rates r (per month); one call solves all three,
each trajectory with its own parameter value (``params`` of shape (batch, 1)).

Run:  python examples/bunny_growth.py     (figure: examples/output/bunny_growth.png)
"""

import numpy as np
import sympy as sp

import symode as so
from _plotting import pyplot, save

B0 = 2.0
RATES = np.array([0.2, 0.35, 0.5])           # per month


def main():
    B, r = sp.symbols("B r")
    growth = so.ODE(states=[B], rhs=[r * B], params=[r])

    t = np.linspace(0.0, 12.0, 49)            # months, (T,)
    y0 = np.full((len(RATES), 1), B0)         # (batch, 1)
    sol = so.solve(growth, y0, t, params=RATES[:, None], rtol=1e-8, atol=1e-10)

    exact = B0 * np.exp(RATES[None, :] * t[:, None])       # (T, batch)
    numeric = sol.y[:, :, 0]
    rel = np.abs(numeric - exact) / exact
    for b, rate in enumerate(RATES):
        print(f"r = {rate:4.2f}/month: B(12) = {numeric[-1, b]:10.4f} rabbits "
              f"(exact {exact[-1, b]:10.4f}), max relative error {rel[:, b].max():.2e}, "
              f"{sol.stats.nfev[b]} evaluations")
    print(f"max relative error over all rates and times: {rel.max():.2e}")

    plt = pyplot()
    if plt is None:
        return
    fig, (ax, ax_err) = plt.subplots(1, 2, figsize=(11, 4.2))
    t_fine = np.linspace(0.0, 12.0, 400)
    for b, rate in enumerate(RATES):
        line, = ax.plot(t_fine, B0 * np.exp(rate * t_fine), lw=1, label=f"exact, r = {rate}")
        ax.plot(t, numeric[:, b], "o", ms=3.5, color=line.get_color(), label="symode (dopri5)"
                if b == 0 else None)
        ax_err.semilogy(t[1:], rel[1:, b], color=line.get_color(), label=f"r = {rate}")
    ax.set(xlabel="t (months)", ylabel="rabbits B(t)", title="dB/dt = r B")
    ax.legend(fontsize=8)
    ax_err.set(xlabel="t (months)", ylabel="|B - B0 e^(rt)| / B0 e^(rt)",
               title="Relative error (rtol = 1e-8)")
    ax_err.legend(fontsize=8)
    fig.tight_layout()
    save(fig, "bunny_growth.png")


if __name__ == "__main__":
    main()
