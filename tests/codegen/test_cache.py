"""Generated code is written once and compiled once per cache directory."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import numpy as np, sympy as sp, symode as so
    from symode.dynamics import as_dynamics
    from symode.solvers.kernel_engine import compiled_kernel
    from symode.solvers.tableaus import get_tableau
    x, y, a = sp.symbols("x y a")
    ode = so.ODE([x, y], [a * y, -x], params=[a])
    sol = so.solve(ode, [[1.0, 0.0]], np.linspace(0, 1, 3), params=[1.0], method="bosh3")
    assert abs(sol.y[-1, 0, 0] - np.cos(1.0)) < 1e-4
    stats = compiled_kernel(as_dynamics(ode), get_tableau("bosh3")).solve_range.stats
    print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
""")


def _run(cache: Path) -> tuple[int, int]:
    env = {**os.environ, "SYMODE_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, check=True)
    hits, misses = map(int, out.stdout.split())
    return hits, misses


def test_second_process_loads_compiled_code(tmp_path):
    first = _run(tmp_path)
    assert first == (0, 1)                        # compiled and stored
    assert list(tmp_path.glob("kernel_bosh3_*.py"))
    assert list(tmp_path.glob("__pycache__/*.nbi"))
    second = _run(tmp_path)
    assert second == (1, 0)                       # loaded, not compiled


def test_key_changes_with_the_source():
    from symode.codegen.cache import source_key

    assert source_key("a = 1\n") != source_key("a = 2\n")
    assert source_key("a = 1\n") == source_key("a = 1\n")
