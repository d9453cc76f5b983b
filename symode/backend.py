"""One array-module switch: numpy arrays in, numpy out; cupy arrays in, cupy out.

The layers of :mod:`symode.nn`, its losses and optimizers, and the array engine write their
array code once against ``xp = array_module(*arrays)``: ``numpy`` for host arrays, ``cupy`` when
one of the arguments is a cupy array (the ``cuda`` extra: ``pip install 'symode[cuda]'``). cupy
is imported only when such an array is seen, never when symode is imported.

Where the CPU path runs compiled numba loops (im2col, group norm, generated activations, fused
dense networks, the array engine's stage sums), the GPU path runs ``numba.cuda`` kernels instead;
:func:`target` says which path a layer takes: ``"cuda"`` for cupy arrays, ``"cpu"`` otherwise.

Testing the GPU kernels without a GPU: inside ``with kernel_target("cuda"):`` the layers take
their CUDA path on numpy arrays too. With ``NUMBA_ENABLE_CUDASIM=1`` (set before ``numba.cuda``
is first imported) numba's CUDA simulator runs those kernels on the CPU, on numpy arrays; on a
real GPU numba copies numpy arguments to the device and back. This switch exists so that the
GPU kernels are tested, not for speed; it is process-wide (not per thread), and batch slicing
in threads (:mod:`symode.nn.parallel`) is off while it is on.

>>> import numpy as np
>>> array_module(np.zeros(3)) is np
True
"""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager
from types import ModuleType

import numba
import numpy as np

from .errors import CudaUnavailableError, SymodeError

__all__ = ["array_module", "dispatch", "is_cupy", "asarray", "to_numpy", "to_device", "target",
           "kernel_target", "forced_target", "launch", "launch_blocks", "numba_cuda"]

TARGETS = ("cpu", "cuda")
#: Threads per block of the elementwise kernels (grid-stride loops cover any size); numba's
#: simulator runs one Python thread per GPU thread, so it gets small grids.
THREADS_PER_BLOCK = 32 if numba.config.ENABLE_CUDASIM else 256
#: Most blocks an elementwise kernel launches; past it, each thread loops over more elements.
MAX_BLOCKS = 2 if numba.config.ENABLE_CUDASIM else 4096

# [forced target or None]; a list so that the hot path reads one item, no global statement
_FORCED: list = [None]


def is_cupy(a) -> bool:
    """Whether ``a`` is a cupy array (without importing cupy unless ``a`` comes from it)."""
    return type(a).__module__.startswith("cupy") and hasattr(a, "__cuda_array_interface__")


def array_module(*arrays) -> ModuleType:
    """``cupy`` if one of ``arrays`` is a cupy array, else ``numpy``.

    Anything else (numpy arrays, Python numbers, None) counts as host data. Cheap on numpy
    arrays: one type check each.
    """
    for a in arrays:
        if type(a) is not np.ndarray and is_cupy(a):
            return sys.modules["cupy"]        # imported: the array comes from it
    return np


def asarray(a):
    """``a`` as an array of its own module: cupy arrays pass through, the rest through
    ``numpy.asarray``."""
    if type(a) is np.ndarray or is_cupy(a):
        return a
    return np.asarray(a)


def to_numpy(a) -> np.ndarray:
    """A host (numpy) copy of a cupy array; anything else through ``numpy.asarray``."""
    if type(a) is not np.ndarray and is_cupy(a):
        return a.get()
    return np.asarray(a)


def _cupy() -> ModuleType:
    """cupy, or a clear error saying how to install it."""
    try:
        import cupy
    except ImportError:
        raise CudaUnavailableError(
            "GPU arrays need cupy, which is not installed. Install the GPU extra: "
            "pip install 'symode[cuda]' (on a machine with an NVIDIA GPU), or keep the arrays "
            "on the host as numpy arrays.") from None
    return cupy


def to_device(a):
    """``a`` (a numpy array, a parameter vector, ...) as a cupy array on the current GPU.

    Pass the result to layers, losses, optimizers and the array engine: their results stay on
    the GPU. Raises :class:`~symode.errors.CudaUnavailableError` without cupy (the ``cuda``
    extra).
    """
    return _cupy().asarray(a)


def dispatch(*arrays) -> tuple[ModuleType, bool]:
    """``(xp, cuda)``: the array module of ``arrays`` and whether to run the CUDA kernels
    (cupy arrays, or inside ``kernel_target("cuda")``)."""
    xp = array_module(*arrays)
    return xp, xp is not np or _FORCED[0] == "cuda"


def target(xp: ModuleType) -> str:
    """``"cuda"`` when the arrays are cupy arrays (``xp`` is cupy) or inside
    ``kernel_target("cuda")``; else ``"cpu"``."""
    return "cuda" if xp is not np or _FORCED[0] == "cuda" else "cpu"


def forced_target() -> str | None:
    """The target set by :func:`kernel_target`, or None outside it."""
    return _FORCED[0]


@contextmanager
def kernel_target(name: str):
    """Run the layers' ``name`` kernels (``"cuda"`` or ``"cpu"``) on numpy arrays too.

    For tests: ``with kernel_target("cuda"):`` sends numpy arrays through the CUDA kernels
    (numba's simulator without a GPU). ``"cpu"`` restores the default choice. Process-wide;
    not for use while other threads run layers.
    """
    if name not in TARGETS:
        raise SymodeError(f"kernel_target: name must be one of {TARGETS}, got {name!r}")
    if name == "cuda":
        numba_cuda()
    old = _FORCED[0]
    _FORCED[0] = None if name == "cpu" else name
    try:
        yield
    finally:
        _FORCED[0] = old


def numba_cuda() -> ModuleType:
    """``numba.cuda`` (a GPU or the simulator), or a clear error naming the ``cuda`` extra."""
    from .solvers.cuda_engine import _cuda

    return _cuda()


def launch(kernel, n: int, *args) -> None:
    """Run an elementwise ``kernel`` with a grid-stride loop over ``n`` elements.

    Launches on the default stream, as cupy's own kernels do, so no synchronisation is needed
    between them; host (numpy) arguments are copied to the GPU and back by numba.
    """
    blocks = max(1, min(MAX_BLOCKS, -(-n // THREADS_PER_BLOCK)))
    launch_blocks(kernel, blocks, THREADS_PER_BLOCK, *args)


def launch_blocks(kernel, blocks: int, threads: int, *args) -> None:
    """``kernel[blocks, threads](*args)`` without numba's notes on small grids and host
    arrays (expected here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"numba.*")
        kernel[blocks, threads](*args)
