"""Cubic spiral: time per training iteration, symode against torchdiffeq's ``odeint`` and
``odeint_adjoint`` on the task of torchdiffeq's ``ode_demo.py``.

Task (identical for every row): the true trajectory dy/dt = (y³)·A, A = [[-0.1, 2], [-2, -0.1]],
y0 = [2, 0], 1000 points on [0, 25] (computed once by symode at rtol 1e-10); the model is
dy/dt = MLP(y³), MLP = Linear(2, 50)-tanh-Linear(50, 2), weights N(0, 0.1) and biases 0 (the
same numbers in every row); each iteration draws 20 windows of 10 consecutive points (the same
draws in every row), solves them from their first points with dopri5 at rtol 1e-7, atol 1e-9
(torchdiffeq's defaults), takes the mean absolute error against the data, and makes an RMSprop
step (lr 1e-3, torch's defaults: alpha 0.99, eps 1e-8).

Rows:

* ``symode <adjoint>``: ``so.solve_vjp`` of ``nn.NetworkDynamics`` (float64, the MLP compiled
  whole by numba; the 20 windows stepped together in the array engine, the step set by the
  worst window's error, or with ``--error-norm batch`` by the RMS over the batch as
  torchdiffeq does) and the pullback; the optimizer is ``nn.RMSprop``. ``discrete`` is the
  exact gradient of the solver's steps (what backprop through ``odeint`` computes);
  ``backsolve`` and ``checkpoint`` are continuous adjoints (as ``odeint_adjoint``).
* ``torchdiffeq odeint`` (backprop through the solver) and ``odeint_adjoint``: float32 as the
  demo, the 20 windows as one batched state (one step size for the batch),
  ``torch.set_num_threads`` as given.

After the iterations, every row's network predicts the whole 1000-point trajectory from y0
(dopri5, rtol 1e-7, atol 1e-9, by the same solver) and its mean absolute error is printed:
the loss must be no worse than the peers'.

Run:  python benchmarks/bench_cubic_spiral.py [--iters 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import sympy as sp

import symode as so
from symode import nn

DATA_SIZE, BATCH_TIME, BATCH_SIZE = 1000, 10, 20
A = np.array([[-0.1, 2.0], [-2.0, -0.1]])
RTOL, ATOL = 1e-7, 1e-9


def true_trajectory():
    y1, y2 = sp.symbols("y1 y2")
    ode = so.ODE([y1, y2], [y1**3 * A[0, 0] + y2**3 * A[1, 0], y1**3 * A[0, 1] + y2**3 * A[1, 1]])
    t = np.linspace(0.0, 25.0, DATA_SIZE)
    return t, so.solve(ode, np.array([2.0, 0.0]), t, method="dop853", rtol=1e-10, atol=1e-12).y


def initial_weights(seed=0):
    """W1 (50, 2), b1 (50,), W2 (2, 50), b2 (2,) in torch's (out, in) layout."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.1, (50, 2)), np.zeros(50), rng.normal(0, 0.1, (2, 50)), np.zeros(2))


def batches(iters, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.choice(np.arange(DATA_SIZE - BATCH_TIME), BATCH_SIZE, replace=False)
            for _ in range(iters)]


def cube_net():
    x = sp.Symbol("x")
    return nn.Sequential(nn.activation(x**3, x, name="cube"), nn.Linear(2, 50), nn.Tanh(),
                         nn.Linear(50, 2))


def symode_theta(net, weights):
    theta = net.init(np.random.default_rng(0))
    views = net.named_views(theta)
    W1, b1, W2, b2 = weights
    lin = [k for k in views if k.endswith("weight")]
    assert len(lin) == 2, views.keys()
    # nn.Linear stores weight as (in, out) or (out, in): fill by shape
    for k, W in zip(lin, (W1, W2)):
        views[k][...] = W if views[k].shape == W.shape else W.T
    for k, b in zip([k for k in views if k.endswith("bias")], (b1, b2)):
        views[k][...] = b
    return theta


def run_symode(t, y, weights, draws, adjoint, error_norm="trajectory"):
    net = cube_net()
    dyn = nn.NetworkDynamics(net)
    theta = symode_theta(net, weights)
    opt = nn.RMSprop(lr=1e-3, alpha=0.99, eps=1e-8)
    state = opt.init(theta)
    bt = t[:BATCH_TIME]
    nfe_f = nfe_b = 0
    times = []
    for s in draws:
        start = time.perf_counter()
        y0 = y[s]
        by = np.stack([y[s + i] for i in range(BATCH_TIME)])
        sol, pullback = so.solve_vjp(dyn, y0, bt, params=theta, rtol=RTOL, atol=ATOL,
                                     adjoint=adjoint, error_norm=error_norm)
        diff = sol.y - by
        g = pullback(np.sign(diff) / diff.size)
        theta, state = opt.step(theta, g.params, state)
        times.append(time.perf_counter() - start)
        nfe_f += int(sol.stats.nfev.max())
        nfe_b += int(g.stats.nfev.max())
    pred = so.solve(dyn, y[0], t, params=theta, rtol=RTOL, atol=ATOL).y
    return dict(times=times, full_loss=float(np.mean(np.abs(pred - y))),
                nfe_forward=nfe_f / len(draws), nfe_backward=nfe_b / len(draws))


def run_torch(t, y, weights, draws, adjoint, threads):
    import torch
    from torch import nn as tnn
    from torchdiffeq import odeint, odeint_adjoint

    torch.set_num_threads(threads)
    solve = odeint_adjoint if adjoint else odeint

    class ODEFunc(tnn.Module):
        def __init__(self):
            super().__init__()
            self.net = tnn.Sequential(tnn.Linear(2, 50), tnn.Tanh(), tnn.Linear(50, 2))
            self.nfe = 0

        def forward(self, t, y):
            self.nfe += 1
            return self.net(y**3)

    func = ODEFunc()
    with torch.no_grad():
        for p, w in zip(func.parameters(), weights):
            p.copy_(torch.tensor(w, dtype=torch.float32))
    opt = torch.optim.RMSprop(func.parameters(), lr=1e-3)
    ty = torch.tensor(y, dtype=torch.float32).unsqueeze(1)       # (1000, 1, 2)
    tt = torch.tensor(t, dtype=torch.float32)
    bt = tt[:BATCH_TIME]
    times, nfe_f, nfe_b = [], 0, 0
    for s in draws:
        start = time.perf_counter()
        opt.zero_grad()
        by0 = ty[s]                                                # (20, 1, 2)
        by = torch.stack([ty[s + i] for i in range(BATCH_TIME)], dim=0)
        func.nfe = 0
        pred = solve(func, by0, bt, rtol=RTOL, atol=ATOL)
        nfe_f += func.nfe
        func.nfe = 0
        loss = torch.mean(torch.abs(pred - by))
        loss.backward()
        nfe_b += func.nfe
        opt.step()
        times.append(time.perf_counter() - start)
    with torch.no_grad():
        pred = odeint(func, ty[0], tt, rtol=RTOL, atol=ATOL)
        full = float(torch.mean(torch.abs(pred - ty)))
    return dict(times=times, full_loss=full, nfe_forward=nfe_f / len(draws),
                nfe_backward=nfe_b / len(draws))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--rows", default="discrete,backsolve,checkpoint,odeint,odeint_adjoint")
    parser.add_argument("--error-norm", default="trajectory", choices=["trajectory", "batch"],
                        help="symode's error norm: per window, or the batch as one state "
                             "(as torchdiffeq)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "output",
                                                      "cubic_spiral.json"))
    args = parser.parse_args()
    t, y = true_trajectory()
    weights = initial_weights()
    draws = batches(args.iters)
    results = {}
    for row in args.rows.split(","):
        if row in ("backsolve", "checkpoint", "discrete"):
            run_symode(t, y, weights, draws[:2], row)                 # compile, warm caches
            r = run_symode(t, y, weights, draws, row, args.error_norm)
            name = f"symode {row}" + (" (batch norm)" if args.error_norm == "batch" else "")
        else:
            try:
                r = run_torch(t, y, weights, draws, row == "odeint_adjoint", args.threads)
            except ImportError as exc:
                print(f"torchdiffeq {row}: skipped ({exc})")
                continue
            name = f"torchdiffeq {row}"
        results[name] = r
        print(f"{name:28s} {1e3 * np.median(r['times']):8.2f} ms/iter (median), "
              f"{1e3 * np.mean(r['times']):8.2f} mean; NFE fwd {r['nfe_forward']:.1f} "
              f"bwd {r['nfe_backward']:.1f}; full-trajectory loss {r['full_loss']:.4f}",
              flush=True)
    base = {k: np.mean(v["times"]) for k, v in results.items()}
    for peer in ("torchdiffeq odeint", "torchdiffeq odeint_adjoint"):
        if peer in base:
            for k in base:
                if k.startswith("symode"):
                    print(f"  {k} is {base[peer] / base[k]:.1f}x faster than {peer} (mean)")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(dict(machine=platform.processor() or platform.machine(), iters=args.iters,
                       threads=args.threads, results=results), fh)


if __name__ == "__main__":
    main()
