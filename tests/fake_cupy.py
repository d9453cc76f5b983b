"""A host-memory stand-in for cupy: checks that GPU arrays stay GPU arrays, not GPU numerics.

``install(monkeypatch)`` puts it in ``sys.modules`` as ``cupy`` (and ``cupyx.scipy.special``)
for one test. Its :class:`ndarray` holds a numpy array but is *not* an ``np.ndarray`` subclass:
numpy views a subclass as a plain array without asking it (``np.asarray`` never calls
``__array__`` on one), so a subclass cannot refuse host conversion. A wrapper can, and behaves
like cupy's array where that matters here:

* ``np.asarray(a)`` / ``np.array(a)`` call ``__array__``, which raises cupy's ``TypeError``;
  ``a.get()`` / ``cupy.asnumpy(a)`` are the explicit copies to the host.
* ufuncs and operators (``np.exp(a)``, ``a @ b``, ``a += b``) go through ``__array_ufunc__`` and
  numpy functions (``np.concatenate([a, b])``) through ``__array_function__`` to the fake
  module's function of that name, as cupy dispatches them; both return fake arrays. A plain
  numpy array mixed in (``a * host``, ``cupy.matmul(a, host)``, ``a[...] = host``) raises
  ``TypeError``, as cupy does; only ``cupy.asarray``/``cupy.array`` (and index arrays) take one.
* reductions over all axes and full indexing give 0-d fake arrays, not host scalars;
  ``float(a)``, ``bool(a)``, ``a.item()`` read a number back, as on cupy.
* ``type(a).__module__ == "cupy"`` and a ``__cuda_array_interface__`` (over host memory) make
  :func:`symode.backend.is_cupy` accept it.

numba's CUDA simulator passes objects that are not numpy arrays to a kernel unchanged (a real
GPU would view the memory behind ``__cuda_array_interface__``), so inside a simulated kernel the
fake indexes its numpy array directly: the kernels read and write the fake's own memory.

The module exposes numpy's namespace (functions wrapped to take and give fake arrays), narrowed
to the names cupy 14.2 has (``tests/cupy_api.txt``, read from its sources): a numpy function or
array method cupy lacks is an ``AttributeError`` here too. Keyword arguments are not checked.
"""

import sys
import types
from pathlib import Path

import numpy as np
import scipy.special
from numpy.lib.mixins import NDArrayOperatorsMixin

_TRANSFERS = {"array", "asarray", "asanyarray"}   # the functions that accept host arrays


def _read_api(path: Path = Path(__file__).with_name("cupy_api.txt")) -> dict[str, frozenset]:
    """``{"cupy": names, "cupy.ndarray": names, ...}`` from the ``[section]`` lists."""
    api, section = {}, None
    for line in path.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
            api[section] = set()
        elif section and line and not line.startswith("#"):
            api[section].update(line.split())
    return {k: frozenset(v) for k, v in api.items()}


CUPY_API = _read_api()


def _in_kernel() -> bool:
    sim = sys.modules.get("numba.cuda.simulator.kernel")
    return sim is not None and sim._kernel_context is not None


def _unwrap(x, host_ok=False):
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray) and x.ndim and not host_ok:
        raise TypeError(f"Unsupported type {type(x)}: a host numpy array given to cupy")
    if type(x) in (list, tuple):
        return type(x)(_unwrap(v, host_ok) for v in x)
    if type(x) is dict:
        return {k: _unwrap(v, host_ok) for k, v in x.items()}
    return x


def _wrap(x):
    if isinstance(x, (np.ndarray, np.generic)):
        return ndarray._of(np.asarray(x))
    if type(x) in (list, tuple):
        return type(x)(_wrap(v) for v in x)
    return x


class ndarray(NDArrayOperatorsMixin):
    """A "device" array: a numpy array behind cupy's rules (see the module docstring)."""

    __module__ = "cupy"

    def __init__(self, shape, dtype=float):
        self._a = np.empty(shape, dtype)

    @classmethod
    def _of(cls, a: np.ndarray) -> "ndarray":
        out = cls.__new__(cls)
        out._a = a
        return out

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.get("out")
        res = getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs))
        return (out[0] if len(out) == 1 else out) if out else _wrap(res)

    def __array_function__(self, func, types, args, kwargs):
        mod = sys.modules["cupy"]                       # numpy.linalg.norm -> cupy.linalg.norm
        for part in func.__module__.split(".")[1:]:
            mod = getattr(mod, part, None)
        mine = getattr(mod, func.__name__, None)
        return NotImplemented if mine is None else mine(*args, **kwargs)

    @property
    def __cuda_array_interface__(self):
        return {"shape": self._a.shape, "typestr": self._a.dtype.str, "version": 3,
                "data": (self._a.ctypes.data, False), "strides": self._a.strides}

    def get(self) -> np.ndarray:
        return self._a.copy()

    def __getattr__(self, name):
        if name.startswith("__") or name == "_a":       # no __array_interface__: no way around
            raise AttributeError(name)
        if name not in CUPY_API["cupy.ndarray"]:
            raise AttributeError(f"'cupy.ndarray' object has no attribute '{name}'")
        attr = getattr(self._a, name)
        if callable(attr):
            return lambda *a, **k: _wrap(attr(*_unwrap(a), **_unwrap(k)))
        return _wrap(attr)

    def __getitem__(self, key):
        if _in_kernel():
            return self._a[key]
        return _wrap(self._a[_unwrap(key, host_ok=True)])

    def __setitem__(self, key, value):
        self._a[_unwrap(key, host_ok=True)] = _unwrap(value, host_ok=_in_kernel())

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(row) for row in self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __bool__(self):
        return bool(self._a)

    def __repr__(self):
        return f"fake_cupy.{self._a!r}"


class _Func:
    """A numpy function or ufunc on fake arrays (ufunc methods such as ``.reduce`` too)."""

    def __init__(self, fn, host_ok=False):
        self.fn, self.host_ok = fn, host_ok

    def __call__(self, *args, **kwargs):
        out = kwargs.get("out")
        res = self.fn(*_unwrap(args, self.host_ok), **_unwrap(kwargs, self.host_ok))
        return out if out is not None else _wrap(res)

    def __getattr__(self, name):
        return _Func(getattr(self.fn, name))


def _namespace(name: str, source: types.ModuleType) -> types.ModuleType:
    """A module whose attributes are ``source``'s, functions wrapped by :class:`_Func`, narrowed
    to cupy's names where ``tests/cupy_api.txt`` lists the module."""
    mod = types.ModuleType(name)
    allowed = CUPY_API.get(name)

    def lookup(attr):
        if allowed is not None and attr not in allowed:
            raise AttributeError(f"module '{name}' has no attribute '{attr}'")
        obj = getattr(source, attr)
        if isinstance(obj, types.ModuleType):
            obj = _namespace(f"{name}.{attr}", obj)
        elif callable(obj) and not isinstance(obj, type):
            obj = _Func(obj, host_ok=attr in _TRANSFERS)
        setattr(mod, attr, obj)
        return obj

    mod.__getattr__ = lookup
    return mod


def _asarray(a, dtype=None, order=None):
    """cupy.asarray: fake arrays pass through (cast if asked), the rest is copied over."""
    if isinstance(a, ndarray):
        return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
    return ndarray._of(np.array(_unwrap(a, host_ok=True), dtype=dtype, order=order or "K"))


def make_modules() -> dict[str, types.ModuleType]:
    """``{"cupy": ..., "cupyx": ..., ...}``, ready for ``sys.modules``."""
    cp = _namespace("cupy", np)
    cp.ndarray = ndarray
    cp.asarray = _asarray
    cp.asnumpy = lambda a: a.get() if isinstance(a, ndarray) else np.asarray(a)
    cp.get_array_module = lambda *a: cp if any(isinstance(x, ndarray) for x in a) else np
    cp.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    cpx, cpx_scipy = types.ModuleType("cupyx"), types.ModuleType("cupyx.scipy")
    cpx.scipy = cpx_scipy
    cpx_scipy.special = _namespace("cupyx.scipy.special", scipy.special)
    return {"cupy": cp, "cupyx": cpx, "cupyx.scipy": cpx_scipy,
            "cupyx.scipy.special": cpx_scipy.special}


def install(monkeypatch) -> types.ModuleType:
    """Put the fake modules in ``sys.modules`` until ``monkeypatch`` undoes it (the end of a
    test, for pytest's fixture); returns the fake ``cupy``."""
    modules = make_modules()
    for name, mod in modules.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return modules["cupy"]
