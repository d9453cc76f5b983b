"""User strings to sympy expressions through a whitelist parser, never ``eval``.

The text is parsed by Python's :mod:`ast` (``mode="eval"``) and the tree is walked node by node;
sympy objects are built here from the nodes that are allowed, and any other node is refused with
a :class:`~symode.errors.ParseError` that names it and its column. Nothing of the text is ever
executed, nor handed to ``sympify``/``parse_expr`` (which call ``eval``).

Allowed: numbers (``2``, ``0.5``, ``1e-3``), names, ``+ - * / **``, ``^`` as a power, unary
``-``/``+``, parentheses and calls (positional arguments only) of the functions in
:data:`FUNCTIONS`; the constants ``pi`` and ``E``. A name that is not a known symbol becomes a
new Symbol, so that :class:`~symode.symbolic.ODE` reports it with its usual message.
"""

from __future__ import annotations

import ast
import math
import unicodedata
from typing import Any, Mapping, Sequence

import sympy as sp

from ..errors import ExpressionError, ParseError

__all__ = ["FUNCTIONS", "CONSTANTS", "MAX_LENGTH", "MAX_DEPTH", "parse_expression",
           "parse_system"]

MAX_LENGTH = 10_000  # characters of one expression
MAX_DEPTH = 100  # nesting of parentheses, calls, powers and signs (long sums are flat)
_MAX_POWER_BITS = 1_000_000  # an exact numeric power larger than this is refused, not computed
_PAIRWISE_FACTORS = 16  # longer products are built in one step (pair by pair is quadratic)

#: name -> (sympy function, smallest and largest number of arguments)
FUNCTIONS: dict[str, tuple[Any, int, int]] = {
    **{name: (getattr(sp, name), 1, 1) for name in (
        "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh",
        "atanh", "exp", "sqrt", "sign", "erf", "floor", "ceiling")},
    "atan2": (sp.atan2, 2, 2), "log": (sp.log, 1, 2), "Abs": (sp.Abs, 1, 1),
    "abs": (sp.Abs, 1, 1), "Min": (sp.Min, 1, 64), "min": (sp.Min, 1, 64),
    "Max": (sp.Max, 1, 64), "max": (sp.Max, 1, 64), "Heaviside": (sp.Heaviside, 1, 2),
    "heaviside": (sp.Heaviside, 1, 2),
}
CONSTANTS = {"pi": sp.pi, "E": sp.E}

_ADDITIVE = (ast.Add, ast.Sub)
_MULTIPLICATIVE = (ast.Mult, ast.Div)
_OPERATOR_TEXT = {ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.BitOr: "|",
                  ast.BitAnd: "&", ast.LShift: "<<", ast.RShift: ">>", ast.Invert: "~",
                  ast.Not: "not"}
_NODE_TEXT = {ast.Attribute: "attribute access", ast.Subscript: "subscript",
              ast.Lambda: "lambda", ast.Compare: "comparison", ast.BoolOp: "boolean operator",
              ast.IfExp: "conditional expression", ast.Starred: "starred argument",
              ast.NamedExpr: "assignment (:=)", ast.ListComp: "comprehension",
              ast.SetComp: "comprehension", ast.DictComp: "comprehension",
              ast.GeneratorExp: "comprehension", ast.List: "list", ast.Tuple: "tuple",
              ast.Set: "set", ast.Dict: "dict", ast.JoinedStr: "f-string",
              ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield", ast.Slice: "slice"}
ALLOWED = ("allowed are numbers, names, + - * / ** ^, parentheses and calls of sin, cos, tan, "
           "asin, acos, atan, atan2, sinh, cosh, tanh, asinh, acosh, atanh, exp, log, sqrt, "
           "abs (Abs), sign, min (Min), max (Max), erf, floor, ceiling, heaviside (Heaviside)")


class _Source:
    """The text as given, the text as parsed (``^`` written ``**``), and positions between them."""

    def __init__(self, text: str, where: str):
        self.text, self.where = text, where
        self.parsed = text.replace("^", "**")
        self._origin = []  # index in self.parsed -> index in self.text
        for i, ch in enumerate(text):
            self._origin.extend([i, i] if ch == "^" else [i])
        self._origin.append(len(text))
        starts, pos = [], 0
        for line in self.parsed.split("\n"):
            starts.append(pos)
            pos += len(line) + 1
        self._line_starts = starts

    def offset(self, lineno: int, col: int, in_bytes: bool) -> int:
        """Index into ``self.text`` of a (1-based line, 0-based column) of the parsed text."""
        lineno = min(max(lineno, 1), len(self._line_starts))
        start = self._line_starts[lineno - 1]
        if in_bytes:  # ast columns count UTF-8 bytes
            line = self.parsed[start:].split("\n", 1)[0]
            col = len(line.encode("utf-8")[:max(col, 0)].decode("utf-8", "ignore"))
        return self._origin[min(start + max(col, 0), len(self._origin) - 1)]

    def fail(self, what: str, index: int | None, hint: str = ALLOWED) -> ParseError:
        """A ParseError quoting the text with a caret under ``index``."""
        prefix = f"{self.where}: " if self.where else ""
        if index is None:
            return ParseError(f"{prefix}{what}; {hint}")
        line_start = self.text.rfind("\n", 0, index) + 1
        line_end = self.text.find("\n", index)
        line = self.text[line_start:len(self.text) if line_end < 0 else line_end]
        col = index - line_start
        lo = max(0, col - 60)  # show a window of long lines
        shown = ("..." if lo else "") + line[lo:col + 60] + ("..." if col + 60 < len(line) else "")
        caret = " " * (col - lo + (3 if lo else 0)) + "^"
        line_no = self.text.count("\n", 0, index)
        place = f"column {col + 1}"
        if "\n" in self.text:
            place = f"line {line_no + 1}, {place}"
        return ParseError(f"{prefix}{what} at {place}; {hint}\n    {shown}\n    {caret}")

    def piece(self, node: ast.AST) -> str:
        """The source text of ``node``, quoted and shortened."""
        start = self.offset(node.lineno, node.col_offset, in_bytes=True)
        end = self.offset(node.end_lineno or node.lineno, node.end_col_offset or 0, in_bytes=True)
        segment = self.text[start:end]
        return repr(segment if len(segment) <= 40 else segment[:37] + "...")

    def fail_at(self, node: ast.AST, what: str, hint: str = ALLOWED) -> ParseError:
        """A ParseError for ``node``; ``{}`` in ``what`` stands for the node's text."""
        piece = self.piece(node)
        what = what.replace("{}", piece, 1) if "{}" in what else f"{what} {piece}"
        return self.fail(what, self.offset(node.lineno, node.col_offset, in_bytes=True), hint)


def parse_expression(text: str, symbols: Mapping[str, sp.Symbol], *, where: str = "") -> sp.Expr:
    """Parse a formula into a sympy expression without evaluating any of its text.

    Parameters
    ----------
    text : str
        A formula such as ``"sigma*(y - x)"`` or ``"x^2 + 1e-3*sin(t)"``; at most
        :data:`MAX_LENGTH` characters, nested at most :data:`MAX_DEPTH` deep.
    symbols : mapping name -> sympy.Symbol
        Names that stand for these symbols; they take precedence over ``pi`` and ``E``. Other
        names become new plain Symbols.
    where : str, optional
        Where the text comes from (``"rhs[1]"``), to start error messages with.

    Returns
    -------
    sympy.Expr

    Raises
    ------
    ParseError
        Syntax errors, and anything outside the whitelist, with the offending piece and column.

    Examples
    --------
    >>> x = sp.Symbol("x")
    >>> parse_expression("2*x^2 - sin(x)/3", {"x": x})
    2*x**2 - sin(x)/3
    """
    if not isinstance(text, str):
        raise ParseError(f"{where + ': ' if where else ''}expected a string to parse, got "
                         f"{type(text).__name__}")
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    src = _Source(text, where)
    if not text:
        raise src.fail("the expression is empty", None, "write a formula such as 'k*x'")
    if len(text) > MAX_LENGTH:
        raise src.fail(f"the expression is {len(text)} characters long, more than "
                       f"{MAX_LENGTH}", None, "split it up, or build it with sympy directly")
    tree = _parse_tree(src)
    names = {unicodedata.normalize("NFKC", k): v for k, v in symbols.items()}
    return _Builder(src, names).build(tree.body, 0)


def _parse_tree(src: _Source) -> ast.Expression:
    try:
        return ast.parse(src.parsed, mode="eval")
    except SyntaxError as e:
        index = src.offset(e.lineno or 1, (e.offset or 1) - 1, in_bytes=False)
        what = "invalid syntax" + ("" if e.msg == "invalid syntax" else f" ({e.msg})")
        raise src.fail(what, index, "check the parentheses and operators") from None
    except (RecursionError, MemoryError, ValueError):
        raise src.fail("the expression is too deeply nested (or too long a chain of operators) "
                       "for Python's parser", None, "split it into smaller expressions") from None


class _Builder:
    """Walks an ``ast`` tree and builds the sympy expression of the allowed nodes."""

    def __init__(self, src: _Source, names: Mapping[str, sp.Symbol]):
        self.src, self.names = src, names

    def build(self, node: ast.AST, depth: int) -> sp.Expr:
        if depth > MAX_DEPTH:
            raise self.src.fail_at(node, f"nesting deeper than {MAX_DEPTH} levels in {{}}",
                                   hint="split the expression into smaller ones")
        if isinstance(node, ast.Constant):
            return self._number(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.BinOp):
            return self._binop(node, depth)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.build(node.operand, depth + 1)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        if isinstance(node, ast.UnaryOp):
            kind = f"the operator {_OPERATOR_TEXT.get(type(node.op), type(node.op).__name__)} in"
        else:
            kind = _NODE_TEXT.get(type(node), f"the construct {type(node).__name__}")
        raise self.src.fail_at(node, kind + " {} is not allowed")

    def _number(self, node: ast.Constant) -> sp.Expr:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            kind = "string" if isinstance(value, (str, bytes)) else type(value).__name__
            raise self.src.fail_at(node, f"the {kind} constant {{}} is not allowed")
        if isinstance(value, int):
            return sp.Integer(value)
        if not math.isfinite(value):
            raise self.src.fail_at(node, "the number {} overflows float64",
                                   hint="write it with a smaller exponent")
        literal = (ast.get_source_segment(self.src.parsed, node) or repr(value)).replace("_", "")
        return sp.Float(literal)

    def _name(self, node: ast.Name) -> sp.Expr:
        name = node.id
        if name.startswith("__"):
            raise self.src.fail_at(node, "the name {} is not allowed (no names starting with "
                                   "'__')")
        if name in self.names:
            return self.names[name]
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in FUNCTIONS:
            raise self.src.fail_at(node, "{} is a function, not a value,",
                                   hint=f"call it as {name}(...)")
        return sp.Symbol(name)

    def _binop(self, node: ast.BinOp, depth: int) -> sp.Expr:
        op = type(node.op)
        if op is ast.Pow:
            base, exponent = self.build(node.left, depth + 1), self.build(node.right, depth + 1)
            self._check_power(node, base, exponent)
            return base ** exponent
        if op in _OPERATOR_TEXT or not issubclass(op, _ADDITIVE + _MULTIPLICATIVE):
            raise self.src.fail_at(node, f"the operator {_OPERATOR_TEXT.get(op, op.__name__)} "
                                   f"in {{}} is not allowed")
        # a chain a + b - c ... is a left-leaning tree: walk it without recursion
        group = _ADDITIVE if issubclass(op, _ADDITIVE) else _MULTIPLICATIVE
        pieces = []
        while isinstance(node, ast.BinOp) and isinstance(node.op, group):
            pieces.append((type(node.op), node.right))
            node = node.left
        first = self.build(node, depth + 1)
        rest = [(op, self.build(right, depth + 1)) for op, right in reversed(pieces)]
        if group is _ADDITIVE:  # one flat Add: the same sum as pair by pair, in linear time
            return sp.Add(first, *[-v if op is ast.Sub else v for op, v in rest])
        if len(rest) > _PAIRWISE_FACTORS:  # one flat Mul: equal in value, linear time
            return sp.Mul(first, *[1 / v if op is ast.Div else v for op, v in rest])
        for op, v in rest:  # pair by pair, as Python evaluates it: 2*(x + y) distributes
            first = first / v if op is ast.Div else first * v
        return first

    def _check_power(self, node: ast.BinOp, base: sp.Expr, exponent: sp.Expr) -> None:
        """Refuse exact numeric powers too large to compute (``9**9**9``)."""
        if not (base.is_Rational and exponent.is_Rational) or abs(base) in (0, 1):
            return
        bits = max(abs(base.p).bit_length(), base.q.bit_length())
        if abs(exponent) * bits > _MAX_POWER_BITS:
            raise self.src.fail_at(node, "the exact value of {} is too large to compute",
                                   hint="use a float base such as 9.0")

    def _call(self, node: ast.Call, depth: int) -> sp.Expr:
        func = node.func
        if not isinstance(func, ast.Name) or func.id not in FUNCTIONS:
            what = "the call of {} is not allowed" if isinstance(func, ast.Name) \
                else "the call {} is not allowed"
            raise self.src.fail_at(func if isinstance(func, ast.Name) else node, what)
        if node.keywords:
            raise self.src.fail_at(node.keywords[0], "the keyword argument {} is not allowed",
                                   hint="pass arguments by position")
        fn, lo, hi = FUNCTIONS[func.id]
        if not lo <= len(node.args) <= hi:
            count = str(lo) if lo == hi else f"{lo} to {hi}"
            raise self.src.fail_at(node, f"{func.id} takes {count} argument"
                                   f"{'' if count == '1' else 's'}, got {len(node.args)}, in {{}}",
                                   hint="check the call")
        args = [self.build(arg, depth + 1) for arg in node.args]
        try:
            return fn(*args)
        except (ValueError, TypeError, ArithmeticError) as e:  # e.g. Min(x, zoo)
            raise self.src.fail_at(node, f"sympy cannot build {{}} ({e})",
                                   hint="check the arguments") from None


def _names(value: Any, what: str) -> list:
    """State or parameter names: a sequence of str/Symbol, or one string split at spaces/commas."""
    if isinstance(value, str):
        return value.replace(",", " ").split()
    try:
        return list(value)
    except TypeError:
        raise ExpressionError(f"{what} must be a sequence of names, got "
                              f"{type(value).__name__}") from None


def _symbol(name: Any, what: str) -> sp.Symbol:
    if isinstance(name, sp.Symbol):
        return name
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("__"):
        raise ExpressionError(f"{what} = {name!r} is not a usable name: names are identifiers "
                              f"such as 'x' or 'k_1' (not starting with '__')")
    return sp.Symbol(name)


def parse_system(rhs: Mapping[str, str] | Sequence[str], states: Sequence[str] | None = None,
                 params: Sequence[str] = (), t: str = "t"
                 ) -> tuple[list[sp.Symbol], list[sp.Expr], list[sp.Symbol], sp.Symbol]:
    """The arguments of ``ODE(states, rhs, params, t)`` from strings; see ``ODE.from_strings``."""
    if isinstance(rhs, Mapping):
        if states is not None:
            raise ExpressionError("give the states either as the keys of rhs or as states=[...], "
                                  "not both")
        states, texts = list(rhs.keys()), list(rhs.values())
    elif isinstance(rhs, str):
        raise ExpressionError("rhs is a single string; pass a mapping {'x': '...'} or a list of "
                              "strings with states=[...]")
    else:
        if states is None:
            raise ExpressionError("with a list of strings, give the state names as states=[...]")
        texts = _names(rhs, "rhs")
    z = [_symbol(s, f"states[{i}]") for i, s in enumerate(_names(states, "states"))]
    theta = [_symbol(p, f"params[{i}]") for i, p in enumerate(_names(params, "params"))]
    time = _symbol(t, "t")
    if len(texts) != len(z):
        raise ExpressionError(f"{len(texts)} expressions for {len(z)} states "
                              f"({', '.join(s.name for s in z)}); give one per state")
    known = {s.name: s for s in (*theta, time, *z)}
    exprs = []
    for i, (s, text) in enumerate(zip(z, texts)):
        where = f"rhs[{i}] (d{s.name}/d{time.name})"
        if not isinstance(text, str):
            raise ExpressionError(f"{where} is a {type(text).__name__}, not a string; build "
                                  f"systems of sympy expressions with ODE(...)")
        exprs.append(parse_expression(text, known, where=where))
    return z, exprs, theta, time
