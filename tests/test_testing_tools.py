"""The tools nnc offers its users for testing their own layers can catch real mistakes."""

import numpy as np
import pytest
from hypothesis import given

import nnc
from nnc.backend.core import PRIMITIVES, bind, defprim, defvjp
from nnc.testing import arrays_of, check_grads


@pytest.fixture
def wrong_square():
    prim = defprim("test_wrong_square", np.square)
    defvjp(prim, lambda g, out, x: (g * x,))  # should be 2 * g * x
    yield prim
    del PRIMITIVES["test_wrong_square"]


def test_check_grads_catches_a_wrong_rule(wrong_square):
    with pytest.raises(AssertionError, match="gradient of argument 0 is wrong along entry"):
        check_grads(lambda x: nnc.sum(bind(wrong_square, x)), np.array([1.0, 2.0]))


def test_check_grads_catches_a_wrong_rule_on_large_arrays_by_random_directions(wrong_square):
    with pytest.raises(AssertionError, match="random direction"):
        check_grads(lambda x: nnc.sum(bind(wrong_square, x)), np.ones(100))


def test_check_grads_passes_a_right_rule_on_a_parameter_tree():
    model = nnc.Linear(3, 2) >> nnc.tanh
    check_grads(lambda p, x: model(p, x), model.init(dtype=np.float64), np.ones((2, 3)))


@given(arrays_of(nnc.Mat["n", "n"], batch=2))
def test_arrays_of_respects_repeated_dimension_names(x):
    assert x.ndim == 3 and x.shape[0] == 2 and x.shape[1] == x.shape[2]
