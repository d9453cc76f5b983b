"""The checkpointed continuous adjoint: the backward pass of ``backsolve``, but z is reset to
the stored forward state at every accepted forward step, not only at the saved times.

Between two checkpoints z is re-integrated over a single forward step, so it cannot drift far:
this stays accurate on dissipative and chaotic systems where ``backsolve`` does not. Memory
grows with the number of forward steps (one state per step and trajectory), never with stages.
"""

from __future__ import annotations

import numpy as np

from .augmented import array_segments, kernel_segments

__all__ = ["checkpoint_kernel", "checkpoint_arrays", "merge_nodes"]


def merge_nodes(t_obs, y_obs, cot, t_rec, y_rec):
    """Saved times and step checkpoints of one trajectory, last to first.

    Parameters
    ----------
    t_obs : ndarray, shape (T,)
    y_obs, cot : ndarray, shape (T, ...)
    t_rec : ndarray, shape (n,)
        Ends of the accepted forward steps.
    y_rec : ndarray, shape (n, ...)

    Returns
    -------
    nodes : ndarray, shape (K,)
    reset, jump : ndarray, shape (K, ...)
        Forward state and cotangent (zero at plain checkpoints) at each node.
    """
    times = np.concatenate([t_obs, t_rec])
    _, first = np.unique(times, return_index=True)     # a saved time wins over a checkpoint
    forward = t_obs[-1] >= t_obs[0]
    order = first[np.argsort(times[first])]
    if forward:
        order = order[::-1]
    states = np.concatenate([y_obs, y_rec])
    jumps = np.concatenate([cot, np.zeros_like(y_rec)])
    return times[order], states[order], jumps[order]


def checkpoint_kernel(dyn, tab, tgrid, y, cot, rec, prm, rtol, atol, max_steps, seminorm,
                      h_fixed=None):
    """Symbolic system, per trajectory; ``rec = (rec_t, rec_y, rec_n)`` from the forward."""
    rec_t, rec_y, rec_n = rec
    batch = tgrid.shape[0]
    rows = [merge_nodes(tgrid[b], y[:, b], cot[:, b], rec_t[b, :rec_n[b]], rec_y[b, :rec_n[b]])
            for b in range(batch)]
    K = max(len(r[0]) for r in rows)
    dim = y.shape[2]
    nodes = np.empty((batch, K))
    reset = np.empty((batch, K, dim))
    jump = np.zeros((batch, K, dim))
    n_nodes = np.empty(batch, dtype=np.int64)
    for b, (nd, rs, jp) in enumerate(rows):
        k = len(nd)
        n_nodes[b] = k
        nodes[b, :k], nodes[b, k:] = nd, nd[-1]
        reset[b, :k], reset[b, k:] = rs, rs[-1]
        jump[b, :k] = jp
    return kernel_segments(dyn, tab, nodes, n_nodes, reset, jump, prm, rtol, atol, max_steps,
                           seminorm, h_fixed)


def checkpoint_arrays(dyn, theta, tab, t, y, cot, steps, rtol, atol, max_steps, seminorm,
                      step_size=None):
    """Any Dynamics with ``vjp``; ``steps`` is the forward's list of (t, h, t_new, y)."""
    t_rec = np.array([s[2] for s in steps])
    ends = [steps[k + 1][3] for k in range(len(steps) - 1)]
    # the last step ends on the final saved time, whose state is y[-1]
    y_rec = np.stack(ends + [y[-1]]) if steps else np.zeros((0,) + y.shape[1:])
    nodes, reset, jump = merge_nodes(t, y, cot, t_rec, y_rec)
    return array_segments(dyn, theta, tab, nodes, reset, jump, rtol, atol, max_steps, seminorm,
                          step_size)
