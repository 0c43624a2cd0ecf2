"""Checkpoints: a model's parameters in a ``.npz`` file, with the model's signature beside them.

The file is a plain numpy ``.npz`` archive: one array per parameter, keyed by its path
(``linear_0/W``), and an ``__nnc__`` entry holding JSON text (format, version, the model's
signature and description, every parameter's path, shape and dtype). Nothing in it is
pickled, and it is read with ``allow_pickle=False``, so loading never runs code from the
file. Writes are atomic: the archive is written to a temporary file in the same directory
and renamed over the target, so a crash leaves either the old file or the new one.

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

import json
import os
import secrets
import zipfile
from typing import IO, Any, Callable

import numpy as np

from nnc.backend.array_api import to_numpy
from nnc.backend.errors import NNCError
from nnc.backend.tree import tree_flatten, tree_paths, tree_unflatten

from .model import Model, check_params

FORMAT = "nnc-checkpoint"
VERSION = 1
META_KEY = "__nnc__"
# What zipfile and numpy raise on damaged archives (flipped flag bits read as "encrypted"
# or "unsupported compression" surface as RuntimeError and NotImplementedError)
_READ_ERRORS = (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, RuntimeError,
                NotImplementedError)


class CheckpointError(NNCError, ValueError):
    """A file cannot be loaded as a checkpoint of this model (another model, truncated, not a checkpoint)."""


CheckpointError.__module__ = "nnc"


def write_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``.

    On any failure the temporary file is removed and ``path`` is left as it was.

    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "note.txt")
    >>> write_atomically(target, lambda f: f.write(b"hello"))
    >>> open(target).read()
    'hello'
    """
    path = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(path))
    temp = os.path.join(folder, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open with mode 0o666 lets the umask decide permissions, as for an ordinary new file
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
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


def save(path: str | os.PathLike, model: Model, params: Any) -> None:
    """Write ``params`` of ``model`` to ``path`` (an ``.npz`` file), atomically.

    Raises :class:`nnc.ShapeError` before writing anything if ``params`` do not fit ``model``.
    """
    check_params(model, params)
    entries: dict[str, np.ndarray] = {}
    described = []
    for key, leaf in tree_paths(params):
        array = to_numpy(leaf)  # a device array is copied to the host, so any machine loads it
        entries[key] = array
        described.append({"path": key, "shape": list(array.shape), "dtype": array.dtype.str})
    meta = {"format": FORMAT, "version": VERSION, "signature": str(model.signature),
            "model": _describe(model), "parameters": described}
    entries[META_KEY] = np.array(json.dumps(meta))
    write_atomically(path, lambda f: np.savez(f, **entries))


def load(path: str | os.PathLike, model: Model) -> Any:
    """The parameters stored at ``path``, checked against ``model`` and shaped like ``model.init()``.

    Raises :class:`CheckpointError` for a file saved from a different model (saying what
    differs), a truncated or corrupt file, or a file that is not an nnc checkpoint.
    """
    path = os.fspath(path)
    meta, arrays = _read(path)
    expected = [(p, tuple(s)) for p, s in tree_paths(model.param_shapes)]
    problems = _differences(meta, arrays, model, expected)
    if problems:
        shown = problems[:6] + ([f"... and {len(problems) - 6} more"] if len(problems) > 6 else [])
        raise CheckpointError(
            f"checkpoint {path} was saved from a different model\n"
            f"  saved from:   {meta['model']}  ({meta['signature']})\n"
            f"  loading into: {_describe(model)}  ({model.signature})\n"
            + "".join(f"  {p}\n" for p in shown)
            + "  hint: load it into the model it was saved from (same layers, sizes and names)")
    _, treedef = tree_flatten(model.param_shapes)
    return tree_unflatten(treedef, [arrays[p] for p, _ in expected])


def _read(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except _READ_ERRORS as err:
        raise CheckpointError(_unreadable(path, err)) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise CheckpointError(f"{path} holds a single numpy array (.npy), not an nnc checkpoint\n"
                              "  hint: write checkpoints with nnc.save(path, model, params)")
    with archive:
        names = list(archive.files)
        if META_KEY not in names:
            raise CheckpointError(
                f"{path} is an .npz archive but not an nnc checkpoint (it has no {META_KEY!r} "
                f"entry; it holds {', '.join(names[:5]) or 'nothing'})\n"
                "  hint: write checkpoints with nnc.save(path, model, params)")
        try:
            meta = json.loads(str(archive[META_KEY]))
            arrays = {n: archive[n] for n in names if n != META_KEY}
        except _READ_ERRORS as err:
            raise CheckpointError(_unreadable(path, err, inside=True)) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is an .npz archive whose {META_KEY!r} entry is not an nnc "
                              "checkpoint header")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} is an nnc checkpoint of format version {meta.get('version')}, "
                              f"but this nnc reads version {VERSION}")
    return meta, arrays


def _unreadable(path: str, err: Exception, inside: bool = False) -> str:
    if isinstance(err, ValueError) and "pickle" in str(err):
        what = ("holds an array of Python objects (pickled data, which nnc never loads)" if inside
                else "is not an .npz archive (numpy could only read it as a pickle, which nnc never loads)")
    elif isinstance(err, (zipfile.BadZipFile, EOFError)):
        what = f"is truncated or corrupt ({type(err).__name__}: {err})"
    else:
        what = f"cannot be read as an nnc checkpoint ({type(err).__name__}: {err})"
    return (f"{path} {what}\n"
            "  hint: a checkpoint written by nnc.save is complete or absent; was this file "
            "copied partially or written by another program?")


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
    problems.extend(f"{p}: in the file (shape {s}), not in the model"
                    for p, s in saved.items() if p not in wanted)
    for p, shape in saved.items():
        if p in wanted and (p not in arrays or arrays[p].shape != shape):
            problems.append(f"{p}: the header lists shape {shape} but the array is "
                            f"{'missing' if p not in arrays else arrays[p].shape} (corrupt file)")
    return problems
