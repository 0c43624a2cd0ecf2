"""Primitives that move data without arithmetic: reshape, transpose, indexing, concat, pick, take."""

from __future__ import annotations

from collections.abc import Callable
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
        # a reshape of a C-ordered array is a C-ordered view of it: readers need no copy
        writer.emit(f"{o} = {writer.contiguous(x)}.reshape({shape_text(e.attrs['shape'])})")
        if writer.contiguous(x) != writer.name(x) or writer._is_argument(x):
            writer.mark_view(e.out)
        return True
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


# Compiled forms that read an operand whose last two axes are swapped as the unswapped array,
# with a flag (linalg's batched product, a BLAS transpose): primitive name -> whether the
# equation's compiled form reads its input ``v`` so. A swap read only by them is never copied.
SWAP_READERS: dict[str, Callable[[Eqn, Any], bool]] = {}


def _is_swap_last(e: Eqn) -> bool:
    n = len(e.inputs[0].shape)
    return e.prim is transpose_p and n >= 3 and tuple(e.attrs["axes"]) == tuple(range(n - 2)) + (n - 1, n - 2)


def swapped_source(writer: FunctionWriter, v: Any) -> Any:
    """The array whose last two axes ``v`` swaps, when ``v`` is such a transpose of this
    function's graph; else ``None``."""
    producer = getattr(v, "producer", None)
    if producer is None or not _is_swap_last(producer) or not any(q is producer for q in writer.graph.eqns):
        return None
    return producer.inputs[0]


def _read_only_swapped(writer: FunctionWriter, e: Eqn) -> bool:
    """Whether every reader of ``e.out`` (a swap of the last two axes) takes it as a flag."""
    if any(v is e.out for v in writer.graph.outputs):
        return False
    readers = [q for q in writer.graph.eqns if any(v is e.out for v in q.inputs)]
    return all(q.prim.name in SWAP_READERS and SWAP_READERS[q.prim.name](q, e.out) for q in readers)


def _emit_transpose(writer: FunctionWriter, e: Eqn) -> bool:
    x, axes = e.inputs[0], tuple(e.attrs["axes"])
    if _is_swap_last(e) and _read_only_swapped(writer, e):
        return True  # its readers multiply x itself, transposed by a flag: nothing to write
    o = writer.name(e.out)
    if axes == (1, 0):
        writer.mark_transpose(e.out, x)  # a product multiplies the matrix, with a flag
        writer.emit(f"{o} = {writer.name(x)}.T")
    else:
        writer.permute(o, writer.contiguous(x), x.shape, axes, e.out.dtype)
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


def _emit_by_label(writer: FunctionWriter, e: Eqn, n: int, k: int, rows: str, flat: str, step: str) -> None:
    """The loop of pick and unpick over ``n`` rows of ``k`` (``rows``) and ``n`` entries
    (``flat``), one label each: a label out of range raises, as the interpreter's
    take_along_axis and put_along_axis do, rather than read or write outside the array."""
    lab = writer.fresh("lab")
    writer.emit(f"{lab} = {writer.contiguous(e.inputs[1])}.reshape({n})")
    writer.emit(f"for i in range({n}):")
    writer.emit(f"lab = {lab}[i]", 2)
    writer.emit(f"if lab < 0 or lab >= {k}:", 2)
    writer.emit("raise ValueError('nnc: label out of range')", 3)
    writer.emit(step.format(rows=rows, flat=flat), 2)


def _emit_pick(writer: FunctionWriter, e: Eqn) -> bool:
    # any rank: the leading axes flattened into rows, each row's label picked
    x = e.inputs[0]
    o, k = writer.name(e.out), x.shape[-1]
    n = int(np.prod(x.shape[:-1], dtype=np.int64))
    rows, flat = writer.fresh("rows"), writer.fresh("flat")
    writer.alloc(o, e.out.shape, e.out.dtype)
    writer.emit(f"{rows} = {writer.contiguous(x)}.reshape(({n}, {k}))")
    writer.emit(f"{flat} = {o}.reshape({n})")
    _emit_by_label(writer, e, n, k, rows, flat, "{flat}[i] = {rows}[i, lab]")
    return True


def _emit_unpick(writer: FunctionWriter, e: Eqn) -> bool:
    # any rank: zeros, each row's label set to its entry of g
    g = e.inputs[0]
    o, k = writer.name(e.out), e.attrs["k"]
    n = int(np.prod(g.shape, dtype=np.int64))
    rows, flat = writer.fresh("rows"), writer.fresh("flat")
    writer.alloc(o, e.out.shape, e.out.dtype, fill="0")
    writer.emit(f"{rows} = {o}.reshape(({n}, {k}))")
    writer.emit(f"{flat} = {writer.contiguous(g)}.reshape({n})")
    _emit_by_label(writer, e, n, k, rows, flat, "{rows}[i, lab] = {flat}[i]")
    return True


defemit(pick_p, _emit_pick)
defemit(unpick_p, _emit_unpick)


# --------------------------------------------------------------------------- take (rows of a table)


def _rows(v: int) -> str:
    return f"a table of {v} row{'' if v == 1 else 's'}"


def _take_range_error(bad: int, v: int) -> ShapeError:
    """The error for an index ``bad`` outside ``0..v-1`` (negative ones are never wrapped)."""
    allowed = f"indices must be 0..{v - 1}" if v else "it has no row to take"
    if bad < 0:
        return ShapeError(f"take: index {bad} is negative ({allowed})")
    return ShapeError(f"take: index {bad} is out of range for {_rows(v)} ({allowed})")


def _check_take_indices(indices: Any, v: int, xp: Any = np) -> None:
    """Refuse indices outside ``0..v-1`` (numpy would wrap a negative one, or raise IndexError);
    ``xp`` is the indices' array namespace."""
    if indices.size:
        low, high = int(xp.min(indices)), int(xp.max(indices))
        if low < 0 or high >= v:
            raise _take_range_error(low if low < 0 else high, v)


def _negative_index(indices: np.ndarray, v: int) -> None:
    # np.take and np.add.at refuse an index >= v themselves, but wrap a negative one
    if indices.dtype.kind == "i" and indices.size:
        low = int(indices.min())
        if low < 0:
            raise _take_range_error(low, v)


def _take_impl(table, indices):
    v = table.shape[0]
    _negative_index(indices, v)
    try:
        return np.take(table, indices, axis=0)
    except IndexError:
        raise _take_range_error(int(indices.max()), v) from None


def _untake_impl(g, indices, v):
    _negative_index(indices, v)
    rest = g.shape[indices.ndim :]
    d = int(np.prod(rest, dtype=np.int64))
    out = np.zeros(v * d, dtype=g.dtype)
    flat = indices.reshape(-1).astype(np.intp, copy=False)
    # np.add.at adds repeated indices up; on a 1-d target it takes numpy's fast path, several
    # times faster than on rows of a 2-d one (or than bincount, a one-hot product, a sort)
    where = flat if d == 1 else (flat[:, None] * d + np.arange(d)).reshape(-1)
    try:
        np.add.at(out, where, g.reshape(-1))
    except IndexError:
        raise _take_range_error(int(indices.max()), v) from None
    return out.reshape((v,) + rest)


def _take_abstract(table, indices):
    return tuple(indices[0]) + tuple(table[0][1:]), table[1]


def _untake_abstract(g, indices, v):
    return (v,) + tuple(g[0][len(indices[0]) :]), g[1]


def _take_generic(xp, table, indices):
    _check_take_indices(indices, table.shape[0], xp)
    rows = xp.take(table, xp.reshape(indices, (-1,)), axis=0)
    return xp.reshape(rows, tuple(indices.shape) + tuple(table.shape[1:]))


def _untake_generic(xp, g, indices, v):
    _check_take_indices(indices, v, xp)
    rest = tuple(g.shape[indices.ndim :])
    flat = xp.astype(xp.reshape(indices, (-1,)), xp.int64)
    g2 = xp.reshape(g, (flat.shape[0], int(np.prod(rest, dtype=np.int64))))
    chosen = flat[:, None] == xp.arange(v, dtype=xp.int64, device=g.device)[None, :]  # (n, v)
    if bool(xp.all(xp.isfinite(g2))):  # repeated indices add up in one product
        out = xp.matmul(xp.matrix_transpose(xp.astype(chosen, g.dtype)), g2)
    else:  # 0 * nan is nan: a product would spread a non-finite entry to every row
        spread = g2[:, None, :]
        picked = xp.where(chosen[:, :, None], spread, xp.zeros_like(spread))
        out = xp.sum(picked, axis=0)
    return xp.reshape(out, (v,) + rest)


take_p = defprim("take", _take_impl, abstract=_take_abstract)
untake_p = defprim("untake", _untake_impl, abstract=_untake_abstract)
defgeneric(take_p, _take_generic)
defgeneric(untake_p, _untake_generic)


def _integer_indices(indices: Any, what: str) -> Any:
    if isinstance(indices, (list, tuple, int, np.integer)):
        indices = np.asarray(indices)
    dtype = dtype_of(indices)
    if dtype.kind not in "iu":
        raise ShapeError(
            f"{what}: indices must be integers, got dtype {dtype}\n"
            "  hint: cast them with indices.astype(np.int64)"
        )
    return indices


def take(table, indices) -> Any:
    """``table[indices]`` along axis 0: the rows of a ``(v, ...)`` table that integer
    ``indices`` of any shape name, as an array of shape ``indices.shape + table.shape[1:]``
    (a token embedding). Indices must be ``0..v-1``: negative ones are refused, not wrapped.
    The gradient flows to ``table`` (rows taken twice get both gradients), not to ``indices``.

    >>> import numpy as np
    >>> take(np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]), np.array([2, 0, 2]))
    array([[4., 5.],
           [0., 1.],
           [4., 5.]])
    """
    indices = _integer_indices(indices, "take")
    st = shape_of(table)
    if not st:
        raise ShapeError("take: the table must have at least one axis (its rows), got a 0-d array")
    if type(table) is Tracer and type(indices) is np.ndarray:
        _check_take_indices(indices, st[0])  # known now; the implementation runs only later
    return bind(take_p, table, indices)


def untake(g, indices, v: int) -> Any:
    """The transpose of :func:`take`: zeros of shape ``(v,) + rest`` with each slice
    ``g[i]`` of ``g`` (shape ``indices.shape + rest``) added into row ``indices[i]``;
    repeated indices add up.

    >>> import numpy as np
    >>> untake(np.array([1.0, 2.0, 4.0]), np.array([2, 0, 2]), v=3)
    array([2., 0., 5.])
    """
    indices = _integer_indices(indices, "untake")
    sg, si = shape_of(g), shape_of(indices)
    if sg[: len(si)] != si:
        raise ShapeError(
            f"untake: values of shape {sg} do not start with the indices' shape {si} "
            f"(expected shape {si} + the table's row shape)"
        )
    if type(g) is Tracer and type(indices) is np.ndarray:
        _check_take_indices(indices, int(v))
    return bind(untake_p, g, indices, v=int(v))


defvjp(take_p, lambda g, out, table, indices: (untake(g, indices, shape_of(table)[0]), None))
defvjp(untake_p, lambda g, out, values, indices, v: (take(g, indices), None))


def _flat_rows(writer: FunctionWriter, v: Any, rows: int, width: int) -> str:
    """A 1-d C-ordered view of ``v`` (``rows * width`` entries) in generated code."""
    name = writer.fresh("flat")
    if not v.shape:
        writer.emit(f"{name} = np.full(1, {writer.scalar(v)})")
    else:
        writer.emit(f"{name} = {writer.contiguous(v)}.reshape({rows * width})")
    return name


def _emit_take_loops(writer: FunctionWriter, e: Eqn, source: Any, target: str, scatter: bool) -> None:
    """The loops of take (``target`` row i = ``source`` row ``indices[i]``) or of untake
    (``target`` row ``indices[i]`` += ``source`` row i), over 1-d views; an index outside
    ``0..v-1`` raises, and nnc.compile reruns the interpreter for its message."""
    indices = e.inputs[1]
    v = e.attrs["v"] if scatter else e.inputs[0].shape[0]
    n = int(np.prod(indices.shape, dtype=np.int64))
    d = int(np.prod(source.shape[len(indices.shape) :] if scatter else source.shape[1:], dtype=np.int64))
    src = _flat_rows(writer, source, n if scatter else v, d)
    ids = _flat_rows(writer, indices, n, 1)
    r, i, j = writer.fresh("row"), writer.fresh("i"), writer.fresh("j")
    writer.emit(f"for {i} in range({n}):")
    writer.emit(f"{r} = np.int64({ids}[{i}])", 2)  # a wrapped-round uint64 is negative here
    writer.emit(f"if {r} < 0 or {r} >= {v}:", 2)
    writer.emit("raise ValueError('nnc: index out of range')", 3)
    writer.emit(f"for {j} in range({d}):", 2)
    if scatter:
        writer.emit(f"{target}[{r} * {d} + {j}] += {src}[{i} * {d} + {j}]", 3)
    else:
        writer.emit(f"{target}[{i} * {d} + {j}] = {src}[{r} * {d} + {j}]", 3)


def _emit_take(writer: FunctionWriter, e: Eqn) -> bool:
    o, size = writer.name(e.out), int(np.prod(e.out.shape, dtype=np.int64))
    writer.alloc(o, e.out.shape, e.out.dtype)
    target = writer.fresh("flat")
    writer.emit(f"{target} = {o}.reshape({size})")
    _emit_take_loops(writer, e, e.inputs[0], target, scatter=False)
    return True


def _emit_untake(writer: FunctionWriter, e: Eqn) -> bool:
    o, size = writer.name(e.out), int(np.prod(e.out.shape, dtype=np.int64))
    writer.alloc(o, e.out.shape, e.out.dtype, fill="0")
    target = writer.fresh("flat")
    writer.emit(f"{target} = {o}.reshape({size})")
    _emit_take_loops(writer, e, e.inputs[0], target, scatter=True)
    return True


defemit(take_p, _emit_take)
defemit(untake_p, _emit_untake)
