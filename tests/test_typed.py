"""nnc types as annotations, checked by typeguard, in scripts and notebook cells."""

import numpy as np
import pytest
import typeguard

import nnc
from nnc import Mat, Vec


@nnc.typed
def affine(x: Vec[3], W: Mat[3, 4]) -> Vec[4]:
    return x @ W


@nnc.typed
def pair(a: Vec["n"], b: Vec["n"]) -> Vec["n"]:
    return a + b


def test_typed_accepts_matching_shapes_single_and_batched():
    assert affine(np.ones(3), np.ones((3, 4))).shape == (4,)
    assert affine(np.ones((5, 3)), np.ones((3, 4))).shape == (5, 4)


def test_typed_names_function_argument_and_expected_type():
    with pytest.raises(nnc.ShapeError) as info:
        affine(np.ones(5), np.ones((3, 4)))
    message = str(info.value)
    assert message.startswith("affine (defined at ")
    assert message.endswith(
        "argument 'x' has shape (5,), expected Vec[3]: an array of shape (3,) or (batch, 3)"
        "\n  see docs/errors.md#shapeerror"
    )


def test_named_dimensions_bind_across_arguments():
    assert pair(np.ones(2), np.ones(2)).shape == (2,)
    with pytest.raises(
        nnc.ShapeError, match=r"argument 'b' has shape \(3,\), but n is 2 elsewhere in this call"
    ):
        pair(np.ones(2), np.ones(3))


def test_return_value_is_checked():
    @nnc.typed
    def wrong(x: Vec["n"]) -> Vec[2]:
        return np.concatenate([x, x])

    with pytest.raises(nnc.ShapeError, match="return value has shape"):
        wrong(np.ones(3))


def test_typeguard_check_type_understands_nnc_types():
    typeguard.check_type(np.ones((2, 3)), Mat[2, 3])
    with pytest.raises(typeguard.TypeCheckError, match=r"has shape \(3, 3\)"):
        typeguard.check_type(np.ones((3, 3)), Mat[2, 3])


def test_typed_works_where_source_code_is_unavailable_like_a_notebook_cell():
    cell = (
        "import numpy as np\n"
        "import nnc\n"
        "from nnc import Vec\n"
        "@nnc.typed\n"
        "def f(x: Vec['n']) -> Vec['n']:\n"
        "    return x * 2\n"
        "ok = f(np.ones(3))\n"
        "try:\n"
        "    f(np.ones((2, 2, 2)))\n"
        "except nnc.ShapeError as err:\n"
        "    message = str(err)\n"
    )
    namespace = {}
    exec(compile(cell, "<ipython-input-7-0123456789ab>", "exec"), namespace)
    np.testing.assert_array_equal(namespace["ok"], 2 * np.ones(3))
    assert "defined at <ipython-input-7-0123456789ab>:4" in namespace["message"]
    assert "argument 'x' has shape (2, 2, 2)" in namespace["message"]


def test_string_annotations_from_future_import_work():
    namespace = {}
    exec(
        compile(
            "from __future__ import annotations\nimport nnc\nfrom nnc import Vec\n"
            "@nnc.typed\ndef g(x: Vec[2]) -> Vec[2]:\n    return x\n",
            "<cell>",
            "exec",
        ),
        namespace,
    )
    with pytest.raises(nnc.ShapeError, match="argument 'x' has shape"):
        namespace["g"](np.ones(3))
