"""The ``symode`` command: reading systems, numbers and times; show, solve, source, info."""

import io
import re
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

import symode as so
from symode.cli import main, parse_number, parse_times, read_system


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- reading -----------------------------------------------------------------------------------
def test_equation_forms_and_parameter_order():
    ode = read_system(["dx/dt = sigma*(y - x)", "y' = x*(rho - z) - y", "dz / dt = x*y - beta*z"],
                      params=["sigma"])
    x, y, z, sigma, rho, beta = sp.symbols("x y z sigma rho beta")
    assert ode.states == (x, y, z)
    assert ode.params == (sigma, beta, rho)        # given first, then the rest alphabetically
    assert ode.rhs == (sigma * (y - x), x * (rho - z) - y, x * y - beta * z)


def test_time_named_by_the_derivative():
    ode = read_system(["dx/ds = -k*x*s"])
    assert ode.t == sp.Symbol("s") and ode.params == (sp.Symbol("k"),)
    assert read_system(["x' = -x*tau"], t="tau").params == ()


def test_file_with_comments(tmp_path):
    path = tmp_path / "osc.ode"
    path.write_text("# harmonic oscillator\n\ndx/dt = v   # position\ndv/dt = -w^2*x\n")
    ode = read_system(file=str(path))
    assert [s.name for s in ode.states] == ["x", "v"]
    assert ode.rhs[1] == -sp.Symbol("w") ** 2 * sp.Symbol("x")


def test_reactions_with_and_without_rates():
    ode = read_system(["A -> B ; ka", "2 B -> 0"], reactions=True)
    A, B, ka, k2 = sp.symbols("A B ka k2")
    assert ode.rhs == (-ka * A, ka * A - 2 * k2 * B**2)
    assert read_system(["A -> B"], reactions=True).params == (sp.Symbol("k1"),)


@pytest.mark.parametrize("lines, message", [
    (["x = -x"], "cannot read 'x = -x' as an equation"),
    (["dx/dt = -x", "x' = 1"], "a second equation for x"),
    (["dx/dt = y", "dy/ds = -x"], "different times: s, t"),
    (["dx/dt = -k*"], "equation 1"),
    ([], "no equations"),
])
def test_bad_systems(lines, message):
    with pytest.raises(so.SymodeError, match=message):
        read_system(lines)


def test_missing_file():
    with pytest.raises(so.SymodeError, match="cannot read the system file nowhere.ode"):
        read_system(file="nowhere.ode")


def test_numbers_and_times():
    assert parse_number("8/3", "p") == pytest.approx(8 / 3, rel=1e-15)
    assert parse_number("2*pi", "p") == pytest.approx(2 * np.pi, rel=1e-15)
    assert parse_number("-1e-3", "p") == -1e-3
    for text, message in [("k", "not a number .it names k"), ("sqrt(-1)", "not a finite real"),
                          ("1/0", "not a finite real")]:
        with pytest.raises(so.SymodeError, match=message):
            parse_number(text, "p")
    np.testing.assert_array_equal(parse_times("0:10:11"), np.arange(11.0))
    np.testing.assert_array_equal(parse_times("1:2"), [1.0, 2.0])
    np.testing.assert_allclose(parse_times("0,pi/2,3"), [0, np.pi / 2, 3])
    for text in ("0:1:1", "0:1:2.5", "0:1:2:3"):
        with pytest.raises(so.SymodeError, match="--t"):
            parse_times(text)


# -- commands ----------------------------------------------------------------------------------
def test_solve_writes_the_exact_solution(capsys):
    code, out, err = run(capsys, "solve", "x' = -k*x + a", "-p", "k=2,a=1/2", "--y0", "1",
                         "--y0", "x=3", "--t", "0:1:11", "--rtol", "1e-10", "--atol", "1e-12")
    assert code == 0 and "dopri5" in err and "2 trajectories" in err
    lines = out.splitlines()
    assert lines[0] == "t,trajectory,x"
    table = np.loadtxt(io.StringIO(out), delimiter=",", skiprows=1)
    t, traj, x = table.T
    x0 = np.where(traj == 0, 1.0, 3.0)
    exact = 0.25 + (x0 - 0.25) * np.exp(-2 * t)            # x' = -2x + 1/2
    np.testing.assert_allclose(x, exact, rtol=1e-8)


def test_solve_npz_and_csv_files(tmp_path, capsys):
    npz, csv = tmp_path / "sol.npz", tmp_path / "sol.csv"
    argv = ["solve", "dx/dt = v", "dv/dt = -x", "--y0", "x=0,v=1", "--t", "0:pi:5",
            "--rtol", "1e-10", "--atol", "1e-12"]
    assert run(capsys, *argv, "-o", str(npz))[0] == 0
    data = np.load(npz)
    assert list(data["states"]) == ["x", "v"] and data["y"].shape == (5, 1, 2)
    np.testing.assert_allclose(data["y"][:, 0, 0], np.sin(data["t"]), atol=1e-8)
    assert run(capsys, *argv, "-o", str(csv))[0] == 0
    table = np.loadtxt(csv, delimiter=",", skiprows=1)
    assert csv.read_text().splitlines()[0] == "t,x,v"     # one trajectory: no trajectory column
    np.testing.assert_allclose(table[:, 2], np.cos(table[:, 0]), atol=1e-8)


def test_solve_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "decay.png"
    code, _, err = run(capsys, "solve", "x' = -x", "--y0", "1", "--t", "0:1:5", "--plot",
                       str(png))
    assert code == 0 and f"figure: {png}" in err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, message", [
    (["solve", "x' = -k*x", "--y0", "1", "--t", "0:1"], "no value for the parameter.s. k"),
    (["solve", "x' = -x", "--t", "0:1"], "give the initial state with --y0"),
    (["solve", "x' = -x", "--y0", "1,2", "--t", "0:1"], "2 values for 1 states"),
    (["solve", "x' = y", "y' = -x", "--y0", "x=1", "--t", "0:1"], "no value for y"),
    (["solve", "x' = -x", "--y0", "w=1", "--t", "0:1"], "w is not a state"),
    (["solve", "x' = -x", "--y0", "1", "--t", "0:1", "--method", "rk9"], "rk9"),
    (["show", "x' = -x", "--what", "hessian"], "unknown hessian"),
])
def test_errors_exit_1_with_a_message(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == ""
    assert err.startswith("symode: error: ")
    assert re.search(message, err), err


def test_show_prints_what_sympy_derives(capsys):
    code, out, _ = run(capsys, "show", "dx/dt = sigma*(y - x)", "dy/dt = x*(rho - z) - y",
                       "dz/dt = x*y - beta*z", "--what", "jacobian,divergence,vjp,adjoint",
                       "--format", "text")
    assert code == 0
    x, y, z, sigma, rho, beta = sp.symbols("x y z sigma rho beta")
    J = sp.Matrix([sigma * (y - x), x * (rho - z) - y, x * y - beta * z]).jacobian([x, y, z])
    for i in range(3):
        assert "  [" + ", ".join(map(str, J.row(i))) + "]" in out
    assert f"  {J.trace()}" in out
    assert "a·∂f/∂rho = " + str(sp.Symbol("a_y") * x) in out
    assert "Adjoint system [z, a, a_θ, a_t]" in out and "d a_beta/dt = a_z*z" in out


def test_show_latex_and_pretty(capsys):
    code, out, _ = run(capsys, "show", "x' = -k*x", "--what", "equations,adjoint", "--format",
                       "latex")
    assert code == 0 and r"\frac{d a_{x}}{d t} &= a_{x} k" in out
    code, out, _ = run(capsys, "show", "x' = -k*x")
    assert code == 0 and "Jacobian df/dz:\n[-k]" in out


def test_source_and_info(capsys):
    code, out, _ = run(capsys, "source", "x' = -k*x", "--what", "vjp")
    assert code == 0 and out == so.source(so.ODE.from_strings({"x": "-k*x"}, params=["k"]),
                                          what="vjp") + "\n"
    code, out, _ = run(capsys, "info")
    assert code == 0 and f"symode      {so.__version__}" in out and "code cache" in out


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["solve", "x' = -x", "--y0", "1"])          # --t is required
    assert exc.value.code == 2
    assert "--t" in capsys.readouterr().err


def test_python_dash_m():
    res = subprocess.run([sys.executable, "-m", "symode", "--version"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == f"symode {so.__version__}"


# -- fit ---------------------------------------------------------------------------------------
def test_fit_recovers_the_parameters_of_solve_output(tmp_path, capsys):
    data = tmp_path / "obs.csv"
    system = ["x' = -k*x", "y' = k*x - c*y"]
    assert run(capsys, "solve", *system, "-p", "k=1.3,c=2", "--y0", "2,0", "--y0", "1,1",
               "--t", "0:2:11", "--rtol", "1e-11", "--atol", "1e-12", "-o", str(data))[0] == 0
    lines = data.read_text().splitlines()           # forget y of the second trajectory
    data.write_text("\n".join(lines[:1] + [ln if ln.split(",")[1] == "0" else
                                           ln.rsplit(",", 1)[0] + "," for ln in lines[1:]]))
    code, out, err = run(capsys, "fit", *system, "--data", str(data), "-p", "k=0.5,c=1",
                         "--positive", "--y0", "2,0", "--y0", "1,1", "-o",
                         str(tmp_path / "fit.npz"))
    assert code == 0 and err.startswith("converged")
    table = {row.split()[0]: float(row.split()[1]) for row in out.splitlines()[1:]}
    assert table["k"] == pytest.approx(1.3, rel=1e-6) and table["c"] == pytest.approx(2, rel=1e-6)
    assert np.load(tmp_path / "fit.npz")["y"].shape == (11, 2, 2)


@pytest.mark.parametrize("csv, message", [
    ("time,x\n0,1\n", "no column 't'"),
    ("t,x,w\n0,1,2\n", "w are not states"),
    ("t,trajectory,x\n0,0,1\n1,0,0.5\n0,1,1\n", "different numbers of rows"),
])
def test_fit_data_errors(tmp_path, capsys, csv, message):
    path = tmp_path / "d.csv"
    path.write_text(csv)
    code, _, err = run(capsys, "fit", "x' = -k*x", "--data", str(path), "-p", "k=1")
    assert code == 1 and message in err


def test_fit_needs_starting_values(tmp_path, capsys):
    path = tmp_path / "d.csv"
    path.write_text("t,x\n0,1\n1,0.5\n")
    code, _, err = run(capsys, "fit", "x' = -k*x", "--data", str(path))
    assert code == 1 and "no starting value for the parameter(s) k" in err
