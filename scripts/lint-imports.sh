#!/usr/bin/env bash
# Check the import contracts in pyproject.toml ([tool.importlinter]) with import-linter.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/layout.sh
PYTHONPATH="$layout" lint-imports --no-cache
