"""Compile the CUDA kernels that ran in numba's simulator for a real GPU architecture.

The simulator runs a kernel as Python, so it cannot show what only numba.cuda's compiler finds:
a type it cannot infer, a function without a CUDA lowering, a local array whose shape is not a
constant. :func:`recording` notes every kernel launched in the simulator with the numba types
of its arguments; :func:`compile_recorded` then compiles each noted kernel to PTX in a fresh
process with the simulator off. That needs numba-cuda and the CUDA toolkit's NVVM and NVRTC,
but neither a GPU nor a driver.

Run as a script, ``python ptx.py RECORDS.json`` compiles the records and prints one JSON result
per kernel; ``python ptx.py --probe`` says whether this machine can compile at all.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

#: H100's compute capability (the GPU the benchmarks run on).
CC = (9, 0)


def _layout(a) -> str:
    """'C', 'F' or 'A', as numba types an array with this memory order."""
    flags = getattr(a, "flags", None)
    if flags is not None and not hasattr(a, "__cuda_array_interface__"):
        return "C" if flags["C_CONTIGUOUS"] else "F" if flags["F_CONTIGUOUS"] else "A"
    iface = a.__cuda_array_interface__
    if iface.get("strides") is None:
        return "C"
    itemsize = np.dtype(iface["typestr"]).itemsize
    c = np.cumprod((itemsize,) + tuple(iface["shape"][:0:-1]))[::-1]
    return "C" if tuple(iface["strides"]) == tuple(c) else "A"


def _describe(arg) -> list:
    """A JSON-able description of one kernel argument's numba type."""
    if hasattr(arg, "shape") and hasattr(arg, "dtype") and len(arg.shape) > 0:
        return ["array", np.dtype(arg.dtype).str, len(arg.shape), _layout(arg)]
    if isinstance(arg, (bool, np.bool_)):
        return ["scalar", "?"]
    if isinstance(arg, (int, np.integer)):
        return ["scalar", np.dtype(type(arg) if isinstance(arg, np.integer) else np.int64).str]
    if isinstance(arg, (float, np.floating)):
        return ["scalar", np.dtype(type(arg) if isinstance(arg, np.floating) else np.float64).str]
    raise TypeError(f"cannot describe a kernel argument of type {type(arg).__name__}")


def _where(fn) -> str:
    """The importable module of a kernel (symode's own), else the file of a generated one."""
    module = fn.__module__
    return module if module.startswith("symode.") else fn.__code__.co_filename


@contextlib.contextmanager
def recording():
    """Note each kernel launched in numba's simulator: ``[where, qualname, [arg types]]``."""
    from numba.cuda.simulator import kernel as sim

    records: list = []
    call = sim.FakeCUDAKernel.__call__

    def noting(self, *args):
        if not self._device:
            rec = [_where(self.fn), self.fn.__qualname__, [_describe(a) for a in args]]
            if rec not in records:
                records.append(rec)
        return call(self, *args)

    sim.FakeCUDAKernel.__call__ = noting
    try:
        yield records
    finally:
        sim.FakeCUDAKernel.__call__ = call


def compile_recorded(records: list, tmp_path: Path) -> list[dict]:
    """Compile ``records`` to PTX in fresh processes, one per core (two at most); one
    ``{"kernel", "error"}`` per record."""
    n = max(1, min(2, os.cpu_count() or 1, len(records)))
    jobs = []
    for i in range(n):
        path = tmp_path / f"kernels{i}.json"
        path.write_text(json.dumps(records[i::n]))
        jobs.append(subprocess.Popen([sys.executable, __file__, str(path)], env=_env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for job in jobs:
        out, err = job.communicate(timeout=1800)
        if job.returncode:
            raise RuntimeError(f"the PTX compiler process failed:\n{err[-3000:]}")
        results += json.loads(out)
    return results


def probe() -> str | None:
    """None when this machine can compile kernels to PTX, else why not."""
    out = subprocess.run([sys.executable, __file__, "--probe"], capture_output=True, text=True,
                         env=_env(), timeout=600)
    return None if out.returncode == 0 else (out.stdout.strip() or out.stderr.strip()[-500:])


def _env() -> dict:
    """This environment with the simulator off and the project importable."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if "PYTHONPATH" in env
                                                  else []))
    return env


# -- in the compiling process ----------------------------------------------------------------------
def _numba_type(desc):
    from numba import types
    from numba.np.numpy_support import from_dtype

    if desc[0] == "array":
        return types.Array(from_dtype(np.dtype(desc[1])), desc[2], desc[3])
    return types.boolean if desc[1] == "?" else from_dtype(np.dtype(desc[1]))


def _kernel(where: str, qualname: str):
    """The kernel object: an attribute of its module, or made by a factory of no arguments."""
    if where.startswith("symode."):
        module = importlib.import_module(where)
    else:
        name = "symode_generated_" + Path(where).stem
        spec = importlib.util.spec_from_file_location(name, where)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    if "<locals>" in qualname:
        return getattr(module, qualname.split(".<locals>")[0])()
    return getattr(module, qualname)


def _compiler():
    """numba.cuda's ``compile_ptx``, with device functions compiled for :data:`CC` too (they
    otherwise ask the driver for the current GPU's compute capability)."""
    from numba import cuda
    from numba.cuda import dispatcher

    if getattr(cuda, "implementation", "") != "NVIDIA":
        raise RuntimeError("numba's built-in CUDA target is deprecated and cannot type the "
                           "builtin min/max in device code; install numba-cuda")

    class Device:
        compute_capability = CC

    dispatcher.get_current_device = Device
    cuda.is_available = lambda: True   # symode's modules check for a GPU on import
    return cuda.compile_ptx


def _main(arg: str) -> int:
    try:
        compile_ptx = _compiler()
        if arg == "--probe":
            compile_ptx(lambda a: None, "void(float64[::1])", cc=CC)
            return 0
    except Exception as exc:   # what is missing: numba-cuda, NVVM, NVRTC
        print(f"{type(exc).__name__}: {exc}".strip()[:800])
        return 1
    results = []
    for where, qualname, args in json.loads(Path(arg).read_text()):
        name = f"{where if where.startswith('symode.') else Path(where).stem}.{qualname}"
        try:
            kernel = _kernel(where, qualname)
            sig = tuple(_numba_type(d) for d in args)
            opts = getattr(kernel, "targetoptions", {})
            ptx, _ = compile_ptx(kernel.py_func, sig, cc=CC,
                                 fastmath=bool(opts.get("fastmath", False)))
            results.append({"kernel": name, "error": None if ".entry" in ptx else "no entry"})
        except Exception as exc:
            results.append({"kernel": name, "error": f"{type(exc).__name__}: {exc}"[:3000]})
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
