r"""Butcher tableaus of the explicit Runge--Kutta methods symode integrates with.

An explicit :math:`s`-stage method advances :math:`y' = f(t, y)` from :math:`(t_0, y_0)` by one
step :math:`h` through the stages

.. math::

    k_i = f\Big(t_0 + c_i h,\; y_0 + h \sum_{j<i} a_{ij} k_j\Big), \qquad
    y_1 = y_0 + h \sum_{i} b_i k_i .

Adaptive pairs carry a second weight vector :math:`\hat b` of lower order; symode stores the
difference :math:`e = b - \hat b` so that the local error estimate is :math:`h \sum_i e_i k_i`.
A continuous extension (dense output) evaluates, for :math:`\theta \in [0, 1]`,

.. math::

    u(t_0 + \theta h) = y_0 + h \sum_i k_i\, b_i(\theta), \qquad
    b_i(\theta) = \sum_{j \ge 1} p_{ij}\, \theta^{j},

where the sum may run over a few extra stages evaluated only when interpolating.

Coefficients are stored exactly (:class:`fractions.Fraction`) wherever the source gives them as
rationals, and as full-precision floats otherwise.  Engines that need numbers call
:meth:`ButcherTableau.as_float`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import SymodeError
from .rosenbrock_tableaus import ROSENBROCK_METHODS, RosenbrockTableau

__all__ = ["DenseOutput", "ButcherTableau", "FloatTableau", "METHODS", "get_tableau"]


def _tuple(x: Any) -> tuple:
    """Nested sequences as nested tuples (so tableaus stay hashable)."""
    if isinstance(x, (list, tuple, np.ndarray)):
        return tuple(_tuple(v) for v in x)
    return x


def _readonly(x) -> np.ndarray:
    """``x`` (nested sequences of Fractions or floats) as a read-only float64 array."""
    arr = np.array(x, dtype=np.float64)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class DenseOutput:
    r"""Continuous extension of one Runge--Kutta step.

    .. math::

        u(t_0 + \theta h) = y_0 + h \sum_{i=0}^{s+m-1} k_i\, b_i(\theta), \qquad
        b_i(\theta) = \sum_{j=0}^{d-1} p_{ij}\, \theta^{j+1},

    with :math:`s` main stages, :math:`m` extra stages and degree :math:`d`.

    Parameters
    ----------
    a : tuple of tuple
        Coefficient rows of the extra stages.  Extra stage :math:`j` (counted from 0) is
        :math:`k_{s+j} = f(t_0 + c_j h,\, y_0 + h \sum_{l < s+j} a_{jl} k_l)`, so row :math:`j`
        has length :math:`s + j`: all main stages, then the earlier extra stages.
    c : tuple
        Nodes of the extra stages.
    p : tuple of tuple
        Polynomial coefficients, shape :math:`(s + m, d)`; row :math:`i` belongs to stage
        :math:`k_i` (main stages first, then extra stages) and column :math:`j` multiplies
        :math:`\theta^{j+1}`.
    order : int
        Order of the interpolant: :math:`u(t_0 + \theta h) - y(t_0 + \theta h) =
        O(h^{\text{order}+1})` uniformly in :math:`\theta`.
    """

    a: tuple[tuple, ...]
    c: tuple
    p: tuple[tuple, ...]
    order: int

    def __post_init__(self):
        for name in ("a", "c", "p"):
            object.__setattr__(self, name, _tuple(getattr(self, name)))
        if len(self.a) != len(self.c):
            raise ValueError(f"dense output: {len(self.a)} extra-stage rows but {len(self.c)} "
                             "extra nodes")
        for j in range(1, len(self.a)):
            if len(self.a[j]) != len(self.a[0]) + j:
                raise ValueError(f"dense output: extra row {j} has length {len(self.a[j])}, "
                                 f"expected {len(self.a[0]) + j} (one more than the row before)")
        if not self.p or not self.p[0]:
            raise ValueError("dense output: p must have at least one row and one column")
        if any(len(row) != len(self.p[0]) for row in self.p):
            raise ValueError("dense output: the rows of p must all have the same length")
        if int(self.order) != self.order or self.order < 1:
            raise ValueError(f"dense output: order must be a positive integer, got {self.order!r}")

    @property
    def degree(self) -> int:
        """Degree of the polynomials :math:`b_i(\\theta)`."""
        return len(self.p[0])


@dataclass(frozen=True)
class FloatTableau:
    """A tableau as read-only ``float64`` arrays (see :meth:`ButcherTableau.as_float`).

    Attributes are ``a`` (s, s), ``b`` (s,), ``c`` (s,), ``b_err`` and ``b_err3`` (s,) or
    ``None``, and ``dense_a`` (m, s + m - 1, rows zero-padded), ``dense_c`` (m,), ``dense_p``
    (s + m, d) or ``None`` when the method has no dense output.
    """

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    b_err: np.ndarray | None
    b_err3: np.ndarray | None
    dense_a: np.ndarray | None
    dense_c: np.ndarray | None
    dense_p: np.ndarray | None


@dataclass(frozen=True)
class ButcherTableau:
    r"""An explicit Runge--Kutta method, optionally with an embedded pair and dense output.

    Parameters
    ----------
    name : str
        Method name (the key in :data:`METHODS`).
    a : tuple of tuple
        The :math:`s \times s` strictly lower triangular matrix :math:`(a_{ij})`.
    b : tuple
        Weights :math:`b_i` of the propagated solution.
    c : tuple
        Nodes :math:`c_i`.
    order : int
        Classical order :math:`p` of the propagated solution.
    b_err : tuple, optional
        :math:`b - \hat b`; the local error estimate is :math:`h \sum_i (b_i - \hat b_i) k_i`.
        ``None`` for fixed-step methods.
    error_order : int, optional
        Order :math:`\hat p` of the embedded solution; step-size controllers use the exponent
        :math:`1/(\hat p + 1)`.
    b_err3 : tuple, optional
        A second, third-order error estimate (DOP853 only), combined with the first as
        :math:`\mathrm{err} = \mathrm{err}_5^2 / \sqrt{\mathrm{err}_5^2 + 0.01\,\mathrm{err}_3^2}`.
    dense : DenseOutput, optional
        Continuous extension; ``None`` lets the engine fall back to cubic Hermite interpolation.

    Raises
    ------
    ValueError
        If the shapes are inconsistent or ``a`` is not strictly lower triangular.
    """

    name: str
    a: tuple[tuple, ...]
    b: tuple
    c: tuple
    order: int
    b_err: tuple | None = None
    error_order: int | None = None
    b_err3: tuple | None = None
    dense: DenseOutput | None = None

    def __post_init__(self):
        for name in ("a", "b", "c", "b_err", "b_err3"):
            object.__setattr__(self, name, _tuple(getattr(self, name)))
        s, who = len(self.b), f"tableau {self.name!r}"
        if s == 0:
            raise ValueError(f"{who}: at least one stage is needed")
        if len(self.c) != s:
            raise ValueError(f"{who}: len(c) = {len(self.c)} but len(b) = {s}")
        if len(self.a) != s or any(len(row) != s for row in self.a):
            raise ValueError(f"{who}: a must be {s}x{s} (rows padded with zeros)")
        for i, row in enumerate(self.a):
            if any(row[j] != 0 for j in range(i, s)):
                raise ValueError(f"{who}: a must be strictly lower triangular (row {i})")
        for name in ("b_err", "b_err3"):
            v = getattr(self, name)
            if v is not None and len(v) != s:
                raise ValueError(f"{who}: len({name}) = {len(v)} but the method has {s} stages")
        if (self.b_err is None) != (self.error_order is None):
            raise ValueError(f"{who}: b_err and error_order go together")
        if self.b_err3 is not None and self.b_err is None:
            raise ValueError(f"{who}: b_err3 needs b_err")
        d = self.dense
        if d is not None:
            if d.a and len(d.a[0]) != s:
                raise ValueError(f"{who}: the first extra dense stage row has length "
                                 f"{len(d.a[0])}, expected {s}")
            if len(d.p) != s + len(d.c):
                raise ValueError(f"{who}: dense p has {len(d.p)} rows, expected "
                                 f"{s} stages + {len(d.c)} extra = {s + len(d.c)}")

    @property
    def n_stages(self) -> int:
        """Number :math:`s` of main stages."""
        return len(self.b)

    @property
    def fsal(self) -> bool:
        r"""First same as last: :math:`c_s = 1` and :math:`a_{sj} = b_j`, so the last stage is
        :math:`f(t_1, y_1)` and serves as the first stage of the next step."""
        return self.n_stages > 1 and self.c[-1] == 1 and tuple(self.a[-1]) == tuple(self.b)

    @property
    def adaptive(self) -> bool:
        """Whether the method has an embedded error estimate."""
        return self.b_err is not None

    def __hash__(self) -> int:
        # hashing Fractions is slow and tableaus key the compiled-kernel caches: hash once
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((self.name, self.a, self.b, self.c, self.order, self.b_err,
                           self.error_order, self.b_err3, self.dense))
            self.__dict__["_hash"] = cached
        return cached

    def as_float(self) -> FloatTableau:
        """The coefficients as read-only ``float64`` arrays (computed once per tableau)."""
        cached = self.__dict__.get("_float")
        if cached is None:
            dense_a = dense_c = dense_p = None
            if self.dense is not None:
                m, s = len(self.dense.c), self.n_stages
                rows = [tuple(row) + (0,) * (s + m - 1 - len(row)) for row in self.dense.a]
                dense_a = _readonly(np.reshape(np.array(rows, dtype=float), (m, s + max(m - 1, 0))))
                dense_c, dense_p = _readonly(self.dense.c), _readonly(self.dense.p)
            cached = FloatTableau(
                a=_readonly(self.a), b=_readonly(self.b), c=_readonly(self.c),
                b_err=None if self.b_err is None else _readonly(self.b_err),
                b_err3=None if self.b_err3 is None else _readonly(self.b_err3),
                dense_a=dense_a, dense_c=dense_c, dense_p=dense_p)
            self.__dict__["_float"] = cached  # a cache, not a field: equality and hash ignore it
        return cached


# --------------------------------------------------------------------------------------------
# construction helpers


def _q(*xs) -> tuple:
    """Exact rationals from strings such as ``"35/384"`` (ints pass through as Fractions)."""
    return tuple(Fraction(x) for x in xs)


def _lower(rows) -> tuple:
    """Pad the ragged rows of a lower triangular matrix (row ``i`` holds ``i`` entries) to s×s."""
    s = len(rows)
    return tuple(tuple(row) + (Fraction(0),) * (s - len(row)) for row in rows)


def _sub(u, v) -> tuple:
    return tuple(x - y for x, y in zip(u, v))


# --------------------------------------------------------------------------------------------
# fixed-step methods


EULER = ButcherTableau("euler", a=_lower([()]), b=_q(1), c=_q(0), order=1)

MIDPOINT = ButcherTableau("midpoint", a=_lower([(), _q("1/2")]), b=_q(0, 1), c=_q(0, "1/2"),
                          order=2)

# Heun's second-order method (explicit trapezoidal rule)
HEUN = ButcherTableau("heun", a=_lower([(), _q(1)]), b=_q("1/2", "1/2"), c=_q(0, 1), order=2)

RK4 = ButcherTableau(
    "rk4",
    a=_lower([(), _q("1/2"), _q(0, "1/2"), _q(0, 0, 1)]),
    b=_q("1/6", "1/3", "1/3", "1/6"),
    c=_q(0, "1/2", "1/2", 1),
    order=4)


# --------------------------------------------------------------------------------------------
# Bogacki--Shampine 3(2) (Appl. Math. Lett. 2 (1989) 321-325), FSAL, cubic Hermite dense output
# expressed in the stages (the same interpolant as scipy's RK23).

_BS3_B = _q("2/9", "1/3", "4/9", 0)
_BS3_BHAT = _q("7/24", "1/4", "1/3", "1/8")

BOSH3 = ButcherTableau(
    "bosh3",
    a=_lower([(), _q("1/2"), _q(0, "3/4"), _BS3_B[:3]]),
    b=_BS3_B,
    c=_q(0, "1/2", "3/4", 1),
    order=3,
    b_err=_sub(_BS3_B, _BS3_BHAT),
    error_order=2,
    dense=DenseOutput(a=(), c=(), order=3, p=(
        _q(1, "-4/3", "5/9"),
        _q(0, 1, "-2/3"),
        _q(0, "4/3", "-8/9"),
        _q(0, -1, 1),
    )))


# --------------------------------------------------------------------------------------------
# Dormand--Prince 5(4) (J. Comput. Appl. Math. 6 (1980) 19-26), FSAL.  Dense output of order 4
# from Hairer, Norsett & Wanner, "Solving ODEs I", and Shampine, Math. Comp. 46 (1986) 135-150
# (the interpolant of DOPRI5 and of scipy's RK45).

_DP5_B = _q("35/384", 0, "500/1113", "125/192", "-2187/6784", "11/84", 0)
_DP5_BHAT = _q("5179/57600", 0, "7571/16695", "393/640", "-92097/339200", "187/2100", "1/40")

DOPRI5 = ButcherTableau(
    "dopri5",
    a=_lower([
        (),
        _q("1/5"),
        _q("3/40", "9/40"),
        _q("44/45", "-56/15", "32/9"),
        _q("19372/6561", "-25360/2187", "64448/6561", "-212/729"),
        _q("9017/3168", "-355/33", "46732/5247", "49/176", "-5103/18656"),
        _DP5_B[:6],
    ]),
    b=_DP5_B,
    c=_q(0, "1/5", "3/10", "4/5", "8/9", 1, 1),
    order=5,
    b_err=_sub(_DP5_B, _DP5_BHAT),
    error_order=4,
    dense=DenseOutput(a=(), c=(), order=4, p=(
        _q(1, "-8048581381/2820520608", "8663915743/2820520608", "-12715105075/11282082432"),
        _q(0, 0, 0, 0),
        _q(0, "131558114200/32700410799", "-68118460800/10900136933",
           "87487479700/32700410799"),
        _q(0, "-1754552775/470086768", "14199869525/1410260304", "-10690763975/1880347072"),
        _q(0, "127303824393/49829197408", "-318862633887/49829197408",
           "701980252875/199316789632"),
        _q(0, "-282668133/205662961", "2019193451/616988883", "-1453857185/822651844"),
        _q(0, "40617522/29380423", "-110615467/29380423", "69997945/29380423"),
    )))


# --------------------------------------------------------------------------------------------
# Tsitouras 5(4), Ch. Tsitouras, "Runge-Kutta pairs of order 5(4) satisfying only the first column
# simplifying assumption", Comput. Math. Appl. 62 (2011) 770-775.  FSAL.  The paper gives the
# coefficients to many digits (also transcribed in OrdinaryDiffEq.jl's Tsit5 tables); they are
# stored here rounded to double precision (the rational ones exactly), together with the paper's
# fourth-order interpolation polynomials b_i(theta) in expanded (monomial) form.

_TS5_B = (0.09646076681806523, Fraction(1, 100), 0.4798896504144996, 1.379008574103742,
          -3.290069515436081, 2.324710524099774, Fraction(0))

TSIT5 = ButcherTableau(
    "tsit5",
    a=_lower([
        (),
        (Fraction(161, 1000),),
        (-0.008480655492356989, 0.335480655492357),
        (2.8971530571054935, -6.359448489975075, 4.3622954328695815),
        (5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525),
        (5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401,
         -0.028269050394068383),
        _TS5_B[:6],
    ]),
    b=_TS5_B,
    c=(Fraction(0), Fraction(161, 1000), Fraction(327, 1000), Fraction(9, 10),
       0.9800255409045097, Fraction(1), Fraction(1)),
    order=5,
    # b - b_hat; b_hat is the fourth-order companion of the paper
    b_err=(0.0017800110522257714, 0.0008164344596567469, -0.007880878010261995,
           0.1447110071732629, -0.5823571654525552, 0.45808210592918697, Fraction(-1, 66)),
    error_order=4,
    dense=DenseOutput(a=(), c=(), order=4, p=(
        (1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216),
        (0.0, 0.13169999999999998, -0.2234, 0.1017),
        (0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253),
        (0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902),
        (0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928),
        (0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661),
        (0.0, 1.5, -4.0, 2.5),
    )))


# --------------------------------------------------------------------------------------------
# Dormand--Prince 8(5,3) as in Hairer's DOP853 (Hairer, Norsett & Wanner, "Solving ODEs I",
# 2nd ed., Sec. II.10; the same constants as scipy's DOP853), rounded to double precision.
# E5 and E3 are b minus a fifth- and a third-order embedded weight vector; the combined error
# err5^2 / sqrt(err5^2 + 0.01 err3^2) behaves like an order-7 estimate, hence error_order = 7.
# The three extra stages and the 4 x 16 matrix D belong to Hairer's order-7 dense output.

_DOP853_C = (
    0.0, 0.05260015195876773, 0.0789002279381516, 0.1183503419072274, 0.2816496580927726,
    0.3333333333333333, 0.25, 0.3076923076923077, 0.6512820512820513, 0.6, 0.8571428571428571, 1.0,
)
_DOP853_A = (
    (0.05260015195876773,),
    (0.0197250569845379, 0.0591751709536137),
    (0.02958758547680685, 0.0, 0.08876275643042054),
    (0.2413651341592667, 0.0, -0.8845494793282861, 0.924834003261792),
    (0.037037037037037035, 0.0, 0.0, 0.17082860872947386, 0.12546768756682242),
    (0.037109375, 0.0, 0.0, 0.17025221101954405, 0.06021653898045596, -0.017578125),
    (0.03709200011850479, 0.0, 0.0, 0.17038392571223998, 0.10726203044637328,
     -0.015319437748624402, 0.008273789163814023),
    (0.6241109587160757, 0.0, 0.0, -3.3608926294469414, -0.868219346841726, 27.59209969944671,
     20.154067550477894, -43.48988418106996),
    (0.47766253643826434, 0.0, 0.0, -2.4881146199716677, -0.590290826836843, 21.230051448181193,
     15.279233632882423, -33.28821096898486, -0.020331201708508627),
    (-0.9371424300859873, 0.0, 0.0, 5.186372428844064, 1.0914373489967295, -8.149787010746927,
     -18.52006565999696, 22.739487099350505, 2.4936055526796523, -3.0467644718982196),
    (2.273310147516538, 0.0, 0.0, -10.53449546673725, -2.0008720582248625, -17.9589318631188,
     27.94888452941996, -2.8589982771350235, -8.87285693353063, 12.360567175794303,
     0.6433927460157636),
)
_DOP853_B = (
    0.054293734116568765, 0.0, 0.0, 0.0, 0.0, 4.450312892752409, 1.8915178993145003,
    -5.801203960010585, 0.3111643669578199, -0.1521609496625161, 0.20136540080403034,
    0.04471061572777259,
)
_DOP853_E5 = (
    0.01312004499419488, 0.0, 0.0, 0.0, 0.0, -1.2251564463762044, -0.4957589496572502,
    1.6643771824549864, -0.35032884874997366, 0.3341791187130175, 0.08192320648511571,
    -0.022355307863886294,
)
_DOP853_E3 = (
    -0.18980075407240762, 0.0, 0.0, 0.0, 0.0, 4.450312892752409, 1.8915178993145003,
    -5.801203960010585, -0.4226823213237919, -0.1521609496625161, 0.20136540080403034,
    0.02265179219836082,
)
_DOP853_EXTRA_C = (0.1, 0.2, 0.7777777777777778)
_DOP853_EXTRA_A = (
    (0.056167502283047954, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25350021021662483, -0.2462390374708025,
     -0.12419142326381637, 0.15329179827876568, 0.00820105229563469, 0.007567897660545699,
     -0.008298),
    (0.03183464816350214, 0.0, 0.0, 0.0, 0.0, 0.028300909672366776, 0.053541988307438566,
     -0.05492374857139099, 0.0, 0.0, -0.00010834732869724932, 0.0003825710908356584,
     -0.00034046500868740456, 0.1413124436746325),
    (-0.42889630158379194, 0.0, 0.0, 0.0, 0.0, -4.697621415361164, 7.683421196062599,
     4.06898981839711, 0.3567271874552811, 0.0, 0.0, 0.0, -0.0013990241651590145,
     2.9475147891527724, -9.15095847217987),
)
_DOP853_D = (
    (-8.428938276109013, 0.0, 0.0, 0.0, 0.0, 0.5667149535193777, -3.0689499459498917,
     2.38466765651207, 2.117034582445028, -0.871391583777973, 2.2404374302607883,
     0.6315787787694688, -0.08899033645133331, 18.148505520854727, -9.194632392478356,
     -4.436036387594894),
    (10.427508642579134, 0.0, 0.0, 0.0, 0.0, 242.28349177525817, 165.20045171727028,
     -374.5467547226902, -22.113666853125306, 7.733432668472264, -30.674084731089398,
     -9.332130526430229, 15.697238121770845, -31.139403219565178, -9.35292435884448,
     35.81684148639408),
    (19.985053242002433, 0.0, 0.0, 0.0, 0.0, -387.0373087493518, -189.17813819516758,
     527.8081592054236, -11.57390253995963, 6.8812326946963, -1.0006050966910838,
     0.7777137798053443, -2.778205752353508, -60.19669523126412, 84.32040550667716,
     11.99229113618279),
    (-25.69393346270375, 0.0, 0.0, 0.0, 0.0, -154.18974869023643, -231.5293791760455,
     357.6391179106141, 93.40532418362432, -37.45832313645163, 104.0996495089623, 29.8402934266605,
     -43.53345659001114, 96.32455395918828, -39.17726167561544, -149.72683625798564),
)


def _dop853_dense() -> DenseOutput:
    r"""Hairer's DOP853 interpolant rewritten in the :class:`DenseOutput` form.

    With :math:`\Delta = y_1 - y_0 = h\sum b_i k_i`, stages :math:`k_0, \dots, k_{15}`
    (:math:`k_{12} = f(t_1, y_1)`, then the three extra stages) and
    :math:`r_3..r_6 = h \sum_i D_{mi} k_i`, DOP853 evaluates

    .. math::

        u(\theta) = y_0 + \theta\big(r_0 + (1-\theta)(r_1 + \theta(r_2 + (1-\theta)(r_3
        + \theta(r_4 + (1-\theta)(r_5 + \theta r_6))))))\big)

    with :math:`r_0 = \Delta`, :math:`r_1 = h k_0 - \Delta`,
    :math:`r_2 = 2\Delta - h(k_0 + k_{12})`.  Every :math:`r_m = h\sum_i M_{mi} k_i` is linear in
    the stages and multiplies the polynomial :math:`w_m(\theta) = \theta^{\lceil (m+1)/2 \rceil}
    (1-\theta)^{\lfloor (m+1)/2 \rfloor}`, so :math:`b_i(\theta) = \sum_m M_{mi} w_m(\theta)` and
    the monomial coefficients are :math:`p = M^T W` with :math:`W_{mj}` the coefficient of
    :math:`\theta^{j+1}` in :math:`w_m`.  Computed in double precision at import.
    """
    n = 16
    b = np.zeros(n)
    b[:12] = _DOP853_B
    e0, e12 = np.eye(n)[0], np.eye(n)[12]
    m = np.vstack([b, e0 - b, 2 * b - e0 - e12, np.array(_DOP853_D, dtype=float)])
    w = np.zeros((7, 7))
    poly = np.polynomial.polynomial
    for k in range(7):
        coef = poly.polymul(poly.polypow([0.0, 1.0], (k + 2) // 2),
                            poly.polypow([1.0, -1.0], (k + 1) // 2))
        w[k, :len(coef) - 1] = coef[1:]  # w_k(0) = 0: no constant term
    p = m.T @ w
    extra_a = (_DOP853_B,) + _DOP853_EXTRA_A
    return DenseOutput(a=extra_a, c=(1.0,) + _DOP853_EXTRA_C, order=7,
                       p=tuple(tuple(float(x) for x in row) for row in p))


DOP853 = ButcherTableau(
    "dop853",
    a=_lower(((),) + _DOP853_A),
    b=_DOP853_B,
    c=_DOP853_C,
    order=8,
    b_err=_DOP853_E5,
    error_order=7,
    b_err3=_DOP853_E3,
    dense=_dop853_dense())


METHODS: dict[str, ButcherTableau] = {
    tab.name: tab for tab in (EULER, MIDPOINT, HEUN, RK4, BOSH3, DOPRI5, TSIT5, DOP853)
}


def get_tableau(method):
    """The tableau called ``method`` (case-insensitive), or ``method`` itself if it is one:
    a :class:`ButcherTableau`, or for a stiff method (``"rodas4"``, ``"rodas5p"``) a
    :class:`~symode.solvers.rosenbrock_tableaus.RosenbrockTableau`.

    Raises
    ------
    SymodeError
        If no method of that name exists; the message lists the known names.
    """
    if isinstance(method, (ButcherTableau, RosenbrockTableau)):
        return method
    if isinstance(method, str) and method.lower() in METHODS:
        return METHODS[method.lower()]
    if isinstance(method, str) and method.lower() in ROSENBROCK_METHODS:
        return ROSENBROCK_METHODS[method.lower()]
    raise SymodeError(f"unknown method {method!r}; known methods: {', '.join(METHODS)}, and "
                      f"for stiff systems {', '.join(ROSENBROCK_METHODS)} (or pass a "
                      "ButcherTableau)")
