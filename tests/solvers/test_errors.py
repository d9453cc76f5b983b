"""Every way a solve can fail says what, where and what to try."""

import numpy as np
import pytest
import sympy as sp

import symode as so

import problems


@pytest.fixture(scope="module")
def lorenz():
    return problems.lorenz(batch=2)


def test_y0_of_wrong_width(lorenz):
    with pytest.raises(so.ShapeError, match=r"y0 must have shape \(batch, 3\)"):
        so.solve(lorenz.ode, np.zeros((2, 4)), lorenz.t, params=lorenz.params)


def test_non_finite_y0_names_the_trajectory(lorenz):
    y0 = lorenz.y0.copy()
    y0[1, 2] = np.nan
    with pytest.raises(so.NonFiniteError, match="trajectory 1"):
        so.solve(lorenz.ode, y0, lorenz.t, params=lorenz.params)


def test_missing_params_names_them(lorenz):
    with pytest.raises(so.ShapeError, match="sigma, rho, beta"):
        so.solve(lorenz.ode, lorenz.y0, lorenz.t)


def test_params_of_wrong_shape(lorenz):
    with pytest.raises(so.ShapeError, match=r"params must have shape \(3,\)"):
        so.solve(lorenz.ode, lorenz.y0, lorenz.t, params=[1.0, 2.0])


@pytest.mark.parametrize("t, match", [
    ([0.0, 1.0, 0.5], "not strictly monotonic"),
    ([0.0, np.nan], "NaN or inf"),
    (np.zeros((3, 4)), r"t must have shape"),
    ([], "empty"),
])
def test_bad_time_grids(lorenz, t, match):
    with pytest.raises((so.TimeGridError, so.ShapeError), match=match):
        so.solve(lorenz.ode, lorenz.y0, t, params=lorenz.params)


def test_max_steps_names_trajectory_and_time():
    x, k = sp.symbols("x k")
    ode = so.ODE([x], [-k * x], params=[k])
    params = np.array([[1.0], [1.0], [1.0], [1.0], [1.0], [4000.0]])  # trajectory 5 is stiff
    with pytest.raises(so.MaxStepsError, match=r"trajectory 5 stopped at t=.* of \[0, 10\]"):
        so.solve(ode, np.ones((6, 1)), [0.0, 10.0], params=params, max_steps=500)


def test_blow_up_is_reported_with_time_and_trajectory():
    x = sp.Symbol("x")
    ode = so.ODE([x], [x**2])                      # x = 1/(1 - t) blows up at t = 1
    with pytest.raises((so.StepSizeUnderflowError, so.NonFiniteError),
                       match=r"trajectory 1: .*t=(0\.99|1\b)"):
        so.solve(ode, np.array([[0.1], [1.0]]), [0.0, 2.0], max_steps=100_000)


def test_fixed_step_non_finite_state():
    x = sp.Symbol("x")
    ode = so.ODE([x], [x**2])
    with pytest.raises(so.NonFiniteError, match="trajectory 0"):
        so.solve(ode, [1.0], [0.0, 10.0], method="euler", step_size=0.5)


def test_nan_from_the_right_hand_side():
    x = sp.Symbol("x")
    ode = so.ODE([x], [sp.sqrt(x)])               # sqrt of a negative state is NaN
    with pytest.raises(so.NonFiniteError, match="trajectory 0"):
        so.solve(ode, [-1.0], [0.0, 1.0])


def test_fixed_step_method_needs_a_step(lorenz):
    with pytest.raises(so.SymodeError, match="give exactly one of step_size or n_steps"):
        so.solve(lorenz.ode, lorenz.y0, lorenz.t, params=lorenz.params, method="rk4")


def test_adaptive_method_rejects_step_size(lorenz):
    with pytest.raises(so.SymodeError, match="chooses its own steps"):
        so.solve(lorenz.ode, lorenz.y0, lorenz.t, params=lorenz.params, step_size=0.1)


def test_unknown_method(lorenz):
    with pytest.raises(so.SymodeError, match="dopri5"):
        so.solve(lorenz.ode, lorenz.y0, lorenz.t, params=lorenz.params, method="rk45x")


def test_kernel_engine_needs_a_symbolic_system():
    with pytest.raises(so.SymodeError, match="needs a symbolic"):
        so.solve(lambda t, z, p: -z, np.ones((2, 1)), [0.0, 1.0], engine="kernel")


def test_array_engine_needs_one_start_time():
    p = problems.decay(batch=2)
    with pytest.raises(so.TimeGridError, match="one initial time"):
        so.solve(p.ode, p.y0, [[0.0, 1.0], [0.5, 1.0]], params=p.params, engine="array")


def test_bad_tolerances(lorenz):
    with pytest.raises(so.SymodeError, match="rtol"):
        so.solve(lorenz.ode, lorenz.y0, lorenz.t, params=lorenz.params, rtol=-1.0)
    with pytest.raises(so.ShapeError, match="atol"):
        so.solve(lorenz.ode, lorenz.y0, lorenz.t, params=lorenz.params, atol=[1e-8, 1e-8])


def test_unprintable_function_is_named():
    x = sp.Symbol("x")
    ode = so.ODE([x], [sp.besselj(0, x)])
    with pytest.raises(so.UnsupportedFunctionError, match=r"besselj\(0, x\) in rhs"):
        so.solve(ode, [1.0], [0.0, 1.0])
