"""Backends: listing with reasons, choosing, moving trees, the call boundary, checkpoints,
and the CuPy backend's own logic driven by a stand-in CuPy built on array_api_strict."""

import sys
from types import SimpleNamespace

import array_api_strict as xp  # noqa: E402 - a test dependency (extras "test" and "dev")
import numpy as np
import pytest

import nnc
from nnc import Input, Linear, Tensor, tanh
from nnc.backend.array_api import DeviceError, to_numpy
from nnc.backend.tree import tree_flatten, tree_paths
from nnc.checkpoint import load, save
from nnc.conv import Conv2d, max_pool
from nnc.devices import cupy_device, current, devices, get_device, to_device, use
from nnc.kernels import dispatch, im2col
from nnc.kernels import pool as pool_kernels
from nnc.kernels import reference as kernel_references

DEVICE = xp.Device("device1")


def fake_cupy(count=1, error=None):
    """A stand-in CuPy: its arrays live on array_api_strict's device1, which numpy cannot read."""

    def device_count():
        if error is not None:
            raise error
        return count

    return SimpleNamespace(
        cuda=SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=device_count)),
        zeros=lambda shape: xp.zeros(shape, device=DEVICE),
    )


MODEL = Linear(3, 4) >> tanh >> Linear(4, 2)


def test_devices_lists_every_backend_with_the_reason_cupy_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # as on a machine without CuPy installed
    assert devices() == ["numpy", "cupy (not available: import of cupy halted; none in sys.modules)"]
    with pytest.raises(DeviceError, match=r"^cupy \(not available: import of cupy halted"):
        get_device("cupy")


@pytest.mark.parametrize(
    "error, reason",
    [
        (
            RuntimeError(
                "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version"
            ),
            "driver too old: cudaErrorInsufficientDriver",
        ),
        (RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected"), "no CUDA device"),
    ],
)
def test_cupy_reports_why_it_cannot_run(monkeypatch, error, reason):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(error=error))
    assert devices()[1].startswith(f"cupy (not available: {reason}")
    with pytest.raises(DeviceError, match=r"cupy \(not available: " + reason):
        get_device("cupy")


def test_cupy_without_a_device_is_unavailable():
    with pytest.raises(DeviceError, match=r"^cupy \(not available: no CUDA device\)"):
        cupy_device(fake_cupy(count=0))


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(DeviceError, match=r"unknown device 'tpu'; nnc knows \['cupy', 'numpy'\]"):
        get_device("tpu")


def test_numba_is_no_backend_of_its_own():
    # numpy arrays are numpy arrays: which kernel runs is chosen per primitive, never by name
    with pytest.raises(DeviceError, match=r"unknown device 'numba'"):
        get_device("numba")


CONV = Input(Tensor[1, 6, 6]) >> Conv2d(1, 2, 3, padding=1) >> max_pool(2)
# what kernels/dispatch.py calls for the forward of CONV: (module, function, which path)
CONV_IMPLEMENTATIONS = [
    (im2col, "conv2d_forward", "kernel"),
    (pool_kernels, "max_pool", "kernel"),
    (kernel_references, "conv2d", "reference"),
    (kernel_references, "max_pool", "reference"),
]


@pytest.mark.parametrize("jit, path", [(True, "kernel"), (False, "reference")])
def test_the_numpy_backend_runs_kernels_and_only_references_without_jit(monkeypatch, jit, path):
    ran = []
    for module, name, which in CONV_IMPLEMENTATIONS:

        def spy(*args, _run=getattr(module, name), _which=which):  # noqa: B008 (binds the original)
            ran.append(_which)
            return _run(*args)

        monkeypatch.setattr(module, name, spy)
    # what NUMBA_DISABLE_JIT decides; the variable itself is read once by Numba at its import
    monkeypatch.setattr(dispatch, "jit_enabled", lambda: jit)
    with use("numpy"):
        params = CONV.init(seed=0, dtype=np.float64)
    assert CONV(params, np.ones((2, 1, 6, 6))).shape == (2, 2, 3, 3)
    assert ran == [path, path]


def test_cupy_backend_places_arrays_where_its_arrays_live(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    assert devices()[1] == "cupy"
    gpu = get_device("cupy")
    assert gpu.placement.device == DEVICE and gpu.placement.xp is xp


def test_init_on_a_backend_gives_the_same_numbers_as_numpy():
    gpu = cupy_device(fake_cupy())
    reference = MODEL.init(seed=3)
    for params in (MODEL.init(seed=3, device=gpu), _init_in_use(gpu)):
        for (path, leaf), (_, ref) in zip(tree_paths(params), tree_paths(reference)):
            assert leaf.device == DEVICE, path
            np.testing.assert_array_equal(to_numpy(leaf), ref)
    assert current().name == "numpy"  # the scope ended


def _init_in_use(backend):
    with use(backend):
        assert current() is not None and current().name == "cupy"
        return MODEL.init(seed=3)


def test_a_call_moves_numpy_data_to_the_parameters_device():
    gpu = cupy_device(fake_cupy())
    x = np.linspace(-1, 1, 15).reshape(5, 3).astype(np.float32)
    y = MODEL(MODEL.init(seed=0, device=gpu), x)
    assert y.device == DEVICE
    np.testing.assert_allclose(to_numpy(y), MODEL(MODEL.init(seed=0), x), rtol=1e-6)


def test_device_data_with_numpy_parameters_is_an_error_naming_both():
    x = xp.asarray(np.ones((2, 3), np.float32), device=DEVICE)
    with pytest.raises(DeviceError) as err:
        MODEL(MODEL.init(seed=0), x)
    assert str(err.value).startswith("the parameters and input of Linear(3 -> 4) >> tanh >> Linear(4 -> 2)")
    assert (
        "parameters are numpy arrays (cpu) and input is array_api_strict arrays on "
        "array_api_strict.Device('device1')" in str(err.value)
    )


def test_data_on_another_device_than_the_parameters_is_an_error():
    params = to_device(MODEL.init(seed=0), cupy_device(fake_cupy()))
    x = xp.asarray(np.ones((2, 3), np.float32), device=xp.Device("device2"))
    with pytest.raises(
        DeviceError,
        match=r"input is array_api_strict arrays on "
        r"array_api_strict.Device\('device2'\)",
    ):
        MODEL(params, x)


def test_gradients_and_optimiser_state_move_back_to_numpy():
    gpu = cupy_device(fake_cupy())
    x = np.linspace(-1, 1, 15).reshape(5, 3)
    params = MODEL.init(seed=1, dtype=np.float64)
    loss = lambda p, xb: nnc.mean(MODEL(p, xb) ** 2)  # noqa: E731
    expected = nnc.grad(loss)(params, x)
    got = nnc.grad(loss)(to_device(params, gpu), to_device(x, gpu))
    assert all(leaf.device == DEVICE for leaf in tree_flatten(got)[0])
    state = {"moments": got, "step": 7}
    back = to_device(state, "numpy")
    assert back["step"] == 7
    for (path, leaf), (_, ref) in zip(tree_paths(back["moments"]), tree_paths(expected)):
        assert type(leaf) is np.ndarray, path
        np.testing.assert_allclose(leaf, ref, rtol=1e-12, err_msg=path)


def test_a_checkpoint_saved_from_a_device_loads_on_numpy(tmp_path):
    params = MODEL.init(seed=2, device=cupy_device(fake_cupy()))
    save(tmp_path / "gpu.npz", MODEL, params)
    loaded = load(tmp_path / "gpu.npz", MODEL)
    for (path, leaf), (_, ref) in zip(tree_paths(loaded), tree_paths(MODEL.init(seed=2))):
        assert type(leaf) is np.ndarray, path
        np.testing.assert_array_equal(leaf, ref)
