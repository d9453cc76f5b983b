"""dh/dt = 1 / (a h + b): separable, so a h^2/2 + b h = t + C with C = a h0^2/2 + b h0.

Solving the quadratic for the root that starts at h0 (where a h + b > 0):

    h(t) = (-b + sqrt(b^2 + 2 a (t + C))) / a.

The script solves for several a at once and compares with this formula; it also solves
backwards in time, from h(T) to h(0), by giving decreasing times.

Run:  python examples/reciprocal.py     (figure: examples/output/reciprocal.png)
"""

import numpy as np
import sympy as sp

import symode as so
from _plotting import pyplot, save

H0, B = 1.0, 1.0
A_VALUES = np.array([0.5, 1.0, 2.0, 4.0])


def exact(t, a, b=B, h0=H0):
    c = a * h0**2 / 2 + b * h0
    return (-b + np.sqrt(b**2 + 2 * a * (t + c))) / a


def main():
    h, a, b = sp.symbols("h a b")
    recip = so.ODE(states=[h], rhs=[1 / (a * h + b)], params=[a, b])

    t = np.linspace(0.0, 10.0, 41)
    params = np.column_stack([A_VALUES, np.full_like(A_VALUES, B)])   # (batch, 2): a, b
    y0 = np.full((len(A_VALUES), 1), H0)
    sol = so.solve(recip, y0, t, params=params, rtol=1e-9, atol=1e-12)
    ref = exact(t[:, None], A_VALUES[None, :])
    err = np.abs(sol.y[:, :, 0] - ref)
    for i, a_i in enumerate(A_VALUES):
        print(f"a = {a_i:3.1f}, b = {B}: h(10) = {sol.y[-1, i, 0]:.10f} "
              f"(exact {ref[-1, i]:.10f}), max error {err[:, i].max():.2e}")
    print(f"max error forwards: {err.max():.2e}")

    # backwards: start from the exact h(10) and integrate to t = 0 (decreasing times)
    back = so.solve(recip, ref[-1][:, None], t[::-1], params=params, rtol=1e-9, atol=1e-12)
    err_back = np.abs(back.y[:, :, 0] - ref[::-1])
    print(f"max error backwards from t = 10 to 0: {err_back.max():.2e} "
          f"(h(0) recovered: {np.round(back.y[-1, :, 0], 8)})")

    plt = pyplot()
    if plt is None:
        return
    fig, (ax, ax_err) = plt.subplots(1, 2, figsize=(11, 4.2))
    fine = np.linspace(0.0, 10.0, 400)
    for i, a_i in enumerate(A_VALUES):
        line, = ax.plot(fine, exact(fine, a_i), lw=1, label=f"exact, a = {a_i}")
        ax.plot(t, sol.y[:, i, 0], "o", ms=3, color=line.get_color())
        ax_err.semilogy(t[1:], np.maximum(err[1:, i], 1e-17), color=line.get_color(),
                        label=f"a = {a_i}")
    ax.set(xlabel="t", ylabel="h(t)", title="dh/dt = 1/(a h + b), b = 1   (dots: symode)")
    ax.legend(fontsize=8)
    ax_err.set(xlabel="t", ylabel="|h - exact|", title="Absolute error (rtol = 1e-9)")
    ax_err.legend(fontsize=8)
    fig.tight_layout()
    save(fig, "reciprocal.png")


if __name__ == "__main__":
    main()
