"""``nnc export``: the file it writes, what it prints, and its exit codes for each bad input."""

import builtins
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import nnc
from nnc.cli import main
from nnc.modelfile import find_model

MODELS = """\
from nnc import BatchNorm, Linear, lift, relu, tanh

model = Linear(4, 8) >> relu >> Linear(8, 2)
normalised = Linear(3, 4) >> BatchNorm(4)
custom = Linear(2, 2) >> lift(lambda x: x * 2.0)
"""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models.py").write_text(textwrap.dedent(MODELS))
    return tmp_path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def outputs(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_export_writes_the_model_beside_its_file_with_fresh_parameters(folder, capsys):
    code, out, err = run(capsys, "export", "models.py")
    assert (code, out, err) == (0, "models.onnx\n", "")
    _, model = find_model("models.py")

    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_allclose(outputs(folder / "models.onnx", x), model(model.init(seed=0), x), rtol=1e-5)


def test_export_of_a_named_model_with_trained_parameters_and_statistics(folder, capsys):
    _, normalised = find_model("models.py:normalised")

    params = normalised.init(seed=3)
    stats = {"batchnorm_0": {"mean": np.full(4, 0.5, np.float32), "var": np.full(4, 2.0, np.float32)}}
    nnc.save(folder / "trained.npz", normalised, params, stats=stats)
    code, out, err = run(capsys, "export", "models.py:normalised", "--params", "trained.npz", "-o", "bn.onnx")
    assert (code, out, err) == (0, "bn.onnx\n", "")
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    want = nnc.inference(normalised)(params, x, stats=stats)
    np.testing.assert_allclose(outputs(folder / "bn.onnx", x), want, rtol=1e-5, atol=1e-6)


def test_export_in_float64_and_a_later_opset(folder, capsys):
    code, _, _ = run(capsys, "export", "models.py", "--dtype", "float64", "--opset", "18", "-o", "m64.onnx")
    assert code == 0
    proto = onnx.load(str(folder / "m64.onnx"))
    assert proto.opset_import[0].version == 18
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE


def test_a_layer_without_an_onnx_form_is_exit_1_naming_it(folder, capsys):
    code, out, err = run(capsys, "export", "models.py:custom")
    assert code == 1 and out == ""
    assert err.startswith("nnc export: cannot export lift(fn) (created at ")
    assert "models.py:5" in err and "Traceback" not in err
    assert not (folder / "models_custom.onnx").exists()


def test_a_missing_model_file_is_exit_1(folder, capsys):
    code, _, err = run(capsys, "export", "nothing.py")
    assert (code, err.splitlines()[0]) == (1, "nnc export: no such file: nothing.py")


def test_parameters_of_another_model_are_exit_1(folder, capsys):
    _, normalised = find_model("models.py:normalised")

    nnc.save(folder / "other.npz", normalised, normalised.init(seed=0), stats=normalised.init_stats())
    code, _, err = run(capsys, "export", "models.py", "--params", "other.npz")
    assert code == 1 and err.startswith("nnc export: checkpoint other.npz was saved from a different model")
    assert "Traceback" not in err


def test_an_unwritable_output_is_exit_1(folder, capsys):
    code, _, err = run(capsys, "export", "models.py", "-o", "missing/m.onnx")
    assert code == 1 and err.startswith("nnc export: cannot write missing/m.onnx: No such file")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--opset", "12"], "--opset must be 17 or later, got 12"),
        (["--dtype", "float16"], "invalid choice: 'float16'"),
    ],
)
def test_a_wrong_command_line_is_exit_2(folder, capsys, argv, message):
    code, _, err = run(capsys, "export", "models.py", *argv)
    assert code == 2 and message in err


def test_without_onnx_the_command_says_how_to_install_it(folder, capsys, monkeypatch):
    real_import = builtins.__import__

    def without_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_onnx)
    code, out, err = run(capsys, "export", "models.py")
    assert code == 1 and out == ""
    assert err.startswith("nnc export: exporting to ONNX needs the onnx package")
    assert "hint: pip install 'nnc[onnx]'" in err
