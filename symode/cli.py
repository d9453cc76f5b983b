"""The ``symode`` command: declare a system in the shell, see what symode derives, solve it.

::

    symode show  "dx/dt = sigma*(y - x)" "dy/dt = x*(rho - z) - y" "dz/dt = x*y - beta*z"
    symode solve -f lorenz.ode -p sigma=10 -p rho=28 -p beta=8/3 --y0 1,1,1 --t 0:10:1001 -o out.csv
    symode fit "x' = -k*x" --data decay.csv -p k=1 --positive
    symode source -f lorenz.ode --what vjp
    symode info

A system is a list of equations, ``dx/dt = expr`` or ``x' = expr``, given as arguments or in a
file (``-f``, one per line, ``#`` starts a comment, ``-`` reads standard input); with
``--reactions`` the lines are reactions under mass action, ``2 A + B -> C ; k*exp(-E/T)``.
Every name on a right-hand side that is neither a state nor the time is a parameter (in the
order of ``-p``, then alphabetical). The text goes through symode's safe parser, never ``eval``.
Numbers (``-p``, ``--y0``, ``--t``) may be formulas of constants: ``8/3``, ``2*pi``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import sympy as sp

from . import __version__
from .errors import ExpressionError, SymodeError
from .symbolic import ODE
from .symbolic.parse import parse_expression

__all__ = ["main", "read_system", "read_observations", "parse_number", "parse_times"]

_DERIVATIVE = re.compile(r"^\s*d\s*([A-Za-z_]\w*)\s*/\s*d\s*([A-Za-z_]\w*)\s*=(.*)$")
_PRIME = re.compile(r"^\s*([A-Za-z_]\w*)\s*'\s*=(.*)$")
SHOW = ("equations", "jacobian", "param_jacobian", "time_derivative", "vjp", "divergence",
        "adjoint")


# -- reading ---------------------------------------------------------------------------------
def parse_number(text: str, where: str) -> float:
    """A real number written as a formula of constants (``"8/3"``, ``"2*pi"``, ``"1e-3"``)."""
    expr = parse_expression(text, {}, where=where)
    if expr.free_symbols:
        names = ", ".join(sorted(s.name for s in expr.free_symbols))
        raise ExpressionError(f"{where} = {text!r} is not a number (it names {names})")
    value = complex(sp.N(expr))
    if value.imag != 0 or not np.isfinite(value.real):
        raise ExpressionError(f"{where} = {text!r} is not a finite real number")
    return value.real


def parse_times(text: str) -> np.ndarray:
    """``"0:10:101"`` (101 times from 0 to 10), ``"0:10"`` (both ends) or ``"0,0.5,2"``."""
    if ":" in text:
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise ExpressionError(f"--t {text!r}: write start:stop or start:stop:count")
        start, stop = (parse_number(p, "--t") for p in parts[:2])
        count = 2 if len(parts) == 2 else parse_number(parts[2], "--t count")
        if count != int(count) or count < 2:
            raise ExpressionError(f"--t {text!r}: the count must be a whole number >= 2")
        return np.linspace(start, stop, int(count))
    return np.array([parse_number(p, "--t") for p in text.split(",")])


def _lines(equations: Sequence[str], file: str | None) -> list[tuple[str, str]]:
    """``(where, text)`` of every equation: the arguments, then the file's lines."""
    out = [(f"equation {i + 1}", e) for i, e in enumerate(equations)]
    if file is not None:
        try:
            text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise SymodeError(f"cannot read the system file {file}: {exc.strerror}") from None
        for n, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if line:
                out.append((f"{file}:{n}", line))
    if not out:
        raise SymodeError("no equations: give them as arguments (\"dx/dt = -k*x\") or in a file "
                          "with -f")
    return out


def read_system(equations: Sequence[str] = (), file: str | None = None,
                params: Sequence[str] = (), t: str = "t", reactions: bool = False) -> ODE:
    """The :class:`~symode.ODE` of equations (``"dx/dt = -k*x"``, ``"x' = -k*x"``) or reactions
    (``"A + B -> C ; k"``) from the arguments and a file.

    Parameters
    ----------
    params : sequence of str
        Parameter names, in the order wanted; names the right-hand sides use beyond these and
        the states become parameters too, after them, alphabetically.
    t : str
        Name of the time (``dx/ds`` lines name it themselves).
    """
    lines = _lines(equations, file)
    if reactions:
        texts, rates = zip(*((text.split(";", 1) + [None])[:2] for _, text in lines))
        rates = None if all(r is None for r in rates) else [
            f"k{j + 1}" if r is None else r.strip() for j, r in enumerate(rates)]
        return ODE.from_reactions(list(texts), rates, t=t)
    states, texts, times = [], [], set()
    for where, text in lines:
        m = _DERIVATIVE.match(text)
        if m:
            name, time_name, rhs = m.groups()
            times.add(time_name)
        else:
            m = _PRIME.match(text)
            if not m:
                raise ExpressionError(f"{where}: cannot read {text!r} as an equation; write "
                                      f"'dx/dt = expression' or \"x' = expression\"")
            name, rhs = m.groups()
        if name in states:
            raise ExpressionError(f"{where}: a second equation for {name}")
        states.append(name)
        texts.append((where, rhs.strip()))
    if len(times) > 1:
        raise ExpressionError(f"the equations differentiate by different times: "
                              f"{', '.join(sorted(times))}")
    t = times.pop() if times else t
    known = {n: sp.Symbol(n) for n in (*states, *params, t)}
    rhs = [parse_expression(text, known, where=f"{where} (d{name}/d{t})")
           for (where, text), name in zip(texts, states)]
    used = set().union(*(e.free_symbols for e in rhs))
    extra = sorted({s.name for s in used} - set(known))
    theta = [known[p] for p in params] + [sp.Symbol(p) for p in extra]
    return ODE([known[s] for s in states], rhs, theta, known[t])


def _param_items(items: Sequence[str]) -> list[tuple[str, str | None]]:
    """``-p k=2 -p a,b=1`` as ``[("k", "2"), ("a", None), ("b", "1")]``."""
    out = []
    for item in items:
        for part in filter(None, (p.strip() for p in item.split(","))):
            name, _, value = part.partition("=")
            out.append((name.strip(), value.strip() if "=" in part else None))
    return out


def _initial_states(texts: Sequence[str], ode: ODE) -> np.ndarray:
    """``--y0 1,0`` (in state order) or ``--y0 x=1,y=0``, once per trajectory."""
    names = [s.name for s in ode.states]
    rows = []
    for k, text in enumerate(texts):
        parts = [p.strip() for p in text.split(",") if p.strip()]
        where = f"--y0 {text!r}"
        if parts and all("=" in p for p in parts):
            given = dict(p.split("=", 1) for p in parts)
            given = {n.strip(): v for n, v in given.items()}
            unknown = sorted(set(given) - set(names))
            if unknown:
                raise ExpressionError(f"{where}: {', '.join(unknown)} is not a state (the states: "
                                      f"{', '.join(names)})")
            missing = [n for n in names if n not in given]
            if missing:
                raise ExpressionError(f"{where}: no value for {', '.join(missing)}")
            parts = [given[n] for n in names]
        elif len(parts) != len(names):
            raise ExpressionError(f"{where}: {len(parts)} values for {len(names)} states "
                                  f"({', '.join(names)})")
        rows.append([parse_number(p, f"y0[{k}]") for p in parts])
    return np.array(rows)


# -- commands --------------------------------------------------------------------------------
def _system(args) -> ODE:
    names = [n for n, _ in _param_items(args.param)]
    return read_system(args.equations, args.file, names, args.time, args.reactions)


def _matrix(m, fmt: str) -> str:
    """A derived expression or matrix: sympy's pretty print, LaTeX, or one row per line."""
    if fmt == "pretty":
        return sp.pretty(m)
    if fmt == "latex":
        return sp.latex(m)
    if isinstance(m, sp.MatrixBase):
        return "\n".join("  [" + ", ".join(map(str, m.row(i))) + "]" for i in range(m.rows))
    return f"  {m}"


def _render(obj, fmt: str) -> str:
    """An ODE or adjoint system in ``fmt``."""
    return str(obj) if fmt == "text" else getattr(obj, fmt)()


def cmd_show(args) -> None:
    ode = _system(args)
    what = [w.strip().replace("-", "_") for w in args.what.split(",")]
    bad = [w for w in what if w not in SHOW]
    if bad:
        raise SymodeError(f"--what: unknown {', '.join(bad)}; choose from {', '.join(SHOW)}")
    fmt = args.format
    blocks = []
    for w in what:
        if w == "equations":
            body = _render(ode, fmt)
            head = "System" if fmt != "text" else None
        elif w == "adjoint":
            body = _render(ode.adjoint(), fmt)
            head = "Adjoint system" if fmt == "latex" else None
        elif w == "vjp":
            a = ode.adjoint_symbols
            rows = [(f"a·∂f/∂{s.name}", e) for s, e in zip(ode.states, ode.vjp.z)]
            rows += [(f"a·∂f/∂{p.name}", e) for p, e in zip(ode.params, ode.vjp.theta)]
            rows += [(f"a·∂f/∂{ode.t.name}", ode.vjp.t)]
            head = f"Vector-Jacobian products, a = ({', '.join(s.name for s in a)})"
            body = "\n".join(f"  {k} = {sp.latex(e) if fmt == 'latex' else e}" for k, e in rows)
        elif w == "divergence":
            head = "Divergence (trace of the Jacobian)"
            body = _matrix(ode.divergence, fmt)
        else:
            head = {"jacobian": "Jacobian df/dz", "param_jacobian": "Jacobian df/dθ",
                    "time_derivative": "df/dt"}[w]
            body = _matrix(getattr(ode, w), fmt)
        blocks.append(body if head is None else f"{head}:\n{body}")
    print("\n\n".join(blocks))


def _param_values(args, ode: ODE, what: str) -> list[float]:
    """The value of every parameter from ``-p``, in the system's order."""
    items = dict(_param_items(args.param))
    missing = [p.name for p in ode.params if items.get(p.name) is None]
    if missing:
        raise SymodeError(f"no {what} for the parameter(s) {', '.join(missing)}; give each with "
                          f"-p NAME=VALUE")
    return [parse_number(items[p.name], f"parameter {p.name}") for p in ode.params]


def cmd_solve(args) -> None:
    ode = _system(args)
    params = _param_values(args, ode, "value")
    if not args.y0:
        raise SymodeError(f"give the initial state with --y0 (in the order "
                          f"{', '.join(s.name for s in ode.states)}), once per trajectory")
    y0 = _initial_states(args.y0, ode)
    t = parse_times(args.t)
    from .solvers.solve import solve

    start = time.perf_counter()
    sol = solve(ode, y0, t, params=params or None, method=args.method, rtol=args.rtol,
                atol=args.atol)
    seconds = time.perf_counter() - start
    tot = sol.stats.total()
    print(f"{sol.method} ({sol.engine} engine), {len(y0)} trajectories: {tot['nfev']} "
          f"evaluations, {tot['naccept']} accepted and {tot['nreject']} rejected steps, "
          f"{seconds:.3f} s (compiling included on a first run)", file=sys.stderr)
    _write(sol, ode, args.out)
    if args.plot:
        from .viz import trajectories

        ax = trajectories(sol, names=ode)
        ax.figure.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"figure: {args.plot}", file=sys.stderr)


def _write(sol, ode: ODE, out: str | None) -> None:
    """CSV (``t, [trajectory,] states…``) to stdout or a file, or ``.npz`` with ``t``, ``y``
    (len(t), batch, dim) and the state names."""
    names = [s.name for s in ode.states]
    if out is not None and out.endswith(".npz"):
        np.savez(out, t=sol.t, y=sol.y, states=np.array(names))
        print(f"wrote {out}", file=sys.stderr)
        return
    T, batch, dim = sol.y.shape
    cols = [np.repeat(sol.t, batch)[:, None]]
    header = ["t"]
    if batch > 1:
        cols.append(np.tile(np.arange(batch), T)[:, None])
        header.append("trajectory")
    cols.append(sol.y.reshape(T * batch, dim))
    table = np.hstack(cols)
    fmt = ["%.17g"] + (["%d"] if batch > 1 else []) + ["%.17g"] * dim
    target = sys.stdout if out is None else out
    np.savetxt(target, table, fmt=fmt, delimiter=",", header=",".join(header + names),
               comments="")
    if out is not None:
        print(f"wrote {out}", file=sys.stderr)


def read_observations(path: str, ode: ODE) -> tuple[np.ndarray, np.ndarray]:
    """``(t, y_obs)`` from a CSV with a header ``t[,trajectory],<states>``, the layout that
    ``symode solve`` writes. States may be left out (unobserved), cells left empty (missing).

    Returns ``t`` of shape (T,) or (batch, T) and ``y_obs`` of shape (T, batch, dim).
    """
    try:
        table = np.genfromtxt(path, delimiter=",", names=True, dtype=float,
                              missing_values="", filling_values=np.nan, ndmin=1)
    except OSError as exc:
        raise SymodeError(f"cannot read the data file {path}: {exc}") from None
    except ValueError as exc:
        raise SymodeError(f"{path}: not a CSV table with a header row ({exc})") from None
    cols = list(table.dtype.names or ())
    names = [st.name for st in ode.states]
    if "t" not in cols:
        raise SymodeError(f"{path}: no column 't' (the header has {', '.join(cols)})")
    unknown = [c for c in cols if c not in ("t", "trajectory", *names)]
    if unknown:
        raise SymodeError(f"{path}: column(s) {', '.join(unknown)} are not states of the "
                          f"system ({', '.join(names)})")
    traj = table["trajectory"].astype(int) if "trajectory" in cols else np.zeros(len(table), int)
    ids = np.unique(traj)
    rows = [np.flatnonzero(traj == i) for i in ids]
    if len({len(r) for r in rows}) != 1:
        raise SymodeError(f"{path}: the trajectories have different numbers of rows; give each "
                          f"the same number of observation times")
    T, batch = len(rows[0]), len(rows)
    times = np.stack([table["t"][r] for r in rows])                  # (batch, T)
    y = np.full((T, batch, len(names)), np.nan)
    for k, name in enumerate(names):
        if name in cols:
            y[:, :, k] = np.stack([table[name][r] for r in rows], axis=1)
    t = times[0] if (times == times[0]).all() else times
    return t, y


def cmd_fit(args) -> None:
    from .estimation import fit_parameters

    ode = _system(args)
    params0 = _param_values(args, ode, "starting value")
    t, y_obs = read_observations(args.data, ode)
    y0 = _initial_states(args.y0, ode) if args.y0 else None
    if y0 is not None and len(y0) == 1:
        y0 = y0[0]
    start = time.perf_counter()
    fit = fit_parameters(ode, t, y_obs, params0, y0=y0, fit_y0=args.fit_y0,
                         positive=args.positive, method=args.method, rtol=args.rtol,
                         atol=args.atol)
    n_obs = int(np.isfinite(y_obs).sum())
    print(f"{'converged' if fit.success else 'NOT converged'}: {fit.message}; {fit.nit} "
          f"iterations, {fit.nfev} solves with gradients, {time.perf_counter() - start:.2f} s; "
          f"{n_obs} observations, loss (half the sum of squares) {fit.loss:.6g}",
          file=sys.stderr)
    rows = [(p.name, v, e) for p, v, e in zip(ode.params, fit.params, fit.stderr)]
    if args.fit_y0:
        z0 = np.atleast_2d(fit.y0)
        for b in range(z0.shape[0]):
            for k, st in enumerate(ode.states):
                name = f"{st.name}0" + (f"[{b}]" if z0.shape[0] > 1 else "")
                rows.append((name, z0[b, k], fit.stderr[len(ode.params) + b * ode.dim + k]))
    width = max(len(r[0]) for r in rows)
    print(f"{'name':<{width}}  {'estimate':>14}  {'std. error':>11}")
    for name, value, err in rows:
        print(f"{name:<{width}}  {value:>14.8g}  {err:>11.3g}")
    if args.out:
        _write(fit.sol, ode, args.out)
    if args.plot:
        from .viz import trajectories

        t_fine = np.linspace(np.min(t), np.max(t), 400)
        z0 = np.atleast_2d(fit.y0)
        curve = (t_fine if np.ndim(t) == 1 else
                 np.stack([np.linspace(row[0], row[-1], 400) for row in t]))
        from .solvers.solve import solve

        dense = solve(ode, z0, curve, params=fit.params, method=args.method, rtol=args.rtol,
                      atol=args.atol)
        ax = trajectories(dense, names=ode)
        tt = np.broadcast_to(t, (y_obs.shape[1], y_obs.shape[0])) if np.ndim(t) == 1 else t
        for k in range(ode.dim):
            ax.plot(tt.T.ravel(), y_obs[:, :, k].ravel(), "o", ms=3, color=f"C{k % 10}")
        ax.set_title("fit (lines) and data (dots)")
        ax.figure.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"figure: {args.plot}", file=sys.stderr)


def cmd_source(args) -> None:
    from .solvers.solve import source

    print(source(_system(args), what=args.what, method=args.method))


def cmd_info(args) -> None:
    import numba
    import scipy

    from .codegen.cache import cache_dir

    rows = [("symode", __version__), ("python", sys.version.split()[0]),
            ("numpy", np.__version__), ("scipy", scipy.__version__), ("sympy", sp.__version__),
            ("numba", numba.__version__)]
    try:
        import cupy

        rows.append(("cupy", cupy.__version__))
        try:
            rows.append(("GPU", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()))
        except Exception as exc:   # cupy without a usable device
            rows.append(("GPU", f"none ({type(exc).__name__})"))
    except ImportError:
        rows.append(("cupy", 'not installed (GPU: pip install "symode[cuda]")'))
    rows.append(("code cache", str(cache_dir())))
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


# -- the parser ------------------------------------------------------------------------------
def _system_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("equations", nargs="*", help="equations 'dx/dt = expr' or \"x' = expr\"")
    p.add_argument("-f", "--file", help="a file of equations, one per line ('-': stdin)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME[=VALUE]",
                   help="a parameter (repeat, or separate by commas); solve needs each value")
    p.add_argument("--time", default="t", help="name of the time in x' = ... lines (default t)")
    p.add_argument("--reactions", action="store_true",
                   help="the lines are reactions 'A + B -> C ; rate' under mass action")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symode", description="Declare an ODE system, see its derivations, solve it.",
        epilog="Example: symode show \"dx/dt = -k*x\" --what jacobian,adjoint")
    parser.add_argument("--version", action="version", version=f"symode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    show = sub.add_parser("show", help="print the system and what symode derives from it")
    _system_args(show)
    show.add_argument("--what", default="equations,jacobian,adjoint",
                      help=f"comma-separated, of: {', '.join(SHOW)} (default: "
                           f"equations,jacobian,adjoint)")
    show.add_argument("--format", choices=("pretty", "text", "latex"), default="pretty")
    show.set_defaults(run=cmd_show)

    solve = sub.add_parser("solve", help="solve from one or more initial states")
    _system_args(solve)
    solve.add_argument("--y0", action="append", default=[], metavar="VALUES",
                       help="initial state '1,0' or 'x=1,y=0'; repeat for more trajectories")
    solve.add_argument("--t", required=True, metavar="TIMES",
                       help="saved times: start:stop:count, start:stop, or t0,t1,...")
    solve.add_argument("--method", default="dopri5")
    solve.add_argument("--rtol", type=float, default=1e-6)
    solve.add_argument("--atol", type=float, default=1e-9)
    solve.add_argument("-o", "--out", help="write .csv or .npz (default: CSV to stdout)")
    solve.add_argument("--plot", metavar="PNG", help="save a plot of the solution (needs "
                       "matplotlib)")
    solve.set_defaults(run=cmd_solve)

    fit = sub.add_parser("fit", help="fit the parameters to observations in a CSV file")
    _system_args(fit)
    fit.add_argument("--data", required=True, metavar="CSV",
                     help="observations: header t[,trajectory],<states>; empty cells and "
                          "absent states are unobserved")
    fit.add_argument("--y0", action="append", default=[], metavar="VALUES",
                     help="initial state(s), as for solve (default: the first observations)")
    fit.add_argument("--fit-y0", action="store_true", help="estimate the initial states too")
    fit.add_argument("--positive", action="store_true",
                     help="keep the parameters positive (fit their logarithms)")
    fit.add_argument("--method", default="dopri5")
    fit.add_argument("--rtol", type=float, default=1e-8)
    fit.add_argument("--atol", type=float, default=1e-10)
    fit.add_argument("-o", "--out", help="write the fitted solution (.csv or .npz)")
    fit.add_argument("--plot", metavar="PNG", help="save data and fit (needs matplotlib)")
    fit.set_defaults(run=cmd_fit)

    src = sub.add_parser("source", help="print the generated code")
    _system_args(src)
    src.add_argument("--what", choices=("rhs", "vjp", "kernel", "adjoint"), default="rhs")
    src.add_argument("--method", default="dopri5")
    src.set_defaults(run=cmd_source)

    info = sub.add_parser("info", help="versions, GPU and the code cache directory")
    info.set_defaults(run=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, 1 on a symode error, 2 on usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except SymodeError as exc:
        print(f"symode: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:        # `symode solve ... | head`
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
