"""Dense layers and containers: derivatives against central differences, outputs against the
formulas written out here (ConcatLinear against a Linear on the concatenated input), dtypes,
initial laws and shape errors."""

import math

import numpy as np
import pytest

from checks import assert_jvp_matches_fd, check_module, check_second_derivatives
from symode.errors import ShapeError
from symode.nn import (ConcatLinear, ConcatSquashLinear, Flatten, Linear, Residual, Sequential,
                       Tanh)

CASES = {
    "linear": (lambda: Linear(3, 4), (5, 3)),
    "linear-no-bias": (lambda: Linear(3, 2, bias=False), (4, 3)),
    "linear-batch-1": (lambda: Linear(2, 3), (1, 2)),
    "concat-linear": (lambda: ConcatLinear(3, 4), (5, 3)),
    "concat-linear-no-bias": (lambda: ConcatLinear(2, 3, bias=False), (4, 2)),
    "concat-squash": (lambda: ConcatSquashLinear(3, 4), (5, 3)),
    "flatten": (lambda: Flatten(), (2, 3, 4)),
    "flatten-1d": (lambda: Flatten(), (3,)),
    "residual-linear": (lambda: Residual(Linear(3, 3)), (4, 3)),
    "residual-timed": (lambda: Residual(Sequential(ConcatSquashLinear(3, 6), Tanh(),
                                                   ConcatLinear(6, 3))), (4, 3)),
    "mlp": (lambda: Sequential(Flatten(), ConcatLinear(6, 5), Tanh(),
                               Residual(ConcatSquashLinear(5, 5)), Linear(5, 2)), (3, 2, 3)),
}
TIMED = ["concat-linear", "concat-linear-no-bias", "concat-squash", "residual-timed", "mlp"]


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("case", CASES)
def test_derivatives_match_finite_differences(case, rng):
    make, shape = CASES[case]
    check_module(make(), rng.standard_normal(shape), rng, t=0.7)


@pytest.mark.parametrize("case", CASES)
def test_second_derivatives_match_finite_differences(case, rng):
    make, shape = CASES[case]
    check_second_derivatives(make(), rng.standard_normal(shape), rng, t=0.7)


@pytest.mark.parametrize("case", TIMED)
def test_time_gradient_is_not_trivially_zero(case, rng):
    make, shape = CASES[case]
    module = make()
    theta = module.init(rng)
    y, cache = module.forward(theta, rng.standard_normal(shape), 0.4)
    assert abs(module.vjp_t(theta, cache, rng.standard_normal(y.shape))[2]) > 1e-6


@pytest.mark.parametrize("case", CASES)
def test_vjp_agrees_with_vjp_t(case, rng):
    make, shape = CASES[case]
    module = make()
    theta = module.init(rng)
    y, cache = module.forward(theta, rng.standard_normal(shape), 0.2)
    ybar = rng.standard_normal(y.shape)
    xbar, thetabar = module.vjp(theta, cache, ybar)
    xbar_t, thetabar_t, _ = module.vjp_t(theta, cache, ybar)
    np.testing.assert_array_equal(xbar, xbar_t)
    np.testing.assert_array_equal(thetabar, thetabar_t)


def test_jvp_in_both_directions_is_the_sum(rng):
    """ẏ(ẋ, θ̇) = ẏ(ẋ, 0) + ẏ(0, θ̇): the full jvp is checked along a joint direction."""
    module, t = CASES["mlp"][0](), 0.3
    x = rng.standard_normal((3, 2, 3))
    theta = module.init(rng)
    _, cache = module.forward(theta, x, t)
    xdot, thetadot = rng.standard_normal(x.shape), rng.standard_normal(theta.shape)
    assert_jvp_matches_fd(lambda s: module(theta + s * thetadot, x + s * xdot, t),
                          np.array(0.0), lambda v: v * module.jvp(theta, cache, xdot, thetadot),
                          rng)


def test_linear_matches_explicit_sum(rng):
    layer = Linear(3, 4)
    theta = layer.init(rng)
    x = rng.standard_normal((5, 3))
    W, b = layer.views(theta)["weight"], layer.views(theta)["bias"]
    expected = [[sum(W[o, i] * x[n, i] for i in range(3)) + b[o] for o in range(4)]
                for n in range(5)]
    np.testing.assert_allclose(layer(theta, x), expected, rtol=1e-13)
    np.testing.assert_allclose(Linear(3, 4, bias=False)(W.ravel(), x), np.array(expected) - b,
                               rtol=1e-13)


def test_concat_linear_is_linear_on_time_column(rng):
    """ConcatLinear(θ, x, t) = Linear(in+1)(θ, [t, x]); θ̄ the same, t̄ = Σ x̄[:, 0]."""
    x, t = rng.standard_normal((6, 3)), 0.8
    concat, plain = ConcatLinear(3, 2), Linear(4, 2)
    assert concat.n_params == plain.n_params
    theta = concat.init(rng)
    tx = np.hstack([np.full((6, 1), t), x])
    y, cache = concat.forward(theta, x, t)
    y_ref, cache_ref = plain.forward(theta, tx)
    np.testing.assert_allclose(y, y_ref, rtol=1e-13)
    ybar = rng.standard_normal(y.shape)
    xbar, thetabar, tbar = concat.vjp_t(theta, cache, ybar)
    xbar_ref, thetabar_ref = plain.vjp(theta, cache_ref, ybar)
    np.testing.assert_allclose(xbar, xbar_ref[:, 1:], rtol=1e-13)
    np.testing.assert_allclose(thetabar, thetabar_ref, rtol=1e-13)
    assert tbar == pytest.approx(xbar_ref[:, 0].sum(), rel=1e-13)


def test_concat_squash_matches_formula(rng):
    layer = ConcatSquashLinear(3, 4)
    theta = layer.init(rng)
    x, t = rng.standard_normal((5, 3)), -1.3
    p = layer.views(theta)
    gate = _sigmoid(t * p["gate_weight"] + p["gate_bias"])
    expected = (x @ p["weight"].T + p["bias"]) * gate + t * p["hyper_weight"]
    np.testing.assert_allclose(layer(theta, x, t), expected, rtol=1e-13)
    assert list(layer.param_shapes()) == ["weight", "bias", "gate_weight", "gate_bias",
                                          "hyper_weight"]


def test_concat_squash_gate_does_not_overflow(rng):
    layer = ConcatSquashLinear(2, 3)
    theta = layer.init(rng)
    x = rng.standard_normal((4, 2))
    with np.errstate(all="raise"):
        for t in (-1e4, 1e4):
            y, cache = layer.forward(theta, x, t)
            xbar, thetabar, tbar = layer.vjp_t(theta, cache, np.ones_like(y))
            assert np.isfinite(y).all() and np.isfinite(thetabar).all() and np.isfinite(tbar)


@pytest.mark.parametrize("case", ["concat-squash", "residual-timed", "linear"])
def test_batch_rows_are_independent(case, rng):
    make, shape = CASES[case]
    module = make()
    theta = module.init(rng)
    x = rng.standard_normal(shape)
    y = module(theta, x, 0.5)
    for n in range(shape[0]):
        np.testing.assert_allclose(module(theta, x[n:n + 1], 0.5), y[n:n + 1], rtol=1e-13)


def test_flatten_reshapes_both_ways(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    y, cache = Flatten().forward(np.zeros(0), x)
    np.testing.assert_array_equal(y, x.reshape(2, 60))
    ybar = rng.standard_normal((2, 60))
    xbar, thetabar = Flatten().vjp(np.zeros(0), cache, ybar)
    np.testing.assert_array_equal(xbar, ybar.reshape(x.shape))
    assert thetabar.shape == (0,)
    assert Flatten()(np.zeros(0), np.zeros((0, 3, 2))).shape == (0, 6)


def test_residual_adds_input(rng):
    inner = Linear(3, 3)
    theta = inner.init(rng)
    x = rng.standard_normal((4, 3))
    np.testing.assert_allclose(Residual(inner)(theta, x), x + inner(theta, x), rtol=1e-14)
    assert Residual(inner).n_params == inner.n_params
    assert Residual(inner).children == (inner,)


# -- dtypes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_float32_stays_float32(case, rng):
    make, shape = CASES[case]
    module = make()
    theta = module.init(rng, np.float32)
    assert theta.dtype == np.float32
    x = rng.standard_normal(shape).astype(np.float32)
    y, cache = module.forward(theta, x, 0.5)
    ybar = np.ones_like(y)
    xbar, thetabar, tbar = module.vjp_t(theta, cache, ybar)
    ydot = module.jvp(theta, cache, np.ones_like(x), np.ones_like(theta))
    assert y.dtype == xbar.dtype == ydot.dtype == np.float32
    assert thetabar.dtype == np.float32 and thetabar.shape == theta.shape
    assert isinstance(tbar, float)
    np.testing.assert_allclose(y, module(theta.astype(np.float64), x.astype(np.float64), 0.5),
                               rtol=1e-4, atol=1e-5)


def test_integer_input_is_computed_in_float64(rng):
    layer = Linear(2, 2)
    theta = layer.init(rng)
    y = layer(theta, np.array([[1, 2], [3, 4]]))
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, layer(theta, np.array([[1.0, 2.0], [3.0, 4.0]])))


# -- initialization -------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_init_is_reproducible(case):
    module = CASES[case][0]()
    a = module.init(np.random.default_rng(7))
    b = module.init(np.random.default_rng(7))
    c = module.init(np.random.default_rng(8))
    assert a.shape == (module.n_params,)
    np.testing.assert_array_equal(a, b)
    if module.n_params:
        assert not np.array_equal(a, c)


@pytest.mark.parametrize("layer, fan_in", [(Linear(400, 300), 400), (ConcatLinear(399, 300), 400),
                                           (ConcatSquashLinear(400, 300), 400)])
def test_init_follows_torch_law(layer, fan_in):
    """Weight and bias ~ U(-1/√fan_in, 1/√fan_in): within the bound, variance 1/(3·fan_in)."""
    views = layer.views(layer.init(np.random.default_rng(0)))
    bound = 1 / math.sqrt(fan_in)
    w = views["weight"]
    assert w.shape == (300, fan_in if isinstance(layer, ConcatLinear) else 400)
    assert np.abs(w).max() <= bound and np.abs(views["bias"]).max() <= bound
    assert w.var() == pytest.approx(bound ** 2 / 3, rel=0.03)
    assert abs(w.mean()) < 0.01 * bound
    if isinstance(layer, ConcatSquashLinear):
        for name in ("gate_weight", "gate_bias", "hyper_weight"):
            assert np.abs(views[name]).max() <= 1 and views[name].std() > 0.4


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: Linear(3, 2), lambda: ConcatLinear(3, 2),
                                  lambda: ConcatSquashLinear(3, 2)])
def test_dense_shape_errors_name_expected_shape(make, rng):
    layer = make()
    theta = layer.init(rng)
    with pytest.raises(ShapeError, match=r"expected x of shape \(batch, 3\), got \(4, 5\)"):
        layer.forward(theta, np.zeros((4, 5)))
    with pytest.raises(ShapeError, match=r"expected x of shape \(batch, 3\), got \(3,\)"):
        layer.forward(theta, np.zeros(3))
    with pytest.raises(ShapeError, match=rf"expected θ of shape \({layer.n_params},\)"):
        layer.forward(theta[:-1], np.zeros((4, 3)))
    _, cache = layer.forward(theta, np.zeros((4, 3)))
    with pytest.raises(ShapeError, match=r"expected ȳ of shape \(4, 2\), got \(4, 3\)"):
        layer.vjp(theta, cache, np.zeros((4, 3)))
    with pytest.raises(ShapeError, match=r"expected ẋ of shape \(4, 3\), got \(3, 4\)"):
        layer.jvp(theta, cache, np.zeros((3, 4)))
    with pytest.raises(ShapeError, match=rf"expected θ̇ of shape \({layer.n_params},\)"):
        layer.jvp(theta, cache, np.zeros((4, 3)), np.zeros(2))


@pytest.mark.parametrize("make", [lambda: ConcatLinear(3, 2), lambda: ConcatSquashLinear(3, 2)])
def test_time_layers_want_a_scalar_time(make, rng):
    layer = make()
    with pytest.raises(ShapeError, match=r"scalar time t .* shape \(4,\)"):
        layer.forward(layer.init(rng), np.zeros((4, 3)), np.zeros(4))


@pytest.mark.parametrize("cls", [Linear, ConcatLinear, ConcatSquashLinear])
@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "3"])
def test_feature_counts_must_be_positive_integers(cls, bad):
    with pytest.raises(ShapeError, match="in_features must be a positive integer"):
        cls(bad, 2)
    with pytest.raises(ShapeError, match="out_features must be a positive integer"):
        cls(2, bad)


def test_residual_errors(rng):
    with pytest.raises(TypeError, match="Module"):
        Residual(lambda x: x)
    grow = Residual(Linear(3, 4))
    with pytest.raises(ShapeError, match=r"maps x of shape \(2, 3\) to \(2, 4\)"):
        grow.forward(grow.init(rng), np.zeros((2, 3)))
    keep = Residual(Linear(3, 3))
    with pytest.raises(ShapeError, match=r"expected θ of shape \(12,\), got \(13,\)"):
        keep.forward(np.zeros(13), np.zeros((2, 3)))


def test_flatten_errors():
    with pytest.raises(ShapeError, match=r"\(batch, \.\.\.\)"):
        Flatten().forward(np.zeros(0), np.float64(1.0))
    _, cache = Flatten().forward(np.zeros(0), np.zeros((2, 3, 4)))
    with pytest.raises(ShapeError, match=r"expected ȳ of shape \(2, 12\)"):
        Flatten().vjp(np.zeros(0), cache, np.zeros((2, 3, 4)))
    with pytest.raises(ShapeError, match=r"expected ẋ of shape \(2, 3, 4\)"):
        Flatten().jvp(np.zeros(0), cache, np.zeros((2, 12)))


def test_reprs():
    assert repr(Linear(3, 2)) == "Linear(3, 2)"
    assert repr(ConcatLinear(3, 2, bias=False)) == "ConcatLinear(3, 2, bias=False)"
    assert repr(ConcatSquashLinear(3, 2)) == "ConcatSquashLinear(3, 2)"
    assert repr(Residual(Flatten())) == "Residual(Flatten())"
