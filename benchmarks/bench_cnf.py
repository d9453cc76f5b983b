"""Continuous normalizing flow on a 2-D toy density: time per training iteration, symode against
FFJORD's construction in torch + torchdiffeq.

Task (identical for every row): FFJORD's toy model, a ConcatSquash network 2-64-64-64-2 with tanh,
integrated over t ∈ [0, 0.5] by dopri5 at rtol = atol = 1e-5, log p(x) = log N(z(0.5)) - Δ(0.5);
batches of 100 points of the "8gaussians" density (the same batches, the same initial weights in
every row); Adam, lr 1e-3; the loss is -mean log p.

Rows:

* ``symode exact`` / ``symode hutchinson``: :class:`symode.models.CNF` (float64), the trace
  by one forward-mode product per dimension or by Hutchinson's estimator with a Rademacher
  probe, the gradient by the backsolve adjoint with the layers' second derivatives;
* ``torchdiffeq exact`` / ``torchdiffeq hutchinson``: FFJORD's ODE function (the trace by
  ``torch.autograd.grad`` with ``create_graph=True``, per dimension, or ``εᵀ(∂f/∂z)ε`` from one
  vector-Jacobian product) under ``odeint_adjoint`` (float32, as FFJORD trains).

Both sides solve the batch as one state (RMS error norm over the batch). After training, every
row's flow is scored by the exact log-likelihood of 2000 held-out points (symode, rtol 1e-7):
equal training gives equal scores.

Run:  python benchmarks/bench_cnf.py [--iters 100] [--rows exact,hutchinson,torch-exact,...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from symode import nn
from symode.data.toy2d import sample_toy
from symode.models.cnf import CNF, concat_squash_mlp

HIDDEN, T1, TOL, BATCH, LR = (64, 64, 64), 0.5, 1e-5, 100, 1e-3


def batches(iters, seed=1):
    rng = np.random.default_rng(seed)
    return [sample_toy("8gaussians", BATCH, rng) for _ in range(iters)]


def run_symode(theta0, draws, trace, seed=0):
    net = concat_squash_mlp(2, HIDDEN)
    flow = CNF(net, t1=T1, trace=trace, rtol=TOL, atol=TOL, seed=seed)
    theta = theta0.copy()
    opt = nn.Adam(lr=LR)
    state = opt.init(theta)
    times, nfe_f, nfe_b = [], 0, 0
    for x in draws:
        start = time.perf_counter()
        logp, cache = flow.forward(theta, x)
        _, grad = flow.vjp(theta, cache, -np.ones(len(x)) / len(x))
        theta, state = opt.step(theta, grad, state)
        times.append(time.perf_counter() - start)
        nfe_f += flow.nfe_forward
        nfe_b += flow.nfe_backward
    return theta, dict(times=times, nfe_forward=nfe_f / len(draws),
                       nfe_backward=nfe_b / len(draws))


def torch_flow(theta0, trace, seed=0):
    """FFJORD's ODE function in torch, its weights copied from symode's ``θ``."""
    import torch
    from torch import nn as tnn

    class ConcatSquash(tnn.Module):
        def __init__(self, a, b):
            super().__init__()
            self.layer, self.gate = tnn.Linear(a, b), tnn.Linear(1, b)
            self.hyper = tnn.Linear(1, b, bias=False)

        def forward(self, t, x):
            tt = t.reshape(1, 1)
            return self.layer(x) * torch.sigmoid(self.gate(tt)) + self.hyper(tt)

    class ODEFunc(tnn.Module):
        def __init__(self):
            super().__init__()
            sizes = [2, *HIDDEN, 2]
            self.layers = tnn.ModuleList(ConcatSquash(a, b) for a, b in zip(sizes, sizes[1:]))
            self.eps = None
            self.nfe = 0

        def net(self, t, z):
            for i, layer in enumerate(self.layers):
                z = layer(t, z)
                if i < len(self.layers) - 1:
                    z = torch.tanh(z)
            return z

        def forward(self, t, state):
            z = state[0]
            self.nfe += 1
            with torch.enable_grad():
                if not z.requires_grad:
                    z = z.requires_grad_(True)
                dz = self.net(t, z)
                if trace == "exact":
                    div = sum(torch.autograd.grad(dz[:, i].sum(), z, create_graph=True)[0][:, i]
                              for i in range(z.shape[1]))
                else:
                    e_dzdz = torch.autograd.grad(dz, z, self.eps, create_graph=True)[0]
                    div = (e_dzdz * self.eps).sum(axis=1)
            return dz, -div

    func = ODEFunc()
    net = concat_squash_mlp(2, HIDDEN)
    views = net.named_views(theta0)
    with torch.no_grad():
        for i, layer in enumerate(func.layers):
            k = 2 * i                       # ConcatSquash layers sit at even places
            layer.layer.weight.copy_(torch.tensor(views[f"{k}.weight"]))
            layer.layer.bias.copy_(torch.tensor(views[f"{k}.bias"]))
            layer.gate.weight.copy_(torch.tensor(views[f"{k}.gate_weight"])[:, None])
            layer.gate.bias.copy_(torch.tensor(views[f"{k}.gate_bias"]))
            layer.hyper.weight.copy_(torch.tensor(views[f"{k}.hyper_weight"])[:, None])
    return func


def run_torch(theta0, draws, trace, threads):
    import torch
    from torchdiffeq import odeint_adjoint

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    func = torch_flow(theta0, trace)
    opt = torch.optim.Adam(func.parameters(), lr=LR)
    tt = torch.tensor([0.0, T1])
    times, nfe_f, nfe_b = [], 0, 0
    for x in draws:
        start = time.perf_counter()
        opt.zero_grad()
        z0 = torch.tensor(x, dtype=torch.float32)
        if trace != "exact":
            func.eps = torch.randint(0, 2, z0.shape).to(z0) * 2 - 1
        func.nfe = 0
        zs, deltas = odeint_adjoint(func, (z0, torch.zeros(len(x))), tt, rtol=TOL, atol=TOL,
                                    method="dopri5")
        nfe_f += func.nfe
        z, delta = zs[-1], deltas[-1]
        logp = -0.5 * (z * z).sum(1) - np.log(2 * np.pi) - delta
        loss = -logp.mean()
        func.nfe = 0
        loss.backward()
        nfe_b += func.nfe
        opt.step()
        times.append(time.perf_counter() - start)
    theta = np.concatenate([
        np.concatenate([p.layer.weight.detach().double().numpy().ravel(),
                        p.layer.bias.detach().double().numpy(),
                        p.gate.weight.detach().double().numpy().ravel(),
                        p.gate.bias.detach().double().numpy(),
                        p.hyper.weight.detach().double().numpy().ravel()])
        for p in func.layers])
    return theta, dict(times=times, nfe_forward=nfe_f / len(draws),
                       nfe_backward=nfe_b / len(draws))


def held_out_nll(theta, n=2000):
    x = sample_toy("8gaussians", n, 12345)
    flow = CNF(concat_squash_mlp(2, HIDDEN), t1=T1, rtol=1e-7, atol=1e-7)
    return float(-flow.log_prob(theta, x).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--rows", default="exact,hutchinson,torch-exact,torch-hutchinson")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "output",
                                                      "cnf.json"))
    args = parser.parse_args()
    theta0 = concat_squash_mlp(2, HIDDEN).init(np.random.default_rng(0))
    draws = batches(args.iters)
    results = {}
    for row in args.rows.split(","):
        trace = row.removeprefix("torch-")
        if row.startswith("torch-"):
            try:
                theta, r = run_torch(theta0, draws, trace, args.threads)
            except ImportError as exc:
                print(f"torchdiffeq {trace}: skipped ({exc})")
                continue
            name = f"torchdiffeq {trace}"
        else:
            run_symode(theta0, draws[:2], trace)                 # warm caches
            theta, r = run_symode(theta0, draws, trace)
            name = f"symode {trace}"
        r["held_out_nll"] = held_out_nll(theta)
        results[name] = r
        print(f"{name:24s} {1e3 * np.mean(r['times']):8.1f} ms/iter (mean), "
              f"{1e3 * np.median(r['times']):8.1f} median; NFE fwd {r['nfe_forward']:.1f} "
              f"bwd {r['nfe_backward']:.1f}; held-out NLL {r['held_out_nll']:.4f}", flush=True)
    for trace in ("exact", "hutchinson"):
        ours, peer = results.get(f"symode {trace}"), results.get(f"torchdiffeq {trace}")
        if ours and peer:
            print(f"  {trace}: symode is {np.mean(peer['times']) / np.mean(ours['times']):.1f}x "
                  f"faster than torchdiffeq per iteration (mean), "
                  f"{np.median(peer['times']) / np.median(ours['times']):.1f}x (median)")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(dict(machine=platform.processor() or platform.machine(), iters=args.iters,
                       threads=args.threads, results=results), fh, indent=1)


if __name__ == "__main__":
    main()
