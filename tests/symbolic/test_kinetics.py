"""Mechanisms under mass action: ODE.from_reactions and the POLLU mechanism."""

import numpy as np
import pytest
import sympy as sp

import symode as so
from symode.errors import ExpressionError
from symode.symbolic.kinetics import parse_reaction, pollu


def test_robertson_from_reactions_equals_the_hand_written_system():
    y1, y2, y3, k1, k2, k3 = sp.symbols("y1 y2 y3 k1 k2 k3")
    ode = so.ODE.from_reactions(["y1 -> y2", "2 y2 -> y3 + y2", "y2 + y3 -> y1 + y3"])
    assert ode.states == (y1, y2, y3) and ode.params == (k1, k2, k3)
    expected = [-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2 ** 2 - k3 * y2 * y3, k2 * y2 ** 2]
    assert all(sp.expand(a - b) == 0 for a, b in zip(ode.rhs, expected))


def test_rates_species_order_sources_and_sinks():
    T = sp.Symbol("T")
    ode = so.ODE.from_reactions(["-> A", "A + B -> 2*C", "C -> 0"],
                                rates=[2.5, "k0*exp(-Ea/T)", sp.Symbol("kd")],
                                species=["C", "B", "A"])
    C, B, A, k0, Ea, kd = sp.symbols("C B A k0 Ea kd")
    assert ode.states == (C, B, A)
    assert set(ode.params) == {k0, Ea, T, kd}
    r = k0 * sp.exp(-Ea / T) * A * B
    assert sp.simplify(ode.rhs[0] - (2 * r - kd * C)) == 0
    assert sp.simplify(ode.rhs[1] + r) == 0
    assert sp.simplify(ode.rhs[2] - (2.5 - r)) == 0


def test_parse_reaction():
    assert parse_reaction("2 OH + NO2 -> HNO3") == ({"OH": 2, "NO2": 1}, {"HNO3": 1})
    assert parse_reaction("A + A -> ") == ({"A": 2}, {})


@pytest.mark.parametrize("reactions, kwargs, match", [
    (["A => B"], {}, "one '->'"),
    (["A -> B -> C"], {}, "one '->'"),
    (["A + 1.5 B -> C"], {}, "'1.5 B'"),
    (["A -> B"], {"rates": [1.0, 2.0]}, "2 rates for 1 reactions"),
    (["A -> B"], {"species": ["A"]}, "species B appear"),
    ("A -> B", {}, "single string"),
    (["A -> B"], {"rates": ["k*import(os)"]}, "rates\\[0\\]"),
])
def test_clear_errors(reactions, kwargs, match):
    with pytest.raises(ExpressionError, match=match):
        so.ODE.from_reactions(reactions, **kwargs)


def test_pollu_conserves_nitrogen_and_sulfur():
    """Mass action keeps every element: the nitrogen and sulfur totals of POLLU are constant
    (their linear combinations of the right-hand side vanish identically)."""
    ode, y0, k = pollu()
    names = [s.name for s in ode.states]
    nitrogen = {"NO2": 1, "NO": 1, "PAN": 1, "HNO3": 1, "NO3": 1, "N2O5": 2}
    sulfur = {"SO2": 1, "SO4": 1}
    for atoms in (nitrogen, sulfur):
        total = sum(n * ode.rhs[names.index(s)] for s, n in atoms.items())
        assert sp.expand(total) == 0
    assert ode.dim == 20 and len(ode.params) == 25 and y0.shape == (20,) and k.shape == (25,)
    assert np.isclose(y0.sum(), 0.657)
