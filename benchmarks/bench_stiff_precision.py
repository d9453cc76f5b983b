"""Work-precision diagrams for stiff ensembles: time against error over a sweep of tolerances,
for symode's rodas4 and rodas5p, scipy's LSODA and, when installed, diffrax's Kvaerno5.

The problems are those of ``bench_stiff.py`` (Robertson and Van der Pol, every trajectory with
its own parameters). For rtol = 1e-3 … 1e-9, atol is the problem's atol (at rtol 1e-6) scaled
with rtol. Error: the largest difference at the saved times from scipy Radau at rtol 1e-13,
atol 1e-22 (it agrees with BDF there to 1e-11) over the first ``--tight-subset`` trajectories,
each component's error relative to that component's largest value along its trajectory (so
Robertson's y2, near 1e-5, counts as much as y1). Times: symode and diffrax best of
``--repeat`` calls after a first one, for all N trajectories; scipy LSODA in a Python loop over
``--scipy-subset`` trajectories, scaled to N. diffrax takes the tolerances as traced arguments,
so it compiles once per problem.

Run:  python benchmarks/bench_stiff_precision.py [--n 1000] [--skip-peers lsoda,diffrax]
Writes benchmarks/output/stiff_precision.json and, with matplotlib, stiff_precision.png.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import symode as so
from bench_stiff import PROBLEMS, best_of, diffrax_solver, scipy_run

HERE = os.path.dirname(os.path.abspath(__file__))
RTOLS = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9]


def sweep(p, args, skip):
    """{method: [(rtol, seconds, error), ...]} for one problem."""
    tight = range(min(args.tight_subset, args.scipy_subset, args.n))
    ref, _ = scipy_run(p, "Radau", tight, 1e-13, 1e-22)
    atol0 = p["atol"]
    scale = np.abs(ref).max(axis=0)          # each component's size along its trajectory

    def error(y):
        return float(np.max(np.abs(y[:, :len(tight)] - ref) / scale))

    rows = {}
    for method in ("rodas4", "rodas5p"):
        for rtol in RTOLS:
            atol = atol0 * rtol / 1e-6
            sol, best, _ = best_of(lambda: so.solve(p["ode"], p["y0"], p["t"], params=p["params"],
                                                    method=method, rtol=rtol, atol=atol,
                                                    max_steps=1_000_000), args.repeat)
            rows.setdefault(f"symode {method}", []).append((rtol, best, error(sol.y)))
    if "lsoda" not in skip:
        idx = range(min(args.scipy_subset, args.n))
        for rtol in RTOLS:
            start = time.perf_counter()
            y, _ = scipy_run(p, "LSODA", idx, rtol, atol0 * rtol / 1e-6)
            seconds = (time.perf_counter() - start) * args.n / len(idx)
            rows.setdefault("scipy LSODA (loop, scaled)", []).append((rtol, seconds, error(y)))
    if "diffrax" not in skip:
        try:
            run = diffrax_solver(p)
        except ImportError as exc:
            print(f"diffrax: skipped ({exc})")
        else:
            for rtol in RTOLS:
                y, best, _ = best_of(lambda: run(rtol, atol0 * rtol / 1e-6), args.repeat)
                rows.setdefault("diffrax Kvaerno5 jit(vmap)", []).append((rtol, best, error(y)))
    return rows


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.6), squeeze=False)
    for ax, (name, rows) in zip(axes[0], results.items()):
        for method, pts in rows.items():
            _, sec, err = zip(*pts)
            ax.loglog(err, sec, "o-", label=method)
        ax.set_xlabel("max error (relative to each component's scale)")
        ax.set_ylabel("seconds for the ensemble")
        ax.set_title(f"{name}: rtol 1e-3 … 1e-9")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--problems", default="robertson,vdp")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--scipy-subset", type=int, default=10)
    parser.add_argument("--tight-subset", type=int, default=5)
    parser.add_argument("--skip-peers", default="", help="comma list of lsoda,diffrax")
    args = parser.parse_args()
    skip = set(filter(None, args.skip_peers.split(",")))
    results = {}
    for name in args.problems.split(","):
        p = PROBLEMS[name](args.n, np.random.default_rng(0))
        results[name] = rows = sweep(p, args, skip)
        print(f"\n{name}: N = {args.n}; seconds / max relative error at each rtol")
        print(f"{'method':28s}" + "".join(f"{r:>20.0e}" for r in RTOLS))
        for method, pts in rows.items():
            print(f"{method:28s}" + "".join(f"{s:10.4f} / {e:7.1e}" for _, s, e in pts))
    out = os.path.join(HERE, "output")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "stiff_precision.json"), "w") as fh:
        json.dump(dict(n=args.n, rtols=RTOLS, results=results), fh, indent=1)
    try:
        plot(results, os.path.join(out, "stiff_precision.png"))
        print(f"\nfigure: {os.path.join(out, 'stiff_precision.png')}")
    except ImportError:
        print("matplotlib not installed: no figure")


if __name__ == "__main__":
    main()
