#!/usr/bin/env bash
# Check the import contracts in pyproject.toml ([tool.importlinter]) with import-linter.
# import-linter finds a package's modules by walking its one directory, but nnc's three
# packages live side by side (dsl/, backend/, kernels/: [tool.setuptools.package-dir]); so the
# check runs on the layout they are installed in, nnc/ holding backend/ and kernels/, made of
# links to this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
layout="$(mktemp -d)"
trap 'rm -rf "$layout"' EXIT
mkdir "$layout/nnc"
ln -s "$PWD"/dsl/*.py "$layout/nnc/"
ln -s "$PWD/backend" "$layout/nnc/backend"
ln -s "$PWD/kernels" "$layout/nnc/kernels"
PYTHONPATH="$layout" lint-imports --no-cache
