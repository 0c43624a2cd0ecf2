"""nnc: neural networks as typed, pure, composable functions.

>>> import numpy as np, nnc
>>> from nnc import Linear, logistic
>>> model = Linear(2, 4) >> logistic >> Linear(4, 1) >> logistic
>>> model.signature
Vec[2] -> Vec[1]
>>> params = model.init(seed=0)
>>> model(params, np.ones((8, 2))).shape
(8, 1)
"""

from types import ModuleType as _ModuleType

from nnc.backend import memory as _memory

_memory.keep_freed_memory()  # before any array: fresh pages cost more than small models' work


from nnc.backend.array_api import DeviceError
from nnc.backend.autodiff import grad, hessian, jacobian, value_and_grad, vjp
from nnc.backend.checks import DomainError
from nnc.backend.errors import (
    ArgumentError,
    InitError,
    MissingGradient,
    NNCError,
    NonFiniteError,
    ShapeError,
    TraceError,
    TypeMismatch,
)
from nnc.backend.ops import (
    absolute,
    exp,
    log,
    matmul,
    max,
    maximum,
    mean,
    minimum,
    pick,
    reshape,
    scan,
    sqrt,
    sum,
    take,
    transpose,
    where,
)
from nnc.backend.random import fold_in, key
from nnc.backend.tree import tree_flatten, tree_leaves, tree_map, tree_paths, tree_unflatten

from .attention import SelfAttention, padded
from .callbacks import Callback, Checkpoint, Decision, EarlyStopping, GradientStats, StopOnNaN
from .checkpoint import CheckpointError, CheckpointNotFound, load, save
from .combinators import add, concat, fanout, parallel, repeat, residual
from .compile import compile
from .conv import Conv2d, avg_pool, flatten, max_pool
from .devices import devices, get_device, to_device, use
from .effects import inference
from .export import ExportError, export
from .layer_report import Report, inspect
from .layers import Input, Linear, gelu, gelu_tanh, log_softmax, logistic, relu, silu, softmax, tanh
from .lift import lift
from .losses import cross_entropy, mse
from .metrics import accuracy
from .model import Model, Signature, each
from .modelfile import LoadError
from .nan_origin import NaNOrigin, find_nan
from .normalization import BatchNorm, Dropout, LayerNorm, RMSNorm
from .optim import (
    ConfigError,
    Optimizer,
    adam,
    adamw,
    clip_by_global_norm,
    clip_by_value,
    cosine_decay,
    exponential_decay,
    piecewise_constant,
    rmsprop,
    sgd,
    warmup,
)
from .optuna_pruning import OptunaPruning
from .recurrent import (
    GRU,
    LSTM,
    fcrnn,
    feedback,
    fix_state,
    lagged,
    learned_state,
    prime,
    recurrently,
    unroll,
    unroll_last,
    zero_state,
)
from .render import GraphvizNotFound, RenderError, render
from .sequence import Embedding, PositionalEmbedding, generate
from .summary import summary
from .sweep import Results, sweep
from .torch_weights import load_torch
from .train import History, TrainStep, fit, train_step
from .typed import typed
from .types import Dim, Index, Mat, Seq, Tensor, TypeVar, Vec

__version__ = "0.1.0"


def __getattr__(name: str) -> _ModuleType:
    """``nnc.sklearn``, imported on first use: it imports scikit-learn, which ``import nnc`` does not."""
    if name == "sklearn":
        import importlib

        return importlib.import_module("nnc.sklearn")
    raise AttributeError(f"module 'nnc' has no attribute {name!r}")


# Every public name imported above, and nothing else: submodules (bound here as a side
# effect of importing from them) and underscored helpers are left out.
__all__ = sorted(
    name
    for name, value in globals().items()
    if not name.startswith("_") and not isinstance(value, _ModuleType)
)
