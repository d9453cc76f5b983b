"""Plots of systems, solutions and densities with matplotlib (the optional ``plot`` extra).

matplotlib is imported when a function here is first called, not when symode is imported;
without it each function raises :class:`~symode.SymodeError` saying ``pip install
"symode[plot]"``. Every function draws on ``ax`` (a new figure when None) and returns the Axes;
extra keyword arguments go to the matplotlib call that draws.

================================  ==========================================================
:func:`slope_field`               segments of slope ``f(t, y)`` of a scalar equation
:func:`vector_field`              arrows or streamlines of ``f`` in a plane of the state space
:func:`phase_portrait`            vector field plus solutions of a two-state system
:func:`trajectories`              solutions against time, or one state against another
:func:`nfe_histogram`             the work per trajectory of a solve (NFE, steps)
:func:`density`                   an image of ``exp(log p)`` on a rectangle
:func:`sample_histogram`          a 2-D histogram of samples
================================  ==========================================================

>>> import symode as so, sympy as sp
>>> x, y = sp.symbols("x y")
>>> rotation = so.ODE([x, y], [y, -x])
>>> ax = so.viz.vector_field(rotation, (-2, 2), (-2, 2))   # doctest: +SKIP
"""

from .densities import density, sample_histogram
from .fields import phase_portrait, slope_field, vector_field
from .solutions import nfe_histogram, trajectories

__all__ = ["slope_field", "vector_field", "phase_portrait", "trajectories", "nfe_histogram",
           "density", "sample_histogram"]
