"""The errors nnc raises. Every one derives from :class:`NNCError`.

Each message names the model or primitive involved, what was expected, what was
found, and (where known) the file and line where the user wrote it.
"""
from __future__ import annotations

DOCS = "docs/errors.md"


class NNCError(Exception):
    """Base class of every error nnc raises on purpose."""


class TypeMismatch(NNCError, TypeError):
    """Two models were composed whose types do not fit, found before any data flows."""


class ShapeError(NNCError, ValueError):
    """An array of the wrong shape, rank or dtype reached a model, a loss or a primitive."""


class NonFiniteError(NNCError, ValueError):
    """A NaN or infinity reached a model's input."""


class MissingGradient(NNCError, NotImplementedError):
    """A primitive without a gradient rule was differentiated."""


class TraceError(NNCError):
    """A traced function did something that cannot be traced (Python control flow on values)."""


class InitError(NNCError, ValueError):
    """A model cannot create its parameters (a size is still unknown, a bad initialiser)."""


for _cls in (NNCError, TypeMismatch, ShapeError, NonFiniteError, MissingGradient, TraceError, InitError):
    _cls.__module__ = "nnc"  # shown as nnc.ShapeError in tracebacks, where users import it from
