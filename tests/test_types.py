"""Types, unification and inference at composition time."""

import pytest

import nnc
from nnc import Input, Linear, Mat, Tensor, Vec, concat, fanout, parallel, relu, residual, softmax, tanh
from nnc.types import Dim, Mismatch, TupleType, TypeVar, dim_prod, dim_sum, resolve, unify


def test_constructors_print_as_written():
    assert [repr(t) for t in (Vec[3], Mat[2, 5], Tensor[1, 8, 8], Vec["n"])] == [
        "Vec[3]",
        "Mat[2, 5]",
        "Tensor[1, 8, 8]",
        "Vec[n]",
    ]


def test_wrong_rank_for_constructor_is_a_type_error():
    with pytest.raises(TypeError, match="Vec takes 1 dimension"):
        Vec[2, 3]


def test_unify_binds_dimension_variables():
    n = Dim("n")
    s = {}
    unify(Mat[n, n], Mat[3, Dim()], s)
    assert resolve(Mat[n, n], s) == Mat[3, 3]


def test_unify_reports_the_axis_that_differs():
    with pytest.raises(Mismatch, match="axis 1: size 4 differs from size 5"):
        unify(Mat[3, 4], Mat[3, 5], {})


def test_unify_solves_sums_and_products():
    n, m = Dim("n"), Dim("m")
    s = {}
    unify(Vec[dim_sum([n, 3])], Vec[7], s)
    unify(Vec[dim_prod([m, 4])], Vec[12], s)
    assert resolve(Vec[n], s) == Vec[4] and resolve(Vec[m], s) == Vec[3]


def test_type_variables_take_whole_types():
    a = TypeVar("a")
    s = {}
    unify(TupleType((a, a)), TupleType((Vec[2], Vec[2])), s)
    assert resolve(a, s) == Vec[2]
    with pytest.raises(Mismatch, match="item 1: axis 0: size 2 differs from size 3"):
        unify(TupleType((a, a)), TupleType((Vec[2], Vec[3])), {})


def test_signature_of_the_issue_example():
    model = Linear(2, 4) >> nnc.logistic >> Linear(4, 1) >> nnc.logistic
    assert str(model.signature) == "Vec[2] -> Vec[1]"


def test_elementwise_layers_are_polymorphic():
    assert str(tanh.signature) == "a -> a"
    assert str((tanh >> relu).signature) == "a -> a"
    assert str(softmax.signature) == "Vec[n] -> Vec[n]"
    assert str((Input(Tensor[1, 8, 8]) >> relu).signature) == "Tensor[1, 8, 8] -> Tensor[1, 8, 8]"


def test_linear_none_infers_its_input_size():
    model = Input(Vec[64]) >> Linear(None, 128) >> tanh >> Linear(None, 10)
    assert str(model.signature) == "Vec[64] -> Vec[10]"
    assert repr(model) == "Input(Vec[64]) >> Linear(64 -> 128) >> tanh >> Linear(128 -> 10)"
    shapes = nnc.tree_map(lambda a: a.shape, model.init(seed=0))
    assert shapes == {"linear_0": {"W": (64, 128), "b": (128,)}, "linear_1": {"W": (128, 10), "b": (10,)}}


def test_unresolved_linear_keeps_a_variable_and_refuses_to_initialise():
    layer = Linear(None, 3)
    assert str(layer.signature) == "Vec[n] -> Vec[3]"
    with pytest.raises(nnc.InitError, match=r"cannot initialise W of Linear\(\? -> 3\)"):
        layer.init(seed=0)


def test_one_layer_value_used_twice_gets_independent_types():
    layer = Linear(None, 4)
    model = Input(Vec[3]) >> layer >> tanh >> layer
    assert repr(model) == "Input(Vec[3]) >> Linear(3 -> 4) >> tanh >> Linear(4 -> 4)"
    assert str(layer.signature) == "Vec[n] -> Vec[4]"  # the value itself is untouched


def test_combinator_signatures():
    assert str(parallel(Linear(2, 3), Linear(4, 5)).signature) == "(Vec[2], Vec[4]) -> (Vec[3], Vec[5])"
    assert str(fanout(Linear(3, 2), tanh).signature) == "Vec[3] -> (Vec[2], Vec[3])"
    assert str(residual(Linear(4, 4) >> tanh).signature) == "Vec[4] -> Vec[4]"
    assert str((fanout(Linear(3, 2), Linear(3, 5)) >> concat).signature) == "Vec[3] -> Vec[7]"
    assert str((fanout(Linear(3, 2), Linear(3, 2), Linear(3, 2)) >> nnc.add).signature) == "Vec[3] -> Vec[2]"


def test_concat_infers_sizes_flowing_forward():
    model = Input(Vec[3]) >> fanout(Linear(None, 2), tanh) >> concat >> Linear(None, 1)
    assert repr(model) == "Input(Vec[3]) >> fanout(Linear(3 -> 2), tanh) >> concat >> Linear(5 -> 1)"


def test_fanout_unifies_branch_inputs():
    model = fanout(Linear(None, 2), Linear(6, 1))
    assert str(model.signature) == "Vec[6] -> (Vec[2], Vec[1])"
