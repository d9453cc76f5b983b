"""The latent ODE on noisy, irregularly sampled spirals (Chen et al. 2018, section 5.1).

Data: spirals on [0, 6π] (1000 dense points), half clockwise and half counter-clockwise; each is
observed at ``--n-obs`` random points of a window of ``--window`` consecutive dense points, with
Gaussian noise of standard deviation ``--noise``. Model (the Neural ODE demo's sizes): a
recognition RNN with 25 hidden units read backwards over the observations and their time gaps,
a 4-dimensional latent state with dynamics 4-20-20-4 (ELU), solved by dopri5, and a decoder
4-20-2 (ReLU). Training minimises the negative ELBO with Adam at learning rate 1e-2, on random
minibatches. The solve is differentiated by the discrete adjoint (through dopri5's own steps);
``--adjoint backsolve`` is the paper's continuous adjoint, about four times slower here, since
its backward solve restarts at each of the ~100 distinct observation times of a batch (about
700 backward evaluations per iteration against the discrete adjoint's 80).

The figure shows, for a few spirals of each direction, the true curve, the observations, the
reconstruction over the observed window (decoding the posterior mean) and the extrapolation
past it, and the loss during training; the spirals shown are new ones, not trained on.

Run:  python examples/latent_ode_spirals.py [--iters 2000] [--batch 100] [--adjoint backsolve]
                                           [--checkpoint run.ckpt [--resume]]
      (figure: examples/output/latent_ode_spirals.png)
"""

import argparse
import time

import numpy as np

from symode import nn
from symode.data.spirals import make_spirals
from symode.models import LatentODE, fit
from _plotting import pyplot, save


def train(args):
    rng = np.random.default_rng(args.seed)
    data = make_spirals(n_spirals=args.spirals, n_obs=args.n_obs, window=args.window,
                        noise=args.noise, rng=rng)
    model = LatentODE(obs_std=args.noise, adjoint=args.adjoint, rtol=args.rtol, atol=args.atol)
    theta = model.init(rng)

    def step(theta, rng):
        # minibatch and reparameterisation noise from fit's generator: resumable exactly
        which = rng.choice(len(data), size=min(args.batch, len(data)), replace=False)
        out = model.loss_and_grad(theta, *data.batch(which), rng)
        return out.loss, out.grad, {"nll": out.nll, "kl": out.kl, "nfe_fwd": out.nfe_forward,
                                    "nfe_bwd": out.nfe_backward}

    start = time.perf_counter()
    theta, history = fit(step, theta, nn.Adam(lr=args.lr), args.iters, rng,
                         checkpoint=args.checkpoint, resume=args.resume,
                         log_every=args.log_every)
    print(f"after {args.iters} iterations: -ELBO {np.mean(history['loss'][-args.log_every:]):.2f}"
          f" (nll {history['nll'][-1]:.2f}, kl {history['kl'][-1]:.2f}), nfe "
          f"{history['nfe_fwd'][-1]:.0f} forward, {history['nfe_bwd'][-1]:.0f} backward, "
          f"{time.perf_counter() - start:.1f} s")
    return data, model, theta, history["loss"]


def held_out_errors(data, model, theta):
    """RMS distances from the true curves of held-out spirals, decoding the posterior mean:
    at the observed times (reconstruction) and over the next ``window`` dense points past the
    observed window (extrapolation; spirals whose curve goes on that long)."""
    obs, times = data.obs, data.times
    grid, pos = np.unique(times, return_inverse=True)      # one output grid for the batch
    rows = np.arange(len(data))[:, None]
    pred = model.predict(theta, obs, times, grid)[rows, pos.reshape(times.shape)]
    truth = np.take_along_axis(data.truth, data.index[..., None], axis=1)
    recon = np.sqrt(np.mean(np.sum((pred - truth) ** 2, axis=-1)))
    w = data.window
    room = np.flatnonzero(data.start + 2 * w <= data.t.size)
    later = data.t[w:2 * w] - data.t[0]
    pred = model.predict(theta, obs[room], times[room], later)
    truth = data.truth[room[:, None], data.start[room, None] + np.arange(w, 2 * w)]
    extra = np.sqrt(np.mean(np.sum((pred - truth) ** 2, axis=-1)))
    return float(recon), float(extra)


def plot(data, model, theta, losses, n_each=2):
    plt = pyplot()
    if plt is None:
        return
    picks = [*np.flatnonzero(~data.clockwise)[:n_each], *np.flatnonzero(data.clockwise)[:n_each]]
    fig, axes = plt.subplots(1, len(picks) + 1, figsize=(4.2 * (len(picks) + 1), 4))
    for ax, n in zip(axes, picks):
        span = data.times[n, -1]
        t_true, x_true = data.truth_from_start(n, 2 * data.window)
        t_rec = np.linspace(0.0, span, 200)
        t_ext = np.linspace(span, max(t_true[-1], span + 1e-3), 200)[1:]
        obs, times = data.batch([n])
        rec = model.predict(theta, obs, times, t_rec)[0]
        ext = model.predict(theta, obs, times, t_ext)[0]
        ax.plot(*x_true.T, color="0.6", label="true")
        ax.plot(*obs[0].T, "k.", ms=4, label="observed")
        ax.plot(*rec.T, "b-", label="reconstruction")
        ax.plot(*ext.T, "r--", label="extrapolation")
        ax.set_title(f"spiral {n} ({'clockwise' if data.clockwise[n] else 'counter-clockwise'})")
        ax.set_aspect("equal", adjustable="datalim")
    axes[0].legend(fontsize=8)
    axes[-1].plot(losses, color="0.4")
    axes[-1].set_yscale("symlog", linthresh=10.0)    # the loss turns negative near the end
    axes[-1].set_xlabel("iteration")
    axes[-1].set_title("-ELBO (minibatch)")
    save(fig, "latent_ode_spirals.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--spirals", type=int, default=1000)
    parser.add_argument("--n-obs", type=int, default=50)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--rtol", type=float, default=1e-5)
    parser.add_argument("--atol", type=float, default=1e-7)
    parser.add_argument("--adjoint", default="discrete",
                        choices=["backsolve", "checkpoint", "discrete"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--checkpoint", help="save the run here every 100 iterations")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    args = parser.parse_args()
    data, model, theta, losses = train(args)
    test = make_spirals(n_spirals=200, n_obs=args.n_obs, window=args.window, noise=args.noise,
                        rng=np.random.default_rng(args.seed + 1))
    recon, extra = held_out_errors(test, model, theta)
    print(f"held-out spirals, RMS distance to the true curve: reconstruction {recon:.3f}, "
          f"extrapolation over the next window {extra:.3f} (observation noise {args.noise})")
    plot(test, model, theta, losses)


if __name__ == "__main__":
    main()
