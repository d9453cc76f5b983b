"""What a solve returns: values at the requested times and the statistics of the work done."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Solution", "Stats"]


@dataclass(frozen=True)
class Stats:
    """Work done by a solve, one entry per trajectory.

    Attributes
    ----------
    nfev : ndarray of int, shape (batch,)
        Right-hand-side evaluations.
    naccept, nreject : ndarray of int, shape (batch,)
        Accepted and rejected steps.
    shared : bool
        True when the batch was stepped together (array engine): then every entry is the same.
    """

    nfev: NDArray[np.int64]
    naccept: NDArray[np.int64]
    nreject: NDArray[np.int64]
    shared: bool = False

    def __post_init__(self):
        shapes = {np.shape(self.nfev), np.shape(self.naccept), np.shape(self.nreject)}
        if len(shapes) != 1:
            raise ValueError(f"nfev, naccept and nreject must have one shape, got {shapes}")

    @property
    def nsteps(self) -> NDArray[np.int64]:
        """Attempted steps (accepted + rejected), per trajectory."""
        return self.naccept + self.nreject

    def total(self) -> dict[str, int]:
        """Totals over the batch (for a shared-step solve: the batch's own counts)."""
        if self.shared:
            return {k: int(np.max(getattr(self, k), initial=0))
                    for k in ("nfev", "naccept", "nreject")}
        return {k: int(np.sum(getattr(self, k))) for k in ("nfev", "naccept", "nreject")}

    def __str__(self) -> str:
        def row(name, v):
            v = np.asarray(v)
            if v.size == 0:
                return f"{name}: -"
            return f"{name}: mean {v.mean():.1f}, min {v.min()}, max {v.max()}"

        kind = "shared by the batch" if self.shared else f"per trajectory, {np.size(self.nfev)}"
        return "Stats (" + kind + ")\n  " + "\n  ".join(
            row(n, getattr(self, n)) for n in ("nfev", "naccept", "nreject"))


@dataclass(frozen=True)
class Solution:
    """The result of :func:`symode.solve`.

    Attributes
    ----------
    t : ndarray, shape (T,) or (batch, T)
        The requested times, as given.
    y : ndarray, shape (T, batch, dim), or (T, dim) when ``y0`` was one state
        Values at exactly the requested times (dense output between steps).
    stats : Stats
    method : str
    engine : str
        ``"kernel"`` or ``"array"``.
    device : str
        ``"cpu"`` or ``"cuda"``: where the solve ran.
    """

    t: NDArray[np.float64]
    y: NDArray[np.float64]
    stats: Stats
    method: str
    engine: str
    device: str = "cpu"

    def __repr__(self) -> str:
        tot = self.stats.total()
        return (f"Solution(method={self.method!r}, engine={self.engine!r}, "
                f"device={self.device!r}, t: {np.shape(self.t)}, "
                f"y: {np.shape(self.y)}, nfev={tot['nfev']}, naccept={tot['naccept']}, "
                f"nreject={tot['nreject']})")
