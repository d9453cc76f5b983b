"""Generated source: stores into arrays that keep only the nonzero entries."""

import numba
import numpy as np
import sympy as sp

from symode.codegen.source import emit_into, is_zero


def _compile(text, name):
    scope = {"JIT": numba.njit, "math": __import__("math")}
    exec(text, scope)
    return scope[name]


def test_emit_into_stores_only_nonzeros_of_cleared_arrays():
    z0, z1, p0 = sp.symbols("z0 z1 p0")
    exprs = [p0 * z0 ** 2, sp.Integer(0), sp.Float(0.0), sp.sin(z0) * p0, sp.Integer(0)]
    targets = ["J[0, 0]", "J[0, 1]", "J[1, 0]", "J[1, 1]", "v[0]"]
    text = emit_into("fill", ["y", "p", "J", "v"], {"z0": "y[0]", "z1": "y[1]", "p0": "p[0]"},
                     targets, exprs, clear={"J": 2})
    assert "J[0, 1] =" not in text and "J[1, 0] =" not in text     # cleared, not stored
    assert "v[0] = 0.0" in text                                    # not cleared: stored
    assert "z1 = y[1]" not in text                                 # unused, not loaded
    fill = _compile(text, "fill")
    J, v = np.full((2, 2), 7.0), np.full(1, 7.0)
    fill(np.array([0.5, 3.0]), np.array([2.0]), J, v)
    np.testing.assert_allclose(J, [[0.5, 0.0], [0.0, 2.0 * np.sin(0.5)]])
    assert v[0] == 0.0


def test_emit_into_leaves_zeroed_arrays_alone():
    """An array the caller keeps zero: its zero entries are neither cleared nor stored."""
    z0, p0 = sp.symbols("z0 p0")
    text = emit_into("fill", ["y", "p", "J"], {"z0": "y[0]", "p0": "p[0]"},
                     ["J[0, 0]", "J[0, 1]", "J[1, 0]", "J[1, 1]"],
                     [p0 * z0, sp.Integer(0), sp.Integer(0), sp.exp(z0)], zeroed=("J",))
    assert "J[0, 1]" not in text and "J[1, 0]" not in text and "_i0" not in text
    J = np.full((2, 2), 7.0)
    _compile(text, "fill")(np.array([0.5]), np.array([2.0]), J)
    np.testing.assert_allclose(J, [[1.0, 7.0], [7.0, np.exp(0.5)]])


def test_is_zero_is_structural():
    x = sp.Symbol("x")
    assert is_zero(sp.Integer(0)) and is_zero(sp.Float(0.0)) and is_zero(0)
    assert not is_zero(x - x + 1) and not is_zero(sp.sin(x) ** 2 + sp.cos(x) ** 2 - 1)
