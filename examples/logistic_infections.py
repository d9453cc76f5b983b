"""Logistic growth of infections: dI/dt = k I (1 - I/N), against its exact solution

    I(t) = N / (1 + (N/I0 - 1) e^(-k t)).

In a town of N = 10,000 people one infected person (I0 = 1) passes the infection on at rate k
per day while most people are still susceptible; growth slows as the town runs out of them.
Half the town is infected at t = ln(N/I0 - 1) / k.

Run:  python examples/logistic_infections.py     (figure: examples/output/logistic_infections.png)
"""

import numpy as np
import sympy as sp

import symode as so
from _plotting import pyplot, save

N, I0, K = 10_000.0, 1.0, 0.6


def exact(t):
    return N / (1.0 + (N / I0 - 1.0) * np.exp(-K * t))


def main():
    I, k, n = sp.symbols("I k N")
    epidemic = so.ODE(states=[I], rhs=[k * I * (1 - I / n)], params=[k, n])

    t = np.linspace(0.0, 30.0, 61)                            # days
    sol = so.solve(epidemic, [I0], t, params=[K, N], rtol=1e-8, atol=1e-8)
    infected = sol.y[:, 0]                                     # y0 of shape (dim,): y is (T, dim)
    err = np.abs(infected - exact(t))

    t_half = np.log(N / I0 - 1.0) / K
    print(f"k = {K}/day, N = {N:.0f}, I0 = {I0:.0f}")
    print(f"half the town infected at t = {t_half:.3f} days")
    print(f"I(30) = {infected[-1]:.4f} (exact {exact(t[-1]):.4f})")
    print(f"max absolute error {err.max():.2e} people, max relative error "
          f"{(err / exact(t)).max():.2e}")
    print(sol.stats)

    plt = pyplot()
    if plt is None:
        return
    fig, (ax, ax_err) = plt.subplots(1, 2, figsize=(11, 4.2))
    t_fine = np.linspace(0.0, 30.0, 400)
    ax.plot(t_fine, exact(t_fine), color="0.2", lw=1, label="exact")
    ax.plot(t, infected, "o", ms=3.5, color="tab:red", label="symode (dopri5)")
    ax.axvline(t_half, color="0.6", ls=":", lw=1)
    ax.annotate("half infected", (t_half, N / 2), xytext=(t_half + 1.5, N / 2 - 1500),
                fontsize=8, arrowprops=dict(arrowstyle="->", color="0.5"))
    ax.set(xlabel="t (days)", ylabel="infected I(t)", title="dI/dt = k I (1 - I/N)")
    ax.legend(fontsize=8, loc="lower right")
    ax_err.semilogy(t[1:], err[1:] / exact(t[1:]), color="tab:red")
    ax_err.set(xlabel="t (days)", ylabel="relative error", title="Error against the exact I(t)")
    fig.tight_layout()
    save(fig, "logistic_infections.png")


if __name__ == "__main__":
    main()
