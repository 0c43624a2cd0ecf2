"""Run graphs fast: a graph becomes one straight-line Python function of numpy calls.

Small models are dominated by per-operation overhead, so instead of interpreting the
equation list on every call we generate the code once per graph (``v3 = matmul(v0, v1)``
...) and let CPython run it; intermediates are released right after their last use.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import numpy as np

from .array_api import Placement
from .core import Const, Graph, impl_for

_LITERAL_TYPES = (int, float, bool, str, type(None))


def compile_graph(graph: Graph, placement: Placement | None = None) -> Callable[..., list]:
    """A function ``run(*inputs) -> list of outputs`` that computes ``graph``.

    ``placement`` compiles it for arrays of another namespace than numpy: each primitive's
    generic implementation is bound and constants are put on the device once."""
    names: dict[int, str] = {}
    namespace: dict[str, Any] = {}

    def name_of(v) -> str:
        key = id(v)
        if key not in names:
            if type(v) is Const:
                names[key] = f"c{len(names)}"
                namespace[names[key]] = v.value if placement is None else placement.put(v.value)
            else:
                names[key] = f"v{len(names)}"
        return names[key]

    args = [name_of(v) for v in graph.inputs]
    last_use: dict[int, int] = {}
    for i, eqn in enumerate(graph.eqns):
        for v in eqn.inputs:
            last_use[id(v)] = i
    keep = {id(v) for v in graph.outputs} | {id(v) for v in graph.inputs}

    lines = [f"def run({', '.join(args)}):"]
    for i, eqn in enumerate(graph.eqns):
        fn = f"p_{eqn.prim.name}"
        namespace[fn] = eqn.prim.impl if placement is None else impl_for(eqn.prim, placement)
        call_args = [name_of(v) for v in eqn.inputs]
        for k, value in eqn.attrs.items():
            if type(value) in _LITERAL_TYPES:
                call_args.append(f"{k}={value!r}")
            else:
                const = f"k{i}_{k}"
                namespace[const] = value
                call_args.append(f"{k}={const}")
        targets = ", ".join(name_of(v) for v in eqn.outs)
        if eqn.prim.multiple_results:
            targets += ","
        lines.append(f"    {targets} = {fn}({', '.join(call_args)})")
        dead = [
            names[id(v)]
            for v in eqn.inputs
            if type(v) is not Const and last_use.get(id(v)) == i and id(v) not in keep
        ]
        if dead:
            lines.append(f"    del {', '.join(dict.fromkeys(dead))}")
    lines.append(f"    return [{', '.join(name_of(v) for v in graph.outputs)}]")
    source = "\n".join(lines)
    exec(compile(source, f"<nnc graph {len(graph.eqns)} ops>", "exec"), namespace)
    run = namespace["run"]
    run.source = source
    return run


def compiled(graph: Graph, placement: Placement | None = None) -> Callable[..., list]:
    """``compile_graph(graph, placement)``, made once per graph and placement and kept with it."""
    key = None if placement is None else placement.key
    run = graph.runs.get(key)
    if run is None:
        run = graph.runs[key] = compile_graph(graph, placement)
    return run


# Whether the floating-point state is already nnc's: nested boundaries then skip np.errstate,
# which costs microseconds per use while a ContextVar read costs tens of nanoseconds.
_QUIET: ContextVar[bool] = ContextVar("nnc_quiet_floating_point", default=False)


class quiet:
    """``with quiet():`` runs nnc code with numpy's floating-point warnings off.

    Overflow inside a diverging model is not hidden by this, but reported by nnc itself: the
    check primitives refuse non-finite inputs and targets, and ``fit`` stops on a non-finite
    loss or parameter, naming it. Numpy's raw ``RuntimeWarning`` (pointing at nnc's source or
    at generated code) would only repeat that without saying where. Only the outermost of
    nested uses sets the state.

    >>> with quiet():
    ...     float(np.float32(1e38) * np.float32(1e38))
    inf
    """

    __slots__ = ("_token", "_errstate")

    def __enter__(self) -> None:
        self._token = None
        if not _QUIET.get():
            self._errstate = np.errstate(all="ignore")
            self._errstate.__enter__()
            self._token = _QUIET.set(True)

    def __exit__(self, *exc_info: Any) -> None:
        if self._token is not None:
            _QUIET.reset(self._token)
            self._errstate.__exit__(*exc_info)
