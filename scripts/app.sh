#!/usr/bin/env bash
# Install everything, then start the app on http://localhost:8501
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m streamlit run app/streamlit_app.py --server.headless true --server.port "${PORT:-8501}" "$@"
