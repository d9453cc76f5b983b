r"""Rosenbrock methods: linearly implicit one-step methods for stiff systems.

A Rosenbrock method replaces the nonlinear solves of an implicit Runge--Kutta method by one
linear solve per stage with the exact Jacobian :math:`J = \partial f/\partial y(t_0, y_0)`,
which symode derives symbolically. In the transformed form of Hairer & Wanner (Solving ODEs II,
IV.7), a step :math:`h` from :math:`(t_0, y_0)` computes the stage increments :math:`U_i` from

.. math::

    \Big(\frac{1}{h\gamma} I - J\Big) U_i
        = f\Big(t_0 + \alpha_i h,\; y_0 + \sum_{j<i} a_{ij} U_j\Big)
          + \sum_{j<i} \frac{c_{ij}}{h} U_j
          + \gamma_i\, h\, \frac{\partial f}{\partial t}(t_0, y_0),

    y_1 = y_0 + \sum_i m_i U_i, \qquad \text{error estimate } \sum_i e_i U_i,

so one LU factorisation of :math:`I/(h\gamma) - J` serves every stage of a step (and every
retry of a rejected step only refactors it). A stage whose ``new_f`` flag is false reuses the
previous stage's :math:`f` value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RosenbrockTableau", "ROSENBROCK_METHODS", "RODAS4", "RODAS5P"]


def _rows(x: Any) -> tuple:
    return tuple(tuple(float(v) for v in row) for row in x)


@dataclass(frozen=True)
class RosenbrockTableau:
    """A Rosenbrock method in the transformed form (see the module docstring).

    Parameters
    ----------
    name : str
    gamma : float
        The diagonal coefficient :math:`\\gamma`.
    alpha, gammas : tuple of float, length s
        Stage times :math:`\\alpha_i` and the weights :math:`\\gamma_i` of ``∂f/∂t``.
    a, c : tuple of tuple, (s, s)
        Strictly lower-triangular coupling coefficients :math:`a_{ij}`, :math:`c_{ij}`.
    m, e : tuple of float, length s
        Weights of the solution and of the error estimate.
    new_f : tuple of bool, length s
        Whether stage i evaluates f (False: it reuses stage i-1's value).
    order, error_order : int
        Order of the solution and of the embedded solution the error estimate compares with.
    """

    name: str
    gamma: float
    alpha: tuple
    gammas: tuple
    a: tuple
    c: tuple
    m: tuple
    e: tuple
    new_f: tuple
    order: int
    error_order: int

    def __post_init__(self):
        s = len(self.alpha)
        for field in ("gammas", "m", "e", "new_f"):
            if len(getattr(self, field)) != s:
                raise ValueError(f"{self.name}: {field} needs {s} entries")
        for field in ("a", "c"):
            rows = _rows(getattr(self, field))
            if len(rows) != s or any(len(r) != s for r in rows) or any(
                    rows[i][j] != 0.0 for i in range(s) for j in range(i, s)):
                raise ValueError(f"{self.name}: {field} must be strictly lower triangular, "
                                 f"{s} x {s}")
            object.__setattr__(self, field, rows)
        if not self.new_f[0]:
            raise ValueError(f"{self.name}: the first stage evaluates f")

    adaptive = True    # what the checks of solve() ask of any method

    @property
    def stages(self) -> int:
        return len(self.alpha)


def _lower(s: int, packed: list[float]) -> list[list[float]]:
    """Row-wise packed strictly-lower entries (a21, a31, a32, a41, ...) as an s x s matrix."""
    out = [[0.0] * s for _ in range(s)]
    it = iter(packed)
    for i in range(1, s):
        for j in range(i):
            out[i][j] = next(it)
    return out


# RODAS (Hairer & Wanner, Solving ODEs II, IV.7, Table 7.2 and the code RODAS): order 4 with
# an embedded order-3 solution, 6 stages, L-stable and stiffly accurate (the last two stages
# evaluate f at the solution itself, so the error estimate is the last increment).
_R4_A = [1.544, 0.9466785280815826, 0.2557011698983284, 3.314825187068521,
         2.896124015972201, 0.9986419139977817, 1.221224509226641, 6.019134481288629,
         12.53708332932087, -0.687886036105895, 1.221224509226641, 6.019134481288629,
         12.53708332932087, -0.687886036105895, 1.0]
_R4_C = [-5.6688, -2.430093356833875, -0.2063599157091915, -0.1073529058151375,
         -9.594562251023355, -20.47028614809616, 7.496443313967647, -10.24680431464352,
         -33.99990352819905, 11.7089089320616, 8.083246795921522, -7.981132988064893,
         -31.52159432874371, 16.31930543123136, -6.058818238834054]
RODAS4 = RosenbrockTableau(
    name="rodas4", gamma=0.25,
    alpha=(0.0, 0.386, 0.21, 0.63, 1.0, 1.0),
    gammas=(0.25, -0.1043, 0.1035, -0.0362, 0.0, 0.0),
    a=_lower(6, _R4_A), c=_lower(6, _R4_C),
    m=(1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895, 1.0, 1.0),
    e=(0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
    new_f=(True,) * 6, order=4, error_order=3)


# Rodas5P (Steinebach, "Construction of Rosenbrock-Wanner method Rodas5P and numerical
# benchmarks within the Julia Differential Equations package", BIT 63, 2023): order 5 with an
# embedded order-4 solution, 8 stages, L-stable and stiffly accurate like RODAS, with its
# coefficients chosen for less order reduction on stiff problems (Prothero-Robinson) and on
# index-1 algebraic constraints. Stages 7 and 8 start from the solution of stages 6 and 7.
_R5P_A6 = [-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256,
           0.030198172008377946]
_R5P_A = ([3.0, 2.849394379747939, 0.45842242204463923, -6.954028509809101, 2.489845061869568,
           -10.358996098473584, 2.8029986275628964, 0.5072464736228206, -0.3988312541770524,
           -0.04721187230404641] + _R5P_A6 + _R5P_A6 + [1.0] + _R5P_A6 + [1.0, 1.0])
_R5P_C = [-14.155112264123755, -17.97296035885952, -2.859693295451294, 147.12150275711716,
          -1.41221402718213, 71.68940251302358, 165.43517024871676, -0.4592823456491126,
          42.90938336958603, -5.961986721573306, 24.854864614690072, -3.0009227002832186,
          47.4931110020768, 5.5814197821558125, -0.6610691825249471, 30.91273214028599,
          -3.1208243349937974, 77.79954646070892, 34.28646028294783, -19.097331116725623,
          -28.087943162872662, 37.80277123390563, -3.2571969029072276, 112.26918849496327,
          66.9347231244047, -40.06618937091002, -54.66780262877968, -9.48861652309627]
RODAS5P = RosenbrockTableau(
    name="rodas5p", gamma=0.21193756319429014,
    alpha=(0.0, 0.6358126895828704, 0.4095798393397535, 0.9769306725060716, 0.4288403609558664,
           1.0, 1.0, 1.0),
    gammas=(0.21193756319429014, -0.42387512638858027, -0.3384627126235924, 1.8046452872882734,
            2.325825639765069, 0.0, 0.0, 0.0),
    a=_lower(8, _R5P_A), c=_lower(8, _R5P_C),
    m=tuple(_R5P_A6) + (1.0, 1.0, 1.0),
    e=(0.0,) * 7 + (1.0,),
    new_f=(True,) * 8, order=5, error_order=4)

ROSENBROCK_METHODS: dict[str, RosenbrockTableau] = {tab.name: tab for tab in (RODAS4, RODAS5P)}
