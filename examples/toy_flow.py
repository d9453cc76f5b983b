"""A continuous normalizing flow learns a 2-D toy density, as in FFJORD's toy experiments.

The flow is FFJORD's toy model: dz/dt = f(t, z, θ), f a ConcatSquash network 2-64-64-64-2 with
tanh, on t ∈ [0, T] with the length T learned (from 0.5), dopri5 at rtol = atol = 1e-5;
log p(x) = log N(z(T)) - Δ(T) with the exact trace; the backsolve adjoint with the layers'
second derivatives gives the gradient of -mean log p; Adam, lr 1e-3, batches of 100 fresh samples.

Printed: the loss, the flow's length and the NFE of the forward and backward solves as it
trains (``symode.models.fit``: a progress bar, checkpoints that resume exactly), then the mean
log-density of held-out data and, for densities with a closed form, its value under the true
law (the best a model can do).
The figure shows the data, the learned density and samples of the flow.

With ``--kinetic`` and ``--jacobian`` (weights, e.g. 0.01) the loss adds the regularizers of
Finlay et al. (2020), the kinetic energy and the Jacobian's Frobenius norm integrated along the
paths, which straighten the flow so that the solver needs fewer steps.

Run:  python examples/toy_flow.py [--data 8gaussians] [--iters 1000] [--trace exact]
                                  [--kinetic 0.01 --jacobian 0.01]
                                  [--checkpoint run.ckpt [--resume]]
      (figure: examples/output/toy_flow_<data>.png)
"""

import argparse
import time

import numpy as np

from symode import nn, viz
from symode.data import TOY_DENSITIES, sample_toy, toy_log_density
from symode.errors import SymodeError
from symode.models import CNF, concat_squash_mlp, fit
from _plotting import pyplot, save


def train(data, iters, trace, kinetic=0.0, jacobian=0.0, batch=100, seed=0, log_every=100,
          checkpoint=None, resume=False):
    rng = np.random.default_rng(seed)
    net = concat_squash_mlp(2, (64, 64, 64))
    flow = CNF(net, t1=0.5, train_t1=True, trace=trace, rtol=1e-5, atol=1e-5,
               kinetic=kinetic, jacobian=jacobian)
    theta = flow.init(rng)

    def step(theta, rng):
        # batches and probes come from fit's generator, so a resumed run continues exactly
        x = sample_toy(data, batch, rng)
        _, cache = flow.forward(theta, x, eps=flow.draw_eps(x.shape, x, rng))
        _, grad = flow.vjp(theta, cache, -np.ones(batch) / batch)
        return float(-flow.last_terms["log_p"].mean()), grad, {
            "T": theta[0] ** 2, "nfe_fwd": flow.nfe_forward, "nfe_bwd": flow.nfe_backward}

    start = time.perf_counter()
    theta, history = fit(step, theta, nn.Adam(lr=1e-3), iters, rng, checkpoint=checkpoint,
                         resume=resume, checkpoint_every=50, log_every=log_every)
    held_out = sample_toy(data, 2000, np.random.default_rng(seed + 1))
    score = float(flow.log_prob(theta, held_out).mean())
    try:
        best = f" (true law {float(toy_log_density(data, held_out).mean()):.3f})"
    except SymodeError:
        best = ""
    print(f"after {iters} iterations: loss {np.mean(history['loss'][-log_every:]):.3f}, "
          f"held-out mean log p {score:.3f}{best}, T {theta[0] ** 2:.3f}, NFE "
          f"{history['nfe_fwd'][-1]:.0f} fwd / {history['nfe_bwd'][-1]:.0f} bwd, "
          f"{time.perf_counter() - start:.0f} s")
    return flow, theta, history["loss"]


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
    parser.add_argument("--checkpoint", help="save the run here every 50 iterations")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    args = parser.parse_args()
    flow, theta, losses = train(args.data, args.iters, args.trace, args.kinetic, args.jacobian,
                                checkpoint=args.checkpoint, resume=args.resume)
    suffix = "_regularized" if args.kinetic or args.jacobian else ""
    plot(args.data, flow, theta, losses, suffix=suffix)


if __name__ == "__main__":
    main()
