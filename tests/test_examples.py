"""Every example runs as a script, with fast settings but the real code path.

Each runs from a copy in a scratch folder (so its pictures land there, not in
``examples/``), with ``NNC_EXAMPLE_FAST=1``, and must print what it promises and write
the files it says. The full settings run in a Jupyter kernel when the docs are built.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def run_example(name: str, folder: Path) -> str:
    shutil.copy(ROOT / "examples" / name, folder / name)
    env = {**os.environ, "NNC_EXAMPLE_FAST": "1", "NNC_EXAMPLE_OUT": str(folder)}
    done = subprocess.run(
        [sys.executable, name], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in the output:\n{text}"
    return float(found.group(1))


def assert_pictures(folder: Path, *names: str) -> None:
    for name in names:
        data = (folder / name).read_bytes()
        if name.endswith(".png"):
            assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000, name
        else:
            assert b"<svg" in data and b"</svg>" in data, name


def xor(out, folder):
    predictions = [float(p) for p in re.findall(r"\] -> ([\d.]+)", out)]
    assert [round(p) for p in predictions] == [0, 1, 1, 0]
    assert_pictures(folder, "xor.svg")


def mlp(out, folder):
    assert out.startswith("Vec[64] -> Vec[10]\n")
    assert "total: 4,522 parameters" in out


def digits_mlp(out, folder):
    assert number(r"test accuracy: ([\d.]+)", out) > 0.9
    assert "loading into another model: checkpoint" in out and "different model" in out
    assert_pictures(folder, "digits_curves.png")
    assert (folder / "digits.npz").stat().st_size > 10_000


def digits_cnn(out, folder):
    assert "signature: Tensor[1, 8, 8] -> Vec[10]" in out
    assert "its 5x5 kernel is larger than the padded input 4x4" in out
    assert number(r"test accuracy: ([\d.]+)", out) > 0.85


def tutorial_01(out, folder):
    assert number(r"learned W \[([-\d.]+)\]", out) == pytest.approx(2.0, abs=0.05)
    assert number(r"b \[([-\d.]+)\]", out) == pytest.approx(-1.0, abs=0.05)
    assert number(r"([\d.]+) after 60 steps", out) < 0.02  # the noise's variance is 0.01
    assert_pictures(folder, "tutorial_01_model.svg", "tutorial_01_curve.png")


def tutorial_02(out, folder):
    assert "signature: Vec[2] -> Vec[1]" in out
    assert number(r"accuracy: ([\d.]+)", out) > 0.95
    assert_pictures(folder, "tutorial_02_model.svg", "tutorial_02_curve.png", "tutorial_02_boundary.png")


def tutorial_03(out, folder):
    assert number(r"network: accuracy ([\d.]+)", out) > number(r"regression: accuracy ([\d.]+)", out)
    assert "Linear(8 -> 1) (created at tutorial_03_network.py:" in out and "expects Vec[8]" in out
    assert_pictures(folder, "tutorial_03_model.svg", "tutorial_03_curve.png", "tutorial_03_boundaries.png")


def tutorial_04(out, folder):
    assert "total: 4,810 parameters" in out
    assert number(r"test accuracy: ([\d.]+)", out) > 0.85
    assert_pictures(
        folder,
        "tutorial_04_samples.png",
        "tutorial_04_model.svg",
        "tutorial_04_curve.png",
        "tutorial_04_mistakes.png",
    )


def tutorial_05(out, folder):
    assert "flatten_0   flatten                          Tensor[16, 4, 4]  Vec[256]" in out
    assert "its 5x5 kernel is larger than the padded input 4x4" in out
    assert number(r"test accuracy: ([\d.]+)", out) > 0.8
    assert "filters: (16, 3, 3)  feature maps of one image: (16, 8, 8)" in out
    assert_pictures(folder, "tutorial_05_model.svg", "tutorial_05_curve.png", "tutorial_05_filters.png")


def tutorial_06(out, folder):
    coefficients = re.search(r"learned \(a, b\): \[\s*([-\d.]+)\s+([-\d.]+)\]", out).groups()
    assert [float(c) for c in coefficients] == pytest.approx([-1.0, 1.9107], abs=0.01)
    assert "signature: Seq[Vec[1]] -> Vec[1]" in out
    assert number(r"validation mse: ([\d.]+)", out) < 0.05
    assert_pictures(
        folder,
        "tutorial_06_ar_model.svg",
        "tutorial_06_ar_curve.png",
        "tutorial_06_model.svg",
        "tutorial_06_curve.png",
        "tutorial_06_prediction.png",
    )


def tutorial_07(out, folder):
    assert "cell:  Vec[1] -> Vec[1], state Vec[16]" in out
    assert number(r"largest error over 40 generated steps: ([\d.]+)", out) < 0.3
    assert_pictures(folder, "tutorial_07_model.svg", "tutorial_07_curve.png", "tutorial_07_generated.png")


def tutorial_08(out, folder):
    assert "signature: a -> a, key" in out
    assert "draws random numbers in training, but the call gave no key" in out
    assert "signature: Vec[3] -> Vec[3], stats" in out and "new running mean: [0.3 3.  0. ]" in out
    assert "normalises over a batch in training, but was given one example of shape (3,)" in out
    assert "with:    Tensor[1, 8, 8] -> Vec[10], stats" in out and "with:    Vec[64] -> Vec[10], key" in out
    assert "and 32 running statistics, not trained (model.init_stats())" in out
    assert number(r"test accuracy, CNN with BatchNorm: ([\d.]+)", out) > 0.8
    assert number(r"test accuracy, MLP with Dropout: ([\d.]+)", out) > 0.8
    assert number(r"inference form, alone or in a batch of 100: differs by ([-\de.+]+)", out) < 1e-5
    assert "reloaded: the same predictions, bit for bit" in out
    assert_pictures(folder, "tutorial_08_dropout.png", "tutorial_08_cnn.svg", "tutorial_08_curves.png")


def tutorial_09(out, folder):
    assert "32033 names: 25626 training, 3203 validation, 3204 test" in out
    assert "target [19  5  3  9 12 25  0 -1 -1 -1 -1 -1 -1 -1 -1 -1]   ('secily')" in out
    assert "the cell: Vec[10] -> Vec[27], state Vec[20]" in out
    assert "signature: Seq[Index[27]] -> Seq[Vec[27]], key" in out  # the transformer, with Dropout
    uniform = number(r"uniform\s+0\s+([\d.]+)", out)
    assert uniform == pytest.approx(3.2958, abs=1e-4)
    losses = {
        m: number(rf"test loss, {m}: ([\d.]+) nats/char", out)
        for m in ("bigram", "MLP", "LSTM", "transformer")
    }
    assert all(value < uniform for value in losses.values()), losses
    assert losses["bigram"] < 2.8 and losses["transformer"] < 2.6, losses
    # the counted table is the bigram's optimum; its trained table gets near it
    assert losses["bigram"] == pytest.approx(number(r"the counted table: ([\d.]+) nats/char", out), abs=0.1)
    names = re.search(r"samples, transformer: (.*)", out).group(1).split(", ")
    assert len(names) == 10 and sum(bool(re.fullmatch("[a-z]{1,15}", n)) for n in names) >= 8, names
    assert_pictures(
        folder,
        "tutorial_09_bigram.svg",
        "tutorial_09_mlp.svg",
        "tutorial_09_lstm.svg",
        "tutorial_09_transformer.svg",
        "tutorial_09_curves.png",
    )


def tutorial_10(out, folder):
    assert number(r"the chain rule by hand: ([\d.e+-]+)", out) < 1e-12
    assert "gradient reaching tanh's output equals g_h: True" in out
    assert "gradient reaching the first Linear's output equals g_a: True" in out
    assert "the gradient step of lift_0: lift(sqrt) (created at tutorial_10_backward.py:" in out
    assert_pictures(folder, "tutorial_10_forward.svg", "tutorial_10_backward.svg", "tutorial_10_ops.svg")
    backward = (folder / "tutorial_10_backward.svg").read_text()
    assert "linear_1" in backward and "dW" in backward  # a gradient step, a parameter's gradient


CHECKS = {
    "xor.py": xor,
    "mlp.py": mlp,
    "digits_mlp.py": digits_mlp,
    "digits_cnn.py": digits_cnn,
    "tutorial_01_linear_regression.py": tutorial_01,
    "tutorial_02_logistic_regression.py": tutorial_02,
    "tutorial_03_network.py": tutorial_03,
    "tutorial_04_digits.py": tutorial_04,
    "tutorial_05_convolution.py": tutorial_05,
    "tutorial_06_time_series.py": tutorial_06,
    "tutorial_07_generation.py": tutorial_07,
    "tutorial_08_normalization.py": tutorial_08,
    "tutorial_09_names.py": tutorial_09,
    "tutorial_10_backward.py": tutorial_10,
}


def test_every_example_is_checked():
    assert sorted(CHECKS) == [p.name for p in EXAMPLES]


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_example_runs_and_prints_what_it_promises(name, tmp_path):
    CHECKS[name](run_example(name, tmp_path), tmp_path)


@pytest.mark.parametrize("name", [p.name for p in EXAMPLES])
def test_the_example_is_a_percent_format_notebook(name):
    import jupytext

    notebook = jupytext.read(ROOT / "examples" / name)
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds[0] == "markdown" and notebook.cells[0].source.startswith("# ")
    assert "code" in kinds
