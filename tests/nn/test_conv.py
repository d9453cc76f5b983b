"""Conv2d, ConcatConv2d, GroupNorm, AdaptiveAvgPool2d and Unflatten: forward passes against
scipy's correlate and direct loops, every vjp/jvp and every second derivative (vjp_jvp,
jvp_record, dual_vjp) against central differences (tests/checks.py)."""

import math

import numpy as np
import pytest
from scipy.signal import correlate

import fake_cupy as fake
from symode.errors import ShapeError
from symode.nn.activations import Softplus, Tanh
from symode.nn.conv import ConcatConv2d, Conv2d
from symode.nn.layers import Flatten, Residual, Unflatten
from symode.nn.module import Sequential
from symode.nn.norm import GroupNorm
from symode.nn.pooling import AdaptiveAvgPool2d

from checks import assert_jvp_matches_fd, check_module, check_second_derivatives


def correlate_reference(x, weight, bias, stride, padding):
    """Direct definition: per sample and output channel, scipy's valid correlation of the
    zero-padded input with the weight, summed over input channels, then subsampled."""
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.array([[correlate(xn, w, mode="valid")[0, ::sh, ::sw] for w in weight] for xn in xp])
    return y if bias is None else y + bias[:, None, None]


def pool_reference(x, oh, ow):
    """Torch's bins, one output cell at a time."""
    N, C, H, W = x.shape
    y = np.empty((N, C, oh, ow))
    for p in range(oh):
        for q in range(ow):
            r0, r1 = (p * H) // oh, math.ceil((p + 1) * H / oh)
            c0, c1 = (q * W) // ow, math.ceil((q + 1) * W / ow)
            y[:, :, p, q] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return y


CONV_CASES = [  # (kernel_size, stride, padding, bias, input H×W)
    (3, 1, 0, True, (6, 5)),
    (3, 1, 1, True, (5, 5)),
    (3, 2, 1, True, (7, 6)),
    (4, 2, 1, True, (6, 6)),
    (2, 3, 2, False, (5, 7)),
    ((2, 3), (2, 1), (1, 0), True, (6, 5)),
    (1, 1, 0, True, (3, 4)),
]


@pytest.mark.parametrize("kernel, stride, padding, bias, hw", CONV_CASES)
def test_conv2d_matches_correlate(kernel, stride, padding, bias, hw, rng):
    m = Conv2d(3, 4, kernel, stride, padding, bias=bias)
    theta = m.init(rng)
    x = rng.standard_normal((2, 3, *hw))
    v = m.views(theta)
    ref = correlate_reference(x, v["weight"], v.get("bias"), m.stride, m.padding)
    np.testing.assert_allclose(m(theta, x), ref, rtol=1e-12, atol=1e-12)
    # a non-contiguous input gives the same answer
    np.testing.assert_allclose(m(theta, np.asfortranarray(x)), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 1), (4, 2, 1), (3, 1, 0)])
def test_concat_conv_is_conv_of_time_channel_then_x(kernel, stride, padding, rng):
    m = ConcatConv2d(3, 4, kernel, stride, padding)
    theta, x, t = m.init(rng), rng.standard_normal((2, 3, 6, 5)), 0.7
    v = m.views(theta)
    tx = np.concatenate([np.full((2, 1, 6, 5), t), x], axis=1)   # time first, as Chen et al.
    ref = correlate_reference(tx, v["weight"], v["bias"], m.stride, m.padding)
    np.testing.assert_allclose(m(theta, x, t), ref, rtol=1e-12, atol=1e-12)


DERIVATIVE_CASES = {
    "conv-3x3-pad": (lambda: Conv2d(3, 4, 3, 1, 1), (2, 3, 5, 5)),
    "conv-4x4-stride2": (lambda: Conv2d(3, 2, 4, 2, 1), (2, 3, 6, 7)),
    "conv-rect-nobias": (lambda: Conv2d(2, 3, (2, 3), (2, 1), (0, 1), bias=False), (3, 2, 5, 4)),
    "concat-3x3-pad": (lambda: ConcatConv2d(3, 4, 3, 1, 1), (2, 3, 5, 5)),
    "concat-stride2-nobias": (lambda: ConcatConv2d(2, 3, 3, 2, 1, bias=False), (2, 2, 6, 5)),
    "concat-nopad": (lambda: ConcatConv2d(2, 3, 2, 1, 0), (2, 2, 4, 4)),
    "groupnorm": (lambda: GroupNorm(2, 4), (3, 4, 3, 4)),
    "groupnorm-layer": (lambda: GroupNorm(1, 3), (2, 3, 4, 2)),
    "groupnorm-instance": (lambda: GroupNorm(3, 3), (2, 3, 3, 3)),
    "groupnorm-flat": (lambda: GroupNorm(2, 6), (4, 6)),
    "pool-global": (lambda: AdaptiveAvgPool2d(1), (2, 3, 4, 5)),
    "pool-divisible": (lambda: AdaptiveAvgPool2d((2, 3)), (2, 2, 4, 6)),
    "pool-uneven": (lambda: AdaptiveAvgPool2d((3, 2)), (2, 2, 5, 7)),
    "ode-function": (lambda: Sequential(GroupNorm(2, 4), ConcatConv2d(4, 4, 3, 1, 1),
                                        GroupNorm(2, 4), ConcatConv2d(4, 4, 3, 1, 1),
                                        GroupNorm(2, 4)), (2, 4, 4, 4)),
}


@pytest.mark.parametrize("case", DERIVATIVE_CASES)
def test_derivatives_match_differences(case, rng):
    """vjp w.r.t. x, θ and t; jvp along ẋ, along θ̇, and along both at once."""
    make, shape = DERIVATIVE_CASES[case]
    m, x, t = make(), rng.standard_normal(shape), 0.3
    check_module(m, x, rng, t=t)
    theta = m.init(rng) + 0.1 * rng.standard_normal(m.n_params)
    thetadot, xdot = rng.standard_normal(m.n_params), rng.standard_normal(shape)
    _, cache = m.forward(theta, x, t)
    assert_jvp_matches_fd(lambda s: m(theta + s * thetadot, x + s * xdot, t), np.array(0.0),
                          lambda s: s * m.jvp(theta, cache, xdot, thetadot), rng)


def test_concat_conv_time_gradient_is_nonzero(rng):
    """t̄ is not trivially zero, and padding makes the time's effect vary near the borders."""
    m = ConcatConv2d(2, 3, 3, 1, 1)
    theta, x = m.init(rng), rng.standard_normal((2, 2, 5, 5))
    y0, cache = m.forward(theta, x, 0.0)
    dy = m(theta, x, 1.0) - y0          # y is affine in t
    assert np.ptp(dy[0, 0]) > 0         # border pixels see fewer time taps
    np.testing.assert_allclose(dy[0], dy[1])
    _, _, tbar = m.vjp_t(theta, cache, np.ones_like(y0))
    assert isinstance(tbar, float) and tbar == pytest.approx(dy.sum(), rel=1e-12)


def test_groupnorm_matches_definition(rng):
    m = GroupNorm(2, 6, eps=1e-3)
    theta = m.init(rng) + rng.standard_normal(12)
    x = 3 + 2 * rng.standard_normal((3, 6, 4, 5))
    gamma, beta = m.views(theta)["weight"], m.views(theta)["bias"]
    ref = np.empty_like(x)
    for n in range(3):
        for g in range(2):
            block = x[n, 3 * g:3 * g + 3]
            ref[n, 3 * g:3 * g + 3] = (block - block.mean()) / np.sqrt(block.var() + 1e-3)
    ref = ref * gamma[:, None, None] + beta[:, None, None]
    np.testing.assert_allclose(m(theta, x), ref, rtol=1e-12, atol=1e-12)


def test_groupnorm_initial_output_is_standardised(rng):
    m = GroupNorm(4, 8)
    theta = m.init(rng)
    assert np.array_equal(theta, np.r_[np.ones(8), np.zeros(8)])
    y = m(theta, 5 - 3 * rng.standard_normal((2, 8, 6, 6))).reshape(2, 4, -1)
    np.testing.assert_allclose(y.mean(axis=2), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=2), 1, rtol=1e-4)


@pytest.mark.parametrize("size, hw", [(1, (5, 4)), ((2, 3), (4, 6)), ((3, 2), (5, 7)),
                                      (4, (3, 3)), ((1, 3), (6, 4))])
def test_pool_matches_bins(size, hw, rng):
    m = AdaptiveAvgPool2d(size)
    x = rng.standard_normal((2, 3, *hw))
    np.testing.assert_allclose(m(m.init(rng), x), pool_reference(x, *m.output_size),
                               rtol=1e-12, atol=1e-14)


def test_conv_init_law_and_parameter_count(rng):
    """torch's law: U(-1/√fan_in, 1/√fan_in); the paper's ODE convolution has 65·64·9 + 64."""
    m = ConcatConv2d(64, 64, 3, 1, 1)
    assert m.n_params == 65 * 64 * 9 + 64
    assert m.param_shapes() == {"weight": (64, 65, 3, 3), "bias": (64,)}
    bound = 1 / math.sqrt(65 * 9)
    v = m.views(m.init(rng))
    for w in (v["weight"], v["bias"]):
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert v["weight"].std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert Conv2d(1, 64, 3, bias=False).n_params == 64 * 9


LAYERS_AND_SHAPES = [(lambda: Conv2d(3, 4, 3, 2, 1), (2, 3, 6, 6)),
                     (lambda: ConcatConv2d(3, 4, 3, 1, 1), (2, 3, 5, 5)),
                     (lambda: GroupNorm(2, 4), (2, 4, 3, 3)),
                     (lambda: AdaptiveAvgPool2d(1), (2, 3, 4, 4))]


@pytest.mark.parametrize("make, shape", LAYERS_AND_SHAPES)
def test_float32_stays_float32(make, shape, rng):
    m = make()
    theta64, x64 = m.init(rng) + 0.1 * rng.standard_normal(m.n_params), rng.standard_normal(shape)
    theta, x = theta64.astype(np.float32), x64.astype(np.float32)
    y, cache = m.forward(theta, x, 0.5)
    ybar = np.ones_like(y)
    xbar, thetabar, _ = m.vjp_t(theta, cache, ybar)
    ydot = m.jvp(theta, cache, x, theta)
    assert y.dtype == xbar.dtype == thetabar.dtype == ydot.dtype == np.float32
    y64, cache64 = m.forward(theta64, x64, 0.5)
    np.testing.assert_allclose(y, y64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(xbar, m.vjp(theta64, cache64, ybar.astype(float))[0], rtol=1e-4,
                               atol=1e-5)


def test_integer_input_becomes_float64(rng):
    m = Conv2d(1, 2, 2)
    y = m(m.init(rng), np.arange(2 * 16).reshape(2, 1, 4, 4))
    assert y.dtype == np.float64


@pytest.mark.parametrize("make, x_shape, match", [
    (lambda: Conv2d(3, 4, 3), (2, 5, 6, 6), r"\(batch, 3, height, width\) \(NCHW, 3 channels\)"),
    (lambda: Conv2d(3, 4, 3), (3, 6, 6), r"\(batch, 3, height, width\).*got \(3, 6, 6\)"),
    (lambda: ConcatConv2d(64, 64, 3, 1, 1), (2, 65, 6, 6), r"\(batch, 64, height, width\)"),
    (lambda: Conv2d(3, 4, 5, padding=1), (2, 3, 2, 8), r"smaller than the 5×5 kernel"),
    (lambda: GroupNorm(2, 4), (2, 6, 3, 3), r"\(batch, 4, height, width\) \(NCHW, 4 channels\)"),
    (lambda: AdaptiveAvgPool2d(1), (2, 3, 4), r"\(batch, channels, height, width\) \(NCHW"),
])
def test_wrong_input_shape_raises(make, x_shape, match, rng):
    m = make()
    with pytest.raises(ShapeError, match=match):
        m.forward(m.init(rng), np.zeros(x_shape))


@pytest.mark.parametrize("make, shape", LAYERS_AND_SHAPES)
def test_wrong_cotangent_and_tangent_shapes_raise(make, shape, rng):
    m = make()
    theta = m.init(rng)
    y, cache = m.forward(theta, rng.standard_normal(shape))
    with pytest.raises(ShapeError, match=r"expected ȳ of shape"):
        m.vjp(theta, cache, np.zeros(y.shape[:-1] + (y.shape[-1] + 1,)))
    with pytest.raises(ShapeError, match=r"expected ẋ of shape"):
        m.jvp(theta, cache, np.zeros(shape[:-1] + (shape[-1] + 1,)))


def test_time_must_be_scalar(rng):
    m = ConcatConv2d(2, 3, 3)
    with pytest.raises(ShapeError, match="scalar time"):
        m.forward(m.init(rng), np.zeros((2, 2, 4, 4)), np.array([0.1, 0.2]))


def test_wrong_theta_length_raises(rng):
    m = Conv2d(3, 4, 3)
    with pytest.raises(ShapeError, match=rf"expected θ of shape \({m.n_params},\)"):
        m.forward(np.zeros(m.n_params - 4), np.zeros((1, 3, 5, 5)))


@pytest.mark.parametrize("make", [lambda: GroupNorm(3, 4), lambda: GroupNorm(2, 4, eps=0),
                                  lambda: Conv2d(3, 4, 0), lambda: Conv2d(3, 4, 3, stride=0),
                                  lambda: Conv2d(0, 4, 3), lambda: AdaptiveAvgPool2d(0),
                                  lambda: AdaptiveAvgPool2d((1, 2, 3))])
def test_bad_configuration_raises(make):
    with pytest.raises(ValueError):
        make()


# -- second derivatives ---------------------------------------------------------------------------
SECOND_CASES = {
    **DERIVATIVE_CASES,
    "conv-1x1": (lambda: Conv2d(2, 3, 1), (2, 2, 3, 4)),
    "concat-4x4-stride2": (lambda: ConcatConv2d(2, 3, 4, 2, 1), (2, 2, 6, 6)),
    "concat-rect-stride": (lambda: ConcatConv2d(2, 2, (3, 2), (1, 2), (1, 0)), (2, 2, 4, 5)),
    "groupnorm-3-groups": (lambda: GroupNorm(3, 6, eps=1e-3), (2, 6, 2, 3)),
    "groupnorm-4-groups-flat": (lambda: GroupNorm(4, 8), (3, 8)),
    "unflatten": (lambda: Unflatten((2, 2, 3)), (3, 12)),
    "residual-conv": (lambda: Residual(Sequential(GroupNorm(2, 4), Tanh(),
                                                  ConcatConv2d(4, 4, 3, 1, 1))), (2, 4, 3, 3)),
    "flat-conv-net": (lambda: Sequential(Unflatten((2, 3, 3)), ConcatConv2d(2, 4, 3, 1, 1),
                                         GroupNorm(2, 4), Softplus(), Conv2d(4, 3, 2),
                                         AdaptiveAvgPool2d((2, 1)), Flatten()), (2, 18)),
}


@pytest.mark.parametrize("case", SECOND_CASES)
def test_second_derivatives_match_differences(case, rng):
    """vjp_jvp in (x, θ, t), dual_vjp in (x, ẋ, θ, t), jvp_record against jvp."""
    make, shape = SECOND_CASES[case]
    m = make()
    x = rng.standard_normal(shape)
    if isinstance(m, GroupNorm):
        x = 2 + 3 * x                   # groups with a mean and a spread away from 0 and 1
    check_second_derivatives(m, x, rng, t=0.7)


@pytest.mark.parametrize("case", ["conv-3x3-pad", "concat-stride2-nobias", "groupnorm",
                                  "groupnorm-flat", "pool-uneven", "unflatten", "flat-conv-net"])
def test_dual_vjp_without_ybar_is_the_second_order_part(case, rng):
    """With ȳ = None, dual_vjp is vjp_jvp in (x, θ, t) and the first-order vjp of ẏ̄ in ẋ."""
    make, shape = SECOND_CASES[case]
    m = make()
    theta = m.init(rng) + 0.1 * rng.standard_normal(m.n_params)
    x, xdot = rng.standard_normal(shape), rng.standard_normal(shape)
    y, cache = m.forward(theta, x, 0.4)
    ydotbar = rng.standard_normal(y.shape)
    _, record = m.jvp_record(theta, cache, xdot)
    xbar, xdotbar, thetabar, tbar = m.dual_vjp(theta, cache, record, None, ydotbar)
    ref = m.vjp_jvp(theta, cache, ydotbar, xdot)
    for got, want in zip((xbar, xdotbar, thetabar), (ref[0], m.vjp(theta, cache, ydotbar)[0],
                                                     ref[1])):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    assert isinstance(tbar, float) and tbar == pytest.approx(ref[2], abs=1e-14)


def test_groupnorm_second_derivative_matches_hessian(rng):
    """x̄ of vjp_jvp is H ẋ for the Hessian H of ȳ·y in x, built column by column from
    differences of vjp (one group of 6 entries, so H is small and dense)."""
    m = GroupNorm(1, 2)
    theta = m.init(rng) + 0.3 * rng.standard_normal(4)
    x, ybar = rng.standard_normal((1, 2, 3)), rng.standard_normal((1, 2, 3))

    def grad(xx):
        return m.vjp(theta, m.forward(theta, xx)[1], ybar)[0].ravel()

    h = 1e-5
    H = np.stack([(grad(x + h * e.reshape(x.shape)) - grad(x - h * e.reshape(x.shape))) / (2 * h)
                  for e in np.eye(6)], axis=1)
    np.testing.assert_allclose(H, H.T, atol=1e-8)
    _, cache = m.forward(theta, x)
    for e in np.eye(6):
        got = m.vjp_jvp(theta, cache, ybar, e.reshape(x.shape))[0].ravel()
        np.testing.assert_allclose(got, H @ e, rtol=1e-7, atol=1e-8)
    assert np.abs(H).max() > 0.1


def test_convolution_second_derivative_is_the_weight_gradient_of_the_tangent(rng):
    """ȳ·(W ⋆ ẋ) is the first-order θ̄ of ȳ at input ẋ, without the bias and time parts."""
    m = ConcatConv2d(2, 3, 3, 1, 1)
    theta = m.init(rng)
    x, xdot = rng.standard_normal((2, 2, 4, 4)), rng.standard_normal((2, 2, 4, 4))
    y, cache = m.forward(theta, x, 0.6)
    ybar = rng.standard_normal(y.shape)
    xbar, thetabar, tbar = m.vjp_jvp(theta, cache, ybar, xdot)
    at_xdot = m.views(m.vjp(theta, m.forward(theta, xdot, 0.6)[1], ybar)[1])["weight"]
    got = m.views(thetabar)
    np.testing.assert_allclose(got["weight"][:, 1:], at_xdot[:, 1:], rtol=1e-12)
    assert not got["weight"][:, 0].any() and not got["bias"].any() and not xbar.any()
    assert tbar == 0.0


@pytest.mark.parametrize("make, shape", LAYERS_AND_SHAPES)
def test_second_derivatives_stay_float32(make, shape, rng):
    m = make()
    theta64, x64 = m.init(rng) + 0.1 * rng.standard_normal(m.n_params), rng.standard_normal(shape)
    xdot64 = rng.standard_normal(shape)
    y64, cache64 = m.forward(theta64, x64, 0.5)
    ybar64, ydotbar64 = rng.standard_normal(y64.shape), rng.standard_normal(y64.shape)
    theta, x, xdot, ybar, ydotbar = (a.astype(np.float32)
                                     for a in (theta64, x64, xdot64, ybar64, ydotbar64))
    _, cache = m.forward(theta, x, 0.5)
    got = m.vjp_jvp(theta, cache, ydotbar, xdot)
    dual = m.dual_vjp(theta, cache, m.jvp_record(theta, cache, xdot)[1], ybar, ydotbar)
    assert all(a.dtype == np.float32 for a in (*got[:2], *dual[:3]))
    assert isinstance(got[2], float) and isinstance(dual[3], float)
    ref = m.vjp_jvp(theta64, cache64, ydotbar64, xdot64)
    ref_dual = m.dual_vjp(theta64, cache64, xdot64, ybar64, ydotbar64)
    for a, b in zip((*got[:2], *dual[:3]), (*ref[:2], *ref_dual[:3])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("make, shape", LAYERS_AND_SHAPES + [(lambda: Unflatten((3, 2)), (2, 6))])
def test_second_derivative_shapes_are_checked(make, shape, rng):
    m = make()
    theta = m.init(rng)
    x = rng.standard_normal(shape)
    y, cache = m.forward(theta, x)
    bad_y = np.zeros(y.shape[:-1] + (y.shape[-1] + 1,))
    bad_x = np.zeros(shape[:-1] + (shape[-1] + 1,))
    with pytest.raises(ShapeError, match=r"expected ȳ of shape"):
        m.vjp_jvp(theta, cache, bad_y, x)
    with pytest.raises(ShapeError, match=r"expected ẋ of shape"):
        m.vjp_jvp(theta, cache, y, bad_x)
    with pytest.raises(ShapeError, match=r"expected (ẏ̄|ȳ) of shape"):
        m.dual_vjp(theta, cache, x, None, bad_y)


@pytest.fixture
def fake_cupy(monkeypatch):
    """The stand-in cupy of tests/fake_cupy.py, in ``sys.modules`` for one test."""
    return fake.install(monkeypatch)


@pytest.mark.parametrize("make, shape", LAYERS_AND_SHAPES + [
    (lambda: GroupNorm(2, 6), (2, 6)), (lambda: AdaptiveAvgPool2d((2, 1)), (1, 2, 3, 3)),
    (lambda: Unflatten((2, 2, 2)), (2, 8))])
def test_second_derivatives_keep_cupy_arrays(fake_cupy, make, shape, rng):
    """vjp_jvp and dual_vjp (with and without ȳ) on the stand-in cupy: cupy arrays out, equal
    to the numpy results; the convolution and group-norm kernels run in numba's simulator."""
    cp, m = fake_cupy, make()
    theta = m.init(rng) + 0.1 * rng.standard_normal(m.n_params)
    x, xdot = rng.standard_normal(shape), rng.standard_normal(shape)
    y, cache = m.forward(theta, x, 0.3)
    ybar, ydotbar = rng.standard_normal(y.shape), rng.standard_normal(y.shape)

    def run(theta, x, xdot, ybar, ydotbar):
        _, cache = m.forward(theta, x, 0.3)
        _, record = m.jvp_record(theta, cache, xdot)
        return [m.vjp_jvp(theta, cache, ybar, xdot), m.dual_vjp(theta, cache, record, ybar,
                                                                  ydotbar),
                m.dual_vjp(theta, cache, record, None, ydotbar)]

    cpu = run(theta, x, xdot, ybar, ydotbar)
    gpu = run(*(cp.asarray(a) for a in (theta, x, xdot, ybar, ydotbar)))
    for g, c in zip(sum(map(list, gpu), []), sum(map(list, cpu), [])):
        if isinstance(c, np.ndarray):
            assert isinstance(g, cp.ndarray) and g.shape == c.shape and g.dtype == c.dtype
            np.testing.assert_allclose(g.get(), c, rtol=1e-10, atol=1e-12)
        else:
            assert isinstance(g, float) and g == pytest.approx(c, abs=1e-12)


# -- Unflatten ------------------------------------------------------------------------------------
def test_unflatten_inverts_flatten(rng):
    m = Unflatten((2, 3, 4))
    x = rng.standard_normal((5, 24))
    y, cache = m.forward(np.zeros(0), x)
    assert y.shape == (5, 2, 3, 4) and m.in_features == 24 and m.n_params == 0
    np.testing.assert_array_equal(Flatten()(np.zeros(0), y), x)
    np.testing.assert_array_equal(y[3, 1], x[3, 12:].reshape(3, 4))
    ybar = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(m.vjp(np.zeros(0), cache, ybar)[0], ybar.reshape(5, 24))
    check_module(m, x, rng)
    assert repr(Unflatten(7)) == "Unflatten((7,))" and Unflatten(7).in_features == 7


def test_unflatten_errors(rng):
    with pytest.raises(ShapeError, match=r"expected x of shape \(batch, 24\), got \(5, 23\)"):
        Unflatten((2, 3, 4)).forward(np.zeros(0), np.zeros((5, 23)))
    with pytest.raises(ShapeError, match=r"expected x of shape \(batch, 6\)"):
        Unflatten((2, 3)).forward(np.zeros(0), np.zeros((2, 3)))
    for bad in [(), (2, 0), (2, 1.5), -3]:
        with pytest.raises(ShapeError, match="Unflatten"):
            Unflatten(bad)
