"""The continuous adjoint of the Neural ODE paper, re-integrating z backwards ("backsolve").

From the last saved time to the first, [z, a, a_θ] follow

    dz/dt = f,   da/dt = -a·∂f/∂z,   da_θ/dt = -a·∂f/∂θ,

with a(t_N) = dL/dy_N, a_θ(t_N) = 0; at each earlier saved time dL/dy_i is added to a and z is
reset to the forward value (Chen et al. 2018, Algorithm 2). Memory is O(1) in the number of
steps. Re-integrating z backwards drifts where the forward flow contracts strongly (dissipative
systems) or separates trajectories (chaotic ones): there the ``"checkpoint"`` adjoint, which
resets z at every forward step, is the fix. ``seminorm=True`` leaves a_θ out of the backward
error control (Kidger, Chen & Lyons 2021), which takes fewer backward steps.
"""

from __future__ import annotations

import numpy as np

from .augmented import array_segments, kernel_segments

__all__ = ["backsolve_kernel", "backsolve_arrays"]


def backsolve_kernel(dyn, tab, tgrid, y, cot, prm, rtol, atol, max_steps, seminorm,
                     h_fixed=None, device="cpu"):
    """Symbolic system, per trajectory: nodes are the saved times, last to first.

    ``y`` and ``cot`` have shape (T, batch, dim); returns ([z, a, a_θ] at t0, stats).
    """
    batch, T = tgrid.shape
    nodes = tgrid[:, ::-1]
    reset = y[::-1].transpose(1, 0, 2)
    jump = cot[::-1].transpose(1, 0, 2)
    n_nodes = np.full(batch, T, dtype=np.int64)
    return kernel_segments(dyn, tab, nodes, n_nodes, reset, jump, prm, rtol, atol, max_steps,
                           seminorm, h_fixed, device)


def backsolve_arrays(dyn, theta, tab, t, y, cot, rtol, atol, max_steps, seminorm,
                     step_size=None, controller=None, h_first=None):
    """Any Dynamics with ``vjp``, the batch as one system; ``t`` of shape (T,); ``h_first``:
    the first backward step (default: a fresh guess)."""
    return array_segments(dyn, theta, tab, t[::-1], y[::-1], cot[::-1], rtol, atol, max_steps,
                          seminorm, step_size, controller, h_first)
