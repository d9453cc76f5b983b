"""The FFJORD toy densities: samplers against exact moments, densities against scipy."""

import numpy as np
import pytest
from scipy import integrate, stats

from symode.data import (GAUSSIANS_CENTERS, GAUSSIANS_STD, TOY_DENSITIES, sample_toy,
                         toy_log_density)
from symode.errors import NonFiniteError, ShapeError, SymodeError

N = 20_000          # large enough for 4-standard-error bounds to catch a 1 % change of scale


def _spirals_second_moment():
    """E|x|² of "2spirals" from its definition: x = ±(a / 3) + 0.1 ε."""
    def integrand(v):                        # θ = 3π √v, v ~ U[0, 1]; jitter u ~ U[0, 1)², 0.5 u
        th = 3 * np.pi * np.sqrt(v)
        return th ** 2 + 0.5 * th * (np.sin(th) - np.cos(th)) + 1 / 6
    return integrate.quad(integrand, 0, 1, limit=200)[0] / 9 + 2 * 0.1 ** 2


# E|x|² of each density, worked out by hand from its definition in the module docstring
SECOND_MOMENT = {
    "8gaussians": 8 + 2 / 8,                                    # R² + 2σ², R = 2√2, σ = √2/4
    "2spirals": _spirals_second_moment(),
    "checkerboard": 2 * 16 / 3,                                 # each coordinate ~ U[-4, 4)
    "circles": (3 ** 2 + 1.5 ** 2) / 2 + 2 * 0.24 ** 2,
    "rings": (3 ** 2 + 2.25 ** 2 + 1.5 ** 2 + 0.75 ** 2) / 4 + 2 * 0.08 ** 2,
    "moons": 5.34 - 4 / np.pi + 2 * 0.2 ** 2,                  # E sin t = 2/π, E cos t = 0
    "pinwheel": 4 * (1 + 0.3 ** 2 + 0.1 ** 2),                  # rotation keeps |(r, s)|
    "swissroll": 0.39 * np.pi ** 2 + 2 * 0.2 ** 2,             # E t² = 9.75π², divided by 25
    "line": 2 * 2.5 ** 2 / 3,
    "cos": 2.5 ** 2 / 3 + 2.5 ** 2 * (0.5 - np.sin(5) / 10),   # E sin²x = 1/2 - sin(5)/10
}


def test_names():
    assert TOY_DENSITIES == ("8gaussians", "2spirals", "checkerboard", "circles", "rings",
                             "moons", "pinwheel", "swissroll", "line", "cos")
    assert set(SECOND_MOMENT) == set(TOY_DENSITIES)


@pytest.mark.parametrize("name", TOY_DENSITIES)
@pytest.mark.parametrize("n", [1, 7, 1000])
def test_shape_dtype_finite(name, n, rng):
    x = sample_toy(name, n, rng=rng)
    assert x.shape == (n, 2) and x.dtype == np.float64
    assert np.all(np.isfinite(x))
    assert np.abs(x).max() < 6, f"{name}: FFJORD's data stays within about [-4, 4]²"


@pytest.mark.parametrize("name", TOY_DENSITIES)
def test_seeded_reproducible(name):
    a = sample_toy(name, 500, rng=7)
    np.testing.assert_array_equal(a, sample_toy(name, 500, rng=7))
    np.testing.assert_array_equal(a, sample_toy(name, 500, rng=np.random.default_rng(7)))
    b = sample_toy(name, 500, rng=8)
    assert np.abs(a - b).max() > 0.1, f"{name}: seeds 7 and 8 give the same samples"


@pytest.mark.parametrize("name", TOY_DENSITIES)
def test_generator_is_advanced(name):
    gen = np.random.default_rng(3)
    first, second = sample_toy(name, 200, rng=gen), sample_toy(name, 200, rng=gen)
    assert np.abs(first - second).max() > 0.1


@pytest.mark.parametrize("name", TOY_DENSITIES)
def test_second_moment(name, rng):
    r2 = (sample_toy(name, N, rng=rng) ** 2).sum(axis=1)
    se = r2.std() / np.sqrt(N)
    assert abs(r2.mean() - SECOND_MOMENT[name]) < 4 * se, (
        f"{name}: E|x|² = {r2.mean():.4f}, exact {SECOND_MOMENT[name]:.4f} (se {se:.4f})")


def test_curves_and_symmetry(rng):
    line, cos = sample_toy("line", 1000, rng=rng), sample_toy("cos", 1000, rng=rng)
    np.testing.assert_array_equal(line[:, 0], line[:, 1])
    np.testing.assert_allclose(cos[:, 1], 2.5 * np.sin(cos[:, 0]), rtol=0, atol=1e-15)
    assert -2.5 <= min(line.min(), cos[:, 0].min()) and max(line.max(), cos[:, 0].max()) < 2.5
    rings = np.hypot(*sample_toy("rings", 1000, rng=rng).T)      # noise 0.08, gaps 0.75
    gap = np.abs(rings[:, None] - np.array([0.75, 1.5, 2.25, 3.0])).min(axis=1)
    assert gap.max() < 6 * 0.08
    for name, mean in [("2spirals", (0, 0)), ("moons", (0, 0.3)), ("8gaussians", (0, 0))]:
        x = sample_toy(name, N, rng=rng)
        se = x.std(axis=0) / np.sqrt(N)
        assert np.all(np.abs(x.mean(axis=0) - mean) < 4 * se), f"{name}: mean {x.mean(0)}"


# ---------------------------------------------------------------- 8gaussians


def test_gaussians_parameters():
    """FFJORD: centres at radius 4 on the 8 compass directions, deviation 0.5, all / √2."""
    c = GAUSSIANS_CENTERS
    assert c.shape == (8, 2)
    np.testing.assert_allclose(np.hypot(*c.T), 4 / np.sqrt(2), rtol=1e-14)
    angles = np.sort(np.mod(np.arctan2(c[:, 1], c[:, 0]), 2 * np.pi))
    np.testing.assert_allclose(angles, np.arange(8) * np.pi / 4, atol=1e-14)
    assert GAUSSIANS_STD == pytest.approx(0.5 / np.sqrt(2), rel=1e-15)


def test_gaussians_moments(rng):
    x = sample_toy("8gaussians", N, rng=rng)
    c, s = GAUSSIANS_CENTERS, GAUSSIANS_STD
    mean = c.mean(axis=0)
    cov = s ** 2 * np.eye(2) + (c - mean).T @ (c - mean) / len(c)   # within + between centres
    se_mean = np.sqrt(np.diag(cov) / N)
    assert np.all(np.abs(x.mean(axis=0) - mean) < 4 * se_mean)
    xc = x - x.mean(axis=0)
    se_cov = (xc[:, :, None] * xc[:, None, :]).std(axis=0) / np.sqrt(N)
    assert np.all(np.abs(np.cov(x.T) - cov) < 4 * se_cov), f"{np.cov(x.T)} vs {cov}"


def test_gaussians_density_integrates_to_one():
    h = 0.05
    g = np.arange(-7, 7 + h / 2, h)        # 10σ beyond the outermost centre
    X, Y = np.meshgrid(g, g, indexing="ij")
    p = np.exp(toy_log_density("8gaussians", np.column_stack([X.ravel(), Y.ravel()])))
    # the edges carry e^-400, so the plain sum is the trapezoid rule, spectrally accurate here
    assert p.sum() * h * h == pytest.approx(1, abs=1e-6)


def test_gaussians_density_matches_scipy(rng):
    x = np.vstack([3 * rng.standard_normal((50, 2)), GAUSSIANS_CENTERS, [[0.0, 0.0]]])
    cov = GAUSSIANS_STD ** 2 * np.eye(2)
    p = np.mean([stats.multivariate_normal(c, cov).pdf(x) for c in GAUSSIANS_CENTERS], axis=0)
    np.testing.assert_allclose(toy_log_density("8gaussians", x), np.log(p), rtol=1e-12)
    lists = toy_log_density("8gaussians", x.tolist())          # array_like, ints too
    np.testing.assert_array_equal(lists, toy_log_density("8gaussians", x))
    assert toy_log_density("8gaussians", np.zeros((0, 2))).shape == (0,)


EDGES = np.linspace(-4.8, 4.8, 25)     # 24 × 24 bins of side 0.4 (σ ≈ 0.35)


def _bin_probabilities(edges=EDGES, sub=8):
    """Probability of each bin under toy_log_density, by the midpoint rule on sub × sub points."""
    nb, h = len(edges) - 1, (edges[1] - edges[0]) / sub
    fine = edges[0] + (np.arange(nb * sub) + 0.5) * h
    X, Y = np.meshgrid(fine, fine, indexing="ij")
    p = np.exp(toy_log_density("8gaussians", np.column_stack([X.ravel(), Y.ravel()])))
    return p.reshape(nb, sub, nb, sub).sum(axis=(1, 3)) * h * h


def _chi_square(x, prob, edges=EDGES):
    """Pearson's statistic of a 2-D histogram of ``x`` against the bin probabilities ``prob``.

    Bins expecting fewer than 5 points are pooled with everything outside the histogram.
    """
    counts = np.histogram2d(x[:, 0], x[:, 1], bins=[edges, edges])[0]
    keep = len(x) * prob >= 5
    observed = np.append(counts[keep], len(x) - counts[keep].sum())
    expected = len(x) * np.append(prob[keep], 1 - prob[keep].sum())
    return ((observed - expected) ** 2 / expected).sum(), len(observed) - 1


def test_gaussians_sampler_fits_density(rng):
    prob = _bin_probabilities()
    assert prob.sum() == pytest.approx(1, abs=1e-6)      # the histogram covers the support
    x = sample_toy("8gaussians", N, rng=rng)
    stat, dof = _chi_square(x, prob)
    bound = stats.chi2.ppf(1 - 1e-4, dof)
    assert dof > 100 and stat < bound, f"chi² = {stat:.0f} on {dof} dof (bound {bound:.0f})"
    # the test has power: 3 % too wide a spread, or FFJORD's deviation before its / √2, fail it
    wide = sample_toy("8gaussians", N, rng=rng) * 1.03
    blurred = x + rng.standard_normal(x.shape) * np.sqrt(0.5 ** 2 - GAUSSIANS_STD ** 2)
    for bad in (wide, blurred):
        assert _chi_square(bad, prob)[0] > bound


# ---------------------------------------------------------------- checkerboard


def test_checkerboard_samples_on_squares(rng):
    x = sample_toy("checkerboard", N, rng=rng)
    logp = toy_log_density("checkerboard", x)
    assert np.all(logp == -np.log(32)), "a sample fell outside the squares"
    # each of the 8 squares gets an eighth of the points
    cells = np.floor(x / 2).astype(int) + 2
    counts = np.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16)
    assert np.count_nonzero(counts) == 8
    observed = counts[counts > 0]
    assert ((observed - N / 8) ** 2 / (N / 8)).sum() < stats.chi2.ppf(1 - 1e-4, 7)


def test_checkerboard_density_values():
    inside = [[1, 1], [-1, -1], [-3, -3], [3.9, 3.9], [-4, -4], [-3, 1], [0, 0], [2, -2]]
    outside = [[-1, 1], [1, -1], [3, 1], [4, 4], [-4.01, -3], [5, 0], [0, -4.5], [1, 2.5]]
    np.testing.assert_array_equal(toy_log_density("checkerboard", inside), -np.log(32))
    np.testing.assert_array_equal(toy_log_density("checkerboard", outside), -np.inf)


def test_checkerboard_density_integrates_to_one():
    h = 0.02                                  # midpoints never lie on a square's edge
    g = -5 + h / 2 + h * np.arange(500)
    X, Y = np.meshgrid(g, g, indexing="ij")
    p = np.exp(toy_log_density("checkerboard", np.column_stack([X.ravel(), Y.ravel()])))
    assert p.sum() * h * h == pytest.approx(1, abs=1e-9)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("call", [lambda: sample_toy("8gaussian", 10),
                                  lambda: toy_log_density("Checkerboard", np.zeros((3, 2)))])
def test_unknown_name(call):
    with pytest.raises(SymodeError, match="unknown toy density") as info:
        call()
    for name in TOY_DENSITIES:
        assert repr(name) in str(info.value)


@pytest.mark.parametrize("n", [0, -5, 2.5, 10.0, True, "100", None, np.int64(0)])
def test_bad_n(n):
    with pytest.raises(ShapeError, match=r"n is the number of samples and must be a positive "
                                         r"integer, got"):
        sample_toy("moons", n)


def test_numpy_integer_n_and_bad_rng():
    assert sample_toy("rings", np.int32(5), rng=0).shape == (5, 2)
    for rng in (-1, 1.5, "seed", np.random.RandomState(0)):
        with pytest.raises(SymodeError, match="rng must be a numpy Generator"):
            sample_toy("rings", 5, rng=rng)


@pytest.mark.parametrize("x", [np.zeros((5, 3)), np.zeros(10), np.zeros((2, 5, 2)),
                               np.zeros((2, 1)), np.array([["a", "b"]]),
                               np.zeros((4, 2), dtype=complex)])
def test_bad_x(x):
    with pytest.raises(ShapeError, match=r"x must be a real array of shape \(n, 2\)") as info:
        toy_log_density("8gaussians", x)
    assert str(x.shape) in str(info.value)


def test_non_finite_x():
    x = np.zeros((4, 2))
    x[2, 1] = np.nan
    with pytest.raises(NonFiniteError, match=r"x\[2\]"):
        toy_log_density("checkerboard", x)


@pytest.mark.parametrize("name", sorted(set(TOY_DENSITIES) - {"8gaussians", "checkerboard"}))
def test_no_exact_density(name):
    with pytest.raises(SymodeError, match=f"'{name}' has no closed-form density") as info:
        toy_log_density(name, np.zeros((3, 2)))
    assert "'8gaussians' and 'checkerboard'" in str(info.value)
