"""``ODE``: a system ``dz/dt = f(z, θ, t)`` of sympy expressions, checked on construction.

The derived expressions that the adjoint method and continuous normalizing flows need are cached
properties computed by :mod:`symode.symbolic.derive` on first use.
"""

from __future__ import annotations

import numbers
from functools import cached_property
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import sympy as sp
from sympy.core.function import AppliedUndef

from ..errors import ExpressionError, UnknownSymbolError
from . import derive
from .derive import VJP, DivergenceGradients

if TYPE_CHECKING:
    from .adjoint import AdjointSystem

__all__ = ["ODE"]


class ODE:
    r"""An ordinary differential equation ``dz/dt = f(z, θ, t)`` in sympy.

    Parameters
    ----------
    states : sequence of sympy.Symbol, length dim
        The state ``z``; names must be distinct.
    rhs : sequence of sympy.Expr (or a sympy column/row matrix), length dim
        ``rhs[i]`` is ``dz_i/dt``. Python ints and floats are accepted as constants.
    params : sequence of sympy.Symbol, optional
        The parameters ``θ`` (length n_params), values supplied at solve time.
    t : sympy.Symbol, optional
        The time symbol, ``sympy.Symbol("t")`` by default.

    Raises
    ------
    ExpressionError
        Wrong lengths, non-Symbol states or parameters, repeated names, entries that are not
        scalar sympy expressions, undefined functions, unevaluated derivatives, ``nan``/``zoo``.
    UnknownSymbolError
        An entry of ``rhs`` uses a symbol that is neither a state, a parameter nor ``t``.

    Notes
    -----
    Derived expressions, each computed once on first access:

    * ``jacobian`` ``J_ij = ∂f_i/∂z_j`` (dim, dim), ``param_jacobian`` ``∂f_i/∂θ_k``
      (dim, n_params), ``time_derivative`` ``∂f_i/∂t`` (dim, 1);
    * ``vjp``: ``a·∂f/∂z``, ``a·∂f/∂θ``, ``a·∂f/∂t`` in the ``adjoint_symbols`` ``a``;
    * ``divergence`` ``tr J`` and ``divergence_gradients`` ``∂(tr J)/∂z``, ``∂(tr J)/∂θ``;
    * :meth:`adjoint`, the augmented system of the adjoint method.

    Examples
    --------
    >>> x, y, z, sigma, rho, beta = sp.symbols("x y z sigma rho beta")
    >>> lorenz = ODE([x, y, z], [sigma * (y - x), x * (rho - z) - y, x * y - beta * z],
    ...              params=[sigma, rho, beta])
    >>> lorenz.jacobian[0, :]
    Matrix([[-sigma, sigma, 0]])
    """

    def __init__(self, states: Sequence[sp.Symbol], rhs: Sequence[Any],
                 params: Sequence[sp.Symbol] = (), t: sp.Symbol | None = None):
        t = sp.Symbol("t") if t is None else t
        self._states, self._params, self._t = _check_symbols(states, params, t)
        entries = _rhs_list(rhs, self._states)
        exprs = [_to_expression(e, f"rhs[{i}]") for i, e in enumerate(entries)]
        _check_unknown_symbols(exprs, self._states, self._params, self._t)
        self._rhs = tuple(exprs)

    # -- the system ----------------------------------------------------------------------------
    @property
    def states(self) -> tuple[sp.Symbol, ...]:
        """The state symbols ``z``."""
        return self._states

    @property
    def rhs(self) -> tuple[sp.Expr, ...]:
        """``f``, one expression per state."""
        return self._rhs

    @property
    def params(self) -> tuple[sp.Symbol, ...]:
        """The parameter symbols ``θ``."""
        return self._params

    @property
    def t(self) -> sp.Symbol:
        """The time symbol."""
        return self._t

    @property
    def dim(self) -> int:
        """Number of states."""
        return len(self._states)

    @property
    def n_params(self) -> int:
        """Number of parameters."""
        return len(self._params)

    # -- derived expressions -------------------------------------------------------------------
    @cached_property
    def jacobian(self) -> sp.ImmutableMatrix:
        """``∂f_i/∂z_j``, shape (dim, dim)."""
        return derive.jacobian(self._rhs, self._states)

    @cached_property
    def param_jacobian(self) -> sp.ImmutableMatrix:
        """``∂f_i/∂θ_k``, shape (dim, n_params)."""
        return derive.jacobian(self._rhs, self._params)

    @cached_property
    def time_derivative(self) -> sp.ImmutableMatrix:
        """``∂f_i/∂t``, shape (dim, 1)."""
        return derive.time_derivative(self._rhs, self._t)

    @cached_property
    def adjoint_symbols(self) -> tuple[sp.Symbol, ...]:
        """The adjoint vector ``a = dL/dz``: one symbol ``a_<state>`` per state.

        A name already used by a state, parameter or ``t`` gets more underscores (``a__x``).
        """
        return derive.fresh_symbols([s.name for s in self._states], self._taken_names)

    @cached_property
    def vjp(self) -> VJP:
        """``a·∂f/∂z`` (dim), ``a·∂f/∂θ`` (n_params) and ``a·∂f/∂t`` in :attr:`adjoint_symbols`."""
        a = self.adjoint_symbols
        return VJP(z=derive.derive_vjp(self._rhs, a, self._states, jac=self.jacobian),
                   theta=derive.derive_vjp(self._rhs, a, self._params, jac=self.param_jacobian),
                   t=derive.derive_vjp(self._rhs, a, [self._t], jac=self.time_derivative)[0])

    @cached_property
    def divergence(self) -> sp.Expr:
        """``div f = Σ_i ∂f_i/∂z_i``, the trace of :attr:`jacobian`."""
        return derive.divergence(self._rhs, self._states, jac=self.jacobian)

    @cached_property
    def divergence_gradients(self) -> DivergenceGradients:
        """``∂(div f)/∂z_j`` (dim) and ``∂(div f)/∂θ_k`` (n_params)."""
        return DivergenceGradients(z=derive.gradient(self.divergence, self._states),
                                   theta=derive.gradient(self.divergence, self._params))

    def adjoint(self) -> "AdjointSystem":
        """The augmented adjoint system ``[z, a, a_θ, a_t]``; see :class:`AdjointSystem`."""
        cached = self.__dict__.get("_adjoint")
        if cached is None:
            from .adjoint import AdjointSystem  # adjoint.py builds on this module

            cached = self.__dict__["_adjoint"] = AdjointSystem(self)
        return cached

    # -- other constructors --------------------------------------------------------------------
    @classmethod
    def from_strings(cls, rhs: Mapping[str, str] | Sequence[str],
                     states: Sequence[str] | None = None, params: Sequence[str] = (),
                     t: str = "t") -> "ODE":
        """Build an ODE from expression strings, parsed safely (never ``eval``).

        Parameters
        ----------
        rhs : mapping state name -> str, or sequence of str
            ``{"x": "sigma*(y - x)", ...}`` (states in the mapping's order), or a list of strings
            together with ``states``. Allowed syntax: see :func:`~symode.symbolic.parse_expression`.
        states : sequence of str, optional
            State names; only with a list of strings.
        params : sequence of str
            Parameter names (a single string is split on spaces and commas).
        t : str
            Name of the time symbol.

        Examples
        --------
        >>> ODE.from_strings({"x": "-k*x"}, params=["k"])
        ODE(dx/dt = -k*x, params=(k,))
        """
        from .parse import parse_system

        return cls(*parse_system(rhs, states, params, t))

    @classmethod
    def from_reactions(cls, reactions: Sequence[str], rates: Sequence | None = None,
                       species: Sequence[str] | None = None, t: str = "t") -> "ODE":
        """A chemical mechanism under mass action: reaction ``j`` runs at
        ``r_j = k_j Π A^ν`` over its reactants, and each species changes by its net
        coefficient times ``r_j``.

        Parameters
        ----------
        reactions : sequence of str
            ``"NO2 + OH -> HNO3"``, ``"O1D -> 2 OH"``; an empty side (or ``0``) is a source or
            a sink.
        rates : sequence, optional
            One rate constant per reaction: a number, a sympy expression or a string parsed
            safely (``"A*exp(-Ea/T)"``); names that are not species become parameters, by
            reaction in order of first use (alphabetical within one rate). By default the
            parameters ``k1 .. kR``.
        species : sequence of str, optional
            The state order; by default the order of first appearance.
        t : str
            Name of the time symbol.

        Examples
        --------
        >>> ODE.from_reactions(["A -> B", "2 B -> 0"])
        ODE(dA/dt = -A*k1, dB/dt = A*k1 - 2*B**2*k2, params=(k1, k2))
        """
        from .kinetics import mass_action

        return cls(*mass_action(reactions, rates, species, t))

    def subs(self, values: Mapping[Any, Any]) -> "ODE":
        """A new ODE with some parameters replaced by values, and those parameters removed.

        Parameters
        ----------
        values : mapping parameter (Symbol or name) -> number or sympy expression
        """
        if not isinstance(values, Mapping):
            raise ExpressionError(f"subs needs a mapping parameter -> value, got "
                                  f"{type(values).__name__}")
        by_name = {p.name: p for p in self._params}
        replace = {}
        for key, value in values.items():
            name = key.name if isinstance(key, sp.Symbol) else key
            if not isinstance(name, str) or name not in by_name:
                raise ExpressionError(
                    f"subs can only replace parameters ({_names(self._params)}); got {key!r}")
            if isinstance(value, (str, bytes)):
                raise ExpressionError(f"the value for {name} is the string {value!r}; "
                                      f"pass a number or a sympy expression")
            replace[by_name[name]] = _to_expression(value, f"the value for {name}")
        rhs = [e.xreplace(replace) for e in self._rhs]
        params = [p for p in self._params if p not in replace]
        return type(self)(self._states, rhs, params, self._t)

    def with_log_density(self, name: str = "delta_logp") -> "ODE":
        """The system with the change of log-density appended: the continuous change of variables.

        A density carried by the flow of ``dz/dt = f`` obeys ``d log p(z(t))/dt = -div f``
        (Liouville; Chen et al. 2018, Theorem 1). The new system has states ``[*z, Δ]`` and
        right-hand side ``[*f, -div f]``, with ``div f`` derived exactly, so that for
        ``Δ(t0) = 0``

            log p(z(t1)) = log p(z(t0)) - Δ(t1),    -Δ(t1) = log |det ∂z(t1)/∂z(t0)|.

        Every solver and adjoint runs it like any other ODE.

        Parameters
        ----------
        name : str
            Name of the new state ``Δ``; must not be taken by a state, parameter or ``t``.
        """
        if not isinstance(name, str) or not name.isidentifier():
            raise ExpressionError(f"the log-density state needs an identifier name, got {name!r}")
        if name in self._taken_names:
            raise ExpressionError(f"the name {name!r} is taken by a symbol of the system "
                                  f"({', '.join(self._taken_names)}); pass another name")
        delta = sp.Symbol(name)
        return type(self)((*self._states, delta), (*self._rhs, -self.divergence), self._params,
                          self._t)

    # -- comparison and printing ---------------------------------------------------------------
    @property
    def _taken_names(self) -> list[str]:
        return [s.name for s in (*self._states, *self._params, self._t)]

    def _key(self) -> tuple:
        return (self._states, self._rhs, self._params, self._t)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ODE):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        eqs = ", ".join(f"{d_dt(s, self._t)} = {e}" for s, e in zip(self._states, self._rhs))
        extra = f", params=({_names(self._params)}{',' if self.n_params == 1 else ''})" \
            if self._params else ""
        if self._t.name != "t":
            extra += f", t={self._t}"
        return f"ODE({eqs}{extra})"

    def __str__(self) -> str:
        head = f"ODE in {_names(self._states)}"
        if self._params:
            head += f" with parameters {_names(self._params)}"
        return "\n".join([head + ":"] + equation_lines(self._states, self._rhs, self._t))

    def pretty(self) -> str:
        """The equations pretty-printed by sympy (unicode), one block per equation."""
        return pretty_equations(self._states, self._rhs, self._t)

    def latex(self) -> str:
        r"""The equations as a LaTeX ``aligned`` block, ``\frac{d x}{d t} &= ...``."""
        return latex_equations(self._states, self._rhs, self._t)

    def _repr_latex_(self) -> str:
        return f"$${self.latex()}$$"


# -- checks on construction --------------------------------------------------------------------
_UNEVALUATED = (sp.Derivative, sp.Integral, sp.Subs, sp.Sum, sp.Product, sp.Limit, sp.Order)
_NOT_FINITE = {sp.nan: "nan", sp.zoo: "zoo (complex infinity, e.g. from 1/0)",
               sp.oo: "oo (infinity)", -sp.oo: "-oo (infinity)"}


def _short(expr: Any, width: int = 100) -> str:
    text = str(expr)
    return text if len(text) <= width else text[:width - 3] + "..."


def _symbol_tuple(seq: Any, what: str) -> tuple[sp.Symbol, ...]:
    """``seq`` as a tuple of Symbols, or an ExpressionError naming the bad entry."""
    if isinstance(seq, (str, bytes)):
        raise ExpressionError(f"{what} is the string {seq!r}; pass sympy Symbols, e.g. "
                              f"sp.symbols({seq!r}), or build the system with ODE.from_strings")
    if isinstance(seq, sp.Basic) and not isinstance(seq, sp.MatrixBase):
        raise ExpressionError(f"{what} must be a sequence of sympy Symbols, got the single "
                              f"{type(seq).__name__} {seq}; write {what}=[{seq}]")
    try:
        items = tuple(seq)
    except TypeError:
        raise ExpressionError(f"{what} must be a sequence of sympy Symbols, "
                              f"got {type(seq).__name__}") from None
    for i, item in enumerate(items):
        if isinstance(item, str):
            raise ExpressionError(f"{what}[{i}] is the string {item!r}, not a sympy Symbol; use "
                                  f"sp.Symbol({item!r}), or build the system with ODE.from_strings")
        if not isinstance(item, sp.Symbol):
            raise ExpressionError(f"{what}[{i}] = {_short(item)} is a {type(item).__name__}, not "
                                  f"a sympy Symbol")
    return items


def _check_symbols(states: Any, params: Any, t: Any) -> tuple[tuple, tuple, sp.Symbol]:
    """States, parameters and time: Symbols with pairwise distinct names."""
    states, params = _symbol_tuple(states, "states"), _symbol_tuple(params, "params")
    if not states:
        raise ExpressionError("an ODE needs at least one state; states is empty")
    if not isinstance(t, sp.Symbol):
        raise ExpressionError(f"t must be a sympy Symbol, got {type(t).__name__} {_short(t)!s}")
    seen: dict[str, str] = {}
    roles = [(s, f"states[{i}]") for i, s in enumerate(states)]
    roles += [(p, f"params[{i}]") for i, p in enumerate(params)]
    roles.append((t, f"the time symbol {t.name}"))
    for sym, role in roles:
        if sym.name in seen:
            raise ExpressionError(
                f"the name '{sym.name}' is used twice, by {seen[sym.name]} and by {role}. States, "
                f"parameters and the time symbol need distinct names.")
        seen[sym.name] = role
    return states, params, t


def _rhs_list(rhs: Any, states: tuple) -> list:
    """The entries of ``rhs``, one per state."""
    if isinstance(rhs, (str, bytes)):
        raise ExpressionError("rhs is a string; build a system from strings with ODE.from_strings")
    if isinstance(rhs, Mapping):
        raise ExpressionError("rhs is a mapping; pass states=[...] and rhs=[...] in the same "
                              "order (or ODE.from_strings for a mapping of strings)")
    if isinstance(rhs, sp.MatrixBase):
        if min(rhs.shape) > 1:
            raise ExpressionError(f"rhs is a {rhs.shape[0]}x{rhs.shape[1]} matrix; pass a column "
                                  f"(or a row) with one expression per state")
        entries = list(rhs)
    elif isinstance(rhs, sp.Basic):
        raise ExpressionError(f"rhs must be a sequence with one expression per state, got the "
                              f"single expression {_short(rhs)}; write rhs=[...]")
    else:
        try:
            entries = list(rhs)
        except TypeError:
            raise ExpressionError(f"rhs must be a sequence of sympy expressions, "
                                  f"got {type(rhs).__name__}") from None
    if len(entries) != len(states):
        raise ExpressionError(
            f"rhs has {len(entries)} entries but there are {len(states)} states "
            f"({_names(states)}); give one expression per state")
    return entries


def _to_expression(value: Any, where: str) -> sp.Expr:
    """A checked scalar sympy expression from ``value`` (sympy, or a Python/numpy number)."""
    if isinstance(value, str):
        raise ExpressionError(f"{where} is the string {value!r}; build a system from strings "
                              f"with ODE.from_strings")
    if isinstance(value, bool) or type(value).__name__ == "bool_" or (
            isinstance(value, sp.logic.boolalg.Boolean) and not isinstance(value, sp.Expr)):
        hint = "; give the right-hand side only" if isinstance(value, sp.Equality) else ""
        raise ExpressionError(f"{where} = {_short(value)} is a truth value or a relation, not a "
                              f"scalar expression{hint}")
    if isinstance(value, numbers.Integral):
        value = sp.Integer(int(value))
    elif isinstance(value, numbers.Rational):
        value = sp.Rational(value.numerator, value.denominator)
    elif isinstance(value, numbers.Real):
        value = sp.Float(float(value))
    if isinstance(value, (sp.MatrixBase, sp.MatrixExpr)) or not isinstance(value, sp.Expr):
        raise ExpressionError(f"{where} = {_short(value)} is a {type(value).__name__}, not a "
                              f"scalar sympy expression")
    _check_expression(value, where)
    return value


def _check_expression(expr: sp.Expr, where: str) -> None:
    """Refuse what cannot become numeric code: non-finite numbers, I, unknown functions."""
    for bad, what in _NOT_FINITE.items():
        if expr.has(bad):
            raise ExpressionError(f"{where} = {_short(expr)} contains {what}")
    if expr.has(sp.I):
        raise ExpressionError(f"{where} = {_short(expr)} contains the imaginary unit I; "
                              f"symode solves real ODEs (write complex states as two real ones)")
    undefined = sorted(expr.atoms(AppliedUndef), key=str)
    if undefined:
        raise ExpressionError(
            f"{where} = {_short(expr)} uses the undefined function {undefined[0]}; symode needs "
            f"explicit formulas: write the function out, or make its value a state or parameter")
    for cls in _UNEVALUATED:
        if expr.has(cls):
            found = sorted(expr.atoms(cls), key=str)[0]
            raise ExpressionError(f"{where} = {_short(expr)} contains the unevaluated "
                                  f"{_short(found, 60)}; evaluate it (.doit()) or write it out")


def _check_unknown_symbols(exprs: Sequence[sp.Expr], states: tuple, params: tuple,
                           t: sp.Symbol) -> None:
    """Every free symbol of ``exprs`` must be a state, a parameter or ``t``."""
    allowed = {*states, *params, t}
    by_name = {s.name: s for s in allowed}
    for i, e in enumerate(exprs):
        unknown = sorted(e.free_symbols - allowed, key=str)
        if not unknown:
            continue
        for u in unknown:
            if isinstance(u, sp.Symbol) and u.name in by_name:
                raise UnknownSymbolError(
                    f"rhs[{i}] = {_short(e)} uses a symbol named '{u.name}' whose assumptions "
                    f"(real=..., positive=...) differ from those of the system's {u.name}; sympy "
                    f"treats them as different symbols. Create each symbol once and reuse it.")
        quoted = " and ".join(", ".join(f"'{u}'" for u in unknown).rsplit(", ", 1))
        one = len(unknown) == 1
        raise UnknownSymbolError(
            f"rhs[{i}] = {_short(e)} uses {quoted}, which {'is' if one else 'are'} not a state "
            f"({_names(states)}), a parameter ({_names(params) or 'none'}) or the time symbol "
            f"{t}. Add {'it' if one else 'them'} to params=[...] or substitute a value.")


# -- printing helpers shared with AdjointSystem ------------------------------------------------
def _names(symbols: Sequence[sp.Symbol]) -> str:
    return ", ".join(s.name for s in symbols)


def d_dt(symbol: sp.Symbol, t: sp.Symbol) -> str:
    """``dx/dt`` for one-letter names, ``d a_x/dt`` where a space is needed to read it."""
    sep = "" if len(symbol.name) == 1 else " "
    return f"d{sep}{symbol.name}/d{t.name}"


def equation_lines(lhs: Sequence[sp.Symbol], rhs: Sequence[sp.Expr], t: sp.Symbol) -> list[str]:
    """One indented line ``dz/dt = f`` per equation."""
    return [f"  {d_dt(s, t)} = {e}" for s, e in zip(lhs, rhs)]


def pretty_equations(lhs: Sequence[sp.Symbol], rhs: Sequence[sp.Expr], t: sp.Symbol) -> str:
    """sympy's unicode pretty print of ``d/dt z_i = f_i``, blank line between equations."""
    blocks = [sp.pretty(sp.Eq(sp.Derivative(s, t), e, evaluate=False), use_unicode=True)
              for s, e in zip(lhs, rhs)]
    return "\n\n".join(blocks)


def latex_equations(lhs: Sequence[sp.Symbol], rhs: Sequence[sp.Expr], t: sp.Symbol) -> str:
    r"""``\begin{aligned} \frac{d z_i}{d t} &= f_i \\ ... \end{aligned}``."""
    rows = [rf"\frac{{d {sp.latex(s)}}}{{d {sp.latex(t)}}} &= {sp.latex(e)}"
            for s, e in zip(lhs, rhs)]
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"
