"""The checkpointed continuous adjoint: the backward pass of ``backsolve``, but z is reset to
the stored forward state at every accepted forward step, not only at the saved times.

Between two checkpoints z is re-integrated over a single forward step, so it cannot drift far:
this stays accurate on dissipative and chaotic systems where ``backsolve`` does not. Memory
grows with the number of forward steps (one state per step and trajectory), never with stages.
"""

from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np

from ..backend import array_module
from ..solvers.cuda_engine import is_device_array, run_kernel
from ..solvers.solve import compact
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
    xp = array_module(y_obs)     # states stay on the GPU for a cupy solve
    states = xp.concatenate([y_obs, y_rec])
    jumps = xp.concatenate([cot, xp.zeros_like(y_rec)])
    idx = xp.asarray(order)
    return times[order], states[idx], jumps[idx]


def checkpoint_kernel(dyn, tab, tgrid, y, cot, rec, prm, rtol, atol, max_steps, seminorm,
                      h_fixed=None, device="cpu"):
    """Symbolic system, per trajectory; ``rec = (rec_t, rec_y, rec_n)`` from the forward (on
    the GPU for ``device="cuda"``, where the nodes are merged too)."""
    rec_t, rec_y, rec_n = rec
    batch, T = tgrid.shape
    n_rec = np.minimum(rec_n, rec_t.shape[1])
    K = T + int(n_rec.max(initial=0))
    dim = y.shape[2]
    shapes = ((batch, K), (batch, K, dim), (batch, K, dim), (batch,))
    args = (compact(tgrid), np.ascontiguousarray(y), np.ascontiguousarray(cot), rec_t, rec_y,
            n_rec)
    if device == "cuda":
        from numba import cuda

        dev_args = [a if is_device_array(a) else cuda.to_device(a) for a in args]
        nodes, reset, jump, n_nodes = (cuda.device_array(s, np.int64 if len(s) == 1 else
                                                         np.float64) for s in shapes)
        run_kernel(_merge_kernel(), batch, *dev_args, nodes, reset, jump, n_nodes)
    else:
        nodes, reset, jump = (np.empty(s) for s in shapes[:3])
        n_nodes = np.empty(batch, dtype=np.int64)
        _merge_batch(*args, nodes, reset, jump, n_nodes)
    return kernel_segments(dyn, tab, nodes, n_nodes, reset, jump, prm, rtol, atol, max_steps,
                           seminorm, h_fixed, device)


def _merge_one(b, tgrid, y, cot, rec_t, rec_y, n_rec, nodes, reset, jump, n_nodes):
    """:func:`merge_nodes` for trajectory ``b``, compiled for the CPU and the GPU.

    ``tgrid`` (B, T) or (1, T), ``y`` and ``cot`` (T, B, D), ``rec_t`` (B, R), ``rec_y``
    (B, R, D), ``n_rec`` (B,); writes row ``b`` of ``nodes`` (B, K), ``reset``/``jump``
    (B, K, D) and ``n_nodes`` (B,). A row shorter than K repeats its last node.
    """
    tb = b if tgrid.shape[0] > 1 else 0
    T = tgrid.shape[1]
    D = y.shape[2]
    K = nodes.shape[1]
    fwd = tgrid[tb, T - 1] >= tgrid[tb, 0]
    n = n_rec[b]
    i = 0
    r = 0
    k = 0
    while i < T or r < n:   # both sequences are monotone in the direction of the solve
        if r >= n:
            obs = True
        elif i >= T:
            obs = False
        elif fwd:
            obs = tgrid[tb, i] <= rec_t[b, r]
        else:
            obs = tgrid[tb, i] >= rec_t[b, r]
        if obs:             # a saved time wins over a checkpoint at the same time
            tt = tgrid[tb, i]
            nodes[b, k] = tt
            for d in range(D):
                reset[b, k, d] = y[i, b, d]
                jump[b, k, d] = cot[i, b, d]
            if r < n and rec_t[b, r] == tt:
                r += 1
            i += 1
        else:
            nodes[b, k] = rec_t[b, r]
            for d in range(D):
                reset[b, k, d] = rec_y[b, r, d]
                jump[b, k, d] = 0.0
            r += 1
        k += 1
    for m in range(k // 2):  # last to first
        q = k - 1 - m
        nodes[b, m], nodes[b, q] = nodes[b, q], nodes[b, m]
        for d in range(D):
            reset[b, m, d], reset[b, q, d] = reset[b, q, d], reset[b, m, d]
            jump[b, m, d], jump[b, q, d] = jump[b, q, d], jump[b, m, d]
    for m in range(k, K):
        nodes[b, m] = nodes[b, k - 1]
        for d in range(D):
            reset[b, m, d] = reset[b, k - 1, d]
            jump[b, m, d] = 0.0
    n_nodes[b] = k


_merge_one_cpu = numba.njit(cache=True)(_merge_one)


@numba.njit(cache=True)
def _merge_batch(tgrid, y, cot, rec_t, rec_y, n_rec, nodes, reset, jump, n_nodes):
    for b in range(nodes.shape[0]):
        _merge_one_cpu(b, tgrid, y, cot, rec_t, rec_y, n_rec, nodes, reset, jump, n_nodes)


@lru_cache(maxsize=None)
def _merge_kernel():
    """The merge as a CUDA kernel, one thread per trajectory."""
    global cuda   # a module global, as numba's CUDA simulator expects of kernels
    from numba import cuda

    one = cuda.jit(device=True)(_merge_one)

    @cuda.jit
    def merge(tgrid, y, cot, rec_t, rec_y, n_rec, nodes, reset, jump, n_nodes):
        b = cuda.grid(1)
        if b < nodes.shape[0]:
            one(b, tgrid, y, cot, rec_t, rec_y, n_rec, nodes, reset, jump, n_nodes)

    return merge


def checkpoint_arrays(dyn, theta, tab, t, y, cot, steps, rtol, atol, max_steps, seminorm,
                      step_size=None, controller=None, h_first=None):
    """Any Dynamics with ``vjp``; ``steps`` is the forward's list of (t, h, t_new, y);
    ``h_first``: the first backward step (default: a fresh guess)."""
    t_rec = np.array([s[2] for s in steps])
    ends = [steps[k + 1][3] for k in range(len(steps) - 1)]
    # the last step ends on the final saved time, whose state is y[-1]
    xp = array_module(y)
    y_rec = xp.stack(ends + [y[-1]]) if steps else xp.zeros((0,) + y.shape[1:], dtype=y.dtype)
    nodes, reset, jump = merge_nodes(t, y, cot, t_rec, y_rec)
    return array_segments(dyn, theta, tab, nodes, reset, jump, rtol, atol, max_steps, seminorm,
                          step_size, controller, h_first)
