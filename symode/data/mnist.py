"""MNIST (LeCun, Bottou, Bengio & Haffner 1998) from the four standard IDX files.

``load_mnist(directory)`` reads ``train-images-idx3-ubyte.gz`` and friends (gzip or already
unpacked), checks their MD5 against the official files and returns ``uint8`` arrays;
:func:`as_float` turns images into the network's input and :func:`batches` deals out
minibatches. :func:`download_mnist` fetches the files for a machine that is online.

IDX format: a big-endian header ``0x00 0x00 <type> <ndim>`` (``0x08`` = unsigned byte), then
``ndim`` big-endian int32 sizes, then the data in C order. Images have magic number 2051
(``0x00000803``, shape (N, 28, 28)); labels 2049 (``0x00000801``, shape (N,)).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import urllib.request
import uuid
import zlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from ..errors import ShapeError, SymodeError

__all__ = ["load_mnist", "download_mnist", "as_float", "batches", "read_idx",
           "MNIST_MEAN", "MNIST_STD", "MIRRORS"]

#: Mean and standard deviation of the training pixels scaled to [0, 1] (the values torchvision
#: examples use; the exact mean is 0.13066).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

#: Where :func:`download_mnist` looks, in order (the original site often refuses scripts).
MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
           "http://yann.lecun.com/exdb/mnist/")

_PREFIX = {"train": "train", "test": "t10k"}
_MAGIC = {"images": 2051, "labels": 2049}
_NDIM = {"images": 3, "labels": 1}
#: MD5 of the official files; the unpacked ones are those of the official ``.gz`` gunzipped.
MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FIX = ("Delete it and run symode.data.download_mnist(directory), or fetch the file again "
        "from one of symode.data.mnist.MIRRORS.")


def _file_name(split: str, kind: str) -> str:
    return f"{_PREFIX[split]}-{kind}-idx{_NDIM[kind]}-ubyte"


def _candidates(split: str, kind: str) -> list[str]:
    """Accepted names, in order of preference: gzipped, unpacked, unpacked with a dot."""
    name = _file_name(split, kind)
    return [name + ".gz", name, name.replace(f"-idx{_NDIM[kind]}", f".idx{_NDIM[kind]}")]


def _find(directory: Path, split: str) -> dict[str, Path]:
    """Paths of the images and labels files of ``split``; a clear error if any is missing."""
    found = {}
    for kind in _MAGIC:
        hits = [directory / c for c in _candidates(split, kind) if (directory / c).is_file()]
        if hits:
            found[kind] = hits[0]
    missing = [kind for kind in _MAGIC if kind not in found]
    if not missing:
        return found
    where = (f"in {directory}" if directory.is_dir()
             else f"because the directory {directory} does not exist")
    looked = "; ".join(f"{kind}: {' or '.join(_candidates(split, kind))}" for kind in missing)
    expected = ", ".join(_file_name(s, k) + ".gz" for s in _PREFIX for k in _MAGIC)
    raise SymodeError(
        f"MNIST {split} {' and '.join(missing)} not found {where}; looked for {looked}. The "
        f"directory should hold the four IDX files ({expected}, gzipped or not). Get them with "
        f"symode.data.download_mnist({str(directory)!r}) on a machine that is online, or copy "
        f"them there from {MIRRORS[0]}.")


def _md5(data: bytes) -> str:
    # a check against damaged downloads, not a security measure
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _verify(path: Path, raw: bytes) -> None:
    expected = MD5.get(path.name.replace(".idx", "-idx"))
    if expected is None:
        return
    got = _md5(raw)
    if got != expected:
        raise SymodeError(
            f"{path} has MD5 {got}, expected {expected}: it is corrupt, incomplete or not the "
            f"official file. {_FIX} Pass verify=False only for a file you trust.")


def read_idx(path: str | os.PathLike, raw: bytes | None = None,
             magic: int | None = None) -> NDArray:
    """Read one IDX file (gzipped when the name ends in ``.gz``) into an array.

    Parameters
    ----------
    path : str or PathLike
    raw : bytes, optional
        The file's contents if already read; ``path`` then only names it in errors.
    magic : int, optional
        Required magic number (2051 for MNIST images, 2049 for labels); any IDX type if omitted.

    Returns
    -------
    array : ndarray
        Shape and dtype from the header, in native byte order.

    Raises
    ------
    SymodeError
        Not gzip although named ``.gz``, a wrong magic number, or a size that disagrees with
        the header (a truncated download).
    """
    path = Path(path)
    raw = path.read_bytes() if raw is None else raw
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise SymodeError(f"{path} is not a complete gzip file ({e}). {_FIX}") from e
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    valid = found is not None and raw[:2] == b"\0\0" and raw[2] in _DTYPES
    if not valid or (magic is not None and found != magic):
        want = f"{magic} (0x{magic:08x})" if magic is not None else "an IDX magic number"
        if raw[:1] == b"<":
            cause = "it looks like an HTML page, saved from a failed download"
        elif raw[:2] == b"\x1f\x8b":
            cause = "it is gzipped but its name does not end in .gz"
        else:
            cause = "mixed up images and labels, or not unpacked properly"
        raise SymodeError(
            f"{path} starts with magic number {found} (bytes {raw[:4].hex() or 'none'}), "
            f"expected {want}: it is not the right IDX file ({cause}). {_FIX}")
    ndim, dtype = raw[3], np.dtype(_DTYPES[raw[2]])
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise SymodeError(f"{path} ends inside its header ({len(raw)} bytes): truncated. {_FIX}")
    shape = tuple(int(n) for n in np.frombuffer(raw, ">u4", ndim, 4))
    expected = head + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "trailing data"
        raise SymodeError(
            f"{path}: the header announces shape {shape} of {dtype.name}, {expected} bytes in "
            f"all, but the file has {len(raw)} bytes ({what}). {_FIX}")
    return np.frombuffer(raw, dtype, offset=head).reshape(shape).astype(dtype.newbyteorder("="))


def _read(path: Path, kind: str, verify: bool) -> NDArray[np.uint8]:
    raw = path.read_bytes()
    if verify:
        _verify(path, raw)
    array = read_idx(path, raw, magic=_MAGIC[kind])
    if kind == "images" and array.shape[1:] != (28, 28):
        raise SymodeError(f"{path} holds images of shape {array.shape[1:]}, not (28, 28). {_FIX}")
    return array


def load_mnist(directory: str | os.PathLike, split: str = "train",
               verify: bool = True) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Images and labels of one MNIST split, as stored.

    Parameters
    ----------
    directory : str or PathLike
        Holds ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` with or without ``.gz`` (an
        unpacked ``train-images.idx3-ubyte`` is accepted too).
    split : {"train", "test"}
        60000 training or 10000 test digits.
    verify : bool, default True
        Compare each file's MD5 with the official one (a few milliseconds; MD5 here guards
        against damaged downloads, not tampering).

    Returns
    -------
    images : ndarray of uint8, shape (N, 28, 28)
        Grey levels, 0 = background, 255 = ink.
    labels : ndarray of uint8, shape (N,)
        Digits 0-9.

    Raises
    ------
    SymodeError
        A file is missing, fails its checksum, has the wrong magic number (2051 for images,
        2049 for labels) or the wrong size; the message names the file and what to do.
    """
    if split not in _PREFIX:
        raise SymodeError(f"load_mnist: split={split!r}; use 'train' or 'test'.")
    directory = Path(directory)
    paths = _find(directory, split)
    images, labels = (_read(paths[k], k, verify) for k in ("images", "labels"))
    if len(images) != len(labels):
        raise SymodeError(f"MNIST {split} in {directory}: {len(images)} images but "
                          f"{len(labels)} labels; one of the files is from another split.")
    if labels.size and labels.max() > 9:
        raise SymodeError(f"MNIST {split} labels in {directory} go up to {labels.max()}; "
                          f"digits are 0-9. {_FIX}")
    return images, labels


def _fetch(url: str, target: Path, expected_md5: str) -> None:
    """Download ``url`` to ``target`` via a temporary file, keeping it only if the MD5 fits."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    md5 = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
            while chunk := response.read(1 << 20):
                md5.update(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        if md5.hexdigest() != expected_md5:
            raise SymodeError(f"{url} has MD5 {md5.hexdigest()}, expected {expected_md5}; the "
                              f"mirror serves a different or damaged file.")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _download_one(urls: Sequence[str], name: str, target: Path) -> None:
    failures = []
    for base in urls:
        try:
            return _fetch(base + name, target, MD5[name])
        except (OSError, ValueError, http.client.HTTPException, SymodeError) as e:
            failures.append(f"{base + name}: {e}")     # urllib's URLError is an OSError
    raise SymodeError(f"could not download {name} into {target.parent}:\n  "
                      + "\n  ".join(failures)
                      + "\nCheck the connection, or copy the file there by hand.")


def download_mnist(directory: str | os.PathLike,
                   base_url: str | Sequence[str] = MIRRORS) -> Path:
    """Fetch the four gzipped MNIST files into ``directory`` and verify their MD5.

    Files already there with the right checksum are kept; others are downloaded to a
    temporary name and renamed into place only once their checksum matches, so an interrupted
    download never leaves a partial file under the real name.

    Parameters
    ----------
    directory : str or PathLike
        Created if missing.
    base_url : str or sequence of str, default MIRRORS
        URL prefix(es) ending in ``/``, tried in order for each file until one succeeds.

    Returns
    -------
    directory : Path
        Ready for :func:`load_mnist`.

    Raises
    ------
    SymodeError
        No mirror delivered a file with the official checksum; the message lists each
        mirror's failure.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    urls = [base_url] if isinstance(base_url, str) else list(base_url)
    for split in _PREFIX:
        for kind in _MAGIC:
            name = _file_name(split, kind) + ".gz"
            target = directory / name
            if not (target.is_file() and _md5(target.read_bytes()) == MD5[name]):
                _download_one(urls, name, target)
    return directory


def as_float(images: NDArray[np.uint8], normalize: bool = True) -> NDArray[np.float32]:
    """Network input from ``uint8`` images: float32 with a channel axis.

    ``x = images / 255``, then, if ``normalize``, ``(x - 0.1307) / 0.3081``
    (:data:`MNIST_MEAN`, :data:`MNIST_STD`: the mean and standard deviation of the training
    pixels), so the training set has roughly zero mean and unit variance; background pixels
    become -0.4242.

    Parameters
    ----------
    images : ndarray of uint8, shape (N, 28, 28)
    normalize : bool, default True

    Returns
    -------
    x : ndarray of float32, shape (N, 1, 28, 28)
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ShapeError(f"as_float: images must be uint8 of shape (N, H, W) as load_mnist "
                         f"returns them; got {images.dtype} of shape {images.shape}.")
    x = images[:, None].astype(np.float32) / np.float32(255)
    if normalize:
        x -= np.float32(MNIST_MEAN)
        x /= np.float32(MNIST_STD)
    return x


def batches(x: NDArray, y: NDArray, batch_size: int, rng: np.random.Generator | None = None,
            shuffle: bool = True, drop_last: bool = False) -> Iterator[tuple[NDArray, NDArray]]:
    """Minibatches ``(x[idx], y[idx])`` covering the data once (one epoch).

    The order is drawn from ``rng`` when ``batches`` is called, not when iteration starts, so
    ``rng``'s state right after the call is fixed (a checkpoint taken then resumes exactly).

    Parameters
    ----------
    x, y : ndarray, shape (N, ...)
        Inputs and targets, matched along the first axis.
    batch_size : int
    rng : np.random.Generator, optional
        Needed when ``shuffle``.
    shuffle : bool, default True
        Visit the samples in a random permutation; otherwise in order (as views, no copies).
    drop_last : bool, default False
        Leave out the final batch when it is smaller than ``batch_size``.

    Returns
    -------
    iterator of (xb, yb)
        ``xb`` of shape (batch_size, ...) (the last one possibly smaller), ``yb`` likewise.
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ShapeError(f"batches: x has {len(x)} samples but y has {len(y)}.")
    if int(batch_size) != batch_size or batch_size < 1:
        raise SymodeError(f"batches: batch_size={batch_size!r} must be an integer >= 1.")
    if shuffle and not isinstance(rng, np.random.Generator):
        raise SymodeError("batches: shuffle=True needs rng=np.random.default_rng(seed).")
    n = len(x)
    order = rng.permutation(n) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    return _deal(x, y, order, int(batch_size), stop)


def _deal(x, y, order, batch_size, stop):
    for start in range(0, stop, batch_size):
        if order is None:
            yield x[start:start + batch_size], y[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]
