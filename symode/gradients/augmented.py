"""The backward pass shared by the continuous adjoints: the augmented state [z, a, a_θ]
integrated from the last node to the first, with z reset to stored forward states and the
cotangents dL/dy added to a at every node.

For a symbolic system the augmented system is itself a symbolic ODE,

    dz/dt = f,   da/dt = -a·∂f/∂z,   da_θ/dt = -a·∂f/∂θ,

compiled into a per-trajectory kernel; for any other Dynamics with a ``vjp`` the array engine
integrates it on flat arrays, the batch being one system.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ..backend import array_module
from ..codegen.cache import load_module
from ..dynamics import SymbolicDynamics
from ..solvers.array_engine import integrate_arrays
from ..solvers.controllers import PIController
from ..solvers.cuda_engine import cuda_module, is_device_array, launch, to_host
from ..solvers.kernel_engine import KernelSpec, emit_integrator, run_batch
from ..solvers.solution import Stats
from ..solvers.solve import compact, raise_for_status
from ..symbolic import ODE

__all__ = ["augmented_ode", "segments_module", "kernel_segments", "array_segments"]


def augmented_ode(ode: ODE) -> ODE:
    """The system [z, a, a_θ] of the adjoint method as an ODE in the same parameters."""
    a = list(ode.adjoint_symbols)
    taken = {str(s) for s in (*ode.states, *ode.params, *a, ode.t)}
    a_theta = []
    for p in ode.params:
        name = f"a_{p}"
        while name in taken:
            name += "_"
        taken.add(name)
        a_theta.append(sp.Symbol(name))
    vjp = ode.vjp
    rhs = [*ode.rhs, *[-e for e in vjp.z], *[-e for e in vjp.theta]]
    return ODE([*ode.states, *a, *a_theta], rhs, params=ode.params, t=ode.t)


def segments_module(dyn: SymbolicDynamics, tab, seminorm: bool, device: str = "cpu"):
    """The compiled backward integrator of the augmented system (CPU or CUDA)."""
    key = ("segments", tab, seminorm, device)
    if key not in dyn.kernels:
        if "augmented" not in dyn.kernels:
            dyn.kernels["augmented"] = SymbolicDynamics(augmented_ode(dyn.ode))
        aug = dyn.kernels["augmented"]
        spec = KernelSpec(tab, aug.dim, aug.n_params, n_reset=dyn.dim,
                          norm_dims=2 * dyn.dim if seminorm else None)
        title = f"{tab.name} adjoint segments"
        if device == "cuda":
            dyn.kernels[key] = cuda_module(aug, spec, aug.rhs_source, title, True,
                                           f"adjoint_{tab.name}")
        else:
            text = emit_integrator(spec, aug.rhs_source, title, segments=True)
            dyn.kernels[key] = load_module(text, f"adjoint_{tab.name}")
    return dyn.kernels[key]


def kernel_segments(dyn: SymbolicDynamics, tab, nodes, n_nodes, reset, jump, prm, rtol, atol,
                    max_steps, seminorm, h_fixed=None, device="cpu"):
    """Backward pass of a symbolic system, one trajectory per thread (CPU or GPU).

    Parameters
    ----------
    nodes : ndarray, shape (batch, K)
        Times from the last to the first; rows padded by repeating their last node.
    n_nodes : ndarray of int, shape (batch,)
    reset, jump : ndarray, shape (batch, K, dim)
        Forward state and cotangent at each node.
    prm : ndarray, shape (batch, P)
    rtol, atol : float or ndarray, shape (2 dim + P,)
    h_fixed : ndarray, shape (batch,), optional
        Largest step of a fixed-step method.

    Returns
    -------
    final : ndarray, shape (batch, 2 dim + P)
        [z, a, a_θ] at the first node.
    stats : Stats
    """
    module = segments_module(dyn, tab, seminorm, device)
    batch = nodes.shape[0]
    n_aug = 2 * dyn.dim + dyn.n_params
    out = np.empty((batch, n_aug))
    stats = np.zeros((batch, 3), dtype=np.int64)
    status = np.zeros(batch, dtype=np.int32)
    fail = np.zeros((batch, 3))

    def arr(a):   # GPU arrays stay where they are
        return a if is_device_array(a) else np.ascontiguousarray(a)

    inputs = (arr(nodes), arr(n_nodes), arr(reset), arr(jump), compact(prm),
              np.ascontiguousarray(np.broadcast_to(rtol, (n_aug,))),
              np.ascontiguousarray(np.broadcast_to(atol, (n_aug,))),
              np.zeros(1) if h_fixed is None else compact(h_fixed),
              int(max_steps))
    if device == "cuda":
        dev = launch(module, "segments", batch, inputs, (out, stats, status, fail))
        out, stats, status = (d.copy_to_host() for d in dev[:3])
        fail = dev[3].copy_to_host() if (status != 0).any() else fail
    else:
        run_batch(module, batch, *inputs, out, stats, status, fail, entry="segments_range")
    if (status != 0).any():
        raise_for_status(status, fail, to_host(nodes), tab, rtol, atol, max_steps)
    return out, Stats(stats[:, 0], stats[:, 1], stats[:, 2])


def array_segments(dyn, theta, tab, nodes, resets, jumps, rtol, atol, max_steps, seminorm,
                   step_size=None, controller=None, h_first=None):
    """Backward pass of any Dynamics with ``vjp``, the whole batch as one system.

    Parameters
    ----------
    theta : array_like
        Parameters passed to ``dyn.f`` and ``dyn.vjp`` as they are.
    nodes : ndarray, shape (K,)
    resets, jumps : sequence of ndarray, each of shape (batch, ...)
        Forward state and cotangent at each node.

    Returns
    -------
    a : ndarray, shape (batch, ...)
        dL/dz at the first node.
    a_theta : ndarray, shape of ``theta``
    stats : Stats (shared)
    """
    xp = array_module(resets[0], theta)   # cupy: the backward pass stays on the GPU
    z0 = xp.asarray(resets[0])
    shape, n = z0.shape, z0.size
    theta_shape = np.shape(theta)
    n_theta = int(np.prod(theta_shape))

    both = getattr(dyn, "f_and_vjp", None)   # one forward pass for f and its VJP, if offered

    def fun(t, flat):
        z = flat[0, :n].reshape(shape)
        a = flat[0, n:2 * n].reshape(shape)
        if both is not None:
            dz, a_z, a_th, _ = both(t, z, theta, a)
        else:
            dz = dyn.f(t, z, theta)
            a_z, a_th, _ = dyn.vjp(t, z, theta, a)
        return xp.concatenate([xp.ravel(dz), -xp.ravel(a_z), -xp.ravel(a_th)])[None, :]

    state = xp.concatenate([z0.ravel(), xp.ravel(jumps[0]),
                            xp.zeros(n_theta, dtype=z0.dtype)])[None, :]
    nfev = nacc = nrej = 0
    # each segment starts with the step the last one ended on, not a fresh guess; the first
    # with h_first (the forward controller's last proposal: the adjoint has the same Jacobian)
    h = h_first or None
    for k in range(1, len(nodes)):
        if nodes[k] != nodes[k - 1]:
            res = integrate_arrays(fun, tab, state, np.array([[nodes[k - 1], nodes[k]]]),
                                   rtol, atol, h_first=h, step_size=step_size,
                                   max_steps=max_steps, norm_dims=2 * n if seminorm else None,
                                   controller=controller or PIController())
            raise_for_status(res.status, res.fail, np.array([[nodes[-1], nodes[0]]]), tab,
                             rtol, atol, max_steps)
            state = res.y[-1].copy()
            h = res.h_next or None
            nfev, nacc, nrej = nfev + res.nfev, nacc + res.naccept, nrej + res.nreject
        state[0, :n] = xp.ravel(resets[k])
        state[0, n:2 * n] += xp.ravel(jumps[k])
    batch = shape[0]
    one = np.ones(batch, dtype=np.int64)
    stats = Stats(one * nfev, one * nacc, one * nrej, shared=True)
    return state[0, n:2 * n].reshape(shape), state[0, 2 * n:].reshape(theta_shape), stats
