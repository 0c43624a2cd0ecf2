"""Checkpoints round-trip exactly, never unpickle, say what differs, and are written atomically,
in both formats: ``.npz`` and ``.safetensors`` (chosen by the suffix)."""

import errno
import hashlib
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

try:
    import fcntl
except ImportError:
    fcntl = None
import safetensors.numpy
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open

import nnc
from nnc import Linear, checkpoint, relu, safetensors_format, tanh
from nnc.checkpoint import (
    MIN_AGE_S,
    STALE_AFTER_S,
    CheckpointError,
    CheckpointNotFound,
    _describe,
    is_stale,
    layer_differences,
    load,
    recorded_layers,
    save,
    temp_name,
    this_host,
    write_atomically,
)


def make_model(hidden=4, out=2):
    return Linear(3, hidden) >> tanh >> Linear(hidden, out)


FORMATS = [".npz", ".safetensors"]


@pytest.fixture(params=FORMATS)
def suffix(request):
    return request.param


@pytest.fixture
def saved(tmp_path, suffix):
    model = make_model()
    params = model.init(seed=3)
    path = tmp_path / f"model{suffix}"
    save(path, model, params)
    return model, params, path


def read_file(path):
    """The arrays and the ``__nnc__`` header of a checkpoint in either format."""
    if str(path).endswith(".safetensors"):
        with safe_open(str(path), framework="numpy") as f:
            entries = {k: f.get_tensor(k) for k in f.keys()}
            return entries, json.loads(f.metadata()["__nnc__"])
    with np.load(path, allow_pickle=False) as archive:
        entries = {k: archive[k] for k in archive.files}
    return {k: v for k, v in entries.items() if k != "__nnc__"}, json.loads(str(entries["__nnc__"]))


def write_file(path, entries, meta):
    """A checkpoint in either format, as nnc writes it, from arrays and a header."""
    if str(path).endswith(".safetensors"):
        header = json.dumps(meta)
        sums = {k: safetensors_format.digest(a) for k, a in entries.items()}
        sums["__nnc__"] = hashlib.sha256(header.encode()).hexdigest()
        metadata = {"__nnc__": header, "__nnc_sha256__": json.dumps(sums)}
        safetensors.numpy.save_file(entries, str(path), metadata=metadata)
    else:
        np.savez(path, __nnc__=np.array(json.dumps(meta)), **entries)


def leaves_equal(a, b):
    la, lb = nnc.tree_leaves(a), nnc.tree_leaves(b)
    return len(la) == len(lb) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(la, lb))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_exact_in_values_dtypes_and_structure(tmp_path, dtype, suffix):
    model = make_model()
    params = model.init(seed=1, dtype=dtype)
    save(tmp_path / f"m{suffix}", model, params)
    loaded = load(tmp_path / f"m{suffix}", model)
    assert nnc.tree_flatten(loaded)[1] == nnc.tree_flatten(params)[1]
    assert leaves_equal(loaded, params)


def test_the_file_is_a_plain_npz_with_paths_and_the_signature(tmp_path):
    model = make_model()
    params = model.init(seed=3)
    path = tmp_path / "model.npz"
    save(path, model, params)
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["__nnc__", "linear_0/W", "linear_0/b", "linear_1/W", "linear_1/b"]
        np.testing.assert_array_equal(archive["linear_1/W"], params["linear_1"]["W"])
        meta = json.loads(str(archive["__nnc__"]))
    assert meta["format"] == "nnc-checkpoint" and meta["version"] == 1
    assert meta["signature"] == "Vec[3] -> Vec[2]"
    assert meta["model"] == "Linear(3 -> 4) >> tanh >> Linear(4 -> 2)"
    assert [(p["path"], p["shape"]) for p in meta["parameters"]] == [
        ("linear_0/W", [3, 4]),
        ("linear_0/b", [4]),
        ("linear_1/W", [4, 2]),
        ("linear_1/b", [2]),
    ]


def test_a_different_model_is_refused_saying_what_differs(saved):
    _, _, path = saved
    other = make_model(hidden=5, out=3)
    with pytest.raises(CheckpointError) as info:
        load(path, other)
    assert str(info.value) == (
        f"checkpoint {path} was saved from a different model\n"
        "  saved from:   Linear(3 -> 4) >> tanh >> Linear(4 -> 2)  (Vec[3] -> Vec[2])\n"
        f"  loading into: Linear(3 -> 5) >> tanh >> Linear(5 -> 3)  (Vec[3] -> Vec[3]) (created at {other.created_at})\n"
        "  signature: saved Vec[3] -> Vec[2], this model Vec[3] -> Vec[3]\n"
        "  linear_0/W: saved shape (3, 4), the model expects (3, 5)\n"
        "  linear_0/b: saved shape (4,), the model expects (5,)\n"
        "  linear_1/W: saved shape (4, 2), the model expects (5, 3)\n"
        "  linear_1/b: saved shape (2,), the model expects (3,)\n"
        "  hint: load it into the model it was saved from (same layers, sizes and names)\n"
        "  see docs/errors.md#checkpointerror"
    )


def test_missing_and_extra_parameters_are_listed(saved):
    _, _, path = saved
    other = Linear(3, 4) >> tanh >> Linear(4, 2) >> tanh >> Linear(2, 2)
    with pytest.raises(
        CheckpointError, match=r"  linear_2/W: the model has it \(shape \(2, 2\)\), the file does not"
    ):
        load(path, other)
    with pytest.raises(
        CheckpointError, match=r"  linear_1/W: in the file \(shape \(4, 2\)\), not in the model"
    ):
        load(path, Linear(3, 4, name="linear_0") >> tanh)


TRUNCATED = {
    ".npz": r"is truncated or corrupt \(BadZipFile",
    ".safetensors": r"is truncated or corrupt, or not a safetensors file \(",
}


def test_a_truncated_file_is_named_as_such(saved, tmp_path, suffix):
    _, _, path = saved
    model = make_model()
    data = path.read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"cut{suffix} {TRUNCATED[suffix]}"):
        load(tmp_path / f"cut{suffix}", model)
    (tmp_path / f"empty{suffix}").write_bytes(b"")
    with pytest.raises(CheckpointError, match=rf"empty{suffix} is truncated or corrupt"):
        load(tmp_path / f"empty{suffix}", model)


@pytest.mark.parametrize("suffix", FORMATS)
@settings(max_examples=60)
@given(data=st.data())
def test_any_damage_is_an_error_or_harmless_never_different_numbers(tmp_path_factory, suffix, data):
    folder = tmp_path_factory.mktemp("damage")
    model = make_model()
    params = model.init(seed=3)
    save(folder / f"m{suffix}", model, params)
    raw = bytearray((folder / f"m{suffix}").read_bytes())
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="length")]
    else:
        at = data.draw(st.integers(0, len(raw) - 1), label="position")
        raw[at] ^= data.draw(st.integers(1, 255), label="bits")
    (folder / f"bad{suffix}").write_bytes(bytes(raw))
    try:
        loaded = load(folder / f"bad{suffix}", model)
    except CheckpointError:
        return
    assert leaves_equal(loaded, params)  # a flipped bit in zip bookkeeping that numpy never reads


class _Exploit:
    def __reduce__(self):
        return (os.mkdir, (os.environ["NNC_EXPLOIT_MARKER"],))


PICKLE_REFUSED = {
    ".npz": r"evil.npz is not an .npz archive \(numpy could only read it as a pickle, which nnc never loads\)",
    ".safetensors": r"evil.safetensors is a pickle \(a torch.save file\?\), not a safetensors file",
}


def test_a_pickle_is_never_unpickled(tmp_path, monkeypatch, suffix):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("NNC_EXPLOIT_MARKER", str(marker))
    (tmp_path / f"evil{suffix}").write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(CheckpointError, match=PICKLE_REFUSED[suffix]):
        load(tmp_path / f"evil{suffix}", make_model())
    assert not marker.exists()


def test_an_object_array_inside_an_npz_is_refused(tmp_path):
    model = make_model()
    save(tmp_path / "model.npz", model, model.init(seed=0))
    with np.load(tmp_path / "model.npz", allow_pickle=False) as archive:
        entries = {k: archive[k] for k in archive.files}
    entries["linear_0/W"] = np.array([{"a": 1}], dtype=object)
    np.savez(tmp_path / "objects.npz", **entries)
    with pytest.raises(
        CheckpointError,
        match=r"objects.npz holds an array of Python objects \(pickled data, which nnc never loads\)",
    ):
        load(tmp_path / "objects.npz", model)


def test_files_that_are_not_checkpoints_are_named(tmp_path):
    model = make_model()
    np.save(tmp_path / "one.npy", np.ones(3))
    with pytest.raises(
        CheckpointError, match=r"one.npy holds a single numpy array \(.npy\), not an nnc checkpoint"
    ):
        load(tmp_path / "one.npy", model)
    np.savez(tmp_path / "plain.npz", weights=np.ones(3))
    with pytest.raises(
        CheckpointError,
        match=r"plain.npz is an .npz archive but not an nnc checkpoint "
        r"\(it has no '__nnc__' entry; it holds weights\)",
    ):
        load(tmp_path / "plain.npz", model)
    np.savez(tmp_path / "header.npz", __nnc__=np.array('{"format": "something else"}'))
    with pytest.raises(CheckpointError, match="whose '__nnc__' entry is not an nnc checkpoint header"):
        load(tmp_path / "header.npz", model)


def test_params_of_another_model_are_refused_before_anything_is_written(saved):
    model, _, path = saved
    before = path.read_bytes()
    with pytest.raises(nnc.ShapeError, match="parameter 'linear_0/W' has shape"):
        save(path, model, make_model(hidden=5).init(seed=0))
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    model = make_model()
    path = tmp_path / "model.npz"
    save(path, model, model.init(seed=3))
    before = path.read_bytes()

    def crash_half_way(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash_half_way)
    with pytest.raises(OSError, match="disk full"):
        save(path, model, model.init(seed=99))
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["model.npz"]


def test_a_write_that_fails_after_all_bytes_leaves_the_old_file_in_either_format(saved, monkeypatch):
    model, params, path = saved
    before = path.read_bytes()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        save(path, model, model.init(seed=99))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]
    assert leaves_equal(load(path, model), params)


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield 0o640
    os.umask(previous)


def test_a_new_file_gets_the_permissions_the_umask_gives(tmp_path, umask_027, suffix):
    write_atomically(tmp_path / "f.bin", lambda f: f.write(b"x"))
    assert os.stat(tmp_path / "f.bin").st_mode & 0o777 == umask_027
    model = make_model()
    save(tmp_path / f"m{suffix}", model, model.init(seed=0))
    assert os.stat(tmp_path / f"m{suffix}").st_mode & 0o777 == umask_027


# ----------------------------------------------------------------------------- missing files


def test_loading_a_missing_file_names_the_path_and_is_a_file_not_found_error(tmp_path, monkeypatch, suffix):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        load(f"nope{suffix}", make_model())
    assert isinstance(info.value, CheckpointNotFound) and isinstance(info.value, CheckpointError)
    assert str(info.value) == (
        f"there is no checkpoint at nope{suffix}: no such file (relative to the current folder, {os.getcwd()})\n"
        "  hint: check the path; nnc.save(path, model, params) writes a checkpoint there\n"
        "  see docs/errors.md#checkpointnotfound"
    )
    absent = tmp_path / "runs" / f"m{suffix}"
    with pytest.raises(
        CheckpointNotFound,
        match=rf"^there is no checkpoint at {re.escape(str(absent))}: "
        rf"no such file \(the folder {re.escape(str(absent.parent))} "
        r"does not exist either\)\n",
    ):
        load(absent, make_model())


def test_saving_into_a_missing_folder_names_the_folder_not_a_temporary_file(tmp_path, monkeypatch, suffix):
    monkeypatch.chdir(tmp_path)
    model = make_model()
    with pytest.raises(FileNotFoundError) as info:
        save(os.path.join("runs", f"m{suffix}"), model, model.init(seed=0))
    assert isinstance(info.value, CheckpointNotFound)
    assert str(info.value) == (
        f"cannot save the checkpoint of Linear(3 -> 4) >> tanh >> Linear(4 -> 2) (created at {model.created_at}) "
        f"to runs/m{suffix}: the folder runs does not exist\n"
        "  hint: create it first: os.makedirs('runs', exist_ok=True)\n"
        "  see docs/errors.md#checkpointnotfound"
    )
    assert os.listdir(tmp_path) == []


def test_write_atomically_into_a_missing_folder_names_the_path_given(tmp_path):
    target = tmp_path / "nowhere" / "f.bin"
    with pytest.raises(FileNotFoundError) as info:
        write_atomically(target, lambda f: f.write(b"x"))
    assert info.value.filename == str(target)
    assert info.value.strerror == f"cannot write {target}: the folder {target.parent} does not exist"
    assert ".nnc-tmp-" not in str(info.value)


# ----------------------------------------------------------------------------- architecture


def test_the_file_records_every_layer_with_its_path_and_kind(saved):
    _, _, path = saved
    _, meta = read_file(path)
    assert meta["layers"] == [["linear_0", "Linear"], ["tanh_0", "tanh"], ["linear_1", "Linear"]]


def test_a_tanh_network_file_is_refused_by_a_relu_network_of_the_same_shapes(saved):
    _, params, path = saved
    relu_model = Linear(3, 4) >> relu >> Linear(4, 2)
    with pytest.raises(CheckpointError) as info:
        load(path, relu_model)
    assert str(info.value) == (
        f"checkpoint {path} was saved from a different model\n"
        "  saved from:   Linear(3 -> 4) >> tanh >> Linear(4 -> 2)  (Vec[3] -> Vec[2])\n"
        f"  loading into: Linear(3 -> 4) >> relu >> Linear(4 -> 2)  (Vec[3] -> Vec[2]) (created at {relu_model.created_at})\n"
        "  after linear_0: tanh in the file, relu in the model\n"
        "  hint: load it into the model it was saved from, or pass check_architecture=False to load "
        "parameters that fit by path and shape into layers of other kinds\n"
        "  see docs/errors.md#checkpointerror"
    )
    assert leaves_equal(load(path, relu_model, check_architecture=False), params)


def test_the_opt_out_still_checks_shapes(saved):
    _, _, path = saved
    with pytest.raises(
        CheckpointError, match=r"  linear_0/W: saved shape \(3, 4\), the model expects \(3, 5\)"
    ):
        load(path, Linear(3, 5) >> relu >> Linear(5, 2), check_architecture=False)


def test_added_and_removed_layers_are_placed_after_the_layer_before_them(saved):
    _, _, path = saved
    with pytest.raises(CheckpointError, match=r"  after tanh_0: nothing in the file, relu in the model\n"):
        load(path, Linear(3, 4) >> tanh >> relu >> Linear(4, 2))
    with pytest.raises(CheckpointError, match=r"  after linear_0: tanh in the file, nothing in the model\n"):
        load(path, Linear(3, 4) >> Linear(4, 2, name="linear_1"))


def test_layer_differences_name_where_in_the_chain():
    a = [["linear_0", "Linear"], ["tanh_0", "tanh"], ["linear_1", "Linear"], ["softmax_0", "softmax"]]
    b = [["linear_0", "Linear"], ["relu_0", "relu"], ["linear_1", "Linear"], ["log_softmax_0", "log_softmax"]]
    assert layer_differences(a, b) == [
        "after linear_0: tanh in the file, relu in the model",
        "after linear_1: softmax in the file, log_softmax in the model",
    ]
    assert layer_differences([["tanh", "tanh"]], [["relu", "relu"]]) == [
        "at the start: tanh in the file, relu in the model"
    ]
    assert layer_differences(a, a) == []


def test_layers_keep_plain_attributes_and_leave_out_functions_and_wiring():
    from nnc import Conv2d, Model, Vec, flatten, residual

    assert recorded_layers(Conv2d(1, 2, 3, stride=2) >> flatten) == [
        ["conv2d_0", "Conv2d(kernel=(3, 3), stride=(2, 2), padding=(0, 0), dilation=(1, 1))"],
        ["flatten_0", "flatten(rank=3)"],
    ]
    assert recorded_layers(residual(Linear(4, 4) >> tanh))[0] == ["", "residual"]
    lifted = Model(
        "lift",
        Vec[2],
        Vec[2],
        lambda m, p, x: x,
        attrs=(("fn", abs), ("label", "abs"), ("transparent", True)),
    )
    assert recorded_layers(lifted) == [["", "lift(label='abs')"]]


def strip_layers(path, to):
    entries, meta = read_file(path)
    del meta["layers"]  # what nnc wrote before it recorded layers
    write_file(to, entries, meta)


def test_a_file_from_before_layers_were_recorded_loads_with_a_note(saved, tmp_path, suffix):
    _, params, path = saved
    old = tmp_path / f"old{suffix}"
    strip_layers(path, old)
    relu_model = Linear(3, 4) >> relu >> Linear(4, 2)
    with pytest.warns(UserWarning) as caught:
        loaded = load(old, relu_model)
    assert leaves_equal(loaded, params)
    assert [str(w.message) for w in caught] == [
        f"checkpoint {old} was written by an nnc that did not record layers, so only its "
        f"parameters' paths and shapes were checked against Linear(3 -> 4) >> relu >> Linear(4 -> 2) "
        f"(created at {relu_model.created_at}); it was saved from Linear(3 -> 4) >> tanh >> Linear(4 -> 2). "
        "Save it again to record them, or pass check_architecture=False to load it without this warning"
    ]
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert leaves_equal(load(old, relu_model, check_architecture=False), params)


# ----------------------------------------------------------------------------- killed saves


def temporaries(folder):
    return sorted(n for n in os.listdir(folder) if ".nnc-tmp-" in n)


def backdate(file, seconds):
    then = time.time() - seconds
    os.utime(file, (then, then))


KILLED_SAVE = """
import os, signal, sys
from nnc.checkpoint import write_atomically

def half_then_killed(f):
    f.write(b"PK half an archive")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

write_atomically(sys.argv[1], half_then_killed)
"""


@pytest.mark.skipif(os.name != "posix", reason="kills a process with SIGKILL")
def test_a_killed_save_leaves_its_temporary_file_and_the_next_save_removes_it(saved):
    model, params, path = saved
    before = path.read_bytes()
    done = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(path)], capture_output=True)
    assert done.returncode == -signal.SIGKILL
    left = temporaries(path.parent)
    assert len(left) == 1 and left[0].startswith(f".{path.name}.nnc-tmp-")
    assert path.read_bytes() == before  # the old checkpoint is intact
    save(path, model, params)
    assert temporaries(path.parent) == left  # too young to be taken for a leftover yet
    backdate(path.parent / left[0], MIN_AGE_S + 1)
    save(path, model, params)
    assert temporaries(path.parent) == []
    assert leaves_equal(load(path, model), params)


def test_the_next_save_leaves_live_processes_and_other_targets_alone(saved):
    model, params, path = saved
    host, name = this_host(), path.name
    live = temp_name(name, host, os.getppid(), "0badcafe")  # the process that runs pytest's
    mine = temp_name(name, host, os.getpid(), "1badcafe")  # another thread of this process
    other_target = temp_name("other.npz", host, 2**22 + 1, "2badcafe")
    far_new = temp_name(name, "elsewhere", 7, "3badcafe")
    far_old = temp_name(name, "elsewhere", 7, "4badcafe")
    for name in (live, mine, other_target, far_new, far_old):
        (path.parent / name).write_bytes(b"partial")
    old = time.time() - STALE_AFTER_S - 60
    os.utime(path.parent / far_old, (old, old))
    save(path, model, params)
    assert temporaries(path.parent) == sorted([live, mine, other_target, far_new])


def alive_as(answer):
    return lambda pid: answer


names = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)


@settings(max_examples=200)
@given(
    base=names,
    host=st.from_regex(r"[A-Za-z0-9.]{1,10}", fullmatch=True),
    pid=st.integers(1, 2**22),
    token=st.from_regex(r"[0-9a-f]{8}", fullmatch=True),
    alive=st.sampled_from([True, False, None]),
    age=st.floats(0, 10 * STALE_AFTER_S),
)
def test_stale_is_only_said_of_nnc_temporaries_whose_writer_is_gone(base, host, pid, token, alive, age):
    name = temp_name(base, host, pid, token)
    me = pid + 1
    old_enough = age >= MIN_AGE_S
    # no lock to ask: this machine's is stale when its process is gone, or when it is old
    # and its process lives (a reused pid) or cannot be asked
    expected = old_enough and (alive is False or age > STALE_AFTER_S)
    assert is_stale(name, base, host, me, alive_as(alive), age) == expected
    # a lock nobody holds says nobody on this machine writes it, whatever the pid says
    assert is_stale(name, base, host, me, alive_as(alive), age, unlocked=True) == old_enough
    assert not is_stale(name, base, host, me, alive_as(alive), age, unlocked=False)  # being written
    assert not is_stale(name, base, host, pid, alive_as(False), age)  # this process's own
    assert not is_stale(name, base, host, pid, alive_as(False), age, unlocked=True)
    for unlocked in (None, True):  # another machine's: only its age tells
        assert is_stale(name, base, host + "x", me, alive_as(True), age, unlocked) == (age > STALE_AFTER_S)
    assert not is_stale(name, base + "x", host, me, alive_as(False), age, True)  # another target's
    assert not is_stale(base, base, host, me, alive_as(False), age, True)


# ----------------------------------------------------------------------------- review fixes

LOCKED_SAVE = """
import os, sys, time
from nnc.checkpoint import write_atomically

def wait_for_the_parent(f):
    f.write(b"PK half an archive")
    f.flush()
    print("writing", flush=True)
    sys.stdin.readline()

write_atomically(sys.argv[1], wait_for_the_parent)
"""


@pytest.mark.skipif(fcntl is None, reason="needs flock")
def test_a_live_save_whose_pid_says_nothing_keeps_its_temporary_file(saved, monkeypatch):
    # containers sharing a folder under one host name: the writer's pid is not ours to ask
    model, params, path = saved
    monkeypatch.setattr(checkpoint, "process_alive", lambda pid: False)
    writer = subprocess.Popen(
        [sys.executable, "-c", LOCKED_SAVE, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline() == "writing\n"
        (live,) = temporaries(path.parent)
        backdate(path.parent / live, STALE_AFTER_S + 60)  # a long save, and an old mtime
        save(path, model, params)
        assert temporaries(path.parent) == [live]  # its lock says it is being written
    finally:
        writer.communicate("done\n", timeout=60)
    assert writer.returncode == 0 and temporaries(path.parent) == []
    assert path.read_bytes() == b"PK half an archive"  # the live save finished untouched


@pytest.mark.skipif(fcntl is None, reason="needs flock")
def test_a_leftover_whose_pid_was_reused_is_removed_once_its_lock_is_free(saved):
    model, params, path = saved
    reused = temp_name(path.name, this_host(), os.getppid(), "0badcafe")  # a live pid
    (path.parent / reused).write_bytes(b"partial")
    save(path, model, params)
    assert temporaries(path.parent) == [reused]  # younger than MIN_AGE_S: kept
    backdate(path.parent / reused, MIN_AGE_S + 1)
    save(path, model, params)
    assert temporaries(path.parent) == []


def test_without_flock_a_live_pid_of_an_old_file_falls_back_to_its_age(saved, monkeypatch):
    model, params, path = saved
    monkeypatch.setattr(checkpoint, "fcntl", None)
    reused = temp_name(path.name, this_host(), os.getppid(), "0badcafe")
    (path.parent / reused).write_bytes(b"partial")
    backdate(path.parent / reused, MIN_AGE_S + 1)
    save(path, model, params)
    assert temporaries(path.parent) == [reused]  # its process may be the writer
    backdate(path.parent / reused, STALE_AFTER_S + 60)
    save(path, model, params)
    assert temporaries(path.parent) == []


def test_a_pid_too_large_for_the_platform_is_not_an_overflow_error(saved, monkeypatch):
    model, params, path = saved
    assert checkpoint.process_alive(99999999999999999999) is None
    monkeypatch.setattr(checkpoint, "fcntl", None)  # so that the pid is asked
    huge = f".{path.name}.nnc-tmp-{this_host()}-99999999999999999999-0badcafe"
    (path.parent / huge).write_bytes(b"partial")
    backdate(path.parent / huge, MIN_AGE_S + 1)
    save(path, model, params)  # used to raise OverflowError from os.kill
    assert temporaries(path.parent) == [huge]  # whose it is cannot be told: too young for that
    assert leaves_equal(load(path, model), params)


def test_the_host_part_of_a_temporary_name_is_short_whatever_the_host_is_called(monkeypatch):
    monkeypatch.setattr(checkpoint.socket, "gethostname", lambda: "h" * 63)
    assert re.fullmatch(r"[0-9a-f]{8}", this_host())


@pytest.mark.parametrize("length", [200, 220, 240, 255])
def test_a_long_file_name_saves_and_its_temporaries_are_still_found(tmp_path, monkeypatch, length, suffix):
    monkeypatch.setattr(checkpoint.socket, "gethostname", lambda: "h" * 63)
    model = make_model()
    params = model.init(seed=0)
    path = tmp_path / ("m" * (length - len(suffix)) + suffix)
    save(path, model, params)  # the temporary name used to pass 255 bytes
    assert leaves_equal(load(path, model), params)
    name = temp_name(path.name, this_host(), 2**22 + 1, "0badcafe")
    assert len(os.fsencode(name)) <= 255
    (tmp_path / name).write_bytes(b"partial")
    backdate(tmp_path / name, STALE_AFTER_S + 60)
    save(path, model, params)
    assert temporaries(tmp_path) == []


def test_long_names_that_differ_only_at_the_end_get_different_temporaries():
    a, b = "x" * 250 + "a.npz", "x" * 250 + "b.npz"
    assert temp_name(a, "h", 1, "0badcafe") != temp_name(b, "h", 1, "0badcafe")
    assert not is_stale(temp_name(a, "h", 7, "0badcafe"), b, "h", 1, alive_as(False), 1e9)
    assert len(os.fsencode(temp_name("é" * 127, "h", 1, "0badcafe"))) <= 255


def test_a_temporary_that_cannot_be_created_is_a_checkpoint_error_naming_the_path(
    tmp_path, monkeypatch, suffix
):
    model = make_model()
    real_open = os.open

    def short_names_only(name, *args, **kwargs):  # a file system with a smaller name limit
        if ".nnc-tmp-" in os.fspath(name):
            raise OSError(errno.ENAMETOOLONG, "File name too long", name)
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(os, "open", short_names_only)
    path = tmp_path / f"m{suffix}"
    with pytest.raises(CheckpointError) as info:
        save(path, model, model.init(seed=0))
    assert str(info.value).startswith(
        f"cannot save the checkpoint of {_describe(model)} (created at {model.created_at}) to {path}: "
        "a temporary file beside it cannot be created (File name too long)\n"
    )
    assert ".nnc-tmp-" not in str(info.value)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_a_name_too_long_for_the_file_system_is_a_checkpoint_error_naming_the_path(tmp_path, suffix):
    model = make_model()
    path = tmp_path / ("m" * 300 + suffix)
    with pytest.raises(CheckpointError) as info:
        save(path, model, model.init(seed=0))
    assert str(info.value).startswith(
        f"cannot save the checkpoint of {_describe(model)} (created at {model.created_at}) to {path}: "
    )
    assert ".nnc-tmp-" not in str(info.value)
    assert os.listdir(tmp_path) == []


def test_an_input_layer_is_not_recorded_and_not_compared(tmp_path, suffix):
    plain = Linear(2, 4) >> tanh
    typed = nnc.Input(nnc.Vec[2]) >> Linear(None, 4) >> tanh
    assert recorded_layers(typed) == recorded_layers(plain) == [["linear_0", "Linear"], ["tanh_0", "tanh"]]
    params = plain.init(seed=0)
    save(tmp_path / f"plain{suffix}", plain, params)
    assert leaves_equal(load(tmp_path / f"plain{suffix}", typed), params)
    save(tmp_path / f"typed{suffix}", typed, params)
    assert leaves_equal(load(tmp_path / f"typed{suffix}", plain), params)
    # a file from an nnc that recorded Input still loads into either
    entries, meta = read_file(tmp_path / f"plain{suffix}")
    meta["layers"] = [["input_0", "Input"]] + meta["layers"]
    write_file(tmp_path / f"old{suffix}", entries, meta)
    for model in (plain, typed):
        assert leaves_equal(load(tmp_path / f"old{suffix}", model), params)


# ----------------------------------------------------------------------------- safetensors


def header_of(path):
    """The JSON header of a safetensors file and the offset its data starts at."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), 8 + n


def test_a_safetensors_file_holds_the_same_arrays_and_header_as_an_npz(tmp_path):
    model = make_model()
    params = model.init(seed=3)
    save(tmp_path / "m.npz", model, params)
    save(tmp_path / "m.safetensors", model, params)
    npz_entries, npz_meta = read_file(tmp_path / "m.npz")
    with safe_open(str(tmp_path / "m.safetensors"), framework="numpy") as f:
        assert sorted(f.metadata()) == ["__nnc__", "__nnc_sha256__"]
        assert sorted(f.keys()) == ["linear_0/W", "linear_0/b", "linear_1/W", "linear_1/b"]
        assert json.loads(f.metadata()["__nnc__"]) == npz_meta
        sums = json.loads(f.metadata()["__nnc_sha256__"])
        for key, array in npz_entries.items():
            assert f.get_tensor(key).dtype == array.dtype and np.array_equal(f.get_tensor(key), array)
            assert sums[key] == safetensors_format.digest(array)
    assert npz_meta["signature"] == "Vec[3] -> Vec[2]"


def test_the_suffix_chooses_the_format_in_any_case(tmp_path):
    model = make_model()
    params = model.init(seed=0)
    save(tmp_path / "m.SafeTensors", model, params)
    assert (tmp_path / "m.SafeTensors").read_bytes()[8:9] == b"{"  # a safetensors header, not a zip
    assert leaves_equal(load(tmp_path / "m.SafeTensors", model), params)
    save(tmp_path / "m.ckpt", model, params)  # any other suffix: .npz, as before
    assert (tmp_path / "m.ckpt").read_bytes()[:2] == b"PK"


def test_running_statistics_round_trip_exactly_in_safetensors(tmp_path):
    model = Linear(3, 4) >> nnc.BatchNorm(4) >> tanh
    params = model.init(seed=0, dtype=np.float64)
    _, stats = model(params, np.arange(12.0).reshape(4, 3), stats=model.init_stats())
    save(tmp_path / "bn.safetensors", model, params, stats)
    got_params, got_stats = load(tmp_path / "bn.safetensors", model, stats=True)
    assert leaves_equal(got_params, params) and leaves_equal(got_stats, stats)
    assert got_stats["batchnorm_0"]["var"].dtype == stats["batchnorm_0"]["var"].dtype


def test_a_flipped_bit_in_the_data_is_caught_by_the_checksum(tmp_path):
    model = make_model()
    save(tmp_path / "m.safetensors", model, model.init(seed=3))
    header, start = header_of(tmp_path / "m.safetensors")
    raw = bytearray((tmp_path / "m.safetensors").read_bytes())
    raw[start + header["linear_1/W"]["data_offsets"][0] + 2] ^= 0x10
    (tmp_path / "bad.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError) as info:
        load(tmp_path / "bad.safetensors", model)
    assert str(info.value) == (
        f"{tmp_path / 'bad.safetensors'} is truncated or corrupt: linear_1/W does not match the "
        "checksums written with the file\n"
        "  hint: a checkpoint written by nnc.save is complete or absent; was this file copied "
        "partially or written by another program?\n"
        "  see docs/errors.md#checkpointerror"
    )


def test_a_dtype_changed_in_the_header_is_caught_by_the_checksum(tmp_path):
    model = make_model()
    save(tmp_path / "m.safetensors", model, model.init(seed=3))
    raw = (tmp_path / "m.safetensors").read_bytes()
    # the same size per element, so safetensors itself finds nothing wrong: int32 for float32
    at = raw.index(b'"linear_0/b":{"dtype":"F32"') + len(b'"linear_0/b":{"dtype":"')
    (tmp_path / "bad.safetensors").write_bytes(raw[:at] + b"I" + raw[at + 1 :])
    with pytest.raises(
        CheckpointError, match=r"is truncated or corrupt: linear_0/b does not match the checksums"
    ):
        load(tmp_path / "bad.safetensors", model)


def test_a_changed_header_is_caught_by_its_checksum(tmp_path):
    model = make_model()
    save(tmp_path / "m.safetensors", model, model.init(seed=3))
    raw = (tmp_path / "m.safetensors").read_bytes()
    edited = raw.replace(b"signature", b"signaturX", 1)  # the same length: a valid file still
    (tmp_path / "bad.safetensors").write_bytes(edited)
    with pytest.raises(
        CheckpointError, match=r"is truncated or corrupt: __nnc__ does not match the checksums"
    ):
        load(tmp_path / "bad.safetensors", model)


def test_a_safetensors_file_not_written_by_nnc_is_named_with_the_way_to_load_it(tmp_path):
    foreign = tmp_path / "torch.safetensors"
    safetensors.numpy.save_file(
        {"0.weight": np.ones((4, 3), np.float32), "0.bias": np.ones(4, np.float32)}, str(foreign)
    )
    with pytest.raises(CheckpointError) as info:
        load(foreign, make_model())
    assert str(info.value) == (
        f"{foreign} is a safetensors file but not an nnc checkpoint (its metadata has no '__nnc__' key; "
        "it holds 0.bias, 0.weight)\n"
        "  hint: write checkpoints with nnc.save(path, model, params); load PyTorch weights with "
        "nnc.load_torch(model, path)\n"
        "  see docs/errors.md#checkpointerror"
    )
    safetensors.numpy.save_file({"w": np.ones(2)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(
        CheckpointError, match=r"not an nnc checkpoint \(its metadata has no '__nnc__' key; it holds w\)"
    ):
        load(foreign, make_model())


def test_a_header_of_another_format_or_without_checksums_is_refused(tmp_path):
    model = make_model()
    write_file(tmp_path / "other.safetensors", {"w": np.ones(2)}, {"format": "something else"})
    with pytest.raises(
        CheckpointError,
        match=r"other.safetensors is a safetensors file whose '__nnc__' metadata is not an nnc checkpoint header",
    ):
        load(tmp_path / "other.safetensors", model)
    safetensors.numpy.save_file(
        {"w": np.ones(2)}, str(tmp_path / "bare.safetensors"), metadata={"__nnc__": "{}"}
    )
    with pytest.raises(
        CheckpointError,
        match=r"bare.safetensors is truncated or corrupt \(its nnc metadata cannot be read: KeyError: '__nnc_sha256__'\)",
    ):
        load(tmp_path / "bare.safetensors", model)


def test_an_npz_named_safetensors_is_named_as_a_zip_archive(tmp_path):
    model = make_model()
    save(tmp_path / "m.npz", model, model.init(seed=0))
    os.rename(tmp_path / "m.npz", tmp_path / "m.safetensors")
    with pytest.raises(
        CheckpointError,
        match=r"m.safetensors is a zip archive \(an .npz file, or a torch.save file\?\), not a safetensors file\n",
    ):
        load(tmp_path / "m.safetensors", model)


@pytest.fixture
def without_safetensors(monkeypatch):
    for name in ("safetensors", "safetensors.numpy"):
        monkeypatch.setitem(sys.modules, name, None)  # import safetensors raises ImportError


def test_without_the_package_safetensors_files_are_an_error_saying_what_to_install(
    tmp_path, without_safetensors
):
    model = make_model()
    with pytest.raises(CheckpointError) as info:
        save(tmp_path / "m.safetensors", model, model.init(seed=0))
    assert str(info.value) == (
        f"cannot save the checkpoint of {_describe(model)} (created at {model.created_at}) to "
        f"{tmp_path / 'm.safetensors'}: a .safetensors file needs the safetensors package, which is not installed\n"
        "  hint: pip install 'nnc[safetensors]', or save to a .npz file\n"
        "  see docs/errors.md#checkpointerror"
    )
    assert os.listdir(tmp_path) == []
    (tmp_path / "m.safetensors").write_bytes(b"anything")
    with pytest.raises(CheckpointError) as info:
        load(tmp_path / "m.safetensors", model)
    assert str(info.value) == (
        f"cannot load the checkpoint {tmp_path / 'm.safetensors'}: a .safetensors file needs the "
        "safetensors package, which is not installed\n"
        "  hint: pip install 'nnc[safetensors]'\n"
        "  see docs/errors.md#checkpointerror"
    )
    save(tmp_path / "m.npz", model, model.init(seed=0))  # .npz needs nothing more
    assert load(tmp_path / "m.npz", model)["linear_0"]["W"].shape == (3, 4)


def test_importing_nnc_imports_neither_safetensors_nor_torch():
    done = subprocess.run(
        [sys.executable, "-c", "import sys, nnc; print(sorted({'safetensors', 'torch'} & set(sys.modules)))"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_arrays_safetensors_cannot_hold_are_refused_before_anything_is_written(tmp_path):
    model = make_model()
    params = model.init(seed=0)
    params["linear_0"]["b"] = np.array([object()] * 4, dtype=object)
    with pytest.raises(
        CheckpointError, match=r"safetensors cannot hold these arrays \(dtypes float32, object\)"
    ):
        save(tmp_path / "m.safetensors", model, params)
    assert os.listdir(tmp_path) == []
