"""A continuous normalizing flow learns a 2-D toy density, as in FFJORD's toy experiments.

The flow is FFJORD's toy model: dz/dt = f(t, z, θ), f a ConcatSquash network 2-64-64-64-2 with
tanh, on t ∈ [0, T] with the length T learned (from 0.5), dopri5 at rtol = atol = 1e-5;
log p(x) = log N(z(T)) - Δ(T) with the exact trace; the backsolve adjoint with the layers'
second derivatives gives the gradient of -mean log p; Adam, lr 1e-3, batches of 100 fresh samples.

Printed: the loss, the NFE of the forward and backward solves, and for densities with a closed
form the exact mean log-density of held-out data under the true law (the best a model can do).
The figure shows the data, the learned density and samples of the flow.

With ``--kinetic`` and ``--jacobian`` (weights, e.g. 0.01) the loss adds the regularizers of
Finlay et al. (2020), the kinetic energy and the Jacobian's Frobenius norm integrated along the
paths, which straighten the flow so that the solver needs fewer steps.

Run:  python examples/toy_flow.py [--data 8gaussians] [--iters 1000] [--trace exact]
                                  [--kinetic 0.01 --jacobian 0.01]
      (figure: examples/output/toy_flow_<data>.png)
"""

import argparse
import time

import numpy as np

from symode import nn, viz
from symode.data import TOY_DENSITIES, sample_toy, toy_log_density
from symode.errors import SymodeError
from symode.models import CNF, concat_squash_mlp
from _plotting import progress, pyplot, save


def train(data, iters, trace, kinetic=0.0, jacobian=0.0, batch=100, seed=0, log_every=100):
    rng = np.random.default_rng(seed)
    net = concat_squash_mlp(2, (64, 64, 64))
    flow = CNF(net, t1=0.5, train_t1=True, trace=trace, rtol=1e-5, atol=1e-5, seed=seed,
               kinetic=kinetic, jacobian=jacobian)
    theta = flow.init(rng)
    opt = nn.Adam(lr=1e-3)
    state = opt.init(theta)
    held_out = sample_toy(data, 2000, rng)
    try:
        best = float(toy_log_density(data, held_out).mean())
    except SymodeError:
        best = None
    losses, start = [], time.perf_counter()
    bar = progress(range(1, iters + 1), unit="it", mininterval=0.5)
    for it in bar:
        x = sample_toy(data, batch, rng)
        logp, cache = flow.forward(theta, x)
        _, grad = flow.vjp(theta, cache, -np.ones(batch) / batch)
        theta, state = opt.step(theta, grad, state)
        losses.append(float(-flow.last_terms["log_p"].mean()))
        if it % log_every == 0 or it == iters:
            score = float(flow.log_prob(theta, held_out).mean())
            message = (f"iter {it:5d}: loss {np.mean(losses[-log_every:]):.3f}, held-out mean "
                       f"log p {score:.3f}" + ("" if best is None else f" (true law {best:.3f})")
                       + f", T {theta[0] ** 2:.3f}, NFE {flow.nfe_forward} fwd / "
                       f"{flow.nfe_backward} bwd, {time.perf_counter() - start:.0f} s")
            (bar.write if hasattr(bar, "write") else print)(message)
    return flow, theta, losses


def plot(data, flow, theta, losses, seed=0, suffix=""):
    plt = pyplot()
    if plt is None:
        return
    box, n = (-4.5, 4.5), 200
    samples, _ = flow.sample(theta, 5000, rng=seed)
    truth = sample_toy(data, 5000, seed)
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.5))
    viz.sample_histogram(truth, box, box, bins=n // 2, ax=axes[0])
    axes[0].set_title(f"data: {data}")
    viz.density(lambda x: flow.log_prob(theta, x), box, box, n=n, ax=axes[1])
    axes[1].set_title("learned density")
    viz.sample_histogram(samples, box, box, bins=n // 2, ax=axes[2])
    axes[2].set_title("samples of the flow")
    for ax in axes[:3]:
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[3].plot(losses, color="0.6")
    axes[3].set_xlabel("iteration")
    axes[3].set_ylabel("-mean log p (batch)")
    save(fig, f"toy_flow_{data}{suffix}.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=TOY_DENSITIES, default="8gaussians")
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--trace", choices=["exact", "hutchinson"], default="exact")
    parser.add_argument("--kinetic", type=float, default=0.0,
                        help="weight of the kinetic-energy regularizer (e.g. 0.01)")
    parser.add_argument("--jacobian", type=float, default=0.0,
                        help="weight of the Jacobian Frobenius regularizer (e.g. 0.01)")
    args = parser.parse_args()
    flow, theta, losses = train(args.data, args.iters, args.trace, args.kinetic, args.jacobian)
    suffix = "_regularized" if args.kinetic or args.jacobian else ""
    plot(args.data, flow, theta, losses, suffix=suffix)


if __name__ == "__main__":
    main()
