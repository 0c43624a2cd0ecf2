"""Find the models in a Python file, the way ``nnc render file.py:NAME`` names them.

The file is run as a module whose ``__name__`` is not ``"__main__"`` (so its
``if __name__ == "__main__":`` block is skipped), with its folder on ``sys.path`` so that
sibling imports work. Its models are the nnc models assigned at its top level, in the
order they are written; names it imported are not its models.

>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> with open(os.path.join(folder, "net.py"), "w") as f:
...     _ = f.write("from nnc import Linear, tanh\\nmodel = Linear(2, 3) >> tanh\\n")
>>> name, model = find_model(os.path.join(folder, "net.py"))
>>> name, model.signature
('model', Vec[2] -> Vec[3])
"""

from __future__ import annotations

import ast
import itertools
import os
import re
import sys
import tokenize
import traceback
import types
from dataclasses import dataclass

from nnc.backend.errors import NNCError

from .model import Model
from .source import UserLocation

_loads = itertools.count()
_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
# statements whose bodies run at import time (a def's or a class's body does not assign globals)
_BLOCKS = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try)


class LoadError(NNCError):
    """A model file cannot be read, parsed or run, or does not hold the model asked for.

    ``cause`` is the exception the file raised while it ran, if that was the trouble."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class ModelFile:
    """A loaded model file: its path, its globals and the models it assigns at top level."""

    path: str
    namespace: dict
    models: tuple  # ((name, Model, line), ...) in the order the file assigns them


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"file.py:NAME"`` into the file and the name (``None`` when no name is given).

    >>> split_spec("examples/mlp.py:encoder"), split_spec("examples/mlp.py")
    (('examples/mlp.py', 'encoder'), ('examples/mlp.py', None))
    """
    head, sep, tail = spec.rpartition(":")
    if sep and head and _NAME.fullmatch(tail):
        return head, tail
    return spec, None


def _assigned_names(tree: ast.Module) -> dict[str, int]:
    """Names assigned by the file's top-level statements (not inside functions or classes),
    with the line of their first assignment."""
    found: dict[str, int] = {}

    def targets(node: ast.AST, line: int) -> None:
        if isinstance(node, ast.Name):
            found.setdefault(node.id, line)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for item in node.elts:
                targets(item, line)
        elif isinstance(node, ast.Starred):
            targets(node.value, line)

    def visit(body: list) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Assign):
                for t in stmt.targets:
                    targets(t, stmt.lineno)
            elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
                targets(stmt.target, stmt.lineno)
            elif isinstance(stmt, (ast.With, ast.AsyncWith)):
                for item in stmt.items:
                    if item.optional_vars is not None:
                        targets(item.optional_vars, stmt.lineno)
            if isinstance(stmt, _BLOCKS):
                for block in ("body", "orelse", "finalbody"):
                    visit(getattr(stmt, block, []))
                for handler in getattr(stmt, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    return found


def _where_it_failed(err: BaseException, path: str, shown: str) -> tuple[str, str]:
    """The file and line in the model file where ``err`` was raised, and that line's code."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if os.path.abspath(f.filename) == path]
    if not frames:
        return shown, ""
    f = frames[-1]
    return str(UserLocation(f.filename, f.lineno or 0)), (f" in `{f.line.strip()}`" if f.line else "")


def load_file(path: str | os.PathLike) -> ModelFile:
    """Run the model file at ``path`` and collect the nnc models it assigns.

    Raises :class:`LoadError` if the file does not exist, does not parse, or raises."""
    shown = os.fspath(path)
    full = os.path.abspath(shown)
    if not os.path.exists(full):
        raise LoadError(f"no such file: {shown}")
    if os.path.isdir(full):
        raise LoadError(f"{shown} is a folder; give a Python file that defines a model")
    try:
        with tokenize.open(full) as f:
            source = f.read()
    except (OSError, SyntaxError, UnicodeDecodeError) as err:
        raise LoadError(f"cannot read {shown}: {err}") from None
    try:
        tree = ast.parse(source, full)
        code = compile(tree, full, "exec")
    except (SyntaxError, ValueError) as err:
        lineno = getattr(err, "lineno", None)  # a ValueError (a null byte) has none
        location = f"{shown}:{lineno}" if lineno else shown
        text = (getattr(err, "text", None) or "").strip()
        raise LoadError(
            f"{location}: cannot parse {shown}: {getattr(err, 'msg', err)}" + (f": {text}" if text else "")
        ) from None
    module = types.ModuleType(f"_nnc_model_{next(_loads)}")
    module.__file__ = full
    sys.modules[module.__name__] = module
    folder = os.path.dirname(full)
    sys.path.insert(0, folder)
    try:
        exec(code, module.__dict__)
    except KeyboardInterrupt:
        raise
    except NNCError as err:
        raise LoadError(f"{shown} raised {type(err).__name__} while loading:\n{err}", err) from None
    except BaseException as err:  # SystemExit too: a model file must not end the program
        detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        location, code_line = _where_it_failed(err, full, shown)
        raise LoadError(
            f"{location}: {detail}{code_line}, raised while loading {shown} (run as a module, without "
            f'its `if __name__ == "__main__":` block, with its folder on sys.path)',
            err,
        ) from None
    finally:
        sys.path.remove(folder)
    names = _assigned_names(tree)
    models = tuple(
        (name, module.__dict__[name], line)
        for name, line in names.items()
        if isinstance(module.__dict__.get(name), Model)
    )
    return ModelFile(shown, module.__dict__, models)


def _candidates(file: ModelFile) -> str:
    return ", ".join(f"{name} (line {line}, {model.signature})" for name, model, line in file.models)


def pick(file: ModelFile, name: str | None = None) -> tuple[str, Model]:
    """The model ``name`` in ``file``; without a name, the one called ``model``, else the only one."""
    if name is not None:
        value: object = file.namespace
        for part in name.split("."):
            value = value.get(part, None) if isinstance(value, dict) else getattr(value, part, None)
            if value is None:
                break
        if isinstance(value, Model):
            return name, value
        if value is None:
            known = (
                f"; its models are: {_candidates(file)}"
                if file.models
                else "; it assigns no nnc model at top level"
            )
            raise LoadError(f"{file.path} has no {name!r}{known}")
        raise LoadError(f"{name} in {file.path} is a {type(value).__name__}, not an nnc model")
    by_name = {n: m for n, m, _ in file.models}
    if "model" in by_name:
        return "model", by_name["model"]
    distinct = {id(m): (n, m) for n, m, _ in reversed(file.models)}
    if len(distinct) == 1:
        return next(iter(distinct.values()))
    if not file.models:
        raise LoadError(
            f"{file.path} assigns no nnc model at top level; define one, e.g. model = Linear(2, 4) >> tanh"
        )
    raise LoadError(
        f"{file.path} defines {len(distinct)} nnc models and none is called 'model'; "
        f"choose one as {file.path}:NAME, from: {_candidates(file)}"
    )


def find_model(spec: str) -> tuple[str, Model]:
    """The model that ``spec`` (``file.py`` or ``file.py:NAME``) names, with its name."""
    path, name = split_spec(spec)
    return pick(load_file(path), name)
