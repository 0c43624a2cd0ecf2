"""PyTorch weights in nnc models: ``params = load_torch(model, state_dict_or_path, mapping=None)``.

Each nnc layer that has parameters has a PyTorch counterpart whose tensors it takes, under
their PyTorch names, in the layout nnc uses: ``nn.Linear``'s ``weight`` transposed into
``W``; ``nn.Conv2d``'s as they are (both are ``(c_out, c_in, kh, kw)``); ``nn.BatchNorm``'s
``weight``/``bias`` into ``scale``/``bias`` and ``running_mean``/``running_var`` into the
running statistics; ``nn.LayerNorm``, ``nn.RMSNorm``, ``nn.Embedding``; ``nn.RNN`` (tanh),
``nn.LSTM`` and ``nn.GRU``, with their two biases summed where they are added to the same
sum (every bias of an LSTM and an RNN; a GRU's gate biases) and the gates put in nnc's order;
``nn.MultiheadAttention``'s packed ``in_proj_weight``/``in_proj_bias`` and ``out_proj``
into ``SelfAttention``'s ``W_qkv``/``b_qkv`` and ``W_out``/``b_out``.

``torch.nn.GRU`` applies its reset gate after the recurrent map, ``r * (h W_hn + b_hn)``;
nnc's ``GRU`` by default before it, ``(r * h) Uh`` (Cho et al.'s form). The two compute
different functions, so PyTorch's weights load into ``GRU(n_in, n_hidden, reset="after")``,
which computes PyTorch's form, and are refused, saying so, by ``GRU(n_in, n_hidden)``.

Tensors are matched to layers by position (the layers in model order against PyTorch's
modules in state-dict order), or by name with ``mapping``; every tensor that does not fit,
is missing or is left over is listed in one :class:`nnc.CheckpointError`. torch is
imported only to read a ``.pt`` file or to convert torch tensors; a ``.safetensors`` file
or a dict of numpy arrays needs no torch.

>>> import numpy as np
>>> from nnc import Linear, tanh
>>> model = Linear(3, 4) >> tanh >> Linear(4, 2)
>>> state = {"0.weight": np.ones((4, 3), np.float32), "0.bias": np.zeros(4, np.float32),
...          "2.weight": np.ones((2, 4), np.float32), "2.bias": np.zeros(2, np.float32)}
>>> params = load_torch(model, state)
>>> params["linear_0"]["W"].shape, params["linear_0"]["W"].dtype
((3, 4), dtype('float32'))
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnc.backend.tree import tree_flatten, tree_paths, tree_unflatten

from . import safetensors_format
from .checkpoint import META_KEY, CheckpointError, CheckpointNotFound
from .effects import checked_stats
from .model import Model, check_params
from .show import describe
from .source import created_at_note

TORCH_SUFFIXES = (".pt", ".pth", ".bin")


@dataclass(frozen=True)
class Slot:
    """One PyTorch tensor a layer takes: its name in the module (``{k}``: the layer number of
    a stacked recurrent module), the shape it must have, and the nnc entry it goes into."""

    name: str
    shape: tuple[int, ...]
    into: str | None  # an nnc parameter or statistic; None: read, checked, and dropped
    optional: bool = False


@dataclass(frozen=True)
class Form:
    """A layer's PyTorch counterpart: the tensors it takes, and how they become nnc's entries."""

    slots: tuple[Slot, ...]
    # PyTorch's tensors by slot name -> (nnc parameters, nnc running statistics)
    convert: Callable[[dict[str, np.ndarray]], tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]
    refusal: str | None = None  # why the layer cannot take PyTorch's weights at all


# ----------------------------------------------------------------------------- layer forms


def _shape(layer: Model, name: str) -> tuple[int, ...]:
    return tuple(dict(layer.param_specs)[name].shape)


def _has(layer: Model, name: str) -> bool:
    return name in dict(layer.param_specs)


def _affine_slots(layer: Model) -> list[Slot]:
    slots = []
    if _has(layer, "scale"):
        slots.append(Slot("weight", _shape(layer, "scale"), "scale"))
    if _has(layer, "bias"):
        slots.append(Slot("bias", _shape(layer, "bias"), "bias"))
    return slots


def _linear(layer: Model) -> Form:
    n_in, n_out = _shape(layer, "W")
    slots = [Slot("weight", (n_out, n_in), "W")] + ([Slot("bias", (n_out,), "b")] if _has(layer, "b") else [])

    def convert(t: dict) -> tuple[dict, dict]:
        return {"W": t["weight"].T, **({"b": t["bias"]} if "bias" in t else {})}, {}

    return Form(tuple(slots), convert)


def _conv2d(layer: Model) -> Form:
    # nnc's W is (c_out, c_in, kh, kw), PyTorch's layout: taken as it is
    slots = [Slot("weight", _shape(layer, "W"), "W")] + (
        [Slot("bias", _shape(layer, "b"), "b")] if _has(layer, "b") else []
    )
    return Form(tuple(slots), lambda t: ({"W": t["weight"], **({"b": t["bias"]} if "bias" in t else {})}, {}))


def _same_names(layer: Model) -> Form:
    """LayerNorm, RMSNorm: PyTorch's ``weight`` is nnc's ``scale``, ``bias`` its ``bias``."""
    slots = _affine_slots(layer)
    return Form(tuple(slots), lambda t: ({s.into: t[s.name] for s in slots if s.into}, {}))


def _batch_norm(layer: Model) -> Form:
    c = layer.attr("channels")
    slots = _affine_slots(layer) + [
        Slot("running_mean", (c,), "mean"),
        Slot("running_var", (c,), "var"),
        # nnc's running averages use a fixed momentum: PyTorch's count of batches is not needed
        Slot("num_batches_tracked", (), None, optional=True),
    ]

    def convert(t: dict) -> tuple[dict, dict]:
        params = {s.into: t[s.name] for s in slots[:-3] if s.into}
        return params, {"mean": t["running_mean"], "var": t["running_var"]}

    return Form(tuple(slots), convert)


def _table(param: str) -> Callable[[Model], Form]:
    """Embedding (``W``), learned PositionalEmbedding (``P``): PyTorch's ``nn.Embedding.weight``."""

    def form(layer: Model) -> Form:
        return Form((Slot("weight", _shape(layer, param), param),), lambda t: ({param: t["weight"]}, {}))

    return form


def _recurrent_slots(layer: Model, gates: int) -> tuple[Slot, ...]:
    n_in, width = _shape(layer, "Wx")
    n = width // gates
    return (
        Slot("weight_ih_l{k}", (gates * n, n_in), "Wx"),
        Slot("weight_hh_l{k}", (gates * n, n), "Wh"),
        Slot("bias_ih_l{k}", (gates * n,), "b"),
        Slot("bias_hh_l{k}", (gates * n,), "b"),
    )


def _summed_biases(layer: Model) -> Form:
    """nn.RNN (tanh) and nn.LSTM: both biases enter the same sum, and the gates of nn.LSTM
    (input, forget, candidate, output) are in nnc's order already."""
    gates = 4 if layer.kind == "LSTM" else 1
    refusal = None
    if layer.kind == "fcrnn" and layer.attr("activation") != "tanh":
        refusal = (
            f"fcrnn with activation {layer.attr('activation')!r} has no PyTorch counterpart "
            "(nn.RNN is tanh or relu); build it as fcrnn(n_in, n_hidden) for nn.RNN's tanh"
        )

    def convert(t: dict) -> tuple[dict, dict]:
        return {
            "Wx": t["weight_ih_l{k}"].T,
            "Wh": t["weight_hh_l{k}"].T,
            "b": t["bias_ih_l{k}"] + t["bias_hh_l{k}"],
        }, {}

    return Form(_recurrent_slots(layer, gates), convert, refusal)


def _gru(layer: Model) -> Form:
    n = layer.attr("hidden")
    slots = _recurrent_slots(layer, 3)
    refusal = None
    if layer.attr("reset", "before") != "after":
        refusal = (
            "torch.nn.GRU applies its reset gate after the recurrent map, n = tanh(x W_in + b_in + "
            "r * (h W_hn + b_hn)), this GRU before it, tanh(x Wn + bn + (r * h) Uh): they compute "
            "different functions, so PyTorch's weights cannot be loaded into it exactly; build the "
            'layer as GRU(n_in, n_hidden, reset="after"), which computes PyTorch\'s form'
        )

    def nnc_order(a: np.ndarray) -> np.ndarray:
        r, z, c = a[:n], a[n : 2 * n], a[2 * n :]  # PyTorch's gates: reset, update, candidate
        return np.concatenate([z, r, c])  # nnc's: update, reset, candidate

    def convert(t: dict) -> tuple[dict, dict]:
        b_ih, b_hh = t["bias_ih_l{k}"], t["bias_hh_l{k}"]
        gate_biases = np.concatenate([b_ih[: 2 * n] + b_hh[: 2 * n], b_ih[2 * n :]])
        return {
            "Wx": nnc_order(t["weight_ih_l{k}"]).T,
            "Wh": nnc_order(t["weight_hh_l{k}"]).T,
            "b": nnc_order(gate_biases),
            "bh": b_hh[2 * n :],  # inside r * (...): it cannot be summed with b_in
        }, {}

    return Form(slots, convert, refusal)


def _attention(layer: Model) -> Form:
    d = _shape(layer, "W_out")[0]
    slots = (
        Slot("in_proj_weight", (3 * d, d), "W_qkv"),
        Slot("in_proj_bias", (3 * d,), "b_qkv"),
        Slot("out_proj.weight", (d, d), "W_out"),
        Slot("out_proj.bias", (d,), "b_out"),
    )

    def convert(t: dict) -> tuple[dict, dict]:
        return {
            "W_qkv": t["in_proj_weight"].T,
            "b_qkv": t["in_proj_bias"],
            "W_out": t["out_proj.weight"].T,
            "b_out": t["out_proj.bias"],
        }, {}

    return Form(slots, convert)


FORMS: dict[str, Callable[[Model], Form]] = {
    "Linear": _linear,
    "Conv2d": _conv2d,
    "BatchNorm": _batch_norm,
    "LayerNorm": _same_names,
    "RMSNorm": _same_names,
    "Embedding": _table("W"),
    "PositionalEmbedding": _table("P"),
    "fcrnn": _summed_biases,
    "LSTM": _summed_biases,
    "GRU": _gru,
    "SelfAttention": _attention,
}


# ----------------------------------------------------------------------------- reading tensors


def _natural(name: str) -> list[tuple[int, Any]]:
    """A sort key that puts ``layers.2`` before ``layers.10``."""
    return [(0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", name) if t]


def _to_numpy(name: str, value: Any, problems: list[str]) -> np.ndarray | None:
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.split(".")[0] == "torch":
        import torch  # only reached for a torch tensor, so torch is there

        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            if value.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
                value = value.float()
            return value.numpy()
    if isinstance(value, (np.generic, int, float)):
        return np.asarray(value)
    problems.append(f"{name!r} is a {type(value).__name__}, not a tensor or an array")
    return None


def _read(source: Any) -> tuple[str, dict[str, np.ndarray]]:
    """A description of ``source`` and its tensors as numpy arrays, in PyTorch's order."""
    if hasattr(source, "state_dict") and callable(source.state_dict):  # an nn.Module itself
        source = source.state_dict()
    if isinstance(source, Mapping):
        problems: list[str] = []
        arrays = {str(k): _to_numpy(str(k), v, problems) for k, v in source.items()}
        if problems:
            raise CheckpointError(
                f"the state dict given to load_torch holds entries that are not tensors: {'; '.join(problems)}\n"
                "  hint: pass model.state_dict(), a dict of tensors or numpy arrays"
            )
        return f"the state dict of {len(arrays)} tensors", {k: v for k, v in arrays.items() if v is not None}
    if not isinstance(source, (str, os.PathLike)):
        raise CheckpointError(
            f"load_torch takes a state dict (a dict of tensors or arrays) or the path of a .safetensors, "
            f".pt or .pth file, not a {type(source).__name__}"
        )
    path = os.fspath(source)
    if safetensors_format.is_safetensors_path(path):
        return path, _read_safetensors(path)
    if path.lower().endswith(TORCH_SUFFIXES):
        return path, _read_torch_file(path)
    raise CheckpointError(
        f"load_torch cannot tell the format of {path}: it reads .safetensors files (without torch) "
        f"and {', '.join(TORCH_SUFFIXES)} files written by torch.save (with torch)\n"
        "  hint: in PyTorch, safetensors.torch.save_file(module.state_dict(), 'weights.safetensors')"
    )


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    try:
        metadata, arrays = safetensors_format.decode(path)
    except FileNotFoundError:
        raise CheckpointNotFound(f"there is no file at {path}\n  hint: check the path") from None
    except safetensors_format.NotInstalled:
        raise CheckpointError(
            f"cannot read {path}: .safetensors files need the safetensors package, which is not installed\n"
            f"  hint: {safetensors_format.INSTALL}"
        ) from None
    except safetensors_format.Unreadable as err:
        raise CheckpointError(f"{path} {err}") from None
    if metadata and META_KEY in metadata:
        raise CheckpointError(
            f"{path} is an nnc checkpoint, not PyTorch weights\n  hint: load it with nnc.load(path, model)"
        )
    # the file keeps no order of its own: natural order is a Sequential's order
    return {k: arrays[k] for k in sorted(arrays, key=_natural)}


def _read_torch_file(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"cannot read {path}: .pt and .pth files are read with torch.load, and torch is not installed\n"
            "  hint: pip install torch; or, where PyTorch is, save the weights as .safetensors "
            "(safetensors.torch.save_file(module.state_dict(), 'weights.safetensors')), which nnc "
            f"reads without torch ({safetensors_format.INSTALL})"
        ) from None
    if not os.path.exists(path):
        raise CheckpointNotFound(f"there is no file at {path}\n  hint: check the path")
    try:
        # weights_only: tensors and plain containers only, never code from the file
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds (UnpicklingError, RuntimeError, EOFError)
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(
            f"{path} cannot be read by torch.load(weights_only=True) ({type(err).__name__}: {first})\n"
            "  hint: save the state dict, torch.save(module.state_dict(), path), not the module"
        ) from None
    if not isinstance(loaded, Mapping):
        raise CheckpointError(
            f"{path} holds a {type(loaded).__name__}, not a state dict\n"
            "  hint: save the state dict, torch.save(module.state_dict(), path)"
        )
    return _read(loaded)[1]


# ----------------------------------------------------------------------------- matching


def _layers(model: Model, path: str = "") -> list[tuple[str, Model]]:
    """Every layer with parameters or running statistics, with its path (as in the parameters)."""
    own = bool(model.param_specs) or (model.effects is not None and bool(model.effects.stat_specs))
    out = [(path, model)] if own else []
    for key, child in zip(model.param_keys, model.children):
        if key is None:
            continue
        out.extend(_layers(child, path if key == "" else f"{path}/{key}" if path else key))
    return out


def _pattern(name: str) -> str:
    return r"(?P<k>\d+)".join(re.escape(part) for part in name.split("{k}"))


def _local(key: str, form: Form) -> tuple[str, Slot, str] | None:
    """The module prefix, slot and layer number of PyTorch tensor ``key`` as one of ``form``'s."""
    for slot in form.slots:
        match = re.fullmatch(rf"(?:(?P<prefix>.+)\.)?{_pattern(slot.name)}", key)
        if match:
            return match["prefix"] or "", slot, match.groupdict().get("k") or ""
    return None


def _full(prefix: str, slot: Slot, k: str) -> str:
    name = slot.name.replace("{k}", k)
    return f"{prefix}.{name}" if prefix else name


def _label(path: str, layer: Model) -> str:
    return f"{path or 'the model'} ({describe(layer)})"


@dataclass
class _Match:
    tensors: dict[str, str]  # slot name -> PyTorch name


def _by_mapping(
    mapping: Mapping[str, str],
    arrays: dict[str, np.ndarray],
    layers: dict[str, Model],
    forms: dict[str, Form],
    problems: list[str],
) -> dict[str, _Match]:
    matched: dict[str, _Match] = {}
    for key, target in mapping.items():
        if target in layers:
            layer_path, param = target, ""
        else:
            layer_path, _, param = target.rpartition("/")
        if layer_path not in layers or (param and param not in {s.into for s in forms[layer_path].slots}):
            problems.append(
                f"mapping {key!r}: {target!r} is not a layer or parameter of the model "
                f"(its layers: {', '.join(repr(p) for p in layers) or 'none'})"
            )
            continue
        form, match = forms[layer_path], matched.setdefault(layer_path, _Match({}))
        if key in arrays:
            found = _local(key, form)
            if found is None or (param and found[1].into != param):
                wanted = [s.name for s in form.slots if not param or s.into == param]
                problems.append(
                    f"mapping {key!r}: {_label(layer_path, layers[layer_path])} takes PyTorch tensors named "
                    f"{' or '.join(repr(w) for w in wanted)}{f' into {param}' if param else ''}, not {key!r}"
                )
                continue
            match.tensors[found[1].name] = key
            continue
        inside = [k for k in arrays if k.startswith(key + ".")]
        if not inside:
            problems.append(f"mapping {key!r}: no tensor of that name or under that module in the state dict")
            continue
        # a stacked recurrent module: its first layer, unless a tensor is named
        numbers = sorted({f[2] for k in inside if (f := _local(k[len(key) + 1 :], form))}, key=_natural)
        k = numbers[0] if numbers else ""
        for slot in form.slots:
            if (not param or slot.into == param) and _full(key, slot, k) in arrays:
                match.tensors[slot.name] = _full(key, slot, k)
    return matched


def _inside(key: str, prefix: str) -> bool:
    return prefix == "" or key.startswith(prefix + ".")


def _by_position(
    todo: list[str],
    arrays: dict[str, np.ndarray],
    taken: set[str],
    layers: dict[str, Model],
    forms: dict[str, Form],
    problems: list[str],
) -> dict[str, _Match]:
    matched: dict[str, _Match] = {}
    done: set[tuple[str, str]] = set()  # (module prefix, layer number) of the modules matched
    for i, layer_path in enumerate(todo):
        form = forms[layer_path]
        found, following = None, None
        for key in (k for k in arrays if k not in taken):
            local = _local(key, form)
            if local is not None and (local[0], local[2]) not in done:
                found = local
                break
            if any(_inside(key, prefix) for prefix, _ in done):
                continue  # what a module already matched has beyond the layer's tensors: left over
            following = key
            break
        if found is None:
            expected = ", ".join(
                f"{s.name.replace('{k}', '0')} {s.shape}" for s in form.slots if not s.optional
            )
            problems.append(
                f"{_label(layer_path, layers[layer_path])}: expects PyTorch tensors {expected}, "
                + (
                    f"but the next one is {following!r} {tuple(arrays[following].shape)}"
                    if following
                    else "but none are left"
                )
            )
            rest = todo[i + 1 :]
            if rest and following:
                problems.append(
                    "not matched, as the order no longer lines up: "
                    + ", ".join(_label(p, layers[p]) for p in rest)
                    + " (name their PyTorch modules with mapping=)"
                )
                break
            continue
        prefix, _, k = found
        done.add((prefix, k))
        match = _Match({s.name: _full(prefix, s, k) for s in form.slots if _full(prefix, s, k) in arrays})
        taken.update(match.tensors.values())
        matched[layer_path] = match
    return matched


def _in_layer_order(problems: list[str], layers: dict[str, Model]) -> list[str]:
    """Mapping mistakes first, then each layer's problems in model order, then what is left over."""
    labels = [_label(p, layer) + ":" for p, layer in layers.items()]

    def rank(problem: str) -> int:
        if problem.startswith("mapping "):
            return -1
        if problem.startswith("unused: "):
            return len(labels) + 1
        return next((i for i, label in enumerate(labels) if problem.startswith(label)), len(labels))

    return sorted(problems, key=rank)


def _target_dtype(arrays: list[np.ndarray], dtype: Any) -> np.dtype:
    if dtype is not None:
        chosen = np.dtype(dtype)
        if chosen.kind != "f" or chosen.itemsize < 4:
            raise CheckpointError(f"load_torch: dtype must be float32 or float64, got {chosen}")
        return chosen
    floats = [a.dtype for a in arrays if a.dtype.kind == "f"]
    # float16 weights are computed in float32, as nnc computes in float32 or float64
    widest = np.result_type(*floats) if floats else np.dtype(np.float32)
    return widest if widest.itemsize >= 4 else np.dtype(np.float32)


def load_torch(
    model: Model,
    source: Any,
    *,
    mapping: Mapping[str, str] | None = None,
    stats: bool = False,
    dtype: Any = None,
) -> Any:
    """``model``'s parameters from PyTorch weights, shaped like ``model.init()``; with
    ``stats=True``, ``(params, stats)``, the running statistics (BatchNorm's ``running_mean``
    and ``running_var``) shaped like ``model.init_stats()``.

    ``source`` is a state dict (``module.state_dict()``, or any dict of torch tensors or numpy
    arrays under PyTorch's names), the path of a ``.safetensors`` file (read without torch),
    or of a ``.pt``/``.pth`` file (read with ``torch.load(path, weights_only=True)``, which
    never runs code from the file). Without ``mapping``, the layers of ``model`` that have
    parameters take PyTorch's modules in order: a state dict's order, a safetensors file's
    names in natural order (``0``, ``1``, ..., ``10``). ``mapping`` names the PyTorch module
    or tensor for some or all layers: ``{"encoder.fc": "linear_0"}`` or
    ``{"encoder.fc.weight": "linear_0/W"}``; the layers it does not name are matched by
    position with the tensors it leaves.

    The dtype is the weights' own (float32 or float64; the widest where they differ; float16
    as float32), or ``dtype``. BatchNorm's ``num_batches_tracked`` is checked and dropped:
    nnc's running averages use a fixed momentum.

    Raises :class:`nnc.CheckpointError` listing every tensor that does not fit (its name, the
    shape expected and the one found), every one missing and every one left over, together.

    >>> import numpy as np
    >>> from nnc import LayerNorm, Linear
    >>> model = Linear(2, 3) >> LayerNorm(3)
    >>> state = {"fc.weight": np.ones((3, 2)), "fc.bias": np.zeros(3),
    ...          "norm.weight": np.ones(3), "norm.bias": np.zeros(3)}
    >>> params = load_torch(model, state, mapping={"fc": "linear_0", "norm": "layernorm_0"})
    >>> params["layernorm_0"]["scale"].dtype
    dtype('float64')
    """
    description, arrays = _read(source)
    every_layer = dict(_layers(model))
    problems: list[str] = []
    forms: dict[str, Form] = {}
    for path, layer in every_layer.items():
        if layer.kind not in FORMS:
            problems.append(f"{_label(path, layer)}: has no PyTorch counterpart that load_torch knows")
            continue
        if not all(isinstance(d, int) for _, spec in layer.param_specs for d in spec.shape):
            problems.append(
                f"{_label(path, layer)}: its sizes are not known yet; declare the input with nnc.Input"
            )
            continue
        forms[path] = FORMS[layer.kind](layer)
        if forms[path].refusal:  # still matched, so that the layers after it line up
            problems.append(f"{_label(path, layer)}: {forms[path].refusal}")
    layers = {p: layer for p, layer in every_layer.items() if p in forms}
    matched = _by_mapping(mapping or {}, arrays, layers, forms, problems)
    taken = {name for m in matched.values() for name in m.tensors.values()}
    todo = [p for p in layers if p not in matched]
    matched.update(_by_position(todo, arrays, taken, layers, forms, problems))
    taken = {name for m in matched.values() for name in m.tensors.values()}
    for path, match in matched.items():
        label = _label(path, layers[path])
        for slot in forms[path].slots:
            name = match.tensors.get(slot.name)
            if name is None:
                if not slot.optional:
                    problems.append(
                        f"{label}: missing {slot.name.replace('{k}', '0')!r} (shape {slot.shape})"
                    )
                continue
            array = arrays[name]
            if tuple(array.shape) != slot.shape:
                problems.append(f"{label}: {name!r} has shape {tuple(array.shape)}, expected {slot.shape}")
            elif slot.into is not None and array.dtype.kind != "f":
                problems.append(f"{label}: {name!r} has dtype {array.dtype}, expected floating point")
    unused = [k for k in arrays if k not in taken]
    if unused:
        problems.append("unused: " + ", ".join(f"{k!r} {tuple(arrays[k].shape)}" for k in unused))
    if problems:
        raise CheckpointError(
            f"cannot load {description} into {describe(model)}{created_at_note(model)}\n"
            + "".join(f"  {p}\n" for p in _in_layer_order(problems, every_layer))
            + "  hint: name PyTorch's modules or tensors for nnc's layers or parameters with "
            'mapping={"torch.name": "nnc/path"}; the layers: '
            + ", ".join(f"{p!r} {describe(layer)}" for p, layer in every_layer.items())
        )
    target = _target_dtype([arrays[k] for k in taken], dtype)
    flat_params: dict[str, np.ndarray] = {}
    flat_stats: dict[str, np.ndarray] = {}
    for path, match in matched.items():
        tensors = {slot: arrays[name] for slot, name in match.tensors.items()}
        params, statistics = forms[path].convert(tensors)
        for flat, part in ((flat_params, params), (flat_stats, statistics)):
            for name, value in part.items():
                flat[f"{path}/{name}" if path else name] = np.ascontiguousarray(value, dtype=target)
    _, treedef = tree_flatten(model.param_shapes)
    result = tree_unflatten(treedef, [flat_params[p] for p, _ in tree_paths(model.param_shapes)])
    check_params(model, result)
    if not stats:
        return result
    template = model.init_stats()
    _, stats_def = tree_flatten(template)
    loaded_stats = tree_unflatten(stats_def, [flat_stats[p] for p, _ in tree_paths(template)])
    return result, checked_stats(model, loaded_stats, target)
