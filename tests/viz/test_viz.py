"""symode.viz: what is drawn equals the field, solution or density computed here by hand."""

import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

import symode as so
from symode.data import toy_log_density
from symode.errors import NonFiniteError, ShapeError, SymodeError

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection, QuadMesh  # noqa: E402
from matplotlib.quiver import Quiver  # noqa: E402

t_, y_, x_, v_, k_, c_ = sp.symbols("t y x v k c")
RICCATI = so.ODE([y_], [t_ - y_**2], t=t_)                      # dy/dt = t - y²
PENDULUM = so.ODE([x_, v_], [v_, -k_ * sp.sin(x_) - c_ * v_], params=[k_, c_])
OSCILLATOR = so.ODE([x_, v_], [v_, -x_])                         # x = cos t, v = -sin t
LORENZ = so.ODE.from_strings({"x": "sigma*(y - x)", "y": "x*(rho - z) - y",
                              "z": "x*y - beta*z"}, params="sigma rho beta")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def quiver(ax):
    """Positions and components of the one quiver on ``ax``; NaN where no arrow is drawn."""
    (q,) = [c for c in ax.collections if isinstance(c, Quiver)]
    hidden = np.zeros(q.N, bool) | q.Umask                  # Umask: nomask (False) or (N,)
    return q.X, q.Y, np.where(hidden, np.nan, q.U), np.where(hidden, np.nan, q.V)


# -- slope_field -------------------------------------------------------------------------------
def test_slope_field_segments_have_slope_f():
    ax = so.viz.slope_field(RICCATI, (0, 4), (-3, 3), n=(9, 7))
    T, Y, U, V = quiver(ax)
    np.testing.assert_allclose(np.unique(T), np.linspace(0, 4, 9))
    np.testing.assert_allclose(np.unique(Y), np.linspace(-3, 3, 7))
    np.testing.assert_allclose(V / U, T - Y**2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.hypot(U, V), 1.0, rtol=1e-12)
    assert (U > 0).all()                                  # segments point forward in time
    assert ax.get_xlim() == (0, 4) and ax.get_ylim() == (-3, 3)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("t", "y")


def test_slope_field_params_callable_and_kwargs():
    w = sp.Symbol("w")
    decay = so.ODE([y_], [-w * y_ + t_], params=[w], t=t_)
    _, ax = plt.subplots()
    assert so.viz.slope_field(decay, (0, 1), (-1, 1), params=[2.5], n=5, ax=ax,
                              color="red") is ax
    T, Y, U, V = quiver(ax)
    np.testing.assert_allclose(V / U, -2.5 * Y + T, atol=1e-12)
    assert matplotlib.colors.same_color(ax.collections[0].get_facecolor()[0], "red")
    ax = so.viz.slope_field(lambda t, y, p: np.sin(t) * y, (0, 3), (-1, 1), n=4)
    T, Y, U, V = quiver(ax)
    np.testing.assert_allclose(V / U, np.sin(T) * Y, atol=1e-12)


# -- vector_field ------------------------------------------------------------------------------
def test_vector_field_arrows_are_the_normalized_rhs():
    ax = so.viz.vector_field(PENDULUM, (-3, 3), (-2, 2), params=[2.0, 0.3], n=(7, 5))
    X, Y, U, V = quiver(ax)
    f = np.stack([Y, -2.0 * np.sin(X) - 0.3 * Y])
    speed = np.hypot(*f)
    at_rest = speed == 0                                  # (0, 0) is on the grid
    assert at_rest.sum() == 1
    speed[at_rest] = 1.0
    np.testing.assert_allclose(U[~at_rest], (f[0] / speed)[~at_rest], rtol=1e-12)
    np.testing.assert_allclose(V[~at_rest], (f[1] / speed)[~at_rest], rtol=1e-12)
    assert U[at_rest] == 0 and V[at_rest] == 0
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x", "v")
    ax = so.viz.vector_field(PENDULUM, (-3, 3), (-2, 2), params=[2.0, 0.3], n=(7, 5),
                             normalize=False)
    X, Y, U, V = quiver(ax)
    np.testing.assert_allclose(U, Y, atol=1e-12)
    np.testing.assert_allclose(V, -2.0 * np.sin(X) - 0.3 * Y, atol=1e-12)


def test_vector_field_time_and_slice_of_three_states():
    forced = so.ODE([x_, v_], [v_, -x_ + sp.sin(3 * t_)], t=t_)
    X, Y, U, V = quiver(so.viz.vector_field(forced, (-1, 1), (-1, 1), t=1.3, n=4,
                                            normalize=False))
    np.testing.assert_allclose(V, -X + np.sin(3.9), atol=1e-12)
    sigma, rho, beta = 10.0, 28.0, 8 / 3
    ax = so.viz.vector_field(LORENZ, (-20, 20), (-30, 30), params=[sigma, rho, beta],
                             states=("x", "y"), fixed={"z": 25.0}, n=5, normalize=False)
    X, Y, U, V = quiver(ax)
    np.testing.assert_allclose(U, sigma * (Y - X), atol=1e-12)
    np.testing.assert_allclose(V, X * (rho - 25.0) - Y, atol=1e-12)
    X, Z, U, W = quiver(so.viz.vector_field(LORENZ, (-20, 20), (0, 50),
                                            params=[sigma, rho, beta], states=(0, 2),
                                            fixed={1: 3.0}, n=5, normalize=False))
    np.testing.assert_allclose(W, 3.0 * X - beta * Z, atol=1e-12)

    def f(t, z, p):                                       # a callable with three states
        return np.stack([z[:, 1], -z[:, 0] * z[:, 2], np.zeros(len(z))], axis=1)
    X, Y, U, V = quiver(so.viz.vector_field(f, (-1, 1), (-1, 1), fixed={2: 4.0}, n=3,
                                            normalize=False))
    np.testing.assert_allclose(V, -4.0 * X, atol=1e-12)


def test_vector_field_masks_poles():
    pole = so.ODE([x_, v_], [1 / x_, v_])
    X, Y, U, V = quiver(so.viz.vector_field(pole, (-1, 1), (-1, 1), n=5))
    assert np.isnan(U[X == 0]).all() and np.isfinite(U[X != 0]).all()


def test_streamlines_follow_the_field():
    ax = so.viz.vector_field(OSCILLATOR, (-2, 2), (-2, 2), streamlines=True)
    assert not [c for c in ax.collections if isinstance(c, Quiver)]
    (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    segs = [s for s in lines.get_segments() if len(s) >= 2]
    assert len(segs) > 50
    cosines = []
    for s in segs:
        d, mid = np.diff(s, axis=0), 0.5 * (s[1:] + s[:-1])
        d, mid = d[np.linalg.norm(d, axis=1) > 0], mid[np.linalg.norm(d, axis=1) > 0]
        f = np.stack([mid[:, 1], -mid[:, 0]], axis=1)
        cosines.append(np.sum(d * f, 1) / np.linalg.norm(d, axis=1) / np.linalg.norm(f, axis=1))
    assert np.min(np.concatenate(cosines)) > 0.98


# -- phase_portrait ----------------------------------------------------------------------------
def test_phase_portrait_draws_exact_circles():
    t = np.linspace(0, 2 * np.pi, 401)                    # hits the extremes t = π/2, π, 3π/2
    y0 = np.array([[1.0, 0.0], [0.5, 0.0]])
    ax = so.viz.phase_portrait(OSCILLATOR, y0, t, engine="array", rtol=1e-10, atol=1e-12)
    lines = ax.get_lines()
    assert len(lines) == 2
    for r, line in zip(y0[:, 0], lines):
        np.testing.assert_allclose(line.get_xdata(), r * np.cos(t), atol=1e-8)
        np.testing.assert_allclose(line.get_ydata(), -r * np.sin(t), atol=1e-8)
        assert line.get_marker() == "o" and list(line.get_markevery()) == [0]
    np.testing.assert_allclose(ax.get_xlim(), (-1.2, 1.2))      # extent + 10 %
    np.testing.assert_allclose(ax.get_ylim(), (-1.2, 1.2))
    X, Y, U, V = quiver(ax)
    assert X.min() == pytest.approx(-1.2) and Y.max() == pytest.approx(1.2)
    np.testing.assert_allclose(U * X + V * Y, 0.0, atol=1e-12)  # tangent to the circles


def test_phase_portrait_limits_and_params():
    ax = so.viz.phase_portrait(PENDULUM, [0.5, 0.0], np.linspace(0, 5, 50),
                               params=[1.0, 0.1], xlim=(-4, 4), ylim=(-3, 3), engine="array")
    assert ax.get_xlim() == (-4, 4) and ax.get_ylim() == (-3, 3)
    assert ax.get_lines()[0].get_xdata()[0] == 0.5
    ax = so.viz.phase_portrait(PENDULUM, [0.5, 0.0], np.linspace(0, 5, 50),
                               params=[1.0, 0.1], xlim=(-4, 4), engine="array")
    v = ax.get_lines()[0].get_ydata()                     # ylim: the extent of v, + 10 %
    assert ax.get_xlim() == (-4, 4)
    np.testing.assert_allclose(ax.get_ylim(), (1.1 * v.min() - 0.1 * v.max(),
                                               1.1 * v.max() - 0.1 * v.min()))


# -- trajectories ------------------------------------------------------------------------------
@pytest.fixture
def ensemble(rng):
    t = np.linspace(0, 1, 11)
    return t, rng.standard_normal((11, 4, 2))                # (T, batch, dim)


def test_trajectories_against_time(ensemble):
    t, y = ensemble
    sol = so.Solution(t=t, y=y, stats=so.Stats(*(np.zeros(4, int),) * 3), method="rk4",
                      engine="array")
    ax = so.viz.trajectories(sol, names=OSCILLATOR)
    lines = ax.get_lines()
    assert len(lines) == 8                                   # 2 states x 4 trajectories
    for n, line in enumerate(lines):
        k, b = divmod(n, 4)
        np.testing.assert_array_equal(line.get_xdata(), t)
        np.testing.assert_array_equal(line.get_ydata(), y[:, b, k])
        assert matplotlib.colors.same_color(line.get_color(), f"C{k}")
    assert [txt.get_text() for txt in ax.get_legend().get_texts()] == ["x", "v"]
    assert ax.get_xlabel() == "t"
    lines = so.viz.trajectories(t, y, dims=1, max_lines=3, color="k").get_lines()
    assert len(lines) == 3
    np.testing.assert_array_equal(lines[2].get_ydata(), y[:, 2, 1])
    assert matplotlib.colors.same_color(lines[2].get_color(), "k")


def test_trajectories_projection_own_grids_and_single(ensemble):
    t, y = ensemble
    ax = so.viz.trajectories(t, y, dims=(1, 0), names=["p", "q"])
    for b, line in enumerate(ax.get_lines()):
        np.testing.assert_array_equal(line.get_xdata(), y[:, b, 1])
        np.testing.assert_array_equal(line.get_ydata(), y[:, b, 0])
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("q", "p")
    grids = t + np.arange(4)[:, None]                        # (batch, T): own start times
    lines = so.viz.trajectories(grids, y, dims=0).get_lines()
    for b, line in enumerate(lines):
        np.testing.assert_array_equal(line.get_xdata(), grids[b])
    lines = so.viz.trajectories(t, y[:, 0]).get_lines()      # (T, dim): one trajectory
    assert len(lines) == 2
    np.testing.assert_array_equal(lines[1].get_ydata(), y[:, 0, 1])


def test_trajectories_of_a_solve():
    sol = so.solve(OSCILLATOR, [[1.0, 0.0], [2.0, 0.0]], np.linspace(0, 3, 31),
                   engine="array", rtol=1e-10, atol=1e-12)
    lines = so.viz.trajectories(sol, dims=0).get_lines()
    np.testing.assert_allclose(lines[1].get_ydata(), 2 * np.cos(sol.t), atol=1e-8)


# -- density and samples -----------------------------------------------------------------------
def test_density_image_is_exp_log_prob_on_cell_centres():
    calls = []

    def log_prob(p):
        calls.append(p.shape)
        return -(p[:, 0] - 1) ** 2 - 2 * (p[:, 1] + 0.5) ** 2 - 1.0

    ax = so.viz.density(log_prob, (-2, 4), (-1, 1), n=(6, 4))
    assert calls == [(24, 2)]                                # one call on every point
    (image,) = ax.images
    xc, yc = -2 + np.arange(6) + 0.5, -1 + 0.5 * np.arange(4) + 0.25
    expected = np.exp(-(xc[None, :] - 1) ** 2 - 2 * (yc[:, None] + 0.5) ** 2 - 1.0)
    np.testing.assert_allclose(image.get_array(), expected, rtol=1e-14)
    assert image.get_extent() == [-2, 4, -1, 1] and image.origin == "lower"


def test_density_of_a_toy_law_with_zero_density():
    image = so.viz.density(lambda p: toy_log_density("checkerboard", p), (-4, 4), (-4, 4),
                           n=8, cmap="viridis").images[0]
    cells = (np.indices((8, 8)) // 2).sum(axis=0) % 2 == 0  # rows y, columns x; 2 by 2 squares
    np.testing.assert_allclose(image.get_array(), np.where(cells, 1 / 32, 0.0))
    assert image.get_cmap().name == "viridis"


def test_sample_histogram_counts(rng):
    x = rng.standard_normal((500, 2))
    ax = so.viz.sample_histogram(x, (-2, 2), (-1, 3), bins=(8, 5))
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    counts, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=(8, 5), range=[(-2, 2), (-1, 3)])
    np.testing.assert_array_equal(np.asarray(mesh.get_array()).reshape(5, 8), counts.T)
    ax = so.viz.sample_histogram(x, bins=10)                  # default: the samples' range
    assert ax.get_xlim() == pytest.approx((x[:, 0].min(), x[:, 0].max()))


# -- nfe_histogram -----------------------------------------------------------------------------
def test_nfe_histogram_counts_trajectories():
    nfev = np.array([14, 20, 20, 26, 26, 26, 44])
    stats = so.Stats(nfev=nfev, naccept=(nfev - 2) // 6, nreject=np.array([0, 0, 1, 0, 2, 2, 0]))
    ax = so.viz.nfe_histogram(stats)
    bars = ax.patches
    assert sum(b.get_height() for b in bars) == len(nfev)
    heights = {round(b.get_x() + b.get_width() / 2): b.get_height() for b in bars}
    assert heights == {14: 1, 20: 2, 26: 3, 32: 0, 38: 0, 44: 1}   # one bin per 6 evaluations
    bars = so.viz.nfe_histogram(stats, count="nreject").patches
    assert [b.get_height() for b in bars] == [4, 1, 2]
    assert ax.get_ylabel() == "trajectories"


def test_nfe_histogram_of_a_solve():
    sol = so.solve(OSCILLATOR, np.ones((9, 2)), [0.0, 2.0], engine="array")
    bars = so.viz.nfe_histogram(sol, count="nsteps", bins=4).patches
    assert sum(b.get_height() for b in bars) == 9 and max(b.get_height() for b in bars) == 9


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, error, match", [
    (lambda: so.viz.slope_field(OSCILLATOR, (0, 1), (0, 1)), ShapeError, "one state.*x, v"),
    (lambda: so.viz.slope_field(RICCATI, (1, 0), (0, 1)), SymodeError, "tlim must be a pair"),
    (lambda: so.viz.slope_field(RICCATI, (0, np.inf), (0, 1)), SymodeError, "finite"),
    (lambda: so.viz.slope_field(RICCATI, (0, 1), 3), SymodeError, "ylim must be a pair"),
    (lambda: so.viz.slope_field(RICCATI, (0, 1), (0, 1), n=1), SymodeError, "n must be"),
    (lambda: so.viz.vector_field(RICCATI, (0, 1), (0, 1)), ShapeError, "slope_field"),
    (lambda: so.viz.vector_field(PENDULUM, (0, 1), (0, 1)), SymodeError,
     r"parameters \(k, c\); pass params"),
    (lambda: so.viz.vector_field(PENDULUM, (0, 1), (0, 1), params=[1.0]), ShapeError,
     r"shape \(2,\)"),
    (lambda: so.viz.vector_field(LORENZ, (0, 1), (0, 1), params=[1, 2, 3]), ShapeError,
     "fixed={'z': ...}"),
    (lambda: so.viz.vector_field(LORENZ, (0, 1), (0, 1), params=[1, 2, 3], fixed={"q": 1}),
     SymodeError, "'q', which is not a state"),
    (lambda: so.viz.vector_field(OSCILLATOR, (0, 1), (0, 1), states=("x", "x")), SymodeError,
     "two different"),
    (lambda: so.viz.vector_field(lambda t, z, p: z[:, :1], (0, 1), (0, 1)), ShapeError,
     "returned shape"),
    (lambda: so.viz.vector_field("x", (0, 1), (0, 1)), SymodeError, "cannot evaluate a str"),
    (lambda: so.viz.phase_portrait(LORENZ, np.ones((2, 3)), [0, 1]), ShapeError,
     "two states"),
    (lambda: so.viz.phase_portrait(OSCILLATOR, np.ones((2, 3)), [0, 1]), ShapeError,
     r"y0 of shape \(2, 3\)"),
    (lambda: so.viz.phase_portrait(OSCILLATOR, [1, 0], [0, 1], xlim=(1, 1)), SymodeError,
     "phase_portrait: xlim must be a pair"),
    (lambda: so.viz.trajectories(np.arange(3.0)), SymodeError, "arrays t and y"),
    (lambda: so.viz.trajectories(np.arange(3.0), np.ones((4, 2, 2))), ShapeError, "got t"),
    (lambda: so.viz.trajectories(np.arange(3.0), np.ones((3, 2, 2)), dims=(0, 2)),
     SymodeError, "dims must be"),
    (lambda: so.viz.trajectories(np.arange(3.0), np.ones((3, 2, 2)), names=["a"]), ShapeError,
     "1 names"),
    (lambda: so.viz.trajectories(np.arange(3.0), np.ones((3, 2, 2)), max_lines=0),
     SymodeError, "max_lines"),
    (lambda: so.viz.density(np.zeros(4), (0, 1), (0, 1)), SymodeError, "must be a function"),
    (lambda: so.viz.density(lambda p: p, (0, 1), (0, 1)), ShapeError, "returned shape"),
    (lambda: so.viz.density(lambda p: np.where(p[:, 0] > 0.5, 0, np.nan), (0, 1), (0, 1), n=4),
     NonFiniteError, r"nan at x = \[0.125"),
    (lambda: so.viz.density(lambda p: p[:, 0], (0, 1), (0, 1, 2)), SymodeError, "ylim"),
    (lambda: so.viz.sample_histogram(np.ones((5, 3))), ShapeError, r"\(m, 2\)"),
    (lambda: so.viz.sample_histogram(np.array([[0, 1], [np.nan, 0]])), NonFiniteError,
     "sample 1"),
    (lambda: so.viz.nfe_histogram(np.ones(3)), SymodeError, "Solution or Stats"),
    (lambda: so.viz.nfe_histogram(so.Stats(*(np.ones(2, int),) * 3), count="nfe"), SymodeError,
     "unknown count 'nfe'"),
])
def test_errors_say_what_is_wrong(call, error, match):
    with pytest.raises(error, match=match):
        call()


CALLS = {
    "slope_field": lambda: so.viz.slope_field(RICCATI, (0, 1), (0, 1)),
    "vector_field": lambda: so.viz.vector_field(OSCILLATOR, (0, 1), (0, 1)),
    "phase_portrait": lambda: so.viz.phase_portrait(OSCILLATOR, [1, 0], [0, 1]),
    "trajectories": lambda: so.viz.trajectories(np.arange(3.0), np.ones((3, 1))),
    "nfe_histogram": lambda: so.viz.nfe_histogram(so.Stats(*(np.ones(2, int),) * 3)),
    "density": lambda: so.viz.density(lambda p: p[:, 0], (0, 1), (0, 1)),
    "sample_histogram": lambda: so.viz.sample_histogram(np.ones((3, 2))),
}


@pytest.mark.parametrize("name", CALLS)
def test_without_matplotlib_each_function_names_the_extra(name, monkeypatch):
    assert set(CALLS) == set(so.viz.__all__)
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib... fails
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(SymodeError, match=rf'{name} draws with matplotlib.*pip install '
                                          r'"symode\[plot\]"'):
        CALLS[name]()


def test_import_symode_leaves_matplotlib_alone():
    code = ("import sys, symode; symode.viz.density; "
            "assert 'matplotlib' not in sys.modules, 'imported matplotlib'")
    subprocess.run([sys.executable, "-c", code], check=True)
