#!/usr/bin/env bash
# Type-check the package with mypy, at the strictness set in pyproject.toml ([tool.mypy]).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/layout.sh
here="$PWD"
cd "$layout" && mypy --config-file "$here/pyproject.toml" --cache-dir "$here/.mypy_cache" -p nnc
