"""Primitives that move data without arithmetic: reshape, transpose, indexing, concat, pick."""

from __future__ import annotations

from typing import Any

import numpy as np

from .array_api import DeviceError, Placement, placement
from .broadcasting import dtype_of, shape_of
from .core import Eqn, Tracer, bind, defemit, defgeneric, defprim, defvjp
from .elementwise import cast
from .errors import ShapeError
from .numba_codegen import FunctionWriter, shape_text

# --------------------------------------------------------------------------- reshape / transpose


def _reshape_impl(x, shape):
    return np.reshape(x, shape)


reshape_p = defprim("reshape", _reshape_impl)


def reshape(x, shape) -> Any:
    """``x`` with a new shape of the same size (one ``-1`` is inferred)."""
    old = shape_of(x)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    size = int(np.prod(old, dtype=np.int64))
    if shape.count(-1) == 1:
        rest = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
        if rest == 0:
            raise ShapeError(
                f"reshape: cannot infer the -1 of {shape} for an array of shape {old}: the other "
                "sizes multiply to 0, so no size or every size fits\n"
                "  hint: give every size, e.g. (0, n) for an empty batch of n features"
            )
        if size % rest:
            raise ShapeError(f"reshape: cannot reshape an array of shape {old} into {shape}")
        shape = tuple(size // rest if d == -1 else d for d in shape)
    if int(np.prod(shape, dtype=np.int64)) != size:
        raise ShapeError(f"reshape: cannot reshape an array of shape {old} (size {size}) into {shape}")
    if shape == old:
        return x
    return bind(reshape_p, x, shape=shape)


defvjp(reshape_p, lambda g, out, x, shape: (reshape(g, shape_of(x)),))
defgeneric(reshape_p, lambda xp, x, shape: xp.reshape(x, shape))


def _emit_reshape(writer: FunctionWriter, e: Eqn) -> bool:
    x, o = e.inputs[0], writer.name(e.out)
    if not x.shape:
        writer.emit(f"{o} = np.full({tuple(e.attrs['shape'])!r}, {writer.scalar(x)})")
    else:
        writer.emit(f"{o} = np.ascontiguousarray({writer.name(x)}).reshape({shape_text(e.attrs['shape'])})")
    writer.mark_view(e.out)
    return True


defemit(reshape_p, _emit_reshape)


def _transpose_impl(x, axes):
    return x.transpose(axes) if type(x) is np.ndarray else np.transpose(x, axes)


transpose_p = defprim("transpose", _transpose_impl)
defgeneric(transpose_p, lambda xp, x, axes: xp.permute_dims(x, axes))


def transpose(x, axes=None) -> Any:
    """Permute the axes of ``x`` (reverse them by default)."""
    ndim = len(shape_of(x))
    axes = tuple(range(ndim))[::-1] if axes is None else tuple(int(a) % max(ndim, 1) for a in axes)
    if sorted(axes) != list(range(ndim)):
        raise ShapeError(f"transpose: axes {axes} are not a permutation of {ndim} axes")
    if axes == tuple(range(ndim)):
        return x
    return bind(transpose_p, x, axes=axes)


defvjp(transpose_p, lambda g, out, x, axes: (transpose(g, tuple(np.argsort(axes))),))


def _emit_transpose(writer: FunctionWriter, e: Eqn) -> bool:
    x, o, axes = e.inputs[0], writer.name(e.out), tuple(e.attrs["axes"])
    if axes == (1, 0):
        writer.mark_transpose(e.out, x)  # a product multiplies the matrix, with a flag
        writer.emit(f"{o} = {writer.name(x)}.T")
    else:
        writer.permute(o, writer.name(x), x.shape, axes, e.out.dtype)
    return True


defemit(transpose_p, _emit_transpose)


def swap_last(x) -> Any:
    """``x`` with its last two axes swapped (the matrix transpose of a batch)."""
    n = len(shape_of(x))
    return transpose(x, tuple(range(n - 2)) + (n - 1, n - 2))


# --------------------------------------------------------------------------- static indexing


def _getitem_impl(x, index):
    return x[index]


def _unindex_impl(g, index, shape):
    out = np.zeros(shape, dtype=g.dtype)
    if _is_basic(index):
        out[index] = g
    else:
        np.add.at(out, index, g)  # repeated indices must add up, not overwrite
    return out


def _is_basic(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis for i in items)


getitem_p = defprim("getitem", _getitem_impl)
unindex_p = defprim("unindex", _unindex_impl)


def _array_axis(index, ndim: int) -> tuple[int, Any] | None:
    """``(axis, integers)`` when ``index`` is one integer array with full slices around it
    (the advanced index the array API can take), else ``None`` for a basic index."""
    items = index if isinstance(index, tuple) else (index,)
    arrays = [k for k, i in enumerate(items) if isinstance(i, np.ndarray) or placement(i) is not None]
    if not arrays:
        return None
    k = arrays[0]
    rest_full = all(i == slice(None) for j, i in enumerate(items) if j != k)
    if (
        len(arrays) > 1
        or not rest_full
        or dtype_of(items[k]).kind not in "iu"
        or len(shape_of(items[k])) != 1
    ):
        raise DeviceError(
            f"index {index!r}: off numpy, nnc takes one 1-D integer array "
            "with full slices (:) on the other axes"
        )
    return k, items[k]


def _full(index, ndim: int):
    """A basic index spelled for every axis: the array API does not pad a short one as numpy does."""
    items = index if isinstance(index, tuple) else (index,)
    if Ellipsis in items or sum(i is not None for i in items) >= ndim:
        return index
    return items + (Ellipsis,)


def _getitem_generic(xp, x, index):
    found = _array_axis(index, x.ndim)
    if found is None:
        return x[_full(index, x.ndim)]
    axis, ints = found
    return xp.take(x, Placement(xp, x.device).put(ints), axis=axis)


def _unindex_generic(xp, g, index, shape):
    found = _array_axis(index, len(shape))
    if found is None:
        out = xp.zeros(shape, dtype=g.dtype, device=g.device)
        out[_full(index, len(shape))] = g
        return out
    # repeated integers must add up: a one-hot matrix sums them in one product
    axis, ints = found
    ints = Placement(xp, g.device).put(ints)
    onehot = xp.astype(ints[:, None] == xp.arange(shape[axis], device=g.device)[None, :], g.dtype)
    moved = xp.moveaxis(g, axis, 0)
    summed = xp.tensordot(xp.matrix_transpose(onehot), moved, axes=1)
    return xp.moveaxis(summed, 0, axis)


defgeneric(getitem_p, _getitem_generic)
defgeneric(unindex_p, _unindex_generic)


def getitem(x, index) -> Any:
    """``x[index]`` for indices known while tracing (ints, slices, constant integer arrays)."""
    items = index if isinstance(index, tuple) else (index,)
    if any(type(i) is Tracer for i in items):
        raise ShapeError(
            "indexing with a traced array is not supported by x[...]\n"
            "  hint: use nnc.pick(x, labels) to select one entry per row by label"
        )
    items = tuple(np.asarray(i) if isinstance(i, list) else i for i in items)
    index = items if isinstance(index, tuple) else items[0]
    try:
        np.empty(shape_of(x), dtype=np.bool_)[index]
    except IndexError as err:
        raise ShapeError(f"index {index!r} does not fit an array of shape {shape_of(x)}: {err}") from None
    return bind(getitem_p, x, index=index)


def unindex(g, index, shape) -> Any:
    """Scatter ``g`` into zeros of ``shape`` at ``index`` (the transpose of ``getitem``)."""
    return bind(unindex_p, g, index=index, shape=tuple(shape))


defvjp(getitem_p, lambda g, out, x, index: (unindex(g, index, shape_of(x)),))
defvjp(unindex_p, lambda g, out, x, index, shape: (getitem(g, index),))


def _static_index(index: Any) -> str | None:
    """A basic index as source (``1:, ::2``); ``None`` for one with arrays."""
    items = index if isinstance(index, tuple) else (index,)
    parts = []
    for i in items:
        if isinstance(i, (int, np.integer)):
            parts.append(str(int(i)))
        elif isinstance(i, slice):
            parts.append(":".join("" if x is None else str(int(x)) for x in (i.start, i.stop, i.step)))
        elif i is Ellipsis:
            parts.append("...")
        else:
            return None
    return ", ".join(parts)


def _emit_getitem(writer: FunctionWriter, e: Eqn) -> bool:
    text = _static_index(e.attrs["index"])
    if text is None:
        return False
    x, o = writer.name(e.inputs[0]), writer.name(e.out)
    if not e.out.shape:
        writer.emit(f"{o} = np.full((), {x}[{text}])")
    else:
        writer.emit(f"{o} = {x}[{text}]")
    writer.mark_view(e.out)
    return True


def _emit_unindex(writer: FunctionWriter, e: Eqn) -> bool:
    text = _static_index(e.attrs["index"])
    if text is None:
        return False
    g, o = e.inputs[0], writer.name(e.out)
    writer.alloc(o, e.attrs["shape"], e.out.dtype, fill="0")
    if not g.shape:
        writer.emit(f"{o}[{text}] = {writer.scalar(g)}")
        return True
    part = writer.fresh("part")
    writer.emit(f"{part} = {o}[{text}]")
    idx = [f"i{k}" for k in range(len(g.shape))]
    for k, d in enumerate(g.shape):
        writer.emit(f"for {idx[k]} in range({d}):", k + 1)
    writer.emit(f"{part}[{', '.join(idx)}] = {writer.name(g)}[{', '.join(idx)}]", len(g.shape) + 1)
    return True


defemit(getitem_p, _emit_getitem)
defemit(unindex_p, _emit_unindex)


# --------------------------------------------------------------------------- concat


def _concat_impl(*xs, axis):
    return np.concatenate(xs, axis=axis)


concat_p = defprim("concat", _concat_impl)
defgeneric(concat_p, lambda xp, *xs, axis: xp.concat(xs, axis=axis))


def concat(xs, axis: int = -1) -> Any:
    """Join arrays along ``axis``; all other axes must agree."""
    xs = list(xs)
    shapes = [shape_of(x) for x in xs]
    ndim = len(shapes[0])
    if any(len(s) != ndim for s in shapes):
        raise ShapeError(f"concat: all operands need the same rank, got shapes {shapes}")
    ax = axis % ndim
    if any(s[:ax] + s[ax + 1 :] != shapes[0][:ax] + shapes[0][ax + 1 :] for s in shapes):
        raise ShapeError(f"concat along axis {axis}: other axes differ in shapes {shapes}")
    dtype = np.result_type(*[dtype_of(x) for x in xs])
    xs = [cast(x, dtype) for x in xs]
    return bind(concat_p, *xs, axis=ax)


def _concat_vjp(g, out, *xs, axis):
    cts, start = [], 0
    for x in xs:
        size = shape_of(x)[axis]
        index = (slice(None),) * axis + (slice(start, start + size),)
        cts.append(getitem(g, index))
        start += size
    return tuple(cts)


defvjp(concat_p, _concat_vjp)


def _emit_concat(writer: FunctionWriter, e: Eqn) -> bool:
    parts = ", ".join(f"np.ascontiguousarray({writer.name(v)})" for v in e.inputs)
    writer.emit(f"{writer.name(e.out)} = np.concatenate(({parts},), axis={e.attrs['axis']})")
    return True


defemit(concat_p, _emit_concat)


# --------------------------------------------------------------------------- pick (labels)


def _pick_impl(x, labels):
    k = x.shape[-1]
    if labels.size and labels.min() < 0:  # numpy would silently wrap a negative label
        raise ShapeError(f"pick: label {labels.min()} is negative (labels must be 0..{k - 1})")
    try:
        if x.ndim == 2:
            return x[np.arange(x.shape[0]), labels]
        return np.take_along_axis(x, labels[..., None], axis=-1)[..., 0]
    except IndexError:
        raise ShapeError(
            f"pick: label {labels.max()} is out of range for {k} classes (labels must be 0..{k - 1})"
        ) from None


def _unpick_impl(g, labels, k):
    out = np.zeros(g.shape + (k,), dtype=g.dtype)
    if g.ndim == 1:
        out[np.arange(g.shape[0]), labels] = g
    else:
        np.put_along_axis(out, labels[..., None], g[..., None], axis=-1)
    return out


def _one_hot(xp, labels, k):
    if labels.size and bool(xp.min(labels) < 0):
        raise ShapeError(f"pick: label {int(xp.min(labels))} is negative (labels must be 0..{k - 1})")
    if labels.size and bool(xp.max(labels) >= k):
        raise ShapeError(
            f"pick: label {int(xp.max(labels))} is out of range for {k} classes (labels must be 0..{k - 1})"
        )
    return labels[..., None] == xp.arange(k, dtype=labels.dtype, device=labels.device)


def _pick_generic(xp, x, labels):
    chosen = _one_hot(xp, labels, x.shape[-1])
    return xp.sum(xp.where(chosen, x, xp.zeros_like(x)), axis=-1)


def _unpick_generic(xp, g, labels, k):
    spread = xp.broadcast_to(g[..., None], g.shape + (k,))
    return xp.where(_one_hot(xp, labels, k), spread, xp.zeros_like(spread))


pick_p = defprim("pick", _pick_impl)
unpick_p = defprim("unpick", _unpick_impl)
defgeneric(pick_p, _pick_generic)
defgeneric(unpick_p, _unpick_generic)


def pick(x, labels) -> Any:
    """``x[..., labels]`` row by row: the entry of each row's label (integer labels).

    >>> import numpy as np
    >>> pick(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 0]))
    array([0.9, 0.8])
    """
    sx, sl = shape_of(x), shape_of(labels)
    if dtype_of(labels).kind not in "iu":
        raise ShapeError(f"pick: labels must be integers, got dtype {dtype_of(labels)}")
    if sx[:-1] != sl:
        raise ShapeError(
            f"pick: labels of shape {sl} do not match predictions of shape {sx} "
            f"(expected labels of shape {sx[:-1]})"
        )
    return bind(pick_p, x, labels)


def _unpick(g, labels, k):
    return bind(unpick_p, g, labels, k=k)


defvjp(pick_p, lambda g, out, x, labels: (_unpick(g, labels, shape_of(x)[-1]), None))
defvjp(unpick_p, lambda g, out, x, labels, k: (pick(g, labels), None))


def _emit_pick(writer: FunctionWriter, e: Eqn) -> bool:
    x, labels = e.inputs
    if len(x.shape) != 2:
        return False
    o, k = writer.name(e.out), x.shape[1]
    writer.alloc(o, (x.shape[0],), e.out.dtype)
    writer.emit(f"for i in range({x.shape[0]}):")
    writer.emit(f"lab = {writer.name(labels)}[i]", 2)
    writer.emit(f"if lab < 0 or lab >= {k}:", 2)
    writer.emit("raise ValueError('nnc: label out of range')", 3)
    writer.emit(f"{o}[i] = {writer.name(x)}[i, lab]", 2)
    return True


def _emit_unpick(writer: FunctionWriter, e: Eqn) -> bool:
    g, labels = e.inputs
    if len(g.shape) != 1:
        return False
    o = writer.name(e.out)
    writer.alloc(o, (g.shape[0], e.attrs["k"]), e.out.dtype, fill="0")
    writer.emit(f"for i in range({g.shape[0]}):")
    writer.emit(f"{o}[i, {writer.name(labels)}[i]] = {writer.name(g)}[i]", 2)
    return True


defemit(pick_p, _emit_pick)
defemit(unpick_p, _emit_unpick)
