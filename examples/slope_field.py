"""Slope field of dy/dt = t - y^2 with solution curves from one batched solve.

The slope is zero on the parabola y^2 = t. Curves are drawn into the funnel around its upper
branch y = +sqrt(t); curves that start low enough fall to -infinity in finite time (for large t
the dividing curve runs close to the lower branch y = -sqrt(t)). The script solves
eight curves at once, each on its own time grid (``t`` of shape (batch, T), each starting at
its own t0), then shows what symode says when asked to follow a curve through a blow-up.
The figure is drawn with ``symode.viz.slope_field`` and ``symode.viz.trajectories``.

Run:  python examples/slope_field.py     (figure: examples/output/slope_field.png)
"""

import numpy as np
import sympy as sp

import symode as so
from _plotting import pyplot, save

T_END = 4.0
STARTS = np.array([(0.0, -0.6), (0.0, 0.0), (0.0, 1.0), (0.0, 3.0),   # (t0, y0)
                   (1.0, 3.0), (2.0, 3.0), (2.0, -1.5), (3.0, -1.8)])


def main():
    y, t = sp.symbols("y t")
    riccati = so.ODE(states=[y], rhs=[t - y**2], t=t)

    grids = np.stack([np.linspace(t0, T_END, 121) for t0, _ in STARTS])   # (batch, T)
    sol = so.solve(riccati, STARTS[:, 1:], grids, rtol=1e-8, atol=1e-10)
    curves = sol.y[:, :, 0]                                                # (T, batch)
    for (t0, y0), y_end in zip(STARTS, curves[-1]):
        print(f"start (t0={t0:.0f}, y0={y0:5.2f}) -> y({T_END:.0f}) = {y_end: .6f}")
    print(f"sqrt({T_END:.0f}) = {np.sqrt(T_END):.6f}; the funnel's curves end just below it")

    # a curve from (0, -1) lies below the unstable branch and blows up near t = 1.107
    try:
        so.solve(riccati, [-1.0], [0.0, T_END])
    except so.SymodeError as exc:
        print(f"\nsolving from y(0) = -1 up to t = {T_END:.0f} fails as it should:\n"
              f"  {type(exc).__name__}: {exc}")
    t_short = np.linspace(0.0, 1.0, 101)
    escape = so.solve(riccati, [-1.0], t_short, rtol=1e-8, atol=1e-10).y[:, 0]
    print(f"up to t = 1 it is fine: y(1) = {escape[-1]:.4f}")

    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(8, 5.5))
    so.viz.slope_field(riccati, (0.0, T_END), (-3.0, 3.0), n=(25, 21), ax=ax)
    branch = np.linspace(0.0, T_END, 200)
    ax.plot(branch, np.sqrt(branch), "k--", lw=0.8, label="slope 0: y = +sqrt(t), -sqrt(t)")
    ax.plot(branch, -np.sqrt(branch), "k--", lw=0.8)
    so.viz.trajectories(sol, dims=0, names=riccati, ax=ax, lw=1.6, marker="o", markevery=[0],
                        ms=4)
    ax.plot(t_short, escape, lw=1.6, color="tab:red", ls="-.", label="from y(0) = -1: blows up")
    ax.set(title="dy/dt = t - y^2: slope field and solutions (dots mark the starts)")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    save(fig, "slope_field.png")


if __name__ == "__main__":
    main()
