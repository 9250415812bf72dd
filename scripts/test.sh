#!/usr/bin/env bash
# Install everything, lint (ruff: pyflakes, pycodestyle, import order; see pyproject.toml),
# then run the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
