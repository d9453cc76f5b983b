"""The one exception family of symode.

Every error says what went wrong, where (time, trajectory, expression) and what to try.
"""

__all__ = [
    "SymodeError",
    "ExpressionError",
    "UnknownSymbolError",
    "ParseError",
    "ShapeError",
    "TimeGridError",
    "NonFiniteError",
    "StepSizeUnderflowError",
    "MaxStepsError",
    "UnsupportedFunctionError",
    "MissingVJPError",
    "CudaUnavailableError",
]


class SymodeError(Exception):
    """Base class of every error symode raises on purpose."""


class ExpressionError(SymodeError, ValueError):
    """A sympy expression or system of expressions is malformed (wrong length, not scalar...)."""


class UnknownSymbolError(ExpressionError):
    """An expression uses a symbol that is neither a state, a parameter nor the time symbol."""


class ParseError(ExpressionError):
    """A user string could not be turned into a sympy expression safely."""


class ShapeError(SymodeError, ValueError):
    """An array argument has the wrong shape or dtype."""


class TimeGridError(SymodeError, ValueError):
    """Requested times are not finite, not monotonic, or do not fit the engine."""


class NonFiniteError(SymodeError, FloatingPointError):
    """An input or a state of the solve is NaN or infinite."""


class StepSizeUnderflowError(SymodeError, RuntimeError):
    """The adaptive step size fell below what floating point can resolve."""


class MaxStepsError(SymodeError, RuntimeError):
    """A trajectory needed more than ``max_steps`` steps."""


class UnsupportedFunctionError(SymodeError, NotImplementedError):
    """A code printer met a function it cannot translate."""


class MissingVJPError(SymodeError, TypeError):
    """A gradient was asked of dynamics that provide no vector-Jacobian product."""


class CudaUnavailableError(SymodeError, RuntimeError):
    """``device="cuda"`` was asked for on a machine without a usable GPU or without cupy."""
