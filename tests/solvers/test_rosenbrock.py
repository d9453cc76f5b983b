"""Stiff systems: the Rosenbrock methods rodas4 and rodas5p with derived Jacobians, against
exact solutions, scipy's Radau at tight tolerance, and convergence orders."""

import numpy as np
import pytest
import sympy as sp
from scipy.integrate import solve_ivp
from scipy.linalg import expm

import symode as so
from symode.errors import MaxStepsError, NonFiniteError, StepSizeUnderflowError, SymodeError
from symode.solvers.rosenbrock_tableaus import ROSENBROCK_METHODS

from problems import robertson_ode as robertson

STIFF = list(ROSENBROCK_METHODS)


# -- the tableaus, independently of the generated code ------------------------------------------
def _f(t, y):
    return np.array([-y[0] + y[1] ** 2 + np.sin(t), -2 * y[1] + y[0] * y[1] + np.cos(3 * t)])


def _jac(t, y):
    return np.array([[-1.0, 2 * y[1]], [y[1], -2.0 + y[0]]])


def _ft(t, y):
    return np.array([np.cos(t), -3 * np.sin(3 * t)])


def _one_step(tab, t, y, h):
    """One step of the transformed Rosenbrock form with dense numpy linear algebra."""
    s = tab.stages
    U = np.zeros((s, len(y)))
    W = np.eye(len(y)) / (h * tab.gamma) - _jac(t, y)
    for i in range(s):
        if i == 0 or tab.new_f[i]:
            F = _f(t + tab.alpha[i] * h, y + sum(tab.a[i][j] * U[j] for j in range(i)))
        rhs = F + sum(tab.c[i][j] / h * U[j] for j in range(i)) + tab.gammas[i] * h * _ft(t, y)
        U[i] = np.linalg.solve(W, rhs)
    return y + np.dot(tab.m, U), np.dot(tab.e, U)


@pytest.mark.parametrize("name", STIFF)
def test_tableau_orders(name):
    """Local error O(h^(order+1)), error estimate O(h^(error_order+1)) on a nonlinear,
    non-autonomous system (so the ∂f/∂t weights are checked too)."""
    tab = ROSENBROCK_METHODS[name]
    y0, t0 = np.array([0.5, 0.3]), 0.2
    hs = 0.05 / 2.0 ** np.arange(4)
    errs, ests = [], []
    for h in hs:
        ref = solve_ivp(_f, (t0, t0 + h), y0, method="DOP853", rtol=1e-13, atol=1e-15).y[:, -1]
        y1, est = _one_step(tab, t0, y0, h)
        errs.append(np.linalg.norm(y1 - ref))
        ests.append(np.linalg.norm(est))
    slope_err = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    slope_est = np.polyfit(np.log(hs), np.log(ests), 1)[0]
    assert abs(slope_err - (tab.order + 1)) < 0.35, slope_err
    assert abs(slope_est - (tab.error_order + 1)) < 0.35, slope_est


# -- the generated LU, independently of the integrator -------------------------------------------
def _lu_functions(plan):
    """lu_factor, lu_solve, lu_solve_t and form_w generated for ``plan``, compiled."""
    import math

    import numba

    from symode.solvers.lu_plan import lu_source

    scope = {"JIT": numba.njit, "math": math, "np": np}
    exec(lu_source(plan), scope)
    return scope


@pytest.mark.parametrize("D, kl, ku", [(7, 6, 6), (9, 2, 1), (9, 0, 3), (8, 1, 0), (1, 0, 0)])
@pytest.mark.parametrize("shuffled", [False, True])
def test_banded_lu_solves_match_numpy(D, kl, ku, shuffled):
    """lu_factor / lu_solve / lu_solve_t of the generated step code, on matrices with kl
    subdiagonals and ku superdiagonals whose small diagonal forces row exchanges; shuffled:
    the states are declared out of order and the LU takes them in band order ORD."""
    from symode.solvers.lu_plan import LUPlan

    rng = np.random.default_rng(D + 10 * kl + 100 * ku)
    order = rng.permutation(D) if shuffled else np.arange(D)
    scope = _lu_functions(LUPlan(tuple(order.tolist()), kl, ku))
    back = np.argsort(order)
    for _ in range(5):
        band = rng.normal(size=(D, D)) * np.tri(D, D, ku) * np.tri(D, D, kl).T
        if kl:
            band[np.diag_indices(D)] *= 1e-3            # pivots elsewhere in the column
        else:
            band[np.diag_indices(D)] += 3.0             # triangular: no exchange possible
        W = band[np.ix_(back, back)]                    # W[ORD[i], ORD[j]] = band[i, j]
        x = rng.normal(size=(1, D))
        LU, piv = band.copy(), np.zeros(D, dtype=np.int64)
        assert scope["lu_factor"](LU, piv)
        z, zt = x.copy(), x[0].copy()
        scope["lu_solve"](LU, piv, z, 0)
        scope["lu_solve_t"](LU, piv, zt)
        np.testing.assert_allclose(z[0], np.linalg.solve(W, x[0]), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(zt, np.linalg.solve(W.T, x[0]), rtol=1e-9, atol=1e-9)


def _random_pattern(D, density, rng):
    mask = rng.random((D, D)) < density
    mask[0, :] = mask[:, 0] = True                      # a hub coupled to every state
    np.fill_diagonal(mask, False)
    return [(int(r), int(c)) for r, c in zip(*np.nonzero(mask))]


@pytest.mark.parametrize("D, density", [(12, 0.1), (15, 0.25), (6, 1.0), (20, 0.05)])
def test_sparse_lu_solves_match_numpy(D, density):
    """form_w, lu_factor, lu_solve and lu_solve_t of the sparse plan against numpy, with every
    entry of the work matrix outside the filled pattern set to NaN: the generated loops must
    never read them."""
    from symode.solvers.lu_plan import sparse_plan

    rng = np.random.default_rng(D)
    nonzero = _random_pattern(D, density, rng)
    plan = sparse_plan(D, nonzero)
    assert sorted(plan.order) == list(range(D))
    scope = _lu_functions(plan)
    for inv in (1e3, 30.0, 3.0):
        J = np.zeros((D, D))
        for r, c in nonzero:
            J[r, c] = rng.normal()
        J[np.diag_indices(D)] = -rng.uniform(0.0, 2.0, D)
        W = np.full((D, D), np.nan)
        scope["form_w"](J, inv, W)
        assert scope["lu_factor"](W, np.zeros(D, dtype=np.int64))
        x = rng.normal(size=(2, D))
        z, zt = x.copy(), x[1].copy()
        scope["lu_solve"](W, None, z, 1)
        scope["lu_solve_t"](W, None, zt)
        A = inv * np.eye(D) - J
        np.testing.assert_allclose(z[1], np.linalg.solve(A, x[1]), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(zt, np.linalg.solve(A.T, x[1]), rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(z[0], x[0])       # other rows untouched


def test_sparse_lu_zero_pivot_is_reported():
    """A pivot that vanishes (W singular for this step size) makes lu_factor return False, so
    the step is retried smaller."""
    from symode.solvers.lu_plan import sparse_plan

    scope = _lu_functions(sparse_plan(2, [(0, 1), (1, 0)], order=[0, 1]))
    W = np.full((2, 2), np.nan)
    scope["form_w"](np.array([[1.0, 0.0], [0.0, -1.0]]), 1.0, W)     # W[0, 0] = 1 - 1 = 0
    assert not scope["lu_factor"](W, np.zeros(2, dtype=np.int64))


def test_plans_by_structure():
    """A hub coupled to every state (an arrow pattern, band D - 1) gets the sparse LU, the hub
    among the last two eliminated and no fill-in; a tridiagonal chain keeps the band; on a
    random sparse pattern the sparse LU costs less than the band."""
    from symode.solvers.lu_plan import band_plan, lu_plan, sparse_plan

    D = 10
    z = sp.symbols(f"z0:{D}")
    arrow = so.SymbolicDynamics(so.ODE(list(z), [-z[0] * sum(z)] + [z[0] - z[i]
                                                                    for i in range(1, D)]))
    plan = lu_plan(arrow)
    assert plan.sparse and plan.order.index(0) >= D - 2      # the hub among the last
    assert sum(map(len, plan.lower)) + sum(map(len, plan.upper)) == 2 * (D - 1)
    chain = so.SymbolicDynamics(so.ODE(list(z), [z[max(i - 1, 0)] - 3 * z[i] + z[min(i + 1, D - 1)]
                                                 for i in range(D)]))
    plan = lu_plan(chain)
    assert not plan.sparse and (plan.kl, plan.ku) == (1, 1)
    nonzero = _random_pattern(30, 0.08, np.random.default_rng(3))
    assert sparse_plan(30, nonzero).cost() < band_plan(30, nonzero).cost()


# -- problems -------------------------------------------------------------------------------
def _robertson_rhs(t, y, k1, k2, k3):
    return [-k1 * y[0] + k3 * y[1] * y[2], k1 * y[0] - k2 * y[1] ** 2 - k3 * y[1] * y[2],
            k2 * y[1] ** 2]


@pytest.mark.parametrize("name", STIFF)
def test_robertson_matches_radau(name):
    """The classic stiff chemistry problem over 11 decades of time, against Radau at 1e-12."""
    t = np.concatenate([[0.0], np.logspace(-5, 5, 11)])
    p = np.array([[0.04, 3e7, 1e4], [0.08, 3e7, 1e4]])
    rtol, atol = 1e-7, 1e-12
    sol = so.solve(robertson(), np.tile([1.0, 0.0, 0.0], (2, 1)), t, params=p, method=name,
                   rtol=rtol, atol=atol)
    for b in range(2):
        ref = solve_ivp(_robertson_rhs, (0, t[-1]), [1.0, 0, 0], method="Radau", t_eval=t,
                        rtol=1e-12, atol=1e-18, args=tuple(p[b])).y.T
        np.testing.assert_allclose(sol.y[:, b], ref, rtol=200 * rtol, atol=100 * atol)
    np.testing.assert_allclose(sol.y.sum(axis=2), 1.0, rtol=1e-12)   # mass is conserved


@pytest.mark.parametrize("name", STIFF)
def test_linear_stiff_system_exact(name):
    """dz/dt = A z with eigenvalues -1 and -1e4, per-trajectory time grids: the exact
    expm(A t) z0."""
    z1, z2 = sp.symbols("z1 z2")
    A = np.array([[-1.0, 1.0], [0.0, -1e4]])
    ode = so.ODE([z1, z2], [A[0, 0] * z1 + A[0, 1] * z2, A[1, 1] * z2])
    grids = np.array([[0.0, 0.01, 0.1, 1.0], [0.0, 0.5, 1.0, 2.0], [1.0, 1.1, 1.5, 3.0]])
    y0 = np.array([[1.0, 1.0], [2.0, -1.0], [0.5, 0.0]])
    sol = so.solve(ode, y0, grids, method=name, rtol=1e-8, atol=1e-10)
    for b in range(3):
        exact = [expm(A * (tt - grids[b, 0])) @ y0[b] for tt in grids[b]]
        np.testing.assert_allclose(sol.y[:, b], exact, rtol=1e-5, atol=1e-8)


def test_sparse_chain_stores_only_its_nonzeros():
    """A stiff tridiagonal chain of 12 states (diffusion plus fast decay): the generated
    Jacobian stores its 34 nonzeros, not 144 entries, and the solve is the exact
    expm(A t) z0."""
    D = 12
    z = sp.symbols(f"z0:{D}")
    A = (np.diag(np.full(D, -2.0)) + np.diag(np.ones(D - 1), 1) + np.diag(np.ones(D - 1), -1))
    A = 50.0 * A - np.diag(np.logspace(0, 4, D))
    ode = so.ODE(list(z), [sum(float(A[r, c]) * z[c] for c in range(D) if A[r, c] != 0.0)
                           for r in range(D)])
    text = so.source(ode, "kernel", method="rodas5p")
    jac = text[text.index("def jac_into"):text.index("def rhs_into")]
    assert jac.count("Jf[") == 3 * D - 2
    y0 = np.linspace(1.0, 2.0, D)
    t = np.array([0.0, 0.01, 0.1, 1.0])
    sol = so.solve(ode, y0, t, method="rodas5p", rtol=1e-9, atol=1e-12)
    exact = np.array([expm(A * tt) @ y0 for tt in t])
    np.testing.assert_allclose(sol.y, exact, rtol=1e-6, atol=1e-10)


def test_species_by_species_declaration_is_reordered_into_a_band():
    """Two species on 6 grid points, declared u0..u5 then v0..v5 (u_i couples to v_i six places
    away): the LU takes the states in a reverse Cuthill-McKee order whose band is narrow, and
    the solve is still the exact expm(A t) z0."""
    from symode.solvers.lu_plan import band_plan, jacobian_band, jacobian_pattern, lu_plan

    n = 6
    u, v = sp.symbols(f"u0:{n}"), sp.symbols(f"v0:{n}")
    lap = 200.0 * (np.diag(np.full(n, -2.0)) + np.diag(np.ones(n - 1), 1)
                   + np.diag(np.ones(n - 1), -1))
    A = np.block([[lap - 5.0 * np.eye(n), 2.0 * np.eye(n)],
                  [3.0 * np.eye(n), lap - 1e3 * np.eye(n)]])
    z = [*u, *v]
    ode = so.ODE(z, [sum(float(A[r, c]) * z[c] for c in range(2 * n) if A[r, c])
                     for r in range(2 * n)])
    dyn = so.SymbolicDynamics(ode)
    plan = band_plan(dyn.dim, jacobian_pattern(dyn))
    assert jacobian_band(dyn) == (n, n) and plan.kl + plan.ku <= 4
    assert sorted(plan.order) == list(range(2 * n)) and not lu_plan(dyn).sparse
    y0 = np.linspace(-1.0, 1.0, 2 * n)
    t = np.array([0.0, 0.01, 0.2])
    sol = so.solve(ode, y0, t, method="rodas5p", rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sol.y, [expm(A * tt) @ y0 for tt in t], rtol=1e-6, atol=1e-10)


# POLLU at t = 60 min from the IVP test set (Mazzia & Iavernaro), computed by RADAU5 in
# extended precision.
POLLU_REFERENCE = [
    5.646255480022769e-02, 1.342484130422339e-01, 4.139734331099427e-09, 5.523140207484359e-03,
    2.018977262302196e-07, 1.464541863493966e-07, 7.784249118997964e-02, 3.245075353396018e-01,
    7.494013383880406e-03, 1.622293157301561e-08, 1.135863833257075e-08, 2.230505975721359e-03,
    2.087162882798630e-04, 1.396921016840158e-05, 8.964884856898295e-03, 4.352846369330103e-18,
    6.899219696263405e-03, 1.007803037365946e-04, 1.772146513969984e-06, 5.682943292316392e-05]


def test_pollu_matches_the_published_reference():
    """Verwer's 20-species air chemistry mechanism, declared as reactions: the LU is the sparse
    one, and every species at t = 60 agrees with the test set's reference to 1e-8 relative
    (they span 16 decades)."""
    from symode.solvers.lu_plan import lu_plan
    from symode.symbolic.kinetics import pollu

    ode, y0, k = pollu()
    assert lu_plan(so.SymbolicDynamics(ode)).sparse
    sol = so.solve(ode, y0, [0.0, 60.0], params=k, method="rodas5p", rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(sol.y[-1], POLLU_REFERENCE, rtol=1e-8, atol=0.0)


def test_sparse_form_with_diagonal_pivots_on_an_unstable_diagonal(monkeypatch):
    """Diagonal pivots where J's diagonal is positive (three coupled stiff Van der Pol
    oscillators, μ = 1000, where W's diagonal 1/(hγ) - μ(1 - x²) passes near zero): the sparse
    form, forced here, takes the same steps as the banded LU with partial pivoting and agrees
    with Radau at tight tolerance."""
    import symode.solvers.rosenbrock as rosenbrock
    from symode.solvers.lu_plan import jacobian_pattern, sparse_plan

    n = 3
    x, v, mu = sp.symbols(f"x0:{n}"), sp.symbols(f"v0:{n}"), sp.Symbol("mu")
    rhs = [e for i in range(n) for e in
           (v[i], mu * (1 - x[i] ** 2) * v[i] - x[i] + 0.5 * (x[(i + 1) % n] - x[i]))]
    states = [s for pair in zip(x, v) for s in pair]
    ode = so.ODE(states, rhs, params=[mu])
    y0 = np.array([2.0, 0.0, -1.0, 0.5, 0.5, -1.0])
    t = np.array([0.0, 500.0, 1000.0])
    banded = so.solve(ode, y0, t, params=[1000.0], method="rodas5p", rtol=1e-6, atol=1e-8)
    monkeypatch.setattr(rosenbrock, "lu_plan", lambda dyn, solves=6: sparse_plan(
        dyn.dim, jacobian_pattern(dyn)))
    again = so.ODE(states, rhs, params=[mu])        # a new object: compiled anew
    sparse = so.solve(again, y0, t, params=[1000.0], method="rodas5p", rtol=1e-6, atol=1e-8)
    modules = again.__dict__["_symode_dynamics"].kernels.values()
    assert [hasattr(m, "LP") for m in modules] == [True]       # the sparse form ran
    f = sp.lambdify([states], [e.subs(mu, 1000) for e in rhs])
    jac = sp.lambdify([states], sp.Matrix(rhs).subs(mu, 1000).jacobian(states))
    ref = solve_ivp(lambda tt, y: f(y), (0.0, t[-1]), y0, method="Radau", t_eval=t, rtol=1e-11,
                    atol=1e-12, jac=lambda tt, y: jac(y)).y.T
    np.testing.assert_array_equal(sparse.stats.naccept, banded.stats.naccept)
    np.testing.assert_allclose(sparse.y, banded.y, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(sparse.y, ref, atol=1e-5)


@pytest.mark.parametrize("name", STIFF)
def test_prothero_robinson_uses_the_time_derivative(name):
    """y' = λ(y - sin(ωt)) + ω cos(ωt), λ = -1e5: exact y = sin(ωt). The forcing depends on t,
    so the stages need ∂f/∂t; per-trajectory ω exercises parameters."""
    y, t, w = sp.symbols("y t w")
    lam = -1e5
    ode = so.ODE([y], [lam * (y - sp.sin(w * t)) + w * sp.cos(w * t)], params=[w], t=t)
    times = np.linspace(0.0, 3.0, 13)
    ws = np.array([[1.0], [2.5]])
    sol = so.solve(ode, np.zeros((2, 1)), times, params=ws, method=name, rtol=1e-7,
                   atol=1e-9)
    exact = np.sin(ws[:, 0][None, :] * times[:, None])
    np.testing.assert_allclose(sol.y[..., 0], exact, atol=1e-7)


def test_rodas5p_keeps_its_order_in_the_stiff_limit():
    """Prothero-Robinson with λ = -1e6 and fixed steps against the exact sin t: rodas4's global
    error falls only like h (order reduction), rodas5p's like h³, as it was built to."""
    y, t = sp.symbols("y t")
    ode = so.ODE([y], [-1e6 * (y - sp.sin(t)) + sp.cos(t)], t=t)
    n = np.array([16, 32, 64, 128])
    for name, order in [("rodas4", 1.0), ("rodas5p", 3.0)]:
        err = [abs(so.solve(ode, [0.0], [0.0, 2.0], method=name, n_steps=k).y[-1, 0]
                   - np.sin(2.0)) for k in n]
        slope = np.polyfit(np.log(n), -np.log(err), 1)[0]
        assert abs(slope - order) < 0.25, (name, slope)


@pytest.mark.parametrize("name", STIFF)
def test_stiff_van_der_pol_far_fewer_steps_than_dopri5(name):
    mu_, x, v = sp.symbols("mu x v")
    ode = so.ODE([x, v], [v, mu_ * (1 - x ** 2) * v - x], params=[mu_])
    mu = 1000.0
    t = np.linspace(0.0, 1000.0, 5)
    rodas = so.solve(ode, [2.0, 0.0], t, params=[mu], method=name, rtol=1e-7, atol=1e-9)
    dopri = so.solve(ode, [2.0, 0.0], t, params=[mu], method="dopri5", rtol=1e-7, atol=1e-9,
                     max_steps=1_000_000)
    ref = solve_ivp(lambda tt, z: [z[1], mu * (1 - z[0] ** 2) * z[1] - z[0]], (0, t[-1]),
                    [2.0, 0.0], method="Radau", t_eval=t, rtol=1e-12, atol=1e-12).y.T
    np.testing.assert_allclose(rodas.y[:, 0], ref[:, 0], atol=1e-4)
    assert rodas.stats.naccept[0] * 20 < dopri.stats.naccept[0]


@pytest.mark.parametrize("name", STIFF)
def test_backwards_in_time(name):
    """A trajectory may run backwards (here the non-stiff direction of a decay), beside one
    running forwards: y(t) = y(t0) exp(-k (t - t0))."""
    y, k = sp.symbols("y k")
    ode = so.ODE([y], [-k * y], params=[k])
    grids = np.array([[2.0, 1.5, 1.0, 0.0], [0.0, 0.5, 1.0, 2.0]])
    sol = so.solve(ode, [[1.0], [1.0]], grids, params=[[3.0], [3.0]], method=name,
                   rtol=1e-9, atol=1e-12)
    exact = np.exp(-3.0 * (grids - grids[:, :1])).T
    np.testing.assert_allclose(sol.y[..., 0], exact, rtol=1e-7)


def test_batch_equals_single_solves():
    ode = robertson()
    t = np.array([[0.0, 1.0, 10.0, 40.0], [0.0, 0.5, 5.0, 100.0]])
    p = np.array([[0.04, 3e7, 1e4], [0.02, 1e7, 3e3]])
    y0 = np.array([[1.0, 0.0, 0.0], [0.9, 1e-5, 0.1]])
    both = so.solve(ode, y0, t, params=p, method="rodas4")
    for b in range(2):
        one = so.solve(ode, y0[b], t[b], params=p[b], method="rodas4")
        np.testing.assert_array_equal(both.y[:, b], one.y)
        assert both.stats.naccept[b] == one.stats.naccept[0]


def test_generated_source_shows_the_jacobian():
    text = so.source(robertson(), "kernel", method="rodas4")
    assert "def jac_into(t, y, p, J, ft):" in text and "def lu_factor(" in text
    assert "Jf[7] = " in text and "# J[2, 1]" in text          # the flat view, labelled
    assert "Jf[6]" not in text and "J[2, 0]" not in text        # only the nonzero entries


def test_clear_errors():
    ode = robertson()
    p = [0.04, 3e7, 1e4]
    with pytest.raises(SymodeError, match="exact Jacobian"):
        so.solve(lambda t, y, prm: -y, [1.0], [0.0, 1.0], method="rodas4")
    with pytest.raises(SymodeError, match="kernel engine"):
        so.solve(ode, [1.0, 0, 0], [0.0, 1.0], params=p, method="rodas4", engine="array")
    with pytest.raises(SymodeError, match="step_size must be positive"):
        so.solve(ode, [1.0, 0, 0], [0.0, 1.0], params=p, method="rodas4", step_size=-0.1)
    with pytest.raises(SymodeError, match="rodas4"):
        so.solve(ode, [1.0, 0, 0], [0.0, 1.0], params=p, method="rodas6")
    with pytest.raises(MaxStepsError, match="max_steps=5"):
        so.solve(ode, [1.0, 0, 0], [0.0, 1e5], params=p, method="rodas4", max_steps=5)
    y = sp.Symbol("y")
    with pytest.raises((NonFiniteError, StepSizeUnderflowError), match="t=0.99|t=1"):
        so.solve(so.ODE([y], [y ** 2]), [1.0], [0.0, 2.0], method="rodas4")
