"""Pictures of the backward pass: by layers (grad=True) and by primitives (ops=True)."""

import dataclasses
import importlib
import re
import shutil
import xml.etree.ElementTree as ET
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from test_render import chains, leaves

from nnc import Input, Linear, Vec, concat, fanout, lift, relu, residual, softmax, tanh
from nnc.backend.errors import TraceError
from nnc.backend.tree import tree_leaves
from nnc.draw import to_dot
from nnc.draw_grad import grad_to_dot
from nnc.draw_ops import ops_to_dot, trace_ops
from nnc.recurrent import fcrnn, unroll_last, zero_state
from nnc.render import RenderError, render

render_module = importlib.import_module("nnc.render")

EDGE = re.compile(r"^\s*(\w+) -> ([\w:]+)(?: \[(.*)\])?$", re.M)


def edges(source):
    return [(a, b.split(":")[0], attrs or "") for a, b, attrs in EDGE.findall(source)]


def label(attrs):
    m = re.search(r"label=<([^>]*)>", attrs)
    return m and m.group(1)


def mlp():
    block = lambda: residual(Linear(8, 8) >> relu)  # noqa: E731
    return Input(Vec[4]) >> Linear(None, 8) >> tanh >> block() >> block() >> Linear(8, 3) >> softmax


# ----------------------------------------------------------------------------- by layers


def test_each_layer_is_its_gradient_step_and_the_edges_run_backwards():
    model = Linear(2, 4) >> tanh >> Linear(4, 1)
    source = grad_to_dot(model)
    names = re.findall(r"<B>(∂ [^<]*)</B>", source)
    assert names == ["∂ linear_0", "∂ tanh_0", "∂ linear_1"]
    node_of = {m[1]: m[0] for m in re.findall(r"^\s*(n\d+) \[label=<<B>∂ ([^<]*)</B>", source, re.M)}
    flow = {(a, b, label(attrs)) for a, b, attrs in edges(source) if "15803d" not in attrs}
    # the cotangent of each forward edge's value, the other way: from the loss to the input
    linear_0, tanh_0, linear_1 = (node_of[n] for n in ("linear_0", "tanh_0", "linear_1"))
    assert flow == {
        ("output", linear_1, "Vec[1]"),
        (linear_1, tanh_0, "Vec[4]"),
        (tanh_0, linear_0, "Vec[4]"),
        (linear_0, "input", "Vec[2]"),
    }


def test_the_cotangents_have_the_forward_types():
    model = mlp()

    def types(source):
        return Counter(label(attrs) for _, _, attrs in edges(source) if label(attrs) and "state" not in attrs)

    assert types(grad_to_dot(model)) == types(to_dot(model))


def test_parameter_gradients_leave_their_layers_gradient_node():
    source = grad_to_dot(Linear(2, 4) >> tanh >> Linear(4, 1))
    grads = dict(re.findall(r"^\s*(g\d+) \[label=<([^>]*)>", source, re.M))
    assert sorted(grads.values()) == ["dW: Mat[2, 4]", "dW: Mat[4, 1]", "db: Vec[1]", "db: Vec[4]"]
    node_of = {m[1]: m[0] for m in re.findall(r"^\s*(n\d+) \[label=<<B>∂ ([^<]*)</B>", source, re.M)}
    leaving = {b: a for a, b, _ in edges(source) if b in grads}
    assert {grads[g] for g, n in leaving.items() if n == node_of["linear_0"]} == {
        "dW: Mat[2, 4]",
        "db: Vec[4]",
    }


def test_the_backward_keeps_the_forward_conventions():
    source = grad_to_dot(mlp())
    assert source.count("<B>× 2</B>") == 1  # the repeated block drawn once
    assert "subgraph cluster_" in source
    # a residual's skip: the backward sums the cotangents where the forward split the value
    assert re.search(r'label=<\+>.*tooltip="sum of cotangents"', source)
    cell = grad_to_dot(zero_state(unroll_last(fcrnn(1, 30) >> Linear(30, 1))))
    (loop,) = [attrs for a, b, attrs in edges(cell) if a == b]
    assert label(loop) == "∂ state: Vec[30], last step first" and "dashed" in loop


def test_depth_closes_blocks_into_one_gradient_step_with_their_parameters_gradient():
    model = Input(Vec[4]) >> Linear(None, 8) >> residual(Linear(8, 8) >> relu) >> Linear(8, 1)
    source = grad_to_dot(model, depth=0)
    assert "subgraph" not in source and re.search(r"<B>∂ residual_0</B>.*peripheries=2", source)
    grads = re.findall(r"^\s*g\d+ \[label=<([^>]*)>", source, re.M)
    assert grads == ["dW: Mat[4, 8]", "db: Vec[8]", "d of 72 params", "dW: Mat[8, 1]", "db: Vec[1]"]


def test_a_model_without_parameters_or_with_a_lifted_function_still_draws():
    source = grad_to_dot(tanh >> relu)
    assert re.findall(r"<B>(∂ [^<]*)</B>", source) == ["∂ tanh_0", "∂ relu_0"]
    assert not re.search(r"^\s*g\d+ \[", source, re.M)
    lifted = grad_to_dot(Input(Vec[3]) >> lift(lambda x: x * x, name="square") >> Linear(None, 2))
    assert "∂ square" in lifted


def test_render_grad_writes_an_svg_with_the_gradient_steps(tmp_path):
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed")
    out = render(mlp(), tmp_path / "backward.svg", grad=True)
    words = " ".join(t.text or "" for t in ET.parse(out).getroot().iter("{http://www.w3.org/2000/svg}text"))
    assert "∂ linear_0" in words and "dW: Mat[4, 8]" in words and "∂ output (from the loss)" in words
    assert render(mlp(), tmp_path / "b.gv", grad=True).read_text() == grad_to_dot(mlp())


def test_grad_and_ops_together_is_an_error():
    with pytest.raises(RenderError, match="grad and ops draw different pictures.*choose one"):
        render(mlp(), "x.gv", grad=True, ops=True)


# ----------------------------------------------------------------------------- by primitives


def test_the_trace_holds_the_forward_then_the_backward_grouped_by_layer():
    ops = trace_ops(Linear(2, 3) >> tanh)
    forward = [(e.prim.name, ops.layer_of[id(e)]) for e in ops.forward]
    assert ("dot", "linear_0") in forward and ("tanh", "tanh_0") in forward
    backward = {ops.layer_of[id(e)] for e in ops.backward}
    assert backward == {"linear_0", "tanh_0"}
    assert ops.output_names == ["sum of outputs", "∂ linear_0/W", "∂ linear_0/b", "∂ x"]
    assert [tuple(v.shape) for v in ops.graph.outputs] == [(), (2, 3), (3,), (1, 2)]


def test_the_picture_marks_what_the_forward_saves_for_the_backward():
    source = ops_to_dot(Linear(2, 3) >> tanh)
    nodes = dict(re.findall(r"^\s*(e\d+) \[label=<<B>(\w+)</B>", source, re.M))
    titles = re.findall(r"subgraph (cluster_[a-z]+)\w* \{\n\s*graph \[label=<(.*?)>, labeljust", source)
    assert [t for t in titles if "equations" not in t[1]] == [
        ("cluster_forward", "linear_0"),
        ("cluster_forward", "tanh_0"),
        ("cluster_backward", "∂ tanh_0"),
        ("cluster_backward", "∂ linear_0"),
    ]
    saved = [(a, b) for a, b, attrs in edges(source) if "saved for the backward" in attrs]
    tanh_node = next(n for n, p in nodes.items() if p == "tanh")
    assert any(a == tanh_node for a, _ in saved)  # tanh's output: its gradient is 1 - y²
    assert all("dashed" in attrs for _, _, attrs in edges(source) if "saved" in attrs)


def test_ops_of_a_recurrent_model_and_of_a_fanout():
    ops = trace_ops(zero_state(unroll_last(fcrnn(1, 4) >> Linear(4, 1))))
    assert any(e.prim.name == "scan" for e in ops.forward) and any(
        e.prim.name == "scan" for e in ops.backward
    )
    source = ops_to_dot(Input(Vec[3]) >> fanout(Linear(None, 2), tanh) >> concat)
    assert "∂ fanout_0/linear_0" in source and "x: zeros of shape (1, 3)" in source


def test_ops_of_models_with_effects_and_of_padded_attention():
    from nnc import BatchNorm, Dropout, LayerNorm, SelfAttention, padded
    from nnc.types import Seq

    ops = trace_ops(Input(Vec[4]) >> Linear(None, 8) >> BatchNorm(8) >> relu >> Dropout(0.5) >> Linear(8, 1))
    assert ops.example == "x: zeros of shape (2, 4)"  # batch statistics need two examples
    assert {"batchnorm_0", "dropout_0"} <= set(ops.layer_of.values())
    ops = trace_ops(padded(Input(Seq[Vec[8]]) >> SelfAttention(8, heads=2) >> LayerNorm(8)))
    assert ops.example == "x: zeros of shape ((1, 3, 8), (1,))"
    assert "attention_grads" in {e.prim.name for e in ops.backward}
    assert ops.output_names[-1] == "∂ x/0"  # the sequences; their lengths are integers
    assert list(ops.input_names.values())[-2:] == ["x/0", "x/1"]


def test_ops_needs_known_sizes_and_says_so():
    with pytest.raises(
        TraceError, match=r"(?s)cannot trace the primitives of .* known sizes.*Vec\[n\].*nnc.Input"
    ):
        trace_ops(Linear(None, 3) >> tanh)


def test_a_layer_that_cannot_be_traced_is_named():
    broken = dataclasses.replace(Linear(2, 3), forward=lambda m, p, x: np.asarray(x) @ p["W"])
    with pytest.raises(TraceError, match=r"cannot trace the primitives of linear_1 \(Linear\(2 -> 3\)"):
        trace_ops(tanh >> Linear(2, 2) >> broken)


# ----------------------------------------------------------------------------- random models


@given(chains(3))
@settings(max_examples=25, deadline=None)
def test_every_random_backward_has_a_step_per_layer_and_a_gradient_per_parameter(drawn):
    model, _ = drawn
    source = grad_to_dot(model, collapse_repeats=False)
    steps = re.findall(r"^\s*n\d+ \[label=<<B>∂", source, re.M)
    assert len(steps) == len([m for m in leaves(model) if m.kind != "Input"])
    grads = re.findall(r"^\s*g\d+ \[label=<d", source, re.M)
    assert len(grads) == len(tree_leaves(model.init(seed=0)))
    if shutil.which("dot"):
        ET.fromstring(render_module.run_dot(source, "svg"))


@given(chains(3))
@settings(max_examples=15, deadline=None)
def test_every_random_trace_gives_a_gradient_for_each_parameter_and_the_input(drawn):
    model, _ = drawn
    model = Input(Vec[3]) >> model
    ops = trace_ops(model)
    shapes = [tuple(v.shape) for v in ops.graph.outputs]
    assert shapes == [()] + [p.shape for p in tree_leaves(model.init(seed=0))] + [(1, 3)]
    assert all(id(e) in ops.layer_of for e in ops.forward + ops.backward)
    assert "cluster_backward" in ops_to_dot(model)
