"""Parameter files and checkpoints: round trips, structure checks, exact resumption."""

import os
from pathlib import Path

import numpy as np
import pytest

import symode
from symode.errors import ShapeError, SymodeError
from symode.nn.io import load_checkpoint, load_params, save_checkpoint, save_params
from symode.nn.module import Module, Sequential
from symode.nn.optim import SGD, Adam, RMSprop


class Affine(Module):
    """y = x Wᵀ + b; enough structure for the files (no maps needed here)."""

    def __init__(self, n_in, n_out):
        self.n_in, self.n_out = n_in, n_out

    def param_shapes(self):
        return {"weight": (self.n_out, self.n_in), "bias": (self.n_out,)}

    def __repr__(self):
        return f"Affine({self.n_in}, {self.n_out})"


class Gain(Module):
    """A parameter of size zero: adds a name but no entries to θ."""

    def param_shapes(self):
        return {"gain": (0,)}


def _net():
    return Sequential(Affine(2, 3), Affine(3, 2))        # 17 parameters


# -- parameters ------------------------------------------------------------------------------------
def test_params_round_trip(tmp_path, rng):
    net = _net()
    theta = rng.standard_normal(net.n_params)
    path = save_params(tmp_path / "net.npz", net, theta, accuracy=0.97, data="mnist")
    saved = load_params(path, net, strict=True)
    np.testing.assert_array_equal(saved.theta, theta)
    assert saved.n_params == 17 and saved.description == repr(net)
    assert saved.shapes == {"0.weight": (3, 2), "0.bias": (3,), "1.weight": (2, 3),
                            "1.bias": (2,)}
    assert saved.meta == {"accuracy": 0.97, "data": "mnist"}
    assert saved.version == symode.__version__
    with np.load(path, allow_pickle=False) as z:           # readable without symode
        np.testing.assert_array_equal(z["view:1.weight"], net.named_views(theta)["1.weight"])


def test_params_mismatch(tmp_path, rng):
    net = _net()
    path = save_params(tmp_path / "net.npz", net, rng.standard_normal(17))
    with pytest.raises(SymodeError, match="(?s)holds 17 parameters .*has 26"):
        load_params(path, Sequential(Affine(2, 3), Affine(3, 2), Affine(2, 3)))
    same_count = Sequential(Affine(3, 2), Affine(2, 3))
    with pytest.raises(SymodeError, match=r"'0.weight' has shape \(3, 2\) in the file"):
        load_params(path, same_count)
    one_more = Sequential(Affine(2, 3), Affine(3, 2), Gain())      # same names so far, 17 too
    with pytest.raises(SymodeError, match=r"'\(nothing\)' has shape None in the file but this "
                                          r"Sequential has '2.gain' with shape \(0,\)"):
        load_params(path, one_more)
    with pytest.raises(SymodeError, match=r"'2.gain' has shape \(0,\) in the file .* "
                                          r"'\(nothing\)'"):
        load_params(save_params(tmp_path / "more.npz", one_more, np.zeros(17)), _net())


def test_params_keep_dtype(tmp_path, rng):
    theta = rng.standard_normal(17).astype(np.float32)
    back = load_params(save_params(tmp_path / "net.npz", _net(), theta), _net()).theta
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, theta)


def test_params_strict_compares_descriptions(tmp_path, rng):
    class Renamed(Affine):
        def __repr__(self):
            return f"Renamed({self.n_in}, {self.n_out})"

    path = save_params(tmp_path / "net.npz", _net(), rng.standard_normal(17))
    other = Sequential(Renamed(2, 3), Renamed(3, 2))
    assert load_params(path, other).n_params == 17
    with pytest.raises(SymodeError, match="strict=True"):
        load_params(path, other, strict=True)


def test_params_with_description(tmp_path, rng):
    theta = rng.standard_normal(5)
    path = save_params(tmp_path / "p.npz", "lorenz parameters fitted to run 3", theta)
    saved = load_params(path)
    assert saved.description == "lorenz parameters fitted to run 3" and saved.shapes == {}
    with pytest.raises(SymodeError, match="holds 5 parameters"):
        load_params(path, _net())


def test_params_errors(tmp_path, rng):
    net = _net()
    with pytest.raises(ShapeError, match="theta has 16 entries but Sequential has n_params=17"):
        save_params(tmp_path / "a.npz", net, np.zeros(16))
    with pytest.raises(SymodeError, match="meta must be JSON-serialisable"):
        save_params(tmp_path / "a.npz", net, np.zeros(17), weights=np.zeros(2))
    with pytest.raises(ShapeError, match=r"theta must be flat \(n_params,\); got shape \(1, 17\)"):
        save_params(tmp_path / "a.npz", net, np.zeros((1, 17)))
    with pytest.raises(SymodeError, match="must be a symode Module or a str; got dict"):
        save_params(tmp_path / "a.npz", {"layers": 2}, np.zeros(17))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SymodeError, match="does not exist"):
        load_params(tmp_path / "missing.npz")
    save_checkpoint(tmp_path / "ckpt.npz", step=3)
    with pytest.raises(SymodeError, match="format 'symode-checkpoint-1', expected 'symode-params"):
        load_params(tmp_path / "ckpt.npz")
    good = save_params(tmp_path / "good.npz", net, np.zeros(17)).read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[:len(good) // 2])
    with pytest.raises(SymodeError, match="not a readable .npz file"):
        load_params(tmp_path / "cut.npz")


# -- checkpoints -----------------------------------------------------------------------------------
def test_checkpoint_round_trip(tmp_path):
    state = dict(
        theta=np.arange(5.0), counts=np.arange(3, dtype=np.int16), step=12, epoch=2,
        lr=np.float32(0.25), huge=2 ** 100, betas=(0.9, 0.999), note="x", nothing=None,
        flag=True, history={"loss": [1.5, 0.5, float("nan")], "acc": []},
        nested=[{"a": (1, np.ones(2))}],
        rng=np.random.default_rng(7), mt=np.random.Generator(np.random.MT19937(3)),
    )
    state["rng"].random(3)                              # not at the start of its stream
    path = save_checkpoint(tmp_path / "ckpt.npz", **state)
    back = load_checkpoint(path)
    assert back.pop("symode_version") == symode.__version__
    assert set(back) == set(state)
    for k in ("theta", "counts"):
        np.testing.assert_array_equal(back[k], state[k])
        assert back[k].dtype == state[k].dtype
    assert back["lr"] == np.float32(0.25) and back["lr"].dtype == np.float32
    assert back["huge"] == 2 ** 100 and back["betas"] == (0.9, 0.999)
    assert (back["step"], back["epoch"], back["note"], back["nothing"], back["flag"]) == \
        (12, 2, "x", None, True)
    assert back["history"]["loss"][:2] == [1.5, 0.5] and np.isnan(back["history"]["loss"][2])
    assert isinstance(back["nested"][0]["a"], tuple)
    np.testing.assert_array_equal(back["nested"][0]["a"][1], np.ones(2))
    for k in ("rng", "mt"):
        assert isinstance(back[k], np.random.Generator)
        np.testing.assert_array_equal(back[k].random(4), state[k].random(4))


def test_checkpoint_refuses_what_it_cannot_store(tmp_path):
    with pytest.raises(SymodeError, match=r"state\['f'\] is a function"):
        save_checkpoint(tmp_path / "c.npz", f=lambda: 0)
    with pytest.raises(SymodeError, match="key 1 in state\\['d'\\] must be a string"):
        save_checkpoint(tmp_path / "c.npz", d={1: 2})
    with pytest.raises(SymodeError, match="object array"):
        save_checkpoint(tmp_path / "c.npz", a=np.array([None, 1]))
    assert list(tmp_path.iterdir()) == []


RESUMABLE = {"sgd-momentum": SGD(0.05, momentum=0.9), "adam": Adam(0.2),
             "rmsprop-centered": RMSprop(0.05, momentum=0.5, centered=True)}


def _train(opt, theta, opt_state, rng, steps, x, y, history):
    """Linear least squares on random minibatches of 8."""
    for _ in range(steps):
        idx = rng.choice(len(x), size=8, replace=False)
        residual = x[idx] @ theta - y[idx]
        history.append(float(residual @ residual) / 8)
        theta, opt_state = opt.step(theta, 2 * x[idx].T @ residual / 8, opt_state)
    return theta, opt_state


@pytest.mark.parametrize("name", RESUMABLE)
def test_resume_from_checkpoint_is_bit_identical(tmp_path, name):
    opt = RESUMABLE[name]
    data = np.random.default_rng(0)
    x = data.standard_normal((64, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1 * data.standard_normal(64)
    theta0 = np.zeros(3)
    opt_state0 = opt.init(theta0)

    straight_history = []
    straight, _ = _train(opt, theta0, opt_state0, np.random.default_rng(1), 20, x, y,
                         straight_history)

    history, rng = [], np.random.default_rng(1)
    theta, opt_state = _train(opt, theta0, opt_state0, rng, 10, x, y, history)
    save_checkpoint(tmp_path / "ckpt.npz", theta=theta, opt_state=opt_state, step=10, rng=rng,
                    history={"loss": history})
    del theta, opt_state, rng, history
    ck = load_checkpoint(tmp_path / "ckpt.npz")
    history = ck["history"]["loss"]
    resumed, opt_state = _train(opt, ck["theta"], ck["opt_state"], ck["rng"], 10, x, y, history)

    np.testing.assert_array_equal(resumed, straight)      # bit for bit
    assert history == straight_history and opt_state["step"] == 20
    assert np.mean(history[-5:]) < 0.2 * np.mean(history[:5])   # and it did learn


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, theta=np.ones(4), step=1)

    def crash(src, dst):
        assert Path(src).parent == tmp_path and Path(src).stat().st_size > 0   # new file done
        raise OSError("disk unplugged")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk unplugged"):
        save_checkpoint(path, theta=np.full(4, 2.0), step=2)
    monkeypatch.undo()
    ck = load_checkpoint(path)
    assert ck["step"] == 1
    np.testing.assert_array_equal(ck["theta"], np.ones(4))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]   # no temporary left behind


@pytest.mark.parametrize("writer", ["checkpoint", "params"])
def test_crash_while_writing_keeps_previous_file(tmp_path, monkeypatch, writer):
    """Interrupted halfway through the archive: the target still holds the old contents."""
    path, net = tmp_path / "file.npz", _net()
    save = {"checkpoint": lambda th: save_checkpoint(path, theta=th),
            "params": lambda th: save_params(path, net, th)}[writer]
    save(np.ones(17))
    before = path.read_bytes()

    def half_written(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", half_written)
    with pytest.raises(KeyboardInterrupt):
        save(np.full(17, 2.0))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["file.npz"]
    back = load_checkpoint(path)["theta"] if writer == "checkpoint" else load_params(path).theta
    np.testing.assert_array_equal(back, np.ones(17))


def test_overwrite_replaces(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, step=1)
    save_checkpoint(path, step=2)
    assert load_checkpoint(path)["step"] == 2


def test_resumed_generator_continues_the_stream(tmp_path):
    """After a reload the next draws of every kind equal those of the generator that was saved."""
    rng = np.random.default_rng(2024)
    rng.standard_normal(1001)
    rng.integers(0, 2 ** 31, 3, dtype=np.int32)      # leaves a buffered 32-bit half behind
    save_checkpoint(tmp_path / "c.npz", rng=rng)
    back = load_checkpoint(tmp_path / "c.npz")["rng"]
    assert back.bit_generator.state == rng.bit_generator.state
    for draw in (lambda g: g.standard_normal(5), lambda g: g.integers(0, 10 ** 9, 7),
                 lambda g: g.permutation(20), lambda g: g.random(3)):
        np.testing.assert_array_equal(draw(back), draw(rng))


def test_save_into_missing_directory(tmp_path):
    with pytest.raises(SymodeError, match="does not exist"):
        save_checkpoint(tmp_path / "nope" / "c.npz", step=1)
