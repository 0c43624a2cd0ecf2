"""`nnc.__all__` is derived from the imports in nnc's __init__: the same names, no submodule."""

import ast
import inspect

import nnc


def imported_public_names(module) -> set[str]:
    """The names ``module``'s own ``from ... import`` statements bind, less the underscored ones."""
    tree = ast.parse(inspect.getsource(module))
    return {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if not (alias.asname or alias.name).startswith("_")
    }


def test_all_is_exactly_the_imported_public_names():
    assert sorted(nnc.__all__) == sorted(imported_public_names(nnc))
    assert len(nnc.__all__) == len(set(nnc.__all__)) == 141


def test_every_exported_name_is_there():
    assert all(hasattr(nnc, name) for name in nnc.__all__)
    assert "keep_freed_memory" not in nnc.__all__ and "conv" not in nnc.__all__
