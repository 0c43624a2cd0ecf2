"""ONNX export: how long ``nnc export`` takes, and onnxruntime's inference of the exported
digits MLP and CNN at batch 256 beside nnc's compiled inference.

- export: ``nnc export`` of the digits CNN (examples/digits_cnn.py's model) and of the
  transformer language model (examples/tutorial_09_names.py's: d 64, 4 heads, 4 blocks,
  16 tokens of 27), each from a model file holding just the model, timed as a command (a new
  Python process: importing nnc and onnx, loading the file, exporting, checking, writing;
  target: under 2 s each), and ``nnc.export`` alone, in this process.
- inference: ``nnc.compile(model)`` against ``onnxruntime.InferenceSession`` of the file
  ``nnc.export`` wrote (one intra-op thread, in a child process: libraries with their own
  thread pools must not share a process while timed, see timing.py), in alternating rounds,
  float32, batch 256; the ratio is onnxruntime / nnc compiled (below 1: onnxruntime is faster).

Run: python benchmarks/onnx_inference.py [--rounds N]   (needs nnc[onnx])
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from timing import ChildTimers, interleaved_samples, median_ratio

import nnc
from nnc import Input, Linear, Tensor, relu, softmax
from nnc.conv import Conv2d, flatten, max_pool

BATCH = 256

CNN_FILE = """\
from nnc import Input, Linear, Tensor, relu, softmax
from nnc.conv import Conv2d, flatten, max_pool

model = (Input(Tensor[1, 8, 8]) >> Conv2d(1, 16, 3, padding=1) >> relu >> Conv2d(16, 32, 3, padding=1)
         >> relu >> max_pool(2) >> flatten >> Linear(None, 10) >> softmax)
"""

LM_FILE = """\
from nnc import Dropout, Embedding, LayerNorm, Linear, PositionalEmbedding, SelfAttention, gelu, repeat, residual, softmax

d = 64
block = residual(LayerNorm(d) >> SelfAttention(d, heads=4, causal=True) >> Dropout(0.1)) >> residual(
    LayerNorm(d) >> Linear(d, 4 * d) >> gelu >> Linear(4 * d, d)
)
model = (Embedding(27, d) >> PositionalEmbedding(max_len=16, dim=d) >> repeat(block, 4) >> LayerNorm(d)
         >> Linear(d, 27) >> softmax)
"""


def mlp():
    return Linear(64, 128) >> relu >> Linear(128, 10) >> softmax  # examples/digits_mlp.py's


def cnn():
    return (
        Input(Tensor[1, 8, 8])
        >> Conv2d(1, 16, 3, padding=1)
        >> relu
        >> Conv2d(16, 32, 3, padding=1)
        >> relu
        >> max_pool(2)
        >> flatten
        >> Linear(None, 10)
        >> softmax
    )


MODELS = {"digits MLP": (mlp, (64,)), "digits CNN": (cnn, (1, 8, 8))}


def data(shape: tuple) -> np.ndarray:
    return np.random.default_rng(0).random((BATCH, *shape), dtype=np.float32)


def export_figures(folder: Path) -> None:
    print("export (median of 3):")
    for name, source in (("digits CNN", CNN_FILE), ("transformer LM", LM_FILE)):
        path = folder / f"{name.split()[-1].lower()}.py"
        path.write_text(textwrap.dedent(source))
        command = [sys.executable, "-m", "nnc", "export", str(path), "-o", str(folder / "out.onnx")]
        times = []
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        from nnc.modelfile import find_model

        _, model = find_model(str(path))
        params = model.init(seed=0)
        inner = []
        for _ in range(3):
            start = time.perf_counter()
            nnc.export(model, params, folder / "inner.onnx")
            inner.append(time.perf_counter() - start)
        size = (folder / "inner.onnx").stat().st_size / 1e6
        command_s, inner_s = sorted(times)[1], sorted(inner)[1]
        verdict = "ok" if command_s < 2 else "SLOW"
        print(
            f"  {name:15} nnc export (command): {command_s:.2f} s [{verdict}: target < 2 s]; "
            f"nnc.export alone: {inner_s * 1e3:.0f} ms; file {size:.2f} MB"
        )


def child() -> None:
    """The child's side: onnxruntime sessions of the exported models, served to the parent."""
    import onnxruntime as ort
    from timing import serve_timings

    contenders = {}
    for name, (make, shape) in MODELS.items():
        model = make()
        proto = nnc.export(model, model.init(seed=0))
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        # idle threads that spin between calls would take the core the parent's nnc runs on
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        x = data(shape)
        contenders[name] = lambda s=session, x=x: s.run(None, {"input": x})
    serve_timings(contenders)


def inference_figures(rounds: int) -> None:
    timers = ChildTimers.start(__file__, needs="onnxruntime")
    if timers is None:
        print("onnxruntime is not installed: pip install 'nnc[onnx]'")
        return
    with timers:
        for name, (make, shape) in MODELS.items():
            model = make()
            params, x = model.init(seed=0), data(shape)
            predict = nnc.compile(model)
            start = time.perf_counter()
            predict(params, x)  # compiles, or loads from the disk cache
            first = time.perf_counter() - start
            samples = interleaved_samples(
                {"nnc compiled": lambda: predict(params, x), "onnxruntime": timers.contender(name)},
                rounds=rounds,
                number=20,
            )
            ours = np.median(samples["nnc compiled"]) * 1e3
            theirs = np.median(samples["onnxruntime"]) * 1e3
            ratio = median_ratio(samples, "onnxruntime", "nnc compiled")
            print(
                f"  {name}, batch {BATCH}: nnc compiled {ours:.3f} ms, onnxruntime (1 thread) {theirs:.3f} ms; "
                f"onnxruntime / nnc compiled {ratio:.2f} (nnc's first call {first:.2f} s)"
            )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--timing-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.timing_child:
        child()
        return
    with tempfile.TemporaryDirectory() as folder:
        export_figures(Path(folder))
    print(f"inference, float32 ({args.rounds} rounds of 20 calls):")
    inference_figures(args.rounds)


if __name__ == "__main__":
    main(sys.argv[1:])
