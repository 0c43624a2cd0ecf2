#!/usr/bin/env bash
# Set up nnc on a fresh machine: Graphviz's dot binary (for `nnc render`) and the package
# with its test dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dot >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq graphviz >/dev/null
  else
    echo "nnc: install Graphviz (https://graphviz.org/download/) for 'nnc render' to draw pictures" >&2
  fi
fi
# Chromium and its WebDriver, for the browser test of the interactive page (nnc render -o model.html)
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "nnc: install Chromium and chromedriver for the browser test of 'nnc render -o model.html'" >&2
  fi
fi
python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
