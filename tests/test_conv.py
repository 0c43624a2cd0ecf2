"""Convolutional layers: sizes computed while composing, golden messages for impossible
sizes, values against the numpy reference, and a small CNN that learns."""

import inspect
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nnc
from nnc import Input, Linear, Mat, Tensor, relu, softmax
from nnc.backend import windows
from nnc.conv import Conv2d, avg_pool, flatten, max_pool
from nnc.kernels import reference
from nnc.types import ArgumentError

HERE = os.path.relpath(__file__)


def line() -> int:
    return inspect.currentframe().f_back.f_lineno


def issue_cnn():
    return (
        Input(Tensor[1, 8, 8])
        >> Conv2d(1, 16, 3, padding=1)
        >> relu
        >> max_pool(2)
        >> flatten
        >> Linear(None, 10)
        >> softmax
    )


def test_the_inner_sizes_are_computed_while_composing():
    cnn = issue_cnn()
    assert str(cnn.signature) == "Tensor[1, 8, 8] -> Vec[10]"
    assert [str(c.signature) for c in cnn.children] == [
        "Tensor[1, 8, 8] -> Tensor[1, 8, 8]",
        "Tensor[1, 8, 8] -> Tensor[16, 8, 8]",
        "Tensor[16, 8, 8] -> Tensor[16, 8, 8]",
        "Tensor[16, 8, 8] -> Tensor[16, 4, 4]",
        "Tensor[16, 4, 4] -> Vec[256]",
        "Vec[256] -> Vec[10]",
        "Vec[10] -> Vec[10]",
    ]
    assert nnc.tree_map(np.shape, cnn.init(seed=0)) == {
        "conv2d_0": {"W": (16, 1, 3, 3), "b": (16,)},
        "linear_0": {"W": (256, 10), "b": (10,)},
    }


def test_models_print_their_options():
    cnn = issue_cnn()
    assert repr(cnn) == (
        "Input(Tensor[1, 8, 8]) >> Conv2d(1 -> 16, 3x3, padding=1) >> relu >> "
        "max_pool(2) >> flatten >> Linear(256 -> 10) >> softmax"
    )
    assert (
        repr(Conv2d(3, 8, (3, 5), stride=2, padding=(1, 2), dilation=2, bias=False))
        == "Conv2d(3 -> 8, 3x5, stride=2, padding=(1, 2), dilation=2, bias=False)"
    )
    assert repr(Conv2d(None, 4, 1)) == "Conv2d(? -> 4, 1x1)"
    assert [repr(m) for m in (max_pool((2, 3)), avg_pool(3, stride=1), max_pool(2, (1, 2)))] == [
        "max_pool((2, 3))",
        "avg_pool(3, stride=1)",
        "max_pool(2, stride=(1, 2))",
    ]


@st.composite
def geometries(draw):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    return k, stride, padding, dilation, h, w


@given(geometries())
def test_composed_sizes_are_the_sizes_the_layer_computes(geometry):
    k, stride, padding, dilation, h, w = geometry
    ho = (h + 2 * padding[0] - dilation[0] * (k[0] - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (k[1] - 1) - 1) // stride[1] + 1
    layer = Conv2d(2, 3, k, stride, padding, dilation)
    if ho < 1 or wo < 1:
        with pytest.raises(nnc.TypeMismatch, match="is larger than the padded input"):
            Input(Tensor[2, h, w]) >> layer
        return
    model = Input(Tensor[2, h, w]) >> layer
    assert model.out_type == Tensor[3, ho, wo]
    y = model(model.init(seed=0, dtype=np.float64), np.ones((2, 2, h, w)))
    assert y.shape == (2, 3, ho, wo)


def test_an_impossible_convolution_is_a_type_mismatch_naming_the_layer():
    made = line() + 1
    conv = Conv2d(1, 4, 5, padding=1)
    with pytest.raises(nnc.TypeMismatch) as info:
        at = line() + 1
        Input(Tensor[1, 2, 3]) >> conv
    assert str(info.value) == (
        f"cannot compose at {HERE}:{at}\n"
        f"  Conv2d(1 -> 4, 5x5, padding=1) (created at {HERE}:{made}) cannot take Tensor[1, 2, 3]:\n"
        f"  its 5x5 kernel is larger than the padded input 4x5 (2x3 with padding 1x1)\n"
        f"  hint: pad the input (padding=k//2 keeps the size), or use a smaller kernel or dilation\n"
        f"  see docs/errors.md#typemismatch"
    )


def test_a_dilated_kernel_names_its_span():
    with pytest.raises(
        nnc.TypeMismatch,
        match=r"its 3x3 kernel \(dilation 3x3, spanning 7x7\) is "
        r"larger than the padded input 5x5",
    ):
        Input(Tensor[1, 5, 5]) >> Conv2d(1, 4, 3, dilation=3)


def test_a_pooling_window_larger_than_the_image_is_a_type_mismatch():
    made = line() + 1
    pool = avg_pool(4)
    with pytest.raises(nnc.TypeMismatch) as info:
        at = line() + 1
        Input(Tensor[3, 3, 8]) >> pool
    assert str(info.value) == (
        f"cannot compose at {HERE}:{at}\n"
        f"  avg_pool(4) (created at {HERE}:{made}) cannot take Tensor[3, 3, 8]:\n"
        f"  its 4x4 window is larger than the 3x8 input\n"
        f"  hint: use a smaller window, or pad before pooling with a Conv2d(padding=...)\n"
        f"  see docs/errors.md#typemismatch"
    )


def test_wrong_channels_are_a_composition_mismatch():
    with pytest.raises(
        nnc.TypeMismatch,
        match=r"expects Tensor\[3, 8, 8\]\n  axis 0: size 1 differs "
        r"from size 3",
    ):
        Input(Tensor[1, 8, 8]) >> Conv2d(3, 4, 3)


def test_channels_and_flattened_sizes_are_inferred():
    model = Input(Tensor[3, 10, 10]) >> Conv2d(None, 4, 3) >> flatten >> Linear(None, 2)
    assert str(model.signature) == "Tensor[3, 10, 10] -> Vec[2]"
    assert nnc.tree_map(np.shape, model.init())["conv2d_0"]["W"] == (4, 3, 3, 3)
    assert str((Input(Mat[3, 4]) >> flatten).signature) == "Mat[3, 4] -> Vec[12]"
    assert str(flatten.signature) == "Tensor[c, h, w] -> Vec[(c * h * w)]"


def test_unknown_image_sizes_wait_for_an_input_declaration():
    model = Conv2d(1, 4, 3) >> flatten >> Linear(None, 2)
    assert str(model.signature) == "Tensor[1, h, w] -> Vec[2]"
    with pytest.raises(nnc.InitError, match="is not known yet"):
        model.init()


def test_a_layer_runs_the_reference_convolution_and_adds_its_bias():
    rng = np.random.default_rng(0)
    layer = Conv2d(2, 3, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2))
    params = layer.init(seed=1, dtype=np.float64)
    params["b"] = rng.standard_normal(3)
    x = rng.standard_normal((4, 2, 7, 6))
    expected = reference.conv2d(x, params["W"], (2, 1), (1, 1), (1, 2)) + params["b"][:, None, None]
    np.testing.assert_allclose(layer(params, x), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer(params, x[1]), expected[1], rtol=1e-12, atol=1e-12)


def test_pooling_and_flatten_values():
    x = np.arange(2 * 4 * 5, dtype=np.float32).reshape(1, 2, 4, 5)
    np.testing.assert_array_equal(max_pool(2)(x)[0, 0], [[6, 8], [16, 18]])
    np.testing.assert_array_equal(avg_pool(2, stride=(2, 3))(x)[0, 1], [[23.0, 26.0], [33.0, 36.0]])
    np.testing.assert_array_equal(max_pool((1, 5))(x[0])[:, :, 0], [[4, 9, 14, 19], [24, 29, 34, 39]])
    assert flatten(x).shape == (1, 40) and flatten(x[0]).shape == (40,)
    np.testing.assert_array_equal(flatten(x)[0], x.ravel())


def test_calling_with_a_wrong_image_size_names_the_layer_and_the_axis():
    cnn = issue_cnn()
    with pytest.raises(
        nnc.ShapeError,
        match=r"input of shape \(2, 1, 9, 8\) does not fit input_0: "
        r"Input\(Tensor\[1, 8, 8\]\) .*\n  axis -2: expected size 8, "
        r"got 9",
    ):
        cnn(cnn.init(seed=0), np.ones((2, 1, 9, 8)))
    layer = Conv2d(1, 4, 3)
    with pytest.raises(
        nnc.ShapeError,
        match=r"does not fit Conv2d\(1 -> 4, 3x3\) .* which expects "
        r"Tensor\[1, h, w\].*\n  axis -3: expected size 1, got 3",
    ):
        layer(layer.init(seed=0), np.ones((2, 3, 8, 8)))


def test_primitives_refuse_bad_images_with_clear_errors():
    with pytest.raises(
        nnc.ShapeError,
        match=r"conv2d: the images have 2 channels but the filters of "
        r"shape \(4, 3, 3, 3\) expect 3",
    ):
        windows.conv2d(np.ones((1, 2, 5, 5)), np.ones((4, 3, 3, 3)))
    with pytest.raises(
        nnc.ShapeError,
        match=r"conv2d: expected images of shape \(batch, channels, "
        r"height, width\) or \(channels, height, width\), got "
        r"shape \(5, 5\)",
    ):
        windows.conv2d(np.ones((5, 5)), np.ones((4, 3, 3, 3)))
    with pytest.raises(
        nnc.ShapeError,
        match=r"conv2d: a 3x3 kernel \(dilation \(2, 2\)\) does not fit "
        r"images of 4x4 with padding \(0, 0\): the output would "
        r"be 0x0",
    ):
        windows.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), dilation=2)
    with pytest.raises(nnc.ShapeError, match="max_pool: a 3x3 window does not fit images of 2x5"):
        windows.max_pool(np.ones((1, 2, 5)), 3)
    with pytest.raises(nnc.ShapeError, match="expected floating-point images, got dtype int64"):
        windows.avg_pool(np.ones((1, 1, 4, 4), dtype=np.int64), 2)
    with pytest.raises(
        ArgumentError,
        match=r"Conv2d \(created at .*\): stride must be an int >= 1 "
        r"or a \(rows, cols\) pair of them, got 0\n",
    ):
        Conv2d(1, 2, 3, stride=0)
    # still a TypeError, as it was before nnc had its own errors
    with pytest.raises(
        TypeError,
        match=r"Conv2d \(created at .*\): c_out must be a positive int, "
        r"got None\n",
    ):
        Conv2d(1, None, 3)


def test_a_small_cnn_learns_and_repeats_itself_bit_for_bit():
    """Bright-top versus bright-bottom images: a linear read-out of learned filters separates them."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 64)
    images = rng.normal(0, 0.3, (64, 1, 6, 6)).astype(np.float32)
    images[labels == 0, :, :3] += 1.0
    images[labels == 1, :, 3:] += 1.0
    model = (
        Input(Tensor[1, 6, 6])
        >> Conv2d(1, 4, 3, padding=1)
        >> relu
        >> avg_pool(2)
        >> flatten
        >> Linear(None, 2)
        >> softmax
    )
    step = nnc.value_and_grad(lambda p, x, y: nnc.cross_entropy(model(p, x), y))

    def train(seed):
        params, losses = model.init(seed=seed), []
        for _ in range(60):
            loss, grads = step(params, images, labels)
            params = nnc.tree_map(lambda p, g: p - 0.5 * g, params, grads)
            losses.append(float(loss))
        return params, losses

    params, losses = train(3)
    assert losses[-1] < 0.25 * losses[0]
    accuracy = (model(params, images).argmax(axis=1) == labels).mean()
    assert accuracy > 0.95
    again, _ = train(3)
    for a, b in zip(nnc.tree_leaves(params), nnc.tree_leaves(again)):
        np.testing.assert_array_equal(a, b)
