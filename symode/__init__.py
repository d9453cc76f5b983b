"""symode: symbolic-plus-numeric neural and classical ODEs.

Declare dynamics as sympy expressions; symode derives Jacobians, vector-Jacobian products and
the adjoint system symbolically, generates and compiles batched integrators with numba, and
solves large ensembles fast.

>>> import sympy as sp, symode as so
>>> x, k = sp.symbols("x k")
>>> decay = so.ODE(states=[x], rhs=[-k * x], params=[k])
>>> sol = so.solve(decay, [1.0], [0.0, 1.0], params=[2.0])      # doctest: +SKIP
"""

__version__ = "0.1.0"

from . import errors, viz  # viz imports matplotlib only when it draws
from .dynamics import Dynamics, FunctionDynamics, SymbolicDynamics
from .errors import (CudaUnavailableError, ExpressionError, MaxStepsError, MissingVJPError,
                     NonFiniteError, ParseError, ShapeError, StepSizeUnderflowError, SymodeError,
                     TimeGridError, UnknownSymbolError, UnsupportedFunctionError)
from .estimation import FitResult, fit_parameters
from .gradients import Gradients, solve_vjp
from .solvers.controllers import PIController
from .solvers.solution import Solution, Stats
from .solvers.solve import solve, source
from .solvers.tableaus import METHODS, ButcherTableau
from .symbolic import ODE, AdjointSystem

__all__ = [
    "ODE", "AdjointSystem", "solve", "solve_vjp", "Gradients", "fit_parameters", "FitResult",
    "source", "Solution", "Stats",
    "METHODS", "ButcherTableau",
    "PIController", "Dynamics", "SymbolicDynamics", "FunctionDynamics", "errors",
    "SymodeError", "ExpressionError", "UnknownSymbolError", "ParseError", "ShapeError",
    "TimeGridError", "NonFiniteError", "StepSizeUnderflowError", "MaxStepsError",
    "UnsupportedFunctionError", "MissingVJPError", "CudaUnavailableError", "viz", "nn", "models",
    "data", "__version__",
]

_SUBPACKAGES = ("nn", "models", "data")


def __getattr__(name):
    """``so.nn``, ``so.models`` and ``so.data``, imported on first use."""
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'symode' has no attribute {name!r}")
