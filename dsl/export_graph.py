"""What an ONNX export writes into: scopes of nodes (the main graph, a local function, a loop
body), parameters as initialisers named by their paths, and the errors of an export.

``onnx`` is imported only when nodes are written (:func:`onnx_modules`), so that importing nnc
never imports it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnc.backend.errors import NNCError

from .model import Model
from .source import short_description

OPSET = 17
"""The ONNX operator set nnc writes by default (the first with ``LayerNormalization``)."""
DOMAIN = "nnc"
"""The domain of the local functions that hold nested blocks."""
INSTALL_HINT = "pip install 'nnc[onnx]'"


class ExportError(NNCError):
    """A model cannot be exported to ONNX: a layer with no ONNX form (a Python function in
    ``lift``, a bare recurrent cell), a model with BatchNorm given no statistics, or the
    ``onnx`` package missing."""


def onnx_modules() -> tuple[Any, Any]:
    """``(onnx, onnx.helper)``, or an :class:`ExportError` saying how to install them."""
    try:
        import onnx
        import onnx.helper
    except ImportError as err:
        raise ExportError(
            f"exporting to ONNX needs the onnx package, which is not installed ({err})\n"
            f"  hint: {INSTALL_HINT}"
        ) from None
    return onnx, onnx.helper


def cannot_export(model: Model, why: str, hint: str = "") -> ExportError:
    """The error for a layer with no ONNX form: names it, where it was created, and why."""
    return ExportError(
        f"cannot export {short_description(model)} to ONNX: {why}" + (f"\n  hint: {hint}" if hint else "")
    )


@dataclass(frozen=True)
class At:
    """Where a model sits: ``params`` is its parameters' path, ``names`` the path its nodes are
    named by (they differ for layers without parameters and inside transparent wrappers)."""

    params: str = ""
    names: str = ""

    def child(self, key: str | None, name: str, transparent: bool) -> At:
        params = self.params if key == "" else join(self.params, key if key is not None else name)
        return At(params, self.names if transparent else join(self.names, name))

    def label(self, kind: str) -> str:
        return self.names or kind.lower()


def join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def children_at(model: Model, at: At) -> list[tuple[Model, At]]:
    """Each child of ``model`` with its place, as the parameters and the drawing name them."""
    return [
        (child, at.child(key, name, model.transparent))
        for key, name, child in zip(model.param_keys, model.child_paths, model.children)
    ]


@dataclass
class Export:
    """What one export gathers: the parameter values by path, their dtype, and the local
    functions and initialisers written so far."""

    values: dict
    dtype: np.dtype
    opset: int
    functions: list = field(default_factory=list)
    function_names: set = field(default_factory=set)
    initializers: dict = field(default_factory=dict)
    counter: Any = field(default_factory=itertools.count)
    node_names: dict = field(default_factory=dict)

    def node_name(self, base: str) -> str:
        """``linear_0/Gemm``, then ``linear_0/Gemm_1`` ...: unique, and readable in Netron."""
        k = self.node_names.get(base, 0)
        self.node_names[base] = k + 1
        return base if k == 0 else f"{base}_{k}"

    @property
    def float32(self) -> bool:
        return self.dtype == np.float32

    def initializer(self, path: str, derive: Callable[[dict], np.ndarray] | None) -> str:
        if path not in self.initializers:
            if derive is None and path not in self.values:
                raise ExportError(f"the parameters have no {path!r}, which the model needs")
            value = np.asarray(derive(self.values) if derive is not None else self.values[path])
            if value.dtype.kind == "f":
                value = value.astype(self.dtype)
            onnx_modules()
            import onnx.numpy_helper

            self.initializers[path] = onnx.numpy_helper.from_array(value, name=path)
        return path

    def unique(self, base: str) -> str:
        """A function name not used yet: the model path, then ``path#2`` ..."""
        name, k = base, 1
        while name in self.function_names:
            k += 1
            name = f"{base}#{k}"
        self.function_names.add(name)
        return name


class Scope:
    """Where nodes are written: the main graph, a local function, or a loop body (a Scan's
    subgraph, which reads the parameters of the scope around it)."""

    def __init__(self, export: Export, kind: str = "graph", parent: Scope | None = None) -> None:
        self.export = export
        self.kind = kind
        self.parent = parent
        self.nodes: list = []
        self.params: dict[str, Callable | None] = {}  # a function's parameter inputs, in order
        self.native_cells: bool = parent.native_cells if parent is not None else True
        # values that reach layers the way parameters do (padded's lengths): name by path
        self.known: dict[str, str] = {}
        self.padded: bool = parent.padded if parent is not None else False
        # how many axes come before one example: 2 where ``each`` runs a layer over (batch, time)
        # as it is, without folding the steps into the batch
        self.lead: int = parent.lead if parent is not None else 1

    @property
    def dtype(self) -> np.dtype:
        return self.export.dtype

    def fresh(self, hint: str) -> str:
        return f"{hint}:{next(self.export.counter)}"

    def param(self, path: str, derive: Callable[[dict], np.ndarray] | None = None) -> str:
        """The value of the parameter at ``path`` (or of ``derive(values)``, an array made from
        the parameters, such as ONNX's layout of an LSTM's weights), named by its path."""
        if path in self.known:
            return self.known[path]
        if self.kind == "graph":
            return self.export.initializer(path, derive)
        if self.kind == "body":
            assert self.parent is not None, "a loop body sits in a scope"
            return self.parent.param(path, derive)
        self.params.setdefault(path, derive)
        return path

    def op(self, op_type: str, inputs: list, name: str, outputs: int = 1, domain: str = "", **attrs) -> Any:
        """One node; its output name (or names, for ``outputs > 1``)."""
        _, helper = onnx_modules()
        outs = [self.fresh(f"{name}/{op_type}") for _ in range(outputs)]
        self.nodes.append(
            helper.make_node(
                op_type,
                list(inputs),
                outs,
                name=self.export.node_name(f"{name}/{op_type}"),
                domain=domain,
                **attrs,
            )
        )
        return outs[0] if outputs == 1 else outs

    def const(self, value: Any, name: str, dtype: Any = None) -> str:
        """A constant (in the parameters' dtype unless ``dtype`` is given)."""
        import onnx.numpy_helper

        array = np.asarray(value, dtype=dtype if dtype is not None else self.dtype)
        return self.op("Constant", [], name, value=onnx.numpy_helper.from_array(array))

    def ints(self, values: Any, name: str) -> str:
        return self.const(np.asarray(values, np.int64).reshape(-1), name, np.int64)

    def call(self, at: At, kind: str, x: Any, build: Callable[[Scope, Any], Any]) -> Any:
        """``build(scope, x)`` written as a local function named after ``at`` (its parameters
        become inputs of the function), and a call of it here; the call's outputs, structured
        as ``build``'s result."""
        _, helper = onnx_modules()
        body = Scope(self.export, "function", self)
        inputs = flat(x)
        formal = [f"x{i}" for i in range(len(inputs))]
        result = build(body, restructure(x, formal))
        outs = body.distinct(flat(result), formal, at.label(kind))
        name = self.export.unique(at.label(kind))
        self.export.functions.append(
            helper.make_function(
                DOMAIN,
                name,
                formal + list(body.params),
                outs,
                body.nodes,
                opset_imports=[helper.make_opsetid("", self.export.opset), helper.make_opsetid(DOMAIN, 1)],
                doc_string=f"{kind} at {at.names or 'the top'}",
            )
        )
        actual = list(inputs) + [self.param(p, d) for p, d in body.params.items()]
        called = self.op(name, actual, at.label(kind), outputs=len(outs), domain=DOMAIN)
        return restructure(result, [called] if len(outs) == 1 else called)

    def distinct(self, outs: list, taken: list, name: str) -> list:
        """``outs`` as names a graph may output: an input passed straight through, or one value
        given twice, gets an Identity of its own."""
        seen = set(taken)
        fixed = []
        for o in outs:
            if o in seen:
                o = self.op("Identity", [o], name)
            seen.add(o)
            fixed.append(o)
        return fixed


def flat(value: Any) -> list:
    """The names in a value that may be a tuple of (tuples of) names."""
    if isinstance(value, tuple):
        return [v for item in value for v in flat(item)]
    return [value]


def restructure(like: Any, names: list) -> Any:
    """``names`` nested the way ``like`` is."""
    it = iter(names)

    def build(v: Any) -> Any:
        return tuple(build(i) for i in v) if isinstance(v, tuple) else next(it)

    return build(like)


ExportError.__module__ = "nnc"  # shown as nnc.ExportError, where users import it from
