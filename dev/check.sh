#!/usr/bin/env bash
# Every check, in one place: lint, format, types, the docs site (warnings are errors), the
# test suite (doctests and the executable tutorials included), then the DeepChem pull request
# (upstream/check.sh: git am onto DeepChem's tree, its tests, its linters, checkpoint parity).
# Run from anywhere: bash dev/check.sh   (uses the project's .venv when present)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
paths=(deepchem_cgcnn tests benchmarks dev docs upstream)

echo "== ruff (lint)";   "$python" -m ruff check "${paths[@]}"
echo "== ruff (format)"; "$python" -m ruff format --check "${paths[@]}"
echo "== mypy";          "$python" -m mypy deepchem_cgcnn
echo "== docs";          "$python" -m sphinx -E -W --keep-going -q -b html docs docs/_build/html
echo "== pytest";        "$python" -m pytest -q
echo "== gpu_run --dry-run";  PYTHON="$python" bash benchmarks/gpu_run.sh --dry-run
echo "== upstream (the DeepChem PR)"; PYTHON="$python" bash upstream/check.sh
