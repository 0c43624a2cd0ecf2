"""A model as a Graphviz graph: one node per layer, the flowing type on each edge.

Combinators are drawn as clusters (``depth`` collapses the deeper ones into single
nodes), identical blocks repeated in a chain are drawn once with "× N", and a
recurrent cell (``state_type`` set) gets a loop edge labelled with its state type
instead of being unrolled. Each node is named by the shortest tail of its path that no
other name in the picture shares, so names are unique and found in ``nnc summary``; its
tooltip holds the full path and the parameters' shapes. How a kind of model is drawn is
looked up in a registry, so a new combinator registers its drawing beside its definition:

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
from .types import ArrayType, SeqType, TupleType, array_type, show

FONT = "Helvetica,Arial,sans-serif"
# Points; Graphviz draws 72 of them to the inch, so at 96 dpi the smallest text (edge labels,
# counts) is 10 pt = 13 px, the size below which people squint.
FONT_NODE, FONT_CLUSTER, FONT_SMALL = 12, 11, 10
NAME = "\x01"  # around a path's index in labels: its shortest unique suffix is known only at the end
TITLE = "\x02"  # the same in a cluster's title, where it is left out if a node in it has that path
RANKDIRS = ("TB", "LR", "BT", "RL")
SIDE_IN = {"TB": "n", "BT": "s", "LR": "w", "RL": "e"}  # where edges enter a node


@dataclass(frozen=True)
class Options:
    """What the picture shows; the names follow Keras' ``plot_model`` where they mean the same.

    ``depth``: how many levels of combinators are drawn as clusters (``None``: all; ``0``:
    the top-level chain only, each combinator one node). ``expand_nested=False`` is ``depth=0``.
    ``show_batch``: edges show array shapes with the batch axis as Keras does, ``(None, 64)``.
    """

    rankdir: str = "TB"
    show_shapes: bool = True
    show_dtype: bool = False
    show_layer_names: bool = True
    expand_nested: bool = True
    depth: int | None = None
    collapse_repeats: bool = True
    dtype: str = "float32"
    show_batch: bool = False

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
        self.paths: list[str] = []  # the paths named in the picture, by their index in labels
        self.node_paths: set[str] = set()
        self.forks: set[str] = set()  # split points: the edges out of them carry no type

    def relative(self, path: str) -> str:
        """A path as drawn: a placeholder that :meth:`source` replaces by its shortest suffix
        that no other path in the picture shares."""
        if not path:
            return ""
        self.paths.append(path)
        return f"{NAME}{len(self.paths) - 1}{NAME}"

    def type_label(self, t: Any) -> str:
        """The text on an edge: the type, or with ``show_batch`` the batch's shape, ``(None, 64)``."""
        label = batch_shape(t, self.type_text) if self.options.show_batch else self.type_text(t)
        if self.options.show_dtype:
            label += f" {self.options.dtype}"
        return label

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

    def edge(
        self, src: str, dst: str, label_type: Any = None, extra: str = "", force_label: bool = False
    ) -> None:
        """An edge labelled with ``label_type``; edges out of a split point are not, unless
        forced (a skip edge), since the type is on the edge just before it."""
        attrs = []
        if label_type is not None and self.options.show_shapes and (force_label or src not in self.forks):
            attrs.append(f"label=<{text(self.type_label(label_type))}>")
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
        label = "state" + (f": {self.type_label(state_type)}" if self.options.show_shapes else "")
        self.edges.append(
            f'{src} -> {dst} [label=<{text(label)}>, style=dashed, color="#b45309", '
            f'fontcolor="#b45309", constraint=false]'
        )

    def fork(self) -> str:
        """A point where a value splits in two (a residual's body and its skip edge)."""
        self._ids += 1
        nid = f"n{self._ids}"
        self._line(f'{nid} [shape=point, width=0.06, label="", color="#4b5563"]')
        self.forks.add(nid)
        return nid

    def cluster(
        self,
        title: str,
        *,
        path: str | None = None,
        style: str = "rounded,dashed",
        color: str = "#6b7280",
        tooltip: str = "",
    ) -> _Cluster:
        """A cluster titled ``title``; ``tooltip`` is what hovering its title shows (in SVG)."""
        self._clusters += 1
        return _Cluster(
            self,
            f"cluster_{self._clusters}",
            title,
            style,
            color,
            self.bases[-1] if path is None else path,
            tooltip,
        )

    # -- layers
    def layer(self, model: Model, path: str, *, collapsed: bool = False, ports: int = 0) -> str:
        """One node for ``model``: its name, description, type and parameter count."""
        o = self.options
        rows = []
        description = plain_description(model)
        last = path.rsplit("/", 1)[-1]
        if o.show_layer_names and path:
            rows.append(f"<B>{self.relative(path)}</B>")
            self.node_paths.add(path)
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
        tip = "\n".join([path or description] + parameter_shapes(model))
        extra = f', tooltip="{quoted(tip)}"' + (", peripheries=2" if collapsed else "")
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

    def names(self) -> list[str]:
        """The name drawn for each path of :attr:`paths`: its shortest unique suffix."""
        short = unique_suffixes(sorted(set(self.paths)))
        return [short[p] for p in self.paths]

    def source(self, name: str = "model") -> str:
        o = self.options
        head = [
            f"digraph {name} {{",
            f'  graph [rankdir={o.rankdir}, fontname="{FONT}", fontsize={FONT_NODE}, nodesep=0.3, '
            "ranksep=0.35, newrank=true]",
            f'  node [shape=box, style="rounded,filled", fontname="{FONT}", fontsize={FONT_NODE}, '
            'color="#4b5563", margin="0.14,0.06"]',
            f'  edge [fontname="{FONT}", fontsize={FONT_SMALL}, color="#4b5563", fontcolor="#374151", '
            "arrowsize=0.7]",
        ]
        names = self.names()
        body = "\n".join(head + self.body + ["  " + e for e in self.edges] + ["}", ""])

        def title(m: re.Match) -> str:
            i = int(m.group(1))
            return "" if self.paths[i] in self.node_paths else f"<B>{text(names[i])}</B>{m.group(2)}"

        body = re.sub(f"{TITLE}(\\d+){TITLE}((?: · )?)", title, body)
        return re.sub(f"{NAME}(\\d+){NAME}", lambda m: text(names[int(m.group(1))]), body)

    def title_name(self, path: str) -> str:
        """A cluster's name in its title (left out where a node inside has the same path)."""
        if not path or not self.options.show_layer_names:
            return ""
        self.paths.append(path)
        return f"{TITLE}{len(self.paths) - 1}{TITLE}"


class _Cluster:
    def __init__(
        self, canvas: Canvas, cid: str, title: str, style: str, color: str, base: str, tooltip: str
    ) -> None:
        self.canvas, self.cid, self.title, self.style, self.color = canvas, cid, title, style, color
        self.base, self.tooltip = base, tooltip

    def __enter__(self) -> _Cluster:
        c = self.canvas
        c._line(f"subgraph {self.cid} {{")
        c.indent += 1
        c.bases.append(self.base)
        tip = f', tooltip="{quoted(self.tooltip)}"' if self.tooltip else ""
        c._line(
            f'graph [label=<{self.title}>, labeljust=l, style="{self.style}", '
            f'color="{self.color}", fontcolor="{self.color}", fontsize={FONT_CLUSTER}{tip}]'
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
    return f'<FONT POINT-SIZE="{FONT_SMALL}" COLOR="#4b5563">{text(s)}</FONT>'


def unique_suffixes(paths: list[str]) -> dict[str, str]:
    """Each path's shortest tail of ``/``-separated parts that no other path ends with.

    Names stay as short as the picture allows and are always a tail of the path that
    ``nnc summary`` and the parameters use, so they can be looked up there.

    >>> unique_suffixes(["linear_0", "residual_0/serial_0/linear_0", "residual_0/serial_0/relu_0"])
    {'linear_0': 'linear_0', 'residual_0/serial_0/linear_0': 'serial_0/linear_0', \
'residual_0/serial_0/relu_0': 'relu_0'}
    """
    parts = {p: p.split("/") for p in paths}
    out = {}
    for p, mine in parts.items():
        for k in range(1, len(mine) + 1):
            tail = mine[-k:]
            if not any(other[-k:] == tail for q, other in parts.items() if q != p):
                break
        out[p] = "/".join(mine[-k:])
    return out


def batch_shape(t: Any, names: Callable[[Any], str]) -> str:
    """A type as the shape of a batch, Keras' way: ``(None, 64)``; a sequence's length is
    ``None`` too, a tuple is a list of shapes. Size variables keep the picture's names.

    >>> from nnc import Vec
    >>> from nnc.types import Seq, TupleType
    >>> batch_shape(TupleType((Vec[3], Seq[Vec[2]])), repr)
    '[(None, 3), (None, None, 2)]'
    """
    if isinstance(t, TupleType):
        return "[" + ", ".join(batch_shape(x, names) for x in t.items) + "]"
    axes = ["None"]
    while isinstance(t, SeqType):
        axes.append("None")
        t = t.item
    if not isinstance(t, ArrayType):
        return names(t)  # a type variable: any shape
    if not t.is_index:
        axes.extend(names(ArrayType((d,)))[len("Tensor[") : -1] for d in t.dims)
    return "(" + ", ".join(axes) + (",)" if len(axes) == 1 else ")")


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
    """A cluster's title: its path, its kinds (unless the path says it) and its parameter count.

    The shapes of its own parameters go to the tooltip (:func:`_cluster_tip`): listed in the
    title, a recurrent wrapper's made its picture a line of weight shapes 1,500 pixels wide."""
    parts = [text(k) for k in kinds if re.sub(r"_\d+$", "", path.rsplit("/", 1)[-1]) != k]
    n = param_total(model)
    if n:
        parts.append(text(count_text(n)))
    name = canvas.title_name(path)
    return name + (" · " if name and parts else "") + " · ".join(parts)


def _cluster_tip(chain: list[Model], path: str) -> str:
    """What hovering a cluster's title shows: its full path and the parameters its wrappers
    hold themselves (learned_state's initial state; a layer inside lists its own)."""
    return "\n".join(([path] if path else []) + [p for m in chain for p in parameter_shapes(m)])


def parameter_shapes(model: Model) -> list[str]:
    """A layer's parameters with their shapes, ``W: Mat[2, 4]``, for its tooltip."""
    return [f"{name}: {show([array_type(spec.shape)])[0]}" for name, spec in model.param_specs]


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
        _title(canvas, model, path, *(m.kind for m in chain)),
        path=_sole_child_base(inner, inner_path),
        tooltip=_cluster_tip(chain, path),
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
        with canvas.cluster(_title(canvas, model, path, "serial"), path=path, color="#374151", tooltip=path):
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
            title += f"  {canvas.relative(first)} … {canvas.relative(last)}"
        if each:
            title += f" · {text(count_text(each * count))} in all"
        with canvas.cluster(
            title, style="rounded,bold", color="#2563eb", tooltip=f"{first} … {last}: {count} copies"
        ):
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
    with canvas.cluster(_title(canvas, model, path, "parallel"), path=path, tooltip=path):
        return _branches(canvas, model, path, items, depth + 1)


@drawer("fanout")
def _fanout(canvas: Canvas, model: Model, path: str, flow: Flow, depth: int) -> Flow:
    with canvas.cluster(_title(canvas, model, path, "fanout"), path=path, tooltip=path):
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
    """The body and a dashed skip edge labelled with its type, both inside the cluster: the
    skip starts at a split point in it, not at whatever node comes before the block."""
    with canvas.cluster(
        _title(canvas, model, path, "residual"), path=_sole_child_base(model, path), tooltip=path
    ):
        arriving = ends(flow)
        if len(arriving) == 1:
            fork = canvas.fork()
            canvas.connect(flow, fork)
            flow = End(fork, arriving[0].type)
        out = draw(canvas, model.children[0], child_path(model, path, 0), flow, depth + 1)
        plus = canvas.node(["+"], fill="#ffffff", extra=", shape=circle, width=0.3, margin=0")
    canvas.connect(out, plus)
    for end in ends(flow):
        canvas.edge(end.node, plus, end.type, 'style=dashed, color="#6b7280"', force_label=True)
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
    with canvas.cluster(
        _title(canvas, model, path, "padded"), path=_sole_child_base(model, path), tooltip=path
    ):
        out = draw(canvas, model.children[0], child_path(model, path, 0), sequences, depth + 1)
    canvas.lengths.pop()
    return relabel(out, model.out_type)


@drawer("repeat")
def _repeat(canvas: Canvas, model: Model, path: str, flow: Flow, depth: int) -> Flow:
    """``repeat(block, n)``: one cluster marked ``× n`` around one copy of the block."""
    block = model.children[0]
    title = f"<B>× {model.attr('times')}</B>"
    if path and canvas.options.show_layer_names:
        title += f"  {canvas.relative(path)}"
    total = param_total(model)
    if total:
        title += f" · {text(count_text(total))} in all"
    tip = f"{path}: {model.attr('times')} copies" if path else f"{model.attr('times')} copies"
    with canvas.cluster(title, style="rounded,bold", color="#2563eb", tooltip=tip):
        out = draw(canvas, replace(block, name=None), child_path(model, path, 0), flow, depth + 1)
    return relabel(out, model.out_type)


# ----------------------------------------------------------------------------- the whole picture


def to_dot(model: Model, options: Options | None = None, **kwargs: Any) -> str:
    """The Graphviz source of ``model``'s picture (needs no Graphviz program).

    Keyword arguments are :class:`Options` fields: ``rankdir``, ``show_shapes``,
    ``show_dtype``, ``show_layer_names``, ``expand_nested``, ``depth``, ``collapse_repeats``,
    ``show_batch``.

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
