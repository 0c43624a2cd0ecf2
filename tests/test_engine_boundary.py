"""The language (dsl/) uses only the engine's public names.

Which package may import which, and that no imports form a cycle, is import-linter's to check
(the contracts in pyproject.toml, run by .ci/run); a private name is below what it sees.
"""

import ast
from pathlib import Path

DSL = Path(__file__).resolve().parents[1] / "dsl"


def engine_privates_used(source: str) -> list[str]:
    """The private engine names ``source`` reads: imported from ``nnc.backend`` or
    ``nnc.kernels``, or read as an attribute of an engine module it imported."""
    tree = ast.parse(source)
    engine_names, used = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            ("nnc.backend", "nnc.kernels")
        ):
            for alias in node.names:
                if alias.name.startswith("_"):
                    used.append(f"{node.module}.{alias.name}")
                engine_names.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in engine_names
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            used.append(f"{node.value.id}.{node.attr}")
    return used


def test_the_check_finds_a_private_name_imported_or_read():
    source = (
        "from nnc.backend.autodiff import _signature\n"
        "from nnc.backend import elementwise as E\nE._is_float(x)\n"
    )
    assert engine_privates_used(source) == ["nnc.backend.autodiff._signature", "E._is_float"]


def test_the_language_uses_only_public_names_of_the_engine():
    used = {path.name: engine_privates_used(path.read_text()) for path in sorted(DSL.glob("*.py"))}
    assert {name: names for name, names in used.items() if names} == {}
