"""The kernel engine on the GPU: the same generated integrator, compiled by ``numba.cuda`` with
one GPU thread per trajectory, each with its own adaptive step, dense output and statistics.

The generated ``solve_one`` / ``segments_one`` become device functions and a small kernel runs
one of them for thread ``b = cuda.grid(1)``; the code is otherwise the CPU engine's, line for
line, so both engines give the same results up to the last bits of floating point rounding.

Inputs are copied to the GPU (or used in place when they already live there: cupy arrays and
numba device arrays), outputs are left on the GPU for the caller to keep or copy back.
Without a GPU, ``NUMBA_ENABLE_CUDASIM=1`` runs the kernels in numba's CUDA simulator.
"""

from __future__ import annotations

import warnings
from typing import Any

import numba
import numpy as np

from ..errors import CudaUnavailableError, SymodeError
from .kernel_engine import KernelSpec, emit_integrator

__all__ = ["DEVICES", "check_device", "cuda_module", "launch", "run_kernel", "has_cupy",
           "is_device_array", "to_host"]

DEVICES = ("cpu", "cuda")
#: Threads per block: small blocks keep register-heavy integrators resident on every SM.
THREADS_PER_BLOCK = 128


def check_device(device: str) -> None:
    """Raise a clear error unless ``device`` is known and, for ``"cuda"``, usable here."""
    if device not in DEVICES:
        raise SymodeError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda":
        _cuda()


def _cuda():
    """``numba.cuda``, or a clear error naming what to install."""
    if not hasattr(np, "row_stack"):
        # numba-cuda releases up to 0.30 register np.row_stack, which numpy 2.5 removed
        np.row_stack = np.vstack
    try:
        with warnings.catch_warnings():   # its import warns about numpy deprecations
            warnings.simplefilter("ignore")
            from numba import cuda
    except Exception as exc:  # pragma: no cover - depends on the installation
        raise CudaUnavailableError(
            f"device='cuda' needs numba's CUDA support, which failed to import ({exc}). Install "
            f"the GPU extra: pip install 'symode[cuda]'.") from None
    if not numba.config.ENABLE_CUDASIM and getattr(cuda, "implementation", "") != "NVIDIA":
        raise CudaUnavailableError(
            "device='cuda' needs NVIDIA's numba-cuda package: numba's built-in CUDA target is "
            "deprecated and cannot compile symode's kernels. Install the GPU extra: "
            "pip install 'symode[cuda]' (or pip install numba-cuda).")
    try:
        available = cuda.is_available()
    except Exception:  # pragma: no cover - driver errors
        available = False
    if not available:
        raise CudaUnavailableError(
            "device='cuda' needs an NVIDIA GPU with a working driver, and none was found. Install "
            "the GPU extra (pip install 'symode[cuda]') on a machine with a GPU, or use "
            "device='cpu'. To run the CUDA kernels without a GPU (slowly, for testing), set "
            "NUMBA_ENABLE_CUDASIM=1 before importing symode.")
    return cuda


def cuda_module(dyn, spec: KernelSpec, rhs_source: str, title: str, segments: bool, tag: str):
    """The generated CUDA module for this integrator, built once per process."""
    from ..codegen.cache import load_module

    key = ("cuda", spec, segments)
    if key not in dyn.kernels:
        _cuda()
        text = emit_integrator(spec, rhs_source, title, segments=segments, target="cuda")
        dyn.kernels[key] = load_module(text, f"cuda_{tag}")
    return dyn.kernels[key]


def has_cupy() -> bool:
    """True when cupy imports (results can then stay on the GPU as cupy arrays)."""
    try:
        import cupy  # noqa: F401
    except ImportError:
        return False
    return True


def is_device_array(x: Any) -> bool:
    """True for arrays that live on the GPU (cupy, numba device arrays, torch CUDA tensors)."""
    return hasattr(x, "__cuda_array_interface__")


def to_host(x: Any) -> np.ndarray:
    """A numpy copy of a GPU array (numpy arrays pass through)."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "copy_to_host"):
        return x.copy_to_host()
    if hasattr(x, "get"):          # cupy
        return x.get()
    from numba import cuda

    return cuda.as_cuda_array(x).copy_to_host()


def launch(module, entry: str, batch: int, inputs: tuple, outputs: tuple) -> list:
    """Run ``module.<entry>_kernel`` over ``batch`` threads.

    ``inputs`` are copied to the GPU (scalars passed as they are; GPU arrays used in place);
    ``outputs`` are numpy arrays giving the shapes and dtypes of the device arrays the kernel
    fills (every entry it reads later is written by the kernel). Returns those device arrays.
    """
    cuda = _cuda()
    kernel = getattr(module, f"{entry}_kernel")
    # GPU arrays in place; numba's simulator takes them as they are (it has no as_cuda_array)
    view = getattr(cuda, "as_cuda_array", lambda a: a)
    dev_in = [cuda.to_device(np.ascontiguousarray(a)) if isinstance(a, np.ndarray)
              else (view(a) if is_device_array(a) else a) for a in inputs]
    dev_out = [cuda.device_array(a.shape, a.dtype) for a in outputs]
    run_kernel(kernel, batch, *dev_in, *dev_out)
    return dev_out


def run_kernel(kernel, batch: int, *args) -> None:
    """Launch ``kernel`` with one thread per trajectory and wait for it."""
    from numba import cuda

    blocks = max(1, -(-batch // THREADS_PER_BLOCK))
    with warnings.catch_warnings():   # small batches leave most of the GPU idle: expected
        warnings.filterwarnings("ignore", message=".*under-utilization.*")
        warnings.filterwarnings("ignore", message=".*[Gg]rid size.*")
        warnings.filterwarnings("ignore", module=r"numba.*")   # compiler notes and deprecations
        kernel[blocks, THREADS_PER_BLOCK](*args)
    cuda.synchronize()
