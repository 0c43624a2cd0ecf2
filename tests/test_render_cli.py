"""nnc render's pictures of issue 19 from the command line: --grad, --ops, --show-batch, .html;
what each writes, prints and exits with, for good input and bad."""

import shutil
import textwrap
import xml.etree.ElementTree as ET

import pytest

from nnc.cli import main

MODELS = """\
from nnc import Input, Linear, Vec, lift, relu, residual, tanh

model = Input(Vec[4]) >> Linear(None, 8) >> relu >> residual(Linear(8, 8) >> tanh) >> Linear(8, 2)
no_params = Input(Vec[3]) >> tanh >> relu
unknown = Linear(None, 3) >> tanh
callback = Input(Vec[3]) >> lift(lambda x: x * x, name="square") >> Linear(None, 2)
"""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.py").write_text(textwrap.dedent(MODELS))
    return tmp_path


@pytest.fixture
def dot_program():
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def words(path):
    return " ".join(t.text or "" for t in ET.parse(path).getroot().iter("{http://www.w3.org/2000/svg}text"))


def test_grad_draws_the_backward_by_layers(folder, capsys, dot_program):
    assert run(capsys, "render", "model.py", "--grad", "-o", "backward.svg") == (0, "backward.svg\n", "")
    text = words(folder / "backward.svg")
    assert "∂ linear_0" in text and "dW: Mat[4, 8]" in text and "∂ input" in text


def test_ops_draws_the_primitives_of_both_passes(folder, capsys, dot_program):
    assert run(capsys, "render", "model.py", "--ops", "-o", "ops.svg") == (0, "ops.svg\n", "")
    text = words(folder / "ops.svg")
    assert "forward" in text and "backward" in text and "dot" in text and "∂ linear_0/W" in text


def test_an_html_page_is_written_for_each_picture(folder, capsys, dot_program):
    for extra, name in (((), "model.html"), (("--grad",), "b.html"), (("--ops",), "o.html")):
        assert run(capsys, "render", "model.py", *extra, "-o", name) == (0, f"{name}\n", "")
        page = (folder / name).read_text(encoding="utf-8")
        assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "<script>" in page
    assert run(capsys, "render", "model.py", "-f", "html")[:2] == (0, "model.html\n")


def test_show_batch_on_standard_output(folder, capsys):
    code, out, err = run(capsys, "render", "model.py", "--show-batch", "-f", "dot", "-o", "-")
    assert (code, err) == (0, "") and "label=<(None, 4)>" in out and "Vec[4]" not in out
    code, out, _ = run(capsys, "render", "model.py", "--grad", "-f", "dot", "-o", "-")
    assert code == 0 and out.startswith("digraph backward {")


def test_grad_and_ops_together_is_a_usage_error(folder, capsys):
    code, out, err = run(capsys, "render", "model.py", "--grad", "--ops")
    assert (code, out) == (2, "")
    assert err == (
        "nnc render: --grad and --ops draw different pictures (the layers' gradient steps; the "
        "primitives of both passes, which already hold the backward): choose one\n"
    )


def test_grad_draws_models_without_parameters_or_with_a_lifted_function(folder, capsys):
    for name in ("no_params", "callback"):
        code, out, err = run(capsys, "render", f"model.py:{name}", "--grad", "-f", "dot", "-o", "-")
        assert (code, err) == (0, "") and "∂ " in out
    code, out, _ = run(capsys, "render", "model.py:no_params", "--ops", "-f", "dot", "-o", "-")
    assert code == 0 and "∂ x" in out  # the gradient with respect to the input: there are no parameters


def test_ops_of_a_model_of_unknown_sizes_is_a_clear_error(folder, capsys):
    code, out, err = run(capsys, "render", "model.py:unknown", "--ops", "-f", "dot", "-o", "-")
    assert (code, out) == (1, "")
    assert err.startswith("nnc render: cannot trace the primitives of Linear(? -> 3) >> tanh (created at ")
    assert "hint: start the model with nnc.Input(Vec[n])" in err and "Traceback" not in err


def test_an_html_page_without_graphviz_exits_3_with_the_source_written(folder, capsys, monkeypatch):
    empty = folder / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    code, out, err = run(capsys, "render", "model.py", "-o", "model.html")
    assert (code, out) == (3, "") and (folder / "model.gv").exists()
    assert "dot -Tsvg model.gv -o model.svg" in err
