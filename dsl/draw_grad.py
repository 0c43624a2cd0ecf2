"""The backward pass of a model at the level of its layers, as a Graphviz graph.

It is the forward picture (:mod:`nnc.draw`) run backwards: each layer is its gradient step
(``∂ linear_0``), each edge carries the cotangent of the value that flowed forward along it
(the same type, the other way), and each layer with parameters sends their gradients
(``dW: Mat[2, 4]``) out to its side. Clusters, ``× N`` blocks and depth are drawn as in the
forward picture, since the backward of a block is the block's own backward. Where the
forward split a value (a residual's skip, a fanout) the backward adds cotangents (``+``);
where the forward added (a residual's ``+``) the backward copies the cotangent to both
sides; a recurrent cell's state loop runs backwards, last step first, as its reverse scan does.

>>> from nnc import Linear, tanh
>>> text = grad_to_dot(Linear(2, 3) >> tanh)
>>> "∂ linear_0" in text and "dW: Mat[2, 3]" in text
True
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from .draw import Canvas, End, Options, count_text, draw, parameter_shapes, quoted, relabel, text
from .inspection import own_param_total, param_total, plain_description
from .model import Model
from .types import array_type, show

GRAD = "#15803d"  # parameter gradients: the colour of what the optimiser receives


class GradCanvas(Canvas):
    """A canvas whose edges point from a value's reader back to its producer."""

    def layer(self, model: Model, path: str, *, collapsed: bool = False, ports: int = 0) -> str:
        rows = []
        if self.options.show_layer_names and path:
            rows.append(f"<B>∂ {self.relative(path)}</B>")
            self.node_paths.add(path)
        else:
            rows.append("<B>∂</B>")
        description = plain_description(model)
        if not (
            self.options.show_layer_names
            and path
            and re.sub(r"_\d+$", "", path.rsplit("/", 1)[-1]) == description
        ):
            rows.append(text(_shorten(description)))
        n = param_total(model) if collapsed else own_param_total(model)
        fill = "#fde7c2" if model.state_type is not None else "#dcfce7" if n != 0 else "#f3f4f6"
        tip = "\n".join([f"gradient step of {path or description}"] + parameter_shapes(model))
        extra = f', tooltip="{quoted(tip)}"' + (", peripheries=2" if collapsed else "")
        nid = self.node(rows, fill=fill, extra=extra)
        self._parameter_gradients(model, nid, collapsed, n)
        return nid

    def _parameter_gradients(self, model: Model, nid: str, collapsed: bool, n: int | None) -> None:
        """The gradients of a layer's parameters, beside its node, leaving it."""
        if collapsed:
            rows = [f"d of {count_text(n)}"] if n else []
        else:
            rows = [f"d{name}: {show([array_type(spec.shape)])[0]}" for name, spec in model.param_specs]
        for row in rows:
            self._ids += 1
            gid = f"g{self._ids}"
            self._line(
                f'{gid} [label=<{text(row)}>, shape=note, style="filled", fillcolor="#f0fdf4", '
                f'color="{GRAD}", fontcolor="{GRAD}"]'
            )
            self.edges.append(f'{nid} -> {gid} [color="{GRAD}", arrowsize=0.6, constraint=false]')
            self.edges.append(f"{{rank=same; {nid}; {gid}}}")

    def edge(
        self, src: str, dst: str, label_type: Any = None, extra: str = "", force_label: bool = False
    ) -> None:
        """The forward edge ``src -> dst`` reversed; the cotangent of ``label_type`` flows on it."""
        attrs = []
        if label_type is not None and self.options.show_shapes and (force_label or src not in self.forks):
            attrs.append(f"label=<{text(self.type_label(label_type))}>")
        if "lengths" in extra:  # the lengths are data both ways: they mask the backward too
            self.edges.append(f"{src} -> {dst.split(':')[0]} [{extra}]")
            return
        if extra:
            attrs.append(extra)
        self.edges.append(f"{dst.split(':')[0]} -> {src}" + (f" [{', '.join(attrs)}]" if attrs else ""))

    def loop(self, src: str, dst: str, state_type: Any) -> None:
        """The state's cotangent, carried from each step to the one before it (a reverse scan)."""
        shown = f": {self.type_label(state_type)}" if self.options.show_shapes else ""
        label = f"∂ state{shown}, last step first"
        self.edges.append(
            f'{dst} -> {src} [label=<{text(label)}>, style=dashed, color="#b45309", '
            f'fontcolor="#b45309", constraint=false]'
        )

    def node(self, rows: list[str], *, fill: str = "#f3f4f6", extra: str = "", ports: int = 0) -> str:
        if rows == ["+"]:  # a residual's sum: its cotangent goes to both terms unchanged
            self._ids += 1
            nid = f"n{self._ids}"
            self._line(f'{nid} [shape=point, width=0.06, label="", color="#4b5563", tooltip="copy"]')
            return nid
        return super().node(rows, fill=fill, extra=extra)

    def fork(self) -> str:
        """Where the forward split a value, the backward adds the cotangents of its readers."""
        nid = super().node(
            ["+"], fill="#ffffff", extra=', shape=circle, width=0.3, margin=0, tooltip="sum of cotangents"'
        )
        self.forks.add(nid)
        return nid

    def terminal(self, nid: str, label: str) -> str:
        words = {"input": "∂ input", "output": "∂ output (from the loss)"}
        return super().terminal(nid, words.get(label, label))


def _shorten(s: str, width: int = 48) -> str:
    return s if len(s) <= width else s[: width - 1] + "…"


def grad_to_dot(model: Model, options: Options | None = None, **kwargs: Any) -> str:
    """The Graphviz source of ``model``'s backward pass at the level of its layers.

    Keyword arguments are :class:`nnc.draw.Options` fields, as for :func:`nnc.draw.to_dot`.
    The picture reads from the loss's cotangent at the top to the input's at the bottom."""
    if not isinstance(model, Model):
        raise TypeError(f"grad_to_dot draws nnc models, got {type(model).__name__}")
    options = replace(options, **kwargs) if options is not None else Options(**kwargs)
    canvas = GradCanvas(model, options)
    canvas.terminal("output", "output")
    out = draw(canvas, model, "", End("input", model.in_type), 0)
    canvas.terminal("input", "input")
    canvas.connect(relabel(out, model.out_type), "output")
    return canvas.source("backward")
