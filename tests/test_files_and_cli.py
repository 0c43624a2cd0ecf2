"""Where nnc says the user wrote something in a notebook, and what running notebooks needs."""

import importlib.util
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import tomllib

from nnc.source import UserLocation, ipython_cell

ROOT = Path(__file__).resolve().parents[1]


def fake_ipython(filename_map):
    """An IPython module whose shell's compiler knows these cell files, as IPython's does."""
    shell = types.SimpleNamespace(compile=types.SimpleNamespace(_filename_map=filename_map))
    return types.SimpleNamespace(get_ipython=lambda: shell)


def test_a_cell_file_reads_as_ipython_shows_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython({"/tmp/ipykernel_1234/5678.py": 3}))
    assert str(UserLocation("/tmp/ipykernel_1234/5678.py", 2)) == "cell In[3], line 2"
    assert str(UserLocation(__file__, 7)).endswith("tests/test_files_and_cli.py:7")  # a file stays a file


def test_old_ipython_cell_names_read_the_same():
    assert str(UserLocation("<ipython-input-12-3f2a9c1b7d8e>", 4)) == "cell In[12], line 4"


def test_outside_ipython_nothing_is_imported_to_ask(monkeypatch):
    # None in sys.modules makes any `import IPython` fail: formatting must not try one
    monkeypatch.setitem(sys.modules, "IPython", None)
    assert ipython_cell("/tmp/ipykernel_1234/5678.py") is None
    assert str(UserLocation("/tmp/ipykernel_1234/5678.py", 2)) == "/tmp/ipykernel_1234/5678.py:2"


def test_a_shell_without_the_compiler_map_falls_back_to_the_file(monkeypatch):
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))
    assert str(UserLocation("/tmp/ipykernel_1/2.py", 5)) == "/tmp/ipykernel_1/2.py:5"


IN_IPYTHON = textwrap.dedent("""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    for cell in ["import nnc",
                 "x = 1\\nmodel = nnc.Linear(2, 3) >> nnc.tanh",
                 "try:\\n    model >> nnc.Linear(4, 1)\\nexcept nnc.TypeMismatch as err:\\n    print(err)"]:
        shell.run_cell(cell, store_history=True)
""")


def test_a_real_ipython_shell_names_cells_in_messages():
    pytest.importorskip("IPython")
    done = subprocess.run(
        [sys.executable, "-c", IN_IPYTHON], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:3] == [
        "cannot compose at cell In[3], line 2",
        "  tanh outputs Vec[3]",
        "  Linear(4 -> 1) (created at cell In[3], line 2) expects Vec[4]",
    ]


def test_the_dev_set_up_installs_what_executing_a_notebook_needs():
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    names = {re.match(r"[\w-]+", requirement)[0] for requirement in dev}
    assert {"nbconvert", "ipykernel", "jupytext"} <= names
    assert "'.[dev]'" in (ROOT / "scripts" / "setup.sh").read_text()
    for module in ("nbconvert", "ipykernel", "jupytext"):
        assert importlib.util.find_spec(module) is not None, (
            f"{module} is not installed: run scripts/setup.sh"
        )


NOTEBOOK = """# %% [markdown]
# A notebook written as a jupytext percent-format script, like examples/tutorial_*.py
# %%
import nnc
print(nnc.Linear(2, 3).signature)
"""


def test_a_jupytext_notebook_runs_with_jupyter_nbconvert_execute(tmp_path):
    import jupytext
    import nbformat

    jupytext.write(jupytext.reads(NOTEBOOK, fmt="py:percent"), tmp_path / "tiny.ipynb")
    # `jupyter nbconvert` is this module's command-line entry point
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--output",
            "ran.ipynb",
            "tiny.ipynb",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    ran = nbformat.read(tmp_path / "ran.ipynb", as_version=4)
    assert [out["text"] for out in ran.cells[1].outputs] == ["Vec[2] -> Vec[3]\n"]
