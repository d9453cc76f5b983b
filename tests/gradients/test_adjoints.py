"""Gradients of solves against central finite differences and forward sensitivities."""

import tracemalloc

import numpy as np
import pytest
import sympy as sp
from scipy.integrate import solve_ivp
from scipy.linalg import expm

import symode as so

import problems
from checks import central_differences

ADJOINTS = ["backsolve", "checkpoint", "discrete"]
TIGHT = dict(rtol=1e-11, atol=1e-12)


def forced_system():
    """A nonlinear, time-dependent system, so that dL/dt is not trivial."""
    x, y, a, b, w, t = sp.symbols("x y a b omega t")
    return so.ODE([x, y], [a * y - 0.1 * x + sp.sin(w * t), -b * x - 0.2 * y * x**2],
                  params=[a, b, w])


def fd_gradients(ode, y0, t, params, weights, **opts):
    def loss(y0_, t_, p_):
        return np.sum(weights * so.solve(ode, y0_, t_, params=p_, **opts).y)

    return (central_differences(lambda v: loss(v, t, params), y0),
            central_differences(lambda v: loss(y0, t, v), params),
            central_differences(lambda v: loss(y0, v, params), t))


@pytest.fixture(scope="module")
def forced_case():
    rng = np.random.default_rng(3)
    ode = forced_system()
    y0 = rng.normal(size=(3, 2))
    t = np.linspace(0.0, 2.0, 5)
    p = np.array([1.0, 1.3, 2.0])
    w = rng.normal(size=(5, 3, 2))                 # one cotangent at many times
    return ode, y0, t, p, w, fd_gradients(ode, y0, t, p, w, **TIGHT)


@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_gradients_match_finite_differences(forced_case, adjoint):
    ode, y0, t, p, w, (gy, gp, gt) = forced_case
    sol, pullback = so.solve_vjp(ode, y0, t, params=p, adjoint=adjoint, **TIGHT)
    g = pullback(w)
    assert g.y0.shape == y0.shape and g.params.shape == p.shape and g.t.shape == t.shape
    np.testing.assert_allclose(g.y0, gy, atol=2e-8)
    np.testing.assert_allclose(g.params, gp, atol=2e-8)
    np.testing.assert_allclose(g.t, gt, atol=2e-8)
    assert (g.stats.nfev > 0).all()


@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_per_trajectory_params_and_times(adjoint, rng):
    p = problems.lorenz(batch=3, t1=0.5)
    params = p.params * rng.uniform(0.9, 1.1, size=(3, 3))
    grids = np.stack([np.sort(rng.uniform(0.0, 0.5, 4)) for _ in range(3)])
    w = rng.normal(size=(4, 3, 3))
    sol, pullback = so.solve_vjp(p.ode, p.y0, grids, params=params, adjoint=adjoint, **TIGHT)
    g = pullback(w)
    gy, gp, gt = fd_gradients(p.ode, p.y0, grids, params, w, **TIGHT)
    assert g.params.shape == (3, 3) and g.t.shape == (3, 4)
    np.testing.assert_allclose(g.y0, gy, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g.params, gp, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g.t, gt, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_discrete_is_exact_for_fixed_steps(forced_case, method):
    ode, y0, _, p, w, _ = forced_case
    # saved times off the step grid: where one sits on a step boundary the saved value's second
    # derivative in t jumps, and central differences lose their accuracy there
    t = np.array([0.0, 0.37, 0.81, 1.23, 2.0])
    opts = dict(method=method, n_steps=40)
    gy, gp, gt = fd_gradients(ode, y0, t, p, w, **opts)
    sol, pullback = so.solve_vjp(ode, y0, t, params=p, adjoint="discrete", **opts)
    g = pullback(w)
    for ours, fd in ((g.y0, gy), (g.params, gp), (g.t, gt)):
        np.testing.assert_allclose(ours, fd, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("method", ["bosh3", "dopri5", "tsit5", "dop853"])
def test_discrete_adaptive_close_to_continuous(forced_case, method):
    ode, y0, t, p, w, (gy, gp, gt) = forced_case
    _, pullback = so.solve_vjp(ode, y0, t, params=p, method=method, adjoint="discrete",
                               rtol=1e-9, atol=1e-10)
    g = pullback(w)
    np.testing.assert_allclose(g.y0, gy, atol=1e-5)
    np.testing.assert_allclose(g.params, gp, atol=1e-5)
    np.testing.assert_allclose(g.t, gt, atol=1e-5)


@pytest.mark.parametrize("method", ["bosh3", "dopri5", "tsit5", "dop853"])
def test_discrete_kernel_equals_array_engine_on_the_same_steps(forced_case, method):
    """Per trajectory, the kernel engine's discrete adjoint is the array engine's (tested
    against finite differences above) on the same steps: one trajectory at a time, the array
    engine takes exactly the kernel's steps."""
    ode, y0, t, p, w, _ = forced_case
    opts = dict(params=p, method=method, adjoint="discrete", rtol=1e-6, atol=1e-8)
    sol, pullback = so.solve_vjp(ode, y0, t, **opts)
    g = pullback(w)
    assert sol.engine == "kernel"
    p_sum = 0.0
    for b in range(len(y0)):
        one, pb_one = so.solve_vjp(ode, y0[b], t, engine="array", **opts)
        assert one.stats.naccept[0] == sol.stats.naccept[b]
        g1 = pb_one(w[:, b])
        np.testing.assert_allclose(g.y0[b], g1.y0, rtol=1e-12, atol=1e-12)
        p_sum = p_sum + g1.params
        if b == 0:
            t_sum = g1.t
        else:
            t_sum = t_sum + g1.t
    np.testing.assert_allclose(g.params, p_sum, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g.t, t_sum, rtol=1e-12, atol=1e-12)


def test_discrete_kernel_backwards_and_per_trajectory_fixed_steps(rng):
    """Exact for the discretisation: central differences of the fixed-step solve, with
    per-trajectory times (one integrated backwards) and parameters."""
    ode = forced_system()
    y0 = rng.normal(size=(2, 2))
    t = np.array([[0.0, 0.47, 1.13, 1.5], [1.5, 1.23, 0.33, 0.0]])   # off the step grid
    p = np.array([[1.0, 1.3, 2.0], [0.8, 1.1, 2.5]])
    w = rng.normal(size=(4, 2, 2))
    opts = dict(method="rk4", n_steps=30)
    gy, gp, gt = fd_gradients(ode, y0, t, p, w, **opts)
    _, pullback = so.solve_vjp(ode, y0, t, params=p, adjoint="discrete", **opts)
    g = pullback(w)
    for ours, fd in ((g.y0, gy), (g.params, gp), (g.t, gt)):
        np.testing.assert_allclose(ours, fd, rtol=1e-7, atol=1e-8)


def forward_sensitivities(ode, y0, t, params, w):
    """dL/dy0 and dL/dθ of L = Σ w·y(t_i) from the variational equations, scipy DOP853."""
    D, P = ode.dim, ode.n_params
    f = sp.lambdify((ode.t, ode.states, ode.params), list(ode.rhs))
    J = sp.lambdify((ode.t, ode.states, ode.params), ode.jacobian)
    Jp = sp.lambdify((ode.t, ode.states, ode.params), ode.param_jacobian)
    gy, gp = np.zeros_like(y0), np.zeros(P)
    for b in range(len(y0)):
        def rhs(tt, u):
            z, S = u[:D], u[D:].reshape(D, D + P)
            A = np.asarray(J(tt, z, params), float)
            dS = A @ S
            dS[:, D:] += np.asarray(Jp(tt, z, params), float)
            return np.concatenate([np.asarray(f(tt, z, params), float), dS.ravel()])
        u0 = np.concatenate([y0[b], np.hstack([np.eye(D), np.zeros((D, P))]).ravel()])
        sol = solve_ivp(rhs, (t[0], t[-1]), u0, t_eval=t, method="DOP853", rtol=1e-12,
                        atol=1e-14)
        S = sol.y[D:].T.reshape(len(t), D, D + P)
        g = np.einsum("ti,tij->j", w[:, b], S)
        gy[b], gp = g[:D], gp + g[D:]
    return gy, gp


def test_backsolve_and_checkpoint_agree_with_forward_sensitivities(rng):
    p = problems.lorenz(batch=2, t1=1.0)
    w = rng.normal(size=(len(p.t), 2, 3))
    gy, gp = forward_sensitivities(p.ode, p.y0, p.t, p.params, w)
    results = {}
    for adjoint in ("backsolve", "checkpoint"):
        _, pullback = so.solve_vjp(p.ode, p.y0, p.t, params=p.params, adjoint=adjoint, **TIGHT)
        results[adjoint] = g = pullback(w)
        np.testing.assert_allclose(g.y0, gy, rtol=1e-6)
        np.testing.assert_allclose(g.params, gp, rtol=1e-6)
    np.testing.assert_allclose(results["backsolve"].params, results["checkpoint"].params,
                               rtol=1e-6)


def test_checkpoint_stays_accurate_where_backsolve_drifts():
    # a fast decaying mode: backwards in time it grows like e^(k t), so re-integrating z
    # backwards amplifies every local error; resetting z at each step keeps it in check
    x, y, k = sp.symbols("x y k")
    ode = so.ODE([x, y], [-k * x, x - 0.1 * y * y], params=[k])
    y0, t, params = np.array([[1.0, 0.5]]), np.array([0.0, 3.0]), np.array([12.0])
    w = np.zeros((2, 1, 2))
    w[-1, 0, 1] = 1.0                               # L = y(3)
    gy, gp, _ = fd_gradients(ode, y0, t, params, w, **TIGHT)
    errs = {}
    for adjoint in ("backsolve", "checkpoint"):
        _, pullback = so.solve_vjp(ode, y0, t, params=params, adjoint=adjoint, rtol=1e-6,
                                   atol=1e-9)
        g = pullback(w)
        errs[adjoint] = np.max(np.abs(g.y0 - gy) / np.abs(gy))
    assert errs["checkpoint"] < 1e-4, errs
    assert errs["backsolve"] > 100 * errs["checkpoint"], errs


def test_seminorm_takes_fewer_backward_steps():
    p = problems.lorenz(batch=4, t1=1.0)
    w = np.ones((len(p.t), 4, 3))
    counts, grads = {}, {}
    for seminorm in (False, True):
        _, pullback = so.solve_vjp(p.ode, p.y0, p.t, params=p.params, seminorm=seminorm,
                                   rtol=1e-6, atol=1e-8)
        g = pullback(w)
        counts[seminorm], grads[seminorm] = g.stats.nfev.sum(), g.params
    assert counts[True] < counts[False], counts
    np.testing.assert_allclose(grads[True], grads[False], rtol=1e-3)


def linear_dynamics(n):
    """dz/dt = A z with A of size n (numpy, not symbolic), with its VJP."""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(n, n)) / np.sqrt(n) - np.eye(n)

    def f(t, z, theta):
        return theta * (z @ A.T)

    def vjp(t, z, theta, a):
        return theta * (a @ A), np.sum(a * (z @ A.T)), np.zeros(len(z))

    return so.FunctionDynamics(f, vjp=vjp)


@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_array_engine_dynamics_with_vjp(adjoint, rng):
    dyn = linear_dynamics(4)
    y0, t, theta = rng.normal(size=(3, 4)), np.linspace(0, 1, 4), 0.7
    w = rng.normal(size=(4, 3, 4))
    _, pullback = so.solve_vjp(dyn, y0, t, params=theta, adjoint=adjoint, **TIGHT)
    g = pullback(w)

    def loss(y0_, t_, th_):
        return np.sum(w * so.solve(dyn, y0_, t_, params=th_, **TIGHT).y)

    np.testing.assert_allclose(g.y0, central_differences(lambda v: loss(v, t, theta), y0),
                               atol=1e-7)
    dth = (loss(y0, t, theta + 1e-6) - loss(y0, t, theta - 1e-6)) / 2e-6
    assert g.params == pytest.approx(dth, abs=1e-6)
    np.testing.assert_allclose(g.t, central_differences(lambda v: loss(y0, v, theta), t),
                               atol=1e-6)


@pytest.mark.parametrize("adjoint", ["backsolve", "checkpoint"])
def test_array_backward_pass_carries_its_step_across_saved_times(adjoint, rng):
    """40 saved times: each backward segment starts with the step the previous one ended on
    (a fresh start guessed it anew, 800 and 1080 evaluations), and stays exact."""
    dyn = linear_dynamics(4)
    A = np.random.default_rng(0).normal(size=(4, 4)) / 2 - np.eye(4)   # as linear_dynamics
    y0, t, theta = rng.normal(size=(3, 4)), np.linspace(0, 2, 41), 0.7
    w = rng.normal(size=(41, 3, 4))
    _, pullback = so.solve_vjp(dyn, y0, t, params=theta, adjoint=adjoint, rtol=1e-8,
                               atol=1e-10)
    g = pullback(w)
    exact = sum(w[i] @ expm(theta * A * ti) for i, ti in enumerate(t))
    np.testing.assert_allclose(g.y0, exact, rtol=1e-6, atol=1e-8)
    assert g.stats.nfev[0] <= 700


@pytest.mark.parametrize("adjoint", ["backsolve", "checkpoint"])
def test_array_backward_pass_starts_from_the_forward_step(adjoint, rng, monkeypatch):
    """The first backward step is the one the forward controller proposed at the end (the
    adjoint has the same Jacobian), not a fresh guess: fewer evaluations, same gradient."""
    from symode.gradients import augmented, pullback as pullback_module

    dyn = linear_dynamics(4)
    A = np.random.default_rng(0).normal(size=(4, 4)) / 2 - np.eye(4)   # as linear_dynamics
    y0, t, theta = rng.normal(size=(3, 4)), np.array([0.0, 3.0]), 0.7
    w = rng.normal(size=(2, 3, 4))
    exact = w[0] + w[1] @ expm(theta * A * 3.0)
    proposed, firsts = [], []
    fresh = [False]                     # True: what a fresh guess for the first segment costs
    run, integrate = pullback_module.run, augmented.integrate_arrays

    def spy_run(*args, **kwargs):
        out = run(*args, **kwargs)
        proposed.append(out[2])
        return out

    def spy_integrate(*args, h_first=None, **kwargs):
        if fresh[0] and not firsts:
            h_first = None
        firsts.append(h_first)
        return integrate(*args, h_first=h_first, **kwargs)

    monkeypatch.setattr(pullback_module, "run", spy_run)
    monkeypatch.setattr(augmented, "integrate_arrays", spy_integrate)
    counts = {}
    for carried in (True, False):
        proposed.clear(), firsts.clear()
        fresh[0] = not carried
        _, pb = so.solve_vjp(dyn, y0, t, params=theta, adjoint=adjoint, rtol=1e-8,
                             atol=1e-10)
        g = pb(w)
        np.testing.assert_allclose(g.y0, exact, rtol=1e-6, atol=1e-8)
        counts[carried] = g.stats.nfev[0]
        if carried:
            assert proposed[0] > 0 and firsts[0] == proposed[0]
    assert counts[True] < counts[False], counts


def _peak_bytes(adjoint, n_steps, dyn, y0, t, w):
    tracemalloc.start()
    _, pullback = so.solve_vjp(dyn, y0, t, params=1.0, adjoint=adjoint, method="rk4",
                               n_steps=n_steps)
    pullback(w)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_backsolve_memory_flat_while_discrete_grows(rng):
    dyn = linear_dynamics(64)
    y0 = rng.normal(size=(500, 64))                  # 256 kB a state
    t = np.array([0.0, 1.0])
    w = rng.normal(size=(2, 500, 64))
    back = [_peak_bytes("backsolve", n, dyn, y0, t, w) for n in (20, 200)]
    disc = [_peak_bytes("discrete", n, dyn, y0, t, w) for n in (20, 200)]
    assert back[1] < 1.5 * back[0], back
    assert disc[1] - disc[0] > 150 * y0.nbytes, disc   # one state per extra step, at least


def test_missing_vjp_is_a_clear_error():
    with pytest.raises(so.MissingVJPError, match="vjp"):
        so.solve_vjp(lambda t, z, p: -z, np.ones((2, 1)), [0.0, 1.0])


def test_cotangent_of_wrong_shape(forced_case):
    ode, y0, t, p, w, _ = forced_case
    _, pullback = so.solve_vjp(ode, y0, t, params=p)
    with pytest.raises(so.ShapeError, match="dL_dy must have the shape"):
        pullback(w[:, :2])


def test_unknown_adjoint():
    with pytest.raises(so.SymodeError, match="backsolve"):
        so.solve_vjp(forced_system(), np.zeros((1, 2)), [0.0, 1.0], params=[1, 1, 1],
                     adjoint="magic")
