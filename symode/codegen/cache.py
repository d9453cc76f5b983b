"""Generated modules on disk, keyed by a hash of their source, so a second process skips work.

Each module is written once as ``<tag>_<hash>.py`` in the cache directory and imported from
there; its functions carry numba's ``cache=True``, so numba keeps the compiled machine code
beside it (``__pycache__``) and a later process loads it instead of compiling again. The key
hashes the source text together with the versions of symode, numba and Python.

The directory is ``$SYMODE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/symode`` (default
``~/.cache/symode``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import numba

from ..errors import SymodeError

__all__ = ["cache_dir", "load_module", "source_key"]

FORMAT_VERSION = "1"
_loaded: dict[str, ModuleType] = {}


def cache_dir() -> Path:
    """Directory holding generated modules (created on first use)."""
    env = os.environ.get("SYMODE_CACHE_DIR")
    if env:
        path = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = Path(base) / "symode"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SymodeError(
            f"cannot create the code cache directory {path} ({exc}). Set SYMODE_CACHE_DIR to a "
            f"writable directory."
        ) from None
    return path


def source_key(source: str) -> str:
    """Hash of the source text and of everything that changes the compiled code."""
    from .. import __version__

    versions = f"{FORMAT_VERSION}|{__version__}|{numba.__version__}|{sys.version_info[:2]}"
    return hashlib.sha256((versions + "\n" + source).encode()).hexdigest()[:24]


def load_module(source: str, tag: str) -> ModuleType:
    """Import the module with this source text, writing it to the cache on first use.

    Parameters
    ----------
    source : str
        Complete module text.
    tag : str
        Readable prefix of the file name (``"kernel_dopri5"``).
    """
    key = f"{tag}_{source_key(source)}"
    if key in _loaded:
        return _loaded[key]
    path = cache_dir() / f"{key}.py"
    if not path.exists() or path.read_text() != source:
        _write_atomically(path, source)
    spec = importlib.util.spec_from_file_location(f"symode_generated_{key}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # numba's cache finds the module of a cached function by name
    spec.loader.exec_module(module)
    _loaded[key] = module
    return module


def _write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file in the same directory, then rename over the target."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp_", suffix=".py")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
