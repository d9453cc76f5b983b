"""Optimizers and schedules against update rules written out here, numbers worked by hand,
and the minima of a quadratic and of Rosenbrock's function."""

import math

import numpy as np
import pytest

from symode.errors import NonFiniteError, ShapeError, SymodeError
from symode.nn import schedules
from symode.nn.optim import SGD, Adam, AdamW, RMSprop, clip_grad_norm

OPTIMIZERS = {
    "sgd": (SGD, dict(lr=0.1)),
    "sgd-momentum": (SGD, dict(lr=0.1, momentum=0.9)),
    "sgd-nesterov": (SGD, dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=1e-2)),
    "sgd-dampening": (SGD, dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.1)),
    "adam": (Adam, dict(lr=1e-2)),
    "adam-decay": (Adam, dict(lr=3e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    "adam-small-beta1": (Adam, dict(lr=1e-2, betas=(0.3, 0.4))),
    "adamw": (AdamW, dict(lr=1e-2)),
    "adamw-decay": (AdamW, dict(lr=3e-2, betas=(0.85, 0.95), weight_decay=0.3)),
    "rmsprop": (RMSprop, dict()),
    "rmsprop-centered": (RMSprop, dict(lr=1e-3, centered=True)),
    "rmsprop-momentum": (RMSprop, dict(lr=1e-3, alpha=0.9, momentum=0.7, weight_decay=0.05)),
    "rmsprop-all": (RMSprop, dict(lr=1e-3, alpha=0.3, momentum=0.5, centered=True, eps=1e-4)),
}


# -- reference rules, written from the torch.optim documentation -----------------------------------
def reference_sgd(theta, grads, lrs, momentum=0.0, dampening=0.0, weight_decay=0.0,
                  nesterov=False):
    """Yields (theta, momentum buffer) after each step; grads(theta, k) gives the k-th gradient."""
    buf = None
    for k, lr in enumerate(lrs):
        g = grads(theta, k) + weight_decay * theta
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        theta = theta - lr * g
        yield theta, {"momentum_buffer": buf} if momentum else {}


def reference_adam(theta, grads, lrs, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                   decoupled=False):
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for k, lr in enumerate(lrs, start=1):
        g = grads(theta, k - 1)
        if decoupled:
            theta = theta - lr * weight_decay * theta
        else:
            g = g + weight_decay * theta
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g ** 2
        m_hat, v_hat = m / (1 - betas[0] ** k), v / (1 - betas[1] ** k)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        yield theta, {"exp_avg": m, "exp_avg_sq": v}


def reference_rmsprop(theta, grads, lrs, alpha=0.99, eps=1e-8, momentum=0.0, centered=False,
                      weight_decay=0.0):
    s, gbar, buf = np.zeros_like(theta), np.zeros_like(theta), np.zeros_like(theta)
    for k, lr in enumerate(lrs):
        g = grads(theta, k) + weight_decay * theta
        s = alpha * s + (1 - alpha) * g ** 2
        gbar = alpha * gbar + (1 - alpha) * g
        rms = np.sqrt(s - gbar ** 2) if centered else np.sqrt(s)
        state = {"square_avg": s, **({"grad_avg": gbar} if centered else {})}
        if momentum:
            buf = momentum * buf + g / (rms + eps)        # eps outside the square root
            theta = theta - lr * buf
            state["momentum_buffer"] = buf
        else:
            theta = theta - lr * g / (rms + eps)
        yield theta, state


def reference(cls, kwargs, theta, grads, lrs):
    kw = {k: v for k, v in kwargs.items() if k != "lr"}
    if cls is SGD:
        return reference_sgd(theta, grads, lrs, **kw)
    if cls is AdamW:
        return reference_adam(theta, grads, lrs, decoupled=True, **{"weight_decay": 1e-2, **kw})
    if cls is Adam:
        return reference_adam(theta, grads, lrs, **kw)
    return reference_rmsprop(theta, grads, lrs, **kw)


def _noisy_quadratic(rng, n=7):
    """Gradient of 0.5 θᵀAθ - bᵀθ (A symmetric positive definite) plus per-step noise."""
    m = rng.standard_normal((n, n))
    a, b = m @ m.T / n + np.eye(n), rng.standard_normal(n)
    noise = rng.standard_normal((20, n))
    return (lambda theta, k: a @ theta - b + noise[k]), rng.standard_normal(n)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_matches_written_out_rule(name, rng):
    cls, kwargs = OPTIMIZERS[name]
    grads, theta0 = _noisy_quadratic(rng)
    opt = cls(**kwargs)
    lr_args = [None, None, 0.5 * opt.lr, None, 1e-3, None]        # None: the optimizer's lr
    lrs = [opt.lr if lr is None else lr for lr in lr_args]
    theta, state = theta0.copy(), opt.init(theta0)
    expected = reference(cls, kwargs, theta0.copy(), grads, lrs)
    for k, (lr, (ref_theta, ref_state)) in enumerate(zip(lr_args, expected, strict=True)):
        theta, state = opt.step(theta, grads(theta, k), state, lr=lr)
        np.testing.assert_allclose(theta, ref_theta, rtol=1e-13, atol=1e-15,
                                   err_msg=f"{name}, step {k + 1}")
        assert set(state) == {"step", *ref_state}, "state keys follow torch.optim"
        for key, value in ref_state.items():
            np.testing.assert_allclose(state[key], value, rtol=1e-12, atol=1e-15,
                                       err_msg=f"{name}, {key}, step {k + 1}")
    assert state["step"] == len(lrs)


# -- numbers worked by hand: f(θ) = θ²/2, so g = θ, from θ0 = 1 ------------------------------------
def _run(opt, theta0, steps, grad=lambda th: th):
    theta, state, out = np.array([theta0]), None, []
    state = opt.init(theta)
    for _ in range(steps):
        theta, state = opt.step(theta, grad(theta), state)
        out.append(float(theta[0]))
    return out, state


def test_sgd_momentum_by_hand():
    # b1 = g1 = 1 (torch starts the buffer at the first gradient, undamped): θ1 = 1 - 0.1
    # b2 = 0.9·1 + 0.9 = 1.8: θ2 = 0.9 - 0.18;  b3 = 0.9·1.8 + 0.72 = 2.34: θ3 = 0.72 - 0.234
    thetas, state = _run(SGD(0.1, momentum=0.9), 1.0, 3)
    assert thetas == pytest.approx([0.9, 0.72, 0.486], rel=1e-14)
    assert state["momentum_buffer"][0] == pytest.approx(2.34, rel=1e-14)


def test_sgd_nesterov_by_hand():
    # b1 = 1, step g + μb = 1.9: θ1 = 0.81;  b2 = 0.9 + 0.81 = 1.71, step 0.81 + 1.539 = 2.349
    thetas, state = _run(SGD(0.1, momentum=0.9, nesterov=True), 1.0, 2)
    assert thetas == pytest.approx([0.81, 0.5751], rel=1e-14)
    assert state["momentum_buffer"][0] == pytest.approx(1.71, rel=1e-14)


def test_sgd_dampening_and_weight_decay_by_hand():
    # g = θ + 0.5 θ = 1.5 θ; b1 = 1.5 (no dampening on the first step), θ1 = 1 - 0.15 = 0.85
    # g2 = 1.275, b2 = 0.5·1.5 + 0.75·1.275 = 1.70625, θ2 = 0.85 - 0.170625 = 0.679375
    thetas, _ = _run(SGD(0.1, momentum=0.5, dampening=0.25, weight_decay=0.5), 1.0, 2)
    assert thetas == pytest.approx([0.85, 0.679375], rel=1e-14)


def test_sgd_is_the_linear_recursion(rng):
    """Plain SGD on 0.5 θᵀAθ is θ_k = (I - γA)^k θ_0."""
    m = rng.standard_normal((4, 4))
    a, theta0, lr = m @ m.T + np.eye(4), rng.standard_normal(4), 0.02
    opt = SGD(lr)
    theta, state = theta0, opt.init(theta0)
    for _ in range(10):
        theta, state = opt.step(theta, a @ theta, state)
    exact = np.linalg.matrix_power(np.eye(4) - lr * a, 10) @ theta0
    np.testing.assert_allclose(theta, exact, rtol=1e-12)


def test_adam_bias_correction():
    """With a constant gradient the corrected moments are m̂ = g and v̂ = g² at every step, so
    each step is -γ g / (|g| + ε); without the correction the first step would be 3.2 times
    smaller (1 - β1 = 0.1 against sqrt(1 - β2) ≈ 0.0316)."""
    g, lr, eps = np.array([2.0, -0.5, 1e-3]), 0.01, 1e-3
    opt = Adam(lr=lr, eps=eps)
    theta, state = np.zeros(3), opt.init(np.zeros(3))
    for k in range(1, 4):
        theta, state = opt.step(theta, g, state)
        np.testing.assert_allclose(theta, -k * lr * g / (np.abs(g) + eps), rtol=1e-13)
    np.testing.assert_allclose(state["exp_avg"], (1 - 0.9 ** 3) * g, rtol=1e-14)
    np.testing.assert_allclose(state["exp_avg_sq"], (1 - 0.999 ** 3) * g ** 2, rtol=1e-13)


def test_adam_two_steps_by_hand():
    # θ = 1, g1 = 1: m = 0.1, v = 0.001, m̂ = 1, v̂ = 1: θ1 = 1 - 0.1/(1 + 1e-8)
    # g2 = θ1: m = 0.09 + 0.1 θ1, v = 0.000999 + 0.001 θ1²
    thetas, _ = _run(Adam(lr=0.1), 1.0, 2)
    t1 = 1 - 0.1 / (1 + 1e-8)
    m2, v2 = 0.09 + 0.1 * t1, 0.000999 + 0.001 * t1 ** 2
    t2 = t1 - 0.1 * (m2 / 0.19) / (math.sqrt(v2 / (1 - 0.999 ** 2)) + 1e-8)
    assert thetas == pytest.approx([t1, t2], rel=1e-14)


def test_adamw_decay_is_decoupled():
    """AdamW shrinks θ by (1 - γλ) whatever the gradient; Adam's L2 decay goes through the
    normalisation instead, so with a zero gradient it moves θ by about γ, not γλθ."""
    theta = np.array([1.0, -2.0])
    opt = AdamW(lr=0.1, weight_decay=0.5)
    new, _ = opt.step(theta, np.zeros(2), opt.init(theta))
    np.testing.assert_allclose(new, theta * (1 - 0.1 * 0.5), rtol=1e-15)
    coupled = Adam(lr=0.1, weight_decay=0.5)
    new, _ = coupled.step(theta, np.zeros(2), coupled.init(theta))
    np.testing.assert_allclose(new, theta - 0.1 * np.sign(theta), rtol=1e-7)


def test_rmsprop_defaults_and_eps_outside_the_root():
    opt = RMSprop()
    assert (opt.lr, opt.alpha, opt.eps, opt.momentum, opt.centered) == \
        (1e-2, 0.99, 1e-8, 0.0, False)
    # g = 1e-3: s = 0.01 · 1e-6 = 1e-8, sqrt(s) = 1e-4; with eps = 1e-4 outside the root the
    # step is γ · 1e-3 / 2e-4 = 5γ, inside it would be γ · 1e-3 / sqrt(2e-8) ≈ 7.07γ
    opt = RMSprop(lr=0.01, eps=1e-4)
    new, state = opt.step(np.zeros(1), np.array([1e-3]), opt.init(np.zeros(1)))
    assert new[0] == pytest.approx(-0.05, rel=1e-12)
    assert state["square_avg"][0] == pytest.approx(1e-8, rel=1e-14)


def test_rmsprop_centered_stays_finite():
    """A constant gradient has zero variance; rounding must not make s - ḡ² negative (NaN)."""
    opt = RMSprop(lr=1e-12, centered=True)
    theta, state = np.zeros(3), opt.init(np.zeros(3))
    g = np.array([0.1, 0.3, 0.7])
    for _ in range(4000):
        theta, state = opt.step(theta, g, state)
    assert np.isfinite(theta).all()


# -- minimization --------------------------------------------------------------------------------
def _spd(rng, n=6, cond=10.0):
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return q @ np.diag(np.linspace(1.0, cond, n)) @ q.T, rng.standard_normal(n)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_minimizes_a_quadratic(name, rng):
    """f = 0.5 θᵀAθ - bᵀθ; an L2 weight decay λ moves the minimum to (A + λI)⁻¹ b. The rate
    anneals to zero (cosine schedule), so the adaptive methods settle instead of hovering."""
    cls, kwargs = OPTIMIZERS[name]
    a, b = _spd(rng)
    opt = cls(**kwargs)
    schedule = schedules.cosine(opt.lr, 3000)
    theta, state = np.zeros(len(b)), opt.init(np.zeros(len(b)))
    for _ in range(3000):
        theta, state = opt.step(theta, a @ theta - b, state, lr=schedule(state["step"]))
    g = a @ theta - b
    if cls is AdamW:
        # decoupled decay: the fixed point has λθ = -m̂/(sqrt(v̂) + ε) = -g/(|g| + ε)
        lam = opt.weight_decay
        np.testing.assert_allclose(lam * theta * (np.abs(g) + opt.eps), -g, atol=1e-4)
        coupled = np.linalg.solve(a + lam * np.eye(len(b)), b)
        assert lam < 0.1 or np.abs(theta - coupled).max() > 1e-2    # not Adam's L2 answer
    else:
        exact = np.linalg.solve(a + opt.weight_decay * np.eye(len(b)), b)
        np.testing.assert_allclose(theta, exact, atol=1e-7)


def _rosenbrock_grad(theta):
    x, y = theta
    return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


@pytest.mark.parametrize("opt, steps, tol", [
    (SGD(1e-3), 20000, 1e-3),
    (SGD(1e-3, momentum=0.9), 4000, 1e-6),
    (SGD(1e-3, momentum=0.9, nesterov=True), 4000, 1e-6),
    (Adam(2e-2), 4000, 1e-8),
    (AdamW(2e-2, weight_decay=1e-4), 4000, 1e-3),
    (RMSprop(1e-3), 6000, 3e-2),
    (RMSprop(1e-4, momentum=0.9, centered=True), 6000, 1e-4),
], ids=["sgd", "sgd-momentum", "sgd-nesterov", "adam", "adamw", "rmsprop", "rmsprop-centered"])
def test_minimizes_rosenbrock(opt, steps, tol):
    """From (-1.5, 2) round the curved valley to the minimum (1, 1)."""
    theta = np.array([-1.5, 2.0])
    state = opt.init(theta)
    for _ in range(steps):
        theta, state = opt.step(theta, _rosenbrock_grad(theta), state)
    assert np.abs(theta - 1.0).max() < tol, f"{opt}: stopped at {theta}"


# -- protocol --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_step_is_functional(name, rng):
    cls, kwargs = OPTIMIZERS[name]
    opt = cls(**kwargs)
    theta, grad = rng.standard_normal(5), rng.standard_normal(5)
    state = opt.step(theta, grad, opt.init(theta))[1]
    copies = theta.copy(), grad.copy(), {k: np.copy(v) for k, v in state.items()}
    new_theta, new_state = opt.step(theta, grad, state)
    np.testing.assert_array_equal(theta, copies[0])
    np.testing.assert_array_equal(grad, copies[1])
    for k in state:
        np.testing.assert_array_equal(state[k], copies[2][k])
    assert new_state["step"] == state["step"] + 1 and not np.shares_memory(new_theta, theta)
    assert not any(np.shares_memory(new_state[k], state[k]) for k in state if k != "step")


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_float32_stays_float32(name, rng):
    cls, kwargs = OPTIMIZERS[name]
    opt = cls(**kwargs)
    theta = rng.standard_normal(4).astype(np.float32)
    state = opt.init(theta)
    for _ in range(3):                          # a float64 gradient is cast to θ's dtype
        theta, state = opt.step(theta, rng.standard_normal(4), state, lr=np.float64(1e-3))
    assert theta.dtype == np.float32
    assert all(v.dtype == np.float32 for k, v in state.items() if k != "step")


def test_step_errors(rng):
    opt = Adam()
    theta = rng.standard_normal(3)
    with pytest.raises(ShapeError, match=r"grad has shape \(4,\), theta \(3,\)"):
        opt.step(theta, np.zeros(4), opt.init(theta))
    with pytest.raises(NonFiniteError, match="1 non-finite entries .first at index 2. at step 0"):
        opt.step(theta, np.array([0.0, 1.0, np.nan]), opt.init(theta))
    with pytest.raises(SymodeError, match="state has no 'momentum_buffer'"):
        SGD(0.1, momentum=0.9).step(theta, theta, SGD(0.1).init(theta))
    with pytest.raises(ShapeError, match=r"state\['exp_avg'\] has shape \(2,\), theta \(3,\)"):
        opt.step(theta, theta, opt.init(np.zeros(2)))
    with pytest.raises(SymodeError, match=r"state must be the dict made by Adam.init\(theta\)"):
        opt.step(theta, theta, None)
    with pytest.raises(SymodeError, match=r"state\['step'\]=-1 must be an integer"):
        opt.step(theta, theta, {**opt.init(theta), "step": -1})
    with pytest.raises(ShapeError, match="theta must be a flat float vector"):
        opt.init(np.zeros((2, 2)))
    with pytest.raises(ShapeError, match="dtype int64"):
        opt.init(np.arange(3))
    with pytest.raises(SymodeError, match="Adam: lr=-1.0 must be a finite number >= 0"):
        opt.step(theta, theta, opt.init(theta), lr=-1.0)


@pytest.mark.parametrize("make, match", [
    (lambda: SGD(0.1, nesterov=True), "nesterov=True needs momentum > 0"),
    (lambda: SGD(0.1, momentum=0.9, dampening=0.1, nesterov=True), "dampening = 0"),
    (lambda: SGD(-0.1), r"SGD: lr=-0.1 must be a finite number >= 0"),
    (lambda: SGD(float("inf")), "lr=inf"),
    (lambda: SGD("fast"), "lr='fast'"),
    (lambda: SGD(0.1, momentum=1.0), r"momentum=1.0 must lie in \[0, 1\)"),
    (lambda: SGD(0.1, dampening=1.5), r"dampening=1.5 must lie in \[0, 1\]"),
    (lambda: SGD(0.1, weight_decay=-1e-4), "weight_decay=-0.0001"),
    (lambda: Adam(betas=(0.9, 1.0)), r"Adam: betas\[1\]=1.0 must lie in \[0, 1\)"),
    (lambda: Adam(betas=(-0.1, 0.9)), r"betas\[0\]=-0.1"),
    (lambda: Adam(betas=0.9), "must be a pair"),
    (lambda: Adam(eps=0.0), "eps=0.0 must be a finite number > 0"),
    (lambda: AdamW(weight_decay=float("nan")), "AdamW: weight_decay=nan"),
    (lambda: RMSprop(alpha=1.5), r"RMSprop: alpha=1.5 must lie in \[0, 1\)"),
    (lambda: RMSprop(momentum=-0.5), "momentum=-0.5"),
    (lambda: RMSprop(eps=-1e-8), "eps=-1e-08"),
])
def test_bad_hyperparameters(make, match):
    with pytest.raises(SymodeError, match=match):
        make()


def test_clip_grad_norm():
    grad = np.array([3.0, 4.0])
    clipped, norm = clip_grad_norm(grad, 1.0)
    assert norm == 5.0
    np.testing.assert_allclose(clipped, grad / (5.0 + 1e-6), rtol=1e-15)   # torch's 1e-6
    assert np.linalg.norm(clipped) < 1.0
    np.testing.assert_array_equal(grad, [3.0, 4.0])                         # not in place
    short = np.array([0.3, 0.4])
    same, norm = clip_grad_norm(short, 1.0)
    np.testing.assert_array_equal(same, short)
    assert norm == pytest.approx(0.5) and not np.shares_memory(same, short)
    with pytest.raises(NonFiniteError, match="gradient norm is inf"):
        clip_grad_norm(np.array([np.inf, 1.0]), 1.0)
    with pytest.raises(NonFiniteError, match="gradient norm is nan"):
        clip_grad_norm(np.array([np.nan, 1.0]), 1.0)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(SymodeError, match=f"max_norm={bad!r} must be a number > 0"):
            clip_grad_norm(short, bad)


# -- schedules -------------------------------------------------------------------------------------
def test_constant():
    s = schedules.constant(0.3)
    assert [s(k) for k in (0, 1, 10 ** 6)] == [0.3, 0.3, 0.3]


def test_step_decay_values():
    s = schedules.step_decay(0.3, 4, 0.5)             # halves at steps 4, 8, 12, ...
    steps = [0, 3, 4, 7, 8, 12, 40]
    expected = [0.3, 0.3, 0.15, 0.15, 0.075, 0.0375, 0.3 / 1024]
    assert [s(k) for k in steps] == pytest.approx(expected, rel=1e-14)
    assert schedules.step_decay(1.0, 2)(2) == pytest.approx(0.1)        # default gamma


def test_multistep_values():
    s = schedules.multistep(0.3, [2, 5, 11], 0.2)
    steps = [0, 1, 2, 4, 5, 10, 11, 1000]
    expected = [0.3, 0.3, 0.06, 0.06, 0.012, 0.012, 0.0024, 0.0024]
    assert [s(k) for k in steps] == pytest.approx(expected, rel=1e-14)
    assert schedules.multistep(0.3, [])(100) == 0.3


def test_cosine_values():
    s = schedules.cosine(1.0, 8)                        # (1 + cos(πk/8)) / 2
    assert s(0) == 1.0
    assert s(2) == pytest.approx((1 + math.sqrt(0.5)) / 2, rel=1e-14)
    assert s(4) == pytest.approx(0.5, rel=1e-14)
    assert s(6) == pytest.approx((1 - math.sqrt(0.5)) / 2, rel=1e-14)
    assert s(8) == s(100) == 0.0


def test_cosine_with_warmup():
    s = schedules.cosine(1.0, 10, lr_min=0.1, warmup=4)
    assert [s(k) for k in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])  # (k+1)/(w+1)
    assert s(4) == 1.0 and s(7) == pytest.approx(0.55)                      # cos(π/2) = 0
    assert s(10) == s(1000) == 0.1                                          # holds lr_min
    assert all(s(k) > s(k + 1) for k in range(4, 10))


def test_schedules_accept_numpy_steps():
    assert schedules.step_decay(1.0, 2, 0.5)(np.int64(5)) == 0.25


@pytest.mark.parametrize("make, match", [
    (lambda: schedules.constant(0.1)(-1), "step=-1 must be an integer >= 0"),
    (lambda: schedules.constant(0.1)(1.5), "step=1.5 must be an integer"),
    (lambda: schedules.constant(-0.1), "constant: lr=-0.1 must be a finite number >= 0"),
    (lambda: schedules.step_decay(0.1, 0), "step_size=0 must be an integer >= 1"),
    (lambda: schedules.step_decay(0.1, 2, gamma=float("nan")), "gamma=nan"),
    (lambda: schedules.multistep(0.1, [5, 3]), "strictly increasing"),
    (lambda: schedules.multistep(0.1, [2, 2.5]), "strictly increasing integers"),
    (lambda: schedules.cosine(0.1, 10, warmup=10), r"warmup=10 must be an integer in \[0, "),
    (lambda: schedules.cosine(0.1, 0), "total_steps=0 must be an integer >= 1"),
    (lambda: schedules.cosine(0.1, 10, lr_min=0.5), "lr_min=0.5 exceeds lr=0.1"),
])
def test_schedule_errors(make, match):
    with pytest.raises(SymodeError, match=match):
        make()
