"""Latent ODE on spirals: time per training iteration, symode against the same model built in
torch + torchdiffeq.

Task (identical for every row): the latent ODE of the Neural ODE paper (section 5.1) on
``make_spirals(1000 spirals, 50 observations drawn from windows of 100 dense points, noise
0.1)``. Model: a recognition RNN (25 hidden units, tanh) read backwards over ``[x_k, Δ_k]``
(observation and time gap ``Δ_k = τ_k - τ_{k-1}``, ``τ_{-1} = 0``), its last state mapped to
the mean and log-variance of ``q(z0 | x)`` (latent dimension 4); latent dynamics
4-20-20-4 (ELU) solved by dopri5 at rtol 1e-5, atol 1e-7 on the batch's union of observation
times (and 0), the batch as one state (RMS error norm over the batch, as torchdiffeq); decoder
4-20-2 (ReLU). Loss: the negative ELBO averaged over the batch, a Gaussian likelihood with
fixed noise std 0.1 summed over the observations and KL to N(0, I), one reparametrised sample
``z0 = μ + e^{v/2} ε``. Adam, lr 1e-2. Every row starts from the same weights (symode's
initializer, copied into torch) and takes the same batches of 100 spirals with the same ``ε``;
everything runs in float64.

Rows:

* ``symode discrete`` / ``backsolve`` / ``checkpoint``: :class:`symode.models.LatentODE` with
  that adjoint (``discrete``: the exact gradient of dopri5's steps; the other two are
  continuous adjoints whose backward solve restarts at every observed time of the batch);
* ``torchdiffeq odeint``: backprop through the solver (as torchdiffeq's ``latent_ode.py``
  example does by default);
* ``torchdiffeq odeint_adjoint``: the continuous adjoint (its default mixed norm backwards).

Before any timing, the two implementations are checked against each other on the first batch:
with fixed midpoint steps on the grid of the data (every observation time a step end), loss and
gradient must agree to round-off (the same model, the same ELBO); with dopri5 they agree to the
solvers' tolerance (the two dopri5 step-size controllers differ in detail, so the steps do).

Timing: the rows take turns, one iteration each on the same batch (the order rotating every
iteration), so that all see the same machine load; mean and median ms per iteration after
``--warmup`` iterations. NFE: evaluations of the latent dynamics in the forward solve and in
the backward pass (torch: calls of the ODE function; none in the backward pass of ``odeint``,
whose backward runs through autograd's graph). After training, every row's parameters are
scored by the negative ELBO of 200 held-out spirals with a fixed ``ε`` (symode, rtol 1e-7).

symode's rows step with the model's default, the I controller (``PIController(beta=0)``, the
rule of torchdiffeq's dopri5); ``--controller pi`` gives them the PI controller of
``symode.solve`` (``beta = 0.04``) instead.

Run:  python benchmarks/bench_latent_ode.py [--iters 100] [--threads 1] [--controller i|pi]
                                            [--rows discrete,backsolve,checkpoint,odeint,...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform

import numpy as np

from peers import copy_weights, set_threads, take_turns
from symode import nn
from symode.solvers.controllers import PIController
from symode.data.spirals import make_spirals
from symode.models import LatentODE

N_SPIRALS, N_OBS, WINDOW, NOISE = 1000, 50, 100, 0.1
BATCH, LR, RTOL, ATOL = 100, 1e-2, 1e-5, 1e-7
LATENT, HIDDEN, RNN_HIDDEN, DEC_HIDDEN = 4, 20, 25, 20
SYMODE_ROWS = ("discrete", "backsolve", "checkpoint")
TORCH_ROWS = ("odeint", "odeint_adjoint")
#: symode rows and the peer computing the same kind of gradient (of the solver's steps, or the
#: continuous adjoint)
PAIRS = (("discrete", "odeint"), ("backsolve", "odeint_adjoint"),
         ("checkpoint", "odeint_adjoint"))


def make_task(iters, seed=0):
    """Data set, initial ``θ`` and ``iters`` batches ``(obs, times, ε)``, the same for every
    row."""
    rng = np.random.default_rng(seed)
    data = make_spirals(n_spirals=N_SPIRALS, n_obs=N_OBS, window=WINDOW, noise=NOISE, rng=rng)
    theta0 = symode_model("discrete").init(rng)
    draws = []
    for _ in range(iters):
        which = rng.choice(len(data), size=BATCH, replace=False)
        obs, times = data.batch(which)
        draws.append((obs, times, rng.standard_normal((BATCH, LATENT))))
    return data, theta0, draws


def symode_model(adjoint, controller="i", **solver):
    """symode's latent ODE, its solves stepped by the I controller (``"i"``, the model's
    default and torchdiffeq's rule) or by the PI controller of ``symode.solve`` (``"pi"``)."""
    options = dict(method="dopri5", rtol=RTOL, atol=ATOL) | solver
    return LatentODE(obs_dim=2, latent_dim=LATENT, hidden=HIDDEN, rnn_hidden=RNN_HIDDEN,
                     decoder_hidden=DEC_HIDDEN, obs_std=NOISE, adjoint=adjoint,
                     controller=PIController(beta=0.0 if controller == "i" else 0.04), **options)


def symode_stepper(theta0, adjoint, controller="i"):
    """``step(batch) -> (loss, NFE fwd, NFE bwd)``: one Adam iteration of symode's model."""
    model = symode_model(adjoint, controller)
    opt = nn.Adam(lr=LR)
    state = [theta0.copy(), opt.init(theta0)]

    def step(batch):
        theta, opt_state = state
        out = model.loss_and_grad(theta, *batch)
        state[:] = opt.step(theta, out.grad, opt_state)
        return out.loss, out.nfe_forward, out.nfe_backward

    step.theta = lambda: state[0]
    return step


# -- the same model in torch -------------------------------------------------------------------
def torch_model(theta0):
    """The latent ODE as torch modules (float64), weights copied from symode's ``θ`` in its
    order: encoder cell and head, dynamics, decoder."""
    from torch import nn as tnn

    class ODEFunc(tnn.Module):
        def __init__(self):
            super().__init__()
            self.net = tnn.Sequential(tnn.Linear(LATENT, HIDDEN), tnn.ELU(),
                                      tnn.Linear(HIDDEN, HIDDEN), tnn.ELU(),
                                      tnn.Linear(HIDDEN, LATENT))
            self.nfe = 0

        def forward(self, t, z):
            self.nfe += 1
            return self.net(z)

    class Model(tnn.Module):
        def __init__(self):
            super().__init__()
            self.cell = tnn.Linear(2 + 1 + RNN_HIDDEN, RNN_HIDDEN)
            self.head = tnn.Linear(RNN_HIDDEN, 2 * LATENT)
            self.func = ODEFunc()
            self.dec = tnn.Sequential(tnn.Linear(LATENT, DEC_HIDDEN), tnn.ReLU(),
                                      tnn.Linear(DEC_HIDDEN, 2))

    model = Model().double()
    copy_weights(model, symode_model("discrete").named_views(theta0))
    return model


def torch_elbo(model, batch, solve, **options):
    """The negative ELBO of ``batch`` in torch (the computation of ``LatentODE.loss_and_grad``)."""
    import torch

    obs, times, eps = batch
    gaps = np.diff(times, axis=1, prepend=0.0)
    x = torch.from_numpy(np.concatenate([obs, gaps[..., None]], axis=2))
    h = torch.zeros(len(obs), RNN_HIDDEN, dtype=torch.float64)
    for k in range(x.shape[1] - 1, -1, -1):                    # read backwards
        h = torch.tanh(model.cell(torch.cat([x[:, k], h], dim=1)))
    out = model.head(h)
    mu, logvar = out[:, :LATENT], out[:, LATENT:]
    z0 = mu + torch.exp(0.5 * logvar) * torch.from_numpy(eps)
    grid, inverse = np.unique(np.concatenate([[0.0], times.ravel()]), return_inverse=True)
    pos = torch.from_numpy(inverse[1:].reshape(times.shape))
    zs = solve(model.func, z0, torch.from_numpy(grid), **options)     # (T, batch, latent)
    z_obs = zs[pos, torch.arange(len(obs))[:, None]]                    # (batch, n_obs, latent)
    r = torch.from_numpy(obs) - model.dec(z_obs)
    n = len(obs)
    nll = 0.5 * (math.log(2 * math.pi) + 2 * math.log(NOISE) + r * r / NOISE**2).sum() / n
    kl = 0.5 * (torch.exp(logvar) + mu * mu - 1.0 - logvar).sum() / n
    return nll + kl


def torch_solver(adjoint):
    from torchdiffeq import odeint, odeint_adjoint

    return odeint_adjoint if adjoint else odeint


def torch_stepper(theta0, adjoint):
    """The same iteration in torch + torchdiffeq."""
    import torch

    model = torch_model(theta0)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    solve = torch_solver(adjoint)

    def step(batch):
        opt.zero_grad()
        model.func.nfe = 0
        loss = torch_elbo(model, batch, solve, rtol=RTOL, atol=ATOL, method="dopri5")
        nfe_f = model.func.nfe
        model.func.nfe = 0
        loss.backward()
        opt.step()
        return loss.item(), nfe_f, model.func.nfe

    step.theta = lambda: torch_theta(model)
    return step


def torch_theta(model):
    return np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])


def torch_loss_and_grad(theta0, batch, adjoint, **options):
    model = torch_model(theta0)
    loss = torch_elbo(model, batch, torch_solver(adjoint), **options)
    loss.backward()
    return loss.item(), np.concatenate([p.grad.numpy().ravel() for p in model.parameters()])


# -- agreement ---------------------------------------------------------------------------------
def _rel(a, b):
    """Largest difference relative to the largest entry: ``max|a - b| / max|b|``."""
    a, b = np.atleast_1d(a), np.atleast_1d(b)
    return float(np.abs(a - b).max() / np.abs(b).max())


def check_agreement(data, theta0, batch, rows):
    """Loss and gradient of the first batch on both sides; relative differences."""
    out = {}
    dt = data.dt                 # every observation time is a multiple of the dense spacing
    ref = symode_model("discrete", method="midpoint", step_size=dt).loss_and_grad(theta0, *batch)
    loss, grad = torch_loss_and_grad(theta0, batch, False, method="midpoint",
                                     options=dict(step_size=dt))
    out["midpoint, fixed steps: symode discrete vs torch odeint"] = dict(
        loss_symode=ref.loss, loss_torch=loss, loss_rel=_rel(ref.loss, loss),
        grad_rel=_rel(ref.grad, grad))
    peers = {r: torch_loss_and_grad(theta0, batch, r == "odeint_adjoint", rtol=RTOL, atol=ATOL,
                                    method="dopri5") for r in TORCH_ROWS if r in rows}
    ours = {r: symode_model(r).loss_and_grad(theta0, *batch) for r in SYMODE_ROWS if r in rows}
    for a, b in PAIRS + (("discrete", "odeint_adjoint"),):
        if a in ours and b in peers:
            out[f"dopri5: symode {a} vs torch {b}"] = dict(
                loss_symode=ours[a].loss, loss_torch=peers[b][0],
                loss_rel=_rel(ours[a].loss, peers[b][0]), grad_rel=_rel(ours[a].grad, peers[b][1]))
    if "odeint" in peers and "odeint_adjoint" in peers:
        out["dopri5: torch odeint vs torch odeint_adjoint"] = dict(
            loss_rel=_rel(peers["odeint"][0], peers["odeint_adjoint"][0]),
            grad_rel=_rel(peers["odeint"][1], peers["odeint_adjoint"][1]))
    for name, r in out.items():
        losses = (f"loss {r['loss_symode']:.12f} / {r['loss_torch']:.12f}, "
                  if "loss_symode" in r else "")
        print(f"  {name}: {losses}rel. diff loss {r['loss_rel']:.1e}, gradient "
              f"{r['grad_rel']:.1e}", flush=True)
    return out


def held_out_loss(theta, seed=1, n=200):
    """-ELBO of ``n`` new spirals with a fixed ``ε``, by a tight solve (symode)."""
    rng = np.random.default_rng(seed)
    test = make_spirals(n_spirals=n, n_obs=N_OBS, window=WINDOW, noise=NOISE, rng=rng)
    model = symode_model("discrete", rtol=1e-7, atol=1e-9)
    return float(model.loss(theta, test.obs, test.times, rng.standard_normal((n, LATENT))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=3, help="iterations left out of the "
                        "timings (they still train)")
    parser.add_argument("--threads", type=int, default=1, help="threads on both sides")
    parser.add_argument("--rows", default=",".join(SYMODE_ROWS + TORCH_ROWS))
    parser.add_argument("--controller", choices=("i", "pi"), default="i",
                        help="symode's step-size controller in the timed rows: the model's "
                             "default I controller (beta = 0, as torchdiffeq) or the PI "
                             "controller of symode.solve (beta = 0.04)")
    parser.add_argument("--out", help="JSON file (default output/latent_ode.json, "
                        "latent_ode_pi.json with --controller pi)")
    args = parser.parse_args()
    name = f"latent_ode{'_pi' if args.controller == 'pi' else ''}.json"
    args.out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "output", name)
    rows = args.rows.split(",")
    unknown = set(rows) - set(SYMODE_ROWS + TORCH_ROWS)
    if unknown:
        raise SystemExit(f"unknown rows {sorted(unknown)}: use {SYMODE_ROWS + TORCH_ROWS}")
    set_threads(args.threads)
    print(f"threads {args.threads}; symode's step-size controller: {args.controller.upper()}")
    data, theta0, draws = make_task(args.iters + args.warmup)
    steppers = {}
    for row in rows:
        if row in SYMODE_ROWS:
            steppers[f"symode {row}"] = symode_stepper(theta0, row, args.controller)
            continue
        try:
            steppers[f"torchdiffeq {row}"] = torch_stepper(theta0, row == "odeint_adjoint")
        except ImportError as exc:
            print(f"torchdiffeq {row}: skipped ({exc})")
    rows = [r for r in rows if any(name.endswith(f" {r}") for name in steppers)]
    agreement = {}
    if any(r in TORCH_ROWS for r in rows):
        print(f"agreement on the first batch ({BATCH} spirals, {len(np.unique(draws[0][1]))} "
              f"distinct times), float64:")
        agreement = check_agreement(data, theta0, draws[0], rows)
    results = take_turns(steppers, draws, args.warmup)   # the rows take turns
    for name, r in results.items():
        r["held_out_loss"] = held_out_loss(steppers[name].theta())
        r["last10_loss"] = float(np.mean(r["losses"][-10:]))
        print(f"{name:28s} {1e3 * np.mean(r['times']):8.1f} ms/iter (mean), "
              f"{1e3 * np.median(r['times']):8.1f} median; NFE fwd "
              f"{np.mean(r['nfe_forward']):6.1f} bwd {np.mean(r['nfe_backward']):6.1f}; "
              f"loss last 10 {r['last10_loss']:9.3f}, held-out {r['held_out_loss']:9.3f}",
              flush=True)
    mean = {k: np.mean(v["times"]) for k, v in results.items()}
    median = {k: np.median(v["times"]) for k, v in results.items()}
    for name, peer in PAIRS:                  # the same kind of gradient on both sides
        name, peer = f"symode {name}", f"torchdiffeq {peer}"
        if name in results and peer in results:
            print(f"  {name} / {peer}: time per iteration {mean[name] / mean[peer]:.2f} "
                  f"(ratio of means), {median[name] / median[peer]:.2f} (of medians); "
                  f"symode {'faster' if mean[name] < mean[peer] else 'slower'}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(dict(machine=platform.processor() or platform.machine(), iters=args.iters,
                       warmup=args.warmup, threads=args.threads, controller=args.controller,
                       agreement=agreement,
                       results=results), fh, indent=1)


if __name__ == "__main__":
    main()
