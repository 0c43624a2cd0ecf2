#!/usr/bin/env bash
# The static checks, the same in CI (.ci/run) and before a commit (.pre-commit-config.yaml):
# lint, format, the import contracts and the type check.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
ruff format --check .
bash scripts/lint-imports.sh
bash scripts/typecheck.sh
