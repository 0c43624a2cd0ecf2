"""The errors nnc raises. Every one derives from :class:`NNCError`.

Each message names the model or primitive involved, what was expected, what was
found, and (where known) the file and line where the user wrote it.
"""

from __future__ import annotations

DOCS = "docs/errors.md"


class NNCError(Exception):
    """Base class of every error nnc raises on purpose.

    Its message ends with the section of the docs that explains it:
    ``see docs/errors.md#shapeerror``. An error whose message already carries such a link
    (one that wraps another nnc error's message) adds no second one.
    """

    def __str__(self) -> str:
        text = super().__str__()
        if f"see {DOCS}#" in text:
            return text
        return f"{text}\n  see {DOCS}#{docs_section(type(self))}"


def docs_section(cls: type) -> str:
    """The anchor of the section of ``docs/errors.md`` about ``cls``: its nearest nnc class.

    >>> docs_section(ShapeError)
    'shapeerror'
    """
    for klass in cls.__mro__:
        if klass.__module__ == "nnc" or klass.__module__.startswith("nnc."):
            return klass.__name__.lower()
    return "nncerror"


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


class ArgumentError(NNCError, TypeError, ValueError):
    """A layer, cell, combinator or type was given an argument it cannot take: a size that is
    not a positive int, an unknown activation, a stride of 0.

    It derives from ``TypeError``, which these arguments raised before nnc had errors of its
    own (so ``except TypeError`` keeps working), and from ``ValueError``, which a bad value is.
    """


for _cls in (
    NNCError,
    TypeMismatch,
    ShapeError,
    NonFiniteError,
    MissingGradient,
    TraceError,
    InitError,
    ArgumentError,
):
    _cls.__module__ = "nnc"  # shown as nnc.ShapeError in tracebacks, where users import it from
