"""PyTorch weights load into the equivalent nnc models and compute what PyTorch computed.

The PyTorch models, their state dicts (``tests/golden/torch_*.safetensors``) and their outputs
on fixed inputs (``tests/golden/torch_*.npz``) come from ``tests/golden/make_torch_weights.py``;
these tests need no torch (one test, of torch's own file format, runs where torch is).
"""

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

import nnc
from nnc import (
    GRU,
    LSTM,
    BatchNorm,
    CheckpointError,
    Conv2d,
    Embedding,
    Input,
    LayerNorm,
    Linear,
    SelfAttention,
    Tensor,
    fcrnn,
    flatten,
    load_torch,
    relu,
    residual,
    tanh,
    unroll,
    zero_state,
)

GOLDEN = Path(__file__).parent / "golden"
ENCODER_MAPPING = {"embed": "embedding_0", "attn": "residual_0/selfattention_0", "norm": "layernorm_0"}


def mlp():
    return Linear(4, 8) >> tanh >> Linear(8, 3)


def cnn():
    return (
        Input(Tensor[2, 5, 5])
        >> Conv2d(2, 4, 3, padding=1)
        >> BatchNorm(4)
        >> relu
        >> flatten
        >> Linear(None, 3)
    )


def encoder():
    return Embedding(11, 8) >> residual(SelfAttention(8, 2)) >> LayerNorm(8)


# name -> (the equivalent nnc model, the mapping it needs for the safetensors file)
MODELS = {
    "mlp": (mlp, None),
    "cnn": (cnn, None),
    "rnn": (lambda: zero_state(unroll(fcrnn(3, 4))), None),
    "lstm": (lambda: zero_state(unroll(LSTM(3, 5) >> LSTM(5, 5))), None),  # nn.LSTM(num_layers=2)
    "gru": (lambda: zero_state(unroll(GRU(3, 5, reset="after"))), None),
    # the file's names sort attn, embed, norm: not the model's order, so they are named
    "encoder": (encoder, ENCODER_MAPPING),
}


def golden(name):
    with np.load(GOLDEN / f"torch_{name}.npz") as data:
        return data["x"], data["y"], [str(k) for k in data["order"]]


def run(model, params, stats, x):
    if model.keeps_stats:
        return nnc.inference(model)(params, x, stats=stats)
    return model(params, x)


def state_dict(name):
    """The state dict as PyTorch's model.state_dict() ordered it, as numpy arrays."""
    arrays = safetensors.numpy.load_file(str(GOLDEN / f"torch_{name}.safetensors"))
    return {k: arrays[k] for k in golden(name)[2]}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_safetensors_file_of_pytorch_weights_computes_what_pytorch_computed(name):
    make, mapping = MODELS[name]
    model = make()
    x, y, _ = golden(name)
    loaded = load_torch(model, GOLDEN / f"torch_{name}.safetensors", mapping=mapping, stats=True)
    params, stats = loaded
    assert {leaf.dtype for leaf in nnc.tree_leaves(params)} == {np.dtype(np.float32)}
    out = run(model, params, stats, x)
    assert out.shape == y.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_state_dict_in_pytorchs_order_matches_by_position(name):
    model = MODELS[name][0]()
    x, y, _ = golden(name)
    params, stats = load_torch(model, state_dict(name), stats=True)  # no mapping: a dict keeps its order
    np.testing.assert_allclose(run(model, params, stats, x), y, rtol=1e-5, atol=1e-6)


def test_a_mapping_can_name_each_tensor():
    model = encoder()
    x, y, _ = golden("encoder")
    mapping = {
        "embed.weight": "embedding_0/W",
        "attn.in_proj_weight": "residual_0/selfattention_0/W_qkv",
        "attn.in_proj_bias": "residual_0/selfattention_0/b_qkv",
        "attn.out_proj.weight": "residual_0/selfattention_0/W_out",
        "attn.out_proj.bias": "residual_0/selfattention_0/b_out",
    }  # the LayerNorm is left to position: the tensors left are norm's
    params = load_torch(model, GOLDEN / "torch_encoder.safetensors", mapping=mapping)
    np.testing.assert_allclose(model(params, x), y, rtol=1e-5, atol=1e-6)


def test_the_layouts_nnc_and_pytorch_differ_in_are_converted():
    state = state_dict("gru")
    params = load_torch(zero_state(unroll(GRU(3, 5, reset="after"))), state)
    n = 5
    w_ih, b_ih, b_hh = state["rnn.weight_ih_l0"], state["rnn.bias_ih_l0"], state["rnn.bias_hh_l0"]
    # PyTorch's gates are reset, update, candidate; nnc's update, reset, candidate
    np.testing.assert_array_equal(params["Wx"][:, :n], w_ih[n : 2 * n].T)
    np.testing.assert_array_equal(params["Wx"][:, n : 2 * n], w_ih[:n].T)
    np.testing.assert_array_equal(params["b"][:n], b_ih[n : 2 * n] + b_hh[n : 2 * n])
    np.testing.assert_array_equal(params["b"][2 * n :], b_ih[2 * n :])  # b_hn is not summed in
    np.testing.assert_array_equal(params["bh"], b_hh[2 * n :])
    lin = load_torch(mlp(), state_dict("mlp"))
    np.testing.assert_array_equal(lin["linear_0"]["W"], state_dict("mlp")["0.weight"].T)
    conv, stats = load_torch(cnn(), state_dict("cnn"), stats=True)
    np.testing.assert_array_equal(conv["conv2d_0"]["W"], state_dict("cnn")["0.weight"])  # the same layout
    np.testing.assert_array_equal(stats["batchnorm_0"]["var"], state_dict("cnn")["1.running_var"])
    assert sorted(stats["batchnorm_0"]) == ["mean", "var"]  # num_batches_tracked is dropped


def test_without_stats_only_the_parameters_are_returned_and_the_count_may_be_absent():
    state = state_dict("cnn")
    del state["1.num_batches_tracked"]
    params = load_torch(cnn(), state)
    assert sorted(params) == ["batchnorm_0", "conv2d_0", "linear_0"]
    assert sorted(params["batchnorm_0"]) == ["bias", "scale"]


def test_every_tensor_that_does_not_fit_is_reported_in_one_error():
    model = Linear(4, 6) >> tanh >> Linear(6, 3) >> LayerNorm(3)
    state = state_dict("mlp")
    state["extra.weight"] = np.ones((2, 2), np.float32)  # the next module: taken for the LayerNorm's
    state["later.weight"] = np.ones(3, np.float32)  # nothing left to take it
    with pytest.raises(CheckpointError) as info:
        load_torch(model, state)
    assert str(info.value) == (
        "cannot load the state dict of 6 tensors into Linear(4 -> 6) >> tanh >> Linear(6 -> 3) >> LayerNorm(3) "
        f"(created at {model.created_at})\n"
        "  linear_0 (Linear(4 -> 6)): '0.weight' has shape (8, 4), expected (6, 4)\n"
        "  linear_0 (Linear(4 -> 6)): '0.bias' has shape (8,), expected (6,)\n"
        "  linear_1 (Linear(6 -> 3)): '2.weight' has shape (3, 8), expected (3, 6)\n"
        "  layernorm_0 (LayerNorm(3)): 'extra.weight' has shape (2, 2), expected (3,)\n"
        "  layernorm_0 (LayerNorm(3)): missing 'bias' (shape (3,))\n"
        "  unused: 'later.weight' (3,)\n"
        "  hint: name PyTorch's modules or tensors for nnc's layers or parameters with "
        "mapping={\"torch.name\": \"nnc/path\"}; the layers: 'linear_0' Linear(4 -> 6), 'linear_1' Linear(6 -> 3), "
        "'layernorm_0' LayerNorm(3)\n"
        "  see docs/errors.md#checkpointerror"
    )


def test_when_the_order_no_longer_lines_up_the_rest_is_named():
    model = Linear(4, 8) >> tanh >> LSTM(8, 3) >> Linear(3, 3)
    with pytest.raises(CheckpointError) as info:
        load_torch(model, state_dict("mlp"))
    lines = str(info.value).splitlines()
    assert lines[1:4] == [
        "  lstm_0 (LSTM(8 -> 3)): expects PyTorch tensors weight_ih_l0 (12, 8), weight_hh_l0 (12, 3), "
        "bias_ih_l0 (12,), bias_hh_l0 (12,), but the next one is '2.weight' (3, 8)",
        "  not matched, as the order no longer lines up: linear_1 (Linear(3 -> 3)) (name their PyTorch "
        "modules with mapping=)",
        "  unused: '2.weight' (3, 8), '2.bias' (3,)",
    ]


def test_missing_tensors_and_a_bias_the_model_has_not_are_named():
    state = state_dict("mlp")
    del state["2.bias"]
    with pytest.raises(CheckpointError) as info:
        load_torch(Linear(4, 8, bias=False) >> tanh >> Linear(8, 3), state)
    lines = str(info.value).splitlines()
    assert "  linear_1 (Linear(8 -> 3)): missing 'bias' (shape (3,))" in lines
    assert "  unused: '0.bias' (8,)" in lines  # left over, and linear_1 still takes 2.weight
    assert len([line for line in lines if line.startswith("  linear")]) == 1


def test_pytorchs_gru_is_refused_by_nncs_own_gru_saying_why():
    model = zero_state(unroll(GRU(3, 5)))
    with pytest.raises(CheckpointError) as info:
        load_torch(model, GOLDEN / "torch_gru.safetensors")
    assert (
        "  the model (GRU(3 -> 5)): torch.nn.GRU applies its reset gate after the recurrent map, "
        "n = tanh(x W_in + b_in + r * (h W_hn + b_hn)), this GRU before it, tanh(x Wn + bn + (r * h) Uh): "
        "they compute different functions, so PyTorch's weights cannot be loaded into it exactly; build the "
        'layer as GRU(n_in, n_hidden, reset="after"), which computes PyTorch\'s form\n'
    ) in str(info.value)


def test_layers_without_a_pytorch_counterpart_are_named():
    model = zero_state(unroll(fcrnn(3, 4, activation="logistic")))
    with pytest.raises(CheckpointError, match=r"fcrnn with activation 'logistic' has no PyTorch counterpart"):
        load_torch(model, state_dict("rnn"))


def test_mapping_mistakes_are_reported_together():
    model = encoder()
    mapping = {
        "embed": "embedding_9",
        "attn.in_proj_weight": "residual_0/selfattention_0/W_out",
        "nothing": "layernorm_0",
    }
    with pytest.raises(CheckpointError) as info:
        load_torch(model, GOLDEN / "torch_encoder.safetensors", mapping=mapping)
    text = str(info.value)
    assert (
        "  mapping 'embed': 'embedding_9' is not a layer or parameter of the model (its layers: "
        "'embedding_0', 'residual_0/selfattention_0', 'layernorm_0')\n"
    ) in text
    assert (
        "  mapping 'attn.in_proj_weight': residual_0/selfattention_0 (SelfAttention(8, heads=2, head size 4)) "
        "takes PyTorch tensors named 'out_proj.weight' into W_out, not 'attn.in_proj_weight'\n"
    ) in text
    assert "  mapping 'nothing': no tensor of that name or under that module in the state dict\n" in text


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (np.float64, np.float64),  # kept
        (np.float16, np.float32),  # computed in float32
    ],
)
def test_the_weights_dtype_is_kept_or_widened_to_float32(given, expected):
    state = {k: v.astype(given) for k, v in state_dict("mlp").items()}
    params = load_torch(mlp(), state)
    assert {leaf.dtype for leaf in nnc.tree_leaves(params)} == {np.dtype(expected)}
    as32 = load_torch(mlp(), state, dtype=np.float32)
    assert {leaf.dtype for leaf in nnc.tree_leaves(as32)} == {np.dtype(np.float32)}


def test_integer_weights_and_entries_that_are_not_tensors_are_refused():
    state = state_dict("mlp")
    state["0.bias"] = state["0.bias"].astype(np.int64)
    with pytest.raises(
        CheckpointError,
        match=r"linear_0 \(Linear\(4 -> 8\)\): '0.bias' has dtype int64, expected floating point",
    ):
        load_torch(mlp(), state)
    with pytest.raises(CheckpointError, match=r"holds entries that are not tensors: '0.weight' is a str"):
        load_torch(mlp(), {**state_dict("mlp"), "0.weight": "weights"})
    with pytest.raises(CheckpointError, match=r"dtype must be float32 or float64, got int32"):
        load_torch(mlp(), state_dict("mlp"), dtype=np.int32)


def test_paths_of_other_kinds_or_that_do_not_exist_are_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"load_torch cannot tell the format of .*weights.npz"):
        load_torch(mlp(), tmp_path / "weights.npz")
    with pytest.raises(nnc.CheckpointNotFound, match=r"there is no file at .*absent.safetensors"):
        load_torch(mlp(), tmp_path / "absent.safetensors")
    with pytest.raises(CheckpointError, match=r"load_torch takes a state dict .* not a int"):
        load_torch(mlp(), 3)


def test_a_pt_file_without_torch_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    (tmp_path / "weights.pt").write_bytes(b"PK not read")
    with pytest.raises(CheckpointError) as info:
        load_torch(mlp(), tmp_path / "weights.pt")
    assert str(info.value) == (
        f"cannot read {tmp_path / 'weights.pt'}: .pt and .pth files are read with torch.load, and torch is not "
        "installed\n"
        "  hint: pip install torch; or, where PyTorch is, save the weights as .safetensors "
        "(safetensors.torch.save_file(module.state_dict(), 'weights.safetensors')), which nnc reads without "
        "torch (pip install 'nnc[safetensors]')\n"
        "  see docs/errors.md#checkpointerror"
    )


def test_a_safetensors_file_without_the_package_says_what_to_install(monkeypatch):
    for name in ("safetensors", "safetensors.numpy"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(
        CheckpointError,
        match=r"files need the safetensors package, which is not installed\n  hint: pip install 'nnc\[safetensors\]'",
    ):
        load_torch(mlp(), GOLDEN / "torch_mlp.safetensors")
    params = load_torch(
        mlp(), state_dict_of_arrays := {k: np.asarray(v) for k, v in state_dict("mlp").items()}
    )
    np.testing.assert_array_equal(params["linear_1"]["b"], state_dict_of_arrays["2.bias"])


def fake_torch(saved: dict, calls: list) -> types.ModuleType:
    """A stand-in for torch (not a test dependency): tensors wrapping arrays, and a ``load`` that
    records how it was called and reads what ``saved`` holds for a path (raising for a path
    it holds an exception for, as torch.load does for a pickled module under weights_only)."""
    torch = types.ModuleType("torch")

    class Tensor:
        def __init__(self, array):
            self.array, self.dtype = array, array.dtype

        def detach(self):
            return self

        def cpu(self):
            return self

        def numpy(self):
            return self.array

    Tensor.__module__ = "torch"
    torch.Tensor, torch.bfloat16 = Tensor, object()

    def load(path, map_location=None, weights_only=False):
        calls.append((str(path), map_location, weights_only))
        found = saved[str(path)]
        if isinstance(found, Exception):
            raise found
        return {k: Tensor(v) for k, v in found.items()}

    torch.load = load
    return torch


def test_pt_files_are_read_with_weights_only_and_torch_tensors_converted(tmp_path, monkeypatch):
    calls: list = []
    pt, module = str(tmp_path / "mlp.pt"), str(tmp_path / "module.pt")
    for path in (pt, module):
        open(path, "wb").close()
    refusal = RuntimeError("Weights only load failed. Unsupported global: torch.nn.Linear")
    torch = fake_torch({pt: state_dict("mlp"), module: refusal}, calls)
    monkeypatch.setitem(sys.modules, "torch", torch)
    x, y, _ = golden("mlp")
    np.testing.assert_allclose(mlp()(load_torch(mlp(), pt), x), y, rtol=1e-5, atol=1e-6)
    assert calls == [(pt, "cpu", True)]  # never unpickles code: weights_only=True, always
    tensors = {k: torch.Tensor(v) for k, v in state_dict("mlp").items()}
    np.testing.assert_allclose(mlp()(load_torch(mlp(), tensors), x), y, rtol=1e-5, atol=1e-6)
    with pytest.raises(
        CheckpointError, match=r"module.pt cannot be read by torch.load\(weights_only=True\) \(Runtime"
    ):
        load_torch(mlp(), module)


def decoded(path):
    """The one array of the safetensors file ``path``, as nnc reads it, shaped (1, 2)."""
    from nnc.safetensors_format import decode

    ((_, array),) = decode(path)[1].items()
    return array.reshape(1, 2)


def bfloat16_file(path):
    """A safetensors file of one bfloat16 tensor, written by hand (numpy has no bfloat16)."""
    header = json.dumps({"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\x80\x3f\x80\x3f")


def test_bfloat16_weights_and_nnc_checkpoints_are_named_for_what_they_are(tmp_path):
    bfloat16_file(tmp_path / "bf16.safetensors")
    if importlib.util.find_spec("ml_dtypes") is not None:  # numpy reads bfloat16: widened exactly
        params = load_torch(Linear(2, 1, bias=False), {"weight": decoded(tmp_path / "bf16.safetensors")})
        assert params["W"].dtype == np.float32 and params["W"].ravel().tolist() == [1.0, 1.0]
    else:
        with pytest.raises(CheckpointError) as info:
            load_torch(Linear(2, 1, bias=False), tmp_path / "bf16.safetensors")
        assert str(info.value) == (
            f"{tmp_path / 'bf16.safetensors'} holds bfloat16 tensors, which numpy cannot represent\n"
            "  hint: convert them where PyTorch is: save_file({k: v.float() for k, v in state_dict.items()}, path)\n"
            "  see docs/errors.md#checkpointerror"
        )
    model = mlp()
    nnc.save(tmp_path / "nnc.safetensors", model, model.init(seed=0))
    with pytest.raises(
        CheckpointError,
        match=r"nnc.safetensors is an nnc checkpoint, not PyTorch weights\n  hint: load it with nnc.load\(path, model\)",
    ):
        load_torch(model, tmp_path / "nnc.safetensors")
