"""Continuous normalizing flow on MNIST images: time per training iteration, symode against
FFJORD's construction in torch + torchdiffeq (CPU).

Task (identical for every row):

* data: MNIST training digits (:func:`symode.data.load_mnist` from ``--data``); with
  ``--size 14`` each 2×2 block of grey levels is averaged and rounded to an integer (the images
  keep their 256 levels). Dequantized as FFJORD does, ``x = (k + u)/256`` with ``u ~ U(0, 1)``
  per pixel, then FFJORD's logit transform ``y = logit(s)``, ``s = α + (1 - 2α) x``, α = 1e-6.
  The flow models ``y`` (flat, D = size² values); the density of ``x`` adds the transform's
  log-determinant, which does not depend on the weights::

      log p(x) = log N(z(T)) - Δ(T) + Σ_i [log(1 - 2α) - log(s_i (1 - s_i))],

  and bits/dim = -(log p(x)/D - log 256)/log 2 (FFJORD's formula for 256 grey levels);
* dynamics (FFJORD's ODEnet with concat layers and softplus, no normalization, as in its
  MNIST configuration): Unflatten(1, S, S) - ConcatConv2d(1, 32, 3, pad 1) - Softplus -
  ConcatConv2d(32, 32, 3, pad 1) - Softplus - ConcatConv2d(32, 1, 3, pad 1) - Flatten; with
  ``--groupnorm`` a GroupNorm(4, 32) after each hidden convolution. The time is the first input
  channel of every convolution on both sides (symode's ConcatConv2d and FFJORD's agree),
  zero-padded like the image;
* flow: t ∈ [0, 1] (fixed), dopri5 at rtol = atol = 1e-5 (FFJORD's), the batch as one state;
  Hutchinson's trace ``εᵀ(∂f/∂z)ε`` with a Gaussian probe (FFJORD's default; ``--noise
  rademacher`` for ±1), drawn once per batch and the same on both sides; batches of 32; Adam,
  lr 1e-3; the loss is -mean log p(x). Every row starts from the same weights (symode's
  initializer, copied into torch) and sees the same batches, dequantization noise and probes.

Rows:

* ``symode`` (float64) / ``symode-f32`` (float32 weights and data): :class:`symode.models.CNF`,
  backsolve adjoint, the gradient of the trace term from the layers' second derivatives
  (``dual_vjp``);
* ``torchdiffeq`` (float32, as FFJORD trains) / ``torchdiffeq-f64``: FFJORD's ODE function,
  ``εᵀ∂f/∂z`` by ``torch.autograd.grad(f, z, ε, create_graph=True)``, under ``odeint_adjoint``
  with the state ``(z, Δ)``.

The two sides' error norms differ, as each library's defaults: symode's is the RMS over the
whole state (forward: ``[z, Δ]``; backward: ``[z, Δ, a_z, a_Δ, a_θ]``) with a PI step-size
controller; torchdiffeq's is the largest of the RMS norms of the tuple's tensors (forward:
``z`` and ``Δ``; backward: also ``t``, each adjoint and each parameter tensor's adjoint) with an
I controller. Their NFE differ accordingly.

Before timing, the two sides are checked on the first batch with the same ``ε``: with the
explicit midpoint rule on a fixed grid (16 steps, both solves), float64 on both sides, log p and
its gradient must agree to round-off (the same function, the same discrete adjoint steps); with
torch in float32 to float32 precision; with dopri5 at the timed settings to about the solvers'
tolerance.

Timing: the rows take turns, one iteration each on the same batch (the order rotating every
iteration), so that all see the same machine load; mean and median ms per iteration after
``--warmup`` iterations. After training, every row's weights are scored on 64 test digits
(symode, float64, one fixed probe): equal training gives equal scores.

Run:  python benchmarks/bench_cnf_image.py [--size 14] [--iters 10] [--groupnorm]
                                           [--rows symode,symode-f32,torchdiffeq]
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
from symode.data.mnist import load_mnist
from symode.errors import SymodeError
from symode.models.cnf import CNF

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data", "mnist")
WIDTH, GROUPS, T1, TOL, LR, ALPHA = 32, 4, 1.0, 1e-5, 1e-3, 1e-6
ROWS = {"symode": np.float64, "symode-f32": np.float32,
        "torchdiffeq": np.float32, "torchdiffeq-f64": np.float64}
#: rows compared by the printed ratios (the timed setting of each side, then like with like)
PAIRS = (("symode", "torchdiffeq"), ("symode-f32", "torchdiffeq"),
         ("symode", "torchdiffeq-f64"))


# -- data ----------------------------------------------------------------------------------------
def load_digits(data_dir, split, size):
    """uint8 digits of shape (N, size, size): block means of 28×28 images, rounded."""
    images, _ = load_mnist(data_dir, split)
    k = 28 // size
    blocks = images.reshape(len(images), size, k, size, k).astype(np.int32).sum(axis=(2, 4))
    return ((blocks + k * k // 2) // (k * k)).astype(np.uint8)


def dequantize(digits, rng):
    """FFJORD's preprocessing of uint8 digits (n, S, S): ``(y, logdet)``, the flat logit values
    (n, S·S) and ``log |det ∂y/∂x|`` (n,) of ``x = (k + u)/256``."""
    x = (digits.reshape(len(digits), -1) + rng.random((len(digits), digits[0].size))) / 256
    s = ALPHA + (1 - 2 * ALPHA) * x
    y = np.log(s) - np.log1p(-s)
    logdet = (math.log(1 - 2 * ALPHA) - np.log(s - s * s)).sum(axis=1)
    return y, logdet


def make_task(digits, n, batch, noise, seed=1):
    """``n`` batches ``(y, logdet, ε)``: digits, their dequantization and the probe."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n):
        y, logdet = dequantize(digits[rng.choice(len(digits), batch, replace=False)], rng)
        eps = (rng.standard_normal(y.shape) if noise == "gaussian"
               else rng.choice([-1.0, 1.0], size=y.shape))
        draws.append((y, logdet, eps))
    return draws


def bits_per_dim(log_px, dim):
    """FFJORD's bits/dim of ``mean log p(x)`` over ``dim`` pixels of 256 levels."""
    return -(float(np.mean(log_px)) / dim - math.log(256)) / math.log(2)


# -- symode ----------------------------------------------------------------------------------------
def image_net(size, groupnorm):
    """The dynamics on flat states (batch, size²): three 3×3 concat convolutions, softplus."""
    layers = [nn.Unflatten((1, size, size))]
    for k, (a, b) in enumerate(((1, WIDTH), (WIDTH, WIDTH), (WIDTH, 1))):
        layers.append(nn.ConcatConv2d(a, b, 3, padding=1))
        if k < 2:
            layers += [nn.GroupNorm(GROUPS, b)] if groupnorm else []
            layers.append(nn.Softplus())
    return nn.Sequential(*layers, nn.Flatten())


def symode_flow(size, groupnorm, **options):
    # the probes come with each batch (shared with torch) and are passed as eps
    options = dict(method="dopri5", rtol=TOL, atol=TOL) | options
    return CNF(image_net(size, groupnorm), t1=T1, trace="hutchinson", **options)


def symode_loss_and_grad(flow, theta, batch, dtype):
    """``(log p(y) (n,), dL/dθ)`` for ``L = -mean log p``, in ``dtype``."""
    y, _, eps = batch
    logp, cache = flow.forward(theta, y.astype(dtype), eps=eps.astype(dtype))
    _, grad = flow.vjp(theta, cache, -np.ones(len(y), dtype) / len(y))
    return logp, grad


def symode_stepper(theta0, size, groupnorm, dtype):
    """``step(batch) -> (loss, NFE fwd, NFE bwd)``: one Adam iteration of symode's flow."""
    flow = symode_flow(size, groupnorm)
    opt = nn.Adam(lr=LR)
    theta = theta0.astype(dtype)
    state = [theta, opt.init(theta)]

    def step(batch):
        logp, grad = symode_loss_and_grad(flow, state[0], batch, dtype)
        state[:] = opt.step(state[0], grad, state[1])
        loss = -float(np.mean(logp.astype(np.float64) + batch[1]))
        return loss, flow.nfe_forward, flow.nfe_backward

    step.theta = lambda: state[0].astype(np.float64)
    return step


# -- the same flow in torch (FFJORD's construction) -----------------------------------------------
def torch_func(theta0, size, groupnorm, dtype):
    """FFJORD's ODE function for the net of :func:`image_net`, weights copied from ``θ``."""
    import torch
    from torch import nn as tnn

    class ConcatConv(tnn.Module):
        """A convolution of ``[t, x]``, the time a constant first channel."""

        def __init__(self, a, b):
            super().__init__()
            self.conv = tnn.Conv2d(a + 1, b, 3, padding=1)

        def forward(self, t, x):
            tt = torch.ones_like(x[:, :1]) * t
            return self.conv(torch.cat([tt, x], dim=1))

    class ODEnet(tnn.Module):
        def __init__(self):
            super().__init__()
            layers = []
            for k, (a, b) in enumerate(((1, WIDTH), (WIDTH, WIDTH), (WIDTH, 1))):
                layers.append(ConcatConv(a, b))
                if k < 2:
                    layers += [tnn.GroupNorm(GROUPS, b)] if groupnorm else []
                    layers.append(tnn.Softplus())
            self.layers = tnn.ModuleList(layers)     # in symode's parameter order

        def forward(self, t, x):
            for layer in self.layers:
                x = layer(t, x) if isinstance(layer, ConcatConv) else layer(x)
            return x

    class ODEFunc(tnn.Module):
        def __init__(self):
            super().__init__()
            self.net = ODEnet()
            self.eps = None
            self.nfe = 0

        def forward(self, t, state):
            z = state[0]
            self.nfe += 1
            with torch.enable_grad():
                if not z.requires_grad:
                    z = z.requires_grad_(True)
                dz = self.net(t, z.view(-1, 1, size, size)).view(z.shape)
                e_dzdz = torch.autograd.grad(dz, z, self.eps, create_graph=True)[0]
                div = (e_dzdz * self.eps).sum(dim=1)
            return dz, -div

    func = ODEFunc().to(getattr(torch, np.dtype(dtype).name))
    copy_weights(func, image_net(size, groupnorm).named_views(theta0))
    return func


def torch_loss(func, batch, dtype, method="dopri5", **options):
    """``(log p(y) (n,), -mean log p)`` by ``odeint_adjoint`` (the gradient by ``backward``)."""
    import torch
    from torchdiffeq import odeint_adjoint

    tdtype = getattr(torch, np.dtype(dtype).name)
    y, _, eps = batch
    z0 = torch.from_numpy(y).to(tdtype)
    func.eps = torch.from_numpy(eps).to(tdtype)
    zs, deltas = odeint_adjoint(func, (z0, z0.new_zeros(len(z0))),
                                torch.tensor([0.0, T1], dtype=tdtype), method=method, **options)
    z, delta = zs[-1], deltas[-1]
    logp = -0.5 * (z * z).sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi) - delta
    return logp, -logp.mean()


def torch_stepper(theta0, size, groupnorm, dtype):
    """The same iteration in torch + torchdiffeq."""
    import torch

    func = torch_func(theta0, size, groupnorm, dtype)
    opt = torch.optim.Adam(func.parameters(), lr=LR)

    def step(batch):
        opt.zero_grad()
        func.nfe = 0
        logp, loss = torch_loss(func, batch, dtype, rtol=TOL, atol=TOL)
        nfe_f = func.nfe
        func.nfe = 0
        loss.backward()
        opt.step()
        return -float(np.mean(logp.detach().double().numpy() + batch[1])), nfe_f, func.nfe

    step.theta = lambda: np.concatenate([p.detach().double().numpy().ravel()
                                         for p in func.parameters()])
    return step


# -- agreement -------------------------------------------------------------------------------------
def _rel(a, b):
    """Largest difference relative to the largest entry: ``max|a - b| / max|b|``."""
    a, b = np.atleast_1d(np.asarray(a, np.float64)), np.atleast_1d(np.asarray(b, np.float64))
    return float(np.abs(a - b).max() / np.abs(b).max())


def _rel_each(a, b):
    """Largest entrywise relative difference ``max_i |a_i - b_i| / |b_i|``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float((np.abs(a - b) / np.abs(b)).max())


def check_agreement(theta0, batch, size, groupnorm):
    """log p and its gradient on the first batch, the same ``ε`` and weights on both sides."""
    fixed = dict(method="midpoint", step_size=1 / 16)
    adaptive = dict(method="dopri5", rtol=TOL, atol=TOL)
    cases = (("midpoint, 16 steps: symode f64 vs torch f64", fixed, np.float64, np.float64),
             ("midpoint, 16 steps: symode f64 vs torch f32", fixed, np.float64, np.float32),
             ("dopri5 (timed setting): symode f64 vs torch f32", adaptive, np.float64, np.float32),
             ("dopri5 (timed setting): symode f32 vs torch f32", adaptive, np.float32, np.float32))
    out = {}
    for name, options, ours, theirs in cases:
        flow = symode_flow(size, groupnorm, **options)
        logp, grad = symode_loss_and_grad(flow, theta0.astype(ours), batch, ours)
        func = torch_func(theta0, size, groupnorm, theirs)
        torch_options = dict(method=options["method"])
        if "step_size" in options:
            torch_options["options"] = dict(step_size=options["step_size"])
        else:
            torch_options.update(rtol=TOL, atol=TOL)
        t_logp, loss = torch_loss(func, batch, theirs, **torch_options)
        loss.backward()
        t_grad = np.concatenate([p.grad.double().numpy().ravel() for p in func.parameters()])
        t_logp = t_logp.detach().double().numpy()
        out[name] = dict(logp_rel=_rel_each(logp, t_logp), grad_rel=_rel(grad, t_grad),
                         logp_symode=float(logp[0]), logp_torch=float(t_logp[0]))
        r = out[name]
        print(f"  {name}: log p[0] {r['logp_symode']:.9f} / {r['logp_torch']:.9f}; max rel. "
              f"diff log p {r['logp_rel']:.1e}, gradient {r['grad_rel']:.1e}", flush=True)
    return out


def held_out_bpd(theta, test, size, groupnorm):
    """bits/dim of the test batch ``(y, logdet, ε)`` under ``θ`` (symode, float64)."""
    y, logdet, eps = test
    logp = symode_flow(size, groupnorm).log_prob(theta, y, eps)
    return bits_per_dim(logp + logdet, y.shape[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=14, help="image side: 28, or 14 (2×2 "
                        "block means)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2, help="iterations left out of the "
                        "timings (they still train)")
    parser.add_argument("--groupnorm", action="store_true", help=f"GroupNorm({GROUPS}, "
                        f"{WIDTH}) after each hidden convolution")
    parser.add_argument("--noise", choices=("gaussian", "rademacher"), default="gaussian")
    parser.add_argument("--threads", type=int, default=2, help="threads on both sides")
    parser.add_argument("--rows", default="symode,symode-f32,torchdiffeq")
    parser.add_argument("--no-check", action="store_true", help="skip the agreement check")
    parser.add_argument("--data", default=DATA, help="directory of the MNIST IDX files")
    parser.add_argument("--out", help="JSON file (default output/cnf_image_<size>[_gn].json)")
    args = parser.parse_args()
    if args.size < 1 or 28 % args.size:
        raise SystemExit(f"--size must divide 28, got {args.size}")
    rows = args.rows.split(",")
    unknown = set(rows) - set(ROWS)
    if unknown:
        raise SystemExit(f"unknown rows {sorted(unknown)}: use {list(ROWS)}")
    tag = f"{args.size}{'_gn' if args.groupnorm else ''}"
    args.out = args.out or os.path.join(HERE, "output", f"cnf_image_{tag}.json")
    try:
        digits = load_digits(args.data, "train", args.size)
        test_digits = load_digits(args.data, "test", args.size)[:64]
    except SymodeError as exc:
        print(f"skipped: no MNIST at {args.data} ({exc})")
        return
    set_threads(args.threads)
    dim = args.size ** 2
    theta0 = image_net(args.size, args.groupnorm).init(np.random.default_rng(0))
    draws = make_task(digits, args.iters + args.warmup, args.batch, args.noise)
    test = make_task(test_digits, 1, len(test_digits), args.noise, seed=2)[0]
    print(f"{args.size}×{args.size} MNIST, batch {args.batch}, {len(theta0)} weights, "
          f"{'GroupNorm, ' if args.groupnorm else ''}{args.noise} probe, threads {args.threads}")
    steppers = {}
    for row in rows:
        make = symode_stepper if row.startswith("symode") else torch_stepper
        try:
            steppers[row] = make(theta0, args.size, args.groupnorm, ROWS[row])
        except ImportError as exc:
            print(f"{row}: skipped ({exc}; pip install torch torchdiffeq)")
    agreement = {}
    if not args.no_check and any(r.startswith("torch") for r in steppers):
        print("agreement on the first batch (the same ε and weights):")
        agreement = check_agreement(theta0, draws[0], args.size, args.groupnorm)
    results = take_turns(steppers, draws, args.warmup)   # the rows take turns
    for name, r in results.items():
        r["final_loss"] = r["losses"][-1]
        r["final_bpd"] = bits_per_dim(-r["losses"][-1], dim)
        r["held_out_bpd"] = held_out_bpd(steppers[name].theta(), test, args.size,
                                         args.groupnorm)
        print(f"{name:16s} {1e3 * np.mean(r['times']):8.0f} ms/iter (mean), "
              f"{1e3 * np.median(r['times']):8.0f} median; NFE fwd "
              f"{np.mean(r['nfe_forward']):5.1f} bwd {np.mean(r['nfe_backward']):5.1f}; loss "
              f"{r['losses'][0]:.2f} -> {r['final_loss']:.2f} ({r['final_bpd']:.3f} bits/dim); "
              f"held-out {r['held_out_bpd']:.4f} bits/dim", flush=True)
    mean = {k: np.mean(v["times"]) for k, v in results.items()}
    median = {k: np.median(v["times"]) for k, v in results.items()}
    for name, peer in PAIRS:
        if name in results and peer in results:
            print(f"  {name} / {peer}: time per iteration {mean[name] / mean[peer]:.2f} "
                  f"(ratio of means), {median[name] / median[peer]:.2f} (of medians)")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(dict(machine=platform.processor() or platform.machine(), size=args.size,
                       batch=args.batch, iters=args.iters, warmup=args.warmup,
                       groupnorm=args.groupnorm, noise=args.noise, threads=args.threads,
                       agreement=agreement, results=results), fh, indent=1)


if __name__ == "__main__":
    main()
