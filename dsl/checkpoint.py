"""Checkpoints: a model's parameters in a ``.npz`` or ``.safetensors`` file, with the model's signature beside them.

The format is chosen by the file's suffix: ``.safetensors`` (any case) is a safetensors
file (through the optional ``safetensors`` package, ``pip install 'nnc[safetensors]'``),
anything else a plain numpy ``.npz`` archive. Either holds one array per parameter, keyed by
its path (``linear_0/W``), and ``__nnc__``, JSON text (format, version, the model's
signature and description, every parameter's path, shape and dtype, and every layer's path
and kind, which ``load`` compares with the model it loads into): an entry of the archive,
or a key of the safetensors metadata. safetensors keeps no checksum, so nnc stores a sha256
of each array and of the header under ``__nnc_sha256__`` and compares them on load, as zip's
CRC guards an ``.npz``. Nothing in either is pickled (an ``.npz`` is read with ``allow_pickle=False``),
so loading never runs code from the file.

Writes are atomic: the archive is written to a temporary file in the same directory
(``.model.npz.nnc-tmp-<host>-<pid>-<random>``, ``<host>`` a short hash of the machine's
name) and renamed over the target, so a crash leaves either the old file or the new one.
The save holds an exclusive ``flock`` on its temporary file until the rename. A save killed
before its rename leaves its temporary file behind; the next save to the same path removes
it once nobody holds its lock (where ``flock`` is unavailable, once its process is gone)
and it is at least ``MIN_AGE_S`` old.

>>> import os, tempfile
>>> from nnc import Linear, tanh
>>> model = Linear(3, 4) >> tanh >> Linear(4, 2)
>>> params = model.init(seed=0)
>>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
>>> save(path, model, params)
>>> restored = load(path, model)
>>> bool((restored["linear_1"]["W"] == params["linear_1"]["W"]).all())
True
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import json
import os
import re
import secrets
import socket
import time
import warnings
import zipfile
from collections.abc import Callable
from typing import IO, Any

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: the pid and age of a temporary file are all there is to go on
    fcntl = None  # type: ignore[assignment]

from nnc.backend.array_api import to_numpy
from nnc.backend.errors import NNCError
from nnc.backend.tree import tree_flatten, tree_paths, tree_unflatten

from . import safetensors_format
from .effects import checked_stats, stat_shapes
from .inspection import child_path
from .model import Model, check_params, created_at_note

FORMAT = "nnc-checkpoint"
VERSION = 1
META_KEY = "__nnc__"
STATS_PREFIX = "__stats__/"  # the entries of running statistics, apart from the parameters
# In a safetensors file's metadata: each array's safetensors_format.digest, and the header's sha256
CHECKSUMS_KEY = "__nnc_sha256__"
# What zipfile and numpy raise on damaged archives (flipped flag bits read as "encrypted"
# or "unsupported compression" surface as RuntimeError and NotImplementedError)
_READ_ERRORS = (
    zipfile.BadZipFile,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    RuntimeError,
    NotImplementedError,
)


class CheckpointError(NNCError, ValueError):
    """A file cannot be loaded as a checkpoint of this model (another model, truncated, not a checkpoint)."""


class CheckpointNotFound(CheckpointError, FileNotFoundError):
    """The checkpoint to load, or the folder to save one into, does not exist.

    It is also a ``FileNotFoundError``, so code that catches that keeps working."""


CheckpointError.__module__ = CheckpointNotFound.__module__ = "nnc"

# A temporary file of another machine (a shared folder) cannot be asked whether its process
# lives; one this old is taken for the leftover of a killed save.
STALE_AFTER_S = 24 * 3600
# No temporary file younger than this is removed, whatever its lock or process say: a save
# that has just created its file may not hold its lock yet.
MIN_AGE_S = 60.0
_TEMP_MARK = ".nnc-tmp-"
# The longest file name most file systems allow, in bytes, and the longest tail a temporary
# name adds to the target's name: mark, 8-character host, a pid of up to 10 digits, token
_NAME_MAX = 255
_TAIL_MAX = len(_TEMP_MARK) + 8 + 1 + 10 + 1 + 8


def this_host() -> str:
    """This machine's tag in temporary file names: 8 hex digits of a hash of its name.

    A hash, not the name itself, so that a temporary name stays short whatever the
    machine is called (host names run to 63 characters)."""
    return hashlib.sha256(socket.gethostname().encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _temp_stem(base: str) -> str:
    """The part of ``base`` a temporary name repeats: all of it, unless that makes the name too long.

    A long ``base`` is cut, and a hash of it appended so that targets cut alike differ.

    >>> _temp_stem("model.npz")
    'model.npz'
    >>> len(os.fsencode("." + _temp_stem("x" * 250))) + _TAIL_MAX <= _NAME_MAX
    True
    """
    room = _NAME_MAX - 1 - _TAIL_MAX
    encoded = os.fsencode(base)
    if len(encoded) <= room:
        return base
    digest = hashlib.sha256(encoded).hexdigest()[:8]
    kept = encoded[: room - 1 - len(digest)]
    for cut in range(4):  # do not cut a multi-byte character in half
        try:
            (kept[: len(kept) - cut]).decode("utf-8")
        except UnicodeDecodeError:
            continue
        kept = kept[: len(kept) - cut]
        break
    return f"{os.fsdecode(kept)}~{digest}"


def temp_name(base: str, host: str, pid: int, token: str) -> str:
    """The name of the temporary file a save to ``base`` writes first: it says whose it is.

    >>> temp_name("model.npz", "box", 4242, "0badcafe")
    '.model.npz.nnc-tmp-box-4242-0badcafe'
    """
    return f".{_temp_stem(base)}{_TEMP_MARK}{host}-{pid}-{token}"


def is_stale(
    name: str,
    base: str,
    host: str,
    pid: int,
    alive: Callable[[int], bool | None],
    age_s: float,
    unlocked: bool | None = None,
) -> bool:
    """Whether ``name`` is a temporary file left by a killed save to ``base``.

    Only nnc's own temporary names count, and none younger than ``MIN_AGE_S``. Every save
    holds an exclusive ``flock`` on its temporary file until it renames it: ``unlocked`` says
    whether that lock could be taken now (``None``: this platform has no ``flock``). A file
    locked by someone is never stale. One of this machine that nobody holds is stale (never
    this process's own: another thread may be saving). Where the lock cannot tell, one of
    this machine is stale when its process is gone, and one of another machine, or whose
    process lives or cannot be asked (the pid may have been reused), when it is older than
    ``STALE_AFTER_S``.

    >>> gone = lambda pid: False
    >>> is_stale(".m.npz.nnc-tmp-box-7-0badcafe", "m.npz", "box", 1, gone, age_s=100.0)
    True
    >>> is_stale(".m.npz.nnc-tmp-box-7-0badcafe", "m.npz", "box", 1, gone, age_s=1.0)
    False
    >>> is_stale(".m.npz.nnc-tmp-box-7-0badcafe", "m.npz", "box", 1, gone, 100.0, unlocked=False)
    False
    >>> is_stale(".m.npz.nnc-tmp-box-1-0badcafe", "m.npz", "box", 1, gone, age_s=100.0)
    False
    >>> is_stale(".other.npz.nnc-tmp-box-7-0badcafe", "m.npz", "box", 1, gone, age_s=100.0)
    False
    """
    own_name = (
        rf"\.{re.escape(_temp_stem(base))}{re.escape(_TEMP_MARK)}"
        rf"(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{{8}}"
    )
    match = re.fullmatch(own_name, name)
    if match is None or age_s < MIN_AGE_S or unlocked is False:
        return False
    owner = int(match["pid"])
    if match["host"] == host:
        if owner == pid:
            return False
        if unlocked:  # nobody on this machine writes it
            return True
        if alive(owner) is False:
            return True
    return age_s > STALE_AFTER_S


def process_alive(pid: int) -> bool | None:
    """Whether process ``pid`` of this machine runs (``None``: this platform cannot tell).

    >>> process_alive(10 ** 20) is None  # no such pid can exist; os.kill cannot even ask
    True
    """
    if os.name != "posix":  # Windows' os.kill terminates the process instead of asking
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except (OSError, OverflowError, ValueError):  # a pid too large for a pid_t, say
        return None
    return True


def _lock_free(full: str) -> bool | None:
    """Whether nobody holds a lock on file ``full`` (``None``: this platform cannot tell).

    Taking the lock only tests it: it is let go when the file is closed right after."""
    if fcntl is None:
        return None
    try:
        fd = os.open(full, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        return False if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK) else None
    finally:
        os.close(fd)
    return True


def remove_stale_temporaries(folder: str, base: str) -> None:
    """Remove the temporary files that killed saves to ``folder/base`` left behind."""
    host, pid, now = this_host(), os.getpid(), time.time()
    try:
        names = [n for n in os.listdir(folder) if n.startswith(f".{_temp_stem(base)}{_TEMP_MARK}")]
    except OSError:  # a missing folder is reported by the write that follows
        return
    for name in names:
        full = os.path.join(folder, name)
        try:
            age = now - os.stat(full).st_mtime
            if age < MIN_AGE_S:
                continue
            if is_stale(name, base, host, pid, process_alive, age, _lock_free(full)):
                os.remove(full)
        except OSError:  # another save removed it first, or it is not ours to remove
            continue


class _NotWritten(OSError):
    """The temporary file beside the target could not be created or renamed to it.

    Its ``filename`` is the target, so the message names what the caller asked for."""


def _replace(temp: str, path: str) -> None:
    try:
        os.replace(temp, path)
    except OSError as err:
        raise _NotWritten(
            err.errno, f"the file cannot be renamed into place ({err.strerror})", path
        ) from None


def write_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``.

    On any failure the temporary file is removed and ``path`` is left as it was. The new
    file gets the permissions a plain ``open(path, "w")`` would give (``0o666`` less the
    umask). Temporary files that killed saves to ``path`` left behind are removed first.
    A missing folder raises ``FileNotFoundError`` naming the folder and ``path``.

    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "note.txt")
    >>> write_atomically(target, lambda f: f.write(b"hello"))
    >>> open(target).read()
    'hello'
    """
    path = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(path))
    remove_stale_temporaries(folder, base)
    temp = os.path.join(folder, temp_name(base, this_host(), os.getpid(), secrets.token_hex(4)))
    try:
        # os.open with mode 0o666 lets the umask decide permissions, as for an ordinary new file
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except FileNotFoundError:
        # name what the caller asked for, not the temporary file it never heard of
        raise FileNotFoundError(
            errno.ENOENT,
            f"cannot write {path}: the folder {os.path.dirname(path) or '.'} does not exist",
            path,
        ) from None
    except OSError as err:
        raise _NotWritten(
            err.errno, f"a temporary file beside it cannot be created ({err.strerror})", path
        ) from None
    try:
        if fcntl is not None:
            # held until the file is closed, after the rename: a cleanup that can take it knows
            # nobody on this machine is writing the file, whatever its name says
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:  # a file system without locks: the pid and age still tell
                pass
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            if os.name == "posix":  # Windows cannot rename a file that is open
                _replace(temp, path)
        if os.name != "posix":
            _replace(temp, path)
    except BaseException:
        try:
            os.remove(temp)
        except FileNotFoundError:
            pass
        raise
    _sync_folder(folder)


def _sync_folder(folder: str) -> None:
    """Make the rename itself durable where the platform allows syncing a directory."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _describe(model: Model) -> str:
    from .show import describe

    return describe(model)


# Attributes that only say how a model is wired, not what it computes
_WIRING_ATTRS = {"transparent"}


def _attr_text(value: Any) -> str | None:
    """A plain attribute as text, ``None`` for one that is not plain data (a function)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return repr(value)
    if isinstance(value, tuple):
        parts = [_attr_text(v) for v in value]
        texts = [p for p in parts if p is not None]
        return None if len(texts) < len(parts) else f"({', '.join(texts)}{',' if len(texts) == 1 else ''})"
    return None


def _layer_text(model: Model) -> str:
    """What a layer computes, without its sizes (the shapes check those): ``flatten(rank=3)``."""
    shown = [(k, _attr_text(v)) for k, v in model.attrs if k not in _WIRING_ATTRS]
    plain = [f"{k}={t}" for k, t in shown if t is not None]
    return f"{model.kind}({', '.join(plain)})" if plain else model.kind


# Layers that compute nothing: a model with or without them is the same computation
_UNRECORDED = {"Input"}


def recorded_layers(model: Model) -> list[list[str]]:
    """Every layer of ``model`` in order, as ``[path, kind]``: what a checkpoint records.

    Chains are left out (their layers are listed), and so is ``Input``, which computes
    nothing; other combinators are listed before their parts.

    >>> from nnc import Linear, residual, tanh
    >>> recorded_layers(Linear(2, 4) >> residual(tanh))
    [['linear_0', 'Linear'], ['residual_0', 'residual'], ['residual_0/tanh_0', 'tanh']]
    """
    found: list[list[str]] = []

    def walk(node: Model, path: str) -> None:
        if node.kind not in _UNRECORDED and (node.kind != "serial" or not node.children):
            found.append([path, _layer_text(node)])
        for i, child in enumerate(node.children):
            walk(child, child_path(node, path, i))

    walk(model, "")
    return found


def save(path: str | os.PathLike, model: Model, params: Any, stats: Any = None) -> None:
    """Write ``params`` of ``model`` to ``path``, atomically; for a model that keeps running
    statistics, ``stats`` too (required: they are part of the trained model).

    The suffix chooses the format: ``.safetensors`` writes a safetensors file (it needs
    ``pip install 'nnc[safetensors]'``), any other an ``.npz`` archive.

    Raises :class:`nnc.ShapeError` before writing anything if ``params`` or ``stats`` do not
    fit ``model``, and :class:`CheckpointNotFound` if the folder of ``path`` does not exist.

    >>> import os, tempfile
    >>> from nnc import Linear
    >>> model = Linear(2, 3)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> save(path, model, model.init(seed=0))
    >>> load(path, model)["W"].shape
    (2, 3)
    """
    check_params(model, params)
    if model.keeps_stats:
        if stats is None:
            raise CheckpointError(
                f"cannot save the checkpoint of {_describe(model)}{created_at_note(model)}: it keeps "
                "running statistics, and a checkpoint without them would not evaluate as trained\n"
                "  hint: save(path, model, params, stats=stats), with the stats fit returned"
            )
        stats = checked_stats(model, stats, None)
    entries: dict[str, np.ndarray] = {}
    described = []
    for key, leaf in tree_paths(params):
        array = to_numpy(leaf)  # a device array is copied to the host, so any machine loads it
        entries[key] = array
        described.append({"path": key, "shape": list(array.shape), "dtype": array.dtype.str})
    statistics = []
    for key, leaf in tree_paths(stats) if model.keeps_stats else []:
        array = to_numpy(leaf)
        entries[STATS_PREFIX + key] = array
        statistics.append({"path": key, "shape": list(array.shape), "dtype": array.dtype.str})
    # "layers" is an addition within format version 1: older nnc versions ignore it
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "signature": str(model.signature),
        "model": _describe(model),
        "parameters": described,
        "layers": recorded_layers(model),
    }
    if statistics:  # an addition within format version 1, like "layers"
        meta["statistics"] = statistics
    if safetensors_format.is_safetensors_path(path):
        write = _safetensors_writer(path, model, entries, meta)
    else:
        entries[META_KEY] = np.array(json.dumps(meta))

        def write(f: IO[bytes]) -> None:
            # numpy's stub types **kwds as if an entry could be its allow_pickle flag
            np.savez(f, **entries)  # type: ignore[arg-type]

    try:
        write_atomically(path, write)
    except _NotWritten as err:
        raise CheckpointError(
            f"cannot save the checkpoint of {_describe(model)}{created_at_note(model)} to "
            f"{os.fspath(path)}: {err.strerror}\n"
            "  hint: check that the folder is writable and the file name is not too long"
        ) from None
    except FileNotFoundError:
        folder = os.path.dirname(os.fspath(path)) or "."
        if os.path.isdir(folder):
            raise
        raise CheckpointNotFound(
            f"cannot save the checkpoint of {_describe(model)}{created_at_note(model)} to "
            f"{os.fspath(path)}: the folder {folder} does not exist\n"
            f"  hint: create it first: os.makedirs({folder!r}, exist_ok=True)"
        ) from None


def _safetensors_writer(
    path: str | os.PathLike, model: Model, entries: dict[str, np.ndarray], meta: dict
) -> Callable[[IO[bytes]], object]:
    """What writes ``entries`` and ``meta`` as a safetensors file, encoded now: a missing
    package or an array safetensors cannot hold is refused before any file is created."""
    header = json.dumps(meta)
    checksums = {key: safetensors_format.digest(a) for key, a in entries.items()}
    checksums[META_KEY] = hashlib.sha256(header.encode()).hexdigest()  # the header is guarded too
    metadata = {META_KEY: header, CHECKSUMS_KEY: json.dumps(checksums)}
    try:
        data = safetensors_format.encode(entries, metadata)
    except safetensors_format.NotInstalled:
        raise CheckpointError(
            f"cannot save the checkpoint of {_describe(model)}{created_at_note(model)} to "
            f"{os.fspath(path)}: a .safetensors file needs the safetensors package, which is not installed\n"
            f"  hint: {safetensors_format.INSTALL}, or save to a .npz file"
        ) from None
    except safetensors_format.Unreadable as err:
        raise CheckpointError(
            f"cannot save the checkpoint of {_describe(model)}{created_at_note(model)} to "
            f"{os.fspath(path)}: {err}\n  hint: save float32 or float64 parameters (model.init gives them)"
        ) from None
    return lambda f: f.write(data)


def load(
    path: str | os.PathLike, model: Model, *, check_architecture: bool = True, stats: bool = False
) -> Any:
    """The parameters stored at ``path``, checked against ``model`` and shaped like ``model.init()``;
    with ``stats=True``, ``(params, stats)``, the running statistics shaped like ``model.init_stats()``.

    The suffix says the format, as for :func:`save`: ``.safetensors`` or ``.npz``.

    Raises :class:`CheckpointError` for a file saved from a different model (saying what
    differs: parameter paths and shapes, and, unless ``check_architecture=False``, the
    kinds of layers), a truncated or corrupt file, or a file that is not an nnc checkpoint;
    :class:`CheckpointNotFound` (a ``FileNotFoundError`` too) when there is no file at ``path``.

    ``check_architecture=False`` loads a file whose parameters fit by path and shape even
    if its layers differ (a ``tanh`` network's weights into a ``relu`` one). A file written
    by an nnc that did not record layers loads with a warning saying they were not checked.
    """
    path = os.fspath(path)
    meta, arrays = _read(path)
    expected = [(p, tuple(s)) for p, s in tree_paths(model.param_shapes)]
    problems = _differences(meta, arrays, model, expected)
    layer_problems = _layer_check(path, meta, model) if check_architecture else []
    if problems or layer_problems:
        listed = problems + layer_problems
        shown = listed[:6] + ([f"... and {len(listed) - 6} more"] if len(listed) > 6 else [])
        hint = (
            "load it into the model it was saved from (same layers, sizes and names)"
            if problems
            else "load it into the model it was saved from, or pass check_architecture=False "
            "to load parameters that fit by path and shape into layers of other kinds"
        )
        raise CheckpointError(
            f"checkpoint {path} was saved from a different model\n"
            f"  saved from:   {meta['model']}  ({meta['signature']})\n"
            f"  loading into: {_describe(model)}  ({model.signature}){created_at_note(model)}\n"
            + "".join(f"  {p}\n" for p in shown)
            + f"  hint: {hint}"
        )
    _, treedef = tree_flatten(model.param_shapes)
    params = tree_unflatten(treedef, [arrays[p] for p, _ in expected])
    if not stats:
        return params
    return params, _stats(path, meta, arrays, model)


def _stats(path: str, meta: dict, arrays: dict, model: Model) -> Any:
    """The statistics in the file, checked against those ``model`` keeps."""
    expected = stat_shapes(model)
    saved = {s["path"]: tuple(s["shape"]) for s in meta.get("statistics", [])}
    problems = [
        f"{p}: the model keeps it (shape {shape}), the file does not"
        if p not in saved
        else f"{p}: saved shape {saved[p]}, the model expects {shape}"
        for p, shape in expected
        if saved.get(p) != shape
    ]
    problems += [f"{p}: in the file, not kept by the model" for p in saved if p not in dict(expected)]
    problems += [
        f"{p}: listed in the header but missing (corrupt file)"
        for p in saved
        if STATS_PREFIX + p not in arrays
    ]
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not hold the running statistics of {_describe(model)}"
            f"{created_at_note(model)}\n"
            + "".join(f"  {p}\n" for p in problems[:6])
            + "  hint: save them with save(path, model, params, stats=stats)"
        )
    template = model.init_stats()
    _, treedef = tree_flatten(template)
    return tree_unflatten(treedef, [arrays[STATS_PREFIX + p] for p, _ in tree_paths(template)])


def _layer_check(path: str, meta: dict, model: Model) -> list[str]:
    """How the file's layers differ from the model's (a warning for files without them)."""
    if "layers" not in meta:
        warnings.warn(
            f"checkpoint {path} was written by an nnc that did not record layers, so only its "
            f"parameters' paths and shapes were checked against {_describe(model)}"
            f"{created_at_note(model)}; it was saved from {meta.get('model')}. Save it again to record "
            "them, or pass check_architecture=False to load it without this warning",
            stacklevel=3,
        )
        return []
    # files written before Input was left out recorded it: it is not compared either
    saved = [
        entry
        for entry in meta["layers"]
        if not (isinstance(entry, list) and len(entry) == 2 and str(entry[1]).split("(")[0] in _UNRECORDED)
    ]
    return layer_differences(saved, recorded_layers(model))


def layer_differences(saved: list, current: list) -> list[str]:
    """The differences between two lists of ``[path, kind]``, each placed after the layer before it.

    >>> layer_differences([["linear_0", "Linear"], ["tanh_0", "tanh"]],
    ...                   [["linear_0", "Linear"], ["relu_0", "relu"]])
    ['after linear_0: tanh in the file, relu in the model']
    """
    kinds_saved, kinds_now = [k for _, k in saved], [k for _, k in current]
    found = []
    opcodes = difflib.SequenceMatcher(a=kinds_saved, b=kinds_now, autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal":
            continue
        place = f"after {saved[i1 - 1][0] or 'the input'}" if i1 else "at the start"
        in_file = ", ".join(kinds_saved[i1:i2]) or "nothing"
        in_model = ", ".join(kinds_now[j1:j2]) or "nothing"
        found.append(f"{place}: {in_file} in the file, {in_model} in the model")
    return found


def _read(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    if safetensors_format.is_safetensors_path(path):
        meta, arrays = _read_safetensors(path)
        _check_header(path, meta, f"a safetensors file whose {META_KEY!r} metadata")
    else:
        meta, arrays = _read_npz(path)
        _check_header(path, meta, f"an .npz archive whose {META_KEY!r} entry")
    return meta, arrays


def _check_header(path: str, meta: Any, what: str) -> None:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is {what} is not an nnc checkpoint header")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{path} is an nnc checkpoint of format version {meta.get('version')}, "
            f"but this nnc reads version {VERSION}"
        )


def _read_safetensors(path: str) -> tuple[Any, dict[str, np.ndarray]]:
    try:
        metadata, arrays = safetensors_format.decode(path)
    except FileNotFoundError:
        raise CheckpointNotFound(_not_found(path)) from None
    except safetensors_format.NotInstalled:
        raise CheckpointError(
            f"cannot load the checkpoint {path}: a .safetensors file needs the safetensors package, "
            f"which is not installed\n  hint: {safetensors_format.INSTALL}"
        ) from None
    except safetensors_format.Unreadable as err:
        hint = "" if "hint:" in str(err) else f"\n  hint: {_COMPLETE_OR_ABSENT}"
        raise CheckpointError(f"{path} {err}{hint}") from None
    if metadata is None or META_KEY not in metadata:
        raise CheckpointError(
            f"{path} is a safetensors file but not an nnc checkpoint (its metadata has no {META_KEY!r} "
            f"key; it holds {', '.join(sorted(arrays)[:5]) or 'nothing'})\n"
            "  hint: write checkpoints with nnc.save(path, model, params); "
            "load PyTorch weights with nnc.load_torch(model, path)"
        )
    try:
        checksums = json.loads(metadata[CHECKSUMS_KEY])
        header = metadata[META_KEY]
        damaged = sorted(
            set(arrays) ^ (set(checksums) - {META_KEY})
            | {k for k, a in arrays.items() if checksums.get(k) != safetensors_format.digest(a)}
            | (
                {META_KEY}
                if checksums.get(META_KEY) != hashlib.sha256(header.encode()).hexdigest()
                else set()
            )
        )
        meta = json.loads(header) if not damaged else None
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(
            f"{path} is truncated or corrupt (its nnc metadata cannot be read: {type(err).__name__}: {err})\n"
            f"  hint: {_COMPLETE_OR_ABSENT}"
        ) from None
    if damaged:
        raise CheckpointError(
            f"{path} is truncated or corrupt: {', '.join(damaged[:5])}"
            f"{' and more' if len(damaged) > 5 else ''} "
            f"{'does' if len(damaged) == 1 else 'do'} not match the checksums written with the file\n"
            f"  hint: {_COMPLETE_OR_ABSENT}"
        )
    return meta, arrays


_COMPLETE_OR_ABSENT = (
    "a checkpoint written by nnc.save is complete or absent; was this file "
    "copied partially or written by another program?"
)


def _read_npz(path: str) -> tuple[Any, dict[str, np.ndarray]]:
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CheckpointNotFound(_not_found(path)) from None
    except _READ_ERRORS as err:
        raise CheckpointError(_unreadable(path, err)) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise CheckpointError(
            f"{path} holds a single numpy array (.npy), not an nnc checkpoint\n"
            "  hint: write checkpoints with nnc.save(path, model, params)"
        )
    with archive:
        names = list(archive.files)
        if META_KEY not in names:
            raise CheckpointError(
                f"{path} is an .npz archive but not an nnc checkpoint (it has no {META_KEY!r} "
                f"entry; it holds {', '.join(names[:5]) or 'nothing'})\n"
                "  hint: write checkpoints with nnc.save(path, model, params)"
            )
        try:
            meta = json.loads(str(archive[META_KEY]))
            arrays = {n: archive[n] for n in names if n != META_KEY}
        except _READ_ERRORS as err:
            raise CheckpointError(_unreadable(path, err, inside=True)) from None
    return meta, arrays


def _not_found(path: str) -> str:
    folder = os.path.dirname(path)
    detail = (
        f" (the folder {folder} does not exist either)"
        if folder and not os.path.isdir(folder)
        else f" (relative to the current folder, {os.getcwd()})"
        if not os.path.isabs(path)
        else ""
    )
    return (
        f"there is no checkpoint at {path}: no such file{detail}\n"
        "  hint: check the path; nnc.save(path, model, params) writes a checkpoint there"
    )


def _unreadable(path: str, err: Exception, inside: bool = False) -> str:
    if isinstance(err, ValueError) and "pickle" in str(err):
        what = (
            "holds an array of Python objects (pickled data, which nnc never loads)"
            if inside
            else "is not an .npz archive (numpy could only read it as a pickle, which nnc never loads)"
        )
    elif isinstance(err, (zipfile.BadZipFile, EOFError)):
        what = f"is truncated or corrupt ({type(err).__name__}: {err})"
    else:
        what = f"cannot be read as an nnc checkpoint ({type(err).__name__}: {err})"
    return f"{path} {what}\n  hint: {_COMPLETE_OR_ABSENT}"


def _differences(meta: dict, arrays: dict, model: Model, expected: list) -> list[str]:
    problems = []
    if meta.get("signature") != str(model.signature):
        problems.append(f"signature: saved {meta.get('signature')}, this model {model.signature}")
    saved = {p["path"]: tuple(p["shape"]) for p in meta.get("parameters", [])}
    for p, shape in expected:
        if p not in saved:
            problems.append(f"{p}: the model has it (shape {shape}), the file does not")
        elif saved[p] != shape:
            problems.append(f"{p}: saved shape {saved[p]}, the model expects {shape}")
    wanted = dict(expected)
    problems.extend(
        f"{p}: in the file (shape {s}), not in the model" for p, s in saved.items() if p not in wanted
    )
    for p, shape in saved.items():
        if p in wanted and (p not in arrays or arrays[p].shape != shape):
            problems.append(
                f"{p}: the header lists shape {shape} but the array is "
                f"{'missing' if p not in arrays else arrays[p].shape} (corrupt file)"
            )
    return problems
