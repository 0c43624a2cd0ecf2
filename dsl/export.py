"""ONNX export: a model and its parameters as an ``.onnx`` file that onnxruntime, Netron and
other tools read.

The graph is built with the ``onnx`` package (an optional extra: ``pip install 'nnc[onnx]'``),
walking the model as ``nnc render`` does: each layer becomes a few ONNX operators named by
its path (``linear_0/Gemm``), each parameter an initialiser named by its path
(``linear_0/W``), and each nested block (``residual``, ``repeat``, ``fanout``, ``parallel``)
an ONNX local function of domain ``nnc`` named after its path, so that the structure
survives. The model is exported in its inference form (:func:`nnc.inference`: dropout is
the identity, BatchNorm reads the running statistics given as ``stats``). Every input has a
symbolic leading ``batch`` axis (and a symbolic ``time`` axis for sequences), so the file runs
on any batch size. The scopes nodes are written into are :mod:`nnc.export_graph`'s; the
layers' ONNX forms are :mod:`nnc.export_layers`' and :mod:`nnc.export_recurrent`'s. How-to:
docs/howto/export.md.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from nnc.backend.tree import tree_paths

from . import export_recurrent
from .effects import checked_stats, inference
from .export_graph import DOMAIN, OPSET, At, Export, ExportError, Scope, cannot_export, flat, onnx_modules
from .export_layers import emit
from .model import Model, check_params, value_in_words
from .source import short_description
from .types import ArrayType, SeqType, TupleType, Type, resolve_dim

if TYPE_CHECKING:  # onnx is an optional extra: imported when an export runs, never with nnc
    import onnx

del export_recurrent  # imported for the layers it registers

# ----------------------------------------------------------------------------- types as ONNX values


def _dims(t: Type, what: str, model: Model) -> list:
    """The ONNX shape of a batch of ``t``: a symbolic batch (and time) axis, then the example's."""
    if isinstance(t, SeqType):
        return ["batch", "time"] + _dims(t.item, what, model)[1:]
    if isinstance(t, ArrayType):
        if t.is_index:
            return ["batch"]
        out: list = ["batch"]
        for i, d in enumerate(t.dims):
            d = resolve_dim(d, {})
            out.append(d if isinstance(d, int) else f"{what}_{i}")
        return out
    raise cannot_export(
        model,
        f"its {what.split('_')[0]} type {t!r} has no fixed rank",
        "declare it: nnc.Input(Vec[n]) >> model",
    )


def _leaves(t: Type, name: str) -> list[tuple[str, Type]]:
    if isinstance(t, TupleType):
        return [leaf for i, item in enumerate(t.items) for leaf in _leaves(item, f"{name}_{i}")]
    return [(name, t)]


def _structure(t: Type, names: list) -> Any:
    it = iter(names)

    def build(t: Type) -> Any:
        return tuple(build(i) for i in t.items) if isinstance(t, TupleType) else next(it)

    return build(t)


def _elem_type(t: Type, dtype: np.dtype) -> int:
    onnx, helper = onnx_modules()
    item = t.item if isinstance(t, SeqType) else t
    if isinstance(item, ArrayType) and item.is_index:
        return onnx.TensorProto.INT64
    return helper.np_dtype_to_tensor_dtype(dtype)


# ----------------------------------------------------------------------------- the public function


def export(
    model: Model,
    params: Any,
    path: str | os.PathLike | None = None,
    *,
    stats: Any = None,
    opset: int = OPSET,
    dtype: Any = None,
    native_recurrent: bool = True,
) -> onnx.ModelProto:
    """Export ``model`` with ``params`` to ONNX; write it to ``path`` when one is given.

    Args:
        model: the model; it is exported in its inference form (:func:`nnc.inference`).
        params: its parameters (``model.init(...)`` or trained ones); their dtype, float32 or
            float64, is the file's.
        path: where to write the ``.onnx`` file (``None``: write nothing).
        stats: the running statistics of a model with ``BatchNorm`` (what training gave back).
        opset: the ONNX operator set, 17 or later.
        dtype: the float type of the file's inputs and outputs, for a model without parameters
            (default: the parameters' dtype, else float32).
        native_recurrent: write ``fcrnn``, ``LSTM`` and ``GRU`` as ONNX's ``RNN``, ``LSTM`` and
            ``GRU`` operators (float32 only: onnxruntime has no float64 kernels for them);
            ``False``, or float64 parameters, writes every recurrent model as a ``Scan`` loop.

    Returns: the checked ``onnx.ModelProto``, with the shape of every edge inferred. Its inputs
    are ``input`` (``input_0``, ``input_1``, ... for a tuple), its outputs ``output``; the
    leading axis of each is the symbolic ``batch``, and ``time`` for sequences; tokens are int64.

    Raises: :class:`ExportError` for a layer with no ONNX form (naming it and where it was
    created), for missing statistics, or when the ``onnx`` package is missing;
    :class:`nnc.ShapeError` for parameters (or statistics) that do not fit the model.

    >>> import numpy as np, nnc
    >>> model = nnc.Linear(3, 2) >> nnc.softmax
    >>> onnx_model = nnc.export(model, model.init(seed=0))
    >>> [i.name for i in onnx_model.graph.initializer], onnx_model.opset_import[0].version
    (['linear_0/W', 'linear_0/b'], 17)
    """
    onnx, helper = onnx_modules()

    if not isinstance(model, Model):
        raise ExportError(
            f"nnc.export takes an nnc model, got {value_in_words(model)}"
            + (
                "\n  hint: a Python function (feedback's generation loop, a lambda) has no ONNX form: "
                "export the model it calls, and loop around the exported model in your own code"
                if callable(model)
                else ""
            )
        )
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < OPSET:
        raise ExportError(f"nnc.export: opset must be an int >= {OPSET}, got {opset!r}")
    if opset > onnx.defs.onnx_opset_version():
        raise ExportError(
            f"nnc.export: opset {opset} is newer than the installed onnx knows "
            f"({onnx.defs.onnx_opset_version()})"
        )
    if model.state_type is not None:
        raise cannot_export(
            model,
            f"it is a recurrent cell ({model.signature}), stateful",
            "export a stateless model: zero_state(unroll(cell)), learned_state(unroll_last(cell)), ...",
        )
    check_params(model, params)
    values = dict(tree_paths(params))
    found = next((np.asarray(v).dtype for v in values.values()), None)
    try:
        dtype = np.dtype(found if found is not None else dtype if dtype is not None else np.float32)
    except TypeError:
        raise ExportError(
            f"nnc.export: dtype {dtype!r} is not a dtype; use np.float32 or np.float64"
        ) from None
    if dtype not in (np.float32, np.float64):
        raise ExportError(f"nnc.export: parameters must be float32 or float64, got {dtype}")
    if model.keeps_stats:
        if stats is None:
            raise cannot_export(
                model,
                "it normalises with running statistics (BatchNorm), and no stats were given",
                "nnc.export(model, params, path, stats=stats), with the stats training gave back",
            )
        checked_stats(model, stats, None)
        values.update(dict(tree_paths(stats)))
    model = inference(model)
    ex = Export(values, dtype, opset)
    graph = Scope(ex)
    graph.native_cells = bool(native_recurrent) and ex.float32

    in_leaves = _leaves(model.in_type, "input")
    inputs = [
        helper.make_tensor_value_info(n, _elem_type(t, dtype), _dims(t, n, model)) for n, t in in_leaves
    ]
    x = _structure(model.in_type, [n for n, _ in in_leaves])
    y = emit(graph, model, x, At())
    out_leaves = _leaves(model.out_type, "output")
    ys = flat(y)
    outputs = []
    for (name, t), value in zip(out_leaves, ys):
        graph.nodes.append(helper.make_node("Identity", [value], [name], name=f"{name}/Identity"))
        outputs.append(helper.make_tensor_value_info(name, _elem_type(t, dtype), _dims(t, name, model)))
    g = helper.make_graph(
        graph.nodes, "nnc_model", inputs, outputs, initializer=list(ex.initializers.values())
    )
    proto = helper.make_model(
        g,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, 1)],
        functions=ex.functions,
        producer_name="nnc",
        doc_string=f"{model!r}: {model.signature}",
    )
    # the IR version of onnx 1.17, which onnxruntime 1.20 (the oldest the extra allows) reads
    proto.ir_version = min(proto.ir_version, 10)
    try:
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportError(
            f"the ONNX graph written for {short_description(model)} does not check: {err}\n"
            "  hint: this is a bug in nnc's exporter; please report it with the model"
        ) from None
    if path is not None:
        try:
            onnx.save(proto, os.fspath(path))
        except OSError as err:
            raise ExportError(f"cannot write {os.fspath(path)}: {err.strerror or err}") from None
    return proto


__all__ = ["ExportError", "export"]
