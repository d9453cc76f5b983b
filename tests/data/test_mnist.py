"""MNIST reading: small IDX files written here, the real files when present."""

import gzip
import hashlib
import io
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from symode.data import as_float, batches, download_mnist, load_mnist, read_idx
from symode.data import mnist
from symode.errors import ShapeError, SymodeError

REPO = Path(__file__).resolve().parents[2]
REAL = REPO.parent / "shared" / "data" / "mnist"       # ../shared/data/mnist from the repository
NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte"]
HAVE_REAL = all((REAL / n).is_file() or (REAL / (n + ".gz")).is_file() for n in NAMES)
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """No test here may reach the network; a download test installs its own fake web."""
    def refuse(url, *args, **kwargs):
        raise AssertionError(f"a test tried to open {url}")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def idx_bytes(array, magic=None):
    """IDX encoding of ``array``: big-endian magic, sizes and data."""
    codes = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B,
             np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}
    array = np.asarray(array)
    if magic is None:
        magic = codes[array.dtype.newbyteorder("=")] << 8 | array.ndim
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_split(directory, split="train", n=6, gz=True, images=None, labels=None, rng=None):
    rng = rng or np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) if images is None else images
    labels = rng.integers(0, 10, n, dtype=np.uint8) if labels is None else labels
    prefix = {"train": "train", "test": "t10k"}[split]
    for name, data in ((f"{prefix}-images-idx3-ubyte", idx_bytes(images)),
                       (f"{prefix}-labels-idx1-ubyte", idx_bytes(labels))):
        if gz:
            (directory / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return images, labels


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_reads_what_was_written(tmp_path, split, gz):
    images, labels = write_split(tmp_path, split, n=7, gz=gz)
    got_images, got_labels = load_mnist(tmp_path, split, verify=False)
    assert got_images.dtype == np.uint8 and got_images.shape == (7, 28, 28)
    assert got_labels.dtype == np.uint8 and got_labels.shape == (7,)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_unpacked_dot_names(tmp_path):
    images, labels = write_split(tmp_path, gz=False)
    for p in tmp_path.iterdir():
        p.rename(p.with_name(p.name.replace("-idx", ".idx")))      # train-images.idx3-ubyte
    np.testing.assert_array_equal(load_mnist(tmp_path, verify=False)[0], images)


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_read_idx_types(tmp_path, dtype, rng):
    array = (100 * rng.standard_normal((3, 4, 2))).astype(dtype)
    (tmp_path / "x.idx").write_bytes(idx_bytes(array))
    back = read_idx(tmp_path / "x.idx")
    np.testing.assert_array_equal(back, array)
    assert back.dtype.isnative


def test_missing_file(tmp_path):
    write_split(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(SymodeError) as info:
        load_mnist(tmp_path, verify=False)
    message = str(info.value)
    assert message.startswith(f"MNIST train labels not found in {tmp_path}; looked for "
                              f"labels: train-labels-idx1-ubyte.gz or train-labels-idx1-ubyte")
    for name in NAMES:                                # all four files the directory should hold
        assert name + ".gz" in message
    assert f"symode.data.download_mnist({str(tmp_path)!r})" in message
    with pytest.raises(SymodeError, match="MNIST test images and labels not found"):
        load_mnist(tmp_path, "test")
    with pytest.raises(SymodeError, match=r"not found because the directory \S*nowhere does not "
                                          r"exist.*download_mnist"):
        load_mnist(tmp_path / "nowhere")


def test_checksum_mismatch(tmp_path):
    write_split(tmp_path)
    with pytest.raises(SymodeError, match="train-images-idx3-ubyte.gz has MD5 [0-9a-f]{32}, "
                                          "expected f68b3c2dcbeaaa9fbdd348bbdeb94873.*"
                                          "verify=False"):
        load_mnist(tmp_path)


def test_wrong_magic(tmp_path):
    labels = np.zeros(6, np.uint8)
    write_split(tmp_path, gz=False, labels=labels)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(labels))   # labels as images
    with pytest.raises(SymodeError, match=r"train-images-idx3-ubyte starts with magic number "
                                          r"2049 .*expected 2051 \(0x00000803\)"):
        load_mnist(tmp_path, verify=False)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"<!DOCTYPE html> 403 Forbidden")
    with pytest.raises(SymodeError,
                       match=r"magic number 1008813135 \(bytes 3c21444f\).*an HTML page"):
        load_mnist(tmp_path, verify=False)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(gzip.compress(idx_bytes(labels)))
    with pytest.raises(SymodeError, match="gzipped but its name does not end in .gz"):
        load_mnist(tmp_path, verify=False)


def test_truncated_files(tmp_path):
    write_split(tmp_path, n=4, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(SymodeError, match=r"shape \(4, 28, 28\) of uint8, 3152 bytes in all, "
                                          r"but the file has 3052 bytes \(truncated\)"):
        load_mnist(tmp_path, verify=False)
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(SymodeError, match="ends inside its header"):
        load_mnist(tmp_path, verify=False)

    write_split(tmp_path, n=4, gz=True)
    gz = tmp_path / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:-30])
    with pytest.raises(SymodeError, match="train-images-idx3-ubyte.gz is not a complete gzip"):
        load_mnist(tmp_path, verify=False)


def test_inconsistent_contents(tmp_path):
    write_split(tmp_path, labels=np.zeros(5, np.uint8))
    with pytest.raises(SymodeError, match="6 images but 5 labels"):
        load_mnist(tmp_path, verify=False)
    write_split(tmp_path, labels=np.full(6, 12, np.uint8))
    with pytest.raises(SymodeError, match="go up to 12"):
        load_mnist(tmp_path, verify=False)
    write_split(tmp_path, images=np.zeros((6, 32, 32), np.uint8))
    with pytest.raises(SymodeError, match=r"images of shape \(32, 32\), not \(28, 28\)"):
        load_mnist(tmp_path, verify=False)
    with pytest.raises(SymodeError, match="split='val'"):
        load_mnist(tmp_path, "val")


class FakeWeb:
    """Stands in for ``urllib.request.urlopen``: serves given bytes by URL, logs requests."""

    def __init__(self, files):
        self.files, self.requests = files, []

    def __call__(self, url, timeout=None):
        self.requests.append(url)
        if url not in self.files:
            raise urllib.error.URLError("no route to host")
        return io.BytesIO(self.files[url])


@pytest.fixture
def tiny_mirror(tmp_path, monkeypatch):
    """Tiny IDX files for both splits, and the checksum table made to accept them."""
    source = tmp_path / "source"
    source.mkdir()
    write_split(source, "train")
    write_split(source, "test")
    files = {p.name: p.read_bytes() for p in source.iterdir()}
    monkeypatch.setattr(mnist, "MD5", {n: hashlib.md5(b).hexdigest() for n, b in files.items()})
    return source, files


def test_download_is_wired_to_the_mirrors(tmp_path, monkeypatch, tiny_mirror):
    source, files = tiny_mirror
    web = FakeWeb({mnist.MIRRORS[0] + name: data for name, data in files.items()})
    monkeypatch.setattr(urllib.request, "urlopen", web)
    target = tmp_path / "new" / "mnist"
    assert download_mnist(target) == target
    assert sorted(web.requests) == sorted(mnist.MIRRORS[0] + n + ".gz" for n in NAMES)
    assert sorted(p.name for p in target.iterdir()) == sorted(files)
    for split in ("train", "test"):                  # verified against the (patched) table
        np.testing.assert_array_equal(load_mnist(target, split)[0], load_mnist(source, split)[0])

    web.requests.clear()
    before = {p.name: p.stat().st_mtime_ns for p in target.iterdir()}
    download_mnist(target)                           # all present and intact: nothing fetched
    assert web.requests == []
    assert before == {p.name: p.stat().st_mtime_ns for p in target.iterdir()}


def test_download_falls_back_and_never_installs_a_bad_file(tmp_path, monkeypatch, tiny_mirror):
    _, files = tiny_mirror
    first, second = "https://first.example/mnist/", "https://second.example/mnist/"
    served = {first + n: d for n, d in files.items()}
    served[first + "t10k-labels-idx1-ubyte.gz"] = b"<html>moved</html>"     # damaged there
    served.update({second + n: d for n, d in files.items()})
    web = FakeWeb(served)
    monkeypatch.setattr(urllib.request, "urlopen", web)
    target = download_mnist(tmp_path / "data", base_url=[first, second])
    assert web.requests.count(second + "t10k-labels-idx1-ubyte.gz") == 1
    assert sum(u.startswith(second) for u in web.requests) == 1
    assert (target / "t10k-labels-idx1-ubyte.gz").read_bytes() == \
        files["t10k-labels-idx1-ubyte.gz"]

    (target / "t10k-labels-idx1-ubyte.gz").write_bytes(b"truncated")   # fails its checksum
    web.files = {first + "t10k-labels-idx1-ubyte.gz": b"<html>moved</html>"}
    with pytest.raises(SymodeError, match="(?s)could not download t10k-labels-idx1-ubyte.gz.*"
                                          "first.example.*has MD5 .* expected.*"
                                          "second.example.*no route to host"):
        download_mnist(target, base_url=[first, second])
    assert (target / "t10k-labels-idx1-ubyte.gz").read_bytes() == b"truncated"
    assert not [p for p in target.iterdir() if p.name.startswith(".")]   # no partial file


def test_checksums_are_those_of_the_official_files():
    """The table lists the four gzipped files and the same files unpacked."""
    assert sorted(mnist.MD5) == sorted(NAMES + [n + ".gz" for n in NAMES])
    assert all(len(v) == 32 and int(v, 16) >= 0 for v in mnist.MD5.values())


def test_as_float():
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    x = as_float(images, normalize=False)
    assert x.dtype == np.float32 and x.shape == (1, 1, 2, 2)
    np.testing.assert_allclose(x[0, 0], [[0, 1], [0.2, 0.4]], rtol=1e-7)
    z = as_float(images)
    np.testing.assert_allclose(z, (x - 0.1307) / 0.3081, rtol=1e-6)
    assert z.dtype == np.float32
    with pytest.raises(ShapeError, match="uint8 of shape"):
        as_float(images.astype(np.float64))
    with pytest.raises(ShapeError, match=r"shape \(2, 2\)"):
        as_float(images[0])


def test_batches(rng):
    x, y = np.arange(23)[:, None] * np.ones((1, 3)), np.arange(23)
    seen = [yb for _, yb in batches(x, y, 5, rng)]
    assert [len(b) for b in seen] == [5, 5, 5, 5, 3]
    assert sorted(np.concatenate(seen)) == list(range(23))
    assert not np.array_equal(np.concatenate(seen), np.arange(23))
    for xb, yb in batches(x, y, 5, rng):
        np.testing.assert_array_equal(xb[:, 0], yb)                # pairs stay together

    assert [len(b) for _, b in batches(x, y, 5, rng, drop_last=True)] == [5, 5, 5, 5]
    ordered = list(batches(x, y, 10, shuffle=False))
    np.testing.assert_array_equal(ordered[2][1], [20, 21, 22])
    assert np.shares_memory(ordered[0][0], x)                      # views, no copies


def test_batches_draws_its_order_at_the_call():
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    x = np.arange(10)
    it = batches(x, x, 4, a)
    b.permutation(10)
    assert a.random() == b.random()                              # before iterating
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in it]),
                                  np.random.default_rng(3).permutation(10))


def test_batches_errors(rng):
    x = np.zeros((4, 2))
    with pytest.raises(ShapeError, match="x has 4 samples but y has 3"):
        batches(x, np.zeros(3), 2, rng)
    with pytest.raises(SymodeError, match="batch_size=0"):
        batches(x, x, 0, rng)
    with pytest.raises(SymodeError, match="shuffle=True needs rng"):
        batches(x, x, 2)


@pytest.mark.skipif(not HAVE_REAL, reason=f"the four MNIST files are not in {REAL}")
def test_real_mnist():
    for path in REAL.iterdir():                       # the copy there is the official one
        if path.name in mnist.MD5:
            assert hashlib.md5(path.read_bytes()).hexdigest() == mnist.MD5[path.name], path
    images, labels = load_mnist(REAL, "train")
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)
    assert np.bincount(labels).tolist() == TRAIN_COUNTS
    assert images.mean() / 255 == pytest.approx(0.1307, abs=1e-4)
    x = as_float(images[:10000])
    assert abs(float(x.mean())) < 0.02 and float(x.std()) == pytest.approx(1.0, abs=0.02)

    images, labels = load_mnist(REAL, "test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert np.bincount(labels).tolist() == TEST_COUNTS
