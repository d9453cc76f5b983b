"""Shared numerical checks: derivatives against central finite differences."""

import numpy as np
import pytest


def central_differences(fun, x, eps=1e-6):
    """The gradient of a scalar ``fun`` at ``x`` by central differences, entry by entry."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (fun(x + e) - fun(x - e)) / (2 * eps)
    return g


def assert_vjp_matches_fd(fun, x, vjp, rng, eps=1e-6, rtol=1e-6, atol=1e-9):
    """<u, J v> by central differences equals <vjp(u), v> for random u, v."""
    v, u = rng.standard_normal(np.shape(x)), rng.standard_normal(np.shape(fun(x)))
    numeric = np.vdot(u, fun(x + eps * v) - fun(x - eps * v)) / (2 * eps)
    assert np.vdot(vjp(u), v) == pytest.approx(numeric, rel=rtol, abs=atol)


def assert_gradient_matches_fd(fun, x, grad, rng, eps=1e-5, rtol=1e-6, atol=1e-9):
    """The derivative of a scalar ``fun`` along a random v, by central differences, equals
    <grad, v>."""
    v = rng.standard_normal(np.shape(x))
    numeric = (fun(x + eps * v) - fun(x - eps * v)) / (2 * eps)
    assert np.vdot(grad, v) == pytest.approx(numeric, rel=rtol, abs=atol)


def assert_jvp_matches_fd(fun, x, jvp, rng, eps=1e-6, rtol=1e-6, atol=1e-9):
    """J v by central differences equals jvp(v) for a random v."""
    v = rng.standard_normal(np.shape(x))
    numeric = (fun(x + eps * v) - fun(x - eps * v)) / (2 * eps)
    np.testing.assert_allclose(jvp(v), numeric, rtol=rtol, atol=atol)


def check_module(module, x, rng, t=0.3, jvp=True, rtol=1e-6, atol=1e-9):
    """A module's vjp (w.r.t. x, θ and t) and jvp (w.r.t. x and θ) against differences."""
    theta = module.init(rng) + 0.1 * rng.standard_normal(module.n_params)
    y, cache = module.forward(theta, x, t)
    assert_vjp_matches_fd(lambda xx: module(theta, xx, t), x,
                          lambda u: module.vjp(theta, cache, u)[0], rng, rtol=rtol, atol=atol)
    if module.n_params:
        assert_vjp_matches_fd(lambda th: module(th, x, t), theta,
                              lambda u: module.vjp(theta, cache, u)[1], rng, rtol=rtol,
                              atol=atol)
    assert_vjp_matches_fd(lambda tt: module(theta, x, float(tt)), np.array(t),
                          lambda u: np.array(module.vjp_t(theta, cache, u)[2]), rng,
                          rtol=rtol, atol=atol)
    if jvp:
        assert_jvp_matches_fd(lambda xx: module(theta, xx, t), x,
                              lambda v: module.jvp(theta, cache, v), rng, rtol=rtol, atol=atol)
        if module.n_params:
            zero = np.zeros_like(x)
            assert_jvp_matches_fd(lambda th: module(th, x, t), theta,
                                  lambda v: module.jvp(theta, cache, zero, v), rng, rtol=rtol,
                                  atol=atol)


def check_second_derivatives(module, x, rng, t=0.3, rtol=1e-6, atol=1e-9):
    """``vjp_jvp`` and ``dual_vjp`` against differences of ``S = ȳ·y + ẏ̄·(∂y/∂x)ẋ``.

    ``vjp_jvp(ȳ, ẋ)`` is the gradient of ``ȳ·(∂y/∂x)ẋ`` in (x, θ, t); ``dual_vjp``, given the
    record of ``jvp_record(ẋ)``, is the gradient of ``S`` in (x, ẋ, θ, t). Each is checked
    along random directions, the tangent ``(∂y/∂x)ẋ`` being the module's own ``jvp`` (itself
    checked by :func:`check_module`).
    """
    theta = module.init(rng) + 0.1 * rng.standard_normal(module.n_params)
    y, cache = module.forward(theta, x, t)
    ybar, ydotbar, xdot = (rng.standard_normal(s) for s in (y.shape, y.shape, x.shape))

    def tangent(xx, th, tt, xd):
        return module.jvp(th, module.forward(th, xx, tt)[1], xd)

    def s_second(xx, th, tt):
        return np.vdot(ydotbar, tangent(xx, th, tt, xdot))

    def s_dual(xx, xd, th, tt):
        return np.vdot(ybar, module(th, xx, tt)) + np.vdot(ydotbar, tangent(xx, th, tt, xd))

    got = module.vjp_jvp(theta, cache, ydotbar, xdot)
    ydot, record = module.jvp_record(theta, cache, xdot)
    np.testing.assert_allclose(ydot, module.jvp(theta, cache, xdot), rtol=1e-13, atol=1e-15)
    dual = module.dual_vjp(theta, cache, record, ybar, ydotbar)
    checks = [  # (S as a function of one argument, its claimed gradient, the point)
        (lambda a: s_second(a, theta, t), got[0], x),
        (lambda a: s_second(x, a, t), got[1], theta),
        (lambda a: s_second(x, theta, a), got[2], t),
        (lambda a: s_dual(a, xdot, theta, t), dual[0], x),
        (lambda a: s_dual(x, a, theta, t), dual[1], xdot),
        (lambda a: s_dual(x, xdot, a, t), dual[2], theta),
        (lambda a: s_dual(x, xdot, theta, a), dual[3], t),
    ]
    eps = 1e-6
    for fun, grad, at in checks:
        v = rng.standard_normal(np.shape(at))
        numeric = (fun(at + eps * v) - fun(at - eps * v)) / (2 * eps)
        assert np.vdot(grad, v) == pytest.approx(numeric, rel=rtol, abs=atol)
