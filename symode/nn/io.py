"""Parameters and training checkpoints on disk, as ``.npz`` files readable without pickle.

* :func:`save_params` / :func:`load_params`: a trained ``θ`` with its named pieces
  (``module.named_views``), a description of the module it belongs to and ``symode.__version__``;
  loading into a module checks that the parameter count, names and shapes agree.
* :func:`save_checkpoint` / :func:`load_checkpoint`: everything needed to resume training
  exactly, by convention ``theta``, ``opt_state``, ``step``, ``epoch``, ``rng`` (a
  ``np.random.Generator``) and a metrics ``history``, but any nesting of dicts, lists, tuples,
  numbers, strings, ``None``, arrays and generators is accepted.

Both writers are atomic: the file is written under a temporary name in the same directory,
flushed to disk and renamed over the target, so a crash mid-save leaves the previous file whole.
Files are written to exactly the path given (no ``.npz`` is appended).

Checkpoint layout: arrays are stored as ``a0, a1, ...``; the rest of the tree is JSON (entry
``tree``), where an array appears as ``{"__symode_array__": i}``, a tuple as
``{"__symode_tuple__": [...]}`` and a generator as ``{"__symode_generator__": state}`` with
``state = rng.bit_generator.state``. JSON keeps Python ints exactly (PCG64's 128-bit state
included) and floats to the last bit.
"""

from __future__ import annotations

import json
import os
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import __version__
from ..backend import is_cupy, to_numpy
from ..errors import ShapeError, SymodeError

__all__ = ["SavedParams", "save_params", "load_params", "save_checkpoint", "load_checkpoint"]

PARAMS_FORMAT = "symode-params-1"
CHECKPOINT_FORMAT = "symode-checkpoint-1"
_VIEW = "view:"
_ARRAY, _TUPLE, _GENERATOR = "__symode_array__", "__symode_tuple__", "__symode_generator__"
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


# -- atomic writes ---------------------------------------------------------------------------------
def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; not possible (nor needed) on every platform."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_npz_atomic(path: str | os.PathLike, arrays: dict[str, NDArray]) -> Path:
    """``np.savez`` to a temporary file next to ``path``, fsync, then ``os.replace`` it."""
    path = Path(path)
    if not path.parent.is_dir():
        raise SymodeError(f"cannot write {path}: directory {path.parent} does not exist.")
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    # os.open applies the umask, so the file gets the permissions a plain open() would give
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _text(s: str) -> NDArray:
    return np.frombuffer(s.encode("utf-8"), dtype=np.uint8)


def _untext(a: NDArray) -> str:
    return a.tobytes().decode("utf-8")


def _open_npz(path: str | os.PathLike, what: str, fmt: str) -> dict[str, NDArray]:
    path = Path(path)
    if not path.is_file():
        raise SymodeError(f"{what} file {path} does not exist.")
    try:
        # our own handle: np.load leaks its file when the zip directory is damaged
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                raise ValueError("no zip header")
            f.seek(0)
            z = np.load(f, allow_pickle=False)
            with z:
                data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise SymodeError(f"{path} is not a readable .npz file ({e}); it may be truncated.") from e
    found = _untext(data["format"]) if "format" in data else None
    if found != fmt:
        kind = "no symode format tag" if found is None else f"format {found!r}"
        raise SymodeError(f"{path} has {kind}, expected {fmt!r}; was it written by "
                          f"save_{what}() of this symode?")
    return data


# -- parameters ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SavedParams:
    """What :func:`load_params` read back.

    Attributes
    ----------
    theta : ndarray, shape (n_params,)
    description : str
        ``repr`` of the module (or the description given to :func:`save_params`).
    shapes : dict of str to tuple of int
        ``module.named_views`` names and shapes, in ``θ`` order (empty for a bare description).
    meta : dict
        The keyword arguments given to :func:`save_params` (JSON values).
    version : str
        ``symode.__version__`` of the writer.
    """

    theta: NDArray
    description: str
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    version: str = ""

    @property
    def n_params(self) -> int:
        return int(self.theta.size)


def _shapes_of(module, theta: NDArray) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.named_views(theta).items()}


def save_params(path: str | os.PathLike, module_or_description: Any, theta: ArrayLike,
                **meta: Any) -> Path:
    """Write parameters ``theta`` of a module to ``path`` (``.npz``), atomically.

    The file holds ``theta``, each named piece ``module.named_views(theta)`` as
    ``"view:<name>"`` (readable with ``np.load`` alone), the module's ``repr`` and parameter
    count, ``meta`` as JSON and ``symode.__version__``.

    Parameters
    ----------
    path : str or PathLike
    module_or_description : Module or str
        The module ``theta`` belongs to, or a free-form description where there is none
        (then no names or shapes are stored and :func:`load_params` checks only the count).
    theta : ndarray, shape (n_params,)
    **meta
        JSON-serialisable facts worth keeping: accuracy, epoch, data set, command line...

    Returns
    -------
    path : Path

    Raises
    ------
    ShapeError
        ``theta`` is not a flat vector of the module's ``n_params``.
    SymodeError
        ``meta`` is not JSON-serialisable.
    """
    theta = to_numpy(theta)                     # a GPU vector is saved from a host copy
    if theta.ndim != 1:
        raise ShapeError(f"save_params: theta must be flat (n_params,); got shape {theta.shape}.")
    arrays = {"theta": theta}
    if isinstance(module_or_description, str):
        description, shapes = module_or_description, {}
    elif hasattr(module_or_description, "named_views"):
        module = module_or_description
        if theta.size != module.n_params:
            raise ShapeError(f"save_params: theta has {theta.size} entries but "
                             f"{type(module).__name__} has n_params={module.n_params}.")
        description, shapes = repr(module), _shapes_of(module, theta)
        arrays.update({_VIEW + k: v for k, v in module.named_views(theta).items()})
    else:
        raise SymodeError(f"save_params: module_or_description must be a symode Module or a "
                          f"str; got {type(module_or_description).__name__}.")
    try:
        meta_json = json.dumps(meta)
    except TypeError as e:
        raise SymodeError(f"save_params: meta must be JSON-serialisable ({e}); convert arrays "
                          f"with .tolist() and numpy scalars with float().") from e
    header = {"description": description, "n_params": int(theta.size),
              "shapes": [[k, list(s)] for k, s in shapes.items()], "version": __version__}
    arrays.update(format=_text(PARAMS_FORMAT), header=_text(json.dumps(header)),
                  meta=_text(meta_json))
    return _write_npz_atomic(path, arrays)


def _check_against(path: Path, saved: SavedParams, module, strict: bool) -> None:
    name = type(module).__name__
    if saved.n_params != module.n_params:
        raise SymodeError(
            f"{path} holds {saved.n_params} parameters of\n{saved.description}\nbut this "
            f"{name} has {module.n_params}. Build the module the file was saved from.")
    if saved.shapes:
        theirs = list(saved.shapes.items())
        ours = list(_shapes_of(module, np.zeros(module.n_params)).items())
        for i in range(max(len(theirs), len(ours))):
            k0, s0 = theirs[i] if i < len(theirs) else ("(nothing)", None)
            k1, s1 = ours[i] if i < len(ours) else ("(nothing)", None)
            if k0 != k1 or s0 != s1:
                raise SymodeError(
                    f"{path}: parameter {k0!r} has shape {s0} in the file but this {name} has "
                    f"{k1!r} with shape {s1} in its place; the structures differ although the "
                    f"counts agree. Saved module:\n{saved.description}")
    if strict and saved.description != repr(module):
        raise SymodeError(f"{path} was saved from\n{saved.description}\nbut the module is\n"
                          f"{module!r}\n(strict=True compares these descriptions).")


def load_params(path: str | os.PathLike, module: Any = None, strict: bool = False) -> SavedParams:
    """Read a file written by :func:`save_params`, checking it against ``module`` if given.

    Parameters
    ----------
    path : str or PathLike
    module : Module, optional
        The module the parameters are meant for. Its ``n_params`` must equal the saved count,
        and (when the file came from a module) its parameter names and shapes must match in
        order.
    strict : bool, default False
        Also require ``repr(module)`` to equal the saved description. Off by default, because
        settings that hold no parameters (activation, solver tolerances) show up in ``repr``
        and are legitimately changed between training and use.

    Returns
    -------
    SavedParams
        ``.theta`` is the parameter vector, shape (n_params,).

    Raises
    ------
    SymodeError
        The file is missing, not a params file, or does not fit ``module``.
    """
    path = Path(path)
    data = _open_npz(path, "params", PARAMS_FORMAT)
    header = json.loads(_untext(data["header"]))
    saved = SavedParams(theta=data["theta"], description=header["description"],
                        shapes={k: tuple(s) for k, s in header["shapes"]},
                        meta=json.loads(_untext(data["meta"])), version=header["version"])
    if module is not None:
        _check_against(path, saved, module, strict)
    return saved


# -- checkpoints -----------------------------------------------------------------------------------
def _encode(obj: Any, arrays: list[NDArray], where: str) -> Any:
    """JSON-able tree for ``obj``, moving arrays (and numpy scalars) into ``arrays``."""
    if obj is None or isinstance(obj, (bool, int, float, str)) and not isinstance(obj, np.generic):
        return obj
    if is_cupy(obj):                            # GPU arrays are stored from host copies
        obj = to_numpy(obj)
    if isinstance(obj, (np.ndarray, np.generic)):
        a = np.asarray(obj)
        if a.dtype.hasobject:
            raise SymodeError(f"save_checkpoint: {where} is an object array, which cannot be "
                              f"stored without pickle; store numbers or strings.")
        arrays.append(a)
        return {_ARRAY: len(arrays) - 1, "scalar": isinstance(obj, np.generic)}
    if isinstance(obj, np.random.Generator):
        return {_GENERATOR: _encode(obj.bit_generator.state, arrays, where)}
    if isinstance(obj, tuple):
        return {_TUPLE: [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str) or k.startswith("__symode_"):
                raise SymodeError(f"save_checkpoint: key {k!r} in {where} must be a string not "
                                  f"starting with '__symode_'.")
            out[k] = _encode(v, arrays, f"{where}[{k!r}]")
        return out
    raise SymodeError(f"save_checkpoint: {where} is a {type(obj).__name__}, which a checkpoint "
                      f"cannot hold; use arrays, numbers, strings, lists, tuples, dicts or "
                      f"np.random.Generator.")


def _make_generator(state: dict) -> np.random.Generator:
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS:
        raise SymodeError(f"load_checkpoint: unknown bit generator {name!r}; expected one of "
                          f"{', '.join(_BIT_GENERATORS)}.")
    bit_generator = getattr(np.random, name)()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def _decode(obj: Any, arrays: dict[str, NDArray]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if _ARRAY in obj:
        a = arrays[f"a{obj[_ARRAY]}"]
        return a[()] if obj["scalar"] else a
    if _TUPLE in obj:
        return tuple(_decode(v, arrays) for v in obj[_TUPLE])
    if _GENERATOR in obj:
        return _make_generator(_decode(obj[_GENERATOR], arrays))
    return {k: _decode(v, arrays) for k, v in obj.items()}


def save_checkpoint(path: str | os.PathLike, **state: Any) -> Path:
    """Write a training state to ``path`` atomically, so that a crash keeps the previous one.

    Typical use, once per epoch or every few hundred steps::

        save_checkpoint("run/ckpt.npz", theta=theta, opt_state=opt_state, step=step,
                        epoch=epoch, rng=rng, history={"loss": losses})

    A ``np.random.Generator`` is stored as its ``bit_generator.state``; arrays keep their dtype
    and shape; everything else must be JSON-like (see the module docstring).

    Parameters
    ----------
    path : str or PathLike
        Written exactly (no suffix added); its directory must exist.
    **state
        The entries, returned by :func:`load_checkpoint` under the same names.

    Returns
    -------
    path : Path

    Raises
    ------
    SymodeError
        An entry holds something other than the types above (such as a lambda or a
        ``RandomState``).
    """
    arrays: list[NDArray] = []
    tree = _encode(state, arrays, "state")
    payload = {f"a{i}": a for i, a in enumerate(arrays)}
    payload.update(format=_text(CHECKPOINT_FORMAT), version=_text(__version__),
                   tree=_text(json.dumps(tree, allow_nan=True)))
    return _write_npz_atomic(path, payload)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a file written by :func:`save_checkpoint`.

    Returns
    -------
    state : dict
        The keyword arguments given to :func:`save_checkpoint`, with arrays, tuples and numpy
        scalars as saved and each generator rebuilt as a ``np.random.Generator`` in exactly the
        saved state (it continues the saved stream). ``state["symode_version"]`` is added
        unless the checkpoint has an entry of that name.

    Raises
    ------
    SymodeError
        The file is missing, truncated or not a checkpoint.
    """
    data = _open_npz(path, "checkpoint", CHECKPOINT_FORMAT)
    state = _decode(json.loads(_untext(data["tree"])), data)
    state.setdefault("symode_version", _untext(data["version"]))
    return state
