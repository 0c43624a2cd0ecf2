"""ONNX export: drawn models of every family, exported, run in onnxruntime and compared with
nnc's own output (float32 within 1e-5, float64 within 1e-10, relative to the output's scale),
at batch sizes of 1 and more; the graph's structure and names; and the errors."""

import builtins
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnc
from nnc import (
    GRU,
    LSTM,
    BatchNorm,
    Dropout,
    Embedding,
    Input,
    LayerNorm,
    Linear,
    PositionalEmbedding,
    RMSNorm,
    SelfAttention,
    Seq,
    Tensor,
    Vec,
    add,
    concat,
    fanout,
    fcrnn,
    fix_state,
    gelu,
    gelu_tanh,
    lagged,
    learned_state,
    log_softmax,
    logistic,
    padded,
    parallel,
    recurrently,
    relu,
    repeat,
    residual,
    silu,
    softmax,
    tanh,
    unroll,
    unroll_last,
    zero_state,
)
from nnc.conv import Conv2d, avg_pool, flatten, max_pool

TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}
ACTIVATIONS = [tanh, relu, logistic, gelu, gelu_tanh, silu]
dtypes = st.sampled_from([np.float32, np.float64])
seeds = st.integers(0, 2**16)


def session(proto: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def leaves(value):
    return [v for item in value for v in leaves(item)] if isinstance(value, tuple) else [value]


def random_stats(model, dtype, rng):
    stats = model.init_stats(dtype)
    return nnc.tree_map(lambda v: (rng.uniform(0.5, 2.0, v.shape) * np.sign(v + 0.5)).astype(dtype), stats)


def check(model, make_input, dtype, seed, batches=(1, 5), **options):
    """Export ``model`` once, run it at each batch size in onnxruntime, compare with nnc."""
    rng = np.random.default_rng(seed)
    # biases start at zero: moved off it, so that a bias in the wrong place shows
    params = nnc.tree_map(
        lambda v: v + rng.normal(0.0, 0.3, v.shape).astype(dtype), model.init(seed=seed % 1000, dtype=dtype)
    )
    stats = random_stats(model, dtype, rng) if model.keeps_stats else None
    proto = nnc.export(model, params, stats=stats, dtype=dtype, **options)
    run = session(proto)
    names = [i.name for i in run.get_inputs()]
    evaluate = nnc.inference(model)
    for batch in batches:
        x = make_input(batch, rng)
        xs = [np.asarray(v).astype(dtype) if np.asarray(v).dtype.kind == "f" else v for v in leaves(x)]
        got = run.run(None, dict(zip(names, xs)))
        want = leaves(evaluate(params, x, stats=stats) if stats is not None else evaluate(params, x))
        assert len(got) == len(want)
        for g, w in zip(got, want):
            w = np.asarray(w)
            assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
            scale = max(1.0, float(np.abs(w).max(initial=0.0)))
            error = float(np.abs(g.astype(np.float64) - w).max(initial=0.0)) / scale
            assert error <= TOLERANCE[np.dtype(dtype)], f"relative error {error:.3g} at batch {batch}"
    return proto


def normal(*shape):
    return lambda batch, rng: rng.normal(size=(batch, *shape))


# ----------------------------------------------------------------------------- drawn models


@st.composite
def mlps(draw):
    n = n_in = draw(st.integers(1, 5))
    model = Input(Vec[n_in])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["linear", "activation", "layernorm", "rmsnorm", "batchnorm", "dropout"]))
        if kind == "linear":
            k = draw(st.integers(1, 6))
            model = model >> Linear(n, k, bias=draw(st.booleans()))
            n = k
        elif kind == "activation":
            model = model >> draw(st.sampled_from(ACTIVATIONS))
        elif kind == "layernorm":
            model = model >> LayerNorm(n, scale=draw(st.booleans()), bias=draw(st.booleans()))
        elif kind == "rmsnorm":
            model = model >> RMSNorm(n, eps=draw(st.sampled_from([None, 1e-5])))
        elif kind == "batchnorm":
            model = model >> BatchNorm(n, scale=draw(st.booleans()), bias=draw(st.booleans()))
        else:
            model = model >> Dropout(0.5)
    model = model >> Linear(n, draw(st.integers(2, 4)))
    end = draw(st.sampled_from([None, softmax, log_softmax]))
    return (model if end is None else model >> end), normal(n_in)


@st.composite
def cnns(draw):
    shape = draw(st.integers(1, 3)), draw(st.integers(5, 9)), draw(st.integers(5, 9))
    model = Input(Tensor[shape])
    for _ in range(draw(st.integers(1, 2))):
        c, h, w = model.out_type.dims
        k, stride, pad, dil = (
            draw(st.integers(1, 3)),
            draw(st.integers(1, 2)),
            draw(st.integers(0, 1)),
            draw(st.integers(1, 2)),
        )
        if min(h, w) + 2 * pad < dil * (k - 1) + 1:
            k, dil = 1, 1
        c_out = draw(st.integers(1, 4))
        model = model >> Conv2d(
            c, c_out, k, stride=stride, padding=pad, dilation=dil, bias=draw(st.booleans())
        )
        model = model >> draw(st.sampled_from([relu, tanh, BatchNorm(c_out)]))
        if min(model.out_type.dims[1:]) >= 2 and draw(st.booleans()):
            pool = draw(st.sampled_from([max_pool, avg_pool]))
            model = model >> pool(draw(st.integers(1, 2)), stride=draw(st.integers(1, 2)))
    return model >> flatten >> Linear(None, draw(st.integers(1, 4))) >> softmax, normal(*shape)


def _cell(draw, n_in):
    kind = draw(st.sampled_from(["fcrnn", "LSTM", "GRU", "chain", "two", "recurrently", "lagged"]))
    h = draw(st.integers(1, 4))
    if kind == "fcrnn":
        return fcrnn(n_in, h, draw(st.sampled_from(["tanh", "logistic"])))
    if kind == "LSTM":
        return LSTM(n_in, h)
    if kind == "GRU":
        return GRU(n_in, h, reset=draw(st.sampled_from(["before", "after"])))
    if kind == "chain":
        cell = draw(st.sampled_from([LSTM(3, h), GRU(3, h), GRU(3, h, reset="after"), fcrnn(3, h)]))
        return Linear(n_in, 3) >> tanh >> cell >> Linear(h, 2)
    if kind == "two":
        return LSTM(n_in, h) >> GRU(h, 2)
    if kind == "recurrently":
        return Input(Vec[n_in]) >> recurrently(concat >> Linear(None, h) >> tanh)
    lags = draw(st.integers(1, 3))
    return lagged(lags, Linear(lags * n_in, h))


@st.composite
def recurrent_models(draw):
    dtype = draw(dtypes)  # fix_state's value takes the parameters' dtype
    n_in = draw(st.integers(1, 3))
    cell = _cell(draw, n_in)
    sequence = draw(st.sampled_from([unroll, unroll_last]))(cell)
    wrap = draw(st.sampled_from(["zero", "learned", "fix"]))
    if (
        wrap == "zero"
        or isinstance(sequence.state_type, nnc.types.TupleType)
        and any(isinstance(t, nnc.types.TupleType) for t in sequence.state_type.items)
    ):  # fix_state takes one state or a flat tuple of them
        model = zero_state(sequence)
    elif wrap == "learned":
        model = learned_state(sequence)
    else:
        shapes = [tuple(int(d) for d in t.dims) for t in leaves(_state_types(sequence.state_type))]
        values = [np.random.default_rng(1).normal(size=s).astype(dtype) for s in shapes]
        model = fix_state(tuple(values) if len(values) > 1 else values[0], sequence)
    steps = draw(st.integers(1, 4))
    return model, (lambda batch, rng: rng.normal(size=(batch, steps, n_in))), draw(st.booleans()), dtype


def _state_types(t):
    return tuple(_state_types(i) for i in t.items) if isinstance(t, nnc.types.TupleType) else t


@st.composite
def transformers(draw):
    # d >= 4: LayerNorm over 2 features amplifies rounding ~100 times, so that two float32
    # implementations (nnc's own against float64: 1.4e-5) differ by more than 1e-5
    vocab, heads = draw(st.integers(3, 9)), draw(st.integers(1, 2))
    d = heads * draw(st.integers(4 // heads, 4))
    causal = draw(st.booleans())
    block = residual(
        LayerNorm(d) >> SelfAttention(d, heads=heads, causal=causal) >> Dropout(0.1)
    ) >> residual(LayerNorm(d) >> Linear(d, 2 * d) >> gelu >> Linear(2 * d, d))
    lm = (
        Embedding(vocab, d)
        >> PositionalEmbedding(max_len=6, dim=d, kind=draw(st.sampled_from(["learned", "sinusoidal"])))
        >> repeat(block, draw(st.integers(1, 2)))
        >> LayerNorm(d)
        >> Linear(d, vocab)
        >> softmax
    )
    steps = draw(st.integers(1, 6))

    def tokens(batch, rng):
        return rng.integers(0, vocab, size=(batch, steps))

    if draw(st.booleans()):
        return lm, tokens

    def with_lengths(batch, rng):
        return tokens(batch, rng), rng.integers(0, steps + 1, size=batch)

    return padded(lm), with_lengths


@st.composite
def combinations(draw):
    n = draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["fanout_add", "fanout_concat", "parallel", "residual", "each", "tensors"]))
    if kind == "fanout_add":
        model = Input(Vec[n]) >> fanout(Linear(n, 3) >> tanh, Linear(n, 3), Linear(n, 3) >> relu) >> add
        return model, normal(n)
    if kind == "fanout_concat":
        model = Input(Vec[n]) >> fanout(Linear(n, 2), silu) >> concat >> Linear(None, 2)
        return model, normal(n)
    if kind == "parallel":
        model = fanout(Linear(n, 2), Linear(n, 3)) >> parallel(Linear(2, 2) >> tanh, Linear(3, 2)) >> add
        return model, normal(n)
    if kind == "residual":
        model = residual(Linear(n, n) >> relu) >> residual(residual(Linear(n, n)) >> LayerNorm(n))
        return model, normal(n)
    if kind == "each":
        steps = draw(st.integers(1, 3))
        model = Input(Seq[Vec[n]]) >> Linear(n, 3) >> gelu >> residual(Linear(3, 3)) >> softmax
        return model, normal(steps, n)
    model = Input(Tensor[2, 5, 5]) >> fanout(Conv2d(2, 3, 3, padding=1), Conv2d(2, 2, 1)) >> concat >> flatten
    return model, normal(2, 5, 5)


@given(mlps(), dtypes, seeds)
@settings(max_examples=40)
def test_drawn_mlps_run_in_onnxruntime_as_in_nnc(case, dtype, seed):
    model, make = case
    check(model, make, dtype, seed)


@given(cnns(), dtypes, seeds)
@settings(max_examples=25)
def test_drawn_cnns_run_in_onnxruntime_as_in_nnc(case, dtype, seed):
    model, make = case
    check(model, make, dtype, seed, batches=(1, 3))


@given(recurrent_models(), seeds)
@settings(max_examples=50)
def test_drawn_recurrent_models_run_in_onnxruntime_as_in_nnc(case, seed):
    model, make, native, dtype = case
    check(model, make, dtype, seed, batches=(1, 4), native_recurrent=native)


@given(transformers(), dtypes, seeds)
@settings(max_examples=25)
def test_drawn_transformers_run_in_onnxruntime_as_in_nnc(case, dtype, seed):
    model, make = case
    check(model, make, dtype, seed, batches=(1, 3))


@given(combinations(), dtypes, seeds)
@settings(max_examples=30)
def test_drawn_combinations_run_in_onnxruntime_as_in_nnc(case, dtype, seed):
    model, make = case
    check(model, make, dtype, seed, batches=(1, 4))


# ----------------------------------------------------------------------------- structure and names


def lm_and_params():
    block = residual(LayerNorm(8) >> SelfAttention(8, heads=2, causal=True) >> Dropout(0.1)) >> residual(
        LayerNorm(8) >> Linear(8, 16) >> gelu >> Linear(16, 8)
    )
    lm = (
        Embedding(7, 8)
        >> PositionalEmbedding(max_len=6, dim=8)
        >> repeat(block, 2)
        >> Linear(8, 7)
        >> softmax
    )
    return lm, lm.init(seed=0)


def test_initialisers_are_named_by_the_parameter_paths():
    model = Linear(3, 4) >> tanh >> residual(Linear(4, 4) >> relu) >> Linear(4, 2)
    params = model.init(seed=0)
    proto = nnc.export(model, params)
    assert sorted(i.name for i in proto.graph.initializer) == sorted(p for p, _ in nnc.tree_paths(params))
    for init in proto.graph.initializer:
        value = dict(nnc.tree_paths(params))[init.name]
        assert np.array_equal(onnx.numpy_helper.to_array(init), value)
    assert proto.graph.node[0].name.startswith("linear_0/Gemm")


def test_nested_blocks_are_local_functions_named_by_their_paths():
    lm, params = lm_and_params()
    proto = nnc.export(lm, params)
    assert {f.name for f in proto.functions} == {
        "repeat_0",
        "repeat_0/0",
        "repeat_0/1",
        "repeat_0/0/residual_0",
        "repeat_0/0/residual_1",
        "repeat_0/1/residual_0",
        "repeat_0/1/residual_1",
    }
    assert {f.domain for f in proto.functions} == {"nnc"}
    assert {(o.domain, o.version) for o in proto.opset_import} == {("", 17), ("nnc", 1)}
    calls = [n for n in proto.graph.node if n.domain == "nnc"]
    assert [n.op_type for n in calls] == ["repeat_0"]
    # the function takes its parameters as inputs, fed by the initialisers of those paths
    assert "repeat_0/1/residual_1/serial_0/linear_1/W" in calls[0].input


def test_fanout_and_parallel_are_functions_with_one_output_per_branch():
    model = fanout(Linear(2, 3), tanh) >> parallel(Linear(3, 1), Linear(2, 1)) >> add
    proto = nnc.export(model, model.init(seed=0))
    outputs = {f.name: len(f.output) for f in proto.functions}
    assert outputs == {"fanout_0": 2, "parallel_0": 2}


def test_every_edge_carries_its_shape_with_a_symbolic_batch_axis():
    lm, params = lm_and_params()
    proto = nnc.export(lm, params)
    shapes = {v.name: v.type.tensor_type.shape for v in proto.graph.value_info}
    produced = [o for n in proto.graph.node for o in n.output if n.op_type != "Identity" or o != "output"]
    missing = [o for o in produced if o not in shapes and o != "output"]
    assert missing == []
    [x] = proto.graph.input
    assert [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim] == ["batch", "time"]
    assert x.type.tensor_type.elem_type == onnx.TensorProto.INT64
    [y] = proto.graph.output
    assert [d.dim_param or d.dim_value for d in y.type.tensor_type.shape.dim] == ["batch", "time", 7]
    out_of_repeat = next(n.output[0] for n in proto.graph.node if n.op_type == "repeat_0")
    assert [d.dim_param or d.dim_value for d in shapes[out_of_repeat].dim] == ["batch", "time", 8]


@pytest.mark.parametrize(
    "cell, op", [(fcrnn(2, 3), "RNN"), (LSTM(2, 3), "LSTM"), (GRU(2, 3), "GRU")], ids=["fcrnn", "LSTM", "GRU"]
)
def test_cells_become_onnx_recurrent_operators_in_float32_and_scan_in_float64(cell, op):
    model = zero_state(unroll_last(cell >> Linear(3, 1)))
    ops32 = {n.op_type for n in nnc.export(model, model.init(seed=0)).graph.node}
    ops64 = {n.op_type for n in nnc.export(model, model.init(seed=0, dtype=np.float64)).graph.node}
    assert op in ops32 and "Scan" not in ops32
    assert "Scan" in ops64 and op not in ops64
    ops = {n.op_type for n in nnc.export(model, model.init(seed=0), native_recurrent=False).graph.node}
    assert "Scan" in ops and op not in ops


@pytest.mark.parametrize("native", [True, False])
def test_recurrent_models_inside_blocks_read_their_weights_through_the_functions(native):
    model = (
        Input(Seq[Vec[3]])
        >> residual(zero_state(unroll(GRU(3, 3))))
        >> fanout(zero_state(unroll_last(LSTM(3, 2))), learned_state(unroll_last(fcrnn(3, 2))))
        >> add
    )
    proto = check(model, normal(4, 3), np.float32, 0, native_recurrent=native)
    assert [f.name for f in proto.functions] == ["residual_0", "fanout_0"]
    ops = {n.op_type for f in proto.functions for n in f.node}
    assert ({"GRU", "LSTM", "RNN"} <= ops) == native and ("Scan" in ops) != native


@pytest.mark.parametrize("reset, linear_before_reset", [("before", 0), ("after", 1)])
def test_gru_is_onnx_gru_with_the_reset_gate_where_nnc_applies_it(reset, linear_before_reset):
    model = zero_state(unroll(GRU(2, 3, reset=reset)))
    proto = check(model, normal(5, 2), np.float32, 0)
    [gru] = [n for n in proto.graph.node if n.op_type == "GRU"]
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in gru.attribute}
    assert attributes["linear_before_reset"] == linear_before_reset


def test_the_file_is_written_and_is_the_model_returned(tmp_path):
    model = Linear(2, 3) >> softmax
    params = model.init(seed=0)
    proto = nnc.export(model, params, tmp_path / "m.onnx")
    assert onnx.load(str(tmp_path / "m.onnx")) == proto
    x = np.ones((4, 2), np.float32)
    [y] = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": x})
    np.testing.assert_allclose(y, model(params, x), rtol=1e-6)


def test_tuple_inputs_and_outputs_are_numbered():
    model = parallel(Linear(2, 3), Linear(4, 1))
    proto = nnc.export(model, model.init(seed=0))
    assert [i.name for i in proto.graph.input] == ["input_0", "input_1"]
    assert [o.name for o in proto.graph.output] == ["output_0", "output_1"]


def test_a_later_opset_is_written_when_asked():
    model = Input(Vec[3]) >> RMSNorm(3) >> Linear(3, 2)
    proto = nnc.export(model, model.init(seed=0), opset=18)
    assert proto.opset_import[0].version == 18
    x = np.random.default_rng(0).normal(size=(3, 3)).astype(np.float32)
    [y] = session(proto).run(None, {"input": x})
    np.testing.assert_allclose(y, model(model.init(seed=0), x), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- what does not export


def test_a_python_function_is_an_export_error_naming_the_layer():
    model = Linear(2, 2) >> nnc.lift(lambda x: x * 2.0)
    with pytest.raises(nnc.ExportError) as info:
        nnc.export(model, model.init(seed=0))
    message = str(info.value)
    assert message.startswith("cannot export lift(fn) (created at ")
    assert "test_export.py" in message and "Python function" in message


def test_a_cell_is_refused_with_how_to_make_it_stateless():
    with pytest.raises(
        nnc.ExportError, match=r"fcrnn\(2 -> 3\).*recurrent cell.*\n  hint: export a stateless"
    ):
        nnc.export(fcrnn(2, 3), fcrnn(2, 3).init(seed=0))


def test_a_function_is_refused_with_what_to_export_instead():
    with pytest.raises(
        nnc.ExportError, match=r"takes an nnc model, got the function feedback\n  hint: .*feedback's"
    ):
        nnc.export(nnc.feedback, {})


def test_a_model_of_any_type_needs_its_input_declared():
    with pytest.raises(
        nnc.ExportError,
        match=r"cannot export tanh to ONNX: its input type a has no fixed rank\n  hint: declare it: nnc.Input",
    ):
        nnc.export(tanh, {})
    proto = nnc.export(Input(Vec[3]) >> tanh, {}, dtype=np.float64)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE


def test_sizes_the_model_leaves_open_stay_open_in_the_file():
    model = Conv2d(2, 3, 3, padding=1) >> relu >> max_pool(2)  # any height and width
    params = model.init(seed=0)
    proto = nnc.export(model, params)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[:2] == ["batch", 2] and all(isinstance(d, str) for d in dims[2:])
    for size in [(4, 4), (7, 5)]:
        x = np.random.default_rng(0).normal(size=(2, 2, *size)).astype(np.float32)
        [y] = session(proto).run(None, {"input": x})
        np.testing.assert_allclose(y, model(params, x), rtol=1e-5, atol=1e-6)


def test_batchnorm_without_its_statistics_is_refused():
    model = Linear(2, 3) >> BatchNorm(3)
    with pytest.raises(nnc.ExportError, match="running statistics .* no stats were given"):
        nnc.export(model, model.init(seed=0))


def test_parameters_of_another_model_are_refused():
    with pytest.raises(nnc.ShapeError, match="missing 'linear_0/W'"):
        nnc.export(Linear(2, 3) >> tanh, {"W": np.ones((2, 3))})


@pytest.mark.parametrize("opset", [12, "17", True])
def test_an_opset_before_17_is_refused(opset):
    with pytest.raises(nnc.ExportError, match="opset must be an int >= 17"):
        nnc.export(Linear(2, 3), Linear(2, 3).init(seed=0), opset=opset)


def test_an_unwritable_path_is_an_export_error(tmp_path):
    with pytest.raises(nnc.ExportError, match="cannot write .*missing"):
        nnc.export(Linear(2, 3), Linear(2, 3).init(seed=0), tmp_path / "missing" / "m.onnx")


def test_without_onnx_the_error_says_how_to_install_it(monkeypatch):
    real_import = builtins.__import__

    def without_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_onnx)
    with pytest.raises(nnc.ExportError, match=r"needs the onnx package.*\n  hint: pip install 'nnc\[onnx\]'"):
        nnc.export(Linear(2, 3), Linear(2, 3).init(seed=0))


def test_importing_nnc_does_not_import_onnx():
    code = "import sys, nnc; nnc.export; print('onnx' in sys.modules, 'onnxruntime' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
