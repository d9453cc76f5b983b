"""MNIST ODE-Net: time per training step (batch 128), symode against torch + torchdiffeq on the
CPU, the same architecture and the same solver settings.

Architecture (the Neural ODE paper's ODE-Net, as in torchdiffeq's ``odenet_mnist.py`` with conv
downsampling): Conv(1→64, 3×3) - GN - ReLU - Conv(64→64, 4×4, stride 2, pad 1) - GN - ReLU -
Conv(64→64, 4×4, stride 2, pad 1); an ODE block on t ∈ [0, 1] of GN-ReLU-ConcatConv(3×3)-GN-ReLU-
ConcatConv(3×3)-GN (GN = GroupNorm(32, 64)), dopri5 at rtol = atol = 1e-3, adjoint
backsolve; then GN - ReLU - global average pool - Linear(64→10). A step is forward, softmax
cross-entropy, backward and an SGD update (momentum 0.9).

Both sides start from the same weights (symode's initializer, copied into torch), take the
same batches (real MNIST from ``--data`` when present, else random images with a note) and
run in float32 on ``--threads`` threads (``torch.set_num_threads``; symode's
``nn.parallel.set_num_threads``, BLAS included). The two libraries take turns, one step each
on the same batch, so that both see the same machine load; reported are the median and mean
seconds per step after ``--warmup`` steps, the median of the per-step time ratios, and the ODE
block's forward/backward function evaluations (they differ between the libraries: error norms
and step-size controllers differ in detail).

With ``--device cuda`` both run on the GPU: symode with cupy arrays (weights, optimizer state
and batches moved once with ``symode.backend.to_device``; each batch is copied to the GPU inside
the timed step, as torch's is), torch with its CUDA tensors; every step ends with a device
synchronisation before the clock is read.

Run:  python benchmarks/bench_mnist_step.py [--steps 10] [--data ../shared/data/mnist]
      python benchmarks/bench_mnist_step.py --device cuda --steps 50
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from symode.models.odenet import odenet
from symode.models.train import ode_blocks
from symode.nn import SGD, softmax_cross_entropy
from symode.nn.parallel import get_num_threads, set_num_threads

HERE = os.path.dirname(os.path.abspath(__file__))


def load_batches(data_dir, n, batch, rng):
    try:
        from symode.data.mnist import as_float, load_mnist

        x, y = load_mnist(data_dir, "train")
        x = as_float(x)
        note = f"MNIST from {data_dir}"
    except Exception as exc:                                # noqa: BLE001 (any reason: random)
        x = rng.random((n * batch, 1, 28, 28), dtype=np.float32)
        y = rng.integers(0, 10, n * batch)
        note = f"random images ({type(exc).__name__}: no MNIST at {data_dir})"
    idx = [rng.choice(len(x), batch, replace=False) for _ in range(n)]
    return [(x[i], y[i]) for i in idx], note


def symode_stepper(theta, device="cpu"):
    """One training step of symode's ODE-Net per call: ``step(x, y) -> (NFE fwd, NFE bwd)``."""
    model = odenet()
    block = ode_blocks(model)[0]
    opt = SGD(lr=0.1, momentum=0.9)
    if device == "cuda":
        import cupy

        from symode.backend import to_device

        theta = to_device(theta)
    state = [theta, opt.init(theta)]

    def step(x, y):
        theta, opt_state = state
        if device == "cuda":
            x, y = to_device(x), to_device(y)
        logits, cache = model.forward(theta, x)
        loss, dlogits = softmax_cross_entropy(logits, y)
        _, grad = model.vjp(theta, cache, dlogits)
        state[:] = opt.step(theta, grad, opt_state)
        if device == "cuda":
            cupy.cuda.Device().synchronize()
        return block.nfe_forward, block.nfe_backward

    return step


def torch_model(theta_named):
    import torch
    from torch import nn as tnn

    class ConcatConv2d(tnn.Module):
        def __init__(self, c_in, c_out):
            super().__init__()
            self.conv = tnn.Conv2d(c_in + 1, c_out, 3, 1, 1)

        def forward(self, t, x):
            tt = torch.ones_like(x[:, :1]) * t
            return self.conv(torch.cat([tt, x], 1))

    class ODEFunc(tnn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.conv1 = tnn.GroupNorm(32, 64), ConcatConv2d(64, 64)
            self.norm2, self.conv2 = tnn.GroupNorm(32, 64), ConcatConv2d(64, 64)
            self.norm3 = tnn.GroupNorm(32, 64)
            self.relu = tnn.ReLU()
            self.nfe = 0

        def forward(self, t, x):
            self.nfe += 1
            out = self.conv1(t, self.relu(self.norm1(x)))
            out = self.conv2(t, self.relu(self.norm2(out)))
            return self.norm3(out)

    class ODEBlock(tnn.Module):
        def __init__(self):
            super().__init__()
            self.odefunc = ODEFunc()
            self.register_buffer("t", torch.tensor([0.0, 1.0]))

        def forward(self, x):
            from torchdiffeq import odeint_adjoint

            return odeint_adjoint(self.odefunc, x, self.t, rtol=1e-3, atol=1e-3)[1]

    model = tnn.Sequential(
        tnn.Conv2d(1, 64, 3, 1), tnn.GroupNorm(32, 64), tnn.ReLU(),
        tnn.Conv2d(64, 64, 4, 2, 1), tnn.GroupNorm(32, 64), tnn.ReLU(),
        tnn.Conv2d(64, 64, 4, 2, 1), ODEBlock(), tnn.GroupNorm(32, 64), tnn.ReLU(),
        tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(64, 10))
    params = [p for p in model.parameters()]
    values = list(theta_named.values())
    if len(params) != len(values):
        raise RuntimeError(f"parameter lists differ: torch {len(params)}, symode {len(values)}")
    with torch.no_grad():
        for p, v in zip(params, values):
            if tuple(p.shape) != v.shape:
                raise RuntimeError(f"shape mismatch {tuple(p.shape)} vs {v.shape}")
            p.copy_(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)))
    return model


def torch_stepper(theta_named, device="cpu"):
    """The same step in torch + torchdiffeq."""
    import torch

    model = torch_model(theta_named).to(device)
    func = model[7].odefunc
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    lossf = torch.nn.CrossEntropyLoss()

    def step(x, y):
        xt = torch.from_numpy(x).to(device)
        yt = torch.from_numpy(y.astype(np.int64)).to(device)
        opt.zero_grad()
        func.nfe = 0
        loss = lossf(model(xt), yt)
        nf = func.nfe
        func.nfe = 0
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return nf, func.nfe

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=get_num_threads())
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data",
                                                       "mnist"))
    parser.add_argument("--rows", default="symode,torch")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: symode on cupy arrays, torch on CUDA tensors")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    model = odenet()
    theta = model.init(rng, dtype=np.float32)
    batches, note = load_batches(args.data, args.steps + args.warmup, 128, rng)
    print(f"data: {note}; {model.n_params} parameters; {args.steps} timed steps after "
          f"{args.warmup} warm-up; device {args.device}")
    set_num_threads(args.threads)
    steppers = {}
    for row in args.rows.split(","):
        if row == "symode":
            steppers[row] = symode_stepper(theta.copy(), args.device)
        elif row == "torch":
            try:
                import torch
            except ImportError as exc:
                print(f"torch: skipped ({exc})")
                continue
            torch.set_num_threads(args.threads)
            steppers[row] = torch_stepper(model.named_views(theta.copy()), args.device)
        else:
            raise SystemExit(f"unknown row {row!r}: use symode and/or torch")
    results = {row: dict(times=[], nfe=[]) for row in steppers}
    for k, (x, y) in enumerate(batches):                     # the libraries take turns
        for row, step in steppers.items():
            start = time.perf_counter()
            nfe = step(x, y)
            if k >= args.warmup:
                results[row]["times"].append(time.perf_counter() - start)
                results[row]["nfe"].append(list(nfe))
    for row, r in results.items():
        nfe = np.array(r["nfe"])
        print(f"{row:8s} {np.median(r['times']):7.3f} s/step median, {np.mean(r['times']):7.3f} "
              f"mean; NFE forward {nfe[:, 0].mean():.1f}, backward {nfe[:, 1].mean():.1f}")
    if len(results) == 2:
        ts, tt = (np.array(results[r]["times"]) for r in ("symode", "torch"))
        print(f"symode / torch time per step: median of step ratios {np.median(ts / tt):.2f} "
              f"(ratio of means {ts.mean() / tt.mean():.2f}); "
              f"per function evaluation: "
              f"{_per_eval(results['symode']) / _per_eval(results['torch']):.2f}")
    os.makedirs(os.path.join(HERE, "output"), exist_ok=True)
    name = "mnist_step.json" if args.device == "cpu" else f"mnist_step_{args.device}.json"
    with open(os.path.join(HERE, "output", name), "w") as fh:
        json.dump(dict(note=note, steps=args.steps, threads=args.threads, device=args.device,
                       results=results), fh)


def _per_eval(r):
    nfe = np.array(r["nfe"])
    return np.mean(r["times"]) / np.mean(nfe[:, 0] + 2 * nfe[:, 1])


if __name__ == "__main__":
    main()
