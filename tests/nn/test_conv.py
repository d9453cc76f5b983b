"""Conv2d, ConcatConv2d, GroupNorm and AdaptiveAvgPool2d: forward passes against scipy's
correlate and direct loops, every vjp/jvp against central differences (tests/checks.py)."""

import math

import numpy as np
import pytest
from scipy.signal import correlate

from symode.errors import ShapeError
from symode.nn.conv import ConcatConv2d, Conv2d
from symode.nn.module import Sequential
from symode.nn.norm import GroupNorm
from symode.nn.pooling import AdaptiveAvgPool2d

from checks import assert_jvp_matches_fd, check_module


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
