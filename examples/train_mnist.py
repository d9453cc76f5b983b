"""Train the Neural ODE paper's MNIST classifiers (Table 1) with symode alone.

Models: ``odenet`` (one ODE block, dopri5, rtol = atol = 1e-3, backsolve adjoint), ``resnet``
(six residual blocks), ``rknet`` (the ODE block by RK4 with the discrete gradient) and ``mlp``.
Training as in the paper's code: SGD with momentum 0.9, batch 128, learning rate 0.1 divided by
10 at epochs 60, 100 and 140. A progress bar shows loss, accuracy, function evaluations of the
ODE block (forward/backward) and seconds per step; the test error is printed after each epoch.
A checkpoint is written atomically every ``--checkpoint-every`` steps and at each epoch's end;
``--resume`` continues from it exactly (same batches, same numbers). The history (per step and
per epoch) goes to a JSON file and a figure. Each batch is shared out among ``--threads``
threads (default: all CPUs; ``symode.nn.parallel``); a resumed run should use the same number,
as the order of the batch sums, and so the round-off, depends on it.

Run:  python examples/train_mnist.py --data ../shared/data/mnist --model odenet --epochs 1
      python examples/train_mnist.py --data DIR --model odenet --epochs 1 --resume
      (output: examples/output/mnist_<model>.{ckpt,json,png})
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from symode import nn
from symode.data.mnist import as_float, load_mnist
from symode.models import MODELS, PAPER_PARAMS, TrainConfig, train_classifier
from _plotting import OUTPUT, pyplot, save


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="directory with the four MNIST IDX .gz files")
    p.add_argument("--model", choices=sorted(MODELS), default="odenet")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--milestones", default="60,100,140",
                   help="epochs at which the learning rate is divided by 10")
    p.add_argument("--subset", type=int, default=None, help="train on the first N images")
    p.add_argument("--test-subset", type=int, default=None, help="test on the first N images")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint path (default examples/output/mnist_<model>.ckpt)")
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--threads", type=int, default=None,
                   help="threads that share out each batch (default: all CPUs; 1: none)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        nn.parallel.set_num_threads(args.threads)
    x_train, y_train = load_mnist(args.data, "train")
    x_test, y_test = load_mnist(args.data, "test")
    x_train, x_test = as_float(x_train[:args.subset]), as_float(x_test[:args.test_subset])
    y_train, y_test = y_train[:args.subset].astype(np.int64), y_test[:args.test_subset]
    dtype = np.dtype(args.dtype)
    x_train, x_test = x_train.astype(dtype), x_test.astype(dtype)

    model = MODELS[args.model]()
    rng = np.random.default_rng(args.seed)
    theta = model.init(rng, dtype=dtype)
    print(f"{args.model}: {model.n_params:,} parameters (paper: "
          f"{PAPER_PARAMS[args.model] / 1e6:.2f}M); {len(x_train)} training, {len(x_test)} "
          f"test images")
    steps_per_epoch = -(-len(x_train) // args.batch_size)
    milestones = [int(m) * steps_per_epoch for m in args.milestones.split(",") if m]
    schedule = nn.schedules.multistep(args.lr, milestones, 0.1)
    optimizer = nn.SGD(lr=args.lr, momentum=args.momentum)
    stem = os.path.join(OUTPUT, f"mnist_{args.model}")
    os.makedirs(OUTPUT, exist_ok=True)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                         checkpoint=args.checkpoint or stem + ".ckpt",
                         checkpoint_every=args.checkpoint_every, resume=args.resume,
                         max_steps=args.max_steps, progress=not args.no_progress)
    start = time.perf_counter()
    theta, history = train_classifier(model, theta, optimizer, schedule,
                                      (x_train, y_train, x_test, y_test), rng, config)
    print(f"done in {time.perf_counter() - start:.0f} s; steps {len(history['loss'])}; test "
          f"error per epoch: {[f'{100 * e:.2f}%' for e in history['test_error']]}")
    with open(stem + ".json", "w") as fh:
        json.dump(dict(model=args.model, n_params=model.n_params, args=vars(args),
                       history=history), fh)
    plot(args.model, history)
    return theta, history


def plot(name, history):
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    loss = np.asarray(history["loss"])
    k = max(1, len(loss) // 100)
    smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
    axes[0].plot(loss, color="0.75", label="batch loss")
    axes[0].plot(np.arange(len(smooth)) + k - 1, smooth, "k", label=f"mean of {k}")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].legend()
    axes[0].set_title("training loss")
    if history["test_error"]:
        epochs = np.arange(1, len(history["test_error"]) + 1)
        axes[1].plot(epochs, 100 * np.asarray(history["test_error"]), "o-")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("test error (%)")
    axes[1].set_title("test error")
    axes[2].plot(history["nfe_forward"], label="forward")
    axes[2].plot(history["nfe_backward"], label="backward")
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("function evaluations")
    axes[2].legend()
    axes[2].set_title("ODE block NFE over training")
    fig.suptitle(f"MNIST {name}")
    save(fig, f"mnist_{name}.png")


if __name__ == "__main__":
    main()
