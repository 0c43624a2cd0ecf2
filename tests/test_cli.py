"""The nnc command: what it writes, prints and exits with, for good input and for each bad one."""

import importlib.metadata
import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import nnc
from nnc.cli import main
from nnc.draw import to_dot
from nnc.modelfile import LoadError, find_model, load_file, split_spec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

MODELS = """\
from nnc import Linear, relu, residual, tanh

encoder = Linear(4, 8) >> relu >> residual(Linear(8, 8) >> tanh)
decoder = Linear(8, 4)
model = encoder >> decoder
"""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A working folder holding model files; paths in messages are relative to it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(folder, name, source):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def no_dot(tmp_path, monkeypatch):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.fixture
def dot_program():
    if shutil.which("dot") is None:
        if os.environ.get("CI"):
            pytest.fail("Graphviz's dot is not installed; .ci/run installs the Debian package graphviz")
        pytest.skip("Graphviz's dot is not installed")


# ----------------------------------------------------------------------------- render


def test_render_writes_an_svg_beside_the_file_and_prints_its_path(folder, capsys, dot_program):
    write(folder, "examples/mlp.py", (EXAMPLES / "mlp.py").read_text())
    code, out, err = run(capsys, "render", "examples/mlp.py")
    assert (code, out, err) == (0, "examples/mlp.svg\n", "")
    root = ET.parse(folder / "examples" / "mlp.svg").getroot()
    words = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert {"Linear(64 -> 32)", "2,080 params", "Vec[64]", "× 2"} <= set(words)


def test_render_a_named_model_to_png(folder, capsys, dot_program):
    write(folder, "model.py", MODELS)
    code, out, _ = run(capsys, "render", "model.py:encoder", "-o", "enc.png")
    assert (code, out) == (0, "enc.png\n")
    data = (folder / "enc.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_render_pdf_with_options(folder, capsys, dot_program):
    write(folder, "model.py", MODELS)
    code, out, _ = run(capsys, "render", "model.py", "-f", "pdf", "--rankdir", "LR", "--depth", "1")
    assert (code, out) == (0, "model.pdf\n")
    assert (folder / "model.pdf").read_bytes().startswith(b"%PDF")


def test_render_dot_needs_no_graphviz(folder, capsys, no_dot):
    write(folder, "model.py", MODELS)
    code, out, _ = run(capsys, "render", "model.py:decoder", "-f", "dot")
    assert (code, out) == (0, "model_decoder.gv\n")
    _, decoder = find_model("model.py:decoder")
    assert (folder / "model_decoder.gv").read_text() == to_dot(decoder)
    code, out, _ = run(
        capsys, "render", "model.py", "-f", "dot", "-o", "-", "--rankdir", "LR", "--no-show-shapes"
    )
    assert code == 0 and out == to_dot(find_model("model.py")[1], rankdir="LR", show_shapes=False)


def test_render_without_dot_writes_the_source_and_exits_3(folder, capsys, no_dot):
    write(folder, "model.py", MODELS)
    code, out, err = run(capsys, "render", "model.py", "-o", "pics/model.png", "--dpi", "150")
    assert (code, out) == (3, "")
    assert (folder / "pics" / "model.gv").read_text() == to_dot(find_model("model.py")[1])
    assert not (folder / "pics" / "model.png").exists()
    assert err.startswith(
        "nnc render: Graphviz's dot program was not found, so pics/model.png "
        "was not drawn. Its Graphviz source is written to pics/model.gv."
    )
    assert "sudo apt-get install graphviz" in err
    assert err.endswith(
        "then run:\n  dot -Tpng -Gdpi=150 pics/model.gv -o pics/model.png\n"
        "  see docs/errors.md#graphviznotfound\n"
    )


def test_render_without_dot_removes_an_older_picture_of_the_same_name(folder, capsys, no_dot):
    write(folder, "model.py", MODELS)
    (folder / "model.svg").write_text("the picture of yesterday's model")
    code, out, err = run(capsys, "render", "model.py")
    assert (code, out) == (3, "")
    assert not (folder / "model.svg").exists() and (folder / "model.gv").exists()
    assert err.startswith(
        "nnc render: Graphviz's dot program was not found, so model.svg was not "
        "drawn. The older model.svg was removed, so that it does not pass for a "
        "drawing of this model. Its Graphviz source is written to model.gv."
    )


# ----------------------------------------------------------------------------- summary and check


def test_summary_prints_the_table_and_the_total_that_init_creates(folder, capsys):
    write(folder, "model.py", MODELS)
    code, out, err = run(capsys, "summary", "model.py")
    assert (code, err) == (0, "")
    assert out == textwrap.dedent("""\
        model.py:model  Vec[4] -> Vec[4]
        path                            layer           input   output  params
        ------------------------------  --------------  ------  ------  ------
        linear_0                        Linear(4 -> 8)  Vec[4]  Vec[8]      40
        relu_0                          relu            Vec[8]  Vec[8]       0
        residual_0                      residual        Vec[8]  Vec[8]    (72)
          residual_0/serial_0/linear_0  Linear(8 -> 8)  Vec[8]  Vec[8]      72
          residual_0/serial_0/tanh_0    tanh            Vec[8]  Vec[8]       0
        linear_1                        Linear(8 -> 4)  Vec[8]  Vec[4]      36
        total: 148 parameters (592 B as float32)
        """)
    _, model = find_model("model.py")
    total = sum(leaf.size for leaf in nnc.tree_leaves(model.init(seed=0)))
    assert out.splitlines()[-1] == f"total: {total} parameters ({total * 4} B as float32)"


def test_check_reports_every_model_in_the_file(folder, capsys):
    write(folder, "model.py", MODELS)
    code, out, err = run(capsys, "check", "model.py")
    assert (code, err) == (0, "")
    assert out == (
        "ok  encoder  Vec[4] -> Vec[8]  (112 parameters)\n"
        "ok  decoder  Vec[8] -> Vec[4]  (36 parameters)\n"
        "ok  model    Vec[4] -> Vec[4]  (148 parameters)\n"
    )
    assert run(capsys, "check", "model.py:decoder")[1] == "ok  decoder  Vec[8] -> Vec[4]  (36 parameters)\n"


def test_check_fails_with_the_type_mismatch(folder, capsys):
    write(
        folder,
        "bad.py",
        """\
        from nnc import Linear, tanh

        good = Linear(2, 3) >> tanh
        model = Linear(2, 3) >> Linear(4, 1)
        """,
    )
    code, out, err = run(capsys, "check", "bad.py")
    assert (code, out) == (1, "")
    assert err == (
        "nnc check: bad.py raised TypeMismatch while loading:\n"
        "cannot compose at bad.py:4\n"
        "  Linear(2 -> 3) (created at bad.py:4) outputs Vec[3]\n"
        "  Linear(4 -> 1) (created at bad.py:4) expects Vec[4]\n"
        "  axis 0: size 3 differs from size 4\n"
        "  hint: Linear(None, n) infers its input size from what comes before it\n"
        "  see docs/errors.md#typemismatch\n"
    )


def test_check_says_when_sizes_are_not_known_yet(folder, capsys):
    write(folder, "open.py", "from nnc import Linear, tanh\nmodel = Linear(None, 3) >> tanh\n")
    code, out, _ = run(capsys, "check", "open.py")
    assert code == 0
    assert out == (
        "ok  model  Vec[n] -> Vec[3]  (parameters not known yet: linear_0/W has shape "
        "(n, 3); start the model with nnc.Input(Vec[n]) to fix its input size)\n"
    )


# ----------------------------------------------------------------------------- bad input


BAD = {
    "missing file": (
        {},
        ["render", "nope.py"],
        1,
        "nnc render: no such file: nope.py\n  see docs/errors.md#loaderror\n",
    ),
    "a folder": (
        {"pkg/x.py": ""},
        ["summary", "pkg"],
        1,
        "nnc summary: pkg is a folder; give a Python file that defines a model\n  see docs/errors.md#loaderror\n",
    ),
    "syntax error": (
        {"syn.py": "from nnc import tanh\nmodel = (tanh\n"},
        ["check", "syn.py"],
        1,
        "nnc check: syn.py:2: cannot parse syn.py: '(' was never closed: model = (tanh\n  see docs/errors.md#loaderror\n",
    ),
    "raises on import": (
        {"boom.py": "from nnc import tanh\nmodel = tanh\nratio = 1 / 0\n"},
        ["render", "boom.py"],
        1,
        "nnc render: boom.py:3: ZeroDivisionError: division by zero in `ratio = 1 / 0`, raised while "
        'loading boom.py (run as a module, without its `if __name__ == "__main__":` block, with its '
        "folder on sys.path)\n  see docs/errors.md#loaderror\n",
    ),
    "exits on import": (
        {"quit.py": "import sys\nsys.exit(4)\n"},
        ["summary", "quit.py"],
        1,
        "nnc summary: quit.py:2: SystemExit: 4 in `sys.exit(4)`, raised while loading quit.py (run as a "
        'module, without its `if __name__ == "__main__":` block, with its folder on sys.path)\n  see docs/errors.md#loaderror\n',
    ),
    "no model": (
        {"none.py": "from nnc import tanh, relu\nx = 1\n"},
        ["render", "none.py"],
        1,
        "nnc render: none.py assigns no nnc model at top level; define one, e.g. "
        "model = Linear(2, 4) >> tanh\n  see docs/errors.md#loaderror\n",
    ),
    "several models": (
        {"two.py": "from nnc import Linear\nenc = Linear(2, 3)\ndec = Linear(3, 2)\n"},
        ["render", "two.py"],
        1,
        "nnc render: two.py defines 2 nnc models and none is called 'model'; choose one as "
        "two.py:NAME, from: enc (line 2, Vec[2] -> Vec[3]), dec (line 3, Vec[3] -> Vec[2])\n  see docs/errors.md#loaderror\n",
    ),
    "no such name": (
        {"two.py": "from nnc import Linear\nenc = Linear(2, 3)\n"},
        ["summary", "two.py:decoder"],
        1,
        "nnc summary: two.py has no 'decoder'; its models are: enc (line 2, Vec[2] -> Vec[3])\n  see docs/errors.md#loaderror\n",
    ),
    "not a model": (
        {"two.py": "from nnc import Linear\nenc = Linear(2, 3)\nsize = 3\n"},
        ["render", "two.py:size"],
        1,
        "nnc render: size in two.py is a int, not an nnc model\n  see docs/errors.md#loaderror\n",
    ),
    "unknown suffix": (
        {"m.py": "from nnc import tanh\nmodel = tanh\n"},
        ["render", "m.py", "-o", "m.jpg"],
        2,
        "nnc render: cannot tell the format of 'm.jpg' from its suffix; use one ending in "
        ".svg, .png, .pdf, .gv, .dot, .html or give the format (svg, png, pdf, dot, html)\n"
        "  see docs/errors.md#rendererror\n",
    ),
    "suffix against format": (
        {"m.py": "from nnc import tanh\nmodel = tanh\n"},
        ["render", "m.py", "-o", "m.png", "-f", "svg"],
        2,
        "nnc render: the output 'm.png' ends in .png but the format asked for is svg; change one of them\n  see docs/errors.md#rendererror\n",
    ),
    "negative depth": (
        {"m.py": "from nnc import tanh\nmodel = tanh\n"},
        ["render", "m.py", "--depth", "-1"],
        2,
        "nnc render: --depth must be 0 or more, got -1\n",
    ),
    "picture to stdout": (
        {"m.py": "from nnc import tanh\nmodel = tanh\n"},
        ["render", "m.py", "-o", "-", "-f", "png"],
        2,
        "nnc render: only Graphviz source (-f dot) can be written to standard output\n",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gets_one_clear_message_and_an_exit_code(case, folder, capsys):
    files, argv, expected_code, expected_err = BAD[case]
    for name, source in files.items():
        write(folder, name, source)
    code, out, err = run(capsys, *argv)
    assert (code, out, err) == (expected_code, "", expected_err)


def test_a_wrong_command_line_is_a_usage_error(capsys):
    code, out, err = run(capsys, "render", "m.py", "--bogus")
    assert code == 2 and "unrecognized arguments: --bogus" in err
    code, _, err = run(capsys, "draw", "m.py")
    assert code == 2 and "invalid choice: 'draw'" in err


# ----------------------------------------------------------------------------- loading


def test_the_main_block_is_not_run_and_sibling_imports_work(folder, capsys, monkeypatch):
    write(folder, "nets/blocks.py", "from nnc import Linear, tanh\nhidden = Linear(3, 5) >> tanh\n")
    write(
        folder,
        "nets/net.py",
        """\
        from blocks import hidden
        from nnc import Linear

        model = hidden >> Linear(5, 2)

        if __name__ == "__main__":
            raise SystemExit("the main block ran")
        """,
    )
    path_before = list(sys.path)
    name, model = find_model("nets/net.py")
    assert (name, str(model.signature)) == ("model", "Vec[3] -> Vec[2]")
    assert sys.path == path_before
    assert run(capsys, "check", "nets/net.py")[0] == 0


def test_imported_models_are_not_the_files_models(folder):
    write(folder, "one.py", "from nnc import Linear, relu, tanh\nnet = Linear(2, 2) >> relu\n")
    assert [name for name, _, _ in load_file("one.py").models] == ["net"]
    assert find_model("one.py")[0] == "net"


def test_a_dotted_name_reaches_into_an_object(folder):
    write(
        folder,
        "zoo.py",
        """\
        from types import SimpleNamespace
        from nnc import Linear
        nets = SimpleNamespace(encoder=Linear(2, 3))
        """,
    )
    name, model = find_model("zoo.py:nets.encoder")
    assert (name, str(model.signature)) == ("nets.encoder", "Vec[2] -> Vec[3]")


def test_a_load_error_keeps_the_exception_the_file_raised(folder):
    write(folder, "boom.py", "raise KeyError('k')\n")
    with pytest.raises(LoadError) as info:
        load_file("boom.py")
    assert isinstance(info.value.cause, KeyError) and isinstance(info.value, nnc.NNCError)


def test_spec_splitting():
    assert split_spec("a/b.py:enc") == ("a/b.py", "enc")
    assert split_spec("a/b.py:nets.enc") == ("a/b.py", "nets.enc")
    assert split_spec(r"C:\models\b.py") == (r"C:\models\b.py", None)
    assert split_spec("b.py:") == ("b.py:", None)


# ----------------------------------------------------------------------------- as a program


def test_python_m_nnc_runs_the_command_in_its_own_process(folder):
    write(folder, "m.py", "from nnc import Linear, tanh\nmodel = Linear(2, 3) >> tanh\n")
    env = dict(os.environ, PATH=str(folder))  # no dot here
    done = subprocess.run(
        [sys.executable, "-m", "nnc", "render", "m.py"],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        timeout=120,
    )
    assert done.returncode == 3 and done.stdout == ""
    assert "dot -Tsvg m.gv -o m.svg" in done.stderr and (folder / "m.gv").exists()
    help_text = subprocess.run(
        [sys.executable, "-m", "nnc", "--help"], capture_output=True, text=True, cwd=folder, timeout=120
    )
    assert help_text.returncode == 0 and "{render,summary,check,export}" in help_text.stdout


def test_version_prints_the_package_version(capsys):
    code, out, err = run(capsys, "--version")
    assert (code, out, err) == (0, "nnc 0.1.0\n", "")
    assert out == f"nnc {importlib.metadata.version('nnc')}\n" == f"nnc {nnc.__version__}\n"


def test_the_console_script_is_declared():
    scripts = importlib.metadata.entry_points(group="console_scripts")
    assert [e.value for e in scripts if e.name == "nnc"] == ["nnc.cli:main"]
