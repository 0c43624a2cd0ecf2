"""Checkpoints round-trip exactly, never unpickle, say what differs, and are written atomically."""
import json
import os
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnc
from nnc import Linear, tanh
from nnc.checkpoint import CheckpointError, load, save, write_atomically


def make_model(hidden=4, out=2):
    return Linear(3, hidden) >> tanh >> Linear(hidden, out)


@pytest.fixture
def saved(tmp_path):
    model = make_model()
    params = model.init(seed=3)
    path = tmp_path / "model.npz"
    save(path, model, params)
    return model, params, path


def leaves_equal(a, b):
    la, lb = nnc.tree_leaves(a), nnc.tree_leaves(b)
    return len(la) == len(lb) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(la, lb))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_exact_in_values_dtypes_and_structure(tmp_path, dtype):
    model = make_model()
    params = model.init(seed=1, dtype=dtype)
    save(tmp_path / "m.npz", model, params)
    loaded = load(tmp_path / "m.npz", model)
    assert nnc.tree_flatten(loaded)[1] == nnc.tree_flatten(params)[1]
    assert leaves_equal(loaded, params)


def test_the_file_is_a_plain_npz_with_paths_and_the_signature(saved):
    model, params, path = saved
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["__nnc__", "linear_0/W", "linear_0/b", "linear_1/W", "linear_1/b"]
        np.testing.assert_array_equal(archive["linear_1/W"], params["linear_1"]["W"])
        meta = json.loads(str(archive["__nnc__"]))
    assert meta["format"] == "nnc-checkpoint" and meta["version"] == 1
    assert meta["signature"] == "Vec[3] -> Vec[2]"
    assert meta["model"] == "Linear(3 -> 4) >> tanh >> Linear(4 -> 2)"
    assert [(p["path"], p["shape"]) for p in meta["parameters"]] == [
        ("linear_0/W", [3, 4]), ("linear_0/b", [4]), ("linear_1/W", [4, 2]), ("linear_1/b", [2])]


def test_a_different_model_is_refused_saying_what_differs(saved):
    _, _, path = saved
    with pytest.raises(CheckpointError) as info:
        load(path, make_model(hidden=5, out=3))
    assert str(info.value) == (
        f"checkpoint {path} was saved from a different model\n"
        "  saved from:   Linear(3 -> 4) >> tanh >> Linear(4 -> 2)  (Vec[3] -> Vec[2])\n"
        "  loading into: Linear(3 -> 5) >> tanh >> Linear(5 -> 3)  (Vec[3] -> Vec[3])\n"
        "  signature: saved Vec[3] -> Vec[2], this model Vec[3] -> Vec[3]\n"
        "  linear_0/W: saved shape (3, 4), the model expects (3, 5)\n"
        "  linear_0/b: saved shape (4,), the model expects (5,)\n"
        "  linear_1/W: saved shape (4, 2), the model expects (5, 3)\n"
        "  linear_1/b: saved shape (2,), the model expects (3,)\n"
        "  hint: load it into the model it was saved from (same layers, sizes and names)\n"
        "  see docs/errors.md#checkpointerror")


def test_missing_and_extra_parameters_are_listed(saved):
    _, _, path = saved
    other = Linear(3, 4) >> tanh >> Linear(4, 2) >> tanh >> Linear(2, 2)
    with pytest.raises(CheckpointError, match=r"  linear_2/W: the model has it \(shape \(2, 2\)\), the file does not"):
        load(path, other)
    with pytest.raises(CheckpointError, match=r"  linear_1/W: in the file \(shape \(4, 2\)\), not in the model"):
        load(path, Linear(3, 4, name="linear_0") >> tanh)


def test_a_truncated_file_is_named_as_such(saved, tmp_path):
    _, _, path = saved
    model = make_model()
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut.npz is truncated or corrupt \(BadZipFile"):
        load(tmp_path / "cut.npz", model)
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.npz is truncated or corrupt"):
        load(tmp_path / "empty.npz", model)


@settings(max_examples=60)
@given(st.data())
def test_any_damage_is_an_error_or_harmless_never_different_numbers(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("damage")
    model = make_model()
    params = model.init(seed=3)
    save(folder / "m.npz", model, params)
    raw = bytearray((folder / "m.npz").read_bytes())
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="length")]
    else:
        at = data.draw(st.integers(0, len(raw) - 1), label="position")
        raw[at] ^= data.draw(st.integers(1, 255), label="bits")
    (folder / "bad.npz").write_bytes(bytes(raw))
    try:
        loaded = load(folder / "bad.npz", model)
    except CheckpointError:
        return
    assert leaves_equal(loaded, params)  # a flipped bit in zip bookkeeping that numpy never reads


class _Exploit:
    def __reduce__(self):
        return (os.mkdir, (os.environ["NNC_EXPLOIT_MARKER"],))


def test_a_pickle_is_never_unpickled(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("NNC_EXPLOIT_MARKER", str(marker))
    (tmp_path / "evil.npz").write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(CheckpointError, match=r"evil.npz is not an .npz archive \(numpy could only read it "
                                              r"as a pickle, which nnc never loads\)"):
        load(tmp_path / "evil.npz", make_model())
    assert not marker.exists()


def test_an_object_array_inside_an_npz_is_refused(tmp_path, saved):
    model, params, _ = saved
    with np.load(saved[2], allow_pickle=False) as archive:
        entries = {k: archive[k] for k in archive.files}
    entries["linear_0/W"] = np.array([{"a": 1}], dtype=object)
    np.savez(tmp_path / "objects.npz", **entries)
    with pytest.raises(CheckpointError, match=r"objects.npz holds an array of Python objects \(pickled data, which nnc never loads\)"):
        load(tmp_path / "objects.npz", model)


def test_files_that_are_not_checkpoints_are_named(tmp_path):
    model = make_model()
    np.save(tmp_path / "one.npy", np.ones(3))
    with pytest.raises(CheckpointError, match=r"one.npy holds a single numpy array \(.npy\), not an nnc checkpoint"):
        load(tmp_path / "one.npy", model)
    np.savez(tmp_path / "plain.npz", weights=np.ones(3))
    with pytest.raises(CheckpointError, match=r"plain.npz is an .npz archive but not an nnc checkpoint "
                                              r"\(it has no '__nnc__' entry; it holds weights\)"):
        load(tmp_path / "plain.npz", model)
    np.savez(tmp_path / "header.npz", __nnc__=np.array('{"format": "something else"}'))
    with pytest.raises(CheckpointError, match="whose '__nnc__' entry is not an nnc checkpoint header"):
        load(tmp_path / "header.npz", model)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "absent.npz", model)


def test_params_of_another_model_are_refused_before_anything_is_written(saved):
    model, _, path = saved
    before = path.read_bytes()
    with pytest.raises(nnc.ShapeError, match="parameter 'linear_0/W' has shape"):
        save(path, model, make_model(hidden=5).init(seed=0))
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["model.npz"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(saved, monkeypatch):
    model, params, path = saved
    before = path.read_bytes()

    def crash_half_way(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash_half_way)
    with pytest.raises(OSError, match="disk full"):
        save(path, model, model.init(seed=99))
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["model.npz"]


def test_a_new_file_gets_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    write_atomically(tmp_path / "f.bin", lambda f: f.write(b"x"))
    assert os.stat(tmp_path / "f.bin").st_mode & 0o777 == 0o666 & ~umask
