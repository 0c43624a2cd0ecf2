"""Staging: turning a Python call into a cached graph.

A transform (``grad``, ``vjp``, ``nnc.compile``) sees a call ``fn(*args)`` whose arguments
are trees. :func:`call_signature` splits their leaves into arrays, the inputs of a trace,
and Python values, its constants, and names the trace by the call's *signature*: the tree
structure, each array's shape and dtype, the constants and, for arrays of another namespace
than numpy, their placement. :func:`trace_call` traces ``fn`` for a signature into a
:class:`~nnc.backend.core.Graph`; :class:`Staged` is a graph with its compiled code; and
:func:`cache_for` is where a transform keeps one per signature, for as long as ``fn`` lives.

>>> import numpy as np
>>> sig, values = call_signature((np.ones(3), 2.0))
>>> sig.dynamic, sig.statics
([0], ((1, 2.0),))
>>> graph, out_def = trace_call(lambda x, k: x * k, sig, values)
>>> [eqn.prim.name for eqn in graph.eqns]
['mul']
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .array_api import Placement, described, lift, mixed, numpy_dtype, placement
from .core import Graph, Tracer, eval_graph, trace_graph
from .execute import compile_graph, quiet
from .tree import tree_flatten, tree_unflatten, treedef_size

Aval = tuple[tuple[int, ...], np.dtype]  # what a trace knows of an array: its shape and dtype


@dataclass
class CallSignature:
    """How a call's arguments split into traced array leaves and constant leaves."""

    treedef: Any  # of the tuple of positional arguments
    dynamic: list[int]  # leaf positions of arrays
    statics: tuple[tuple[int, Any], ...]  # (position, value) of constant leaves
    key: tuple  # names the trace: equal keys, one graph
    placement: Placement | None = None  # where non-numpy arrays live; None: all numpy

    @property
    def treedefs(self) -> tuple:
        """The tree structure of each positional argument."""
        return self.treedef[2]

    @property
    def per_arg(self) -> list[range]:
        """The leaf positions of each positional argument."""
        out, start = [], 0
        for d in self.treedefs:
            n = treedef_size(d)
            out.append(range(start, start + n))
            start += n
        return out

    def rebuild(self, values: list) -> tuple:
        """The positional arguments again, with ``values`` (arrays or tracers) at the array leaves."""
        leaves: list = [None] * (len(self.dynamic) + len(self.statics))
        for pos, v in zip(self.dynamic, values):
            leaves[pos] = v
        for pos, v in self.statics:
            leaves[pos] = v
        return tree_unflatten(self.treedef, leaves)


def call_signature(args: tuple) -> tuple[CallSignature, list]:
    """Split the arguments into array values (traced) and constants; ``key`` names the trace.

    Arrays of another namespace than numpy (CuPy, array-api-strict) add their placement to
    the key, so the graph is compiled for them; they may not meet numpy arrays or another
    device in one call (numpy scalars are constants and are moved)."""
    leaves, treedef = tree_flatten(args)
    dynamic: list[int] = []
    values: list = []
    constants: list[tuple[int, Any]] = []
    avals: list = []
    foreign: list[int] | None = None
    # Runs on every call of a transformed function: the common types are tested first, by identity.
    for i, leaf in enumerate(leaves):
        t = type(leaf)
        if t is np.ndarray or t is Tracer:
            dynamic.append(i)
            values.append(leaf)
            avals.append((leaf.shape, leaf.dtype))
        elif isinstance(leaf, np.ndarray):  # a subclass (np.memmap) is numpy's all the same
            dynamic.append(i)
            values.append(np.asarray(leaf))
            avals.append((leaf.shape, leaf.dtype))
        elif isinstance(leaf, np.generic):
            dynamic.append(i)
            values.append(np.asarray(leaf))
            avals.append(((), leaf.dtype))
        elif hasattr(leaf, "__array_namespace__"):
            dynamic.append(i)
            values.append(leaf)
            avals.append((tuple(leaf.shape), numpy_dtype(leaf.dtype)))
            foreign = foreign or []
            foreign.append(i)
        else:
            constants.append((i, leaf))
    statics = tuple(constants)
    key = (treedef, tuple(avals), statics)
    if foreign is None:
        return CallSignature(treedef, dynamic, statics, key), values
    shared = _one_placement(treedef, leaves, dynamic, foreign)
    return CallSignature(treedef, dynamic, statics, key + (shared.key,), shared), lift(values, shared)


def _one_placement(treedef: Any, leaves: list, dynamic: list[int], foreign: list[int]) -> Placement:
    """The placement of the call's device arrays; a clear error when devices mix."""
    sizes = [treedef_size(d) for d in treedef[2]]
    starts = np.cumsum([0] + sizes)

    def name(i: int) -> str:
        return f"argument {int(np.searchsorted(starts, i, side='right')) - 1}"

    first = foreign[0]
    shared = placement(leaves[first])
    assert shared is not None, "a leaf with __array_namespace__ has a placement"
    for i in foreign[1:]:
        other = placement(leaves[i])
        if other != shared:
            raise mixed(
                "this call's arguments",
                f"{name(first)} holds {described(shared)}",
                f"{name(i)} holds {described(other)}",
            )
    for i in dynamic:
        if type(leaves[i]) is np.ndarray and leaves[i].ndim > 0:
            raise mixed(
                "this call's arguments",
                f"{name(first)} holds {described(shared)}",
                f"{name(i)} holds {described(None)}",
            )
    return shared


def avals_of(values: list) -> list[Aval]:
    """The shape and dtype of each of ``values``, the inputs of a trace."""
    return [(tuple(v.shape), numpy_dtype(v.dtype)) for v in values]


def trace_call(fn: Callable, sig: CallSignature, values: list) -> tuple[Graph, Any]:
    """The graph of ``fn`` called with ``values`` traced and ``sig``'s constants in place, and
    the tree structure of its result (the graph's outputs are that tree's leaves)."""
    box = {}

    def flat_fn(tracers: list) -> list:
        out = fn(*sig.rebuild(tracers))
        out_leaves, box["treedef"] = tree_flatten(out)
        return out_leaves

    graph = trace_graph(flat_fn, avals_of(values))
    return graph, box["treedef"]


class Staged:
    """A graph with its compiled code; runs compiled on arrays, inlines itself on tracers.

    ``meta`` is the transform's own note on how to read the outputs (which leaves are which
    gradient, say), kept beside the graph in the same cache entry."""

    __slots__ = ("graph", "run", "meta")

    def __init__(self, graph: Graph, meta: Any = None, placement: Placement | None = None):
        self.graph = graph
        self.run = compile_graph(graph, placement)
        self.meta = meta

    def __call__(self, values: list) -> list:
        for v in values:
            if type(v) is Tracer:  # a transform of a transform: become part of the outer trace
                return eval_graph(self.graph, values)
        with quiet():  # a diverging step overflows: the checks and fit report it, not numpy
            return self.run(*values)


_CACHES: weakref.WeakKeyDictionary[Callable, dict] = weakref.WeakKeyDictionary()


def cache_for(fn: Callable) -> dict:
    """The cache of staged graphs of ``fn``, shared by every transform of it and dropped with it.

    Transforms key their entries by their own kind and the call signature's key."""
    try:
        return _CACHES.setdefault(fn, {})
    except TypeError:  # not weak-referenceable: cache on the transform object only
        return {}
