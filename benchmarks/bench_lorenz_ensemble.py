"""Lorenz ensemble benchmark: dopri5, rtol 1e-6, atol 1e-8, t in [0, 10], final state only.

Initial states: x0 = [1, 1, 1] + 0.1 * standard normal (numpy default_rng(0)), one row per
trajectory; parameters sigma = 10, rho = 28, beta = 8/3.

Rows of the table:

* ``reference``   hand-written numba dopri5 (benchmarks/reference_dopri5.py), per-trajectory steps
* ``symode``      ``symode.solve(..., method="dopri5")`` (skipped with a message if unavailable)
* ``torchdiffeq`` batched ``odeint`` on the CPU: one step size shared by the whole batch,
  torchdiffeq's default error norm (RMS over the whole batch)
* ``torchdiffeq-max`` the same with the error norm = worst per-trajectory RMS
* ``diffrax``     ``jit(vmap(diffeqsolve))``, per-trajectory steps, batched loop in lockstep
* ``scipy``       ``solve_ivp(method="RK45")`` in a Python loop (a subset, extrapolated)

Times are the best of ``--repeat`` calls after a first call; the first call's time (compile,
tracing, cache loads) is reported in its own column. Accuracy is the largest absolute
difference of any final-state component from a tight solution (scipy DOP853, rtol 1e-12,
atol 1e-14) over the first ``--tight-subset`` trajectories. The Lorenz system is chaotic over
t in [0, 10]: at rtol 1e-6 the final states of any dopri5 are expected to differ from the tight
solution by about 1e-3..1e-1, and different controllers land differently inside that band.

Usage::

    python benchmarks/bench_lorenz_ensemble.py                      # N = 1000 and 10000
    python benchmarks/bench_lorenz_ensemble.py --n 1000 --repeat 3 --skip-peers scipy
    python benchmarks/bench_lorenz_ensemble.py --symode-latency     # cold vs cached compile
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import peers  # noqa: E402
from reference_dopri5 import solve_reference  # noqa: E402

PARAMS = (peers.SIGMA, peers.RHO, peers.BETA)
PEER_NAMES = ("symode", "torchdiffeq", "torchdiffeq-max", "diffrax", "scipy")


# --- setup ----------------------------------------------------------------------------------

def initial_states(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return 1.0 + 0.1 * rng.standard_normal((n, 3))


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def versions() -> dict[str, str]:
    import numba
    import scipy

    out = {"python": platform.python_version(), "numpy": np.__version__,
           "numba": numba.__version__, "scipy": scipy.__version__}
    try:
        import symode
        out["symode"] = getattr(symode, "__version__", "?")
    except Exception as exc:  # noqa: BLE001 - any failure just means "not available"
        out["symode"] = f"unavailable ({type(exc).__name__})"
    for name, ver in peers.peer_versions().items():
        out.setdefault(name, ver)
    return out


def print_header(args) -> dict:
    import numba

    info = {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
            "numba_threads": numba.get_num_threads(), "versions": versions()}
    print("Lorenz ensemble benchmark: dopri5, rtol %g, atol %g, t in [0, %g], final state"
          % (args.rtol, args.atol, args.t1))
    print(f"machine: {info['cpu_model']}, os.cpu_count() = {info['cpu_count']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print(f"threads: reference/symode numba {info['numba_threads']}; torch "
          f"set_num_threads({args.threads}); diffrax XLA CPU client (its own pool); "
          "scipy 1 (Python loop)")
    print()
    return info


# --- timing ---------------------------------------------------------------------------------

def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def best_of(fn, repeat: int):
    """Run ``fn`` ``repeat`` times; the best time and the last result."""
    best, result = float("inf"), None
    for _ in range(max(1, repeat)):
        t, result = timed(fn)
        best = min(best, t)
    return best, result


_TIGHT: dict[bytes, np.ndarray] = {}


def tight_solution(y0_subset: np.ndarray, t1: float) -> np.ndarray:
    key = y0_subset.tobytes() + np.float64(t1).tobytes()
    if key not in _TIGHT:
        _TIGHT[key] = peers.solve_scipy_tight(y0_subset, t1)
    return _TIGHT[key]


# --- one row per method ---------------------------------------------------------------------

def row(method, n, seconds, first, y1, tight, steps, steps_per_traj, nfev_per_traj,
        threads, note=""):
    k = tight.shape[0]
    diff = np.abs(y1[:k] - tight)
    return {"method": method, "N": n, "seconds": seconds, "first_call_s": first,
            "us_per_traj": 1e6 * seconds / n, "ratio": None, "steps": steps,
            "steps_per_traj": steps_per_traj, "nfev_per_traj": nfev_per_traj,
            "max_abs_diff": float(np.nanmax(diff)) if np.isfinite(diff).any() else float("nan"),
            "nan_rows": int(np.isnan(y1).any(axis=1).sum()), "threads": threads, "note": note}


def run_reference(y0, args, tight):
    import numba

    n = y0.shape[0]
    fn = lambda: solve_reference(y0, args.t1, args.rtol, args.atol, PARAMS)  # noqa: E731
    first, _ = timed(fn)
    best, (y1, st) = best_of(fn, args.repeat)
    return row("reference (numba)", n, best, first, y1, tight, st["steps"], st["steps"] / n,
               st["nfev"] / n, f"numba {numba.get_num_threads()}",
               note="hand-written, per-trajectory steps")


def run_symode(y0, args, tight):
    import numba
    import sympy as sp

    import symode as so

    x, y, z, s, r, b = sp.symbols("x y z sigma rho beta")
    ode = so.ODE(states=[x, y, z], rhs=[s * (y - x), x * (r - z) - y, x * y - b * z],
                 params=[s, r, b])
    n = y0.shape[0]
    t = np.array([0.0, args.t1])

    def fn():
        return so.solve(ode, y0, t, params=list(PARAMS), method="dopri5",
                        rtol=args.rtol, atol=args.atol)

    first, _ = timed(fn)
    best, sol = best_of(fn, args.repeat)
    y1 = np.asarray(sol.y[-1], dtype=np.float64)
    st = sol.stats
    naccept, nreject = np.asarray(st.naccept), np.asarray(st.nreject)
    nfev = np.asarray(st.nfev)
    shared = bool(getattr(st, "shared", False))
    if shared:   # every entry is the batch's count
        steps = int(naccept.max() + nreject.max())
        per, fper = float(steps), float(nfev.max())
    else:
        steps = int(naccept.sum() + nreject.sum())
        per, fper = steps / n, float(nfev.sum()) / n
    engine = getattr(sol, "engine", "?")
    return row("symode", n, best, first, y1, tight, steps, per, fper,
               f"numba {numba.get_num_threads()}",
               note=f"engine {engine}; first call with the code cache as found")


def run_torchdiffeq(y0, args, tight, norm):
    n = y0.shape[0]
    fn = lambda: peers.solve_torchdiffeq(y0, args.t1, args.rtol, args.atol,  # noqa: E731
                                         norm=norm, threads=args.threads)
    first, _ = timed(fn)
    best, (y1, st) = best_of(fn, args.repeat)
    name = "torchdiffeq" if norm == "rms" else "torchdiffeq-max"
    note = ("one shared step, RMS norm over the batch" if norm == "rms"
            else "one shared step, worst per-trajectory RMS")
    # every trajectory is advanced by every shared step: per-trajectory work = batch counts
    return row(name, n, best, first, y1, tight, st["steps"], float(st["steps"]),
               float(st["nfev"]), f"torch {st['threads']}", note=note)


def run_diffrax(y0, args, tight):
    n = y0.shape[0]
    solver = peers.DiffraxSolver(args.t1, args.rtol, args.atol)
    compile_s = solver.compile(n)
    first_run, _ = timed(lambda: solver(y0))
    best, (y1, st) = best_of(lambda: solver(y0), args.repeat)
    return row("diffrax", n, best, compile_s + first_run, y1, tight, st["steps"],
               st["steps"] / n, st["nfev"] / n, "XLA CPU",
               note=f"jit(vmap); compile {compile_s:.2f} s + first run {first_run:.3f} s; "
                    f"lockstep loop {st['lockstep_iterations']} iterations; nfev = 6*steps+2")


def run_scipy(y0, args, tight):
    n = y0.shape[0]
    m = min(n, max(args.scipy_subset, tight.shape[0]))
    sub = y0[:m]
    fn = lambda: peers.solve_scipy(sub, args.t1, args.rtol, args.atol)  # noqa: E731
    best, (y1, st) = best_of(fn, args.scipy_repeat)
    seconds = best * n / m
    attempted = (st["nfev"] - 2 * m) / 6.0   # RK45: 2 evaluations to start, 6 per attempt
    note = "RK45 in a Python loop"
    if m < n:
        note += f"; timed on {m} trajectories, extrapolated linearly to {n}"
        print(f"  scipy: timed {m} of {n} trajectories ({best:.2f} s), extrapolated linearly")
    return row("scipy RK45", n, seconds, float("nan"), y1, tight, int(round(attempted * n / m)),
               attempted / m, st["nfev"] / m, "1", note=note)


# --- output ---------------------------------------------------------------------------------

def fmt(v, spec):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return format(v, spec)


COLUMNS = [("method", "method", "s"), ("N", "N", "d"), ("seconds", "seconds", ".4f"),
           ("us_per_traj", "µs/traj", ".2f"), ("ratio", "× ref", ".2f"),
           ("first_call_s", "first call s", ".2f"), ("steps", "steps (total)", ",d"),
           ("steps_per_traj", "steps/traj", ".1f"), ("nfev_per_traj", "nfev/traj", ".0f"),
           ("max_abs_diff", "max abs Δ vs DOP853", ".2e"), ("threads", "threads", "s")]


def table_lines(rows, markdown=False):
    header = [c[1] for c in COLUMNS]
    body = [[fmt(r[key], spec) if spec != "s" else str(r[key]) for key, _, spec in COLUMNS]
            for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return lines
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                       for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for b in body:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(b, widths))))
    return lines


# --- symode first-call latency --------------------------------------------------------------

LATENCY_SNIPPET = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    import numpy as np, sympy as sp
    import symode as so
    t_import = time.perf_counter() - t0
    x, y, z, s, r, b = sp.symbols("x y z sigma rho beta")
    ode = so.ODE(states=[x, y, z], rhs=[s * (y - x), x * (r - z) - y, x * y - b * z],
                 params=[s, r, b])
    y0 = 1.0 + 0.1 * np.random.default_rng(0).standard_normal(({n}, 3))
    kw = dict(params=[10.0, 28.0, 8.0 / 3.0], method="dopri5", rtol={rtol!r}, atol={atol!r})
    t1 = time.perf_counter()
    so.solve(ode, y0, [0.0, {t_end!r}], **kw)
    t_first = time.perf_counter() - t1
    t2 = time.perf_counter()
    so.solve(ode, y0, [0.0, {t_end!r}], **kw)
    t_second = time.perf_counter() - t2
    print("LATENCY " + json.dumps(dict(import_s=t_import, first_solve_s=t_first,
                                       second_solve_s=t_second)))
""")


def symode_latency(args) -> list[dict]:
    code = LATENCY_SNIPPET.format(n=args.latency_n, rtol=args.rtol, atol=args.atol,
                                  t_end=args.t1)
    results = []
    with tempfile.TemporaryDirectory(prefix="symode-cache-") as cache:
        env = dict(os.environ, SYMODE_CACHE_DIR=cache)
        for label in ("fresh process, empty cache", "fresh process, cache filled by the first"):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                  text=True, cwd=str(HERE.parent))
            wall = time.perf_counter() - start
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("LATENCY ")), None)
            if proc.returncode != 0 or line is None:
                reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"symode: unavailable ({reason})")
                return results
            res = json.loads(line[len("LATENCY "):])
            res.update(label=label, process_wall_s=wall)
            results.append(res)
    print(f"symode first-call latency (N = {args.latency_n}, SYMODE_CACHE_DIR = a new temp dir)")
    print(f"{'process':42s} {'import s':>9s} {'1st solve s':>12s} {'2nd solve s':>12s} "
          f"{'process wall s':>15s}")
    for r in results:
        print(f"{r['label']:42s} {r['import_s']:9.3f} {r['first_solve_s']:12.3f} "
              f"{r['second_solve_s']:12.4f} {r['process_wall_s']:15.2f}")
    return results


# --- main -----------------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[1000, 10000],
                   help="ensemble sizes (default: 1000 10000)")
    p.add_argument("--repeat", type=int, default=5, help="timed calls per method (best is kept)")
    p.add_argument("--skip-peers", nargs="*", default=[], choices=PEER_NAMES, metavar="NAME",
                   help=f"methods to skip, among {', '.join(PEER_NAMES)} "
                        "('torchdiffeq' skips both torchdiffeq rows)")
    p.add_argument("--t1", type=float, default=10.0)
    p.add_argument("--rtol", type=float, default=1e-6)
    p.add_argument("--atol", type=float, default=1e-8)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--scipy-subset", type=int, default=200,
                   help="trajectories scipy actually solves; its time is scaled to N")
    p.add_argument("--scipy-repeat", type=int, default=1)
    p.add_argument("--tight-subset", type=int, default=50,
                   help="trajectories checked against the DOP853 rtol 1e-12 solution")
    p.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    p.add_argument("--json", type=Path, help="write the rows and machine info to this file")
    p.add_argument("--symode-latency", action="store_true",
                   help="only measure symode's first-call latency in two fresh processes")
    p.add_argument("--latency-n", type=int, default=1000)
    args = p.parse_args(argv)

    info = print_header(args)
    if args.symode_latency:
        lat = symode_latency(args)
        if args.json:
            args.json.write_text(json.dumps({"info": info, "symode_latency": lat}, indent=2))
        return 0

    skip = set(args.skip_peers)
    if "torchdiffeq" in skip:
        skip.add("torchdiffeq-max")
    if "torchdiffeq" not in skip or "torchdiffeq-max" not in skip:
        try:
            import torch
            torch.set_num_threads(args.threads)
        except ImportError:
            pass

    runners = [
        ("symode", lambda y0, tight: run_symode(y0, args, tight)),
        ("torchdiffeq", lambda y0, tight: run_torchdiffeq(y0, args, tight, "rms")),
        ("torchdiffeq-max", lambda y0, tight: run_torchdiffeq(y0, args, tight, "max")),
        ("diffrax", lambda y0, tight: run_diffrax(y0, args, tight)),
        ("scipy", lambda y0, tight: run_scipy(y0, args, tight)),
    ]

    rows = []
    for n in args.n:
        y0 = initial_states(n)
        k = min(n, args.tight_subset)
        t, tight = timed(lambda: tight_solution(y0[:k], args.t1))
        print(f"N = {n}: tight reference (DOP853 rtol 1e-12, atol 1e-14) on {k} trajectories "
              f"({t:.1f} s)")
        started = time.perf_counter()
        ref = run_reference(y0, args, tight)
        ref["ratio"] = 1.0
        rows.append(ref)
        print(f"  reference: {ref['seconds']:.4f} s (this row took "
              f"{time.perf_counter() - started:.1f} s of wall time)")
        for name, runner in runners:
            if name in skip:
                continue
            started = time.perf_counter()
            try:
                r = runner(y0, tight)
            except ImportError as exc:
                print(f"  {name}: unavailable ({exc})")
                continue
            except Exception as exc:  # noqa: BLE001 - keep the benchmark going
                print(f"  {name}: {'unavailable' if name == 'symode' else 'failed'} "
                      f"({type(exc).__name__}: {exc})")
                continue
            r["ratio"] = r["seconds"] / ref["seconds"]
            rows.append(r)
            print(f"  {name}: {r['seconds']:.4f} s (this row took "
                  f"{time.perf_counter() - started:.1f} s of wall time)")
            if r["nan_rows"]:
                print(f"  {name}: WARNING {r['nan_rows']} trajectories ended with NaN")

    print()
    for line in table_lines(rows):
        print(line)
    print()
    print("notes:")
    for r in rows:
        if r["note"]:
            print(f"  {r['method']} (N={r['N']}): {r['note']}")
    print("  steps = attempted steps (accepted + rejected); for torchdiffeq they are the batch's "
          "shared steps, each advancing all N trajectories; scipy's are derived from nfev.")
    print("  max abs Δ is over the first %d trajectories; Lorenz is chaotic on [0, %g], so "
          "1e-3..1e-1 is the expected size at rtol %g." % (args.tight_subset, args.t1, args.rtol))
    if args.markdown:
        print()
        for line in table_lines(rows, markdown=True):
            print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"info": info, "args": {k: (str(v) if isinstance(v, Path)
                                                                    else v)
                                                                for k, v in vars(args).items()},
                                         "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
