"""Learning dynamics from a trajectory, as in the Neural ODE demos.

1. The linear spiral dz/dt = A z, A = [[-0.1, -1], [1, -0.1]], learned by one linear layer.
2. The cubic spiral dy/dt = (y^3) A, A = [[-0.1, 2.0], [-2.0, -0.1]], y0 = [2, 0], 1000
   points on [0, 25], learned by an MLP 2 -> 50 -> 2 (tanh) applied to y^3: random batches
   of 20 windows of 10 steps, RMSprop with learning rate 1e-3 (torchdiffeq's ode_demo setup).

Each iteration solves the batch of windows with dopri5 and differentiates the solve with the
adjoint method; the loss is the mean absolute error. Run with ``--iters`` to train longer.

Run:  python examples/learn_spiral.py [--task cubic|linear] [--iters 2000]
      (figure: examples/output/learn_spiral_<task>.png)
"""

import argparse
import time

import numpy as np
import sympy as sp

import symode as so
from symode import nn
from _plotting import progress, pyplot, save

DATA_SIZE, BATCH_TIME, BATCH_SIZE = 1000, 10, 20
A_LINEAR = np.array([[-0.1, -1.0], [1.0, -0.1]])


def true_trajectory(task):
    y1, y2 = sp.symbols("y1 y2")
    if task == "cubic":
        A = [[-0.1, 2.0], [-2.0, -0.1]]            # dy/dt = (y**3) @ A  (row vector times A)
        ode = so.ODE([y1, y2], [y1**3 * A[0][0] + y2**3 * A[1][0],
                                y1**3 * A[0][1] + y2**3 * A[1][1]])
    else:
        ode = so.ODE([y1, y2], list(sp.Matrix(A_LINEAR) * sp.Matrix([y1, y2])))
    t = np.linspace(0.0, 25.0, DATA_SIZE)
    y = so.solve(ode, np.array([2.0, 0.0]), t, rtol=1e-10, atol=1e-12).y   # (1000, 2)
    return t, y


def make_network(task, rng):
    if task == "cubic":
        x = sp.Symbol("x")
        net = nn.Sequential(nn.activation(x**3, x, name="cube"), nn.Linear(2, 50), nn.Tanh(),
                            nn.Linear(50, 2))
        theta = net.init(rng)
        for name, view in net.named_views(theta).items():     # the demo's init: N(0, 0.1), 0
            view[...] = rng.normal(0.0, 0.1, view.shape) if name.endswith("weight") else 0.0
    else:
        net = nn.Linear(2, 2)
        theta = net.init(rng)
    return net, theta


def get_batch(t, y, rng):
    s = rng.choice(np.arange(DATA_SIZE - BATCH_TIME), BATCH_SIZE, replace=False)
    batch_y0 = y[s]                                               # (20, 2)
    batch_t = t[:BATCH_TIME]                                      # (10,)
    batch_y = np.stack([y[s + i] for i in range(BATCH_TIME)])     # (10, 20, 2)
    return batch_y0, batch_t, batch_y


def train(task, iters, adjoint, seed=0, log_every=100, rtol=1e-7, atol=1e-9):
    rng = np.random.default_rng(seed)
    t, y = true_trajectory(task)
    net, theta = make_network(task, rng)
    dyn = nn.NetworkDynamics(net)          # a dense chain: compiled whole by numba
    opt = nn.RMSprop(lr=1e-3 if task == "cubic" else 1e-2)
    state = opt.init(theta)
    losses, full = [], []
    start = time.perf_counter()
    bar = progress(range(1, iters + 1), unit="it", mininterval=0.5)
    for it in bar:
        y0, bt, by = get_batch(t, y, rng)
        sol, pullback = so.solve_vjp(dyn, y0, bt, params=theta, rtol=rtol, atol=atol,
                                     adjoint=adjoint)
        diff = sol.y - by
        losses.append(np.mean(np.abs(diff)))
        g = pullback(np.sign(diff) / diff.size)
        theta, state = opt.step(theta, g.params, state)
        if it % log_every == 0 or it == iters:
            pred = so.solve(dyn, y[0], t, params=theta, rtol=rtol, atol=atol).y
            full.append((it, float(np.mean(np.abs(pred - y)))))
            message = (f"iter {it:5d}: batch loss {losses[-1]:.4f}, full-trajectory loss "
                       f"{full[-1][1]:.4f}, {time.perf_counter() - start:.1f} s")
            (bar.write if hasattr(bar, "write") else print)(message)
    if task == "linear":
        print("learned A:\n", np.round(net.views(theta)["weight"], 3), "\nbias:",
              np.round(net.views(theta)["bias"], 3), "\ntrue A:\n", A_LINEAR)
    return net, theta, t, y, losses, full


def plot(task, net, theta, t, y, losses, full):
    plt = pyplot()
    if plt is None:
        return
    dyn = nn.NetworkDynamics(net)
    pred = so.solve(dyn, y[0], t, params=theta, rtol=1e-7, atol=1e-9).y
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    axes[0].plot(t, y[:, 0], "g-", label="true x")
    axes[0].plot(t, y[:, 1], "b-", label="true y")
    axes[0].plot(t, pred[:, 0], "g--", label="learned x")
    axes[0].plot(t, pred[:, 1], "b--", label="learned y")
    axes[0].set_xlabel("t")
    axes[0].legend()
    axes[0].set_title("trajectories")
    axes[1].plot(y[:, 0], y[:, 1], "g-", label="true")
    axes[1].plot(pred[:, 0], pred[:, 1], "b--", label="learned")
    gx, gy = np.meshgrid(np.linspace(-2, 2, 21), np.linspace(-2, 2, 21))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    v = dyn.f(0.0, grid, theta)
    axes[1].quiver(gx, gy, v[:, 0].reshape(gx.shape), v[:, 1].reshape(gx.shape), color="0.6")
    axes[1].set_title("phase portrait and learned vector field")
    axes[1].legend()
    axes[2].semilogy(losses, color="0.6", label="batch loss")
    axes[2].semilogy(*zip(*full), "k.-", label="full-trajectory loss")
    axes[2].set_xlabel("iteration")
    axes[2].legend()
    save(fig, f"learn_spiral_{task}.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=["cubic", "linear"], default="cubic")
    parser.add_argument("--iters", type=int, default=None,
                        help="iterations (default 2000 for cubic, 1000 for linear)")
    parser.add_argument("--adjoint", default="backsolve",
                        choices=["backsolve", "checkpoint", "discrete"])
    args = parser.parse_args()
    iters = args.iters or (2000 if args.task == "cubic" else 1000)
    result = train(args.task, iters, args.adjoint)
    plot(args.task, *result)


if __name__ == "__main__":
    main()
