"""Pictures and tables of models: golden DOT, real Graphviz renders, counts that agree with init."""

import functools
import importlib
import operator
import os
import re
import shutil
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nnc
from nnc import Input, Linear, Vec, add, concat, fanout, logistic, parallel, relu, residual, softmax, tanh
from nnc.draw import DRAWERS, Options, repeats, to_dot
from nnc.recurrent import LSTM, fcrnn, learned_state, recurrently, unroll, unroll_last, zero_state
from nnc.render import GraphvizNotFound, RenderError, format_of, mimebundle, render
from nnc.summary import summary

GOLDEN = Path(__file__).parent / "golden"
render_module = importlib.import_module("nnc.render")


def require_dot():
    """Real rendering needs Graphviz: CI installs it, so there its absence is a failure."""
    program = shutil.which("dot")
    if program is None:
        if os.environ.get("CI"):
            pytest.fail("Graphviz's dot is not installed; .ci/run installs the Debian package graphviz")
        pytest.skip("Graphviz's dot is not installed")
    return program


@pytest.fixture
def dot_program():
    return require_dot()


@pytest.fixture
def no_dot(tmp_path, monkeypatch):
    """A PATH on which there is no dot program."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return empty


# ----------------------------------------------------------------------------- golden DOT


def golden_models():
    return {
        "mlp": Linear(2, 4) >> tanh >> Linear(4, 1) >> logistic,
        "residual": (
            Input(Vec[16])
            >> Linear(None, 8)
            >> relu
            >> residual(Linear(8, 8) >> relu)
            >> residual(Linear(8, 8) >> relu)
            >> Linear(8, 3)
            >> softmax
        ),
        "parallel": parallel(Linear(2, 3), Linear(4, 5) >> tanh) >> concat >> Linear(8, 1),
        "fanout": Linear(3, 4) >> fanout(Linear(4, 2).named("left"), Linear(4, 2) >> relu) >> add,
        "recurrent": zero_state(unroll_last(fcrnn(1, 30) >> Linear(30, 1))),
        "learned_state": learned_state(unroll(LSTM(2, 8) >> Linear(8, 2))),
        "residual_depth0": (
            (
                Input(Vec[16])
                >> Linear(None, 8)
                >> relu
                >> residual(Linear(8, 8) >> relu)
                >> residual(Linear(8, 8) >> relu)
                >> Linear(8, 3)
                >> softmax
            ),
            dict(depth=0, rankdir="LR"),
        ),
    }


@pytest.mark.parametrize("name", sorted(golden_models()))
def test_dot_source_matches_the_golden_file(name):
    """Set NNC_UPDATE_GOLDEN=1 to rewrite the golden files after a deliberate change (and look at them)."""
    model = golden_models()[name]
    model, options = model if isinstance(model, tuple) else (model, {})
    source = to_dot(model, **options)
    path = GOLDEN / f"{name}.dot"
    if os.environ.get("NNC_UPDATE_GOLDEN"):
        path.write_text(source, encoding="utf-8")
    assert source == path.read_text(encoding="utf-8")


def edges(source):
    return re.findall(r"^\s*(\w+) -> ([\w:]+)(?: \[(.*)\])?$", source, re.M)


def node_lines(source):
    return {
        m.group(1): m.group(2) for m in re.finditer(r"^\s*(n\d+) \[label=<(.*)>, fillcolor", source, re.M)
    }


def test_branches_are_drawn_in_order_and_arrive_at_their_own_ports():
    source = to_dot(parallel(Linear(2, 3), Linear(4, 5) >> tanh) >> concat)
    assert "{rank=same; n1 -> n2 [style=invis]}" in source  # first nodes of the branches, in order
    assert [(a, b) for a, b, _ in edges(source) if b.startswith("n4")] == [
        ("n1", "n4:i0:n"),
        ("n3", "n4:i1:n"),
    ]
    assert '<TD PORT="i0"' in source and '<TD PORT="i1"' in source
    assert "n1 -> n3:i0:w" in to_dot(parallel(Linear(2, 3), Linear(4, 5)) >> concat, rankdir="LR")


def test_edges_carry_the_type_that_flows_and_nodes_their_parameter_counts():
    source = to_dot(Linear(2, 4) >> tanh >> Linear(4, 1) >> logistic)
    assert [(a, b, re.search(r"label=<([^>]*)>", attrs).group(1)) for a, b, attrs in edges(source)] == [
        ("input", "n1", "Vec[2]"),
        ("n1", "n2", "Vec[4]"),
        ("n2", "n3", "Vec[4]"),
        ("n3", "n4", "Vec[1]"),
        ("n4", "output", "Vec[1]"),
    ]
    nodes = node_lines(source)
    assert "12 params" in nodes["n1"] and "5 params" in nodes["n3"]
    assert "params" not in nodes["n2"]


def test_show_shapes_and_dtype_options():
    model = Linear(2, 4) >> tanh
    assert "label=<Vec[4] float64>" in to_dot(model, show_dtype=True, dtype=np.float64)
    assert not [e for e in edges(to_dot(model, show_shapes=False)) if e[2]]
    assert "<B>linear_0</B>" in to_dot(model) and "<B>" not in to_dot(model, show_layer_names=False)
    assert "rankdir=LR" in to_dot(model, rankdir="LR")
    with pytest.raises(ValueError, match="rankdir must be one of TB, LR, BT, RL"):
        Options(rankdir="XY")


def test_labels_are_escaped():
    model = Linear(2, 3, name="a<b&c") >> Linear(3, 1, name='q"uo\\te')
    source = to_dot(model)
    assert "<B>a&lt;b&amp;c</B>" in source and 'tooltip="q\\"uo\\\\te\\nW: Mat[3, 1]\\nb: Vec[1]"' in source
    assert "<B>a<b&c</B>" not in source


def test_unnamed_variables_get_one_name_across_the_picture():
    source = to_dot(fanout(tanh, relu) >> add)
    assert "label=<a>" in source and "label=<(a, a)>" not in source
    assert not re.search(r"\?\d", source)  # no raw variable ids like ?17


# ----------------------------------------------------------------------------- repeats and depth


def test_repeats_finds_the_longest_back_to_back_run_of_the_shortest_block():
    assert repeats(list("abababc")) == [(0, 2, 3), (6, 1, 1)]
    assert repeats(list("aaaa")) == [(0, 1, 4)]
    assert repeats(list("abc")) == [(0, 1, 1), (1, 1, 1), (2, 1, 1)]
    assert repeats(list("xabab")) == [(0, 1, 1), (1, 2, 2)]


def block():
    return residual(Linear(8, 8) >> relu)


def test_identical_blocks_are_drawn_once_with_their_count():
    model = Linear(2, 8) >> block() >> block() >> block() >> Linear(8, 1)
    source = to_dot(model)
    assert source.count("<B>× 3</B>") == 1
    assert "residual_0 … residual_2 · 216 params in all" in source
    assert sum("Linear(8 -&gt; 8)" in line for line in node_lines(source).values()) == 1
    full = to_dot(model, collapse_repeats=False)
    assert "×" not in full
    assert sum("Linear(8 -&gt; 8)" in line for line in node_lines(full).values()) == 3


def test_blocks_that_differ_are_not_collapsed():
    model = Linear(2, 8) >> residual(Linear(8, 8) >> relu) >> residual(Linear(8, 8) >> tanh)
    assert "×" not in to_dot(model)


def test_wrappers_that_differ_only_in_a_big_array_are_not_collapsed():
    from nnc.recurrent import fix_state

    zeros, one_hot = np.zeros(2000), np.zeros(2000)
    one_hot[1000] = 1.0
    assert repr(zeros) == repr(one_hot)  # numpy elides the middle of big arrays
    same = fix_state(zeros, fcrnn(2000, 2000)) >> fix_state(zeros, fcrnn(2000, 2000))
    differ = fix_state(zeros, fcrnn(2000, 2000)) >> fix_state(one_hot, fcrnn(2000, 2000))
    assert "<B>× 2</B>" in to_dot(same) and "×" not in to_dot(differ)


def visible_clusters(source):
    return len(re.findall(r"graph \[label=<.*style=\"(?!invis)", source))


def test_depth_collapses_clusters_into_single_nodes():
    model = Linear(2, 8) >> residual(fanout(Linear(8, 8), Linear(8, 8)) >> add) >> Linear(8, 1)
    assert visible_clusters(to_dot(model)) == 2
    one = to_dot(model, depth=1)
    assert visible_clusters(one) == 1 and "peripheries=2" in one
    flat = to_dot(model, depth=0)
    assert "subgraph" not in flat
    assert re.search(r"<B>residual_0</B>.*144 params.*peripheries=2", flat)
    assert to_dot(model, expand_nested=False) == flat


# ----------------------------------------------------------------------------- recurrent models


def test_a_cell_is_a_loop_labelled_with_its_state_not_an_unrolled_chain():
    source = to_dot(zero_state(unroll_last(fcrnn(1, 30) >> Linear(30, 1))))
    loops = [(a, b) for a, b, attrs in edges(source) if "state: Vec[30]" in (attrs or "")]
    assert loops == [("n1", "n1")]
    assert "zero_state · unroll_last · 991 params" in source


def test_a_cell_built_from_stateless_layers_loops_from_its_last_layer_to_its_first():
    source = to_dot(Input(Vec[3]) >> recurrently(concat >> Linear(None, 4) >> tanh))
    loops = [(a, b) for a, b, attrs in edges(source) if "state: Vec[4]" in (attrs or "")]
    assert loops == [("n3", "n1")]


def test_drawing_is_extensible_by_kind(monkeypatch):
    def as_one_box(canvas, model, path, flow, depth):
        node = canvas.node(["custom"])
        canvas.connect(flow, node)
        return nnc.draw.End(node, model.out_type)

    monkeypatch.setitem(DRAWERS, "residual", as_one_box)
    source = to_dot(Linear(2, 2) >> residual(tanh))
    assert "n2 [label=<custom>" in source and "subgraph" not in source


# ----------------------------------------------------------------------------- random models


@st.composite
def chains(draw, n, depth=2):
    """A random composition from Vec[n] to some Vec[k]; returns (model, k)."""
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(
                ["linear", "act", "residual", "fanout", "parallel", "repeat"] if depth else ["linear", "act"]
            )
        )
        if kind == "linear":
            k = draw(st.integers(1, 5))
            parts.append(Linear(n, k, bias=draw(st.booleans())))
            n = k
        elif kind == "act":
            parts.append(draw(st.sampled_from([tanh, relu, logistic])))
        elif kind in ("residual", "repeat"):
            inner, k = draw(chains(n, depth - 1))
            body = residual(inner >> Linear(k, n))
            parts.extend([body] * (draw(st.integers(2, 3)) if kind == "repeat" else 1))
        elif kind == "fanout":
            (a, ka), (b, kb) = draw(chains(n, depth - 1)), draw(chains(n, depth - 1))
            parts.append(Input(Vec[n]) >> fanout(a, b) >> concat)  # Input: concat needs known sizes
            n = ka + kb
        else:
            (a, ka), (b, kb) = draw(chains(n, depth - 1)), draw(chains(n, depth - 1))
            parts.append(Input(Vec[n]) >> fanout(tanh, relu) >> parallel(a, b) >> concat)
            n = ka + kb
    return functools.reduce(operator.rshift, parts), n


def leaves(model):
    return [model] if not model.children else [x for c in model.children for x in leaves(c)]


def nodes_of(model):
    return [model] + [x for c in model.children for x in nodes_of(c)]


def init_count(model):
    return sum(leaf.size for leaf in nnc.tree_leaves(model.init(seed=0)))


@given(chains(3))
def test_picture_and_summary_count_exactly_the_parameters_init_creates(drawn):
    model, _ = drawn
    total = init_count(model)
    table = summary(model)
    assert table.total == total
    assert sum(r.param_count for r in table.rows if not r.block) == total
    assert len([r for r in table.rows if not r.block]) == len(leaves(model))
    source = to_dot(model, collapse_repeats=False)
    counts = [
        int(m.replace(",", ""))
        for line in node_lines(source).values()
        for m in re.findall(r"([\d,]+) params?</FONT>", line)
    ]
    assert sum(counts) == total
    pluses = [label for label in node_lines(source).values() if label == "+"]
    assert len(pluses) == sum(m.kind == "residual" for m in nodes_of(model))
    drawn_leaves = [m for m in leaves(model) if m.kind != "Input"]  # an Input is its edge's type
    assert len(node_lines(source)) == len(drawn_leaves) + len(pluses)


@given(chains(3))
def test_every_random_picture_is_valid_graphviz(drawn):
    require_dot()
    model, _ = drawn
    svg = render_module.run_dot(to_dot(model), "svg")
    ET.fromstring(svg)


# ----------------------------------------------------------------------------- real rendering


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_render_svg_has_the_layers_and_shapes(tmp_path, dot_program):
    model = golden_models()["residual"]
    out = render(model, tmp_path / "net.svg")
    assert out == tmp_path / "net.svg"
    root = ET.parse(out).getroot()
    words = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    for expected in ("linear_0", "Linear(16 -> 8)", "Vec[16]", "Vec[3]", "× 2", "136 params"):
        assert expected in words
    width, height = (float(root.get(k)[:-2]) for k in ("width", "height"))
    assert 150 < width < 1000 and 400 < height < 2000  # a tall chain, in points
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was moved into place


def test_render_png_is_a_picture_of_the_right_size(tmp_path, dot_program):
    from PIL import Image

    model = golden_models()["residual"]
    small = png_size(render(model, tmp_path / "a.png", dpi=72).read_bytes())
    large = png_size(render(model, tmp_path / "b.png").read_bytes())  # 200 dpi by default
    assert large[0] == pytest.approx(small[0] * 200 / 72, rel=0.05)
    assert 300 < large[0] < 3000 and large[1] > large[0]  # drawn top to bottom
    pixels = np.asarray(Image.open(tmp_path / "b.png").convert("L"))
    assert 0.01 < (pixels < 128).mean() < 0.3  # dark text and lines on a light background
    wide = png_size(render(model, tmp_path / "c.png", dpi=72, rankdir="LR").read_bytes())
    assert wide[0] > wide[1]


def test_render_pdf_and_dot(tmp_path, dot_program):
    model = golden_models()["mlp"]
    assert render(model, tmp_path / "m.pdf").read_bytes().startswith(b"%PDF")
    assert render(model, tmp_path / "m", format="dot").read_text() == to_dot(model)


def test_the_escaped_name_renders(tmp_path, dot_program):
    model = Linear(2, 3, name="a<b&c") >> Linear(3, 1, name='q"uo\\te')
    words = [
        t.text
        for t in ET.parse(render(model, tmp_path / "e.svg"))
        .getroot()
        .iter("{http://www.w3.org/2000/svg}text")
    ]
    assert "a<b&c" in words and 'q"uo\\te' in words


def test_format_comes_from_the_suffix_or_the_argument():
    assert format_of("x.svg") == "svg" and format_of("x.GV") == "dot" and format_of("x", "png") == "png"
    with pytest.raises(RenderError, match=r"cannot tell the format of 'x.jpg' from its suffix"):
        format_of("x.jpg")
    with pytest.raises(RenderError, match="ends in .png but the format asked for is svg"):
        format_of("x.png", "svg")


def test_without_dot_the_source_is_written_and_the_error_says_how_to_finish(tmp_path, no_dot):
    model = golden_models()["mlp"]
    with pytest.raises(GraphvizNotFound) as info:
        render(model, tmp_path / "out" / "m.png")
    gv = tmp_path / "out" / "m.gv"
    assert info.value.source == gv and gv.read_text() == to_dot(model)
    assert info.value.command == f"dot -Tpng -Gdpi=200 {gv} -o {tmp_path / 'out' / 'm.png'}"
    message = str(info.value)
    assert "sudo apt-get install graphviz" in message and "brew install graphviz" in message
    assert message.endswith("\n  " + info.value.command + "\n  see docs/errors.md#graphviznotfound")
    assert not (tmp_path / "out" / "m.png").exists()
    assert render(model, tmp_path / "m.gv").exists()  # the source needs no Graphviz


def test_a_failing_dot_leaves_the_old_picture_alone(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "dot").write_text("#!/bin/sh\necho 'Error: layout exploded' >&2\nexit 1\n")
    (fake / "dot").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    out = tmp_path / "m.svg"
    out.write_text("old picture")
    with pytest.raises(
        RenderError, match="Graphviz's dot failed to draw the model as svg: Error: layout exploded"
    ):
        render(golden_models()["mlp"], out)
    assert out.read_text() == "old picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "m.svg"]


# ----------------------------------------------------------------------------- notebooks


def test_a_notebook_shows_the_picture_with_the_text(dot_program):
    model = golden_models()["mlp"]
    bundle = model._repr_mimebundle_()
    assert bundle["text/plain"] == repr(model)
    ET.fromstring(bundle["image/svg+xml"])
    assert "linear_0" in bundle["image/svg+xml"]
    assert set(mimebundle(model, include={"text/plain"})) == {"text/plain"}
    assert set(mimebundle(model, exclude={"image/svg+xml"})) == {"text/plain"}


def test_a_notebook_falls_back_to_text_without_graphviz(no_dot):
    model = golden_models()["mlp"]
    assert model._repr_mimebundle_() == {"text/plain": "Linear(2 -> 4) >> tanh >> Linear(4 -> 1) >> logistic"}


def test_a_notebook_cell_never_raises_even_if_drawing_fails(monkeypatch):
    def broken(*args):
        raise RuntimeError("a drawing bug")

    monkeypatch.setitem(DRAWERS, "serial", broken)
    model = golden_models()["mlp"]
    assert model._repr_mimebundle_() == {"text/plain": repr(model)}


# ----------------------------------------------------------------------------- summary


def test_summary_table_golden():
    assert str(summary(golden_models()["fanout"])) == "\n".join(
        [
            "path                          layer           input             output            params",
            "----------------------------  --------------  ----------------  ----------------  ------",
            "linear_0                      Linear(3 -> 4)  Vec[3]            Vec[4]                16",
            "fanout_0                      fanout          Vec[4]            (Vec[2], Vec[2])    (20)",
            "  fanout_0/left               Linear(4 -> 2)  Vec[4]            Vec[2]                10",
            "  fanout_0/serial_0/linear_0  Linear(4 -> 2)  Vec[4]            Vec[2]                10",
            "  fanout_0/serial_0/relu_0    relu            Vec[2]            Vec[2]                 0",
            "add_0                         add             (Vec[2], Vec[2])  Vec[2]                 0",
            "total: 36 parameters (144 B as float32)",
        ]
    )


def test_summary_depth_closes_blocks_into_one_row_with_their_total():
    model = Linear(2, 8) >> residual(Linear(8, 8) >> relu) >> Linear(8, 1)
    rows = summary(model, depth=0).rows
    assert [(r.path, r.layer, r.param_count, r.block) for r in rows] == [
        ("linear_0", "Linear(2 -> 8)", 24, False),
        ("residual_0", "residual(Linear(8 -> 8) >> relu)", 72, False),
        ("linear_1", "Linear(8 -> 1)", 9, False),
    ]


def test_summary_with_unknown_sizes_says_why():
    table = summary(Linear(None, 3) >> tanh)
    assert table.total is None
    assert str(table).splitlines()[-1] == (
        "total: unknown, linear_0/W has shape (n, 3); start the "
        "model with nnc.Input(Vec[n]) to fix its input size"
    )


def test_summary_of_a_recurrent_model_shows_the_state():
    table = summary(zero_state(unroll_last(fcrnn(1, 30) >> Linear(30, 1))))
    assert table.total == 991 == init_count(zero_state(unroll_last(fcrnn(1, 30) >> Linear(30, 1))))
    assert [r.layer for r in table.rows if not r.block] == [
        "fcrnn(1 -> 30), state Vec[30]",
        "Linear(30 -> 1)",
    ]


# ----------------------------------------------------------------------------- files written


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield 0o640
    os.umask(previous)


def test_graphviz_source_gets_the_permissions_the_umask_gives(tmp_path, umask_027):
    written = render(golden_models()["mlp"], tmp_path / "m.gv")
    assert os.stat(written).st_mode & 0o777 == umask_027


@pytest.mark.parametrize("suffix", [".svg", ".png", ".pdf"])
def test_pictures_get_the_permissions_the_umask_gives(tmp_path, dot_program, umask_027, suffix):
    written = render(golden_models()["mlp"], tmp_path / f"m{suffix}")
    assert os.stat(written).st_mode & 0o777 == umask_027
    assert [p.name for p in tmp_path.iterdir()] == [f"m{suffix}"]  # no temporary file left


def test_without_dot_an_older_picture_is_removed_and_the_message_says_so(tmp_path, no_dot):
    model = golden_models()["mlp"]
    out = tmp_path / "m.svg"
    out.write_text("a picture of an older model")
    with pytest.raises(GraphvizNotFound) as info:
        render(model, out)
    assert not out.exists()
    assert str(info.value).startswith(
        f"Graphviz's dot program was not found, so {out} was not drawn. The older {out} was "
        f"removed, so that it does not pass for a drawing of this model. Its Graphviz source is "
        f"written to {tmp_path / 'm.gv'}. To draw it, install Graphviz ("
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-path", "m.gv"]


# ----------------------------------------------------------------------------- a new user's look


def clusters_of(source):
    """{node id: [the ids of the clusters it is declared in, outermost first]}."""
    where, stack = {}, []
    for line in source.splitlines():
        s = line.strip()
        if s.startswith("subgraph cluster_"):
            stack.append(s.split()[1])
        elif s == "}" and stack:
            stack.pop()
        elif m := re.match(r"(n\d+) \[", s):
            where[m.group(1)] = list(stack)
    return where


def names_drawn(source):
    """The bold names of the nodes: the paths a reader looks up in nnc summary."""
    return [m for label in node_lines(source).values() for m in re.findall(r"<B>([^<]*)</B>", label)]


def test_every_node_name_is_unique_and_a_tail_of_its_summary_path():
    model = Linear(4, 8) >> residual(Linear(8, 8) >> relu) >> residual(Linear(8, 8) >> tanh) >> Linear(8, 2)
    source = to_dot(model)
    names = names_drawn(source)
    assert names == [
        "linear_0",
        "residual_0/serial_0/linear_0",
        "relu_0",
        "residual_1/serial_0/linear_0",
        "tanh_0",
        "linear_1",
    ]
    paths = {r.path for r in summary(model).rows}
    assert all(any(p == n or p.endswith("/" + n) for p in paths) for n in names)


@given(chains(3))
def test_names_are_unique_in_every_random_picture(drawn):
    model, _ = drawn
    names = names_drawn(to_dot(model, collapse_repeats=False))
    assert len(names) == len(set(names))


def test_a_recurrent_clusters_title_stays_short_and_its_shapes_are_in_tooltips(dot_program):
    from nnc.recurrent import GRU

    model = learned_state(unroll_last(GRU(8, 16))) >> Linear(16, 4) >> tanh
    source = to_dot(model)
    (title,) = re.findall(r"graph \[label=<([^>]*)>, labeljust", source)
    assert title == "learned_state · unroll_last · 1,216 params"
    assert 'tooltip="gru_0\\ninitial_state: Vec[16]"' in source  # the cluster's own parameter
    assert 'tooltip="gru_0\\nWx: Mat[8, 48]\\nWh: Mat[16, 32]\\nb: Vec[48]\\nUh: Mat[16, 16]"' in source
    root = ET.fromstring(render_module.run_dot(source, "svg"))
    width_px = float(root.get("width")[:-2]) * 96 / 72
    assert width_px < 400  # it was 1,467 px with the weight shapes in the title


def test_a_skip_edge_stays_in_its_cluster_and_carries_its_type():
    source = to_dot(Linear(4, 8) >> residual(Linear(8, 8) >> relu) >> Linear(8, 1))
    where = clusters_of(source)
    (skip,) = [(a, b, attrs) for a, b, attrs in edges(source) if "dashed" in (attrs or "")]
    assert where[skip[0]] == where[skip[1]] == ["cluster_1"]
    assert "label=<Vec[8]>" in skip[2]
    assert f"{skip[0]} [shape=point" in source  # the split point inside the cluster


def test_show_batch_draws_the_batch_axis_as_keras_does():
    from nnc.recurrent import GRU

    model = Input(Vec[64]) >> fanout(Linear(None, 8), tanh) >> parallel(relu, Linear(64, 2))
    labels = [re.search(r"label=<([^>]*)>", a).group(1) for _, _, a in edges(to_dot(model, show_batch=True))]
    assert labels == ["(None, 64)", "(None, 64)", "(None, 8)", "(None, 64)", "(None, 8)", "(None, 2)"]
    names = nnc.draw.TypeNames([])
    assert nnc.draw.batch_shape(model.out_type, names) == "[(None, 8), (None, 2)]"
    seq = zero_state(unroll_last(GRU(3, 5)))
    assert "label=<(None, None, 3)>" in to_dot(seq, show_batch=True)
    assert "label=<state: (None, 5)>" in to_dot(seq, show_batch=True)
    assert "(None" not in to_dot(model)


def test_text_is_readable_at_96_dpi():
    source = to_dot(golden_models()["residual"])
    sizes = [float(s) for s in re.findall(r'(?:fontsize=|POINT-SIZE=")(\d+(?:\.\d+)?)', source)]
    assert sizes and min(sizes) * 96 / 72 >= 13  # pixels: the smallest text, edge labels and counts
