"""A model as a Graphviz graph: one node per layer, the flowing type on each edge.

Combinators are drawn as clusters (``depth`` collapses the deeper ones into single
nodes), identical blocks repeated in a chain are drawn once with "× N", and a
recurrent cell (``state_type`` set) gets a loop edge labelled with its state type
instead of being unrolled. How a kind of model is drawn is looked up in a registry,
so a new combinator registers its drawing beside its definition:

>>> from nnc import Linear, tanh
>>> text = to_dot(Linear(2, 3) >> tanh)
>>> "Linear(2 -&gt; 3)" in text and "label=<Vec[3]>" in text
True
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .inspection import (
    TypeNames,
    all_types,
    child_path,
    is_inline,
    own_param_total,
    param_total,
    plain_description,
)
from .model import Model
from .show import describe
from .types import TupleType, array_type, show

FONT = "Helvetica,Arial,sans-serif"
RANKDIRS = ("TB", "LR", "BT", "RL")
SIDE_IN = {"TB": "n", "BT": "s", "LR": "w", "RL": "e"}  # where edges enter a node


@dataclass(frozen=True)
class Options:
    """What the picture shows; the names follow Keras' ``plot_model`` where they mean the same.

    ``depth``: how many levels of combinators are drawn as clusters (``None``: all; ``0``:
    the top-level chain only, each combinator one node). ``expand_nested=False`` is ``depth=0``.
    """

    rankdir: str = "TB"
    show_shapes: bool = True
    show_dtype: bool = False
    show_layer_names: bool = True
    expand_nested: bool = True
    depth: int | None = None
    collapse_repeats: bool = True
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.rankdir not in RANKDIRS:
            raise ValueError(f"rankdir must be one of {', '.join(RANKDIRS)}, got {self.rankdir!r}")
        if self.depth is not None and (not isinstance(self.depth, int) or self.depth < 0):
            raise ValueError(f"depth must be a non-negative int or None, got {self.depth!r}")
        object.__setattr__(self, "dtype", str(np.dtype(self.dtype)))

    @property
    def max_depth(self) -> int | None:
        return 0 if not self.expand_nested else self.depth


@dataclass(frozen=True)
class End:
    """Where a value leaves the drawing so far: a node and the type that flows out of it."""

    node: str
    type: Any


Flow = End | tuple  # a tuple of flows when the items of a tuple come from different nodes


# ----------------------------------------------------------------------------- the canvas


def text(s: str) -> str:
    """Escape text for a Graphviz HTML-like label (``<``, ``>``, ``&`` and line breaks)."""
    return html.escape(str(s), quote=False).replace("\n", "<BR/>")


def quoted(s: str) -> str:
    """Escape text for a double-quoted Graphviz string."""
    return str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def count_text(n: int | None) -> str:
    if n is None:
        return "? params"
    return f"{n:,} param" + ("" if n == 1 else "s")


class Canvas:
    """The graph being drawn. Nodes and clusters are written in order, edges after them all
    (an edge written inside a cluster would pull a not yet declared node into it)."""

    def __init__(self, model: Model, options: Options) -> None:
        self.options = options
        self.type_text = TypeNames(all_types(model))
        self.body: list[str] = []
        self.edges: list[str] = []
        self.indent = 1
        self._ids = 0
        self._clusters = 0
        self._keys: dict[int, tuple] = {}
        self.bases: list[str] = [""]
        self.lengths: list[Flow] = []  # the lengths of the padded(...) models being drawn

    def relative(self, path: str) -> str:
        """A path as shown inside the innermost cluster, whose title gives the rest."""
        base = self.bases[-1]
        return path[len(base) + 1 :] if base and path.startswith(base + "/") else path

    # -- writing
    def _line(self, s: str) -> None:
        self.body.append("  " * self.indent + s)

    def node(self, rows: list[str], *, fill: str = "#f3f4f6", extra: str = "", ports: int = 0) -> str:
        """A node whose label is ``rows`` (HTML-like, already escaped); returns its id.

        With ``ports`` > 1 the node has that many input ports, ``i0`` ... in order along its
        incoming side, so that the items of a tuple arrive in order (and their edges do not cross)."""
        self._ids += 1
        nid = f"n{self._ids}"
        label = "<BR/>".join(rows)
        if ports > 1:
            label = _with_ports(label, ports, self.options.rankdir)
        self._line(f'{nid} [label=<{label}>, fillcolor="{fill}"{extra}]')
        return nid

    def terminal(self, nid: str, label: str) -> str:
        self._line(f'{nid} [label=<{text(label)}>, shape=plain, style="", fontcolor="#6b7280"]')
        return nid

    def edge(self, src: str, dst: str, label_type: Any = None, extra: str = "") -> None:
        attrs = []
        if label_type is not None and self.options.show_shapes:
            label = self.type_text(label_type)
            if self.options.show_dtype:
                label += f" {self.options.dtype}"
            attrs.append(f"label=<{text(label)}>")
        if extra:
            attrs.append(extra)
        self.edges.append(f"{src} -> {dst}" + (f" [{', '.join(attrs)}]" if attrs else ""))

    def connect(
        self, flow: Flow, dst: str, extra: str = "", labelled: bool = True, ports: bool = False
    ) -> None:
        """Edges from every end of ``flow`` into node ``dst`` (into its ports, one each, if asked)."""
        side = SIDE_IN[self.options.rankdir]
        for i, end in enumerate(ends(flow)):
            self.edge(end.node, f"{dst}:i{i}:{side}" if ports else dst, end.type if labelled else None, extra)

    def loop(self, src: str, dst: str, state_type: Any) -> None:
        """The recurrent state edge, drawn back instead of unrolled."""
        label = "state" + (f": {self.type_text(state_type)}" if self.options.show_shapes else "")
        self.edges.append(
            f'{src} -> {dst} [label=<{text(label)}>, style=dashed, color="#b45309", '
            f'fontcolor="#b45309", constraint=false]'
        )

    def cluster(
        self, title: str, *, path: str | None = None, style: str = "rounded,dashed", color: str = "#6b7280"
    ) -> _Cluster:
        """A cluster; nodes inside show their paths relative to ``path`` (if given)."""
        self._clusters += 1
        return _Cluster(
            self, f"cluster_{self._clusters}", title, style, color, self.bases[-1] if path is None else path
        )

    # -- layers
    def layer(self, model: Model, path: str, *, collapsed: bool = False, ports: int = 0) -> str:
        """One node for ``model``: its name, description, type and parameter count."""
        o = self.options
        rows = []
        description = plain_description(model)
        last = path.rsplit("/", 1)[-1]
        shown = self.relative(path)
        if o.show_layer_names and shown:
            rows.append(f"<B>{text(shown)}</B>")
        if not (o.show_layer_names and re.sub(r"_\d+$", "", last) == description):
            rows.append(text(_shorten(description)))
        n = param_total(model) if collapsed else own_param_total(model)
        if n != 0:
            rows.append(_small(count_text(n)))
        effect = _effect_text(model)
        if effect:
            rows.append(_small(text(effect)))
        fill = "#fde7c2" if model.state_type is not None else "#dbeafe" if n != 0 else "#f3f4f6"
        if effect and n == 0:
            fill = "#ede9fe"  # a layer whose effects are its news (dropout) stands out from activations
        extra = f', tooltip="{quoted(path or description)}"' + (", peripheries=2" if collapsed else "")
        return self.node(rows, fill=fill, extra=extra, ports=ports)

    def key(self, model: Model) -> tuple:
        """What makes two blocks identical: same kind, description, types, parameters, children."""
        k = self._keys.get(id(model))
        if k is None:
            k = (
                model.kind,
                model.name,
                describe(model),
                repr(model.in_type),
                repr(model.out_type),
                repr(model.state_type),
                tuple((k, _value_key(v)) for k, v in model.attrs),
                tuple((name, repr(tuple(spec.shape))) for name, spec in model.param_specs),
                tuple(self.key(c) for c in model.children),
            )
            self._keys[id(model)] = k
        return k

    def source(self, name: str = "model") -> str:
        o = self.options
        head = [
            f"digraph {name} {{",
            f'  graph [rankdir={o.rankdir}, fontname="{FONT}", fontsize=11, nodesep=0.3, '
            "ranksep=0.35, newrank=true]",
            f'  node [shape=box, style="rounded,filled", fontname="{FONT}", fontsize=11, '
            'color="#4b5563", margin="0.14,0.06"]',
            f'  edge [fontname="{FONT}", fontsize=9, color="#4b5563", fontcolor="#374151", arrowsize=0.7]',
        ]
        return "\n".join(head + self.body + ["  " + e for e in self.edges] + ["}", ""])


class _Cluster:
    def __init__(self, canvas: Canvas, cid: str, title: str, style: str, color: str, base: str) -> None:
        self.canvas, self.cid, self.title, self.style, self.color = canvas, cid, title, style, color
        self.base = base

    def __enter__(self) -> _Cluster:
        c = self.canvas
        c._line(f"subgraph {self.cid} {{")
        c.indent += 1
        c.bases.append(self.base)
        c._line(
            f'graph [label=<{self.title}>, labeljust=l, style="{self.style}", '
            f'color="{self.color}", fontcolor="{self.color}", fontsize=10]'
        )
        return self

    def __exit__(self, *exc: Any) -> None:
        self.canvas.indent -= 1
        self.canvas.bases.pop()
        self.canvas._line("}")


def _value_key(v: Any) -> Any:
    """An attribute compared by value (an array's repr elides the middle of big arrays)."""
    if isinstance(v, np.ndarray):
        return ("array", v.shape, v.dtype.str, v.tobytes())
    if isinstance(v, tuple):
        return tuple(_value_key(x) for x in v)
    return repr(v)


def _with_ports(label: str, n: int, rankdir: str) -> str:
    """``label`` in a table with ``n`` empty port cells along the side where edges arrive."""
    ports = [f'<TD PORT="i{i}" WIDTH="1" HEIGHT="1"></TD>' for i in range(n)]
    table = '<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="0">{}</TABLE>'
    if rankdir in ("TB", "BT"):
        rows = [f"<TR>{''.join(ports)}</TR>", f'<TR><TD COLSPAN="{n}">{label}</TD></TR>']
        return table.format("".join(rows if rankdir == "TB" else rows[::-1]))
    body = f'<TD ROWSPAN="{n}">{label}</TD>'
    first = ports[0] + body if rankdir == "LR" else body + ports[0]
    return table.format(f"<TR>{first}</TR>" + "".join(f"<TR>{p}</TR>" for p in ports[1:]))


def _small(s: str) -> str:
    return f'<FONT POINT-SIZE="9" COLOR="#4b5563">{text(s)}</FONT>'


def _shorten(s: str, width: int = 48) -> str:
    return s if len(s) <= width else s[: width - 1] + "…"


def ends(flow: Flow) -> list[End]:
    if isinstance(flow, End):
        return [flow]
    return [e for f in flow for e in ends(f)]


def split(flow: Flow, n: int) -> list[Flow]:
    """The ``n`` items of a tuple-typed flow, each with its own type."""
    if isinstance(flow, tuple) and len(flow) == n:
        return list(flow)
    if isinstance(flow, End) and isinstance(flow.type, TupleType) and len(flow.type.items) == n:
        return [End(flow.node, t) for t in flow.type.items]
    return [flow] * n


def relabel(flow: Flow, t: Any) -> Flow:
    """The same ends, carrying the type ``t`` that the enclosing model says flows out."""
    if isinstance(flow, End):
        return End(flow.node, t)
    if isinstance(t, TupleType) and len(t.items) == len(flow):
        return tuple(relabel(f, ti) for f, ti in zip(flow, t.items))
    return flow


# ----------------------------------------------------------------------------- drawing by kind

Drawer = Callable[[Canvas, Model, str, Flow, int], Flow]
DRAWERS: dict[str, Drawer] = {}


def drawer(kind: str) -> Callable[[Drawer], Drawer]:
    """Register how models of ``kind`` are drawn.

    The drawer gets the canvas, the model, its path (``encoder/linear_0``), the flow that
    reaches its input and its depth in clusters, draws nodes and edges, and returns the flow
    that leaves it. It draws its children with :func:`draw` (``depth + 1`` inside a cluster).
    """

    def register(fn: Drawer) -> Drawer:
        DRAWERS[kind] = fn
        return fn

    return register


def draw(canvas: Canvas, model: Model, path: str, flow: Flow, depth: int) -> Flow:
    """Draw ``model`` fed by ``flow``; returns the flow of its output."""
    limit = canvas.options.max_depth
    if model.children and not is_inline(model) and limit is not None and depth >= limit:
        return _collapsed(canvas, model, path, flow)
    return DRAWERS.get(model.kind, _default)(canvas, model, path, flow, depth)


def _title(canvas: Canvas, model: Model, path: str, *kinds: str) -> str:
    """A cluster's title: its path, its kinds (unless the path says it) and its parameters."""
    shown = canvas.relative(path)
    parts = [f"<B>{text(shown)}</B>"] if shown and canvas.options.show_layer_names else []
    parts.extend(text(k) for k in kinds if re.sub(r"_\d+$", "", path.rsplit("/", 1)[-1]) != k)
    parts.extend(text(own) for own in _own_parameters(model))
    n = param_total(model)
    if n:
        parts.append(text(count_text(n)))
    return " · ".join(parts)


def _effect_text(model: Model) -> str:
    """What a layer does besides computing, on its node: the rate it draws with, the statistics
    it keeps and their momentum, or that it is in its inference form."""
    if model.kind == "Dropout":
        return (
            "identity (inference)"
            if model.attr("inference")
            else f"drops {model.attr('rate'):g} (random, key)"
        )
    if model.effects is not None and model.effects.stat_specs:
        if model.attr("inference"):
            return "on running statistics (inference)"
        return f"keeps statistics, momentum {model.attr('momentum'):g}"
    return ""


def _own_parameters(model: Model) -> list[str]:
    """Parameters a wrapper holds itself (learned_state's initial state), e.g. ``initial_state: Vec[30]``."""
    out: list[str] = []
    while True:
        out.extend(f"{name}: {show([array_type(spec.shape)])[0]}" for name, spec in model.param_specs)
        if not model.transparent or not model.children:
            return out
        model = model.children[0]


def _leaf(canvas: Canvas, model: Model, path: str, flow: Flow, collapsed: bool = False) -> Flow:
    """One node for ``model``, with a port for each item when a tuple arrives from several nodes."""
    arriving = len(ends(flow))
    node = canvas.layer(model, path, collapsed=collapsed, ports=arriving)
    canvas.connect(flow, node, ports=arriving > 1)
    if model.kind == "SelfAttention" and canvas.lengths:
        for end in ends(canvas.lengths[-1]):
            canvas.edge(
                end.node, node, extra='label=<lengths>, style=dashed, color="#7c3aed", fontcolor="#7c3aed"'
            )
    if model.state_type is not None:
        canvas.loop(node, node, model.state_type)
    return End(node, model.out_type)


def _has_cell(model: Model) -> bool:
    return any(c.state_type is not None or _has_cell(c) for c in model.children)


def _default(canvas: Canvas, model: Model, path: str, flow: Flow, depth: int) -> Flow:
    """Leaves are nodes; a wrapper with one child is a cluster around it; any other kind
    nnc does not know how to draw is one node."""
    if not model.children:
        return _leaf(canvas, model, path, flow)
    if len(model.children) > 1:
        return _collapsed(canvas, model, path, flow)
    # wrappers around wrappers (zero_state(unroll_last(...))) share one cluster
    chain, inner_path = [model], path
    while _is_wrapper(chain[-1].children[0]):
        inner_path = child_path(chain[-1], inner_path, 0)
        chain.append(chain[-1].children[0])
    inner = chain[-1]
    with canvas.cluster(
        _title(canvas, model, path, *(m.kind for m in chain)), path=_sole_child_base(inner, inner_path)
    ):
        mark = canvas._ids
        out = draw(canvas, inner.children[0], child_path(inner, inner_path, 0), flow, depth + 1)
        state = next((m.state_type for m in reversed(chain) if m.state_type is not None), None)
        if state is not None and not _has_cell(inner):
            canvas.loop(ends(out)[-1].node, f"n{mark + 1}", state)
    return relabel(out, model.out_type)


def _sole_child_base(model: Model, path: str) -> str:
    """Inside a cluster around one chain, show paths relative to that chain: the chain's own
    key (``serial_0``) tells nothing there, as it has no siblings."""
    child = model.children[0]
    return child_path(model, path, 0) if is_inline(child) else path


def _is_wrapper(model: Model) -> bool:
    return len(model.children) == 1 and model.kind not in DRAWERS and model.name is None


def _collapsed(canvas: Canvas, model: Model, path: str, flow: Flow) -> Flow:
    return _leaf(canvas, model, path, flow, collapsed=True)


def repeats(keys: list) -> list[tuple[int, int, int]]:
    """Split a chain into runs ``(start, period, count)``: the longest stretch of a block repeated
    back to back, preferring the shortest block; ``count`` 1 where nothing repeats.

    >>> repeats(["in", "L", "t", "L", "t", "L", "t", "out"])
    [(0, 1, 1), (1, 2, 3), (7, 1, 1)]
    """
    n, i, out = len(keys), 0, []
    while i < n:
        best = (1, 1)
        for k in range(1, (n - i) // 2 + 1):
            if keys[i + k] != keys[i]:
                continue  # no repeat of this length starts here
            r = 1
            while i + (r + 1) * k <= n and keys[i + r * k : i + (r + 1) * k] == keys[i : i + k]:
                r += 1
            if r > 1 and k * r > best[0] * best[1]:
                best = (k, r)
        out.append((i, best[0], best[1]))
        i += best[0] * best[1]
    return out


@drawer("serial")
def _serial(canvas: Canvas, model: Model, path: str, flow: Flow, depth: int) -> Flow:
    if model.name is not None:
        with canvas.cluster(_title(canvas, model, path, "serial"), path=path, color="#374151"):
            return _chain(canvas, model, path, flow, depth + 1)
    return _chain(canvas, model, path, flow, depth)


def _chain(canvas: Canvas, model: Model, path: str, flow: Flow, depth: int) -> Flow:
    children = model.children
    runs = (
        repeats([canvas.key(c) for c in children])
        if canvas.options.collapse_repeats
        else [(i, 1, 1) for i in range(len(children))]
    )
    for start, period, count in runs:
        block = range(start, start + period)
        if count == 1:
            for i in block:
                flow = draw(canvas, children[i], child_path(model, path, i), flow, depth)
            continue
        first, last = child_path(model, path, start), child_path(model, path, start + period * count - 1)
        each = sum(param_total(children[i]) or 0 for i in block)
        title = f"<B>× {count}</B>"
        if canvas.options.show_layer_names:
            title += f"  {text(canvas.relative(first))} … {text(canvas.relative(last))}"
        if each:
            title += f" · {text(count_text(each * count))} in all"
        with canvas.cluster(title, style="rounded,bold", color="#2563eb"):
            for i in block:
                flow = draw(canvas, children[i], child_path(model, path, i), flow, depth)
    return flow


@drawer("Input")
def _input(canvas: Canvas, model: Model, path: str, flow: Flow, depth: int) -> Flow:
    """The identity that declares a type: its type shows on the edge, it needs no node."""
    return relabel(flow, model.out_type)


@drawer("parallel")
def _parallel(canvas: Canvas, model: Model, path: str, flow: Flow, depth: int) -> Flow:
    items = split(flow, len(model.children))
    with canvas.cluster(_title(canvas, model, path, "parallel"), path=path):
        return _branches(canvas, model, path, items, depth + 1)


@drawer("fanout")
def _fanout(canvas: Canvas, model: Model, path: str, flow: Flow, depth: int) -> Flow:
    with canvas.cluster(_title(canvas, model, path, "fanout"), path=path):
        return _branches(canvas, model, path, [flow] * len(model.children), depth + 1)


def _branches(canvas: Canvas, model: Model, path: str, flows: list, depth: int) -> tuple:
    """The children of a parallel or fanout side by side, in order: each in an invisible cluster
    that keeps it in one column, their first nodes on one rank, left to right."""
    outs, heads = [], []
    for i, (child, flow) in enumerate(zip(model.children, flows)):
        first = canvas._ids + 1
        with canvas.cluster("", style="invis"):
            outs.append(draw(canvas, child, child_path(model, path, i), flow, depth))
        if canvas._ids >= first:
            heads.append(f"n{first}")
    if len(heads) > 1:
        canvas.edges.append(f"{{rank=same; {' -> '.join(heads)} [style=invis]}}")
    return tuple(outs)


@drawer("residual")
def _residual(canvas: Canvas, model: Model, path: str, flow: Flow, depth: int) -> Flow:
    with canvas.cluster(_title(canvas, model, path, "residual"), path=_sole_child_base(model, path)):
        out = draw(canvas, model.children[0], child_path(model, path, 0), flow, depth + 1)
        plus = canvas.node(["+"], fill="#ffffff", extra=", shape=circle, width=0.3, margin=0")
    canvas.connect(out, plus)
    canvas.connect(flow, plus, extra="style=dashed", labelled=False)  # its type is on the way in
    return End(plus, model.out_type)


@drawer("each")
def _each(canvas: Canvas, model: Model, path: str, flow: Flow, depth: int) -> Flow:
    """A model run at every step is drawn as the model itself: the edges' types say Seq."""
    out = draw(canvas, model.children[0], child_path(model, path, 0), flow, depth)
    return relabel(out, model.out_type)


@drawer("padded")
def _padded(canvas: Canvas, model: Model, path: str, flow: Flow, depth: int) -> Flow:
    """``padded(model)``: a cluster around the model; the sequences flow into it and the lengths
    reach each attention layer by a dashed edge (they mask its keys)."""
    sequences, lengths = split(flow, 2)
    canvas.lengths.append(lengths)
    with canvas.cluster(_title(canvas, model, path, "padded"), path=_sole_child_base(model, path)):
        out = draw(canvas, model.children[0], child_path(model, path, 0), sequences, depth + 1)
    canvas.lengths.pop()
    return relabel(out, model.out_type)


@drawer("repeat")
def _repeat(canvas: Canvas, model: Model, path: str, flow: Flow, depth: int) -> Flow:
    """``repeat(block, n)``: one cluster marked ``× n`` around one copy of the block."""
    block = model.children[0]
    title = f"<B>× {model.attr('times')}</B>"
    shown = canvas.relative(path)
    if shown and canvas.options.show_layer_names:
        title += f"  {text(shown)}"
    total = param_total(model)
    if total:
        title += f" · {text(count_text(total))} in all"
    with canvas.cluster(title, style="rounded,bold", color="#2563eb"):
        out = draw(canvas, replace(block, name=None), child_path(model, path, 0), flow, depth + 1)
    return relabel(out, model.out_type)


# ----------------------------------------------------------------------------- the whole picture


def to_dot(model: Model, options: Options | None = None, **kwargs: Any) -> str:
    """The Graphviz source of ``model``'s picture (needs no Graphviz program).

    Keyword arguments are :class:`Options` fields: ``rankdir``, ``show_shapes``,
    ``show_dtype``, ``show_layer_names``, ``expand_nested``, ``depth``, ``collapse_repeats``.

    >>> from nnc import Linear, relu
    >>> print(to_dot(Linear(2, 3, name="a<b&c") >> relu, show_shapes=False).splitlines()[4])
      input [label=<input>, shape=plain, style="", fontcolor="#6b7280"]
    >>> "a&lt;b&amp;c" in to_dot(Linear(2, 3, name="a<b&c") >> relu)
    True
    """
    if not isinstance(model, Model):
        raise TypeError(f"to_dot draws nnc models, got {type(model).__name__}")
    options = replace(options, **kwargs) if options is not None else Options(**kwargs)
    canvas = Canvas(model, options)
    canvas.terminal("input", "input")
    out = draw(canvas, model, "", End("input", model.in_type), 0)
    canvas.connect(relabel(out, model.out_type), canvas.terminal("output", "output"))
    return canvas.source()
