"""Gradients of solves: the backsolve, checkpointed and discrete adjoints."""

from .pullback import ADJOINTS, Gradients, solve_vjp

__all__ = ["solve_vjp", "Gradients", "ADJOINTS"]
