"""Every gradient case of the suite, re-run on array_api_strict arrays on a non-default device.

array_api_strict refuses anything outside the array API and refuses to hand a device
array to numpy, so a primitive or gradient rule that silently falls back to numpy fails
here. Values and gradients must equal the numpy ones, which the gradient suites check
against finite differences in float64; conversion happens only at this test's boundary.
"""

import importlib.util
from pathlib import Path

import array_api_strict as xp  # noqa: E402 - a test dependency (extras "test" and "dev")
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnc
from nnc.backend.array_api import DeviceError, to_numpy
from nnc.backend.autodiff import grad, vjp
from nnc.backend.tree import tree_flatten, tree_map

DEVICE = xp.Device("device1")


def _cases() -> dict:
    cases = {}
    for path in sorted(Path(__file__).parent.glob("test_*gradients.py")):
        spec = importlib.util.spec_from_file_location(f"_strict_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cases.update(getattr(module, "CASES", {}))
    return cases


CASES = _cases()


def on_device(tree):
    return tree_map(lambda a: xp.asarray(a, device=DEVICE) if isinstance(a, np.ndarray) else a, tree)


def back(tree):
    return tree_map(lambda a: None if a is None else to_numpy(a), tree)


# The array API has no erf: its device form is a rational function good to 1.6e-8
# (backend/activations.py), so erf and the exact gelu (x times it) agree with numpy to that
# (and the cases draw |x| <= 5).
APPROXIMATE_ON_DEVICES = {"erf": (2e-8, 2e-8), "gelu": (4e-8, 4e-8)}  # gelu: |x| / 2 * 1.6e-8, |x| <= 5


def assert_close(actual, expected, what, tolerance=(1e-9, 1e-12)):
    a_leaves, e_leaves = tree_flatten(actual)[0], tree_flatten(expected)[0]
    assert len(a_leaves) == len(e_leaves), what
    for a, e in zip(a_leaves, e_leaves):
        if e is None:
            assert a is None, what
            continue
        assert type(a) is np.ndarray or np.isscalar(a), f"{what}: {type(a)} came back"
        np.testing.assert_allclose(a, e, rtol=tolerance[0], atol=tolerance[1], err_msg=what)


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=8)
@given(data=st.data())
def test_values_and_gradients_on_a_strict_device_equal_numpy(name, data):
    fn, args = data.draw(st.composite(lambda d: CASES[name](d))())
    out, pullback = vjp(fn, *args)
    ct = tree_map(lambda o: np.linspace(-1.0, 1.0, o.size).reshape(np.shape(o)), out)
    expected = pullback(ct)

    dev_args = on_device(args)
    dev_out, dev_pullback = vjp(fn, *dev_args)
    for leaf in tree_flatten(dev_out)[0]:
        assert leaf.device == DEVICE
    got = dev_pullback(on_device(ct))
    for leaf in tree_flatten(got)[0]:
        assert leaf is None or leaf.device == DEVICE
    tolerance = APPROXIMATE_ON_DEVICES.get(name, (1e-9, 1e-12))
    assert_close(back(dev_out), out, f"{name}: value", tolerance)
    assert_close(back(got), expected, f"{name}: gradient", tolerance)


@pytest.mark.parametrize("name", ["tanh", "mul", "softmax", "max", "scan", "conv2d", "untake"])
@settings(max_examples=4)
@given(data=st.data())
def test_second_derivatives_on_a_strict_device_equal_numpy(name, data):
    fn, args = data.draw(st.composite(lambda d: CASES[name](d))())

    def gradient_energy(*ys):
        g = nnc.grad(lambda *zs: nnc.sum(fn(*zs) * fn(*zs)), 0)(*ys)
        return nnc.sum(g * g)

    expected = grad(gradient_energy)(*args)
    got = grad(gradient_energy)(*on_device(args))
    assert got.device == DEVICE
    np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-8, atol=1e-10)


def test_eager_operations_run_on_the_device():
    a = xp.asarray([[1.0, -2.0], [3.0, 0.5]], device=DEVICE)
    y = nnc.softmax(nnc.tanh(a) * 2 + 1.0)
    assert y.device == DEVICE
    np.testing.assert_allclose(to_numpy(y), nnc.softmax(np.tanh(to_numpy(a)) * 2 + 1.0))


def test_mixing_devices_in_one_call_names_both():
    a = xp.asarray([1.0, 2.0], device=DEVICE)
    b = xp.asarray([1.0, 2.0], device=xp.Device("device2"))
    with pytest.raises(DeviceError) as err:
        grad(lambda u, v: nnc.sum(u * v))(a, b)
    text = str(err.value)
    assert "argument 0 holds array_api_strict arrays on array_api_strict.Device('device1')" in text
    assert "argument 1 holds array_api_strict arrays on array_api_strict.Device('device2')" in text


def test_numpy_data_with_device_parameters_in_grad_is_an_error():
    a = xp.asarray([1.0, 2.0], device=DEVICE)
    with pytest.raises(DeviceError, match=r"argument 1 holds numpy arrays \(cpu\)"):
        grad(lambda u, v: nnc.sum(u * v))(a, np.ones(2))
