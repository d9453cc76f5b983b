"""Losses: values against scipy (logsumexp, norm.logpdf), the KL divergence against numeric
integrals and the matrix formula, gradients against central differences, dtypes and errors."""

import numpy as np
import pytest
from scipy import integrate, special, stats

from checks import assert_vjp_matches_fd
from symode.errors import NonFiniteError, ShapeError
from symode.nn import accuracy, gaussian_nll, kl_diag_gaussians, mse, softmax_cross_entropy


# -- softmax cross-entropy ------------------------------------------------------------------------
def test_cross_entropy_matches_logsumexp(rng):
    z, y = rng.standard_normal((7, 5)) * 3, rng.integers(0, 5, 7)
    expected = np.mean(special.logsumexp(z, axis=1) - z[np.arange(7), y])
    assert softmax_cross_entropy(z, y)[0] == pytest.approx(expected, rel=1e-13)


def test_cross_entropy_is_stable_for_huge_logits(rng):
    z, y = rng.standard_normal((4, 3)), np.array([0, 2, 1, 1])
    loss, grad = softmax_cross_entropy(z, y)
    for shift in (1e4, -1e4):
        big_loss, big_grad = softmax_cross_entropy(z + shift, y)
        assert big_loss == pytest.approx(loss, rel=1e-9)
        np.testing.assert_allclose(big_grad, grad, atol=1e-12)
    spread = np.array([[1e4, 0.0, -1e4]])
    assert softmax_cross_entropy(spread, [1])[0] == pytest.approx(1e4, rel=1e-12)
    assert softmax_cross_entropy(spread, [0])[0] == 0.0


def test_cross_entropy_gradient(rng):
    z, y = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    grad = softmax_cross_entropy(z, y)[1]
    assert_vjp_matches_fd(lambda zz: softmax_cross_entropy(zz, y)[0], z, lambda u: u * grad, rng)
    np.testing.assert_allclose(grad.sum(axis=1), 0, atol=1e-15)   # softmax sums to one
    probs = special.softmax(z, axis=1)
    probs[np.arange(6), y] -= 1
    np.testing.assert_allclose(grad, probs / 6, rtol=1e-12)


def test_cross_entropy_float32_and_label_dtypes(rng):
    z = rng.standard_normal((5, 3)).astype(np.float32)
    for labels in (np.array([0, 1, 2, 1, 0], np.uint8), [0, 1, 2, 1, 0]):
        loss, grad = softmax_cross_entropy(z, labels)
        assert grad.dtype == np.float32 and isinstance(loss, float)
        assert loss == pytest.approx(softmax_cross_entropy(z.astype(np.float64), labels)[0],
                                     rel=1e-6)


def test_accuracy_counts_argmax_hits():
    z = np.array([[0.1, 0.9, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 0.0]])
    assert accuracy(z, [1, 0, 0, 0]) == 0.75          # ties go to the first class
    assert accuracy(z, [1, 0, 2, 1]) == 0.75
    assert accuracy(z[:1], [2]) == 0.0


@pytest.mark.parametrize("fn", [softmax_cross_entropy, accuracy])
def test_class_input_errors(fn):
    z = np.zeros((3, 4))
    with pytest.raises(ShapeError, match=r"logits of shape \(batch, classes\).*got \(4,\)"):
        fn(np.zeros(4), [1])
    with pytest.raises(ShapeError, match=r"labels of shape \(3,\).*got \(2,\)"):
        fn(z, [0, 1])
    with pytest.raises(ShapeError, match="integer class ids, got dtype float64"):
        fn(z, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ShapeError, match=r"\[0, 4\).*labels\[2\] = 7"):
        fn(z, [0, 3, 7])
    with pytest.raises(ShapeError, match=r"labels\[0\] = -1"):
        fn(z, [-1, 3, 2])
    with pytest.raises(ShapeError, match="both >= 1"):
        fn(np.zeros((0, 4)), np.zeros(0, int))


@pytest.mark.parametrize("bad, label", [(np.nan, 1), (np.inf, 1), (-np.inf, 0)])
def test_cross_entropy_refuses_non_finite_loss(bad, label):
    z = np.zeros((3, 2))
    z[1, 0] = bad
    with pytest.raises(NonFiniteError, match="softmax_cross_entropy.*example 1"):
        softmax_cross_entropy(z, [0, label, 1])


def test_cross_entropy_masks_minus_infinity():
    """A -inf logit is a class of probability zero; other labels keep a finite loss."""
    z = np.array([[-np.inf, 1.0, 2.0]])
    loss, grad = softmax_cross_entropy(z, [2])
    assert loss == pytest.approx(np.log1p(np.exp(-1.0)), rel=1e-14)
    assert grad[0, 0] == 0.0 and np.isfinite(grad).all()


# -- mean squared error ---------------------------------------------------------------------------
def test_mse_value_and_gradient(rng):
    p, y = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 3))
    loss, grad = mse(p, y)
    per_example = [np.linalg.norm((p[n] - y[n]).ravel()) ** 2 for n in range(5)]
    assert loss == pytest.approx(np.mean(per_example), rel=1e-13)
    assert_vjp_matches_fd(lambda pp: mse(pp, y)[0], p, lambda u: u * grad, rng)
    loss, grad = mse(y, y)
    assert loss == 0.0 and not grad.any()


def test_mse_dtypes_and_errors(rng):
    p = rng.standard_normal((4, 2)).astype(np.float32)
    assert mse(p, np.zeros((4, 2), np.float32))[1].dtype == np.float32
    loss, grad = mse([[1, 2]], [[0, 0]])
    assert loss == 5.0 and grad.dtype == np.float64
    np.testing.assert_array_equal(grad, [[2.0, 4.0]])
    with pytest.raises(ShapeError, match=r"target of the shape of pred, \(4, 2\), got \(4, 3\)"):
        mse(p, np.zeros((4, 3)))
    with pytest.raises(ShapeError, match=r"pred of shape \(batch, \.\.\.\) with batch >= 1"):
        mse(np.float64(1.0), np.float64(2.0))
    with pytest.raises(NonFiniteError, match="example 2"):
        mse(np.array([[0.0], [1.0], [np.inf]]), np.zeros((3, 1)))


# -- Gaussian negative log-likelihood -------------------------------------------------------------
LOGVAR_SHAPES = {"full": (6, 3), "per-feature": (1, 3), "trailing": (3,), "scalar": ()}


@pytest.mark.parametrize("lv_shape", LOGVAR_SHAPES.values(), ids=LOGVAR_SHAPES)
def test_gaussian_nll_matches_scipy(lv_shape, rng):
    x, mean = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    log_var = rng.uniform(-2, 1, lv_shape)
    loss, (dmean, dlog_var) = gaussian_nll(x, mean, log_var)
    expected = -stats.norm.logpdf(x, mean, np.exp(log_var / 2)).sum() / 6
    assert loss == pytest.approx(expected, rel=1e-13)
    assert dmean.shape == mean.shape and dlog_var.shape == np.shape(log_var)
    assert_vjp_matches_fd(lambda m: gaussian_nll(x, m, log_var)[0], mean, lambda u: u * dmean,
                          rng)
    assert_vjp_matches_fd(lambda v: gaussian_nll(x, mean, v)[0], log_var,
                          lambda u: u * dlog_var, rng)


def test_gaussian_nll_broadcast_mean_and_float32(rng):
    x = rng.standard_normal((5, 2)).astype(np.float32)
    mean = np.zeros(2, np.float32)
    loss, (dmean, dlog_var) = gaussian_nll(x, mean, 0.0)
    assert dmean.dtype == dlog_var.dtype == np.float32 and dmean.shape == (2,)
    assert dlog_var.shape == ()
    assert loss == pytest.approx(-stats.norm.logpdf(x.astype(np.float64)).sum() / 5, rel=1e-6)
    np.testing.assert_allclose(dmean, -x.sum(axis=0) / 5, rtol=1e-6)


def test_gaussian_nll_errors():
    with pytest.raises(ShapeError, match=r"mean of the shape of x, \(4, 3\).*got \(4, 2\)"):
        gaussian_nll(np.zeros((4, 3)), np.zeros((4, 2)), 0.0)
    with pytest.raises(ShapeError, match=r"log_var .* got \(2, 4, 3\)"):
        gaussian_nll(np.zeros((4, 3)), 0.0, np.zeros((2, 4, 3)))
    with pytest.raises(NonFiniteError, match="gaussian_nll.*example 1"):
        gaussian_nll(np.array([[0.0], [np.nan]]), 0.0, 0.0)


# -- KL divergence of diagonal Gaussians ----------------------------------------------------------
def _kl_by_quadrature(mu1, lv1, mu2, lv2):
    """∫ p log(p/q) dx for 1-D normals p = N(mu1, e^lv1), q = N(mu2, e^lv2)."""
    s1, s2 = np.exp(lv1 / 2), np.exp(lv2 / 2)
    lo, hi = min(mu1 - 20 * s1, mu2 - 20 * s2), max(mu1 + 20 * s1, mu2 + 20 * s2)

    def integrand(x):
        logp = stats.norm.logpdf(x, mu1, s1)
        return np.exp(logp) * (logp - stats.norm.logpdf(x, mu2, s2))

    return integrate.quad(integrand, lo, hi, points=[mu1, mu2], epsabs=1e-13, epsrel=1e-11,
                          limit=200)[0]


@pytest.mark.parametrize("args", [(0.0, 0.0, 0.0, 0.0), (0.5, -1.0, 0.0, 0.0),
                                  (1.5, 0.7, -0.3, -0.4), (-2.0, -2.5, 1.0, 1.2)])
def test_kl_matches_numeric_integral_in_1d(args):
    kl = kl_diag_gaussians(np.array([args[0]]), args[1], args[2], args[3])[0]
    assert kl == pytest.approx(_kl_by_quadrature(*args), rel=1e-8, abs=1e-12)


def test_kl_matches_matrix_formula(rng):
    """½[tr(Σ₂⁻¹Σ₁) + (μ₂-μ₁)ᵀΣ₂⁻¹(μ₂-μ₁) - k + log det Σ₂ - log det Σ₁], example by example."""
    mu1, lv1 = rng.standard_normal((4, 3)), rng.uniform(-1, 1, (4, 3))
    mu2, lv2 = rng.standard_normal((4, 3)), rng.uniform(-1, 1, (4, 3))
    total = 0.0
    for n in range(4):
        S1, S2 = np.diag(np.exp(lv1[n])), np.diag(np.exp(lv2[n]))
        inv2, dm = np.linalg.inv(S2), mu2[n] - mu1[n]
        total += 0.5 * (np.trace(inv2 @ S1) + dm @ inv2 @ dm - 3
                        + np.linalg.slogdet(S2)[1] - np.linalg.slogdet(S1)[1])
    assert kl_diag_gaussians(mu1, lv1, mu2, lv2)[0] == pytest.approx(total / 4, rel=1e-12)


SHAPES = {"full": [(5, 3)] * 4, "standard-prior": [(5, 3), (5, 3), (), ()],
          "shared-prior": [(5, 3), (5, 3), (3,), (1, 3)], "shared-logvar1": [(5, 3), (1,), (), ()]}


@pytest.mark.parametrize("shapes", SHAPES.values(), ids=SHAPES)
def test_kl_gradients(shapes, rng):
    args = [rng.standard_normal(s) * 0.7 for s in shapes]
    kl, grads = kl_diag_gaussians(*args)
    assert kl >= 0
    for i, (a, g) in enumerate(zip(args, grads)):
        assert g.shape == np.shape(a)

        def f(ai, i=i):
            return kl_diag_gaussians(*args[:i], ai, *args[i + 1:])[0]

        assert_vjp_matches_fd(f, a, lambda u, g=g: u * g, rng)


def test_kl_defaults_and_float32(rng):
    mu, lv = np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32)
    kl, grads = kl_diag_gaussians(mu, lv)
    assert kl == 0.0 and all(np.all(g == 0) for g in grads)
    assert all(g.dtype == np.float32 for g in grads)
    mu = rng.standard_normal((3, 2))
    assert kl_diag_gaussians(mu, 0.0)[0] == pytest.approx(0.5 * np.sum(mu ** 2) / 3)


def test_kl_errors():
    with pytest.raises(ShapeError, match=r"logvar1 of the shape of mu1, \(4, 2\).*got \(3,\)"):
        kl_diag_gaussians(np.zeros((4, 2)), np.zeros(3))
    with pytest.raises(ShapeError, match=r"mu1 of shape \(batch, \.\.\.\)"):
        kl_diag_gaussians(np.zeros((0, 2)), 0.0)
    with pytest.raises(NonFiniteError, match="kl_diag_gaussians.*example 0"):
        kl_diag_gaussians(np.zeros((2, 1)), np.array([[1e4], [0.0]]))
