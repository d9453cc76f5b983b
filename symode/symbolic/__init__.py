"""Symbolic systems: ``ODE`` checked on construction, derived expressions, the adjoint system.

* :class:`ODE` holds states, right-hand side, parameters and time as sympy objects, and derives
  Jacobians, vector-Jacobian products, ``∂f/∂t``, the divergence and its gradients on demand;
* :class:`AdjointSystem` is the augmented system ``[z, a, a_θ, a_t]`` of the adjoint method;
* :func:`parse_expression` turns user strings into sympy through a whitelist, never ``eval``.
"""

from .adjoint import AdjointSystem
from .derive import (VJP, DivergenceGradients, derive_vjp, divergence, fresh_symbols, gradient,
                     jacobian, time_derivative)
from .ode import ODE
from .parse import parse_expression, parse_system

__all__ = ["ODE", "AdjointSystem", "VJP", "DivergenceGradients", "jacobian", "time_derivative",
           "derive_vjp", "divergence", "gradient", "fresh_symbols", "parse_expression",
           "parse_system"]
