"""Fitting the parameters of an ODE to noisy observations by gradient descent.

Two problems, each observed at 40 times drawn at random on [0, 10], with Gaussian noise:

1. Lotka–Volterra predator–prey dynamics, dx/dt = α x − β x y, dy/dt = δ x y − γ y, with
   (α, β, δ, γ) = (1.5, 1.0, 1.0, 3.0) and (x, y)(0) = (1, 1); all four rates are fitted from
   a start 20–30 % away from them.
2. The linear spiral dz/dt = A z, A = [[−0.1, −1], [1, −0.1]], z(0) = (2, 0), declared as an
   ODE whose four parameters are the entries of A, fitted from a random matrix (entries drawn
   from N(0, 0.3²)).

The loss is the mean squared misfit at the observation times. ``so.solve_vjp`` solves the
system and returns a pullback that turns dL/dy at the saved times into dL/dθ by the
(checkpointed) adjoint method; a few lines of Adam do the rest. Each fit starts on the early
observations and widens its window to all of them, which keeps it out of the local minima that
a wrongly wound oscillation makes. The script prints the adjoint equations symode derives for
each system, the loss as the fit goes, and the fitted parameters next to the true ones.

Run:  python examples/fit_parameters.py
      (figures: examples/output/fit_parameters_lotka_volterra.png, fit_parameters_spiral.png)
"""

import time

import numpy as np
import sympy as sp

import symode as so
from _plotting import pyplot, save

RTOL, ATOL = 1e-7, 1e-9        # solves inside the fit
N_OBS, T_END = 40, 10.0        # observation times, drawn uniformly on [0, T_END]
ITERS, GROW, LR = 600, 300, 0.05
LOG_EVERY = 100
CLOSE = 0.05                   # a fit is close when parameters are within 5 % (relative)
SEED = 7


class Adam:
    """Adam (Kingma & Ba, 2015): each coordinate steps by its running mean gradient over the
    root of its running mean squared gradient, so parameters of any scale move at ~``lr``.

    ``beta2`` is shorter than the usual 0.999: the first gradients, from a start far off, can
    be orders of magnitude larger than later ones and would otherwise damp the steps for
    hundreds of iterations.
    """

    def __init__(self, x, lr, beta1=0.9, beta2=0.99, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m, self.v, self.k = np.zeros_like(x), np.zeros_like(x), 0

    def step(self, x, g):
        self.k += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * g
        self.v = self.beta2 * self.v + (1 - self.beta2) * g * g
        m_hat = self.m / (1 - self.beta1 ** self.k)     # both averages start at zero
        v_hat = self.v / (1 - self.beta2 ** self.k)
        return x - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def lotka_volterra():
    x, y, alpha, beta, delta, gamma = sp.symbols("x y alpha beta delta gamma")
    return so.ODE(states=[x, y], rhs=[alpha * x - beta * x * y, delta * x * y - gamma * y],
                  params=[alpha, beta, delta, gamma])


def linear_spiral():
    z1, z2 = sp.symbols("z1 z2")
    A = sp.Matrix(2, 2, sp.symbols("a11 a12 a21 a22"))
    return so.ODE(states=[z1, z2], rhs=A * sp.Matrix([z1, z2]), params=list(A))


def observe(ode, z0, theta, noise, rng):
    """Noisy observations of the solution at N_OBS sorted random times.

    Returns ``t`` of shape (1 + N_OBS,), the start time 0 followed by the observation times,
    and ``data`` of shape (N_OBS, dim).
    """
    t = np.concatenate([[0.0], np.sort(rng.uniform(0.0, T_END, N_OBS))])
    exact = so.solve(ode, z0, t, params=theta, rtol=1e-10, atol=1e-12).y   # (1 + N_OBS, dim)
    return t, exact[1:] + noise * rng.standard_normal(exact[1:].shape)


def loss_and_gradient(ode, z0, t, data, theta, n_fit):
    """Mean squared misfit over all observations, and the gradient dL/dθ of the misfit over
    the first ``n_fit`` of them."""
    # checkpoint: on the way back z is reset to the stored forward state at every step, so the
    # gradient is accurate where backsolve, which re-integrates z backwards, drifts (dissipative
    # or chaotic systems, where backsolve's gradients are off by percents; docs/adjoints.md).
    # On these two mild problems the adjoints agree to about 1e-7, but a fit may wander through
    # parameters where the flow contracts hard, and the price is small: one stored state per
    # forward step, a few hundred numbers here.
    sol, pullback = so.solve_vjp(ode, z0, t, params=theta, adjoint="checkpoint",
                                 rtol=RTOL, atol=ATOL)
    r = sol.y[1:] - data                                # sol.y[0] is z0 itself
    dL_dy = np.zeros_like(sol.y)                        # (1 + N_OBS, dim)
    dL_dy[1:n_fit + 1] = 2.0 * r[:n_fit] / r[:n_fit].size
    return float(np.mean(r ** 2)), pullback(dL_dy).params


def fit(ode, z0, t, data, theta0, iters, lr, positive=False, grow=0, first_window=2.0):
    """Adam on the misfit; returns the fitted θ and the loss of every iteration.

    ``positive`` fits log θ, which keeps rates positive and puts them on one scale.
    ``grow``: the fit starts on the observations in [0, first_window] alone, stays there for
    the first third of ``grow`` iterations, then widens its window steadily to all of them.
    After that the learning rate falls geometrically to ``lr / 100``: Adam's steps have a
    roughly constant size, so they jitter around the minimum unless they shrink.
    """
    u = np.log(theta0) if positive else np.array(theta0, dtype=float)
    opt, losses = Adam(u, lr), []
    for it in range(1, iters + 1):
        theta = np.exp(u) if positive else u
        widen = np.clip((3 * it - grow) / (2 * grow), 0.0, 1.0) if grow else 1.0
        horizon = first_window + (T_END - first_window) * widen
        opt.lr = lr * 0.01 ** (max(it - grow, 0) / (iters - grow))
        n_fit = max(int(np.searchsorted(t[1:], horizon, side="right")), 2)
        loss, g = loss_and_gradient(ode, z0, t, data, theta, n_fit)
        u = opt.step(u, g * theta if positive else g)    # dL/d(log θ) = θ dL/dθ
        losses.append(loss)
        if it == 1 or it % LOG_EVERY == 0:
            print(f"  iter {it:4d}  loss {loss:.3e}  window [0, {horizon:4.1f}]  "
                  f"θ = {np.array2string(theta, precision=4, floatmode='fixed')}")
    return (np.exp(u) if positive else u), losses


def report(names, fitted, true):
    """Print fitted against true parameters; returns the relative errors."""
    rel = np.abs(fitted - true) / np.abs(true)
    print(f"  {'':8s} {'fitted':>9s} {'true':>9s} {'rel. error':>11s}")
    for name, f, tr, e in zip(names, fitted, true, rel):
        print(f"  {name:8s} {f:9.4f} {tr:9.4f} {e:11.2%}")
    return rel


def run_lotka_volterra(rng):
    ode = lotka_volterra()
    print("Lotka-Volterra\n" + str(ode.adjoint()) + "\n")
    true, z0 = np.array([1.5, 1.0, 1.0, 3.0]), np.array([1.0, 1.0])
    t, data = observe(ode, z0, true, noise=0.1, rng=rng)
    start = true * (1 + rng.choice([-1, 1], 4) * rng.uniform(0.2, 0.3, 4))
    # The period is about 3; the first window spans more than one cycle, since the first bump
    # alone does not pin down four rates and lets them wander off.
    theta, losses = fit(ode, z0, t, data, start, ITERS, LR, positive=True, grow=GROW,
                        first_window=4.0)
    rel = report(["alpha", "beta", "delta", "gamma"], theta, true)
    print(f"  largest relative error {rel.max():.2%}: "
          f"{'close' if rel.max() < CLOSE else 'NOT close'} (< {CLOSE:.0%})")
    print(f"  final loss {losses[-1]:.4f}, noise variance 0.1² = 0.0100\n")
    return ode, z0, t, data, true, theta, losses


def run_spiral(rng):
    ode = linear_spiral()
    print("Linear spiral dz/dt = A z\n" + str(ode.adjoint()) + "\n")
    true, z0 = np.array([-0.1, -1.0, 1.0, -0.1]), np.array([2.0, 0.0])
    t, data = observe(ode, z0, true, noise=0.02, rng=rng)
    start = rng.normal(0.0, 0.3, 4)
    # Fitted to all ten time units at once, a random A usually locks onto a wrong rotation
    # (each wrong winding is a local minimum of the misfit); a window growing from [0, 2]
    # fixes the frequency on the first quarter turn and then refines it.
    theta, losses = fit(ode, z0, t, data, start, ITERS, LR, grow=GROW)
    report(["a11", "a12", "a21", "a22"], theta, true)
    # the small diagonal entries are the least determined: their sum (the decay rate) is
    # well fixed, their difference much less so
    dA = np.linalg.norm(theta - true) / np.linalg.norm(true)
    eig = np.linalg.eigvals(theta.reshape(2, 2))
    print(f"  ‖A - A_true‖ / ‖A_true‖ = {dA:.2%}: {'close' if dA < CLOSE else 'NOT close'} "
          f"(< {CLOSE:.0%}); eigenvalues {eig[0]:.4f}, {eig[1]:.4f} (true -0.1 ± 1j)")
    print(f"  final loss {losses[-1]:.2e}, noise variance 0.02² = 4.0e-04\n")
    return ode, z0, t, data, true, theta, losses


def plot(name, title, labels, ode, z0, t, data, true, theta, losses):
    plt = pyplot()
    if plt is None:
        return
    fine = np.linspace(0.0, T_END, 500)
    exact = so.solve(ode, z0, fine, params=true, rtol=1e-10, atol=1e-12).y      # (500, 2)
    fitted = so.solve(ode, z0, fine, params=theta, rtol=1e-10, atol=1e-12).y
    fig, (ax, ax_phase, ax_loss) = plt.subplots(1, 3, figsize=(15, 4.2))
    for d, label in enumerate(labels):
        line, = ax.plot(fine, fitted[:, d], lw=1.2, label=f"{label}, fitted")
        ax.plot(fine, exact[:, d], color="k", lw=2.2, alpha=0.25,
                label="true parameters" if d == 0 else None)
        ax.plot(t[1:], data[:, d], "o", ms=3.5, color=line.get_color(),
                label=f"{label}, observed")
    bottom, top = ax.get_ylim()
    ax.set(xlabel="t", title=title, ylim=(bottom, top + 0.35 * (top - bottom)))  # legend room
    ax.legend(fontsize=8, ncol=2, loc="upper center")
    ax_phase.plot(exact[:, 0], exact[:, 1], color="k", lw=2.2, alpha=0.25, label="true")
    ax_phase.plot(fitted[:, 0], fitted[:, 1], lw=1.2, label="fitted")
    ax_phase.plot(data[:, 0], data[:, 1], "o", ms=3, color="C3", label="observed")
    ax_phase.set(xlabel=labels[0], ylabel=labels[1], title="Phase plane")
    ax_phase.legend(fontsize=8)
    ax_loss.semilogy(np.arange(1, len(losses) + 1), losses, lw=1.2, label="all observations")
    ax_loss.axvline(GROW, color="0.6", ls="--", lw=1, label="window reaches t = 10")
    ax_loss.set(xlabel="iteration", ylabel="mean squared misfit",
                title="Loss (Adam, checkpoint adjoint)")
    ax_loss.legend(fontsize=8)
    fig.tight_layout()
    save(fig, f"fit_parameters_{name}.png")


def main():
    rng = np.random.default_rng(SEED)
    start = time.perf_counter()
    lv = run_lotka_volterra(rng)
    spiral = run_spiral(rng)
    print(f"both fits: {time.perf_counter() - start:.1f} s (the first run also compiles the "
          f"solvers, which the disk cache keeps for later runs)")
    plot("lotka_volterra", "Lotka–Volterra: 40 noisy observations", ["x (prey)", "y (predators)"],
         *lv)
    plot("spiral", "Linear spiral dz/dt = A z", ["z1", "z2"], *spiral)


if __name__ == "__main__":
    main()
