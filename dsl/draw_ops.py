"""The primitives a model runs, forward and backward, as a Graphviz graph.

The model's loss-free gradient is traced: ``sum(model(params, x))`` (every output summed)
on zeros of its input type with a batch of 1 (2 where BatchNorm needs two; sequences of 3
steps), differentiated with respect to the parameters and the input by the engine's own
pass (:func:`nnc.backend.autodiff.gradient_path`, ``replay_forward``, ``reverse_sweep``). Each
equation is a node labelled with its primitive and its result's shape; the forward is one
cluster, the backward another, and inside each the equations are grouped by the layer that
made them. Values the forward computes and the backward reads (what a real step keeps in
memory between the passes) reach the backward on dashed purple edges.

The engine does not record which layer made an equation, so the tracing here notes it:
each layer's forward is wrapped to count the equations of the trace before and after it,
and each forward equation's replay and its VJP are counted likewise.

>>> from nnc import Linear, tanh
>>> ops = trace_ops(Linear(2, 3) >> tanh)
>>> [(e.prim.name, ops.layer_of[id(e)]) for e in ops.forward][1:4]
[('dot', 'linear_0'), ('add', 'linear_0'), ('tanh', 'tanh_0')]
>>> sorted({ops.layer_of[id(e)] for e in ops.backward})
['linear_0', 'tanh_0']
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from nnc.backend.autodiff import gradient_path, replay_forward, reverse_sweep
from nnc.backend.core import Const, Eqn, Graph, Trace, Tracer, Var, trace_graph
from nnc.backend.errors import NNCError, TraceError
from nnc.backend.random import key as nnc_key
from nnc.backend.staging import call_signature, trace_call
from nnc.backend.tree import tree_leaves, tree_paths

from .draw import FONT, FONT_CLUSTER, FONT_NODE, FONT_SMALL, quoted, text
from .inspection import child_path
from .model import Model, created_at_note
from .types import ArrayType, SeqType, TupleType, is_concrete, show

SAVED = "#7c3aed"
STEPS = 3  # the length of the example sequences


@dataclass
class Ops:
    """A traced forward and backward: equations in order, and where each comes from."""

    graph: Graph  # the joint graph: forward, then backward
    forward: list[Eqn]
    backward: list[Eqn]
    layer_of: dict[int, str]  # id(eqn) -> the path of the layer that made it ("" : the model's own)
    input_names: dict[int, str] = field(default_factory=dict)  # id(var) -> "linear_0/W", "x"
    output_names: list[str] = field(default_factory=list)
    example: str = ""  # the input the trace ran on, in words


def _example(t: Any, batch: int = 1) -> Any:
    """Zeros of type ``t`` for a batch of ``batch``."""
    if isinstance(t, TupleType):
        return tuple(_example(i, batch) for i in t.items)
    time: tuple[int, ...] = ()
    while isinstance(t, SeqType):
        time, t = time + (STEPS,), t.item
    if not isinstance(t, ArrayType):
        return np.zeros((batch,) + time + (1,), np.float32)  # any type: one number per step
    if t.is_index:
        return np.zeros((batch,) + time, np.int64)
    return np.zeros((batch,) + time + tuple(int(d) for d in t.dims), np.float32)


def _known(t: Any) -> bool:
    """Whether an example of ``t`` has a known shape (a class index's count needs not be known:
    ``padded``'s lengths are ``Index[t + 1]``, ``t`` the sequences' length)."""
    if isinstance(t, TupleType):
        return all(_known(i) for i in t.items)
    if isinstance(t, SeqType):
        return _known(t.item)
    return isinstance(t, ArrayType) and (t.is_index or is_concrete(t))


def _trace_of(tree: Any) -> Trace | None:
    for leaf in tree_leaves(tree):
        if type(leaf) is Tracer:
            return leaf.trace
    return None


Span = tuple[Trace, int, int, int, str]  # trace, first equation, end, depth, layer path


def _instrumented(model: Model, path: str, depth: int, spans: list[Span]) -> Model:
    """``model`` with every layer's forward noting which equations it added to the trace."""
    children = tuple(
        _instrumented(c, child_path(model, path, i), depth + 1, spans) for i, c in enumerate(model.children)
    )
    original = model.forward

    def forward(m: Model, params: Any, x: Any, *rest: Any) -> Any:
        trace = _trace_of((params, x, rest))
        start = len(trace.eqns) if trace is not None else 0
        try:
            return original(m, params, x, *rest)
        except NNCError as err:
            if not isinstance(err, TraceError) or str(err).startswith("cannot trace the primitives"):
                raise  # it names the layer already
            raise TraceError(
                f"cannot trace the primitives of {path or 'the model'} ({model!r}"
                f"{created_at_note(model)}): {err}"
            ) from None
        except Exception as err:  # a Python callback that cannot be traced: say which layer
            raise TraceError(
                f"cannot trace the primitives of {path or 'the model'} ({model!r}"
                f"{created_at_note(model)}): {type(err).__name__}: {err}\n"
                "  hint: write it with nnc operations so that it can be traced, or draw it "
                "without --ops"
            ) from None
        finally:
            if trace is not None:
                spans.append((trace, start, len(trace.eqns), depth, path))

    return replace(model, forward=forward, children=children)


class _Counted(list):
    """The equations of a graph, noting as each is visited which equations the visit added
    to ``trace``: how the engine's replay and sweep are followed without changing them."""

    def __init__(self, eqns: list[Eqn], trace: Trace, marks: list[tuple[int, int, Eqn]]) -> None:
        super().__init__(eqns)
        self.trace, self.marks = trace, marks

    def _follow(self, order: Iterator[Eqn]) -> Iterator[Eqn]:
        for eqn in order:
            start = len(self.trace.eqns)
            yield eqn
            self.marks.append((start, len(self.trace.eqns), eqn))

    def __iter__(self) -> Iterator[Eqn]:
        return self._follow(list.__iter__(self))

    def __reversed__(self) -> Iterator[Eqn]:
        return self._follow(list.__reversed__(self))


def trace_ops(model: Model) -> Ops:
    """Trace ``sum(model(params, x))`` and its gradient with respect to the parameters and ``x``."""
    if not isinstance(model, Model):
        raise TypeError(f"trace_ops traces nnc models, got {type(model).__name__}")
    types = [model.in_type] + ([model.state_type] if model.state_type is not None else [])
    unknown = [show([t])[0] for t in types if not _known(t)]
    if unknown:
        raise TraceError(
            f"cannot trace the primitives of {model!r}{created_at_note(model)}: they can only be "
            f"traced for known sizes, and its input type is {unknown[0]}\n"
            "  hint: start the model with nnc.Input(Vec[n]) to fix its input size"
        )
    spans: list[Span] = []
    watched = _instrumented(model, "", 0, spans)
    params = model.init(seed=0)
    # batch statistics need two examples: with one, BatchNorm refuses to normalise
    batch = 2 if model.keeps_stats else 1
    x = _example(model.in_type, batch)
    state = None if model.state_type is None else _example(model.state_type, batch)

    def loss(p: Any, x: Any, s: Any) -> Any:
        if model.state_type is not None:
            out = watched(p, x, s)
        else:
            key = nnc_key(0) if model.is_random else None
            stats = model.init_stats() if model.keeps_stats else None
            out = watched(p, x, key=key, stats=stats)
        sums = [leaf.sum() for leaf in tree_leaves(out) if type(leaf) is Tracer and leaf.dtype.kind == "f"]
        if not sums:
            raise TraceError(
                f"cannot trace the primitives of {model!r}{created_at_note(model)}: it computes no "
                "floating-point output to differentiate"
            )
        total = sums[0]
        for more in sums[1:]:
            total = total + more
        return total

    sig, values = call_signature((params, x, state))
    fwd, _ = trace_call(loss, sig, values)
    forward_trace = next((s[0] for s in sorted(spans, key=lambda s: s[3]) if s[3] == 0), None)
    made_by: dict[int, str] = {}
    if forward_trace is not None:
        labels = [""] * len(forward_trace.eqns)
        for _, start, end, _, path in sorted(
            (s for s in spans if s[0] is forward_trace), key=lambda s: (s[1], s[3])
        ):
            labels[start:end] = [path] * (end - start)
        made_by = {id(e): p for e, p in zip(forward_trace.eqns, labels)}
    wrt = [k for k, v in enumerate(values) if np.asarray(v).dtype.kind == "f"]
    box: dict[str, Any] = {}

    def joint(tracers: list) -> list:
        trace = tracers[0].trace
        path = gradient_path(fwd, wrt)
        env = {id(v): t for v, t in zip(fwd.inputs, tracers)}
        fmarks: list = []
        residuals = replay_forward(
            Graph(fwd.inputs, _Counted(fwd.eqns, trace, fmarks), fwd.outputs), env, path, {}
        )
        box["split"] = len(trace.eqns)
        bmarks: list = []
        cts = reverse_sweep(
            Graph(fwd.inputs, _Counted(fwd.eqns, trace, bmarks), fwd.outputs),
            env,
            residuals,
            path,
            [np.ones((), fwd.outputs[0].dtype)],
        )
        box.update(trace=trace, marks=fmarks + bmarks)
        outs = [env[id(v)] if type(v) is not Const else v.value for v in fwd.outputs]
        return outs + [
            cts.get(id(fwd.inputs[k]), np.zeros(fwd.inputs[k].shape, fwd.inputs[k].dtype)) for k in wrt
        ]

    graph = trace_graph(joint, [(tuple(np.shape(v)), np.asarray(v).dtype) for v in values])
    trace: Trace = box["trace"]
    index = {id(e): i for i, e in enumerate(trace.eqns)}
    layer_of: dict[int, str] = {}
    for start, end, source in box["marks"]:
        for e in trace.eqns[start:end]:
            layer_of[id(e)] = made_by.get(id(source), "")
    split = box["split"]
    forward = [e for e in graph.eqns if index.get(id(e), 0) < split]
    backward = [e for e in graph.eqns if index.get(id(e), 0) >= split]
    names = [p for p, _ in tree_paths(params)] + [p for p, _ in tree_paths(x, "x")]
    names += [p for p, _ in tree_paths(state, "state")] if state is not None else []
    input_names = {id(v): n for v, n in zip(graph.inputs, names)}
    output_names = ["sum of outputs"] + [f"∂ {names[k]}" for k in wrt]
    shape = tuple(np.shape(x)) if not isinstance(x, tuple) else tuple(np.shape(i) for i in x)
    return Ops(graph, forward, backward, layer_of, input_names, output_names, f"x: zeros of shape {shape}")


def _shape(v: Var | Const) -> str:
    return f"{v.dtype.name}[{', '.join(map(str, v.shape))}]"


def _label(eqn: Eqn) -> str:
    outs = ", ".join(_shape(v) for v in eqn.outs)
    return f"<B>{text(eqn.prim.name)}</B><BR/>" + f'<FONT POINT-SIZE="{FONT_SMALL}">{text(outs)}</FONT>'


def ops_to_dot(model: Model, rankdir: str = "TB", trace: Callable[[Model], Ops] = trace_ops) -> str:
    """The Graphviz source of the primitives of ``model``'s forward and backward passes."""
    ops = trace(model)
    ids: dict[int, str] = {}
    lines = [
        "digraph ops {",
        f'  graph [rankdir={rankdir}, fontname="{FONT}", fontsize={FONT_NODE}, nodesep=0.25, ranksep=0.3, '
        f"newrank=true, labelloc=t, label=<{text('primitives of sum(model(params, x)) and its gradient; ' + ops.example)}>]",
        f'  node [shape=box, style="rounded,filled", fontname="{FONT}", fontsize={FONT_NODE}, '
        'color="#4b5563", fillcolor="#f3f4f6", margin="0.1,0.04"]',
        f'  edge [fontname="{FONT}", fontsize={FONT_SMALL}, color="#4b5563", arrowsize=0.6]',
    ]
    for k, v in enumerate(ops.graph.inputs):
        ids[id(v)] = f"in{k}"
        name = ops.input_names.get(id(v), f"input {k}")
        lines.append(
            f'  in{k} [label=<{text(name)}<BR/><FONT POINT-SIZE="{FONT_SMALL}">{text(_shape(v))}</FONT>>, '
            f'shape=plain, style="", tooltip="{quoted(name)}"]'
        )
    counter = 0
    for title, eqns, fill, color in (
        ("forward", ops.forward, "#dbeafe", "#2563eb"),
        ("backward", ops.backward, "#dcfce7", "#15803d"),
    ):
        lines.append(f"  subgraph cluster_{title} {{")
        lines.append(
            f'    graph [label=<<B>{title}</B> · {len(eqns)} equations>, labeljust=l, style="rounded,bold", '
            f'color="{color}", fontcolor="{color}", fontsize={FONT_CLUSTER}]'
        )
        groups: dict[str, list[Eqn]] = {}
        for e in eqns:
            groups.setdefault(ops.layer_of.get(id(e), ""), []).append(e)
        for layer, members in groups.items():
            counter += 1
            indent = "    "
            if layer:
                lines.append(f"    subgraph cluster_{title}_{counter} {{")
                shown = ("∂ " if title == "backward" else "") + layer
                lines.append(
                    f'      graph [label=<{text(shown)}>, labeljust=l, style="rounded,dashed", '
                    f'color="#6b7280", fontcolor="#6b7280", fontsize={FONT_CLUSTER}, tooltip="{quoted(layer)}"]'
                )
                indent = "      "
            for e in members:
                counter += 1
                nid = f"e{counter}"
                for v in e.outs:
                    ids[id(v)] = nid
                tip = f"{e.prim.name} in {layer or 'the model'} ({title})"
                lines.append(
                    f'{indent}{nid} [label=<{_label(e)}>, fillcolor="{fill}", tooltip="{quoted(tip)}"]'
                )
            if layer:
                lines.append("    }")
        lines.append("  }")
    forward_values = {id(v) for e in ops.forward for v in e.outs} | {id(v) for v in ops.graph.inputs}
    backward_ids = {id(e) for e in ops.backward}
    edges = []
    for e in ops.forward + ops.backward:
        dst = ids[id(e.outs[0])]
        for read in e.inputs:
            if type(read) is Const or id(read) not in ids:
                continue
            if id(e) in backward_ids and id(read) in forward_values:
                edges.append(
                    f'  {ids[id(read)]} -> {dst} [style=dashed, color="{SAVED}", tooltip="saved for the backward"]'
                )
            else:
                edges.append(f"  {ids[id(read)]} -> {dst}")
    for k, result in enumerate(ops.graph.outputs):
        name = ops.output_names[k] if k < len(ops.output_names) else f"output {k}"
        if type(result) is Const:  # the gradient of a bias added last, say: the loss's ones, summed
            name += " (a constant)"
        lines.append(f'  out{k} [label=<{text(name)}>, shape=plain, style="", fontcolor="#15803d"]')
        if type(result) is not Const and id(result) in ids:
            edges.append(f"  {ids[id(result)]} -> out{k}")
    return "\n".join(lines + list(dict.fromkeys(edges)) + ["}", ""])
