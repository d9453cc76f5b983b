"""Where the time of a symode CUDA ensemble solve goes: input checks, transfers, the kernel.

    python benchmarks/gpu_breakdown.py --n 1000000 [--threads 64,128,256]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import symode as so
from symode.solvers import cuda_engine
from symode.solvers.solve import prepare, run

from bench_gpu import PARAMS, initial_states, lorenz_ode


def best(fn, repeat=3):
    out = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - start)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--threads", default="64,128,256")
    args = ap.parse_args()
    from numba import cuda

    ode = lorenz_ode()
    y0 = initial_states(args.n)
    opts = dict(params=PARAMS, rtol=1e-6, atol=1e-8, device="cuda")
    so.solve(ode, y0[:10], [0.0, 10.0], **opts)           # compile
    t_prep = best(lambda: prepare(ode, y0, [0.0, 10.0], **opts))
    prep = prepare(ode, y0, [0.0, 10.0], **opts)
    t_run = best(lambda: run(prep))
    print(f"N={args.n}: prepare {t_prep * 1e3:.1f} ms, run (transfers + kernel) "
          f"{t_run * 1e3:.1f} ms")
    d_y0 = cuda.to_device(y0)
    t_h2d = best(lambda: (cuda.to_device(y0), cuda.synchronize()))
    t_d2h = best(lambda: d_y0.copy_to_host())
    print(f"  y0 host->device {t_h2d * 1e3:.1f} ms, device->host {t_d2h * 1e3:.1f} ms")
    sol = so.solve(ode, d_y0, [0.0, 10.0], **opts)
    print("  cuda array in ->", type(sol.y).__name__)
    for tpb in [int(x) for x in args.threads.split(",")]:
        cuda_engine.THREADS_PER_BLOCK = tpb
        t_all = best(lambda: so.solve(ode, y0, [0.0, 10.0], **opts))
        print(f"  threads/block {tpb}: whole solve {t_all * 1e3:.1f} ms")
    cuda_engine.THREADS_PER_BLOCK = 128
    module = next(v for k, v in ode_dyn(ode).kernels.items()
                  if isinstance(k, tuple) and k[0] == "cuda")
    n = args.n
    inputs = (cuda.to_device(y0), cuda.to_device(np.array([[0.0, 10.0]])),
              cuda.to_device(PARAMS[None]), cuda.to_device(np.full(3, 1e-6)),
              cuda.to_device(np.full(3, 1e-8)), cuda.to_device(np.zeros(1)),
              cuda.to_device(np.zeros(1)), 10_000)
    outputs = (np.empty((2, n, 3)), np.empty((n, 3), np.int64), np.empty(n, np.int32),
               np.empty((n, 3)), np.empty((n, 1)), np.empty((n, 1, 3)), np.empty(n, np.int64))
    t_k = best(lambda: cuda_engine.launch(module, "solve", n, inputs, outputs))
    print(f"  kernel alone (inputs on the GPU, outputs left there): {t_k * 1e3:.1f} ms")
    print("  kernel registers/thread:", _registers(module))


def ode_dyn(ode):
    from symode.dynamics import as_dynamics

    return as_dynamics(ode)


def _registers(module):
    try:
        return module.solve_kernel.get_regs_per_thread()
    except Exception as exc:
        return f"unknown ({exc})"


if __name__ == "__main__":
    main()
