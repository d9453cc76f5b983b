"""Function evaluations of a trained MNIST ODE-Net, as in Figure 3 of the Neural ODE paper.

Four panels: (a) forward NFE against the solver tolerance, (b) wall time of the forward pass
against its NFE, (c) backward NFE (the backsolve adjoint) against forward NFE, (d) NFE per
training step over training. The ODE block of the checkpoint's parameters is solved on a test
batch at tolerances 1e-1 … 1e-5 (rtol = atol); the stem runs once, the head gives the
cotangent of the loss for the backward pass.

Run:  python examples/odenet_nfe.py --data ../shared/data/mnist \
          --checkpoint examples/output/mnist_odenet.ckpt
      (figure: examples/output/odenet_nfe.png; numbers: examples/output/odenet_nfe.json)
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from symode import nn
from symode.data.mnist import as_float, load_mnist
from symode.models import odenet
from symode.models.odenet import ode_function
from symode.nn.io import load_checkpoint
from _plotting import OUTPUT, pyplot, save

TOLERANCES = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)


def measure(theta, x, y, tolerances=TOLERANCES, repeat=2):
    """Forward/backward NFE and forward time of the ODE block at each tolerance."""
    model = odenet()
    parts = list(model.children)
    k = parts.index(next(m for m in parts if isinstance(m, nn.ODEBlock)))
    stem, head = nn.Sequential(*parts[:k]), nn.Sequential(*parts[k + 1:])
    thetas = model.child_thetas(theta)
    th_stem = np.concatenate(thetas[:k])
    th_block = thetas[k]
    th_head = np.concatenate(thetas[k + 1:])
    z = stem(th_stem, x)
    rows = []
    for tol in tolerances:
        block = nn.ODEBlock(ode_function(), rtol=tol, atol=tol)
        seconds = []
        for _ in range(repeat):
            start = time.perf_counter()
            out, cache = block.forward(th_block, z)
            seconds.append(time.perf_counter() - start)
        logits, hcache = head.forward(th_head, out)
        loss, dlogits = nn.softmax_cross_entropy(logits, y)
        zbar, _ = head.vjp(th_head, hcache, dlogits)
        block.vjp(th_block, cache, zbar)
        rows.append(dict(tol=tol, nfe_forward=block.nfe_forward,
                         nfe_backward=block.nfe_backward, seconds=min(seconds),
                         error=float(np.mean(np.argmax(logits, 1) != y))))
        print(f"tol {tol:7.0e}: NFE forward {block.nfe_forward:4d}, backward "
              f"{block.nfe_backward:4d}, forward {1e3 * min(seconds):7.1f} ms, batch error "
              f"{100 * rows[-1]['error']:.1f}%", flush=True)
    return rows


def plot(rows, history):
    plt = pyplot()
    if plt is None:
        return
    tol = [r["tol"] for r in rows]
    fwd = [r["nfe_forward"] for r in rows]
    bwd = [r["nfe_backward"] for r in rows]
    sec = [r["seconds"] for r in rows]
    fig, ax = plt.subplots(1, 4, figsize=(18, 4))
    ax[0].semilogx(tol, fwd, "o-")
    ax[0].invert_xaxis()
    ax[0].set_xlabel("tolerance (rtol = atol)")
    ax[0].set_ylabel("forward NFE")
    ax[0].set_title("(a) NFE against tolerance")
    ax[1].plot(fwd, sec, "o-")
    ax[1].set_xlabel("forward NFE")
    ax[1].set_ylabel("forward time (s)")
    ax[1].set_title("(b) time against NFE")
    ax[2].plot(fwd, bwd, "o")
    top = max(fwd + bwd)
    ax[2].plot([0, top], [0, top], ":", color="0.6", label="backward = forward")
    ax[2].set_xlabel("forward NFE")
    ax[2].set_ylabel("backward NFE")
    ax[2].legend()
    ax[2].set_title("(c) backward against forward NFE")
    if history:
        f = np.asarray(history["nfe_forward"], dtype=float)
        k = max(1, len(f) // 50)
        smooth = np.convolve(f, np.ones(k) / k, mode="valid")
        ax[3].plot(f, color="0.75")
        ax[3].plot(np.arange(len(smooth)) + k - 1, smooth, "k")
    ax[3].set_xlabel("training step")
    ax[3].set_ylabel("forward NFE")
    ax[3].set_title("(d) NFE over training")
    save(fig, "odenet_nfe.png")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoint", default=str(OUTPUT / "mnist_odenet.ckpt"))
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args(argv)
    ck = load_checkpoint(args.checkpoint)
    x, y = load_mnist(args.data, "test")
    x, y = as_float(x[:args.batch]), y[:args.batch]
    theta = np.asarray(ck["theta"])
    rows = measure(theta.astype(x.dtype), x, y)
    history = ck.get("history")
    with open(OUTPUT / "odenet_nfe.json", "w") as fh:
        json.dump(dict(checkpoint=args.checkpoint, steps=len(history["loss"]) if history else 0,
                       rows=rows), fh, indent=1)
    plot(rows, history)


if __name__ == "__main__":
    main()
