"""Batch parallelism: per-sample layers run on slices of the batch in threads.

A layer is *per-sample* when sample ``n`` of its output depends on sample ``n`` of its input
alone (convolutions, dense layers, group norm, activations; not an ODE block whose step size
the whole batch shares). A run of per-sample layers therefore maps the batch slice by slice:
:class:`~symode.nn.Sequential` splits a large batch into one slice per thread, runs its
per-sample layers forward (and backward: ``x̄`` slices are joined, ``θ̄`` and ``t̄`` summed) on
each slice in a thread pool, and joins the slices.

While the slices run, BLAS is held to one thread (through ``threadpoolctl``), so the threads
split the whole work, matrix products and compiled loops alike, instead of fighting BLAS's own
threads. Results equal the serial ones up to the order of the sums over the batch (round-off);
for a given thread count they are reproducible. The BLAS limit is process-wide: BLAS calls
that other threads of the program make meanwhile also run on one thread.

Only numpy batches are split: a batch on the GPU (a cupy array) runs whole, as one set of
kernels, and so does every batch while :func:`symode.backend.kernel_target` sends the layers
to their CUDA kernels.

``set_num_threads(n)`` sets the number of slices (``1`` turns splitting off); the default is
the number of CPUs this process may use, or ``SYMODE_NUM_THREADS`` when set.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from functools import lru_cache

import numpy as np

from .. import backend

__all__ = ["get_num_threads", "set_num_threads", "num_threads", "batch_slices", "map_slices"]

#: Batches smaller than this (bytes per slice of the input) are not split: below it, the
#: threads' start-up and joining cost more than they save.
MIN_SLICE_BYTES = 128 * 1024

_local = threading.local()
_lock = threading.Lock()
_threads: int | None = None
_pool: ThreadPoolExecutor | None = None


def _default_threads() -> int:
    env = os.environ.get("SYMODE_NUM_THREADS")
    if env:
        if not env.strip().isdigit() or int(env) < 1:
            raise ValueError(f"SYMODE_NUM_THREADS must be a positive integer, got {env!r}")
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                                  # not on Linux
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """Threads that per-sample layers split a large batch among."""
    global _threads
    if _threads is None:
        _threads = _default_threads()
    return _threads


def set_num_threads(n: int) -> None:
    """Split large batches among ``n`` threads (``1``: never split)."""
    global _threads, _pool
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive integer, got {n!r}")
    with _lock:
        _threads = int(n)
        if _pool is not None:
            _pool.shutdown(wait=True)
            _pool = None


@contextmanager
def num_threads(n: int):
    """``set_num_threads(n)`` for the duration of a ``with`` block."""
    old = get_num_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(old)


def batch_slices(x, width: int = 0) -> list[slice] | None:
    """Slices of the batch axis of ``x``, one per thread, or ``None`` to run unsplit.

    A sample's size is that of its row of ``x`` or ``width`` numbers of its dtype, the larger
    (the widest layer of a dense network). ``None`` when splitting is off, the batch is small
    (under ``MIN_SLICE_BYTES`` a slice) or not a numpy array (a GPU batch runs whole), the CUDA
    kernels are forced, BLAS cannot be held to one thread (no ``threadpoolctl``), or the caller
    already runs on a slice.
    """
    n = get_num_threads()
    if (n < 2 or not isinstance(x, np.ndarray) or x.ndim < 1 or getattr(_local, "inside", False)
            or backend.forced_target() is not None):
        return None
    size = x.shape[0] * max(x.nbytes // max(x.shape[0], 1), width * x.itemsize)
    n = min(n, x.shape[0], size // MIN_SLICE_BYTES)
    if n < 2 or _blas_controller() is None:
        return None
    edges = [(x.shape[0] * k) // n for k in range(n + 1)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def map_slices(fn, slices: list[slice]) -> list:
    """``[fn(s) for s in slices]``, the calls spread over the thread pool with BLAS on one
    thread. ``fn`` must not share mutable state between slices."""
    pool = _get_pool()
    with _one_blas_thread():
        futures = [pool.submit(_on_slice, fn, s) for s in slices[1:]]
        first = _on_slice(fn, slices[0])                    # this thread takes a slice too
        return [first] + [f.result() for f in futures]


def _on_slice(fn, s):
    _local.inside = True
    try:
        return fn(s)
    finally:
        _local.inside = False


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(get_num_threads() - 1, 1),
                                       thread_name_prefix="symode-batch")
        return _pool


def _forget_pool_after_fork() -> None:
    """A forked child has none of the parent's threads: it starts its own pool when needed."""
    global _pool, _lock
    _pool, _lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


@lru_cache(maxsize=1)
def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def _one_blas_thread():
    ctl = _blas_controller()
    return nullcontext() if ctl is None else ctl.limit(limits=1, user_api="blas")
