"""Native functions: a pure function of arrays traced, generated as Numba code, loaded and cached.

:class:`NativeFunction` is what ``nnc.compile`` returns. On each new input signature
(structure, shapes, dtypes) it traces the function into a graph, has
:mod:`nnc.backend.numba_codegen` write that graph as the source of one Python module, and
jits it with Numba: a :class:`Specialisation`. The source goes to a file in the cache
directory when one is writable, so that Numba's own disk cache keeps the machine code
across processes; the file's name is a digest of everything the machine code depends on.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import importlib.util
import inspect
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .execute import quiet
from .numba_codegen import generate
from .staging import CallSignature, call_signature, trace_call
from .tree import tree_unflatten

# The primitives already reported as running their numpy implementation: each is reported once
# per process, not once per compiled function.
_REPORTED_FALLBACKS: set = set()


@dataclass
class Specialisation:
    """One specialisation: the native function for one input signature."""

    run: Callable
    out_def: Any
    out_avals: list
    seconds: float
    ops: int
    fallbacks: tuple
    cached_on_disk: bool
    source: str
    failed: str | None = None  # why the generated code could not run: the interpreter runs instead


def _cache_dir() -> str | None:
    base = os.environ.get("NNC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "nnc"
    )
    path = os.path.join(base, "compiled")
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".probe-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
        return path
    except OSError:
        return None


@functools.cache
def _runtime_fingerprint() -> bytes:
    """The source of the functions generated code calls: Numba's cache of a generated
    function holds their machine code too, so a changed helper must change the digest."""
    with open(os.path.join(os.path.dirname(__file__), "numba_blas.py"), "rb") as f:
        return f.read()


def _digest(text: str, globals_: dict) -> str:
    h = hashlib.sha256(text.encode())
    h.update(_runtime_fingerprint())
    for name in sorted(globals_):
        value = globals_[name]
        h.update(name.encode())
        if isinstance(value, np.ndarray):
            h.update(str((value.shape, value.dtype.str)).encode())
            h.update(np.ascontiguousarray(value).tobytes())
        else:
            h.update(repr(value).encode())
    return h.hexdigest()[:24]


def _load(source: str, globals_: dict, fallbacks: set, name: str, disk: bool = True) -> tuple[Callable, bool]:
    """The jitted function, from a file in the cache directory when one is writable
    (so Numba's own cache keeps the machine code across processes), else from memory."""
    import numba  # only here: `import nnc` stays fast

    # object-mode fallbacks are not cacheable
    directory = _cache_dir() if disk and not fallbacks else None
    if directory is not None:
        digest = _digest(source, globals_)
        path = os.path.join(directory, f"nnc_{digest}.py")
        if not os.path.exists(path):
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                f.write(source)
            os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
        module_name = f"nnc_compiled_{digest}"
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec is not None and spec.loader is not None, "a .py file has a loader"
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module  # Numba's disk cache finds globals through it
            spec.loader.exec_module(module)
        namespace = vars(module)
    else:
        namespace = {}
        exec(builtins.compile(source, "<nnc compiled>", "exec"), namespace)
    namespace.update(globals_)
    functions = [line.split("(")[0][4:] for line in source.splitlines() if line.startswith("def ")]
    cache = directory is not None
    # reassociation lets reductions vectorise; NaN and infinity semantics are kept
    jit = numba.njit(cache=cache, nogil=True, error_model="numpy", fastmath={"reassoc", "contract", "arcp"})
    # bodies first (the main function calls them as jitted globals), the main function last;
    # a module already loaded by this process (the same graph compiled again) has them jitted
    python = {line.split()[-1] for line in source.splitlines() if line.startswith("# nnc: python ")}
    for fn in [f for f in functions if f != name] + [name]:
        if fn not in python and not hasattr(namespace[fn], "py_func"):
            namespace[fn] = jit(namespace[fn])
    return namespace[name], cache


def _quietly(run: Callable) -> Callable:
    """Numba's performance hints speak of generated code the user never wrote: keep them out."""

    def call(*args):
        with warnings.catch_warnings(), quiet():  # and numpy's, as every compiled run
            from numba.core.errors import NumbaPerformanceWarning

            warnings.simplefilter("ignore", NumbaPerformanceWarning)
            return run(*args)

    return call


class GeneratedCodeWarning(UserWarning):
    """nnc.compile wrote code that does not run, and the interpreter runs instead: a bug in nnc
    (the test suite makes it an error, so that a compiled path cannot pass as the interpreted one)."""


def _native_layout(v: np.ndarray) -> np.ndarray:
    """``v`` C-ordered and in native byte order, copied only if it is not."""
    if not v.dtype.isnative:
        v = v.astype(v.dtype.newbyteorder("="))
    return v if v.flags.c_contiguous else np.ascontiguousarray(v)


def _refused(err: Exception) -> bool:
    """Whether ``err`` is a compiled check refusing the values (``ValueError('nnc: ...')``)."""
    return isinstance(err, ValueError) and str(err).startswith("nnc: ")


class NativeFunction:
    """A pure function of arrays and parameter trees, run as native code; call it like ``fn``.

    ``specialisations`` maps each input signature met so far to its :class:`Specialisation`.
    Arguments the generated code cannot take (traced values, another backend's arrays) run
    ``fn`` itself, as do values it can detect but not describe, so that the interpreter
    raises its usual error. ``verbose=True`` reports each compilation on stderr, under
    ``name``."""

    def __init__(self, fn: Callable, verbose: bool, name: str):
        self.fn, self.verbose, self.name = fn, verbose, name
        self.specialisations: dict[tuple, Specialisation] = {}
        # whether a check's refusal reruns fn for its message; a test that compares the
        # compiled and interpreted paths turns it off, so that the generated code alone answers
        self.rerun_refused = True

    def __repr__(self) -> str:
        return f"<nnc.compile({self.name}): {len(self.specialisations)} specialisation(s)>"

    def _build(self, sig: CallSignature, values: list) -> Specialisation:
        start = time.perf_counter()
        graph, out_def = trace_call(self.fn, sig, values)
        module = generate(graph, "compiled")
        source = module.text()
        run, cached = _load(source, module.globals, module.fallbacks, "compiled")
        out_avals = [(tuple(v.shape), v.dtype) for v in graph.outputs]
        entry = Specialisation(
            run, out_def, out_avals, 0.0, len(graph.eqns), tuple(sorted(module.fallbacks)), cached, source
        )
        try:
            _quietly(run)(*values)  # compile now, so that the reported time is the real one
        except Exception as err:
            # A check refusing these values ("nnc: ..."): the code is sound, and __call__ reruns
            # the interpreter for the message. Anything else: a damaged disk cache, maybe, so
            # once more without it; failing again, nnc wrote code that does not compile.
            if not _refused(err):
                run, cached = _load(source, module.globals, module.fallbacks, "compiled", disk=False)
                entry.run, entry.cached_on_disk = run, cached
                try:
                    _quietly(run)(*values)
                except Exception as again:
                    if not _refused(again):
                        entry.failed = (
                            f"{type(again).__name__}: {str(again).splitlines()[0] if str(again) else ''}"
                        )
                        warnings.warn(
                            f"nnc.compile: the code generated for {self.name} does not run ({entry.failed}); "
                            "the interpreter runs instead. This is a bug in nnc: please report it.",
                            GeneratedCodeWarning,
                            stacklevel=3,
                        )
        entry.seconds = time.perf_counter() - start
        new = set(module.fallbacks) - _REPORTED_FALLBACKS
        if new:
            _REPORTED_FALLBACKS.update(new)
            warnings.warn(
                f"nnc.compile: no compiled form for {', '.join(sorted(new))}; those parts "
                "run their numpy implementation from inside the compiled code",
                stacklevel=3,
            )
        if self.verbose:
            shapes = ", ".join(f"{v.dtype}{list(v.shape)}" for v in values)
            print(
                f"nnc.compile: {self.name} compiled for ({shapes}) in {entry.seconds:.2f} s, "
                f"{entry.ops} operations" + (", cached on disk" if cached else ""),
                file=sys.stderr,
            )
        return entry

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:  # the traced function takes positions: keywords (key=, stats=) are put in theirs
            bound = inspect.signature(self.fn).bind(*args, **kwargs)
            bound.apply_defaults()
            args = bound.args
        sig, values = call_signature(args)
        if any(type(v) is not np.ndarray for v in values):
            # Traced values (compile inside grad) or another backend's arrays: the generated
            # code is numpy-and-Numba only, so those run the interpreted, array-API path.
            return self.fn(*args)
        # the generated code takes C-ordered arrays (its products hand them to BLAS as such) in
        # this machine's byte order (Numba has no big-endian arrays: labels from a file written elsewhere)
        values = [_native_layout(v) for v in values]
        entry = self.specialisations.get(sig.key)
        if entry is None:
            entry = self.specialisations[sig.key] = self._build(sig, values)
        if entry.failed is not None:
            return self.fn(*args)
        try:
            with quiet():  # object-mode parts and NUMBA_DISABLE_JIT run numpy, which would warn
                flat = entry.run(*values)
        except Exception as err:
            if not (_refused(err) and self.rerun_refused):
                raise
            # Bad values the compiled code can only detect, not describe (a label out of range):
            # the interpreted path raises the same clear nnc error it always does.
            return self.fn(*args)
        outs = [o.reshape(())[()] if not shape else o for o, (shape, _) in zip(flat, entry.out_avals)]
        return tree_unflatten(entry.out_def, outs)
