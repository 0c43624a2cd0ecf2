"""The safetensors file format, through the optional ``safetensors`` package (``pip install 'nnc[safetensors]'``).

A safetensors file is an 8-byte header length, a JSON header (each tensor's dtype, shape and
byte range, and a ``__metadata__`` dict of strings) and the tensors' raw bytes. Nothing in it
is code, so reading one never runs anything. This module only encodes and decodes; what a
checkpoint puts in the metadata, and what the errors say, is :mod:`nnc.checkpoint`'s.

The package is imported when a file is read or written, never when nnc is imported.

>>> import numpy as np, os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
>>> with open(path, "wb") as f:
...     _ = f.write(encode({"w": np.ones((2, 3), np.float32)}, {"note": "hi"}))
>>> meta, arrays = decode(path)
>>> meta, arrays["w"].shape
({'note': 'hi'}, (2, 3))
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

INSTALL = "pip install 'nnc[safetensors]'"
SUFFIX = ".safetensors"


class NotInstalled(ImportError):
    """The ``safetensors`` package is not installed; the caller says what needed it."""


class Unreadable(ValueError):
    """The file is not a complete safetensors file; the message says what is wrong with it."""


def is_safetensors_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a safetensors file, by its suffix (in any case).

    >>> is_safetensors_path("run/model.safetensors"), is_safetensors_path("model.npz")
    (True, False)
    """
    return os.fspath(path).lower().endswith(SUFFIX)


def _package() -> Any:
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise NotInstalled(f"the safetensors package is not installed\n  hint: {INSTALL}") from None
    return safetensors


def digest(array: np.ndarray) -> str:
    """A sha256 of an array's dtype, shape and bytes: safetensors keeps no checksum of its own.

    >>> digest(np.zeros(2, np.float32)) == digest(np.zeros(2, np.float64))
    False
    """
    h = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def encode(arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """The bytes of a safetensors file holding ``arrays`` (names kept) and ``metadata``.

    Raises :class:`NotInstalled`, and :class:`Unreadable` for arrays safetensors cannot hold."""
    package = _package()
    # safetensors reads raw memory: each array in C order, 0-d arrays kept 0-d
    flat = {name: np.asarray(a, order="C") for name, a in arrays.items()}
    try:
        data: bytes = package.numpy.save(flat, metadata=metadata)
    except (package.SafetensorError, ValueError, TypeError, KeyError) as err:
        odd = sorted({str(a.dtype) for a in flat.values()})
        raise Unreadable(f"safetensors cannot hold these arrays (dtypes {', '.join(odd)}): {err}") from None
    return data


def decode(path: str | os.PathLike) -> tuple[dict[str, str] | None, dict[str, np.ndarray]]:
    """The metadata (``None`` when the file has none) and the arrays of the safetensors file ``path``.

    Raises ``FileNotFoundError`` for a missing file, :class:`NotInstalled`, and
    :class:`Unreadable` for anything that is not a complete safetensors file."""
    package = _package()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    try:  # numpy knows bfloat16 once ml_dtypes is imported (onnx brings it): then it loads
        import ml_dtypes  # noqa: F401
    except ImportError:
        pass
    try:
        with package.safe_open(path, framework="numpy") as f:
            metadata = f.metadata()
            # float32 holds every bfloat16 exactly, and nnc computes in float32 or float64
            arrays = {name: _widened(f.get_tensor(name)) for name in f.keys()}
    except FileNotFoundError:
        raise
    except TypeError as err:
        if "bfloat16" in str(err):  # a complete file, of a dtype numpy has not
            raise Unreadable(
                "holds bfloat16 tensors, which numpy cannot represent\n  hint: convert them where PyTorch "
                "is: save_file({k: v.float() for k, v in state_dict.items()}, path)"
            ) from None
        raise Unreadable(_reason(path, err)) from None
    except (package.SafetensorError, OSError, ValueError, KeyError, RuntimeError) as err:
        raise Unreadable(_reason(path, err)) from None
    return (None if metadata is None else dict(metadata)), arrays


def _widened(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) if a.dtype.name == "bfloat16" else a


def _reason(path: str, err: Exception) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        head = b""
    if head.startswith(b"PK"):
        return "is a zip archive (an .npz file, or a torch.save file?), not a safetensors file"
    if head.startswith(b"\x80"):
        return "is a pickle (a torch.save file?), not a safetensors file"
    text = str(err).removeprefix("Error while deserializing header: ")
    return f"is truncated or corrupt, or not a safetensors file ({text})"
