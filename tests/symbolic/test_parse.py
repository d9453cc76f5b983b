"""The whitelist parser: what it builds, what it refuses and how, and ODE.from_strings."""

import re

import pytest
import sympy as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sympy.parsing.sympy_parser import convert_xor, parse_expr, standard_transformations

from symode.errors import ExpressionError, ParseError, UnknownSymbolError
from symode.symbolic import ODE, parse_expression
from symode.symbolic.parse import FUNCTIONS, MAX_DEPTH, MAX_LENGTH

x, y, k = sp.symbols("x y k")
SYMBOLS = {"x": x, "y": y, "k": k}
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse(text):
    return parse_expression(text, SYMBOLS)


@pytest.mark.parametrize("text, expected", [
    ("2*x^2 - sin(x)/3", 2 * x**2 - sp.sin(x) / 3),
    ("x^2*y", x**2 * y),  # ^ is a power, with the precedence of **
    ("x^y^2", x ** (y**2)),
    ("-x**2", -(x**2)),
    ("2**-1", sp.Rational(1, 2)),
    ("1/3 + x", sp.Rational(1, 3) + x),  # exact, not a float division
    ("+x - -y", x + y),
    ("2*(x + y)", 2 * x + 2 * y),
    ("x - (y + k)", x - y - k),
    ("pi*E", sp.pi * sp.E),
    ("abs(x) + Abs(y)", sp.Abs(x) + sp.Abs(y)),
    ("min(x, y, 1) + Max(x, k)", sp.Min(x, y, 1) + sp.Max(x, k)),
    ("heaviside(x) + Heaviside(y, 1)", sp.Heaviside(x) + sp.Heaviside(y, 1)),
    ("log(x, 2)", sp.log(x, 2)),
    ("atan2(y, x) + erf(x) + floor(x) + ceiling(y) + sign(k)",
     sp.atan2(y, x) + sp.erf(x) + sp.floor(x) + sp.ceiling(y) + sp.sign(k)),
    ("exp(-k*x)*tanh(y) + sqrt(1 + x^2)", sp.exp(-k * x) * sp.tanh(y) + sp.sqrt(1 + x**2)),
    ("(x +\n y)", x + y),
    ("  x  ", x),
    ("0x10 + 1_000", sp.Integer(1016)),
    ("rho*x", sp.Symbol("rho") * x),  # unknown names become Symbols, for ODE to report
    ("α + x", sp.Symbol("α") + x),
])
def test_builds(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize("text, value", [
    ("0.1", "0.1"), ("1e-3", "0.001"), ("2.5E2", "250.0"), ("3.", "3.0"), (".25", "0.25"),
    ("1_000.5", "1000.5"),
])
def test_float_literals(text, value):
    parsed = parse(text)
    assert isinstance(parsed, sp.Float) and parsed == sp.Float(value)


def test_float_keeps_its_digits():
    parsed = parse("3.14159265358979323846264")
    assert parsed._prec > 53 and abs(parsed - sp.pi) < sp.Float("1e-22")


def test_user_symbols_shadow_constants():
    young = sp.Symbol("E")
    assert parse_expression("E*x", {"E": young, "x": x}) == young * x
    assert parse_expression("E", {}) == sp.E


ALLOWED = "allowed are numbers, names, \\+ - \\* / \\*\\* \\^, parentheses and calls of sin"


@pytest.mark.parametrize("text, match", [
    ("x.__class__", r"attribute access 'x.__class__' is not allowed at column 1; " + ALLOWED),
    ("x^2 + y.z", r"attribute access 'y.z' is not allowed at column 7"),
    ("__import__('os')", r"the call of '__import__' is not allowed at column 1; " + ALLOWED),
    ("eval('1 + 1')", r"the call of 'eval' is not allowed at column 1"),
    ("open('/etc/passwd')", r"the call of 'open' is not allowed at column 1"),
    ("x.real(1)", r"the call 'x.real\(1\)' is not allowed"),
    ("f(x)", r"the call of 'f' is not allowed"),
    ("__class__", r"the name '__class__' is not allowed \(no names starting with '__'\)"),
    ("x + __builtins__", r"the name '__builtins__' is not allowed .* at column 5"),
    ("x[0]", r"subscript 'x\[0\]' is not allowed at column 1"),
    ("lambda: 1", r"lambda 'lambda: 1' is not allowed"),
    ("sin(x=1)", r"the keyword argument 'x=1' is not allowed at column 5; pass arguments by "
                 r"position"),
    ("'abc'", r"the string constant \"'abc'\" is not allowed"),
    ("b'abc'", r"the string constant \"b'abc'\" is not allowed"),
    ("x < y", r"comparison 'x < y' is not allowed"),
    ("x and y", r"boolean operator 'x and y' is not allowed"),
    ("[i for i in x]", r"comprehension '\[i for i in x\]' is not allowed"),
    ("sin(*x)", r"starred argument '\*x' is not allowed at column 5"),
    ("(y := 2)", r"assignment \(:=\) 'y := 2' is not allowed at column 2"),
    ("2 if x else 3", r"conditional expression"),
    ("[x]", r"list '\[x\]' is not allowed"),
    ("x, y", r"tuple 'x, y' is not allowed"),
    ("{x}", r"set '\{x\}' is not allowed"),
    ("{x: 1}", r"dict"),
    ("f'{x}'", r"f-string"),
    ("x // 2", r"the operator // in 'x // 2' is not allowed"),
    ("x % 2", r"the operator % in"),
    ("x @ y", r"the operator @ in"),
    ("x | y", r"the operator \| in"),
    ("x << 1", r"the operator << in"),
    ("~x", r"the operator ~ in '~x' is not allowed"),
    ("not x", r"the operator not in 'not x'"),
    ("1j", r"the complex constant '1j' is not allowed"),
    ("True", r"the bool constant 'True' is not allowed"),
    ("None", r"the NoneType constant"),
    ("...", r"the ellipsis constant"),
    ("sin", r"'sin' is a function, not a value, at column 1; call it as sin\(...\)"),
    ("sin(x, y)", r"sin takes 1 argument, got 2, in 'sin\(x, y\)' at column 1"),
    ("atan2(x)", r"atan2 takes 2 arguments, got 1"),
    ("log()", r"log takes 1 to 2 arguments, got 0"),
    ("Min(x, 1/0)", r"sympy cannot build 'Min\(x, 1/0\)' \(.*not comparable.*\) at column 1"),
    ("", r"the expression is empty"),
    ("  \n ", r"the expression is empty"),
    ("x +* y", r"invalid syntax at column 4; check the parentheses and operators\n"
               r"    x \+\* y\n       \^$"),
    ("x + (y", r"invalid syntax \('\(' was never closed\) at column 5"),
    ("x ^^ y", r"invalid syntax at column 4"),
    ("(x +\n y.z)", r"attribute access 'y.z' is not allowed at line 2, column 2"),
    ("9**9**9", r"the exact value of '9\*\*9\*\*9' is too large to compute at column 1; use a "
                r"float base"),
    ("2^2^2^2^2^2", r"the exact value of '2\^2\^2\^2\^2\^2' is too large"),
    ("1e999 * x", r"the number '1e999' overflows float64 at column 1"),
    ("x" * (MAX_LENGTH + 1), rf"the expression is {MAX_LENGTH + 1} characters long, more than "
                             rf"{MAX_LENGTH}"),
    ("-" * (MAX_DEPTH + 10) + "x", rf"nesting deeper than {MAX_DEPTH} levels"),
    ("sin(" * (MAX_DEPTH + 10) + "x" + ")" * (MAX_DEPTH + 10), r"nesting deeper than"),
    ("(" * 300 + "x" + ")" * 300, r"invalid syntax \(too many nested parentheses\)"),
    ("x+" * 4000 + "x", r"too deeply nested \(or too long a chain of operators\) for Python's "
                        r"parser"),
])
def test_refuses(text, match):
    with pytest.raises(ParseError, match=match):
        parse(text)


def test_refuses_non_strings():
    with pytest.raises(ParseError, match="expected a string to parse, got int"):
        parse_expression(3, {})


def test_error_names_where():
    with pytest.raises(ParseError, match=r"^rhs\[2\]: attribute access"):
        parse_expression("x.y", {}, where="rhs[2]")


def test_nothing_is_executed(tmp_path):
    target = tmp_path / "created"
    attacks = [f"__import__('os').system('touch {target}')",
               f"open('{target}', 'w')",
               "().__class__.__bases__[0].__subclasses__()",
               f"(lambda: __import__('os').system('touch {target}'))()"]
    for text in attacks:
        with pytest.raises(ParseError):
            parse(text)
    assert not target.exists()


def test_long_flat_sums_and_products_are_fine():
    terms = [f"{i}*x^{i}" for i in range(1, 400)]
    assert parse(" + ".join(terms)) == sum(i * x**i for i in range(1, 400))
    assert parse("*".join(["(x + 1)"] * 300)) == (x + 1) ** 300


# -- round trips -------------------------------------------------------------------------------
_UNARY = [getattr(sp, n) for n in ("sin", "cos", "tan", "atan", "sinh", "cosh", "tanh", "asinh",
                                   "exp", "log", "sqrt", "Abs", "sign", "erf", "floor", "ceiling",
                                   "Heaviside")]
_ALLOWED_CLASSES = {fn for fn, _, _ in FUNCTIONS.values()}
_leaves = st.one_of(st.sampled_from([x, y, k]), st.integers(-5, 9).map(sp.Integer),
                    st.sampled_from([sp.Rational(1, 3), sp.Rational(-5, 2), sp.pi, sp.E]))


def _call(fn, *args):
    """``fn(*args)``, or nan (filtered out later) where sympy refuses, as Heaviside(I*pi)."""
    try:
        return fn(*args)
    except (ValueError, TypeError):
        return sp.nan


def _extend(children):
    pair = st.tuples(children, children)
    return st.one_of(
        pair.map(lambda p: p[0] + p[1]), pair.map(lambda p: p[0] - p[1]),
        pair.map(lambda p: p[0] * p[1]), pair.map(lambda p: p[0] / p[1]),
        st.tuples(children, st.integers(-3, 3)).map(lambda p: p[0] ** p[1]),
        children.map(lambda c: -c),
        st.tuples(st.sampled_from(_UNARY), children).map(lambda p: _call(*p)),
        st.tuples(st.sampled_from([sp.atan2, sp.Min, sp.Max]), children, children).map(
            lambda p: _call(*p)))


@FAST
@given(st.recursive(_leaves, _extend, max_leaves=10))
def test_roundtrip_of_printed_sympy(expr):
    """Whatever sympy prints of an expression in the grammar parses back to the same expression."""
    assume(not expr.has(sp.I, sp.zoo, sp.nan, sp.oo, -sp.oo))
    assume(all(f.func in _ALLOWED_CLASSES for f in expr.atoms(sp.Function)))
    parsed = parse(str(expr))
    # the text is read with Python's semantics, as sympify reads it: -(x + y)/x comes back as
    # (-x - y)/x, the same expression in another arrangement
    assert parsed == expr or sp.expand(parsed - expr) == 0 or sp.simplify(parsed - expr) == 0
    assert parsed == sp.sympify(str(expr))


_text_leaves = st.sampled_from(["x", "y", "k", "0", "1", "2", "7", "10", "0.5", "1e-3", "2.5E2",
                                "3.", ".25", "1.5e+1", "pi", "E"])


def _text_extend(children):
    return st.one_of(
        st.tuples(children, st.sampled_from(["+", "-", "*", "/"]), children).map(" ".join),
        st.tuples(children, st.sampled_from(["**", "^"]),
                  st.sampled_from(["2", "3", "-1", "(-2)", "0.5"])).map(
            lambda p: f"({p[0]}){p[1]}{p[2]}"),
        children.map(lambda c: f"({c})"), children.map(lambda c: f"-{c}"),
        st.tuples(st.sampled_from(["sin", "exp", "tanh", "log", "sqrt", "abs", "erf"]),
                  children).map(lambda p: f"{p[0]}({p[1]})"),
        st.tuples(st.sampled_from(["atan2", "Min", "Max"]), children, children).map(
            lambda p: f"{p[0]}({p[1]}, {p[2]})"))


@FAST
@given(st.recursive(_text_leaves, _text_extend, max_leaves=10))
def test_agrees_with_sympy_parser(text):
    """On the allowed syntax the result is what sympy's own (eval-based) parser builds."""
    try:
        reference = parse_expr(text, transformations=standard_transformations + (convert_xor,))
    except (ValueError, TypeError):  # e.g. Min(x, log(0)): sympy refuses zoo
        with pytest.raises(ParseError, match="sympy cannot build"):
            parse(text)
        return
    assert parse(text) == reference


# -- ODE.from_strings --------------------------------------------------------------------------
def _lorenz():
    x_, y_, z_, s, r, b = sp.symbols("x y z sigma rho beta")
    return ODE([x_, y_, z_], [s * (y_ - x_), x_ * (r - z_) - y_, x_ * y_ - b * z_],
               params=[s, r, b])


def test_from_strings_builds_lorenz():
    texts = {"x": "sigma*(y - x)", "y": "x*(rho - z) - y", "z": "x*y - beta*z"}
    assert ODE.from_strings(texts, params=["sigma", "rho", "beta"]) == _lorenz()
    assert ODE.from_strings(list(texts.values()), states=["x", "y", "z"],
                            params="sigma, rho, beta") == _lorenz()
    assert ODE.from_strings(list(texts.values()), states="x y z",
                            params=sp.symbols("sigma rho beta")) == _lorenz()


def test_from_strings_time_and_symbols():
    ode = ODE.from_strings({"theta": "-k*theta + sin(tau)"}, params=["k"], t="tau")
    theta, tau = sp.symbols("theta tau")
    assert ode.t == tau and ode.rhs == (-k * theta + sp.sin(tau),)
    x_pos = sp.Symbol("x", positive=True)
    assert ODE.from_strings(["-x"], states=[x_pos]).states == (x_pos,)


def test_from_strings_reports_unknown_names():
    with pytest.raises(UnknownSymbolError, match=re.escape(
            "rhs[0] = -k*x uses 'k', which is not a state (x), a parameter (none) or the time "
            "symbol t. Add it to params=[...]")):
        ODE.from_strings({"x": "-k*x"})


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(rhs={"x": "x.y"}), ParseError, r"^rhs\[0\] \(dx/dt\): attribute access 'x.y'"),
    (dict(rhs={"x": "-x"}, states=["x"]), ExpressionError, "not both"),
    (dict(rhs=["-x"]), ExpressionError, r"give the state names as states=\[...\]"),
    (dict(rhs="-x", states=["x"]), ExpressionError, "rhs is a single string"),
    (dict(rhs=["-x", "y"], states=["x"]), ExpressionError, r"2 expressions for 1 states \(x\)"),
    (dict(rhs=["-x"], states=["1x"]), ExpressionError, r"states\[0\] = '1x' is not a usable name"),
    (dict(rhs={"x": "-x"}, params=["__k"]), ExpressionError, r"params\[0\] = '__k' is not"),
    (dict(rhs={"x": "-x"}, t=3), ExpressionError, "t = 3 is not a usable name"),
    (dict(rhs={"x": x}), ExpressionError, r"rhs\[0\] \(dx/dt\) is a Symbol, not a string"),
    (dict(rhs={"x": "-x"}, params=["x"]), ExpressionError, "'x' is used twice"),
    (dict(rhs={"x": "-x"}, params=5), ExpressionError, "params must be a sequence of names"),
])
def test_from_strings_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        ODE.from_strings(**kwargs)
