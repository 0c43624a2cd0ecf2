"""Every example in nnc's public docstrings runs and prints what it says."""

import doctest
import importlib
import pkgutil

import pytest

import nnc
import nnc.backend
import nnc.kernels

MODULES = sorted(
    {"nnc", "nnc.backend", "nnc.kernels"}
    | {
        m.name
        for pkg, prefix in ((nnc, "nnc."), (nnc.backend, "nnc.backend."), (nnc.kernels, "nnc.kernels."))
        for m in pkgutil.iter_modules(pkg.__path__, prefix)
    }
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_the_doctests_are_really_collected():
    total = sum(doctest.testmod(importlib.import_module(n), report=False).attempted for n in MODULES)
    assert total >= 30
