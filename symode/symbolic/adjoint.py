r"""The augmented adjoint system of the Neural ODE paper, in forward-time form.

For ``dz/dt = f(z, θ, t)`` and a loss ``L(z(t_1))``, the adjoint ``a(t) = dL/dz(t)`` and the
accumulated gradients ``a_θ = dL/dθ``, ``a_t = dL/dt`` satisfy (Chen, Rubanova, Bettencourt &
Duvenaud, *Neural Ordinary Differential Equations*, NeurIPS 2018, section 2 and appendix B)

.. math::

    \frac{dz}{dt} = f(z, θ, t), \quad
    \frac{da}{dt} = -a^\top \frac{\partial f}{\partial z}, \quad
    \frac{da_θ}{dt} = -a^\top \frac{\partial f}{\partial θ}, \quad
    \frac{da_t}{dt} = -a^\top \frac{\partial f}{\partial t}.

The backsolve adjoint integrates this system from ``t_1`` back to ``t_0``, starting from
``z(t_1)``, ``a(t_1) = ∂L/∂z(t_1)``, ``a_θ(t_1) = 0`` and ``a_t(t_1) = -dL/dt_1`` where
``dL/dt_1 = a(t_1)·f(z(t_1), θ, t_1)``; it arrives at ``a(t_0) = dL/dz(t_0)``,
``a_θ(t_0) = dL/dθ`` and ``a_t(t_0) = dL/dt_0``.
"""

from __future__ import annotations

from functools import cached_property

from .derive import fresh_symbols
from .ode import ODE, equation_lines, latex_equations, pretty_equations

__all__ = ["AdjointSystem"]


class AdjointSystem:
    """The system ``[z, a, a_θ, a_t]`` of ``2*dim + n_params + 1`` equations for an :class:`ODE`.

    Parameters
    ----------
    ode : ODE

    Attributes
    ----------
    z : tuple of sympy.Symbol, length dim
        The states of ``ode``.
    a : tuple of sympy.Symbol, length dim
        ``a = dL/dz``, named ``a_<state>`` (``ode.adjoint_symbols``).
    a_theta : tuple of sympy.Symbol, length n_params
        ``a_θ = dL/dθ``, named ``a_<parameter>``.
    a_t : sympy.Symbol
        ``a_t = dL/dt``, named ``a_<time symbol>`` (``a_t``).
    states : tuple of sympy.Symbol
        ``z + a + a_theta + (a_t,)``.
    rhs : tuple of sympy.Expr
        ``f``, ``-a·∂f/∂z``, ``-a·∂f/∂θ``, ``-a·∂f/∂t``, in the order of ``states``.
    params : tuple of sympy.Symbol
        The parameters ``θ`` of ``ode``.
    t : sympy.Symbol

    Notes
    -----
    Names that would clash with a symbol already in use get more underscores (``a__x``).
    """

    def __init__(self, ode: ODE):
        if not isinstance(ode, ODE):
            raise TypeError(f"AdjointSystem needs a symode ODE, got {type(ode).__name__}")
        self.ode = ode
        self.z, self.a = ode.states, ode.adjoint_symbols
        self.params, self.t = ode.params, ode.t
        taken = [s.name for s in (*ode.states, *ode.params, ode.t, *self.a)]
        *self.a_theta, self.a_t = fresh_symbols([p.name for p in ode.params] + [ode.t.name], taken)
        self.a_theta = tuple(self.a_theta)
        self.states = (*self.z, *self.a, *self.a_theta, self.a_t)
        vjp = ode.vjp
        self.rhs = (*ode.rhs, *(-e for e in vjp.z), *(-e for e in vjp.theta), -vjp.t)

    @property
    def dim(self) -> int:
        """Number of equations, ``2*dim + n_params + 1``."""
        return len(self.states)

    def as_ode(self) -> ODE:
        """The augmented system as an :class:`ODE` in ``states`` with the original parameters."""
        return self._ode

    @cached_property
    def _ode(self) -> ODE:
        return ODE(self.states, self.rhs, self.params, self.t)

    def _header(self) -> str:
        names = ", ".join
        parts = [f"z = ({names(s.name for s in self.z)})",
                 f"a = dL/dz = ({names(s.name for s in self.a)})"]
        if self.a_theta:
            parts.append(f"a_θ = dL/dθ = ({names(s.name for s in self.a_theta)})")
        d_t = f"a_t = dL/d{self.t.name}"
        parts.append(d_t if self.a_t.name == "a_t" else f"{d_t} = {self.a_t.name}")
        return "Adjoint system [z, a, a_θ, a_t] in forward time: " + ", ".join(parts)

    def __str__(self) -> str:
        return "\n".join([self._header()] + equation_lines(self.states, self.rhs, self.t))

    def __repr__(self) -> str:
        return (f"AdjointSystem(dim={self.ode.dim}, n_params={self.ode.n_params}: "
                f"{len(self.states)} equations in {', '.join(s.name for s in self.states)})")

    def pretty(self) -> str:
        """The header and the equations pretty-printed by sympy (unicode)."""
        return self._header() + "\n\n" + pretty_equations(self.states, self.rhs, self.t)

    def latex(self) -> str:
        r"""The equations as a LaTeX ``aligned`` block, ``\frac{d a_{x}}{d t} &= ...``."""
        return latex_equations(self.states, self.rhs, self.t)

    def _repr_latex_(self) -> str:
        return f"$${self.latex()}$$"
